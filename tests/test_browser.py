"""The browser client at ``/`` (MISSION section D) in a real headless Chromium.

Playwright (PyPI ``playwright``) drives Debian's ``/usr/bin/chromium``
(``PARKCHAT_CHROMIUM`` overrides the path; Playwright's own browser download
is never used) against a real ``twistd -n parkchat`` on loopback, started by
``tests.e2e_support.ParkchatProcess``. People use the page the way a person
would: by the labels and button names on the screen. Independent clients in
the same rooms (the ``websockets`` library on ``/ws/{room}`` with Basic auth,
a plain TCP socket on ``--tcp``) check that what the page sends really went
through the server, and feed it messages from elsewhere.

Every page's console errors and uncaught exceptions are collected and must be
empty at the end of each test. Screenshots go to ``$PARKCHAT_ARTIFACTS`` (or a
directory under the test's temporary directory); with
``PARKCHAT_UPDATE_SCREENSHOT=1`` the two-people screenshot also replaces
``docs/screenshot.png``.

Without Chromium or Playwright these tests are skipped, with the reason,
except under CI (``CI=true``), where they must run.
"""

from __future__ import annotations

import base64
import json
import os
import re
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from urllib.parse import quote

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from websockets.sync.client import ClientConnection, connect

from tests.e2e_support import CLEAN_EXITS, LineSocket, ParkchatProcess, basic_auth, in_ci

try:
    from playwright.sync_api import (
        Browser,
        BrowserContext,
        Page,
        Playwright,
        WebSocketRoute,
        expect,
        sync_playwright,
    )
except ImportError:  # pragma: no cover - depends on the machine
    sync_playwright = None  # type: ignore[assignment]

try:
    # axe-core (Deque's accessibility engine), as bundled by this package.
    from axe_playwright_python.sync_playwright import Axe
except ImportError:  # pragma: no cover - depends on the machine
    Axe = None

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("PARKCHAT_CHROMIUM", "/usr/bin/chromium")
#: As root, in a container, on a closed network (see STACK-NOTES and the
#: machine notes): no sandbox, no GPU, no calls home.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
#: Milliseconds Playwright waits for something to appear on a page.
UI_TIMEOUT = 10_000
IO_TIMEOUT = 10.0
ADMIN_TOKEN = "browser-tests-admin-token-0123456789"
DESKTOP = {"width": 1000, "height": 640}
PHONE = {"width": 390, "height": 844}

#: Runs in a page before its scripts: a stand-in for the Notification API
#: that records what the page does with it, and a visibility the test sets
#: (``window.__setHidden(true)``), as a tab in the background would have.
ATTENTION_PROBE = """
(() => {
  let hidden = false;
  Object.defineProperty(Document.prototype, "visibilityState", {
    configurable: true, get() { return hidden ? "hidden" : "visible"; },
  });
  Object.defineProperty(Document.prototype, "hidden", {
    configurable: true, get() { return hidden; },
  });
  window.__setHidden = (value) => {
    hidden = value;
    document.dispatchEvent(new Event("visibilitychange"));
  };
  window.__notifications = [];
  window.__permissionRequests = [];
  class FakeNotification {
    constructor(title, options = {}) {
      window.__notifications.push({ title, body: options.body, tag: options.tag });
    }
    close() {}
  }
  FakeNotification.permission = "default";
  FakeNotification.requestPermission = () => {
    // Whether a click or a key press (a user gesture) is behind the request.
    window.__permissionRequests.push(navigator.userActivation.isActive);
    FakeNotification.permission = "granted";
    return Promise.resolve("granted");
  };
  window.Notification = FakeNotification;
})();
"""


def skip_reason() -> str | None:
    """Why the browser tests cannot run here, or None. Under CI they always
    run (and fail loudly if the browser is missing)."""
    if in_ci():
        return None
    if sync_playwright is None:
        return "playwright is not installed (pip install '.[test]')"
    if not os.access(CHROMIUM, os.X_OK):
        return f"no Chromium at {CHROMIUM} (apt-get install chromium, or set PARKCHAT_CHROMIUM)"
    return None


class BrowserCase(SynchronousTestCase):
    """A server (with ``--tcp``), a Chromium, and helpers to act as people."""

    server_args: tuple[str, ...] = ()

    def setUp(self) -> None:
        reason = skip_reason()
        if reason is not None:
            raise SkipTest(reason)
        if sync_playwright is None:
            self.fail("CI=true but playwright is not installed")
        if not os.access(CHROMIUM, os.X_OK):
            self.fail(f"CI=true but there is no Chromium at {CHROMIUM}")
        self.workdir = Path(self.mktemp()).resolve()
        self.workdir.mkdir(parents=True)
        self.artifacts = Path(os.environ.get("PARKCHAT_ARTIFACTS") or self.workdir / "artifacts")
        self.artifacts.mkdir(parents=True, exist_ok=True)
        self.server = ParkchatProcess(self.workdir / "server", tcp=True, args=self.server_args)
        self.server.start()
        self.addCleanup(self.server.stop)
        self.exits = ExitStack()
        self.addCleanup(self.exits.close)
        self.playwright: Playwright = sync_playwright().start()
        self.addCleanup(self.playwright.stop)
        self.browser: Browser = self.playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=60_000
        )
        self.addCleanup(self.browser.close)
        #: (who, kind, text) of every console error and uncaught exception.
        self.console_errors: list[tuple[str, str, str]] = []
        #: Console errors that a test expects (regular expressions).
        self.expected_console = [re.compile(r"\A\Z")]

    # -- people ----------------------------------------------------------------

    def open_page(
        self,
        who: str,
        viewport: dict[str, int] | None = None,
        *,
        init_script: str | None = None,
        **options: Any,
    ) -> Page:
        context: BrowserContext = self.browser.new_context(viewport=viewport or DESKTOP, **options)
        self.addCleanup(context.close)
        if init_script is not None:
            context.add_init_script(init_script)
        page = context.new_page()
        page.set_default_timeout(UI_TIMEOUT)
        console_log = self.artifacts / f"{self.short_id()}-console-{who}.txt"

        def on_console(message: Any) -> None:
            with console_log.open("a", encoding="utf-8") as f:
                f.write(f"{message.type}: {message.text}\n")
            if message.type == "error":
                self.console_errors.append((who, "console", message.text))

        page.on("console", on_console)
        # The last state of every page, whatever the outcome (runs before
        # the context is closed: cleanups run last-in, first-out).
        self.addCleanup(self.final_screenshot, page, who)
        page.on(
            "pageerror", lambda error: self.console_errors.append((who, "pageerror", str(error)))
        )
        page.goto(self.server.url("/"))
        return page

    def sign_up(self, who: str, viewport: dict[str, int] | None = None, **options: Any) -> Page:
        """A new page on which ``who`` registers (and is logged in)."""
        page = self.open_page(who, viewport, **options)
        page.get_by_label("Nickname", exact=True).fill(who)
        page.get_by_label("Password", exact=True).fill(f"{who}-password")
        page.get_by_role("button", name="Register", exact=True).click()
        self.expect_connected(page, who)
        return page

    def log_in(self, who: str, page: Page | None = None) -> Page:
        page = page or self.open_page(who)
        page.get_by_label("Nickname", exact=True).fill(who)
        page.get_by_label("Password", exact=True).fill(f"{who}-password")
        page.get_by_role("button", name="Log in", exact=True).click()
        self.expect_connected(page, who)
        return page

    def expect_connected(self, page: Page, who: str, timeout: float = UI_TIMEOUT) -> None:
        expect(page.get_by_role("status")).to_have_text(f"Connected as {who}", timeout=timeout)

    def join(self, page: Page, room: str) -> None:
        field = page.get_by_label("Room", exact=True)
        if not field.is_visible():
            # A phone that opened a room of the account: the list is a drawer.
            page.get_by_role("button", name="Rooms", exact=True).click()
        field.fill(room)
        page.get_by_role("button", name="Join", exact=True).click()
        expect(page.locator("#conv-title")).to_have_text(f"# {room}")
        expect(page.locator("#conv-meta")).to_contain_text("online")

    def say(self, page: Page, text: str, *, enter: bool = True, shown: str | None = None) -> None:
        """Send ``text`` from the message box (``shown`` is how it reads on
        screen, if not the same: backticks make code)."""
        box = page.get_by_label("Message", exact=True)
        box.fill(text)
        if enter:
            box.press("Enter")
        else:
            page.get_by_role("button", name="Send", exact=True).click()
        # Shown at once, then confirmed by the server's ack (with its time).
        mine = page.locator("#log li.msg.mine").filter(has_text=shown or text).last
        expect(mine).not_to_have_class(re.compile(r"pending|failed"))
        expect(mine.locator(".msg-time")).to_have_text(re.compile(r"\d"))

    def bodies(self, page: Page) -> list[str]:
        """The message texts of the conversation on screen, top to bottom."""
        return page.locator("#log li.msg .msg-body").all_text_contents()

    def expect_message(
        self, page: Page, sender: str, text: str, timeout: float = UI_TIMEOUT
    ) -> None:
        item = page.locator("#log li.msg").filter(has=page.locator(".msg-body", has_text=text))
        expect(item.last).to_be_visible(timeout=timeout)
        expect(item.last.locator(".msg-user")).to_have_text(sender)
        expect(item.last.locator(".msg-time")).to_have_text(re.compile(r"\d"))

    def short_id(self) -> str:
        return self.id().rsplit(".", 1)[-1]

    def final_screenshot(self, page: Page, who: str) -> None:
        try:
            self.shot(page, f"final-{who}", full_page=True)
        except Exception as e:  # the page may be gone; never hide the real failure
            print(f"no final screenshot of {who}: {e}")

    def shot(self, page: Page, name: str, *, full_page: bool = False) -> Path:
        path = self.artifacts / f"{self.short_id()}-{name}.png"
        page.screenshot(path=str(path), full_page=full_page)
        return path

    def assert_no_console_errors(self) -> None:
        unexpected = [
            entry
            for entry in self.console_errors
            if not any(p.search(entry[2]) for p in self.expected_console)
        ]
        self.assertEqual(unexpected, [], "the page logged errors")

    # -- other clients -----------------------------------------------------------

    def account(self, nickname: str) -> tuple[str, str]:
        password = f"{nickname}-password"
        self.server.register(nickname, password)
        return nickname, password

    def room_socket(self, room: str, credentials: tuple[str, str]) -> ClientConnection:
        """A seed-API client on ``/ws/{room}`` with Basic auth."""
        client = connect(
            self.server.ws_url(f"/ws/{quote(room, safe='')}"),
            additional_headers={"Authorization": basic_auth(*credentials)},
            open_timeout=IO_TIMEOUT,
            close_timeout=IO_TIMEOUT,
        )
        return self.exits.enter_context(client)

    def wait_frame(
        self, client: ClientConnection, match: Callable[[dict[str, Any]], bool]
    ) -> dict[str, Any]:
        deadline = time.monotonic() + IO_TIMEOUT
        while True:
            frame: dict[str, Any] = json.loads(
                client.recv(timeout=max(0.01, deadline - time.monotonic()))
            )
            if match(frame):
                return frame

    def wait_content(self, client: ClientConnection, text: str) -> dict[str, Any]:
        return self.wait_frame(client, lambda f: f.get("content") == text)

    def line_client(self, name: str, room: str) -> LineSocket:
        line = LineSocket(self.server.tcp_address, timeout=IO_TIMEOUT)
        self.addCleanup(line.close)
        line.send_line(json.dumps({"name": name, "room": room}))
        return line

    def wait_line(self, line: LineSocket, wanted: str) -> list[str]:
        """Read lines up to ``wanted``; return the ones before it."""
        deadline = time.monotonic() + IO_TIMEOUT
        seen: list[str] = []
        while time.monotonic() < deadline:
            text = line.read_line(timeout=max(0.01, deadline - time.monotonic()))
            if text == wanted:
                return seen
            seen.append(text)
        self.fail(f"no line {wanted!r}; got {seen!r}")


class TwoPeopleTests(BrowserCase):
    def test_room_and_direct_messages(self) -> None:
        """alice and bob, each in their own browser, register, join a room
        and talk; a /ws/{room} client and a TCP client in the room see it all
        and are seen; then alice and bob exchange direct messages."""
        alice = self.sign_up("alice")
        bob = self.sign_up("bob")
        self.join(alice, "lobby")
        self.join(bob, "lobby")
        carol = self.room_socket("lobby", self.account("carol"))
        mina = self.line_client("mina", "lobby")

        # Presence: alice sees bob in the room (and herself, marked).
        people = alice.locator("#people")
        expect(people.get_by_role("button", name="bob", exact=True)).to_be_visible()
        expect(people).to_contain_text("alice (you)")
        # Joins with nothing in between are one line ("bob, carol and mina joined").
        expect(
            alice.locator("#log li.presence").filter(has_text=re.compile(r"bob\b.* joined"))
        ).to_be_visible()

        self.say(alice, "Morning bob! Is the park open today?")
        self.expect_message(bob, "alice", "Morning bob! Is the park open today?")
        self.wait_content(carol, "Morning bob! Is the park open today?")
        self.wait_line(mina, "alice:Morning bob! Is the park open today?")

        self.say(bob, "It is, the café opens at 9 ☕", enter=False)
        self.expect_message(alice, "bob", "It is, the café opens at 9 ☕")
        self.wait_content(carol, "It is, the café opens at 9 ☕")
        self.wait_line(mina, "bob:It is, the café opens at 9 ☕")

        carol.send(json.dumps({"content": "carol here, over the seed API"}))
        mina.send_line("and mina, from a terminal")
        for page in (alice, bob):
            self.expect_message(page, "carol", "carol here, over the seed API")
            self.expect_message(page, "mina", "and mina, from a terminal")

        self.say(alice, "Great, see you both at the fountain at noon")
        self.expect_message(bob, "alice", "Great, see you both at the fountain at noon")
        expect(alice.locator("#people")).to_contain_text("carol")
        self.shot(alice, "room-alice")
        self.shot(bob, "room-bob")
        self.two_people_screenshot(alice, bob)

        # Direct messages: alice picks bob from the people list.
        alice.locator("#people").get_by_role("button", name="bob", exact=True).click()
        expect(alice.locator("#conv-title")).to_have_text("@ bob")
        self.say(alice, "psst, bring the frisbee")
        dm = bob.locator("#dm-list button[data-dm='alice']")
        expect(dm).to_contain_text("1")  # unread badge while bob is in lobby
        self.wait_quiet_in_room(carol, mina)
        dm.click()
        self.expect_message(bob, "alice", "psst, bring the frisbee")
        self.say(bob, "will do")
        self.expect_message(alice, "bob", "will do")
        self.shot(bob, "direct-bob")

        # Back in the room, nothing of the DM leaked into it.
        bob.locator("#room-list button[data-room='lobby']").click()
        self.assertNotIn("psst, bring the frisbee", self.bodies(bob))

        # alice on another device: the conversation comes from the server,
        # both ways, each message once, hers marked as hers.
        other = self.log_in("alice")
        self.join(other, "lobby")
        other.locator("#people").get_by_role("button", name="bob", exact=True).click()
        expect(other.locator("#conv-title")).to_have_text("@ bob")
        self.expect_message(other, "alice", "psst, bring the frisbee")
        self.expect_message(other, "bob", "will do")
        expect(other.locator("#log li.msg")).to_have_count(2)
        expect(other.locator("#log li.msg.mine")).to_have_count(1)
        # A reload keeps the conversation open, filled from the server again.
        other.reload()
        self.expect_connected(other, "alice")
        expect(other.locator("#conv-title")).to_have_text("@ bob")
        self.expect_message(other, "bob", "will do")
        expect(other.locator("#log li.msg")).to_have_count(2)
        self.assert_no_console_errors()

    def wait_quiet_in_room(self, carol: ClientConnection, mina: LineSocket) -> None:
        """The DM went to bob only: the room's other clients got nothing."""
        carol.send(json.dumps({"content": "sync"}))
        seen: list[Any] = []
        self.wait_frame(carol, lambda f: seen.append(f) or f.get("content") == "sync")
        seen += self.wait_line(mina, "carol:sync")
        self.assertNotIn("frisbee", json.dumps(seen))

    def two_people_screenshot(self, left: Page, right: Page) -> None:
        """One picture of both windows side by side (for the README)."""
        images = [base64.b64encode(page.screenshot()).decode("ascii") for page in (left, right)]
        composite = self.browser.new_page(
            viewport={"width": 2 * DESKTOP["width"] + 24, "height": DESKTOP["height"] + 16}
        )
        self.addCleanup(composite.close)
        composite.set_content(
            "<body style='margin:0;padding:8px;background:#c9d3cd;display:flex;gap:8px'>"
            + "".join(
                f"<img style='width:{DESKTOP['width']}px' src='data:image/png;base64,{i}'>"
                for i in images
            )
            + "</body>"
        )
        path = self.artifacts / "two-people-chatting.png"
        composite.screenshot(path=str(path))
        if os.environ.get("PARKCHAT_UPDATE_SCREENSHOT") == "1":
            (ROOT / "docs" / "screenshot.png").write_bytes(path.read_bytes())


class MarkupTests(BrowserCase):
    def test_markup_in_messages_names_and_rooms_is_text(self) -> None:
        """HTML in a message or a room name is shown as the characters typed:
        no element is created and no script runs."""
        alice = self.sign_up("alice")
        bob = self.sign_up("bob")
        # No "/" in it: a room is named in the path of /ws/{room}.
        room = "<i>garden<b>"
        self.join(alice, room)
        self.join(bob, room)
        attack = (
            '<img src=x onerror="window.__pwned=1"> <b>bold?</b> <script>window.__pwned=2</script>'
        )
        self.say(alice, attack)
        self.expect_message(bob, "alice", attack)
        carol = self.room_socket(room, self.account("carol"))
        carol.send(json.dumps({"content": "<svg onload=window.__pwned=3>"}))
        for page in (alice, bob):
            self.expect_message(page, "carol", "<svg onload=window.__pwned=3>")
            expect(page.locator("#room-list button[data-room='<i>garden<b>']")).to_have_text(
                "# <i>garden<b>"
            )
            expect(page.locator("#conv-title")).to_have_text("# <i>garden<b>")
            for selector in ("#log img", "#log b", "#log script", "#log svg", "#log i", "nav i"):
                self.assertEqual(page.locator(selector).count(), 0, selector)
            self.assertIsNone(page.evaluate("window.__pwned"))
        self.shot(bob, "markup-as-text")
        self.assert_no_console_errors()


class HistoryTests(BrowserCase):
    server_args = ("--rate-limit", "0")

    def test_history_on_join_and_load_older(self) -> None:
        """Joining shows the newest 50 messages; scrolling to the top (here
        with the keyboard: Home in the focused log) pages back to the first
        one, in order, and says where the room begins."""
        carol = self.room_socket("archive", self.account("carol"))
        for n in range(1, 76):
            carol.send(json.dumps({"content": f"old message {n}"}))
        self.wait_content(carol, "old message 75")

        alice = self.sign_up("alice")
        self.join(alice, "archive")
        self.expect_message(alice, "carol", "old message 75")
        expect(alice.locator("#log li.msg")).to_have_count(50)
        self.assertEqual(self.bodies(alice), [f"old message {n}" for n in range(26, 76)])
        # Scrolled to the newest, with the message box on screen.
        expect(alice.locator("#log li.msg").last).to_be_in_viewport()
        expect(alice.get_by_label("Message", exact=True)).to_be_in_viewport()
        self.shot(alice, "history-newest-page")

        log = alice.get_by_role("log", name="Messages in archive")
        log.focus()
        alice.keyboard.press("Home")
        expect(alice.locator("#log li.msg")).to_have_count(75)
        self.assertEqual(self.bodies(alice), [f"old message {n}" for n in range(1, 76)])
        # 25 < 50: that was the last page.
        expect(alice.locator("#log li.system").first).to_have_text(
            "This is the beginning of the room."
        )
        self.shot(alice, "history-all")

        # Live messages still arrive at the bottom; scrolled up, the page
        # says so rather than moving.
        carol.send(json.dumps({"content": "a new one"}))
        jump = alice.get_by_role("button", name="1 new message below")
        jump.click()
        self.expect_message(alice, "carol", "a new one")
        self.assertEqual(self.bodies(alice)[-1], "a new one")
        expect(alice.locator("#log li.msg").last).to_be_in_viewport()
        self.assert_no_console_errors()


class ReconnectTests(BrowserCase):
    def test_restart_resumes_from_last_seen_id(self) -> None:
        """The server restarts; messages posted before alice's page gets back
        appear exactly once, in order, once it has reconnected by itself."""
        alice = self.open_page("alice")
        gate = {"open": True}

        def route(ws: WebSocketRoute) -> None:
            # Lets the test keep alice offline until the gap exists.
            if gate["open"]:
                ws.connect_to_server()
            else:
                ws.close(code=4999, reason="held back by the test")

        alice.route_web_socket(re.compile(r"/ws$"), route)
        self.sign_up_on(alice, "alice")
        bob = self.sign_up("bob")
        for page in (alice, bob):
            self.join(page, "garden")
        self.say(alice, "before the restart")
        self.expect_message(bob, "alice", "before the restart")

        gate["open"] = False
        self.assertIn(self.server.stop(), CLEAN_EXITS)
        for page in (alice, bob):
            expect(page.get_by_role("status")).to_contain_text("Reconnecting")
        self.server.start()
        carol = self.room_socket("garden", self.account("carol"))
        for n in (1, 2, 3):
            carol.send(json.dumps({"content": f"while you were away {n}"}))
        self.wait_content(carol, "while you were away 3")
        gate["open"] = True

        # Backoff: alice's page comes back on its own (at most ~12 s apart).
        self.expect_connected(alice, "alice", timeout=30_000)
        self.expect_connected(bob, "bob", timeout=30_000)
        for n in (1, 2, 3):
            self.expect_message(alice, "carol", f"while you were away {n}")
            self.expect_message(bob, "carol", f"while you were away {n}")
        expected = ["before the restart"] + [f"while you were away {n}" for n in (1, 2, 3)]
        self.assertEqual(self.bodies(alice), expected)
        self.assertEqual(self.bodies(bob), expected)

        # The room is live again for both.
        self.say(alice, "back again")
        self.expect_message(bob, "alice", "back again")
        self.wait_content(carol, "back again")
        self.shot(alice, "after-reconnect")
        # Failed connection attempts while the server was down are logged
        # by Chromium itself; nothing else may be.
        self.expected_console.append(re.compile(r"WebSocket connection to '.*' failed"))
        self.assert_no_console_errors()

    def sign_up_on(self, page: Page, who: str) -> None:
        page.get_by_label("Nickname", exact=True).fill(who)
        page.get_by_label("Password", exact=True).fill(f"{who}-password")
        page.get_by_role("button", name="Register", exact=True).click()
        self.expect_connected(page, who)


class OfflinePage:
    """A page whose ``/ws`` goes through the test (Playwright's WebSocket
    routes), so that the test can cut it as a network would: ``cut()``
    drops the page's socket (the server sees it close too) and takes the
    browser offline, refusing reconnects meanwhile; ``restore()`` comes back
    online, and the page reconnects by itself (the ``online`` event). Every
    frame the page sends and receives is recorded, decoded."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.online = True
        self.routes: list[tuple[WebSocketRoute, WebSocketRoute]] = []
        self.sent: list[dict[str, Any]] = []
        self.received: list[dict[str, Any]] = []
        page.route_web_socket(re.compile(r"/ws$"), self.route)
        page.on("websocket", self.watch)

    def route(self, ws: WebSocketRoute) -> None:
        if not self.online:
            ws.close(code=4999, reason="offline (the test)")
            return
        self.routes.append((ws, ws.connect_to_server()))

    def watch(self, ws: Any) -> None:
        ws.on("framesent", lambda payload: self.sent.append(json.loads(payload)))
        ws.on("framereceived", lambda payload: self.received.append(json.loads(payload)))

    def cut(self) -> None:
        self.online = False
        self.page.context.set_offline(True)
        for to_page, to_server in self.routes:
            to_server.close(code=1001, reason="cut by the test")
            to_page.close(code=1006, reason="cut by the test")
        self.routes.clear()

    def restore(self) -> None:
        self.online = True
        self.page.context.set_offline(False)

    def wait_received(self, kind: str, timeout: float = IO_TIMEOUT) -> dict[str, Any]:
        """The first frame of type ``kind`` the page received (waiting for it)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for frame in self.received:
                if frame.get("type") == kind:
                    return frame
            self.page.wait_for_timeout(50)
        raise AssertionError(f"the page received no {kind!r} frame")


class ResumeCase(BrowserCase):
    """Pages that lose their connection, and a way to read a whole log."""

    def kilobyte(self, n: int) -> str:
        """Message ``n``: 1,024 characters, its number first."""
        head = f"m {n:04d} "
        return head + "x" * (1024 - len(head))

    def sign_up_on(self, page: Page, who: str) -> None:
        page.get_by_label("Nickname", exact=True).fill(who)
        page.get_by_label("Password", exact=True).fill(f"{who}-password")
        page.get_by_role("button", name="Register", exact=True).click()
        self.expect_connected(page, who)

    def read_whole_log(self, page: Page, room: str) -> list[str]:
        """Every message of the open conversation, oldest first, read by
        scrolling from the newest up to the top (only a window of them is
        on the page at a time): until the top stays where it is, with
        nothing more loading. Every view on the way must show its messages
        in order, each once."""
        log = page.get_by_role("log", name=f"Messages in {room}")
        seen: dict[int, str] = {}
        top: list[Any] = []
        still = 0
        for _ in range(500):
            log.evaluate("e => e.scrollTop = 0")
            page.wait_for_timeout(60)
            view: list[list[Any]] = page.eval_on_selector_all(
                "#log li.msg[data-id]",
                "items => items.map(li => [Number(li.dataset.id),"
                " li.querySelector('.msg-body').textContent])",
            )
            ids = [item[0] for item in view]
            self.assertEqual(ids, sorted(set(ids)), "messages out of order, or twice, on screen")
            for message_id, body in view:
                self.assertEqual(seen.setdefault(message_id, body), body)
            loading = page.locator(".log-loading").is_visible()
            still = still + 1 if view[:1] == top and not loading else 0
            top = view[:1]
            if still >= 5:
                break
        else:
            self.fail("the top of the log never settled")
        bodies = [seen[i] for i in sorted(seen)]
        self.assertEqual(len(set(bodies)), len(bodies), "a message is shown twice")
        return bodies


class ResumeTests(ResumeCase):
    """A page that lost its connection resumes each room from its position
    (``join`` with ``last_seq``, docs/websocket.md "Resume after a
    reconnect"): what was missed shows once, in order, however many frames
    it takes, and a room that was empty when joined is position 0."""

    server_args = ("--rate-limit", "0")

    def test_reconnect_after_a_thousand_missed_messages(self) -> None:
        """1,000 messages of 1 KB each posted while alice's page is offline
        all appear after it reconnects by itself, in order, each once, with
        no alert; the server sent them in several frames."""
        alice = self.open_page("alice")
        net = OfflinePage(alice)
        self.sign_up_on(alice, "alice")
        self.join(alice, "garden")
        net.wait_received("history")
        carol = self.room_socket("garden", self.account("carol"))
        carol.send(json.dumps({"content": "before the cut"}))
        self.expect_message(alice, "carol", "before the cut")

        net.cut()
        expect(alice.get_by_role("status")).to_contain_text("Reconnecting")
        total = 1000
        expected = ["before the cut"] + [self.kilobyte(n) for n in range(1, total + 1)]
        for body in expected[1:]:
            carol.send(json.dumps({"content": body}))
        self.wait_content(carol, expected[-1])
        net.restore()

        self.expect_connected(alice, "alice", timeout=30_000)
        self.expect_message(alice, "carol", f"m {total:04d} ", timeout=30_000)
        self.assertEqual(self.read_whole_log(alice, "garden"), expected)
        expect(alice.locator("#alert")).to_be_hidden()
        # The page resumed from the seq of the last message it had (1).
        joins = [f for f in net.sent if f.get("type") == "join"]
        self.assertEqual([j.get("last_seq") for j in joins], [None, 1])
        pages = [f for f in net.received if f.get("type") == "history" and f.get("resume")]
        self.assertGreater(len(pages), 10)
        self.assertEqual(sum(len(p["messages"]) for p in pages), total)
        self.assertEqual([p["last"] for p in pages], [False] * (len(pages) - 1) + [True])
        # And it is live again (below, where the reader is not).
        carol.send(json.dumps({"content": "welcome back"}))
        alice.locator(".jump-to-end").click()
        self.expect_message(alice, "carol", "welcome back")
        self.expected_console.append(re.compile(r"WebSocket connection to '.*' failed"))
        self.assert_no_console_errors()

    def test_resume_into_a_room_that_was_empty_when_joined(self) -> None:
        """alice joined a room nobody had written in (position 0); 400
        messages are posted while she is offline; after she reconnects she
        has all 400."""
        alice = self.open_page("alice")
        net = OfflinePage(alice)
        self.sign_up_on(alice, "alice")
        self.join(alice, "quiet")
        self.assertEqual(net.wait_received("history")["messages"], [])
        expect(alice.locator("#log li.system .system-text")).to_have_text(["You joined quiet"])

        net.cut()
        expect(alice.get_by_role("status")).to_contain_text("Reconnecting")
        carol = self.room_socket("quiet", self.account("carol"))
        expected = [f"missed {n}" for n in range(1, 401)]
        for body in expected:
            carol.send(json.dumps({"content": body}))
        self.wait_content(carol, expected[-1])
        net.restore()

        self.expect_connected(alice, "alice", timeout=30_000)
        self.expect_message(alice, "carol", "missed 400", timeout=30_000)
        self.assertEqual(self.read_whole_log(alice, "quiet"), expected)
        expect(alice.locator("#alert")).to_be_hidden()
        joins = [f for f in net.sent if f.get("type") == "join"]
        self.assertEqual([j.get("last_seq") for j in joins], [None, 0])
        self.expected_console.append(re.compile(r"WebSocket connection to '.*' failed"))
        self.assert_no_console_errors()


class ResumeLimitTests(ResumeCase):
    """More missed than the server resumes (``--resume-max``)."""

    server_args = ("--rate-limit", "0", "--resume-max", "100")

    def test_more_missed_than_resumed(self) -> None:
        """250 missed, 100 resumed (``recovered: false``): the page shows the
        newest 100 under a line saying that 150 are not shown, no alert;
        scrolling up loads them from the history, and then every message
        is there, in order, once."""
        alice = self.open_page("alice")
        net = OfflinePage(alice)
        self.sign_up_on(alice, "alice")
        self.join(alice, "busy")
        net.wait_received("history")
        carol = self.room_socket("busy", self.account("carol"))
        carol.send(json.dumps({"content": "before the cut"}))
        self.expect_message(alice, "carol", "before the cut")

        net.cut()
        expect(alice.get_by_role("status")).to_contain_text("Reconnecting")
        expected = ["before the cut"] + [f"missed {n}" for n in range(1, 251)]
        for body in expected[1:]:
            carol.send(json.dumps({"content": body}))
        self.wait_content(carol, expected[-1])
        net.restore()

        self.expect_connected(alice, "alice", timeout=30_000)
        self.expect_message(alice, "carol", "missed 250", timeout=30_000)
        notice = alice.locator("#log li.system").filter(has_text="not shown")
        expect(notice).to_have_text(
            re.compile(r"150 older messages are not shown; scroll up for history\.")
        )
        joined = net.wait_received("joined")
        self.assertEqual(
            [f["resume"] for f in net.received if f.get("type") == "joined" and "resume" in f],
            [{"count": 100, "recovered": False, "first_seq": 152}],
        )
        self.assertNotIn("resume", joined)
        expect(alice.locator("#alert")).to_be_hidden()
        self.assertEqual(self.read_whole_log(alice, "busy"), expected)
        expect(notice).to_have_count(0)
        self.expected_console.append(re.compile(r"WebSocket connection to '.*' failed"))
        self.assert_no_console_errors()


class AccountStateTests(BrowserCase):
    """Issue #16: what follows the account (docs/websocket.md, "Account
    state"), edits and deletions, mentions and search, in the page."""

    server_args = ("--rate-limit", "0")

    def app_socket(self, credentials: tuple[str, str], room: str) -> ClientConnection:
        """A client on ``/ws`` (the app socket) logged in and in ``room``."""
        status, body = self.server.request(
            "/login", "POST", {"username": credentials[0], "password": credentials[1]}
        )
        self.assertEqual(status, 200, body)
        client = self.exits.enter_context(
            connect(self.server.ws_url("/ws"), open_timeout=IO_TIMEOUT, close_timeout=IO_TIMEOUT)
        )
        client.send(json.dumps({"type": "auth", "body": json.loads(body)["token"]}))
        self.wait_frame(client, lambda f: f.get("type") == "ready")
        client.send(json.dumps({"type": "join", "room": room, "id": "j"}))
        self.wait_frame(client, lambda f: f.get("type") == "joined")
        return client

    def room_button(self, page: Page, room: str) -> Any:
        return page.locator(f"#room-list button[data-room='{room}']")

    def test_two_devices_follow_the_account(self) -> None:
        """alice joins two rooms on one device; on a second device (another
        browser) the same rooms are there after logging in; unread counts
        follow what is read on either; a room left on one goes on the
        other; a new tab of the first browser is signed in by itself (the
        refresh token) and opens the room that was open last."""
        laptop = self.sign_up("alice")
        self.join(laptop, "garden")
        self.join(laptop, "kitchen")
        self.join(laptop, "porch")
        phone = self.log_in("alice")
        for room in ("garden", "kitchen", "porch"):
            expect(self.room_button(phone, room)).to_be_visible()
        # Nothing was open on this device: it opens the first room.
        expect(phone.locator("#conv-title")).to_have_text(re.compile(r"# (garden|kitchen|porch)"))
        self.room_button(phone, "garden").click()
        self.room_button(laptop, "garden").click()

        carol = self.room_socket("kitchen", self.account("carol"))
        for n in (1, 2, 3):
            carol.send(json.dumps({"content": f"kitchen news {n}"}))
        self.wait_content(carol, "kitchen news 3")
        for page in (laptop, phone):
            expect(self.room_button(page, "kitchen")).to_contain_text("3 unread")
        # Read on the laptop: the phone's count goes too.
        self.room_button(laptop, "kitchen").click()
        self.expect_message(laptop, "carol", "kitchen news 3")
        expect(self.room_button(phone, "kitchen")).not_to_contain_text("unread")
        expect(self.room_button(laptop, "kitchen")).not_to_contain_text("unread")

        # Left on the phone: gone from the laptop.
        self.room_button(phone, "porch").click()
        phone.get_by_role("button", name="Leave room", exact=True).click()
        expect(self.room_button(phone, "porch")).to_have_count(0)
        expect(self.room_button(laptop, "porch")).to_have_count(0)

        # A new tab of the laptop's browser: signed in, in the last room.
        tab = laptop.context.new_page()
        tab.on("pageerror", lambda e: self.console_errors.append(("tab", "pageerror", str(e))))
        tab.goto(self.server.url("/"))
        self.expect_connected(tab, "alice")
        expect(tab.locator("#conv-title")).to_have_text("# kitchen")
        self.expect_message(tab, "carol", "kitchen news 3")
        self.assertIsNotNone(tab.evaluate("localStorage.getItem('parkchat.remember')"))
        # Logging out forgets (and revokes) it: the next tab asks again.
        tab.get_by_role("button", name="Log out").click()
        expect(tab.get_by_label("Nickname", exact=True)).to_be_visible()
        self.assertIsNone(tab.evaluate("localStorage.getItem('parkchat.remember')"))
        self.assert_no_console_errors()

    def test_mention_in_a_hidden_tab(self) -> None:
        """bob mentions alice while her tab is hidden: the title counts it,
        the browser's Notification is called, the @name is marked in the
        message and the room gets a mention badge."""
        alice = self.sign_up("alice", init_script=ATTENTION_PROBE)
        self.join(alice, "lobby")
        self.join(alice, "quiet")
        alice.get_by_role("button", name="Notifications", exact=True).click()
        bob = self.app_socket(self.account("bob"), "lobby")
        alice.evaluate("window.__setHidden(true)")
        bob.send(json.dumps({"type": "message", "body": "lunch, @alice?", "id": "m"}))
        expect(alice).to_have_title("(1) parkchat")
        self.assertEqual(
            alice.evaluate("window.__notifications"),
            [{"title": "bob in #lobby", "body": "lunch, @alice?", "tag": "room:lobby"}],
        )
        expect(self.room_button(alice, "lobby")).to_contain_text("@1")
        alice.evaluate("window.__setHidden(false)")
        expect(alice).to_have_title("parkchat")
        self.room_button(alice, "lobby").click()
        expect(alice.locator("#log li.msg.mention mark.at")).to_have_text("@alice")
        self.assert_no_console_errors()

    def test_edit_and_delete_are_seen_everywhere(self) -> None:
        """alice edits and then deletes a message of hers: bob's page, a
        /ws client and a TCP client see the new text, then nothing."""
        alice = self.sign_up("alice")
        bob = self.sign_up("bob")
        for page in (alice, bob):
            self.join(page, "garden")
        app = self.app_socket(self.account("carol"), "garden")
        mina = self.line_client("mina", "garden")
        self.say(alice, "the meeting is at 3")
        self.expect_message(bob, "alice", "the meeting is at 3")
        self.wait_line(mina, "alice:the meeting is at 3")

        mine = alice.locator("#log li.msg.mine").filter(has_text="the meeting is at 3")
        mine.hover()
        mine.get_by_role("button", name="Edit", exact=True).click()
        box = alice.get_by_label("Edit your message", exact=True)
        expect(box).to_be_focused()
        box.press("Escape")  # cancels
        expect(box).to_have_count(0)
        mine.get_by_role("button", name="Edit", exact=True).click()
        box.fill("the meeting is at 4")
        box.press("Enter")
        for page in (alice, bob):
            edited = page.locator("#log li.msg").filter(has_text="the meeting is at 4")
            expect(edited).to_contain_text("(edited)")
            expect(page.locator("#log li.msg").filter(has_text="at 3")).to_have_count(0)
        frame = self.wait_frame(app, lambda f: f.get("type") == "edited")
        self.assertEqual((frame["body"], frame["username"]), ("the meeting is at 4", "alice"))
        self.assertTrue(any("edited #" in line for line in self.lines_until(mina, "at 4")))

        edited = alice.locator("#log li.msg.mine").filter(has_text="the meeting is at 4")
        edited.hover()
        edited.get_by_role("button", name="Delete", exact=True).click()
        dialog = alice.get_by_role("dialog", name="Delete this message?")
        expect(dialog).to_contain_text("the meeting is at 4")
        dialog.get_by_role("button", name="Delete", exact=True).click()
        for page in (alice, bob):
            expect(page.locator("#log li.msg").filter(has_text="the meeting")).to_have_count(0)
        frame = self.wait_frame(app, lambda f: f.get("type") == "deleted")
        self.assertEqual(frame["seq"], 1)
        self.assertTrue(any("deleted" in line for line in self.lines_until(mina, "deleted")))
        self.assert_no_console_errors()

    def test_room_topic(self) -> None:
        """alice sets the topic of a room: it is under the room's name on
        bob's page, a /ws client gets it, and a page joining later shows it."""
        alice = self.sign_up("alice")
        bob = self.sign_up("bob")
        for page in (alice, bob):
            self.join(page, "garden")
        app = self.app_socket(self.account("carol"), "garden")
        alice.get_by_role("button", name="Topic", exact=True).click()
        dialog = alice.get_by_role("dialog", name="Room topic")
        dialog.get_by_label("Topic", exact=True).fill("Release on Friday")
        dialog.get_by_role("button", name="Set topic", exact=True).click()
        for page in (alice, bob):
            expect(page.locator("#conv-topic")).to_have_text("Release on Friday")
        frame = self.wait_frame(app, lambda f: f.get("type") == "topic")
        self.assertEqual((frame["topic"], frame["username"]), ("Release on Friday", "alice"))
        dave = self.sign_up("dave")
        self.join(dave, "garden")
        expect(dave.locator("#conv-topic")).to_have_text("Release on Friday")
        self.assert_no_console_errors()

    def lines_until(self, line: LineSocket, part: str) -> list[str]:
        """Lines read up to (and with) the first one containing ``part``."""
        deadline = time.monotonic() + IO_TIMEOUT
        seen: list[str] = []
        while time.monotonic() < deadline:
            seen.append(line.read_line(timeout=max(0.01, deadline - time.monotonic())))
            if part in seen[-1]:
                return seen
        self.fail(f"no line with {part!r}; got {seen!r}")

    def test_search_jumps_to_the_message(self) -> None:
        """A word said 400 messages ago: the search result marks it, and a
        click shows the message in its room with the ones around it;
        "Back to the newest messages" returns."""
        alice = self.sign_up("alice")
        self.join(alice, "garden")
        carol = self.room_socket("garden", self.account("carol"))
        carol.send(json.dumps({"content": "who brings the 🍍 pineapple pizza?"}))
        for n in range(1, 401):
            carol.send(json.dumps({"content": f"chatter {n}"}))
        self.wait_content(carol, "chatter 400")
        self.expect_message(alice, "carol", "chatter 400", timeout=30_000)

        alice.get_by_label("Search messages", exact=True).fill("pineapple")
        alice.get_by_role("button", name="Search", exact=True).click()
        result = alice.locator("#search-results button.result")
        expect(result).to_have_count(1)
        # Highlights are code-point offsets: the emoji before the word (two
        # UTF-16 units) must not shift the mark.
        expect(result.locator("mark")).to_have_text("pineapple")
        expect(result).to_contain_text("# garden")
        result.click()
        target = alice.locator("#log li.msg.target")
        expect(target).to_contain_text("who brings the 🍍 pineapple pizza?")
        expect(target).to_be_in_viewport()
        expect(alice.locator("#log li.msg").filter(has_text="chatter 1")).not_to_have_count(0)
        self.shot(alice, "search-result-in-context")
        back = alice.locator(".jump-to-end")
        expect(back).to_be_visible()
        back.click()
        self.expect_message(alice, "carol", "chatter 400")
        expect(alice.locator("#log li.msg").last).to_be_in_viewport()
        self.shot(alice, "search")
        self.assert_no_console_errors()


class ErrorTests(BrowserCase):
    server_args = (
        "--max-content-length",
        "40",
        "--rate-limit",
        "0.5",
        "--rate-burst",
        "3",
        "--admin-token",
        ADMIN_TOKEN,
    )

    def alert(self, page: Page) -> Any:
        return page.get_by_role("alert")

    def test_errors_are_shown(self) -> None:
        """Too long, too fast and banned: the person is told."""
        alice = self.sign_up("alice")
        self.join(alice, "lobby")
        box = alice.get_by_label("Message", exact=True)

        box.fill("x" * 41)
        box.press("Enter")
        expect(self.alert(alice)).to_contain_text("too long")
        failed = alice.locator("#log li.msg.failed")
        expect(failed).to_have_count(1)
        expect(failed).to_contain_text("not sent")
        # The text is back in the box, to be shortened.
        expect(box).to_have_value("x" * 41)
        self.shot(alice, "error-too-long")
        alice.get_by_role("button", name="Dismiss the message").click()
        expect(self.alert(alice)).to_be_hidden()

        for n in range(1, 6):
            box.fill(f"quick {n}")
            box.press("Enter")
        expect(self.alert(alice)).to_contain_text("too fast")
        self.shot(alice, "error-rate-limited")

        status, body = self.ban("alice")
        self.assertEqual(status, 200, body)
        expect(self.alert(alice)).to_contain_text("banned")
        expect(alice.get_by_label("Nickname", exact=True)).to_be_visible()
        self.shot(alice, "error-banned")
        self.log_in_refused(alice)
        self.assert_no_console_errors_but_refused_login()

    def ban(self, nickname: str) -> tuple[int, bytes]:
        import urllib.error
        import urllib.request

        request = urllib.request.Request(
            self.server.url("/admin/ban"),
            data=json.dumps({"nickname": nickname, "reason": "testing"}).encode(),
            method="POST",
            headers={
                "Authorization": f"Bearer {ADMIN_TOKEN}",
                "Content-Type": "application/json",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=IO_TIMEOUT) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def log_in_refused(self, page: Page) -> None:
        page.get_by_label("Nickname", exact=True).fill("alice")
        page.get_by_label("Password", exact=True).fill("alice-password")
        page.get_by_role("button", name="Log in", exact=True).click()
        expect(page.locator("#alert-text")).to_have_text("This account is banned.")

    def assert_no_console_errors_but_refused_login(self) -> None:
        # Chromium logs every 4xx answer to fetch() as a console error.
        self.expected_console.append(re.compile(r"Failed to load resource: .* 403 \(Forbidden\)"))
        self.assert_no_console_errors()


class ModerationTests(BrowserCase):
    server_args = ("--admin-token", ADMIN_TOKEN)

    def test_deleted_message_leaves_every_screen(self) -> None:
        """A moderator deletes a message (admin API): it disappears from the
        pages showing it, and a page that joins later never sees it."""
        alice = self.sign_up("alice")
        bob = self.sign_up("bob")
        for page in (alice, bob):
            self.join(page, "lobby")
        self.say(bob, "something regrettable")
        self.say(bob, "something fine")
        self.expect_message(alice, "bob", "something fine")
        item = alice.locator("#log li.msg").filter(has_text="something regrettable")
        message_id = int(item.get_attribute("data-id") or "0")
        self.assertGreater(message_id, 0)
        status, _ = self.server.request(
            "/admin/delete",
            "POST",
            {"id": message_id},
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        )
        self.assertEqual(status, 200)
        for page in (alice, bob):
            expect(
                page.locator("#log li.msg").filter(has_text="something regrettable")
            ).to_have_count(0)
            self.assertIn("something fine", self.bodies(page))
        carol = self.sign_up("carol")
        self.join(carol, "lobby")
        self.expect_message(carol, "bob", "something fine")
        self.assertNotIn("something regrettable", self.bodies(carol))
        self.assert_no_console_errors()


class DirectoryTests(BrowserCase):
    def test_browse_and_join_an_active_room(self) -> None:
        """ "Browse active rooms" lists the rooms with people in them, busiest
        first, with counts; clicking one joins it."""
        alice = self.sign_up("alice")
        bob = self.sign_up("bob")
        self.join(alice, "garden")
        self.join(alice, "lobby")
        self.join(bob, "lobby")
        carol = self.sign_up("carol")
        carol.get_by_role("button", name="Browse active rooms").click()
        directory = carol.get_by_role("list", name="Active rooms (click to join)")
        expect(directory.locator("button")).to_have_count(2)
        expect(directory.locator("button").nth(0)).to_contain_text("# lobby")
        expect(directory.locator("button").nth(0)).to_contain_text("2")
        expect(directory.locator("button").nth(1)).to_contain_text("# garden")
        self.shot(carol, "directory")
        # A button's name is what it shows (with "online" for screen readers).
        directory.get_by_role("button", name="# garden 1 online").click()
        expect(carol.locator("#conv-title")).to_have_text("# garden")
        self.say(carol, "found you via the directory")
        alice.locator("#room-list button[data-room='garden']").click()
        self.expect_message(alice, "carol", "found you via the directory")
        self.assert_no_console_errors()


class DirectHistoryTests(BrowserCase):
    server_args = ("--rate-limit", "0")

    def test_load_older_direct_messages(self) -> None:
        """A long conversation shows its newest page; scrolling to the top
        brings the rest, in order, and says where it begins."""
        alice = self.sign_up("alice")
        bob = self.account("bob")
        status, body = self.server.request(
            "/login", "POST", {"nickname": bob[0], "password": bob[1]}
        )
        self.assertEqual(status, 200)
        app = self.exits.enter_context(
            connect(self.server.ws_url("/ws"), open_timeout=IO_TIMEOUT, close_timeout=IO_TIMEOUT)
        )
        app.send(json.dumps({"type": "auth", "body": json.loads(body)["token"]}))
        self.wait_frame(app, lambda f: f.get("type") == "ready")
        for n in range(1, 56):
            app.send(json.dumps({"type": "chat", "to": "alice", "content": f"note {n}", "id": n}))
        self.wait_frame(app, lambda f: f.get("type") == "ack" and f.get("id") == 55)
        alice.locator("#dm-list button[data-dm='bob']").click()
        self.expect_message(alice, "bob", "note 55")
        alice.reload()  # from here on, only the stored conversation
        self.expect_connected(alice, "alice")
        alice.locator("#dm-list button[data-dm='bob']").click()
        expect(alice.locator("#log li.msg")).to_have_count(50)
        alice.get_by_role("log", name="Direct messages with bob").evaluate("e => e.scrollTop = 0")
        expect(alice.locator("#log li.msg")).to_have_count(55)
        self.assertEqual(self.bodies(alice), [f"note {n}" for n in range(1, 56)])
        # The short page was the first one: said so, nothing more to load.
        expect(alice.locator("#log li.system")).to_have_text(
            ["This is the beginning of the conversation."]
        )
        expect(alice.locator(".log-loading")).to_be_hidden()
        self.assert_no_console_errors()


class PasswordTests(BrowserCase):
    def test_change_password(self) -> None:
        """The Password dialog: mistakes are said in the dialog; a change
        keeps this window signed in (a reload reconnects with the token the
        page got for the new password), and only the new password works."""
        page = self.sign_up("alice")
        page.get_by_role("button", name="Password", exact=True).click()
        dialog = page.get_by_role("dialog", name="Change your password")
        expect(dialog).to_be_visible()
        expect(page.get_by_label("Current password", exact=True)).to_be_focused()
        page.get_by_label("Current password", exact=True).fill("not-my-password")
        page.get_by_label("New password", exact=True).fill("a-new-one-42")
        page.get_by_label("Repeat the new password", exact=True).fill("a-new-one-42")
        page.get_by_role("button", name="Change password", exact=True).click()
        expect(page.locator("#password-error")).to_have_text("That is not your current password.")
        self.shot(page, "password-dialog")
        page.get_by_label("Current password", exact=True).fill("alice-password")
        page.get_by_label("Repeat the new password", exact=True).fill("typo")
        page.get_by_role("button", name="Change password", exact=True).click()
        expect(page.locator("#password-error")).to_have_text("The new passwords do not match.")
        page.get_by_label("Repeat the new password", exact=True).fill("a-new-one-42")
        page.get_by_role("button", name="Change password", exact=True).click()
        expect(dialog).to_be_hidden()
        expect(page.locator("#alert-text")).to_have_text("Your password was changed.")
        expect(page.locator("#alert")).to_have_class(re.compile(r"\bgood\b"))  # not an error
        self.shot(page, "password-changed")

        old, new = ("alice", "alice-password"), ("alice", "a-new-one-42")
        self.assertEqual(self.server.request("/history/lobby", auth=old)[0], 401)
        self.assertEqual(self.server.request("/history/lobby", auth=new)[0], 200)
        page.reload()
        self.expect_connected(page, "alice")
        self.join(page, "lobby")
        self.say(page, "still here")
        self.expect_message(page, "alice", "still here")
        # Chromium logs every 4xx answer to fetch() as a console error.
        self.expected_console.append(re.compile(r"Failed to load resource: .* 401 "))
        self.assert_no_console_errors()


class PhoneAndKeyboardTests(BrowserCase):
    def test_phone_width_keyboard_only_and_logout(self) -> None:
        """At 390 px wide, with only the keyboard: register, join, send,
        switch rooms in the room drawer, log out. The conversation fills the
        screen, nothing is wider than it, and every control is a touch
        target of at least 44 by 44 px."""
        bob = self.sign_up("bob")
        self.join(bob, "lobby")

        page = self.open_page("alice", PHONE)
        page.get_by_label("Nickname", exact=True).focus()
        page.keyboard.type("alice")
        page.keyboard.press("Tab")
        page.keyboard.type("alice-password")
        page.keyboard.press("Tab")  # "Keep me signed in on this device"
        page.keyboard.press("Tab")  # "Log in"
        page.keyboard.press("Tab")  # "Register"
        expect(page.get_by_role("button", name="Register", exact=True)).to_be_focused()
        page.keyboard.press("Enter")
        self.expect_connected(page, "alice")
        # No room yet: the room drawer is open, with the room field focused.
        rooms_button = page.get_by_role("button", name="Rooms", exact=True)
        expect(rooms_button).to_have_attribute("aria-expanded", "true")
        expect(page.get_by_label("Room", exact=True)).to_be_focused()
        self.assert_touch_targets(page)
        page.keyboard.type("lobby")
        page.keyboard.press("Enter")
        # Picking a room closes the drawer and puts the cursor in the box.
        expect(page.get_by_label("Message", exact=True)).to_be_focused()
        expect(page.locator("#sidebar")).not_to_be_in_viewport()
        expect(rooms_button).to_have_attribute("aria-expanded", "false")
        page.keyboard.type("typed on a phone, sent with Enter")
        page.keyboard.press("Enter")
        self.expect_message(bob, "alice", "typed on a phone, sent with Enter")
        self.say(bob, "looks fine on my desktop")
        self.expect_message(page, "bob", "looks fine on my desktop")
        self.assert_fills_the_screen(page)
        self.assert_touch_targets(page)

        # The drawer opens with its button and closes with Escape, giving
        # the focus back.
        rooms_button.focus()
        page.keyboard.press("Enter")
        expect(page.get_by_label("Room", exact=True)).to_be_focused()
        page.keyboard.press("Escape")
        expect(rooms_button).to_be_focused()
        expect(page.locator("#sidebar")).not_to_be_in_viewport()
        page.keyboard.press("Enter")
        page.keyboard.type("garden")
        page.keyboard.press("Enter")
        expect(page.locator("#conv-title")).to_have_text("# garden")
        self.say(bob, "anyone in the lobby?")
        rooms_button.click()
        unread = page.locator("#room-list button[data-room='lobby']")
        expect(unread).to_contain_text("1")
        self.shot(page, "phone-rooms-drawer")
        unread.focus()
        page.keyboard.press("Enter")
        expect(page.locator("#conv-title")).to_have_text("# lobby")
        expect(page.locator("#sidebar")).not_to_be_in_viewport()
        self.expect_message(page, "bob", "anyone in the lobby?")

        # Who is online is the other drawer.
        page.get_by_role("button", name="People", exact=True).click()
        expect(
            page.locator("#people").get_by_role("button", name="bob", exact=True)
        ).to_be_visible()
        self.assert_touch_targets(page)
        page.keyboard.press("Escape")
        expect(page.locator("#people-panel")).not_to_be_in_viewport()

        width = page.evaluate("document.documentElement.scrollWidth")
        self.assertLessEqual(width, PHONE["width"])
        self.shot(page, "phone", full_page=True)

        token = json.loads(page.evaluate("sessionStorage.getItem('parkchat.session')"))["token"]
        page.get_by_role("button", name="Log out").focus()
        page.keyboard.press("Enter")
        expect(page.get_by_label("Nickname", exact=True)).to_be_focused()
        expect(page.get_by_role("status")).to_have_text("Not connected")
        self.assertIsNone(page.evaluate("sessionStorage.getItem('parkchat.session')"))
        # The server forgot the token: a copy of it no longer works (asked
        # without changing anything: a room socket refuses it before any
        # upgrade).
        bearer = {"Authorization": f"Bearer {token}"}
        deadline = time.monotonic() + 5
        while self.server.request("/ws/lobby", headers=bearer)[0] != 401:
            self.assertLess(time.monotonic(), deadline, "the logged-out token still works")
            time.sleep(0.1)
        # bob sees alice go.
        expect(bob.locator("#log li.system").filter(has_text="alice left")).to_be_visible()
        self.assert_no_console_errors()

    def assert_fills_the_screen(self, page: Page) -> None:
        """The conversation takes (nearly) the whole screen, and the page
        itself does not scroll: only the messages do."""
        box = page.locator("main.conversation").bounding_box()
        assert box is not None
        self.assertGreaterEqual(box["width"], PHONE["width"] - 16)
        self.assertGreaterEqual(box["height"], PHONE["height"] * 0.85)
        self.assertLessEqual(
            page.evaluate("document.documentElement.scrollHeight"), PHONE["height"]
        )

    def assert_touch_targets(self, page: Page) -> None:
        """Every control on screen is at least 44 x 44 px (links inside
        message text are inline, and exempt)."""
        small = page.evaluate(
            """() => [...document.querySelectorAll(
                  'button, input, textarea, select, a[href], [tabindex="0"]')]
                .filter((e) => !e.closest('.msg-body') && e.getClientRects().length > 0
                  && getComputedStyle(e).visibility !== 'hidden')
                .map((e) => {
                  const r = e.getBoundingClientRect();
                  const name = e.id || e.textContent.trim().slice(0, 30) || e.tagName;
                  return { name, width: Math.round(r.width), height: Math.round(r.height) };
                })
                .filter((t) => t.width < 44 || t.height < 44)"""
        )
        self.assertEqual(small, [], "controls smaller than 44 x 44 px")


class ComposerTests(BrowserCase):
    def test_multi_line_messages(self) -> None:
        """Shift+Enter starts a new line and Enter sends; a pasted block
        keeps its new lines; the box grows to a few lines, then scrolls; the
        message arrives with its new lines and is shown on several lines."""
        alice = self.sign_up("alice", permissions=["clipboard-read", "clipboard-write"])
        bob = self.sign_up("bob")
        for page in (alice, bob):
            self.join(page, "lobby")
        carol = self.room_socket("lobby", self.account("carol"))
        box = alice.get_by_label("Message", exact=True)
        one_line = box.bounding_box()
        assert one_line is not None

        box.focus()
        alice.keyboard.type("first line")
        alice.keyboard.press("Shift+Enter")
        alice.keyboard.type("second line")
        expect(box).to_have_value("first line\nsecond line")
        two_lines = box.bounding_box()
        assert two_lines is not None
        self.assertGreater(two_lines["height"], one_line["height"])
        alice.keyboard.press("Enter")
        expect(box).to_have_value("")
        self.wait_content(carol, "first line\nsecond line")
        self.expect_message(bob, "alice", "first line")
        shown = bob.locator("#log li.msg .msg-body").last
        self.assertEqual(shown.evaluate("e => e.innerText"), "first line\nsecond line")
        line_height = float(shown.evaluate("e => parseFloat(getComputedStyle(e).lineHeight)"))
        body_box = shown.bounding_box()
        assert body_box is not None
        self.assertGreaterEqual(body_box["height"], 2 * line_height - 1)

        # A paste from the clipboard (Ctrl+V) keeps the code's new lines.
        code = "def park():\n    return 'open'\n\nprint(park())"
        alice.evaluate("text => navigator.clipboard.writeText(text)", code)
        box.focus()
        alice.keyboard.press("ControlOrMeta+V")
        expect(box).to_have_value(code)
        box.press("Enter")
        self.wait_content(carol, code)
        self.expect_message(bob, "alice", "def park():")
        self.assertEqual(
            bob.locator("#log li.msg .msg-body").last.evaluate("e => e.innerText"), code
        )

        # Twenty lines: the box stops growing at a few and scrolls instead.
        box.fill("\n".join(f"line {n}" for n in range(1, 21)))
        tall = box.evaluate("e => ({client: e.clientHeight, scroll: e.scrollHeight})")
        self.assertLess(tall["client"], tall["scroll"])
        self.assertLessEqual(tall["client"], 8 * line_height)
        self.shot(alice, "multi-line")
        self.assert_no_console_errors()


class RichTextTests(BrowserCase):
    def test_links_and_code(self) -> None:
        """http(s) URLs become links that open in a new tab without a
        referrer or a handle on this page; other schemes stay text;
        backticks make inline code and code blocks; markup stays text."""
        alice = self.sign_up("alice")
        self.join(alice, "lobby")
        carol = self.room_socket("lobby", self.account("carol"))
        messages = [
            "map at https://example.com/park_(north)?a=1&b=2, or (http://example.org/x).",
            "javascript:alert(1) and JavaScript:alert(2) and data:text/html,<b>x</b> and ftp://x.test",
            "run `rm -rf /tmp/cache` then `https://not.a/link`",
            "```python\nif park.open:\n    go('<b>now</b>')\n```",
            "<a href='https://evil.test/'>click</a>",
        ]
        for text in messages:
            carol.send(json.dumps({"content": text}))
        self.expect_message(alice, "carol", "click</a>")
        bodies = alice.locator("#log li.msg .msg-body")

        links = bodies.nth(0).locator("a")
        expect(links).to_have_count(2)
        self.assertEqual(
            links.evaluate_all("as => as.map((a) => [a.href, a.textContent, a.rel, a.target])"),
            [
                [
                    "https://example.com/park_(north)?a=1&b=2",
                    "https://example.com/park_(north)?a=1&b=2",
                    "noopener noreferrer",
                    "_blank",
                ],
                ["http://example.org/x", "http://example.org/x", "noopener noreferrer", "_blank"],
            ],
        )
        expect(bodies.nth(0)).to_have_text(messages[0])
        # Other schemes are text, whatever their case.
        expect(bodies.nth(1).locator("a")).to_have_count(0)
        expect(bodies.nth(1)).to_have_text(messages[1])
        # Inline code, and no link inside code.
        self.assertEqual(
            bodies.nth(2).locator("code").all_text_contents(),
            ["rm -rf /tmp/cache", "https://not.a/link"],
        )
        expect(bodies.nth(2).locator("a")).to_have_count(0)
        # A code block keeps its lines; the language line is not shown.
        block = bodies.nth(3).locator("pre > code")
        expect(block).to_have_text("if park.open:\n    go('<b>now</b>')")
        expect(block).to_have_attribute("data-language", "python")
        # Markup is text: the only link is the URL found in it.
        expect(bodies.nth(4)).to_have_text(messages[4])
        self.assertEqual(bodies.nth(4).locator("a").all_text_contents(), ["https://evil.test/"])
        for selector in ("#log b", "#log a[href^='javascript']", "#log a[href^='data']"):
            self.assertEqual(alice.locator(selector).count(), 0, selector)
        self.shot(alice, "rich-text")
        self.assert_no_console_errors()


class PresenceTests(BrowserCase):
    def test_joins_and_leaves_are_collapsed(self) -> None:
        """Five people joining one after another are one line; leaving after
        a message, another line; a room of comings and goings stays calm."""
        alice = self.sign_up("alice")
        self.join(alice, "lobby")
        names = ["carol", "dave", "erin", "frank", "gina"]
        sockets = [self.room_socket("lobby", self.account(name)) for name in names]
        presence = alice.locator("#log li.presence")
        expect(presence).to_have_count(1)
        expect(presence).to_have_text(re.compile(r"carol, dave and 3 others joined$"))
        self.assertEqual(presence.get_attribute("title"), ", ".join(names))
        expect(alice.locator("#conv-meta")).to_have_text("6 online")

        sockets[0].send(json.dumps({"content": "hello all"}))
        self.expect_message(alice, "carol", "hello all")
        for client in sockets[1:3]:
            client.close()
        expect(presence).to_have_count(2)
        expect(presence.last).to_have_text(re.compile(r"dave and erin left$"))
        # Coming back in the same run says so rather than adding lines.
        self.room_socket("lobby", ("dave", "dave-password"))
        expect(presence.last).to_have_text(re.compile(r"erin left; dave left and came back$"))
        expect(presence).to_have_count(2)
        self.shot(alice, "presence")
        self.assert_no_console_errors()


class BidiTests(BrowserCase):
    def test_right_to_left_and_overrides_stay_in_their_message(self) -> None:
        """A Hebrew message is laid out right to left; a message with an
        unterminated RIGHT-TO-LEFT OVERRIDE (U+202E) reverses only its own
        text: not its sender's name, not the next message."""
        alice = self.sign_up("alice")
        self.join(alice, "lobby")
        carol = self.room_socket("lobby", self.account("carol"))
        for text in ("שלום לכולם", "\u202eevil override", "hello world", "ordinary text"):
            carol.send(json.dumps({"content": text}))
        self.expect_message(alice, "carol", "ordinary text")
        items = alice.locator("#log li.msg")
        hebrew, override, after = items.nth(0), items.nth(1), items.nth(2)

        self.assertEqual(self.direction(hebrew.locator(".msg-body")), "rtl")
        self.assertEqual(self.direction(after.locator(".msg-body")), "ltr")
        # Each name and body is isolated.
        for item in (hebrew, override, after):
            for part in (".msg-user", ".msg-body"):
                self.assertEqual(item.locator(part).get_attribute("dir"), "auto")
        # The override reverses its own text (drawn right to left)...
        self.assertEqual(self.glyph_order(override.locator(".msg-body"), 1), "rtl")
        # ...but not the name beside it, nor the next message or its name.
        self.assertEqual(self.glyph_order(override.locator(".msg-user"), 0), "ltr")
        self.assertEqual(self.glyph_order(after.locator(".msg-body"), 0), "ltr")
        self.assertEqual(self.glyph_order(after.locator(".msg-user"), 0), "ltr")
        # The name is laid out before (left of) the text on every line.
        for item in (override, after):
            name = item.locator(".msg-user").bounding_box()
            time_box = item.locator(".msg-time").bounding_box()
            assert name is not None and time_box is not None
            self.assertLess(time_box["x"], name["x"])
        self.shot(alice, "bidi")
        self.assert_no_console_errors()

    def direction(self, locator: Any) -> str:
        return str(locator.evaluate("e => getComputedStyle(e).direction"))

    def glyph_order(self, locator: Any, start: int) -> str:
        """Whether the text of an element from character ``start`` on is
        drawn left to right or right to left (the x of its first and last
        characters, from a Range over its text; a closing bidi control the
        server appended, which has no glyph, is not the last character)."""
        return str(
            locator.evaluate(
                """(e, start) => {
                  const text = e.firstChild;
                  const x = (i) => {
                    const range = document.createRange();
                    range.setStart(text, i);
                    range.setEnd(text, i + 1);
                    return range.getBoundingClientRect().x;
                  };
                  let end = text.length - 1;
                  while (end > start && /[\u202a-\u202e\u2066-\u2069]/.test(text.data[end])) end--;
                  return x(start) < x(end) ? "ltr" : "rtl";
                }""",
                start,
            )
        )


class GuestBadgeTests(BrowserCase):
    def test_a_guest_is_marked(self) -> None:
        """A line-protocol guest's message carries a "guest" badge (as
        text, beside the name, outside it) and is not the viewer's own; an
        account's message has no badge (issue 15)."""
        alice = self.sign_up("alice")
        self.join(alice, "lobby")
        zed = self.line_client("zed", "lobby")
        zed.send_line("hello from a guest")
        self.expect_message(alice, "zed", "hello from a guest")
        item = alice.locator("#log li.msg").filter(has_text="hello from a guest").last
        expect(item.locator(".guest-badge")).to_have_text("guest")
        expect(item).not_to_have_class(re.compile(r"\bmine\b"))
        self.say(alice, "hello zed")
        mine = alice.locator("#log li.msg.mine").filter(has_text="hello zed").last
        expect(mine.locator(".guest-badge")).to_have_count(0)
        self.shot(alice, "guest-badge")
        self.assert_no_console_errors()


class AttentionTests(BrowserCase):
    def test_title_badge_and_notifications_in_a_hidden_tab(self) -> None:
        """While alice's tab is hidden, new messages count in its title and a
        direct message or a mention of her is a notification; permission is
        asked for only when she presses the button; a muted room adds
        nothing unless it mentions her; showing the tab clears the count."""
        alice = self.sign_up("alice", init_script=ATTENTION_PROBE)
        self.join(alice, "lobby")
        bob = self.sign_up("bob")
        self.join(bob, "lobby")
        self.say(bob, "morning")
        self.expect_message(alice, "bob", "morning")
        self.assertEqual(alice.evaluate("window.__permissionRequests"), [])
        toggle = alice.get_by_role("button", name="Notifications", exact=True)
        expect(toggle).to_have_attribute("aria-pressed", "false")
        toggle.click()
        expect(toggle).to_have_attribute("aria-pressed", "true")
        # Asked once, from the click.
        self.assertEqual(alice.evaluate("window.__permissionRequests"), [True])

        alice.evaluate("window.__setHidden(true)")
        self.say(bob, "anyone up for frisbee?")
        expect(alice).to_have_title("(1) parkchat")
        self.say(bob, "hey @Alice, bring the frisbee")
        expect(alice).to_have_title("(2) parkchat")
        mention = alice.locator("#log li.msg.mention")
        expect(mention).to_have_count(1)
        expect(mention).to_contain_text("bring the frisbee")
        # A mention is a notification; an ordinary message is not.
        self.assertEqual(
            alice.evaluate("window.__notifications"),
            [
                {
                    "title": "bob in #lobby",
                    "body": "hey @Alice, bring the frisbee",
                    "tag": "room:lobby",
                }
            ],
        )
        # "@alicexyz" and an e-mail address are not mentions.
        self.say(bob, "ask @alicexyz or write to bob@alice.test")
        expect(alice).to_have_title("(3) parkchat")
        expect(mention).to_have_count(1)

        # A direct message is a notification.
        bob.locator("#people").get_by_role("button", name="alice", exact=True).click()
        self.say(bob, "psst")
        expect(alice).to_have_title("(4) parkchat")
        self.assertEqual(
            alice.evaluate("window.__notifications.at(-1)"),
            {"title": "bob", "body": "psst", "tag": "dm:bob"},
        )

        # Muted: the room adds nothing, unless it mentions alice.
        alice.locator("#room-list button[data-room='lobby']").click()
        alice.get_by_role("button", name="Mute", exact=True).click()
        expect(alice.get_by_role("button", name="Mute", exact=True)).to_have_attribute(
            "aria-pressed", "true"
        )
        bob.locator("#room-list button[data-room='lobby']").click()
        self.say(bob, "just chatting")
        self.expect_message(alice, "bob", "just chatting")
        expect(alice).to_have_title("(4) parkchat")
        self.say(bob, "@alice this one matters")
        expect(alice).to_have_title("(5) parkchat")
        self.assertEqual(alice.evaluate("window.__notifications.length"), 3)

        # Back in view: the count goes.
        alice.evaluate("window.__setHidden(false)")
        expect(alice).to_have_title("parkchat")
        # The mute is remembered in this browser for this account.
        alice.reload()
        self.expect_connected(alice, "alice")
        expect(alice.locator("#room-list button[data-room='lobby']")).to_contain_text("muted")
        expect(alice.get_by_role("button", name="Mute", exact=True)).to_have_attribute(
            "aria-pressed", "true"
        )
        self.assert_no_console_errors()


class ScrollingTests(BrowserCase):
    server_args = ("--rate-limit", "0")

    def test_long_room_keeps_a_small_page(self) -> None:
        """1,300 messages into an open room: a hundred items at most are on
        the page; scrolling up shows a "new messages below" button when more
        arrive, and goes all the way back to the first message (the page
        keeps 1,000 in memory: the oldest come from the server again)."""
        alice = self.sign_up("alice")
        self.join(alice, "long")
        carol = self.room_socket("long", self.account("carol"))
        total = 1300
        for n in range(1, total + 1):
            carol.send(json.dumps({"content": f"m {n}"}))
        self.expect_message(alice, "carol", f"m {total}", timeout=30_000)
        self.assertLessEqual(alice.locator("#log li").count(), 100)
        self.assertEqual(self.bodies(alice)[-1], f"m {total}")

        log = alice.get_by_role("log", name="Messages in long")
        log.evaluate("e => e.scrollTop = e.scrollHeight / 3")
        jump = alice.locator(".jump-to-end")
        carol.send(json.dumps({"content": "while you read"}))
        expect(jump).to_have_text("1 new message below")
        self.shot(alice, "new-messages-below")
        jump.click()
        expect(jump).to_be_hidden()
        expect(alice.locator("#log li.msg").last).to_be_in_viewport()
        self.assertEqual(self.bodies(alice)[-1], "while you read")

        # All the way up, never more than a few hundred items at once.
        beginning = alice.locator("#log li.system").filter(
            has_text="This is the beginning of the room."
        )
        most = 0
        for _ in range(200):
            if beginning.count() > 0:
                break
            log.evaluate("e => e.scrollTop = 0")
            alice.wait_for_timeout(50)
            most = max(most, alice.locator("#log li").count())
        expect(beginning).to_have_count(1)
        self.assertLessEqual(most, 250)
        self.assertEqual(self.bodies(alice)[:3], ["m 1", "m 2", "m 3"])
        self.shot(alice, "scrolled-to-the-beginning")
        self.assert_no_console_errors()


class CalmErrorTests(BrowserCase):
    def test_unknown_names_do_not_come_back_and_passing_errors_go(self) -> None:
        """A conversation with a name that is nobody's is said once and
        dropped, so it does not come back, nor its error, on the next reload
        (not even from a tab that saved it before this was fixed); an error
        about one action goes away by itself after ten seconds."""
        alice = self.sign_up("alice")
        alert = alice.get_by_role("alert")
        alice.get_by_label("Direct message to", exact=True).fill("nobody")
        alice.get_by_role("button", name="Open", exact=True).click()
        expect(alert).to_have_text(re.compile("There is no user named nobody"))
        expect(alice.locator("#dm-list button")).to_have_count(0)

        # A tab that had kept the conversation (as the page did before).
        alice.evaluate("sessionStorage.setItem('parkchat.dms', JSON.stringify(['nobody']))")
        alice.reload()
        self.expect_connected(alice, "alice")
        self.join(alice, "lobby")
        self.say(alice, "after the reload")
        expect(alice.locator("#dm-list button")).to_have_count(0)
        expect(alert).to_be_hidden()
        self.assertEqual(alice.evaluate("sessionStorage.getItem('parkchat.dms')"), "[]")

        # Time in the page is the test's from here: the alert's timer runs out.
        alice.clock.install()
        alice.get_by_label("Direct message to", exact=True).fill("nobody either")
        alice.get_by_role("button", name="Open", exact=True).click()
        expect(alert).to_have_text(re.compile("There is no user named nobody either"))
        alice.clock.run_for(9_000)
        expect(alert).to_be_visible()
        alice.clock.run_for(2_000)
        expect(alert).to_be_hidden()
        self.assert_no_console_errors()


class AccessibilityTests(BrowserCase):
    """axe-core (the maintained engine, as bundled by the
    axe-playwright-python package) finds no serious or critical problem in
    the light, dark and phone layouts, logged out and in a busy room; the
    same pages are the screenshots in docs/."""

    #: Off by default in axe-core, and asked about in issue #16.
    EXTRA_RULES = ("label-content-name-mismatch", "target-size")

    def setUp(self) -> None:
        super().setUp()
        if Axe is None:
            if in_ci():
                self.fail("CI=true but axe-playwright-python is not installed")
            raise SkipTest("axe-playwright-python is not installed (pip install '.[test]')")

    def test_axe_in_three_layouts(self) -> None:
        """Light desktop, dark desktop (prefers-color-scheme: dark) and a
        phone (with each drawer open too)."""
        bob = self.sign_up("bob")
        self.join(bob, "lobby")
        self.account("alice")
        for layout, viewport, options in (
            ("light", DESKTOP, {"color_scheme": "light"}),
            ("dark", DESKTOP, {"color_scheme": "dark"}),
            ("phone", PHONE, {"color_scheme": "light"}),
        ):
            with self.subTest(layout=layout):
                page = self.open_page(f"alice-{layout}", viewport, **options)
                self.assert_accessible(page, f"{layout} login")
                self.log_in("alice", page)
                self.join(page, "lobby")
                self.fill_room(bob, page, layout)
                self.assert_accessible(page, f"{layout} room")
                if layout == "phone":
                    for drawer, panel in (("Rooms", "#sidebar"), ("People", "#people-panel")):
                        page.get_by_role("button", name=drawer, exact=True).click()
                        if drawer == "Rooms":
                            self.browse(page)
                        self.assert_accessible(page, f"phone {drawer} drawer")
                        page.keyboard.press("Escape")
                        expect(page.locator(panel)).not_to_be_in_viewport()
                else:
                    self.browse(page)
                    self.assert_accessible(page, f"{layout} room with the directory")
                self.docs_screenshot(page, layout)
        self.assert_no_console_errors()

    def fill_room(self, bob: Page, alice: Page, layout: str) -> None:
        """A room as a screenshot should show it: people, a link, code, a
        mention, a reply of alice's."""
        self.say(bob, "Morning! The map of the park: https://example.com/park-map")
        self.say(
            bob,
            "@alice can you check the opening hours? `GET /hours` returns",
            shown="GET /hours returns",
        )
        self.say(
            bob,
            '```json\n{"open": "08:00", "close": "20:00"}\n```',
            shown='{"open": "08:00", "close": "20:00"}',
        )
        self.say(alice, f"On it: 8 to 8 ({layout} layout). See you at the fountain!")
        self.expect_message(alice, "bob", '"close"')

    def browse(self, page: Page) -> None:
        """Open the directory of active rooms (more buttons to check)."""
        page.get_by_role("button", name="Browse active rooms").click()
        expect(page.locator("#directory button").first).to_be_visible()

    def assert_accessible(self, page: Page, where: str) -> None:
        assert Axe is not None
        options = {
            "resultTypes": ["violations"],
            "rules": {rule: {"enabled": True} for rule in self.EXTRA_RULES},
        }
        results = Axe().run(page, options=options)
        serious = [
            (v["id"], v["impact"], [n["target"] for n in v["nodes"]])
            for v in results.response["violations"]
            if v["impact"] in ("serious", "critical")
        ]
        report = self.artifacts / f"{self.short_id()}-axe-{where.replace(' ', '-')}.json"
        report.write_text(json.dumps(results.response["violations"], indent=2))
        self.assertEqual(serious, [], f"axe-core in the {where} layout (details: {report})")

    def docs_screenshot(self, page: Page, layout: str) -> None:
        path = self.shot(page, f"layout-{layout}")
        if os.environ.get("PARKCHAT_UPDATE_SCREENSHOT") == "1":
            (ROOT / "docs" / f"screenshot-{layout}.png").write_bytes(path.read_bytes())
