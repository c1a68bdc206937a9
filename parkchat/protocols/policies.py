"""Defences below the chat protocols: clients that stop reading, and floods
of connections from one address (docs/operations.md, "Hostile clients and
faults").

* ``SlowReaderPolicy`` registers a push producer on every WebSocket and TCP
  transport. Twisted calls ``pauseProducing`` when the transport's send
  buffer passes its ``bufferSize`` (64 KiB) and ``resumeProducing`` once it
  has drained; nothing runs per delivered message. A connection that stays
  paused for ``timeout`` seconds, or whose buffer passes ``max_buffer``
  bytes, is closed: its output would otherwise grow server memory without
  bound.
* ``AddressLimit`` counts open sockets per client address at accept time,
  on every listener, before any protocol has run: a flood of idle,
  half-sent or never-authenticated connections from one address is refused
  once it reaches the limit, however far each got. Trusted reverse proxies
  (``--trusted-proxies``) are not counted here: every client behind them
  shares their address, and the per-address limit applies to the forwarded
  client address once a request says it (``ChatService``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.interfaces import IPushProducer, IReactorTime
from twisted.internet.protocol import Protocol
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.protocols.policies import WrappingFactory
from zope.interface import implementer

from parkchat.protocols.fastpath import buffered_bytes
from parkchat.proxies import TrustedProxies

_log = Logger()

MiB = 1024 * 1024


@implementer(IPushProducer)
class _Guard:
    """The producer registered on one transport."""

    __slots__ = ("done", "on_slow", "policy", "transport")

    def __init__(self, policy: SlowReaderPolicy, transport: Any, on_slow: Callable[[str], Any]):
        self.policy = policy
        self.transport = transport
        self.on_slow = on_slow
        self.done = False

    def pauseProducing(self) -> None:
        # Twisted calls this on every write while the buffer is over
        # bufferSize, so the hard cap is checked exactly, at no cost to
        # connections that keep up.
        self.policy._paused(self)

    def resumeProducing(self) -> None:
        self.policy._resumed(self)

    def stopProducing(self) -> None:
        self.done = True
        self.policy._resumed(self)


class SlowReaderPolicy:
    """Closes connections that do not read what they are sent.

    ``on_slow(reason)`` of the connection is called once when it trips;
    ``timeout`` 0 or ``max_buffer`` 0 turns that check off (both 0: off).
    ``buffered(transport)`` says how many bytes wait in a transport, or None
    when that cannot be known (``TransportPaths.buffered_bytes``).
    """

    def __init__(
        self,
        clock: IReactorTime,
        timeout: float = 30.0,
        max_buffer: int = 4 * MiB,
        buffered: Callable[[Any], int | None] = buffered_bytes,
    ) -> None:
        self.clock = clock
        self.timeout = timeout
        self.max_buffer = max_buffer
        self._buffered = buffered
        #: Connections closed for being too slow, since the start.
        self.disconnected = 0
        self._paused_since: dict[_Guard, float] = {}
        self._loop = LoopingCall(self._check)
        self._loop.clock = clock
        # The timeout is checked this often while anyone is paused.
        self.interval = min(1.0, max(0.05, timeout / 4)) if timeout > 0 else 1.0

    @property
    def enabled(self) -> bool:
        return self.timeout > 0 or self.max_buffer > 0

    @property
    def paused(self) -> int:
        """Connections whose send buffer is full now."""
        return len(self._paused_since)

    def watch(self, transport: Any, on_slow: Callable[[str], Any]) -> _Guard | None:
        """Register the guard as ``transport``'s streaming producer. After a
        WebSocket upgrade the HTTP channel is still registered there; it is
        replaced (it has nothing left to produce)."""
        if not self.enabled or transport is None:
            return None
        guard = _Guard(self, transport, on_slow)
        if getattr(transport, "producer", None) is not None:
            transport.unregisterProducer()
        transport.registerProducer(guard, True)
        return guard

    def _paused(self, guard: _Guard) -> None:
        if guard.done:
            return
        if guard not in self._paused_since:
            self._paused_since[guard] = self.clock.seconds()
            if self.timeout > 0 and not self._loop.running:
                self._loop.start(self.interval, now=False)
        if self.max_buffer > 0:
            size = self._buffered(guard.transport)
            if size is not None and size > self.max_buffer:
                self._trip(guard, f"too slow: over {self.max_buffer} bytes waiting to be sent")

    def _resumed(self, guard: _Guard) -> None:
        self._paused_since.pop(guard, None)
        if not self._paused_since and self._loop.running:
            self._loop.stop()

    def _check(self) -> None:
        now = self.clock.seconds()
        for guard, since in list(self._paused_since.items()):
            if getattr(guard.transport, "disconnected", False):
                guard.done = True
                self._resumed(guard)
            elif now - since >= self.timeout:
                self._trip(guard, f"too slow: not reading for {self.timeout:g} seconds")

    def _trip(self, guard: _Guard, reason: str) -> None:
        if guard.done:
            return
        guard.done = True
        self._resumed(guard)
        self.disconnected += 1
        peer = getattr(guard.transport.getPeer(), "host", "?")
        _log.info("closing a connection from {peer}: {reason}", peer=peer, reason=reason)
        try:
            guard.on_slow(reason)
        except Exception:
            _log.failure("closing a slow connection failed")
            guard.transport.abortConnection()


class _Refused(Protocol):
    """A connection past the per-address limit: closed at once, unread."""

    def connectionMade(self) -> None:
        transport: Any = self.transport
        transport.abortConnection()


class AddressLimit:
    """Open sockets per client address, shared by every listener it wraps;
    ``limit`` 0 = no limit (nothing is counted)."""

    def __init__(
        self,
        limit: int,
        trusted: TrustedProxies | None = None,
        on_refused: Callable[[], None] | None = None,
    ) -> None:
        self.limit = limit
        self.trusted = trusted if trusted is not None else TrustedProxies()
        self._counts: dict[str, int] = {}
        #: Connections refused since the start.
        self.refused = 0
        #: Told of each refusal (the /metrics counter).
        self.on_refused = on_refused

    def count(self, host: str) -> int:
        return self._counts.get(host, 0)

    def wrap(self, factory: Any) -> Any:
        """``factory`` behind the limit (itself when there is no limit)."""
        return factory if self.limit <= 0 else AddressLimitedFactory(factory, self)

    def _acquire(self, host: str) -> bool:
        count = self._counts.get(host, 0)
        if count >= self.limit:
            self.refused += 1
            if self.on_refused is not None:
                self.on_refused()
            return False
        self._counts[host] = count + 1
        return True

    def _release(self, host: str) -> None:
        count = self._counts.get(host, 0) - 1
        if count > 0:
            self._counts[host] = count
        else:
            self._counts.pop(host, None)


class AddressLimitedFactory(WrappingFactory):
    """Counts each accepted connection until its socket closes.

    The count is released from the transport's ``connectionLost``, not the
    protocol's: a WebSocket upgrade hands the socket from the HTTP channel
    to another protocol, and whichever protocol has it at the end, the
    socket closes once. Nothing is wrapped: reads and writes go straight to
    the protocol, as without the limit.
    """

    noisy = False  # the wrapped factory logs its own start and stop

    def __init__(self, wrappedFactory: Any, limit: AddressLimit) -> None:
        super().__init__(wrappedFactory)
        self.address_limit = limit

    def buildProtocol(self, addr: Any) -> Any:
        host = getattr(addr, "host", None)
        limit = self.address_limit
        if not isinstance(host, str) or limit.trusted.trusts(host):
            return self.wrappedFactory.buildProtocol(addr)  # a UNIX socket, a proxy
        if not limit._acquire(host):
            return _Refused()
        try:
            protocol = self.wrappedFactory.buildProtocol(addr)
        except BaseException:
            limit._release(host)
            raise
        if protocol is None:
            limit._release(host)
            return None
        made = protocol.makeConnection

        def makeConnection(transport: Any) -> None:
            del protocol.makeConnection  # back to the class's method
            _release_when_closed(transport, lambda: limit._release(host))
            made(transport)

        protocol.makeConnection = makeConnection
        return protocol


def _release_when_closed(transport: Any, release: Callable[[], None]) -> None:
    lost = transport.connectionLost
    released = False

    def connectionLost(reason: Any) -> None:
        nonlocal released
        try:
            lost(reason)
        finally:
            if not released:
                released = True
                release()
                transport.__dict__.pop("connectionLost", None)  # break the cycle

    try:
        transport.connectionLost = connectionLost
    except AttributeError:  # a transport we cannot follow: do not count it
        release()
