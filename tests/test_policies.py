"""parkchat.protocols.policies: slow readers and per-address socket counting,
with fake transports and a fake clock (the real thing: tests/test_hostile.py)."""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address, UNIXAddress
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import TestCase

from parkchat.protocols.fastpath import buffered_bytes
from parkchat.protocols.policies import (
    AddressLimit,
    AddressLimitedFactory,
    SlowReaderPolicy,
)


class BufferingTransport(StringTransport):
    """A StringTransport that buffers like FileDescriptor: what is written
    waits in ``dataBuffer`` until ``drain``, and a registered streaming
    producer is paused on every write while more than ``bufferSize`` waits."""

    bufferSize = 1024

    def __init__(self) -> None:
        super().__init__()
        self.dataBuffer = b""
        self.offset = 0
        self._tempDataLen = 0
        self.aborted = False
        self.disconnected = False

    def write(self, data: bytes) -> None:
        self.dataBuffer += data
        if self.producer is not None and len(self.dataBuffer) > self.bufferSize:
            self.producer.pauseProducing()

    def drain(self) -> None:
        self.dataBuffer = b""
        if self.producer is not None:
            self.producer.resumeProducing()

    def abortConnection(self) -> None:
        self.aborted = True


class SlowReaderPolicyTests(TestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.policy = SlowReaderPolicy(self.clock, timeout=10.0, max_buffer=8192)
        self.transport = BufferingTransport()
        self.reasons: list[str] = []
        self.policy.watch(self.transport, self.reasons.append)

    def test_registers_a_streaming_producer(self) -> None:
        self.assertIsNotNone(self.transport.producer)
        self.assertTrue(self.transport.streaming)

    def test_replaces_an_earlier_producer(self) -> None:
        """After a WebSocket upgrade the HTTP channel is still registered."""
        transport = BufferingTransport()
        earlier = object()
        transport.registerProducer(earlier, True)
        self.policy.watch(transport, self.reasons.append)
        self.assertIsNot(transport.producer, earlier)

    def test_reader_that_keeps_up_is_left_alone(self) -> None:
        for _ in range(100):
            self.transport.write(b"x" * 2000)
            self.transport.drain()
            self.clock.advance(1)
        self.assertEqual(self.reasons, [])
        self.assertEqual(self.policy.paused, 0)

    def test_paused_past_the_timeout_is_closed(self) -> None:
        self.transport.write(b"x" * 2000)
        self.assertEqual(self.policy.paused, 1)
        self.clock.advance(9)
        self.assertEqual(self.reasons, [])
        self.clock.advance(2)
        self.assertEqual(len(self.reasons), 1)
        self.assertIn("not reading for 10 seconds", self.reasons[0])
        self.assertEqual(self.policy.disconnected, 1)
        self.assertEqual(self.policy.paused, 0)
        self.clock.advance(60)
        self.assertEqual(len(self.reasons), 1)  # once only

    def test_resume_cancels_the_timer(self) -> None:
        self.transport.write(b"x" * 2000)
        self.clock.advance(8)
        self.transport.drain()
        self.clock.advance(8)
        self.transport.write(b"x" * 2000)
        self.clock.advance(8)
        self.assertEqual(self.reasons, [])
        self.clock.advance(3)
        self.assertEqual(len(self.reasons), 1)

    def test_hard_cap_closes_at_once(self) -> None:
        for _ in range(4):
            self.transport.write(b"x" * 2000)
        self.assertEqual(self.reasons, [])
        self.transport.write(b"x" * 2000)  # 10000 > 8192
        self.assertEqual(len(self.reasons), 1)
        self.assertIn("over 8192 bytes", self.reasons[0])

    def test_no_timer_runs_while_nobody_is_paused(self) -> None:
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.transport.write(b"x" * 2000)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.transport.drain()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_closed_connection_is_forgotten(self) -> None:
        self.transport.write(b"x" * 2000)
        self.transport.disconnected = True
        self.clock.advance(60)
        self.assertEqual(self.reasons, [])
        self.assertEqual(self.policy.paused, 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_stop_producing_forgets(self) -> None:
        self.transport.write(b"x" * 2000)
        self.transport.producer.stopProducing()
        self.clock.advance(60)
        self.assertEqual(self.reasons, [])

    def test_failing_close_aborts(self) -> None:
        transport = BufferingTransport()

        def broken(reason: str) -> None:
            raise RuntimeError("boom")

        self.policy.watch(transport, broken)
        transport.write(b"x" * 9000)
        self.assertTrue(transport.aborted)
        self.flushLoggedErrors(RuntimeError)

    def test_off(self) -> None:
        policy = SlowReaderPolicy(self.clock, timeout=0, max_buffer=0)
        transport = BufferingTransport()
        self.assertIsNone(policy.watch(transport, self.reasons.append))
        self.assertIsNone(transport.producer)

    def test_timeout_only(self) -> None:
        policy = SlowReaderPolicy(self.clock, timeout=5, max_buffer=0)
        transport = BufferingTransport()
        policy.watch(transport, self.reasons.append)
        transport.write(b"x" * 100_000)
        self.assertEqual(self.reasons, [])
        self.clock.advance(6)
        self.assertEqual(len(self.reasons), 1)


class BufferedBytesTests(TestCase):
    def test_file_descriptor_fields(self) -> None:
        transport = BufferingTransport()
        transport.dataBuffer = b"x" * 100
        transport.offset = 30
        transport._tempDataLen = 5
        self.assertEqual(buffered_bytes(transport), 75)

    def test_follows_wrapping_transports(self) -> None:
        inner = BufferingTransport()
        inner.dataBuffer = b"x" * 10

        class Wrapper:
            transport = inner

        self.assertEqual(buffered_bytes(Wrapper()), 10)

    def test_unknown(self) -> None:
        self.assertIsNone(buffered_bytes(object()))

    def test_real_file_descriptor(self) -> None:
        """The internals read are those of Twisted's FileDescriptor (the
        base of tcp.Server): checked here so an upgrade that renames them
        fails a test instead of silently turning the cap off."""
        from twisted.internet import reactor
        from twisted.internet.abstract import FileDescriptor

        descriptor = FileDescriptor(reactor)
        self.assertEqual(buffered_bytes(descriptor), 0)
        descriptor.connected = True
        descriptor.startWriting = lambda: None  # type: ignore[method-assign]
        descriptor.write(b"x" * 100)
        self.assertEqual(buffered_bytes(descriptor), 100)


class Closable(StringTransport):
    def __init__(self) -> None:
        super().__init__()
        self.lost = 0
        self.aborted = False

    def connectionLost(self, reason: Any) -> None:
        self.lost += 1
        if self.protocol is not None:
            self.protocol.connectionLost(reason)

    def abortConnection(self) -> None:
        self.aborted = True


class Recorder(Protocol):
    def __init__(self) -> None:
        self.made = False
        self.lost = False

    def connectionMade(self) -> None:
        self.made = True

    def connectionLost(self, reason: Any = None) -> None:
        self.lost = True


class AddressLimitTests(TestCase):
    def setUp(self) -> None:
        self.limit = AddressLimit(2)
        self.factory = self.limit.wrap(Factory.forProtocol(Recorder))

    def connect(self, host: str = "192.0.2.1") -> tuple[Any, Closable]:
        protocol = self.factory.buildProtocol(IPv4Address("TCP", host, 40000))
        transport = Closable()
        transport.protocol = protocol
        protocol.makeConnection(transport)
        return protocol, transport

    def test_off(self) -> None:
        inner = Factory.forProtocol(Recorder)
        self.assertIs(AddressLimit(0).wrap(inner), inner)

    def test_counts_until_the_socket_closes(self) -> None:
        p1, t1 = self.connect()
        self.connect()
        self.assertIsInstance(p1, Recorder)
        self.assertTrue(p1.made)
        self.assertEqual(self.limit.count("192.0.2.1"), 2)
        p3, t3 = self.connect()
        self.assertNotIsInstance(p3, Recorder)
        self.assertTrue(t3.aborted)
        self.assertEqual(self.limit.refused, 1)
        t1.connectionLost(None)
        self.assertTrue(p1.lost)
        self.assertEqual(self.limit.count("192.0.2.1"), 1)
        p4, _ = self.connect()
        self.assertIsInstance(p4, Recorder)

    def test_addresses_are_counted_apart(self) -> None:
        self.connect()
        self.connect()
        p, _ = self.connect("192.0.2.2")
        self.assertIsInstance(p, Recorder)

    def test_released_once_even_after_a_protocol_takeover(self) -> None:
        """A WebSocket upgrade gives the socket to another protocol: the
        count follows the socket, not the first protocol."""
        _, transport = self.connect()
        successor = Recorder()
        transport.protocol = successor
        successor.makeConnection(transport)
        transport.connectionLost(None)
        transport.connectionLost(None)
        self.assertTrue(successor.lost)
        self.assertEqual(self.limit.count("192.0.2.1"), 0)
        self.assertNotIn("connectionLost", transport.__dict__)

    def test_inner_refusal_releases(self) -> None:
        class Refusing(Factory):
            def buildProtocol(self, addr: Any) -> None:
                return None

        factory = self.limit.wrap(Refusing())
        self.assertIsNone(factory.buildProtocol(IPv4Address("TCP", "192.0.2.1", 1)))
        self.assertEqual(self.limit.count("192.0.2.1"), 0)

    def test_unix_sockets_are_not_counted(self) -> None:
        factory = AddressLimitedFactory(Factory.forProtocol(Recorder), self.limit)
        for _ in range(5):
            self.assertIsInstance(factory.buildProtocol(UNIXAddress(None)), Recorder)
