"""Tests for ``parkchat-client`` (parkchat/client/).

Unit tests use a fake clock, a list as the console and StringTransport or
iosim for the wire; one end-to-end test runs the installed command against a
real ``twistd -n parkchat`` on loopback, over TCP and over WebSocket.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from datetime import UTC
from pathlib import Path
from typing import Any
from unittest import mock

from treq.testing import StubTreq
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.test import iosim
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from twisted.web.server import Request

from parkchat.client import main as client_main
from parkchat.client.catchup import Timeline, missed_lines
from parkchat.client.options import ClientConfig, UsageError, parse_args, rewrite_seed_flags
from parkchat.client.render import clean, render_line, render_message
from parkchat.client.session import (
    AuthFailed,
    ChatClient,
    ClientFailed,
    LineClientProtocol,
    RoomClientFactory,
)
from parkchat.protocols.line import LineChatFactory
from tests.e2e_support import ParkchatProcess
from tests.helpers import adapter_context, make_service

# 2025-09-08T15:32:10Z
T0 = 1757345530.0


class FakeConsole:
    """Collects output lines; ``close`` succeeds at once."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.closed = False

    def show(self, text: str) -> None:
        self.lines.append(text)

    def close(self) -> Deferred[None]:
        self.closed = True
        return succeed(None)


def config(**overrides: Any) -> ClientConfig:
    values: dict[str, Any] = {
        "name": "mina",
        "room": "dev",
        "mode": "tcp",
        "host": "127.0.0.1",
        "port": 8989,
        "history": 5,
    }
    values.update(overrides)
    return ClientConfig(**values)


def make_client(**overrides: Any) -> tuple[ChatClient, FakeConsole, Clock]:
    clock = Clock()
    clock.advance(T0)
    console = FakeConsole()
    return ChatClient(config(**overrides), console, clock), console, clock


def connect_line(client: ChatClient) -> tuple[LineClientProtocol, StringTransport]:
    protocol = LineClientProtocol(client)
    transport = StringTransport()
    protocol.makeConnection(transport)
    return protocol, transport


def sent_lines(transport: StringTransport) -> list[str]:
    return transport.value().decode("utf-8").splitlines()


class OptionsTests(TestCase):
    """The command line, with the MaChat seed's single-dash flags."""

    def test_seed_aliases(self) -> None:
        """``-client Mina -room dev -address h:1`` works as in the Go client."""
        cfg = parse_args(["-client", "Mina", "-room", "dev", "-address", "example.org:1234"], {})
        self.assertEqual(
            (cfg.name, cfg.room, cfg.mode, cfg.host, cfg.port),
            ("Mina", "dev", "tcp", "example.org", 1234),
        )

    def test_seed_alias_equals_form_and_default_address(self) -> None:
        """Go also accepts ``-flag=value``; the default address is MaChat's
        ``localhost:8989``."""
        cfg = parse_args(["-client=Mina", "-room=dev"], {})
        self.assertEqual(
            (cfg.name, cfg.room, cfg.host, cfg.port), ("Mina", "dev", "localhost", 8989)
        )

    def test_rewrite_stops_at_double_dash(self) -> None:
        """Arguments after ``--`` are left alone."""
        self.assertEqual(
            rewrite_seed_flags(["-room", "x", "--", "-client"]), ["--room", "x", "--", "-client"]
        )

    def test_websocket_url_and_env_password(self) -> None:
        """``--url`` selects WebSocket mode; the password may come from the
        environment; the history URL is derived from the WebSocket one."""
        cfg = parse_args(
            ["--name", "alice", "--url", "ws://127.0.0.1:8080/ws/caf%C3%A9"],
            {"PARKCHAT_PASSWORD": "s3cret"},
        )
        self.assertEqual((cfg.mode, cfg.room, cfg.password), ("ws", "café", "s3cret"))
        self.assertEqual(cfg.http_url, "http://127.0.0.1:8080")
        self.assertEqual(cfg.ws_url, "ws://127.0.0.1:8080/ws/caf%C3%A9")

    def test_mychat_address(self) -> None:
        """``-address ws://host:port/mychat`` (MaChat's WebSocket client)
        speaks the line protocol inside WebSocket messages."""
        cfg = parse_args(
            ["-client", "Mina", "-room", "dev", "-address", "ws://127.0.0.1:8080/mychat"], {}
        )
        self.assertEqual(
            (cfg.mode, cfg.host, cfg.port, cfg.ws_url),
            ("mychat", "127.0.0.1", 8080, "ws://127.0.0.1:8080/mychat"),
        )
        cfg = parse_args(["-client", "Mina", "-room", "dev", "-address", "wss://h/mychat"], {})
        self.assertEqual((cfg.port, cfg.tls), (443, True))

    def test_url_without_room_takes_room_flag(self) -> None:
        """``--url ws://host:port`` plus ``--room`` names the room."""
        cfg = parse_args(["--name", "a", "--password", "p", "--url", "ws://h", "--room", "dev"], {})
        self.assertEqual((cfg.ws_url, cfg.port), ("ws://h:80/ws/dev", 80))

    def test_password_not_in_repr(self) -> None:
        """The password never shows up in the config's repr."""
        cfg = parse_args(["--name", "a", "--room", "r", "--password", "hunter2"], {})
        self.assertNotIn("hunter2", repr(cfg))

    def test_bad_command_lines(self) -> None:
        """Each mistake is a UsageError naming the problem."""
        cases = {
            ("--room", "r"): "--name",
            ("--name", "a"): "--room",
            ("--name", "a b", "--room", "r"): "bad --name",
            ("--name", "a", "--room", "r", "--address", "nohost"): "HOST:PORT",
            ("--name", "a", "--room", "r", "--address", "h:99999"): "1-65535",
            ("--name", "a", "--room", "r", "--address", "ws://h:1/ws/r"): "use --url",
            ("--name", "a", "--room", "r", "--address", "ws://h:99999/mychat"): "1-65535",
            ("--name", "a", "--room", "r", "--history", "-1"): "--history",
            ("--name", "a", "--url", "ws://h/ws/r"): "password",
            ("--name", "a", "--password", "p", "--url", "http://h/ws/r"): "ws://",
            ("--name", "a", "--password", "p", "--url", "ws://h/ws/r", "--room", "s"): "match",
            ("--name", "a", "--url", "ws://h/ws/r", "--address", "h:1"): "not allowed",
            ("--bogus",): "unrecognized",
        }
        for argv, expected in cases.items():
            with self.assertRaises(UsageError, msg=argv) as raised:
                parse_args(list(argv), {})
            self.assertIn(expected, str(raised.exception), argv)

    def test_main_reports_usage_error_in_one_line(self) -> None:
        """A bad flag exits with status 2 and one line on stderr."""
        stderr = io.StringIO()
        with mock.patch.object(sys, "stderr", stderr), self.assertRaises(SystemExit) as raised:
            client_main.main(["-room", "dev"])
        self.assertEqual(raised.exception.code, 2)
        self.assertEqual(len(stderr.getvalue().splitlines()), 1)
        self.assertIn("--name", stderr.getvalue())


class RenderTests(TestCase):
    """Rendering is pure and never lets server text control the terminal."""

    def test_chat_message(self) -> None:
        """A chat message shows its own time, the nickname and the text."""
        message = {
            "type": "chat",
            "nickname": "alice",
            "content": "hi",
            "timestamp": "2025-09-08T15:32:10.123Z",
            "id": 3,
        }
        self.assertEqual(render_message(message, T0 + 3600, UTC), "[15:32] alice: hi")

    def test_system_and_error(self) -> None:
        """System events and error frames are ``***`` lines."""
        joined = {
            "type": "system",
            "content": "bob has joined the room",
            "timestamp": "2025-09-08T15:31:05Z",
        }
        error = {"type": "error", "code": "rate_limited", "content": "slow down"}
        self.assertEqual(render_message(joined, T0, UTC), "[15:31] *** bob has joined the room")
        self.assertEqual(
            render_message(error, T0, UTC), "[15:32] *** error (rate_limited): slow down"
        )

    def test_bad_timestamp_uses_now(self) -> None:
        """A missing or unreadable timestamp does not lose the message."""
        message = {"nickname": "a", "content": "x", "timestamp": "yesterday"}
        self.assertEqual(render_message(message, T0, UTC), "[15:32] a: x")

    def test_control_characters_escaped(self) -> None:
        """ESC, CR, BEL, C1 controls and bidi overrides in names and content
        are shown as escapes, never written raw."""
        message = {
            "nickname": "ev\x1b]0;pwned\x07il",
            "content": "a\x1b[2J\rb\x9b\u202ec\td",
            "timestamp": "2025-09-08T15:32:10Z",
        }
        text = render_message(message, T0, UTC)
        self.assertEqual(text, "[15:32] ev\\x1b]0;pwned\\x07il: a\\x1b[2J\\x0db\\x9b\\u202ec d")
        for ch in text:
            self.assertTrue(ch.isprintable(), repr(ch))

    def test_multiline_content_cannot_forge_lines(self) -> None:
        """Continuation lines are indented under the sender, so a message
        cannot produce a line that looks like another user's."""
        message = {
            "nickname": "eve",
            "content": "hi\n[15:32] bob: send money",
            "timestamp": "2025-09-08T15:32:10Z",
        }
        lines = render_message(message, T0, UTC).split("\n")
        self.assertEqual(lines[0], "[15:32] eve: hi")
        self.assertTrue(lines[1].startswith(" " * len("[15:32] eve: ") + "| "))

    def test_line_protocol_lines(self) -> None:
        """``name:text`` and ``*** notice`` lines get the arrival time."""
        self.assertEqual(render_line("Mina:hello: world", T0, UTC), "[15:32] Mina: hello: world")
        self.assertEqual(render_line("*** bye", T0, UTC), "[15:32] *** bye")
        self.assertEqual(render_line("*** \x1b[31mred", T0, UTC), "[15:32] *** \\x1b[31mred")
        self.assertEqual(render_line("no colon here", T0, UTC), "[15:32] no colon here")

    def test_clean_leaves_text_alone(self) -> None:
        """Ordinary text, accents and emoji (with joiners) are untouched."""
        text = "café 👩\u200d💻 ok"
        self.assertEqual(clean(text), text)


class BackoffTests(TestCase):
    """Reconnect delays grow, are capped, and are jittered."""

    def test_policy(self) -> None:
        """Delays double from 1 s up to 30 s, plus the jitter."""

        class Half:
            def random(self) -> float:
                return 0.5

        policy = client_main.make_backoff(rng=Half())  # type: ignore[arg-type]
        self.assertEqual([policy(n) for n in range(1, 7)], [2.5, 4.5, 8.5, 16.5, 30.5, 30.5])
        self.assertEqual(policy(1000), 30.5)

    def test_jitter_spreads_clients(self) -> None:
        """Two clients with different random sources wait different times."""
        import random

        a = client_main.make_backoff(rng=random.Random(1))
        b = client_main.make_backoff(rng=random.Random(2))
        self.assertNotEqual(a(3), b(3))
        for attempt in range(1, 50):
            self.assertLessEqual(a(attempt), 31.0)

    def test_policy_tells_the_user(self) -> None:
        """Each wait is announced on the console."""
        client, console, _ = make_client()
        policy = client.retry_policy(lambda attempt: 2.0 * attempt)
        self.assertEqual(policy(2), 4.0)
        self.assertIn("reconnecting in 4.0s (attempt 2)", console.lines[-1])


class CatchUpTests(TestCase):
    """Showing missed messages once each after a reconnect."""

    def frame(self, seq: int, content: str = "x", kind: str = "chat") -> dict[str, Any]:
        return {"id": seq + 100, "seq": seq, "type": kind, "nickname": "a", "content": content}

    def test_duplicates_dropped(self) -> None:
        """A chat message at or below the last seq shown is not shown again;
        system events (no seq) always are; without a known position
        everything is shown and the first seq becomes it."""
        timeline = Timeline(last_seq=5)
        self.assertFalse(timeline.fresh(self.frame(5)))
        self.assertTrue(timeline.fresh(self.frame(6)))
        self.assertTrue(timeline.fresh({"type": "system", "id": 0, "content": "joined"}))
        self.assertEqual(timeline.last_seq, 6)
        unknown = Timeline()
        self.assertTrue(unknown.fresh({"type": "chat", "id": 3, "content": "no seq"}))
        self.assertIsNone(unknown.last_seq)
        self.assertTrue(unknown.fresh(self.frame(2)))
        self.assertEqual(unknown.last_seq, 2)

    def test_missed_lines_overlap(self) -> None:
        """Lines after the longest overlap with what was seen are new."""
        seen = ["a:1", "b:2", "a:3"]
        history = ["b:2", "a:3", "c:4", "a:5"]
        self.assertEqual(missed_lines(seen, history), ["c:4", "a:5"])

    def test_missed_lines_prefers_longest_overlap(self) -> None:
        """A repeated short line does not fool the match."""
        seen = ["x:hi", "y:ok", "x:hi"]
        history = ["x:hi", "y:ok", "x:hi", "z:new", "x:hi"]
        self.assertEqual(missed_lines(seen, history), ["z:new", "x:hi"])

    def test_missed_lines_without_overlap(self) -> None:
        """With nothing in common (or nothing seen) everything is new; with
        nothing new, nothing is shown."""
        self.assertEqual(missed_lines(["a:1"], ["b:2"]), ["b:2"])
        self.assertEqual(missed_lines([], ["b:2"]), ["b:2"])
        self.assertEqual(missed_lines(["a:1", "b:2"], ["a:1", "b:2"]), [])

    def test_websocket_reconnect_resumes_by_seq(self) -> None:
        """Each WebSocket connection asks for what follows the last seq
        shown (``?since=``): the missed messages then come first, and what
        was typed meanwhile is sent at once (the server holds it until the
        replay is out)."""
        client, console, _ = make_client(mode="ws", password="p")
        factory = RoomClientFactory(client, "ws://h:1/ws/dev", authorization="Basic x")
        self.assertEqual(factory.resume_url(), "ws://h:1/ws/dev")
        client.timeline.last_seq = 7
        self.assertEqual(factory.resume_url(), "ws://h:1/ws/dev?since=7")
        protocol = factory.buildProtocol(None)
        self.assertEqual(factory.resource, "/ws/dev?since=7")
        self.assertEqual(factory.headers, {"Authorization": "Basic x"})
        client.joins = 1
        client.user_line("typed while away")
        sent: list[str] = []
        protocol.send_text = sent.append  # type: ignore[method-assign]
        protocol.onOpen()
        self.assertEqual(sent, ["typed while away"])
        self.assertIn("reconnected; messages after #7 follow", console.lines[0])
        for seq, text in ((8, "missed"), (7, "seen before"), (9, "live")):
            protocol.onMessage(json.dumps(self.frame(seq, text)).encode(), False)
        shown = [line for line in console.lines if " a: " in line]
        self.assertEqual([line.split(" a: ")[1] for line in shown], ["missed", "live"])
        self.assertEqual(client.timeline.last_seq, 9)


class LineProtocolTests(TestCase):
    """The TCP line protocol over a StringTransport."""

    def test_handshake(self) -> None:
        """The first line is the JSON handshake, with notices on and the
        password only when one was given."""
        client, _, _ = make_client(password="pw")
        _, transport = connect_line(client)
        self.assertEqual(
            json.loads(sent_lines(transport)[0]),
            {"name": "mina", "room": "dev", "notices": True, "password": "pw"},
        )

    def test_join_history_then_messages(self) -> None:
        """After the join notice the client asks for history, shows it, and
        only then sends what was typed; ``/quit`` ends politely."""
        client, console, clock = make_client()
        client.user_line("early bird")
        protocol, transport = connect_line(client)
        protocol.dataReceived(b"*** mina has joined the room\n")
        self.assertEqual(sent_lines(transport)[1:], ["/history 5"])
        protocol.dataReceived(b"*** last 2 messages in dev:\nbob:one\nbob:two\n")
        self.assertEqual(sent_lines(transport)[1:], ["/history 5"])
        clock.advance(LineClientProtocol.QUIET)
        self.assertEqual(sent_lines(transport)[1:], ["/history 5", "early bird"])
        self.assertEqual(
            [line[8:] for line in console.lines],
            ["*** mina has joined the room", "*** last 2 messages in dev:", "bob: one", "bob: two"],
        )
        self.assertEqual(client.pending_echoes, 1)
        client.quit()
        self.assertFalse(client.closing, "waits for the echo of 'early bird'")
        protocol.dataReceived(b"mina:early bird\n")
        clock.advance(0)
        self.assertEqual(sent_lines(transport)[-1], "/quit")
        protocol.dataReceived(b"*** bye\n")
        protocol.connectionLost(Failure(Exception("closed")))
        clock.advance(0)
        self.assertEqual(self.successResultOf(client.done), 0)
        self.assertTrue(console.closed)

    def test_refused_handshake_is_fatal(self) -> None:
        """An error line and a close before joining ends the client with
        that error (no retrying a wrong password)."""
        client, _, clock = make_client(password="bad")
        protocol, _ = connect_line(client)
        protocol.dataReceived(b"*** error (unauthorized): invalid nickname or password\n")
        protocol.connectionLost(Failure(Exception("closed")))
        clock.advance(0)
        failure = self.failureResultOf(client.done, ClientFailed)
        self.assertIn("invalid nickname or password", str(failure.value))

    def test_reconnect_shows_only_missed_lines(self) -> None:
        """After a reconnect, ``/history`` lines already shown are skipped."""
        client, console, clock = make_client(history=0)
        first, _ = connect_line(client)
        first.dataReceived(b"*** mina has joined the room\nbob:one\nbob:two\n")
        first.connectionLost(Failure(Exception("reset")))
        self.assertIn("disconnected", console.lines[-1])
        second, transport = connect_line(client)
        second.dataReceived(b"*** mina has joined the room\n")
        self.assertEqual(sent_lines(transport)[1:], ["/history 100"])
        second.dataReceived(b"*** last 4 messages in dev:\nbob:one\nbob:two\nann:three\nbob:four\n")
        clock.advance(LineClientProtocol.QUIET)
        tail = [line[8:] for line in console.lines[-3:]]
        self.assertEqual(tail, ["*** last 4 messages in dev:", "ann: three", "bob: four"])
        self.assertIs(client.link, second)

    def test_server_text_escaped(self) -> None:
        """Escape sequences in received lines reach the console escaped."""
        client, console, _ = make_client(history=0)
        protocol, _ = connect_line(client)
        protocol.dataReceived(b"*** mina has joined the room\nev\x1bil:\x1b]2;title\x07\n")
        self.assertEqual(console.lines[-1][8:], "ev\\x1bil: \\x1b]2;title\\x07")

    def test_quit_command_is_local(self) -> None:
        """Typing ``/quit`` ends the client instead of being sent as text."""
        client, _, clock = make_client(history=0)
        protocol, transport = connect_line(client)
        protocol.dataReceived(b"*** mina has joined the room\n")
        client.user_line("/quit")
        clock.advance(0)
        self.assertEqual(sent_lines(transport)[-1], "/quit")
        protocol.connectionLost(Failure(Exception("closed")))
        clock.advance(0)
        self.assertEqual(self.successResultOf(client.done), 0)

    def test_unsent_messages_fail_after_drain_timeout(self) -> None:
        """End of input while the server is unreachable: after the drain
        timeout the client exits 1, saying how much was not sent."""
        client, _, clock = make_client()
        client.user_line("hello?")
        client.quit()
        clock.advance(5)
        clock.advance(0)
        failure = self.failureResultOf(client.done, ClientFailed)
        self.assertIn("1 message(s) not sent", str(failure.value))


class LineProtocolIOSimTests(TestCase):
    """The client protocol against the real server protocol over iosim."""

    def test_conversation(self) -> None:
        """Handshake, history, a message and its echo, and ``/quit``, with
        parkchat's own LineChatProtocol on the other side."""
        service, _, clock = make_service()
        clock.advance(T0)
        client = ChatClient(config(history=3), FakeConsole(), clock)
        console = client.console
        assert isinstance(console, FakeConsole)
        server = LineChatFactory(adapter_context(service, clock)).buildProtocol(None)
        protocol = LineClientProtocol(client)
        pump = iosim.connect(
            server, iosim.makeFakeServer(server), protocol, iosim.makeFakeClient(protocol)
        )

        def settle() -> None:
            for _ in range(50):
                clock.advance(0.5)
                pump.flush()

        client.user_line("hello room")
        settle()
        client.quit()
        settle()
        shown = [line[8:] for line in console.lines]
        # mina is a guest: marked "~" by the server.
        self.assertIn("*** ~mina has joined the room", shown)
        self.assertIn("~mina: hello room", shown)
        self.assertEqual(shown[-1], "*** bye")
        self.assertEqual(self.successResultOf(client.done), 0)
        history = self.successResultOf(service.history("dev"))
        self.assertEqual([m.content for m in history], ["hello room"])


class _History(Resource):
    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.args: list[Any] = []

    def render_GET(self, request: Request) -> bytes:
        self.args.append(request.args)
        if request.getHeader("authorization") != client_main.basic_authorization("a", "p"):
            request.setResponseCode(401)
            return b'{"error":"unauthorized"}'
        request.setHeader(b"Parkchat-Seq", b"4")
        return json.dumps([{"id": 4, "type": "chat", "nickname": "a", "content": "x"}]).encode()


class HistoryClientTests(TestCase):
    """``GET /history/{room}`` through treq."""

    def test_fetch(self) -> None:
        """Credentials go in a Basic header, the limit in the query; the
        room position of the newest message comes in ``Parkchat-Seq``."""
        resource = _History()
        history = client_main.HistoryClient(StubTreq(resource), "http://h:1", "dev", "a", "p")
        messages, seq = self.successResultOf(history.fetch(limit=5))
        self.assertEqual((messages[0]["id"], seq), (4, 4))
        self.assertEqual(resource.args, [{b"limit": [b"5"]}])

    def test_unauthorized(self) -> None:
        """401 is AuthFailed, which the client treats as fatal."""
        history = client_main.HistoryClient(StubTreq(_History()), "http://h:1", "dev", "a", "no")
        self.failureResultOf(history.fetch(limit=5), AuthFailed)


def _client_command() -> str:
    path = Path(sys.executable).parent / "parkchat-client"
    if not path.exists():
        raise RuntimeError(f"parkchat-client is not installed next to {sys.executable}")
    return str(path)


class ClientEndToEndTests(TestCase):
    """The installed ``parkchat-client`` against a real server on loopback."""

    def run_client(self, args: list[str], stdin: str, password: str | None = None) -> Any:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PARKCHAT_")}
        if password is not None:
            env["PARKCHAT_PASSWORD"] = password
        return subprocess.run(
            [_client_command(), *args],
            input=stdin.encode(),
            capture_output=True,
            env=env,
            timeout=60,
            check=False,
        )

    def test_tcp_and_websocket(self) -> None:
        """A MaChat-style TCP session and a WebSocket session in one room:
        each sees history, its own echo, and both messages reach /history;
        a wrong password is one line on stderr and status 1."""
        server = ParkchatProcess(self.mktemp())
        server.start()
        self.addCleanup(server.stop)
        server.register("alice", "s3cret")
        host, port = server.tcp_address

        tcp = self.run_client(
            ["-client", "Mina", "-room", "lounge", "-address", f"{host}:{port}"],
            "hello from tcp\n",
        )
        out = tcp.stdout.decode()
        self.assertEqual(tcp.returncode, 0, tcp.stderr)
        self.assertIn("*** ~Mina has joined the room", out)
        self.assertIn("~Mina: hello from tcp", out)
        self.assertEqual(tcp.stderr, b"")

        ws = self.run_client(
            ["--name", "alice", "--url", server.ws_url("/ws/lounge"), "--history", "5"],
            "hello from ws\n",
            password="s3cret",
        )
        out = ws.stdout.decode()
        self.assertEqual(ws.returncode, 0, ws.stderr)
        self.assertIn("--- last 1 messages in lounge:", out)
        self.assertIn("Mina: hello from tcp", out)
        self.assertIn("alice: hello from ws", out)
        self.assertNotIn("s3cret", out + ws.stderr.decode())

        mychat = self.run_client(
            ["-client", "Dora", "-room", "lounge", "-address", server.ws_url("/mychat")],
            "hello from mychat\n",
        )
        self.assertEqual(mychat.returncode, 0, mychat.stderr)
        self.assertIn("Dora: hello from mychat", mychat.stdout.decode())

        history = server.history("lounge", ("alice", "s3cret"))
        self.assertEqual(
            [(m["nickname"], m["content"]) for m in history],
            [("Mina", "hello from tcp"), ("alice", "hello from ws"), ("Dora", "hello from mychat")],
        )

        bad = self.run_client(
            ["--name", "alice", "--url", server.ws_url("/ws/lounge")], "x\n", password="wrong"
        )
        self.assertEqual(bad.returncode, 1)
        self.assertEqual(len(bad.stderr.decode().splitlines()), 1, bad.stderr)
        self.assertIn("authentication failed", bad.stderr.decode())
        self.assertNotIn("Traceback", bad.stderr.decode())
