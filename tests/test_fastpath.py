"""Tests for parkchat.protocols.writes.TurnWriter: frames for idle sockets
are held until the end of the reactor turn and sent with one send; anything
the kernel does not take, and every busy or unusual transport, goes through
the transport as before."""

from __future__ import annotations

from typing import Any

from twisted.internet import protocol, reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import TestCase

from parkchat.protocols.fastpath import TurnWriter, idle_socket


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
