#!/usr/bin/env python3
"""How the browser page keeps up with a busy room (issue #16).

Starts a real ``twistd -n parkchat`` on loopback (SQLite, rate limit off),
opens the page in Debian's Chromium (Playwright, headless, desktop size),
logs in as ``reader`` and opens room ``bench``; a separate ``/ws`` client,
``sender``, then posts into the room:

1. **burst**: ``--burst`` messages (default 5,000) as fast as it can;
2. **steady**: ``--rate`` messages per second (default 100) for
   ``--seconds`` (default 60).

For each phase it measures, in the page:

* ``last_on_screen_ms``: from just after the last message was sent to the
  first animation frame in which it is the newest message in the log (a
  watcher in the page looks once per frame with ``requestAnimationFrame``;
  both ends read the same wall clock). In a burst this includes the server's own backlog:
  ``server_acked_all_s`` is when the sender had every ack (the server
  stores a message, then acks and broadcasts it), and
  ``on_screen_after_last_ack_ms`` the page's part, from the last ack to the
  frame that shows that message;
* ``longest_block_ms``: the longest main-thread task, from a
  ``PerformanceObserver`` of ``longtask`` entries (tasks over 50 ms; 0 means
  none was that long), with how many there were and their total;
* ``dom_elements`` / ``dom_nodes`` at the end (elements, and every node
  including text);
* steady only: ``max_lag_ms``, the most the page was behind the sender,
  sampled every 0.5 s (messages sent but not yet the newest on screen,
  divided by the rate);
* ``connection_lost``: whether the page's status line ever said the
  connection was lost (a long freeze misses the page's own pings).

It prints one JSON object. It is a benchmark, not a test: it takes about
two minutes and loads both cores.

Usage (from the repository root, with the project's venv)::

    python bench/page.py                       # the page in this checkout
    python bench/page.py --burst 1000 --seconds 10
    PYTHONPATH=/path/to/old/checkout python bench/page.py --label old

``PYTHONPATH`` makes the server (a subprocess that inherits it) import
``parkchat``, and so serve the page, from another checkout: that is how the
page before issue #16 was measured for docs/performance.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from playwright.sync_api import Page, sync_playwright  # noqa: E402
from websockets.sync.client import ClientConnection, connect  # noqa: E402

from tests.e2e_support import ParkchatProcess  # noqa: E402

CHROMIUM = os.environ.get("PARKCHAT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--no-first-run"]
ROOM = "bench"

#: Runs in the page before its own scripts: records long tasks and the
#: status line's texts.
PROBE = """
window.__longtasks = [];
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) window.__longtasks.push(entry.duration);
}).observe({ type: "longtask", buffered: true });
window.__statuses = [];
document.addEventListener("DOMContentLoaded", () => {
  const status = document.getElementById("status");
  new MutationObserver(() => window.__statuses.push(status.textContent)).observe(status, {
    childList: true, characterData: true, subtree: true,
  });
});
"""

#: The newest message body on screen (old page and new alike: the last
#: item of the open conversation's list).
NEWEST = """() => {
  const b = document.querySelector('#log li:last-child .msg-body');
  return b ? b.textContent : null;
}"""

#: Starts a watcher in the page that sets ``window.__seen`` to Date.now()
#: at the first animation frame in which ``body`` is the newest message.
WATCH = """(body) => {
  window.__seen = null;
  const tick = () => {
    const b = document.querySelector('#log li:last-child .msg-body');
    if (b && b.textContent === body) window.__seen = Date.now();
    else requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);
}"""


class Sender(threading.Thread):
    """Posts messages into the room from its own /ws connection; a second
    thread reads the acks so the socket never backs up."""

    def __init__(self, client: ClientConnection, bodies: list[str], rate: float | None) -> None:
        super().__init__(daemon=True)
        self.client = client
        self.bodies = bodies
        self.rate = rate
        self.sent = 0
        self.last_sent_ms = 0.0
        self.acks = 0
        self.last_ack_ms = 0.0
        self.started_ms = 0.0
        self.reader = threading.Thread(target=self.read_acks, daemon=True)

    def read_acks(self) -> None:
        while self.acks < len(self.bodies):
            try:
                frame = json.loads(self.client.recv(timeout=600))
            except TimeoutError:
                return
            if frame.get("type") == "ack":
                self.acks += 1
                self.last_ack_ms = time.time() * 1000
            elif frame.get("type") == "error":
                print(f"sender got an error: {frame}", file=sys.stderr)

    def run(self) -> None:
        self.reader.start()
        start = time.monotonic()
        self.started_ms = time.time() * 1000
        for n, body in enumerate(self.bodies):
            if self.rate:
                delay = start + n / self.rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            self.client.send(json.dumps({"type": "message", "room": ROOM, "body": body, "id": n}))
            self.sent = n + 1
        self.last_sent_ms = time.time() * 1000


def login_client(server: ParkchatProcess, nickname: str, password: str) -> ClientConnection:
    status, body = server.request("/login", "POST", {"nickname": nickname, "password": password})
    if status != 200:
        raise RuntimeError(f"login {nickname}: {status} {body!r}")
    client = connect(server.ws_url("/ws"), open_timeout=10, close_timeout=5, max_queue=None)
    client.__enter__()  # websockets 17 wants the context manager; closed by the caller
    client.send(json.dumps({"type": "auth", "body": json.loads(body)["token"]}))
    while json.loads(client.recv(timeout=10)).get("type") != "ready":
        pass
    client.send(json.dumps({"type": "join", "room": ROOM, "id": "j"}))
    while json.loads(client.recv(timeout=10)).get("type") != "joined":
        pass
    return client


def wait_until(page: Page, function: str, timeout_s: float, arg: Any = None) -> Any:
    """Poll ``function`` in the page until it returns something true (the
    page's CSP forbids the eval that Playwright's wait_for_function needs)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = page.evaluate(function, arg)
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"not true after {timeout_s} s: {function}")
        time.sleep(0.05)


def open_reader(page: Page, server: ParkchatProcess) -> None:
    page.goto(server.url("/"))
    page.get_by_label("Nickname", exact=True).fill("reader")
    page.get_by_label("Password", exact=True).fill("reader-password")
    page.get_by_role("button", name="Log in", exact=True).click()
    wait_until(
        page, "() => document.getElementById('status').textContent.startsWith('Connected')", 30
    )
    page.get_by_label("Room", exact=True).fill(ROOM)
    page.get_by_role("button", name="Join", exact=True).click()
    wait_until(
        page, "() => document.getElementById('conv-meta').textContent.includes('online')", 30
    )


def page_figures(page: Page) -> dict[str, Any]:
    return page.evaluate(
        """() => {
          const tasks = window.__longtasks;
          let nodes = 0;
          const walker = document.createTreeWalker(document, NodeFilter.SHOW_ALL);
          while (walker.nextNode()) nodes += 1;
          return {
            longest_block_ms: Math.round(Math.max(0, ...tasks)),
            long_tasks: tasks.length,
            long_tasks_total_ms: Math.round(tasks.reduce((a, b) => a + b, 0)),
            dom_elements: document.getElementsByTagName('*').length,
            dom_nodes: nodes + 1,
            connection_lost: window.__statuses.some((s) => /lost|Reconnect|Disconnected/.test(s)),
          };
        }"""
    )


def run_phase(
    page: Page,
    client: ClientConnection,
    name: str,
    count: int,
    rate: float | None,
    timeout_s: float,
) -> dict[str, Any]:
    text = "the quick brown fox jumps over the lazy dog"
    bodies = [f"{name} {n} of {count}: {text}" for n in range(1, count + 1)]
    page.evaluate("window.__longtasks = []; window.__statuses = []")
    page.evaluate(WATCH, bodies[-1])
    sender = Sender(client, bodies, rate)
    sender.start()
    lag_ms = 0.0
    if rate:
        # Sample how far behind the page is while the sender runs.
        while sender.is_alive():
            newest = page.evaluate(NEWEST) or ""
            shown = int(newest.split()[1]) if newest.startswith(f"{name} ") else 0
            lag_ms = max(lag_ms, (sender.sent - shown) / rate * 1000)
            time.sleep(0.5)
    try:
        seen_ms: float | None = wait_until(page, "() => window.__seen", timeout_s)
    except TimeoutError:
        seen_ms = None
    sender.join(timeout_s)
    # Let the last frames and any long task after them be recorded.
    time.sleep(2)
    figures = page_figures(page)
    result: dict[str, Any] = {
        "messages": count,
        "rate_per_s": rate,
        "send_s": round((sender.last_sent_ms - sender.started_ms) / 1000, 2),
        # None: not on screen within the phase's timeout.
        "last_on_screen_ms": None if seen_ms is None else round(seen_ms - sender.last_sent_ms),
        "server_acked_all_s": round((sender.last_ack_ms - sender.started_ms) / 1000, 2)
        if sender.acks == count
        else None,
        "on_screen_after_last_ack_ms": round(seen_ms - sender.last_ack_ms)
        if sender.acks == count and seen_ms is not None
        else None,
    }
    if rate:
        result["max_lag_ms"] = round(lag_ms)
    result.update(figures)
    if seen_ms is None:
        # What the page shows instead, and what its status line said.
        result["newest_on_screen"] = page.evaluate(NEWEST)
        result["statuses"] = page.evaluate("window.__statuses")
    return result


def machine() -> str:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    chromium = subprocess.run(
        [CHROMIUM, "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return (
        f"{os.cpu_count()} CPUs ({model}), Linux {platform.release()}, "
        f"Python {platform.python_version()}, {chromium}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--burst", type=int, default=5000, help="messages in the burst")
    parser.add_argument("--rate", type=float, default=100.0, help="steady messages per second")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the steady phase")
    parser.add_argument("--timeout", type=float, default=300.0, help="per phase, seconds")
    parser.add_argument("--label", default="", help="a name for this run in the output")
    args = parser.parse_args()
    if not (0 < args.burst <= 100_000 and 0 < args.rate <= 10_000 and 0 < args.seconds <= 3600):
        parser.error("burst, rate and seconds must be positive and bounded")

    with tempfile.TemporaryDirectory(prefix="parkchat-page-bench-") as tmp:
        server = ParkchatProcess(
            Path(tmp) / "server",
            args=("--rate-limit", "0"),
            env={"PARKCHAT_MAX_CONNECTIONS_PER_USER": "0", "PARKCHAT_MAX_CONNECTIONS_PER_IP": "0"},
        )
        server.start()
        try:
            server.register("reader", "reader-password")
            server.register("sender", "sender-password")
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                try:
                    context = browser.new_context(viewport={"width": 1000, "height": 640})
                    context.add_init_script(PROBE)
                    page = context.new_page()
                    open_reader(page, server)
                    client = login_client(server, "sender", "sender-password")
                    try:
                        burst = run_phase(page, client, "burst", args.burst, None, args.timeout)
                        steady_count = int(args.rate * args.seconds)
                        steady = run_phase(
                            page, client, "steady", steady_count, args.rate, args.timeout
                        )
                    finally:
                        client.close()
                finally:
                    browser.close()
        finally:
            server.stop()
    print(
        json.dumps(
            {
                "label": args.label,
                "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
                "machine": machine(),
                "load_average": [round(x, 2) for x in os.getloadavg()],
                "burst": burst,
                "steady": steady,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
