"""End to end: a real ``twistd -n parkchat`` process and independent clients.

Each test starts its own server on a free loopback port with an SQLite file
under ``self.mktemp()`` and talks to it with clients that share no code with
parkchat: the ``websockets`` library's synchronous client and
``urllib.request``. The server is another process, so these tests block in
client calls; every wait is bounded by a timeout, and every server started is
killed and reaped in cleanup.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from twisted.trial.unittest import TestCase

from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

TWISTD = str(Path(sys.executable).with_name("twistd"))
START_TIMEOUT = 15.0
IO_TIMEOUT = 5.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def basic(nickname: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{nickname}:{password}".encode()).decode("ascii")


class Server:
    """One ``twistd -n parkchat`` process on 127.0.0.1."""

    def __init__(self, directory: Path, extra_args: list[str]) -> None:
        self.directory = directory
        self.db = directory / "chat.db"
        self.extra_args = extra_args
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self) -> None:
        assert self.process is None or self.process.poll() is not None
        self.port = free_port()
        self.starts += 1
        log = open(self.directory / f"twistd-{self.starts}.log", "wb")
        args = [
            TWISTD,
            "-n",
            "--pidfile=",
            "--logfile=-",
            "parkchat",
            "--port",
            f"tcp:{self.port}:interface=127.0.0.1",
            "--db",
            str(self.db),
            "--bcrypt-rounds",
            "4",
            *self.extra_args,
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PARKCHAT_")}
        try:
            self.process = subprocess.Popen(
                args, cwd=self.directory, stdout=log, stderr=subprocess.STDOUT, env=env
            )
        finally:
            log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited at start:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.http + "/health", timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"server not up in {START_TIMEOUT} s:\n{self.log()}")

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def wait(self, timeout: float = 10.0) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def stop(self) -> None:
        """Kill the process if it still runs and reap it."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)

    def log(self) -> str:
        return "\n".join(
            p.read_text(errors="replace") for p in sorted(self.directory.glob("twistd-*.log"))
        )


class EndToEndCase(TestCase):
    """A server per test, and small blocking clients for it."""

    server_args: list[str] = ["--rate-limit", "0", "--access-log", "no"]

    def setUp(self) -> None:
        directory = Path(self.mktemp()).resolve()
        directory.mkdir(parents=True)
        self.server = Server(directory, self.server_args)
        self.addCleanup(self.server.stop)
        self.server.start()

    # -- REST ---------------------------------------------------------------

    def http(
        self,
        method: str,
        path: str,
        body: Any = None,
        auth: tuple[str, str] | None = None,
        raw: bytes | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        request = urllib.request.Request(self.server.http + path, data=data, method=method)
        if auth is not None:
            request.add_header("Authorization", basic(*auth))
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=IO_TIMEOUT) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as e:
            with e:
                return e.code, dict(e.headers), e.read()

    def register(self, nickname: str, password: str = "pw") -> None:
        status, _, body = self.http(
            "POST", "/register", {"nickname": nickname, "password": password}
        )
        self.assertEqual(status, 201, body)

    def history(self, room: str, auth: tuple[str, str], query: str = "") -> list[dict[str, Any]]:
        status, _, body = self.http("GET", f"/history/{room}{query}", auth=auth)
        self.assertEqual(status, 200, body)
        result = json.loads(body)
        assert isinstance(result, list)
        return result

    def full_history(self, room: str, auth: tuple[str, str]) -> list[dict[str, Any]]:
        """Every message of a room, paging forward 200 at a time."""
        messages: list[dict[str, Any]] = []
        after = 0
        for _ in range(10_000):
            page = self.history(room, auth, f"?limit=200&after={after}")
            if not page:
                return messages
            messages.extend(page)
            after = page[-1]["id"]
        raise AssertionError("history paging never ended")

    # -- WebSocket ------------------------------------------------------------

    @contextmanager
    def socket(self, nickname: str, room: str, password: str = "pw") -> Iterator[ClientConnection]:
        with connect(
            f"{self.server.ws}/ws/{room}",
            additional_headers={"Authorization": basic(nickname, password)},
            open_timeout=IO_TIMEOUT,
            close_timeout=IO_TIMEOUT,
            max_size=None,
        ) as ws:
            yield ws

    def recv(self, ws: ClientConnection) -> dict[str, Any]:
        message = ws.recv(timeout=IO_TIMEOUT)
        assert isinstance(message, str), message
        result = json.loads(message)
        assert isinstance(result, dict)
        return result

    def recv_until(self, ws: ClientConnection, content: str) -> list[dict[str, Any]]:
        """Frames up to and including the first one with ``content``."""
        frames = []
        for _ in range(1000):
            frame = self.recv(ws)
            frames.append(frame)
            if frame.get("content") == content:
                return frames
        raise AssertionError(f"{content!r} never arrived")

    def joined(self, ws: ClientConnection, nickname: str) -> None:
        """Read frames up to ``nickname``'s join notice."""
        self.recv_until(ws, f"{nickname} has joined the room")


def parse_timestamp(value: str) -> datetime:
    """An RFC 3339 UTC timestamp as the API sends it (``...Z``)."""
    assert value.endswith("Z"), value
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    assert parsed.utcoffset() is not None
    return parsed


class RestTests(EndToEndCase):
    """The REST API over a real socket."""

    def test_health(self) -> None:
        """``GET /health`` is ``200 OK``."""
        status, _, body = self.http("GET", "/health")
        self.assertEqual((status, body), (200, b"OK"))

    def test_register(self) -> None:
        """Registration is 201, a duplicate 409, bad JSON 400."""
        status, _, body = self.http("POST", "/register", {"nickname": "alice", "password": "pw"})
        self.assertEqual(status, 201)
        self.assertEqual(json.loads(body)["nickname"], "alice")
        status, _, body = self.http("POST", "/register", {"username": "Alice", "password": "x"})
        self.assertEqual(status, 409)
        self.assertEqual(json.loads(body)["error"], "nickname_taken")
        status, _, body = self.http("POST", "/register", raw=b"{not json")
        self.assertEqual(status, 400)
        self.assertEqual(set(json.loads(body)), {"error", "message"})

    def test_history_unauthorized(self) -> None:
        """``/history`` without or with bad credentials is 401 with the
        Basic challenge."""
        self.register("alice")
        for auth in (None, ("alice", "wrong"), ("nobody", "pw")):
            status, headers, _ = self.http("GET", "/history/lobby", auth=auth)
            self.assertEqual(status, 401)
            self.assertEqual(headers.get("WWW-Authenticate"), 'Basic realm="parkchat"')

    def test_history_unknown_room(self) -> None:
        """An unknown room's history is ``[]``."""
        self.register("alice")
        status, _, body = self.http("GET", "/history/empty", auth=("alice", "pw"))
        self.assertEqual((status, body), (200, b"[]"))


class WebSocketTests(EndToEndCase):
    """``/ws/{room}`` with the ``websockets`` client."""

    server_args = [*EndToEndCase.server_args, "--max-frame-size", "4096"]

    def setUp(self) -> None:
        super().setUp()
        for nickname in ("alice", "bob", "carol"):
            self.register(nickname)

    def test_unauthorized(self) -> None:
        """A bad password is refused with 401 and the Basic challenge."""
        with self.assertRaises(InvalidStatus) as caught:
            with self.socket("alice", "lobby", password="wrong"):
                pass
        response = caught.exception.response
        self.assertEqual(response.status_code, 401)
        self.assertEqual(response.headers["WWW-Authenticate"], 'Basic realm="parkchat"')

    def test_join_echo_leave(self) -> None:
        """Join notices reach everyone including the joiner; a message is
        echoed to its sender and delivered to the others with a real id and a
        zoned timestamp; leaving is announced to the rest."""
        with self.socket("alice", "lobby") as alice:
            first = self.recv(alice)
            self.assertEqual(first["type"], "system")
            self.assertEqual(first["content"], "alice has joined the room")
            with self.socket("bob", "lobby") as bob:
                self.assertEqual(self.recv(bob)["content"], "bob has joined the room")
                self.assertEqual(self.recv(alice)["content"], "bob has joined the room")
                bob.send(json.dumps({"content": "hi alice"}))
                echo = self.recv(bob)
                delivered = self.recv(alice)
            self.assertEqual(echo, delivered)
            self.assertEqual(echo["type"], "chat")
            self.assertEqual(echo["nickname"], "bob")
            self.assertEqual(echo["chat_room"], "lobby")
            self.assertEqual(echo["content"], "hi alice")
            self.assertGreater(echo["id"], 0)
            stamp = parse_timestamp(echo["timestamp"])
            self.assertLess(abs(stamp.timestamp() - time.time()), 60)
            left = self.recv(alice)
            self.assertEqual(left["type"], "system")
            self.assertEqual(left["content"], "bob has left the room")

    def test_room_isolation(self) -> None:
        """A message in one room reaches nobody in another."""
        with self.socket("alice", "one") as alice, self.socket("bob", "two") as bob:
            self.joined(alice, "alice")
            self.joined(bob, "bob")
            alice.send(json.dumps({"content": "for one"}))
            bob.send(json.dumps({"content": "for two"}))
            self.assertEqual(self.recv(alice)["content"], "for one")
            self.assertEqual(self.recv(bob)["content"], "for two")
            alice.send(json.dumps({"content": "again"}))
            self.assertEqual(self.recv(alice)["content"], "again")
            with self.assertRaises(TimeoutError):
                bob.recv(timeout=0.2)

    def test_history_order_and_paging(self) -> None:
        """``/history`` is the last 50, oldest first, and pages with
        ``before`` back to the first message."""
        with self.socket("alice", "hist") as alice:
            self.joined(alice, "alice")
            for i in range(60):
                alice.send(json.dumps({"content": f"m{i}"}))
            self.recv_until(alice, "m59")
        auth = ("bob", "pw")
        last = self.history("hist", auth)
        self.assertEqual([m["content"] for m in last], [f"m{i}" for i in range(10, 60)])
        ids = [m["id"] for m in last]
        self.assertEqual(ids, sorted(set(ids)))
        self.assertTrue(all(m["type"] == "chat" and m["chat_room"] == "hist" for m in last))
        older = self.history("hist", auth, f"?before={last[0]['id']}")
        self.assertEqual([m["content"] for m in older], [f"m{i}" for i in range(10)])
        self.assertEqual(self.history("hist", auth, f"?before={older[0]['id']}"), [])
        newer = self.history("hist", auth, f"?after={older[-1]['id']}&limit=5")
        self.assertEqual([m["content"] for m in newer], [f"m{i}" for i in range(10, 15)])

    def test_bad_frames(self) -> None:
        """Invalid JSON and empty content get error frames and the socket can
        still post; an oversize frame closes with 1009."""
        with self.socket("alice", "lobby") as alice:
            self.joined(alice, "alice")
            alice.send("{not json")
            error = self.recv(alice)
            self.assertEqual((error["type"], error["code"]), ("error", "invalid_request"))
            alice.send(json.dumps({"content": ""}))
            self.assertEqual(self.recv(alice)["code"], "invalid_content")
            alice.send(b"\x00\x01")
            self.assertEqual(self.recv(alice)["code"], "invalid_request")
            alice.send(json.dumps({"content": "fine"}))
            self.assertEqual(self.recv(alice)["content"], "fine")
            alice.send(json.dumps({"content": "x" * 5000}))
            with self.assertRaises(ConnectionClosed) as caught:
                self.recv(alice)
            assert caught.exception.rcvd is not None
            self.assertEqual(caught.exception.rcvd.code, 1009)
        status, _, _ = self.http("GET", "/health")
        self.assertEqual(status, 200)


class RestartTests(EndToEndCase):
    """What survives the process."""

    def test_persistence_across_restart(self) -> None:
        """Messages survive a SIGTERM and restart on the same database, and
        ids continue after the old ones."""
        self.register("alice")
        with self.socket("alice", "keep") as alice:
            self.joined(alice, "alice")
            for i in range(3):
                alice.send(json.dumps({"content": f"before {i}"}))
            echoes = self.recv_until(alice, "before 2")
        old_ids = [f["id"] for f in echoes if f["type"] == "chat"]
        self.server.signal(signal.SIGTERM)
        self.server.wait()
        self.server.start()
        history = self.history("keep", ("alice", "pw"))
        self.assertEqual([m["content"] for m in history], ["before 0", "before 1", "before 2"])
        self.assertEqual([m["id"] for m in history], old_ids)
        with self.socket("alice", "keep") as alice:
            self.joined(alice, "alice")
            alice.send(json.dumps({"content": "after"}))
            [echo] = self.recv_until(alice, "after")
        self.assertGreater(echo["id"], max(old_ids))

    def test_sigterm_closes_1001(self) -> None:
        """SIGTERM closes a connected WebSocket with close code 1001 and the
        process exits."""
        self.register("alice")
        with self.socket("alice", "lobby") as alice:
            self.joined(alice, "alice")
            self.server.signal(signal.SIGTERM)
            with self.assertRaises(ConnectionClosed) as caught:
                for _ in range(100):
                    self.recv(alice)
        self.assertIsNotNone(caught.exception.rcvd, "no close frame received")
        assert caught.exception.rcvd is not None
        self.assertEqual(caught.exception.rcvd.code, 1001)
        self.assertIn(self.server.wait(), (0, -signal.SIGTERM))

    def test_sigkill_loses_nothing_acknowledged(self) -> None:
        """A server SIGKILLed in the middle of a stream of messages has every
        message whose echo a client received in its history after restart."""
        self.register("alice")
        total = 20_000
        kill_after = 500
        echoed: dict[str, int] = {}
        killed = threading.Event()
        receiver_error: list[BaseException] = []

        with self.socket("alice", "flood") as ws:
            self.joined(ws, "alice")

            def receive() -> None:
                try:
                    while True:
                        frame = json.loads(ws.recv(timeout=IO_TIMEOUT))
                        if frame.get("type") == "chat":
                            echoed[frame["content"]] = frame["id"]
                            if len(echoed) == kill_after:
                                self.server.signal(signal.SIGKILL)
                                killed.set()
                        elif frame.get("type") == "error":
                            raise AssertionError(f"server refused a message: {frame}")
                except ConnectionClosed:
                    pass
                except BaseException as e:
                    receiver_error.append(e)

            receiver = threading.Thread(target=receive)
            receiver.start()
            try:
                for i in range(total):
                    ws.send(json.dumps({"content": f"k{i}"}))
                    if killed.is_set():
                        break
            except ConnectionClosed:
                pass
            receiver.join(IO_TIMEOUT * 2)
            self.assertFalse(receiver.is_alive())
        self.assertEqual(receiver_error, [])
        self.assertTrue(killed.is_set(), f"only {len(echoed)} echoes before the end")
        self.assertEqual(self.server.wait(), -signal.SIGKILL)

        self.server.start()
        stored = {m["content"]: m["id"] for m in self.full_history("flood", ("alice", "pw"))}
        missing = sorted(set(echoed) - set(stored), key=lambda c: int(c[1:]))
        self.assertEqual(missing, [], f"{len(missing)} acknowledged messages lost")
        for content, message_id in echoed.items():
            self.assertEqual(stored[content], message_id)
        # What was stored is a prefix of what was sent, in order.
        ids_in_order = [stored[f"k{i}"] for i in range(len(stored))]
        self.assertEqual(ids_in_order, sorted(ids_in_order))
