"""Logs: the JSON format, the twistd hook-up, and no secrets in any event."""

from __future__ import annotations

import io
import json
import os
from base64 import b64encode
from typing import Any

from treq.testing import StubTreq
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import (
    ILogObserver,
    LogEvent,
    Logger,
    LoggingFile,
    eventAsJSON,
    formatEvent,
    globalLogPublisher,
    textFileLogObserver,
)
from twisted.logger import _logger as logger_module
from twisted.python import log as legacy_log
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from parkchat.logs import event_as_json, json_file_observer, json_observer
from parkchat.protocols.line import LineChatFactory
from parkchat.protocols.stream import StreamOptions
from parkchat.protocols.unified import AppSocketFactory
from parkchat.tap import JSON_OBSERVER, Options, server_log_stream
from parkchat.tokens import TokenAuthority, TokenVerifier
from parkchat.web.site import (
    SERVER_LOG_FLUSH_SECONDS,
    SERVER_LOG_MAX_LINES,
    AccessLogFile,
    ServerLogLines,
    redact_uri,
)
from tests.helpers import adapter_context, make_service, site_for

PASSWORD = "Pa55word-never-logged"
WRONG = "Wr0ng-password-never-logged"


class JsonFormatTests(TestCase):
    def test_one_object_per_line(self) -> None:
        """Each event is one JSON line with time, level, namespace, the
        formatted message and its scalar fields."""
        out = io.StringIO()
        observer = json_file_observer(out)
        observer(
            {
                "log_format": "{nickname} joined {room}",
                "log_level": None,
                "log_namespace": "parkchat.x",
                "log_time": 0.0,
                "nickname": "alice",
                "room": "lobby",
                "transport": object(),
            }
        )
        (line,) = out.getvalue().splitlines()
        record = json.loads(line)
        self.assertEqual(record["message"], "alice joined lobby")
        self.assertEqual(record["nickname"], "alice")
        self.assertEqual(record["namespace"], "parkchat.x")
        self.assertEqual(record["time"], "1970-01-01T00:00:00.000+00:00")
        self.assertNotIn("transport", record)

    def test_observer_factory(self) -> None:
        """parkchat.logs.json_observer is a twistd --logger factory."""
        self.assertTrue(ILogObserver.providedBy(json_observer()))

    def test_log_format_sets_twistd_logger(self) -> None:
        """Under twistd, --log-format json selects the JSON observer the way
        twistd --logger would; an explicit --logger wins; text changes nothing."""
        from twisted.scripts.twistd import ServerOptions

        config = ServerOptions()
        config.parseOptions(["--nodaemon", "parkchat", "--db", ":memory:", "--log-format", "json"])
        self.assertIs(config["logger"], json_observer)
        config = ServerOptions()
        config.parseOptions(["--nodaemon", "parkchat", "--db", ":memory:"])
        self.assertIsNone(config["logger"])
        config = ServerOptions()
        config.parseOptions(
            ["--logger", "twisted.logger.globalLogPublisher", "parkchat", "--log-format", "json"]
        )
        self.assertIsNot(config["logger"], json_observer)
        self.assertEqual(JSON_OBSERVER, "parkchat.logs.json_observer")
        Options().parseOptions(["--log-format", "json"])  # no parent: no effect


class NoSecretsInLogsTests(TestCase):
    """Register, log in, use Basic auth, tokens and the TCP password
    handshake with every log event captured; no password or token string
    appears in any formatted event, its JSON, or the access log."""

    def setUp(self) -> None:
        self.events: list[LogEvent] = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)
        self.service, _, self.clock = make_service()
        self.addCleanup(self.service.stopService)
        self.authority = TokenAuthority(b"s" * 32, self.clock)
        tokens = TokenVerifier(self.authority)
        self.site = site_for(
            self.service,
            app_factory=AppSocketFactory(adapter_context(self.service, self.clock), tokens),
            tokens=self.authority,
            access_log=True,
        )
        self.tokens = tokens
        self.stub: Any = StubTreq(self.site.resource)

    def assert_clean(self, *secrets: str) -> None:
        self.assertTrue(self.events)
        for event in self.events:
            texts = [formatEvent(event), event_as_json(event)]
            try:
                texts.append(eventAsJSON(event))
            except Exception:
                pass
            for text in texts:
                for secret in secrets:
                    self.assertNotIn(secret, text, event)

    def raw_request(self, request: bytes) -> bytes:
        """One request through the real Site (its access log included)."""
        self.site.startFactory()
        self.addCleanup(self.site.stopFactory)
        protocol = self.site.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        protocol.dataReceived(request)
        self.clock.advance(0)
        protocol.connectionLost(Failure(ConnectionDone()))
        return transport.value()

    async def test_no_secrets(self) -> None:
        basic = "Basic " + b64encode(f"alice:{PASSWORD}".encode()).decode()
        wrong = "Basic " + b64encode(f"alice:{WRONG}".encode()).decode()
        response = await self.stub.post(
            "http://x/register", json={"nickname": "alice", "password": PASSWORD}
        )
        self.assertEqual(response.code, 201)
        response = await self.stub.post(
            "http://x/login", json={"nickname": "alice", "password": PASSWORD}
        )
        token = (await response.json())["token"]
        response = await self.stub.post(
            "http://x/login", json={"nickname": "alice", "password": WRONG}
        )
        self.assertEqual(response.code, 401)
        for auth in (basic, wrong, f"Bearer {token}", "Bearer forged.token.value"):
            await self.stub.get("http://x/history/lobby", headers={"Authorization": auth})
            await self.stub.get("http://x/ws/lobby", headers={"Authorization": auth})
        await self.stub.get(f"http://x/ws?token={token}")
        self.raw_request(
            f"GET /history/lobby?token={token} HTTP/1.1\r\nHost: x\r\n"
            f"Referer: http://x/?token={token}\r\nConnection: close\r\n\r\n".encode()
        )
        # The TCP line protocol: password and token handshakes, good and bad.
        factory = LineChatFactory(
            adapter_context(self.service, self.clock), StreamOptions(tokens=self.tokens)
        )
        for handshake in (
            {"name": "alice", "room": "lobby", "password": PASSWORD},
            {"name": "alice", "room": "lobby", "password": WRONG},
            {"name": "alice", "room": "lobby", "token": token},
            {"name": "alice", "room": "lobby", "token": token + "x"},
        ):
            protocol = factory.buildProtocol(None)
            transport = StringTransport()
            protocol.makeConnection(transport)
            protocol.dataReceived(json.dumps(handshake).encode() + b"\nhello\n")
            self.clock.advance(0)
            protocol.connectionLost(Failure(ConnectionDone()))
        access = [e for e in self.events if "token=REDACTED" in formatEvent(e)]
        self.assertTrue(access, "the access log line with a redacted token is missing")
        self.assert_clean(PASSWORD, WRONG, token)

    def test_redact_uri(self) -> None:
        """token and access_token query values are replaced, others kept."""
        self.assertEqual(
            redact_uri(b"/ws?a=1&token=abc.def&access_token=x#f"),
            b"/ws?a=1&token=REDACTED&access_token=REDACTED#f",
        )
        self.assertEqual(redact_uri(b"/history/lobby?limit=5"), b"/history/lobby?limit=5")


class AccessLogFileTests(TestCase):
    """``--access-log-file``: lines go to a file, tokens still redacted."""

    def test_lines_appended_to_the_file(self) -> None:
        """Each request becomes one combined-format line in the file, with
        ``?token=`` redacted and nothing in the server log."""
        service, _, clock = make_service()
        self.addCleanup(service.stopService)
        path = self.mktemp()
        site = site_for(service, access_log_file=path)
        site.startFactory()
        events: list[Any] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        for uri in (b"/health", b"/history/x?token=sekrit-token-value"):
            protocol = site.buildProtocol(None)
            transport = StringTransport()
            protocol.makeConnection(transport)
            protocol.dataReceived(b"GET " + uri + b" HTTP/1.1\r\nHost: x\r\n\r\n")
            clock.advance(0)
            protocol.connectionLost(Failure(ConnectionDone()))
        site.stopFactory()
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
        self.assertEqual(len(lines), 2)
        self.assertIn('"GET /health HTTP/1.1" 200', lines[0])
        self.assertIn("token=", lines[1])
        self.assertNotIn("sekrit-token-value", lines[1])
        self.assertFalse([e for e in events if "GET /health" in formatEvent(e)])


class BufferedAccessLogTests(TestCase):
    """AccessLogFile: one write per reactor turn, bounded rotation."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.dir = self.mktemp()
        os.makedirs(self.dir)
        self.path = os.path.join(self.dir, "access.log")

    def read(self, name: str = "access.log") -> str:
        with open(os.path.join(self.dir, name), encoding="utf-8") as f:
            return f.read()

    def test_lines_of_a_turn_are_written_together(self) -> None:
        log = AccessLogFile(self.path, self.clock)
        self.addCleanup(log.close)
        log.write("one\n")
        log.write("two\n")
        self.assertEqual(self.read(), "")
        self.clock.advance(0)
        self.assertEqual(self.read(), "one\ntwo\n")
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_close_writes_what_is_left(self) -> None:
        log = AccessLogFile(self.path, self.clock)
        log.write("last\n")
        log.close()
        self.assertEqual(self.read(), "last\n")
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_rotation_keeps_a_bounded_number_of_files(self) -> None:
        log = AccessLogFile(self.path, self.clock, rotate_length=100, max_rotated_files=2)
        self.addCleanup(log.close)
        for n in range(30):
            log.write(f"line {n:02d} {'x' * 40}\n")
            self.clock.advance(0)
        self.assertEqual(
            sorted(os.listdir(self.dir)), ["access.log", "access.log.1", "access.log.2"]
        )
        self.assertIn("line 29", self.read())


#: 2026-12-04T18:30:05.250 UTC: a fixed moment for both log paths.
WHEN = 1796322605.25

ACCESS_LINE = (
    '"127.0.0.1" - - [04/Dec/2026:18:30:05 +0000] "GET /history/lobby HTTP/1.1" 200 2 "-" "wrk"'
)


class ServerLogLinesTests(TestCase):
    """The default access-log target under ``twistd -n``: the same text as
    twistd's observer writes for twisted.web's ``log.logfile``, buffered."""

    def through_observers(self, data: str) -> str:
        """What twistd's text observer writes for ``data`` written to
        twisted.web's default target, ``log.logfile``, at ``WHEN``: a
        ``LoggingFile`` like it (same namespace and level) in front of
        ``textFileLogObserver``, as twistd sets it up."""
        out = io.StringIO()
        default = legacy_log.logfile
        assert isinstance(default, LoggingFile)
        target = LoggingFile(
            Logger(namespace=default.log.namespace, observer=textFileLogObserver(out)),
            level=default.level,
        )
        self.patch(logger_module, "time", lambda: WHEN)
        target.write(data)
        return out.getvalue()

    def through_buffer(self, data: str) -> str:
        out = io.StringIO()
        clock = Clock()
        lines = ServerLogLines(out, clock, clock=lambda: WHEN)
        lines.write(data)
        self.assertEqual(out.getvalue(), "")
        clock.advance(SERVER_LOG_FLUSH_SECONDS)
        return out.getvalue()

    def test_same_text_as_the_observer(self) -> None:
        """A line reads exactly as twistd's observer writes it, timestamp and
        ``[system]`` included."""
        expected = self.through_observers(ACCESS_LINE + "\n")
        self.assertTrue(expected.endswith(ACCESS_LINE + "\n"), expected)
        self.assertIn(" [twisted.python.log#info] ", expected)
        self.assertEqual(self.through_buffer(ACCESS_LINE + "\n"), expected)

    def test_several_lines_in_one_write(self) -> None:
        """A write holding several lines gives one log line each."""
        data = ACCESS_LINE + "\n" + ACCESS_LINE.replace("lobby", "other") + "\n"
        expected = self.through_observers(data)
        self.assertEqual(expected.count("\n"), 2)
        self.assertEqual(self.through_buffer(data), expected)

    def test_timestamp_follows_the_clock(self) -> None:
        """The timestamp is formatted once a second, and changes with it."""
        out = io.StringIO()
        clock = Clock()
        now = [WHEN]
        lines = ServerLogLines(out, clock, clock=lambda: now[0])
        lines.write("a\n")
        now[0] += 0.5
        lines.write("b\n")
        now[0] += 1
        lines.write("c\n")
        lines.flush()
        a, b, c = (line.split(" ")[0] for line in out.getvalue().splitlines())
        self.assertEqual(a, b)
        self.assertNotEqual(b, c)

    def test_written_on_a_timer_at_a_size_and_at_close(self) -> None:
        """Lines wait for the timer (one write for all of them), are written
        at once when ``SERVER_LOG_MAX_LINES`` wait, and ``close`` writes the
        rest without closing the stream (it is twistd's)."""
        out = io.StringIO()
        clock = Clock()
        lines = ServerLogLines(out, clock, clock=lambda: WHEN)
        lines.write("one\n")
        lines.write("two\n")
        clock.advance(SERVER_LOG_FLUSH_SECONDS / 2)
        self.assertEqual(out.getvalue(), "")
        clock.advance(SERVER_LOG_FLUSH_SECONDS / 2)
        self.assertEqual(len(out.getvalue().splitlines()), 2)
        self.assertEqual(clock.getDelayedCalls(), [])
        for _ in range(SERVER_LOG_MAX_LINES):
            lines.write("many\n")
        self.assertEqual(len(out.getvalue().splitlines()), 2 + SERVER_LOG_MAX_LINES)
        self.assertEqual(clock.getDelayedCalls(), [])
        lines.write("last\n")
        lines.close()
        self.assertTrue(out.getvalue().endswith("] last\n"))
        self.assertEqual(clock.getDelayedCalls(), [])
        self.assertFalse(out.closed)

    def test_site_writes_to_the_server_log_stream(self) -> None:
        """With ``server_log``, a site's requests reach that stream (redacted,
        at the flush or when the site stops) and no log event is emitted."""
        service, _, clock = make_service()
        self.addCleanup(service.stopService)
        out = io.StringIO()
        site = site_for(service, server_log=out)
        site.reactor = clock
        site.startFactory()
        events: list[Any] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        for uri in (b"/health", b"/history/x?token=sekrit-token-value"):
            protocol = site.buildProtocol(None)
            transport = StringTransport()
            protocol.makeConnection(transport)
            protocol.dataReceived(b"GET " + uri + b" HTTP/1.1\r\nHost: x\r\n\r\n")
            clock.advance(0)
            protocol.connectionLost(Failure(ConnectionDone()))
        site.stopFactory()
        lines = out.getvalue().splitlines()
        self.assertEqual(len(lines), 2, lines)
        self.assertIn('"GET /health HTTP/1.1" 200', lines[0])
        self.assertNotIn("sekrit-token-value", lines[1])
        self.assertFalse([e for e in events if "GET /health" in formatEvent(e)])


class ServerLogStreamTests(TestCase):
    """``tap.server_log_stream``: standard output exactly when twistd writes
    its text log there."""

    def stream(self, twistd: dict[str, Any] | None) -> Any:
        options = Options()
        if twistd is not None:
            options.parent = {"logger": None, "logfile": None, "nodaemon": 0, "syslog": 0, **twistd}
        return server_log_stream(options, stdout=self.stdout)

    def setUp(self) -> None:
        self.stdout = io.StringIO()

    def test_nodaemon_without_logfile(self) -> None:
        self.assertIs(self.stream({"nodaemon": 1}), self.stdout)
        self.assertIs(self.stream({"nodaemon": 1, "logfile": "-"}), self.stdout)

    def test_anything_else_goes_through_the_observers(self) -> None:
        """A log file (twistd rotates it), a daemon's twistd.log, a custom
        ``--logger`` (``--log-format json``), syslog, or no twistd at all."""
        self.assertIsNone(self.stream({"nodaemon": 1, "logfile": "chat.log"}))
        self.assertIsNone(self.stream({}))
        self.assertIsNone(self.stream({"nodaemon": 1, "logger": JSON_OBSERVER}))
        self.assertIsNone(self.stream({"nodaemon": 1, "syslog": 1}))
        self.assertIsNone(self.stream(None))
