"""Tests for parkchat.protocols.fastpath.

``TurnWriter``: frames for idle sockets are held until the end of the
reactor turn and sent with one send; anything the kernel does not take, and
every busy or unusual transport, goes through the transport as before.
The choice of paths: fast on checked versions, public APIs otherwise, and
setup.cfg's pins in step with the checked versions. (That every surface
behaves the same on both paths is shown by tests/test_surfaces.py.)
"""

from __future__ import annotations

import configparser
from pathlib import Path
from typing import Any

from twisted.internet import protocol, reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import Logger, LogLevel, formatEvent
from twisted.trial.unittest import TestCase

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from parkchat.protocols.fastpath import (
    CHECKED_AUTOBAHN,
    CHECKED_TWISTED,
    FAST,
    INSTALLED,
    PLAIN,
    FastConnection,
    PlainWriter,
    TransportPaths,
    TurnWriter,
    Versions,
    choose,
    idle_socket,
)
from parkchat.protocols.line import LineChatFactory
from parkchat.protocols.websocket import RoomSocketFactory, RoomSocketProtocol
from tests.helpers import adapter_context, make_service


class FakeSocket:
    """Takes up to ``room`` bytes per send, or raises ``error``."""

    def __init__(self, room: int = 1 << 20, error: OSError | None = None) -> None:
        self.room = room
        self.error = error
        self.sent: list[bytes] = []

    def send(self, data: bytes) -> int:
        if self.error is not None:
            raise self.error
        taken = bytes(data[: self.room])
        self.sent.append(taken)
        return len(taken)


class FakeTransport(StringTransport):
    """A transport over a FakeSocket; ``idle`` says whether it may be
    written to directly (what idle_socket decides for real transports)."""

    def __init__(self, sock: FakeSocket) -> None:
        super().__init__()
        self.sock = sock
        self.idle = True


def direct(transport: Any) -> FakeSocket | None:
    return transport.sock if getattr(transport, "idle", False) else None


class TurnWriterTests(TestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.writer = TurnWriter(self.clock, direct)

    def test_frames_of_one_turn_share_one_send(self) -> None:
        sock = FakeSocket()
        transport = FakeTransport(sock)
        self.writer.write(transport, b"one")
        self.writer.write(transport, b"two")
        self.assertEqual(sock.sent, [])
        self.clock.advance(0)
        self.assertEqual(sock.sent, [b"onetwo"])
        self.assertEqual(transport.value(), b"")
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_one_flush_per_turn_for_many_sockets(self) -> None:
        transports = [FakeTransport(FakeSocket()) for _ in range(3)]
        for n, transport in enumerate(transports):
            self.writer.write(transport, b"f%d" % n)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.clock.advance(0)
        self.assertEqual([t.sock.sent for t in transports], [[b"f0"], [b"f1"], [b"f2"]])

    def test_busy_transport_is_written_at_once(self) -> None:
        transport = FakeTransport(FakeSocket())
        transport.idle = False
        self.writer.write(transport, b"frame")
        self.assertEqual(transport.value(), b"frame")
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_what_the_kernel_leaves_goes_to_the_transport(self) -> None:
        sock = FakeSocket(room=4)
        transport = FakeTransport(sock)
        self.writer.write(transport, b"abcdef")
        self.writer.write(transport, b"gh")
        self.clock.advance(0)
        self.assertEqual((sock.sent, transport.value()), ([b"abcd"], b"efgh"))

    def test_send_errors_leave_the_bytes_to_the_transport(self) -> None:
        for error in (BlockingIOError(), ConnectionResetError()):
            transport = FakeTransport(FakeSocket(error=error))
            self.writer.write(transport, b"frame")
            self.clock.advance(0)
            self.assertEqual(transport.value(), b"frame")

    def test_transport_busy_by_flush_time(self) -> None:
        """A transport that got bytes of its own (or closed) since the frame
        was held is written through, after them."""
        sock = FakeSocket()
        transport = FakeTransport(sock)
        self.writer.write(transport, b"held")
        transport.idle = False
        self.clock.advance(0)
        self.assertEqual((sock.sent, transport.value()), ([], b"held"))

    def test_release_keeps_order(self) -> None:
        """What the protocol writes itself comes after the held frames."""
        sock = FakeSocket(room=3)
        transport = FakeTransport(sock)
        self.writer.write(transport, b"frame")
        self.writer.release(transport)
        transport.write(b"close")
        self.assertEqual((sock.sent, transport.value()), ([b"fra"], b"meclose"))
        self.clock.advance(0)
        self.assertEqual(sock.sent, [b"fra"])

    def test_idle_socket_refuses_other_transports(self) -> None:
        self.assertIsNone(idle_socket(StringTransport()))
        self.assertIsNone(idle_socket(object()))


class _Sink(protocol.Protocol):
    def __init__(self) -> None:
        self.received = b""
        self.lost: Deferred[bytes] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: object) -> None:
        self.lost.callback(self.received)


class RealSocketTests(TestCase):
    """On a real loopback connection: a tcp.Server is written directly, in
    order, with the transport's own writes after the held frames."""

    async def test_loopback(self) -> None:
        writer = TurnWriter(reactor)
        seen: list[Any] = []

        class Sender(protocol.Protocol):
            def connectionMade(self) -> None:
                seen.append(idle_socket(self.transport))
                for n in range(3):
                    writer.write(self.transport, b"frame%d;" % n)
                writer.release(self.transport)
                writer.write(self.transport, b"last;")
                reactor.callLater(0.01, self.transport.loseConnection)

        port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            protocol.Factory.forProtocol(Sender)
        )
        self.addCleanup(port.stopListening)
        sink = _Sink()
        await TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port).connect(
            protocol.Factory.forProtocol(lambda: sink)
        )
        received = await sink.lost
        self.assertIsNotNone(seen[0])
        self.assertEqual(received, b"frame0;frame1;frame2;last;")


class VersionTests(TestCase):
    """The fast paths run only on the Twisted and Autobahn releases they were
    checked against; anything else takes public APIs, said once at startup."""

    def choose(self, versions: Versions) -> tuple[TransportPaths, list[dict[str, Any]]]:
        events: list[dict[str, Any]] = []
        return choose(versions, Logger(observer=events.append)), events

    def test_checked_versions_take_the_fast_paths(self) -> None:
        """Every checked pair gets the fast paths, without a word."""
        for twisted_version in CHECKED_TWISTED:
            for autobahn_version in CHECKED_AUTOBAHN:
                paths, events = self.choose(Versions(twisted_version, autobahn_version))
                self.assertIs(paths, FAST)
                self.assertEqual(events, [])

    def test_unknown_version_takes_public_apis(self) -> None:
        """A Twisted or an Autobahn release that was not checked gets the
        plain paths and one warning naming both versions."""
        for versions in (
            Versions("27.1.0", CHECKED_AUTOBAHN[0]),
            Versions(CHECKED_TWISTED[0], "26.12.0"),
        ):
            paths, events = self.choose(versions)
            self.assertIs(paths, PLAIN)
            [event] = events
            self.assertEqual(event["log_level"], LogLevel.warn)
            text = formatEvent(event)
            self.assertIn(f"Twisted {versions.twisted} / autobahn {versions.autobahn}", text)
            self.assertIn("public APIs only", text)

    def test_installed_versions_are_checked(self) -> None:
        """The suite runs on checked versions, so it tests the fast paths (if
        this fails after an upgrade: read what fastpath.py uses in the new
        release, then add it to CHECKED_*)."""
        installed = Versions.installed()
        self.assertTrue(installed.checked, f"{installed} is not among the checked versions")
        self.assertIs(INSTALLED, FAST)

    def test_pins_match_checked_versions(self) -> None:
        """setup.cfg admits exactly the release series that were checked:
        from the oldest checked release to the series after the newest."""
        parser = configparser.ConfigParser()
        parser.read(Path(__file__).resolve().parent.parent / "setup.cfg")
        lines = parser["options"]["install_requires"].splitlines()
        pins = {
            requirement.name.lower(): requirement.specifier
            for requirement in (
                Requirement(line) for line in lines if line.strip() and not line.startswith("#")
            )
        }
        for name, checked in (("twisted", CHECKED_TWISTED), ("autobahn", CHECKED_AUTOBAHN)):
            releases = sorted(Version(v) for v in checked)
            newest = releases[-1]
            expected = SpecifierSet(f">={releases[0]},<{newest.major}.{newest.minor + 1}")
            self.assertEqual(pins[name], expected, name)
            for release in checked:
                self.assertIn(release, pins[name])


class TransportPathsTests(TestCase):
    """What each choice gives the factories: nothing on the per-member path
    asks which one is in use."""

    def factories(self, paths: TransportPaths) -> tuple[RoomSocketFactory, LineChatFactory]:
        service, _, clock = make_service()
        self.addCleanup(service.stopService)
        context = adapter_context(service, clock, paths=paths)
        return RoomSocketFactory(context), LineChatFactory(context)

    def test_fast(self) -> None:
        """Fast: turn-end writes, and WebSocket connections built from the
        adapter's class behind FastConnection with the options on the class
        (nothing copied per connection), under the adapter's own name."""
        room, line = self.factories(FAST)
        self.assertIsInstance(room.writer, TurnWriter)
        self.assertIsInstance(line.writer, TurnWriter)
        protocol = room.protocol
        self.assertEqual(protocol.__mro__[1:3], (FastConnection, RoomSocketProtocol))
        self.assertEqual(protocol.CONFIG_ATTRS, ())
        self.assertEqual(protocol.maxMessagePayloadSize, room.maxMessagePayloadSize)
        self.assertEqual(
            (protocol.__module__, protocol.__qualname__),
            ("parkchat.protocols.websocket", "RoomSocketProtocol"),
        )
        # A room member's send is the fast write, without a call in between.
        self.assertIs(protocol.send, FastConnection.write_prepared)
        # New options rebuild the class from the adapter's, not on top of the last one.
        room.setProtocolOptions(maxMessagePayloadSize=10)
        self.assertEqual(room.protocol.__mro__[1:3], (FastConnection, RoomSocketProtocol))
        self.assertEqual(room.protocol.maxMessagePayloadSize, 10)

    def test_plain(self) -> None:
        """Plain: ``transport.write`` and the adapter's class as it is
        (Autobahn's own dataReceived, onMessageEnd, sendPreparedMessage)."""
        room, line = self.factories(PLAIN)
        self.assertIsInstance(room.writer, PlainWriter)
        self.assertIsInstance(line.writer, PlainWriter)
        self.assertIs(room.protocol, RoomSocketProtocol)
        self.assertNotIn(FastConnection, room.protocol.__mro__)

    def test_buffered_bytes(self) -> None:
        """Only the fast paths can tell how much waits in a transport."""
        transport = FakeTransport(FakeSocket())
        transport.dataBuffer = b"x" * 10
        transport.offset = 0
        transport._tempDataLen = 5
        self.assertEqual(FAST.buffered_bytes(transport), 15)
        self.assertIsNone(PLAIN.buffered_bytes(transport))

    def test_plain_writer(self) -> None:
        """PlainWriter writes at once and holds nothing."""
        transport = StringTransport()
        writer = PlainWriter()
        writer.write(transport, b"frame")
        writer.release(transport)
        self.assertEqual(transport.value(), b"frame")
