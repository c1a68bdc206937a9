"""Odd requests and slow request heads against the real site, in memory
(issue 15, items 6, 8 and 12).

Raw bytes go to the site's own HTTP channel over a ``StringTransport``, on a
``Clock``: every odd path, header or query gets a clear 4xx and nothing is
logged as an error; a request head has a total deadline, however slowly
its bytes arrive.
"""

from __future__ import annotations

from base64 import b64encode
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import TestCase

from parkchat.web.site import HTTP_HEAD_TIMEOUT, REQUEST_TIMEOUT
from tests.helpers import make_service, site_for
from tests.test_fuzz import watch_logs

PEER = IPv4Address("TCP", "10.0.0.1", 40000)
PASSWORD = "alice-secret"


def basic(nickname: str, password: str) -> bytes:
    return b"Basic " + b64encode(f"{nickname}:{password}".encode())


class SiteCase(TestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_757_345_400)
        self.service, _, _ = make_service(clock=self.clock)
        self.addCleanup(self.service.stopService)
        self.successResultOf(self.service.register("alice", PASSWORD))
        self.site = site_for(self.service, http_timeout=60, head_timeout=HTTP_HEAD_TIMEOUT)
        self.site.reactor = self.clock
        self.errors = watch_logs(self)

    def connect(self) -> tuple[Any, StringTransport]:
        channel = self.site.buildProtocol(PEER)
        transport = StringTransport(peerAddress=PEER)
        channel.makeConnection(transport)
        self.addCleanup(self._close, channel, transport)
        return channel, transport

    def _close(self, channel: Any, transport: StringTransport) -> None:
        if not transport.disconnecting:
            channel.connectionLost(None)

    def send(self, raw: bytes) -> bytes:
        """One whole request on a new connection; the bytes answered."""
        channel, transport = self.connect()
        channel.dataReceived(raw)
        self.clock.advance(0)
        return transport.value()

    def status(self, answer: bytes) -> int:
        line = answer.split(b"\r\n", 1)[0]
        self.assertTrue(line.startswith(b"HTTP/1.1 "), answer[:200])
        return int(line.split()[1])


class OddRequestTests(SiteCase):
    """Item 6: odd paths and parameters are a 4xx, never a 500 with a
    traceback in the log."""

    def get(self, target: bytes, *headers: bytes) -> int:
        head = b"GET " + target + b" HTTP/1.1\r\nHost: chat.test\r\n"
        head += b"".join(h + b"\r\n" for h in headers)
        answer = self.send(head + b"Connection: close\r\n\r\n")
        status = self.status(answer)
        self.assertEqual(self.errors.take(), [], target)
        return status

    def test_nul_in_path(self) -> None:
        """``GET /%00`` and ``/index.html%00.js`` (the issue's cases): 404."""
        for target in (b"/%00", b"/index.html%00.js", b"/%00/x", b"/app.js%00", b"/a%00b/c"):
            self.assertEqual(self.get(target), 404, target)

    def test_odd_static_paths(self) -> None:
        """Bytes that are no UTF-8, control characters, encoded slashes and
        dots below the page's root: 404."""
        for target in (b"/%ff", b"/%c3", b"/%01", b"/%2e%2e/setup.cfg", b"/..%2fsetup.cfg",
                       b"/x/%ff/y", b"/%0d%0aSet-Cookie:x=1"):  # fmt: skip
            self.assertEqual(self.get(target), 404, target)

    def test_odd_room_paths(self) -> None:
        """Room paths with NUL, bad UTF-8 or an encoded slash: 4xx."""
        auth = b"Authorization: " + basic("alice", PASSWORD)
        for target in (b"/history/%00", b"/history/%ff", b"/ws/%00", b"/ws/%ff", b"/history/a%2Fb"):
            status = self.get(target, auth)
            self.assertTrue(400 <= status < 500, (target, status))

    def test_history_encoded_slash_is_not_found(self) -> None:
        """Item 12: ``/history/a%2Fb`` is 404 as docs/protocol.md says (it
        was ``200 []``), like ``/history/a/b``."""
        auth = b"Authorization: " + basic("alice", PASSWORD)
        self.assertEqual(self.get(b"/history/a%2Fb", auth), 404)
        self.assertEqual(self.get(b"/history/a/b", auth), 404)
        self.assertEqual(self.get(b"/history/lobby", auth), 200)

    def test_odd_queries(self) -> None:
        """Query values that are not numbers, not UTF-8 or absurdly large: 400."""
        auth = b"Authorization: " + basic("alice", PASSWORD)
        for target in (
            b"/history/lobby?limit=%ff",
            b"/history/lobby?limit=1e3",
            b"/history/lobby?limit=" + b"9" * 5000,
            b"/history/lobby?before=-%00",
            b"/ws/lobby?since=abc",
            b"/ws/lobby?since=-1",
            b"/ws/lobby?since=" + b"9" * 40,
        ):
            status = self.get(target, auth)
            self.assertTrue(400 <= status < 500, (target, status))

    def test_odd_headers(self) -> None:
        """Credentials that are not base64, not UTF-8 or have no colon, a
        Bearer token that is garbage, an Origin with NUL: 4xx."""
        for header in (
            b"Authorization: Basic %%%",
            b"Authorization: Basic " + b64encode(b"\xff\xfe:pw"),
            b"Authorization: Basic " + b64encode(b"no-colon"),
            b"Authorization: Bearer \xff\x00",
            b"Authorization: \xff",
        ):
            for target in (b"/history/lobby", b"/ws/lobby", b"/ws"):
                status = self.get(target, header)
                self.assertTrue(400 <= status < 500, (target, header, status))
        status = self.get(b"/ws", b"Origin: http://evil\x00.test")
        self.assertTrue(400 <= status < 500, status)

    def test_odd_upgrade_params(self) -> None:
        """A WebSocket upgrade with odd parameters (bad version, no key,
        a token that is not a token): 4xx, not a traceback."""
        upgrade = (b"Upgrade: websocket", b"Connection: Upgrade")
        for extra in (
            (b"Sec-WebSocket-Version: 99", b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="),
            (b"Sec-WebSocket-Version: 13",),
            (b"Sec-WebSocket-Version: \xff", b"Sec-WebSocket-Key: \x00"),
        ):
            for target in (b"/ws?token=%ff%00", b"/mychat", b"/ws/lobby?token=x"):
                status = self.get(target, *upgrade, *extra)
                self.assertTrue(400 <= status < 500, (target, extra, status))

    def test_garbage_request_lines(self) -> None:
        """Request lines twisted.web cannot parse: 400 and no error logged."""
        for raw in (b"\x00\x01\x02\r\n\r\n", b"GET\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n",
                    b"GET /%zz HTTP/1.1\r\nHost: x\r\n\r\n"):  # fmt: skip
            answer = self.send(raw)
            if answer:
                self.assertTrue(400 <= self.status(answer) < 500, (raw, answer[:80]))
            self.assertEqual(self.errors.take(), [], raw)


class HeadDeadlineTests(SiteCase):
    """Item 8: a request head has a total deadline, not an idle one."""

    def test_trickled_upgrade_is_closed_on_time(self) -> None:
        """A WebSocket upgrade sent one byte every 5 s (each byte resets the
        idle timeout) is answered 408 and closed when the head deadline
        passes, 10 s after the connection opened."""
        channel, transport = self.connect()
        head = b"GET /ws HTTP/1.1\r\nHost: chat.test\r\nUpgrade: websocket\r\n"
        sent = 0
        while not transport.disconnecting and sent < len(head):
            channel.dataReceived(head[sent : sent + 1])
            sent += 1
            self.clock.advance(5)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.clock.seconds() - 1_757_345_400, HTTP_HEAD_TIMEOUT)
        self.assertEqual(transport.value(), REQUEST_TIMEOUT)
        self.assertEqual(self.status(transport.value()), 408)

    def test_silent_connection(self) -> None:
        """A connection that sends nothing is closed at the same deadline."""
        _, transport = self.connect()
        self.clock.advance(HTTP_HEAD_TIMEOUT - 0.1)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(0.1)
        self.assertTrue(transport.disconnecting)

    def test_complete_head_in_time(self) -> None:
        """A head completed in time is answered; the deadline is then off."""
        channel, transport = self.connect()
        channel.dataReceived(b"GET /health HTTP/1.1\r\nHost: chat.test\r\n")
        self.clock.advance(HTTP_HEAD_TIMEOUT - 1)
        channel.dataReceived(b"\r\n")
        self.clock.advance(0)
        self.assertEqual(self.status(transport.value()), 200)
        self.clock.advance(5)
        self.assertFalse(transport.disconnecting)

    def test_next_request_on_a_kept_alive_connection(self) -> None:
        """Between requests the idle timeout applies; the next head's
        deadline starts with its first byte."""
        channel, transport = self.connect()
        channel.dataReceived(b"GET /health HTTP/1.1\r\nHost: chat.test\r\n\r\n")
        self.clock.advance(0)
        self.assertEqual(self.status(transport.value()), 200)
        transport.clear()
        self.clock.advance(30)
        self.assertFalse(transport.disconnecting)
        channel.dataReceived(b"GET /health HTTP/1.1\r\n")
        self.clock.advance(HTTP_HEAD_TIMEOUT - 1)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(1)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(transport.value(), REQUEST_TIMEOUT)

    def test_option(self) -> None:
        """``--http-head-timeout`` sets the deadline of the sites."""
        site = site_for(self.service, head_timeout=3)
        site.reactor = self.clock
        channel = site.buildProtocol(PEER)
        transport = StringTransport(peerAddress=PEER)
        channel.makeConnection(transport)
        self.clock.advance(3)
        self.assertTrue(transport.disconnecting)
