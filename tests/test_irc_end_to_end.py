"""IRC against a real ``twistd -n parkchat --irc ...``, with an independent
IRC client library (PyPI ``irc``, jaraco's), side by side with the other
surfaces: the page in Chromium, an app on ``/ws`` (the ``websockets``
library) and a terminal on ``--tcp``, all in one room.

The browser test is skipped without Playwright and Chromium, as the other
browser tests are (except under CI, where it must run); the others need
nothing but the server.
"""

from __future__ import annotations

import json
import socket
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SkipTest, SynchronousTestCase

import irc.client
from websockets.sync.client import ClientConnection, connect

from tests.e2e_support import LOOPBACK, LineSocket, ParkchatProcess, free_port
from tests.test_browser import BrowserCase, expect

IO_TIMEOUT = 10.0
CAPS = ("server-time", "message-tags", "batch", "draft/chathistory")


def tags_of(event: Any) -> dict[str, str]:
    return {tag["key"]: tag["value"] for tag in event.tags or ()}


class IrcPerson:
    """Someone on a real IRC client library: every event is recorded;
    ``wait`` runs the client until a new one matches."""

    def __init__(
        self,
        address: tuple[str, int],
        nick: str,
        *,
        password: str | None = None,
        sasl: bool = False,
        caps: tuple[str, ...] = (),
    ) -> None:
        self.reactor = irc.client.Reactor()
        self.events: list[Any] = []
        self._seen = 0
        self.reactor.add_global_handler("all_events", self._record, -10)
        self.connection = self.reactor.server().connect(
            address[0], address[1], nick, password=password, sasl_login=nick if sasl else None
        )
        self.wait(lambda e: e.type == "welcome")
        if caps:
            self.connection.cap("REQ", *caps)
            self.wait(lambda e: e.type == "cap" and e.arguments[0] == "ACK")

    def _record(self, connection: Any, event: Any) -> None:
        self.events.append(event)

    def wait(self, match: Callable[[Any], bool], timeout: float = IO_TIMEOUT) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            while self._seen < len(self.events):
                event = self.events[self._seen]
                self._seen += 1
                if match(event):
                    return event
            if time.monotonic() > deadline:
                seen = [(e.type, e.source, e.target, e.arguments) for e in self.events[-20:]]
                raise AssertionError(f"no such IRC event in time; last ones: {seen}")
            self.reactor.process_once(0.05)

    def wait_message(self, sender: str, text: str, kind: str = "pubmsg") -> Any:
        return self.wait(
            lambda e: e.type == kind and e.source.nick == sender and e.arguments == [text]
        )

    def join(self, channel: str) -> list[str]:
        """Join; the names the server lists."""
        self.connection.join(channel)
        names = self.wait(lambda e: e.type == "namreply" and e.arguments[1] == channel)
        self.wait(lambda e: e.type == "endofnames")
        return list(names.arguments[2].split())

    def close(self) -> None:
        if self.connection.is_connected():
            self.connection.quit("bye")
            try:
                self.wait(lambda e: e.type == "disconnect", timeout=5)
            except AssertionError:
                self.connection.disconnect()


class IrcAppsMixin:
    """Clients of the other kinds, for tests that have ``self.server``."""

    server: ParkchatProcess
    addCleanup: Any
    fail: Any

    def login(self, nickname: str) -> str:
        status, body = self.server.request(
            "/login", "POST", {"username": nickname, "password": f"{nickname}-password"}
        )
        assert status == 200, body
        token: str = json.loads(body)["token"]
        return token

    def app(self, nickname: str) -> ClientConnection:
        """An app on /ws, logged in as ``nickname``."""
        client = connect(
            self.server.ws_url("/ws"),
            additional_headers={"Authorization": "Bearer " + self.login(nickname)},
            open_timeout=IO_TIMEOUT,
            close_timeout=IO_TIMEOUT,
        )
        self.addCleanup(client.close)
        self.frame(client, lambda f: f["type"] == "ready")
        return client

    def frame(self, client: ClientConnection, match: Callable[[dict[str, Any]], bool]) -> Any:
        deadline = time.monotonic() + IO_TIMEOUT
        while True:
            frame = json.loads(client.recv(timeout=max(0.01, deadline - time.monotonic())))
            if match(frame):
                return frame

    def terminal(self, name: str, room: str) -> LineSocket:
        line = LineSocket(self.server.tcp_address, timeout=IO_TIMEOUT)
        self.addCleanup(line.close)
        line.send_line(json.dumps({"name": name, "room": room, "notices": True}))
        return line

    def line_until(self, line: LineSocket, wanted: str) -> None:
        deadline = time.monotonic() + IO_TIMEOUT
        seen = []
        while time.monotonic() < deadline:
            text = line.read_line(timeout=max(0.01, deadline - time.monotonic()))
            if text == wanted:
                return
            seen.append(text)
        self.fail(f"no line {wanted!r}; got {seen!r}")

    def irc_person(self, nick: str, **kwargs: Any) -> IrcPerson:
        person = IrcPerson(self.server.irc_address, nick, **kwargs)
        self.addCleanup(person.close)
        return person


class EveryoneInOneRoomTests(IrcAppsMixin, BrowserCase):
    """The page, /ws, a terminal and IRC in one room."""

    def setUp(self) -> None:
        self.irc_port = free_port()
        self.server_args = ("--irc", f"tcp:{self.irc_port}:interface={LOOPBACK}")
        super().setUp()
        self.server.irc_port = self.irc_port

    def test_four_surfaces_one_room(self) -> None:
        """Each of alice (page), bob (/ws), mina (terminal) and carol (IRC,
        SASL) sees the others' messages, joins and leaves; carol and bob
        exchange direct messages."""
        for name in ("bob", "carol"):
            self.server.register(name, f"{name}-password")
        carol = self.irc_person("carol", password="carol-password", sasl=True, caps=CAPS)
        self.assertEqual(carol.join("#park"), ["carol"])

        alice = self.sign_up("alice")
        self.join(alice, "park")
        carol.wait(lambda e: e.type == "join" and e.source.nick == "alice")
        bob = self.app("bob")
        bob.send(json.dumps({"type": "join", "room": "park"}))
        self.frame(bob, lambda f: f["type"] == "joined")
        carol.wait(lambda e: e.type == "join" and e.source.nick == "bob")
        mina = self.terminal("mina", "park")
        carol.wait(lambda e: e.type == "join" and e.source.nick == "mina")
        expect(alice.locator("#people")).to_contain_text("carol")

        # carol on IRC -> everyone else
        carol.connection.privmsg("#park", "hello from irssi-land")
        self.expect_message(alice, "carol", "hello from irssi-land")
        self.frame(bob, lambda f: f.get("body") == "hello from irssi-land")
        self.line_until(mina, "carol:hello from irssi-land")
        # everyone else -> carol
        self.say(alice, "hi carol, from the page")
        carol.wait_message("alice", "hi carol, from the page")
        bob.send(json.dumps({"type": "message", "room": "park", "body": "and from an app"}))
        carol.wait_message("bob", "and from an app")
        mina.send_line("and a terminal")
        event = carol.wait_message("mina", "and a terminal")
        self.assertIn("msgid", tags_of(event))
        carol.connection.action("#park", "waves")
        self.line_until(mina, "carol:/me waves")

        # carol leaves and comes back: everyone is told
        carol.connection.part("#park", "brb")
        self.frame(bob, lambda f: f["type"] == "userleave" and f["username"] == "carol")
        self.line_until(mina, "*** carol has left the room")
        expect(alice.locator("#log li.system").filter(has_text="carol left")).to_be_visible()
        carol.join("#park")
        self.frame(bob, lambda f: f["type"] == "join" and f["username"] == "carol")
        self.line_until(mina, "*** carol has joined the room")
        # others leaving, seen on IRC: a terminal hanging up quits
        mina.send_line("/quit")
        event = carol.wait(lambda e: e.type == "quit" and e.source.nick == "mina")
        self.assertEqual(event.arguments, ["Connection closed"])

        # direct messages: IRC -> /ws and back
        carol.connection.privmsg("bob", "psst bob")
        dm = self.frame(bob, lambda f: f["type"] == "chat")
        self.assertEqual((dm["from"], dm["content"]), ("carol", "psst bob"))
        bob.send(json.dumps({"type": "chat", "to": "carol", "content": "hi carol, privately"}))
        event = carol.wait_message("bob", "hi carol, privately", kind="privmsg")
        self.assertTrue(tags_of(event)["msgid"].startswith("d"))
        self.shot(alice, "irc-room-alice")
        self.assert_no_console_errors()


class IrcServerTests(IrcAppsMixin, SynchronousTestCase):
    """IRC with no browser: history after a reconnect, and TLS."""

    def setUp(self) -> None:
        self.server = ParkchatProcess(Path(self.mktemp()), tcp=True, irc=True)
        self.server.start()
        self.addCleanup(self.server.stop)

    def test_chathistory_after_reconnect(self) -> None:
        """carol notes the msgid of the last message she saw, goes away,
        and after reconnecting CHATHISTORY LATEST from it gives exactly
        what she missed, oldest first, in a chathistory batch."""
        self.server.register("carol", "carol-password")
        carol = self.irc_person("carol", password="carol-password", caps=CAPS)
        carol.join("#park")
        mina = self.terminal("mina", "park")
        mina.send_line("before you left")
        last = tags_of(carol.wait_message("mina", "before you left"))["msgid"]
        carol.close()
        missed = ["while you were out 1", "while you were out 2", "while you were out 3"]
        for text in missed:
            mina.send_line(text)
            self.line_until(mina, f"~mina:{text}")  # a guest

        carol = self.irc_person("carol", password="carol-password", caps=CAPS)
        carol.connection.send_raw(f"CHATHISTORY LATEST #park msgid={last} 50")
        start = carol.wait(lambda e: e.type == "batch")
        self.assertEqual(start.target[0], "+")
        got = []
        while True:
            event = carol.wait(lambda e: e.type in ("pubmsg", "batch"))
            if event.type == "batch":
                self.assertEqual(event.target, "-" + start.target[1:])
                break
            self.assertEqual(tags_of(event)["batch"], start.target[1:])
            got.append(event.arguments[0])
        self.assertEqual(got, missed)

    def test_guest_refused_an_account_name(self) -> None:
        """A guest asking for an account's name gets 433, over a plain socket."""
        self.server.register("carol", "carol-password")
        with socket.create_connection(self.server.irc_address, timeout=IO_TIMEOUT) as sock:
            sock.sendall(b"NICK carol\r\nUSER c 0 * :c\r\n")
            data = b""
            while b" 433 " not in data:
                chunk = sock.recv(4096)
                self.assertTrue(chunk, data)
                data += chunk
        self.assertIn(b"registered account", data)


class IrcTlsTests(SynchronousTestCase):
    """``--irc ssl:...`` serves IRC over TLS (ircs)."""

    def test_ircs(self) -> None:
        try:
            from tests.test_tls import make_certificate
        except ImportError as e:  # pragma: no cover - cryptography comes with twisted[tls]
            raise SkipTest(f"cannot make a certificate: {e}") from None
        workdir = Path(self.mktemp()).resolve()
        workdir.mkdir()
        key, cert = make_certificate(workdir)
        port = free_port()
        server = ParkchatProcess(
            workdir / "server",
            tcp=False,
            args=["--irc", f"ssl:{port}:interface={LOOPBACK}:privateKey={key}:certKey={cert}"],
        )
        server.start()
        self.addCleanup(server.stop)
        context = ssl.create_default_context(cafile=str(cert))
        with (
            socket.create_connection((LOOPBACK, port), timeout=IO_TIMEOUT) as raw,
            context.wrap_socket(raw, server_hostname="localhost") as sock,
        ):
            sock.sendall(b"NICK mina\r\nUSER m 0 * :m\r\n")
            data = b""
            while b" 422 " not in data:
                chunk = sock.recv(4096)
                self.assertTrue(chunk, data)
                data += chunk
        self.assertIn(b":irc.parkchat 001 mina :Welcome", data)
