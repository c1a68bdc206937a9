"""The plain-TCP line protocol listener (``--tcp``): MaChat's TCP surface.

Framing only: bytes are cut into ``\\n``-terminated lines (a trailing ``\\r`` is
dropped, for telnet), decoded as UTF-8 and handed to a ``StreamSession``; see
``stream.py`` for the protocol itself. A line over the limit is answered with
an error line and skipped up to its end; bytes that are not UTF-8 are refused
the same way. Neither closes the connection once the handshake is done.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure

from parkchat.errors import InvalidRequest
from parkchat.protocols.participant import CLOSE_NORMAL, AdapterContext
from parkchat.protocols.stream import LineEncoder, StreamOptions, StreamSession


class LineChatProtocol(Protocol):
    """One TCP client; the carrier of its StreamSession."""

    factory: LineChatFactory
    session: StreamSession | None = None

    def __init__(self) -> None:
        self._buffer = b""
        self._discarding = False

    @property
    def peer_host(self) -> str:
        peer = self.transport.getPeer() if self.transport is not None else None
        return getattr(peer, "host", "")

    def connectionMade(self) -> None:
        f = self.factory
        self.session = StreamSession(f.context, self, f.encoder, f.options)
        if f.context.slow_readers is not None:
            f.context.slow_readers.watch(self.transport, self._too_slow)

    def _too_slow(self, reason: str) -> None:
        # Its buffer is full: a goodbye line would not arrive either.
        transport: Any = self.transport
        if transport is not None:
            transport.abortConnection()

    def dataReceived(self, data: bytes) -> None:
        limit = self.factory.options.max_line_length
        buffer = self._buffer + data
        start = 0
        while self.session is not None and self.transport is not None:
            end = buffer.find(b"\n", start)
            if end < 0:
                break
            line = buffer[start:end]
            start = end + 1
            if self._discarding:
                self._discarding = False
                continue
            self._line(line, limit)
        rest = buffer[start:]
        if rest and self.session is not None and not self._discarding:
            rest = self._early_handshake(rest)
        if len(rest) > limit:
            if not self._discarding:
                self._too_long(limit)
            self._discarding = True
            rest = b""
        self._buffer = rest

    def _early_handshake(self, rest: bytes) -> bytes:
        """A handshake without its newline (MaChat's clients send none)
        counts as soon as its JSON object is complete; what follows it
        stays as the start of the next line."""
        assert self.session is not None
        try:
            text = rest.decode("utf-8")
        except UnicodeDecodeError:
            return rest  # perhaps a character cut in two: wait for the rest
        end = self.session.handshake_end(text)
        if not end:
            return rest
        self.session.line_received(text[:end])
        return text[end:].encode("utf-8")

    def _line(self, line: bytes, limit: int) -> None:
        assert self.session is not None
        if line.endswith(b"\r"):
            line = line[:-1]  # before the length check: CRLF and LF clients get the same limit
        if len(line) > limit:
            self._too_long(limit)
            return
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            self.session.bad_input(InvalidRequest("line is not valid UTF-8; it was dropped"))
            return
        self.session.line_received(text)

    def _too_long(self, limit: int) -> None:
        assert self.session is not None
        self.session.bad_input(InvalidRequest(f"line longer than {limit} bytes; it was dropped"))

    def connectionLost(self, reason: Failure | None = None) -> None:
        if self.session is not None:
            self.session.connection_lost()

    # -- Carrier -----------------------------------------------------------

    # Room lines go through the factory's writer (on the fast paths sent
    # once per reactor turn, see parkchat.protocols.fastpath); anything else
    # written to the socket, and closing it, comes after what it holds.

    def write_text(self, text: str) -> None:
        if self.transport is not None:
            self.factory.writer.release(self.transport)
            self.transport.write((text + "\n").encode("utf-8"))

    def send_payload(self, payload: Any) -> None:
        if self.transport is not None:
            self.factory.writer.write(self.transport, payload)

    def close(self, code: int = CLOSE_NORMAL) -> None:
        if self.transport is not None:
            self.factory.writer.release(self.transport)
            self.transport.loseConnection()


class LineChatFactory(Factory):
    """Builds TCP line clients; holds the settings they share."""

    protocol = LineChatProtocol  # type: ignore[assignment]

    def __init__(
        self,
        context: AdapterContext,
        options: StreamOptions | None = None,
        *,
        max_connections_per_ip: int = 0,
    ) -> None:
        self.context = context
        #: Where room lines go (``fastpath.TurnWriter`` or ``PlainWriter``).
        self.writer = context.paths.writer(context.clock)
        self.encoder = LineEncoder()
        self.options = options if options is not None else StreamOptions()
        #: Registered connections from one address past which it is refused
        #: (0: no limit).
        self.max_connections_per_ip = max_connections_per_ip

    def buildProtocol(self, addr: Any) -> Any:
        host = getattr(addr, "host", "")
        limit = self.max_connections_per_ip
        if limit and self.context.service.connections_from(host) >= limit:
            self.context.metrics.connection_refused()
            return None  # refuse before spending anything on it
        return super().buildProtocol(addr)
