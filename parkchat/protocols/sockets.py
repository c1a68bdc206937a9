"""What every parkchat WebSocket endpoint (``/ws/{room}``, ``/ws``,
``/mychat``) shares on top of Autobahn: the protocol options, the factory
that holds the ``AdapterContext``, the client's address behind a trusted
proxy, the slow-reader guard, and the one-use factory that hands what the
HTTP request established to the connection it upgrades to.

How bytes reach the socket (fast paths or public APIs) is
``parkchat.protocols.fastpath``'s business; the methods here are the
public-API versions that ``fastpath.FastConnection`` replaces.
"""

from __future__ import annotations

from typing import Any, ClassVar, Generic, TypeVar

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.protocol import WebSocketProtocol
from autobahn.websocket.types import ConnectionRequest

from parkchat.protocols.fastpath import close_with, fail_invalid_payload
from parkchat.protocols.participant import CLOSE_POLICY, AdapterContext


def configure_factory(
    factory: WebSocketServerFactory,
    *,
    max_message_size: int,
    ping_interval: float,
    ping_timeout: float,
    handshake_timeout: float,
    validate_utf8: bool = True,
) -> None:
    """The protocol options every parkchat WebSocket endpoint shares
    (``validate_utf8``: Autobahn's incremental UTF-8 validation of text
    messages, off only where the adapter checks every message itself)."""
    factory.setProtocolOptions(
        utf8validateIncoming=validate_utf8,
        # Close with 1009 on oversize frames instead of dropping TCP.
        failByDrop=False,
        maxFramePayloadSize=max_message_size,
        maxMessagePayloadSize=max_message_size,
        autoPingInterval=ping_interval,
        autoPingTimeout=ping_timeout,
        openHandshakeTimeout=handshake_timeout,
        closeHandshakeTimeout=5,
        # No permessage-deflate: it would re-compress every prepared frame
        # per member and undo broadcast-once.
        perMessageCompressionAccept=lambda offers: None,
        # A plain GET (no upgrade) gets a refusal, not Autobahn's HTML page.
        webStatus=False,
    )


class ParkchatSocketFactory(WebSocketServerFactory):
    """A WebSocket factory holding the ``AdapterContext``.

    Its broadcast ``writer`` and the class of its connections come from the
    context's transport paths: after every ``setProtocolOptions`` the
    protocol class is rebuilt (on the fast paths it carries the options as
    class attributes, see ``fastpath``).
    """

    #: True for an adapter whose every text message goes through
    #: ``Participant.decode_frame`` (strict UTF-8, failing the connection
    #: with 1007): on the fast paths Autobahn's own UTF-8 validator is then
    #: off, a reset and a call per frame saved (``fastpath``).
    decodes_text: ClassVar[bool] = False

    def __init__(
        self,
        context: AdapterContext,
        *,
        max_message_size: int = 65536,
        ping_interval: float = 30.0,
        ping_timeout: float = 20.0,
        handshake_timeout: float = 10.0,
    ) -> None:
        self.context = context
        super().__init__()
        #: Where broadcast frames go (``fastpath.TurnWriter`` or ``PlainWriter``).
        self.writer = context.paths.writer(context.clock)
        configure_factory(
            self,
            max_message_size=max_message_size,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            handshake_timeout=handshake_timeout,
            validate_utf8=not (self.decodes_text and context.paths.decoder_checks_utf8),
        )

    def setProtocolOptions(self, **options: Any) -> None:  # type: ignore[override]
        super().setProtocolOptions(**options)
        self.protocol = self.context.paths.protocol_class(self.protocol, self)  # type: ignore[assignment]


_OPEN = WebSocketProtocol.STATE_OPEN


class ParkchatServerProtocol(WebSocketServerProtocol):
    """The base of parkchat's WebSocket protocols.

    * ``peer_host`` is the socket's peer, or the client a trusted reverse
      proxy names in X-Forwarded-For (``parkchat.proxies``), read from the
      opening handshake; it is what per-address limits, login throttling and
      logs use.
    * The context's ``SlowReaderPolicy`` watches the transport: a client that
      stops reading gets a 1008 close frame (which it will not read either)
      and its TCP connection is dropped.
    * ``write_prepared`` sends a frame made by ``factory.prepareMessage``.
    """

    factory: ParkchatSocketFactory
    #: Set only when a trusted proxy named someone other than the peer.
    _client_host: str | None = None

    @property
    def context(self) -> AdapterContext:
        return self.factory.context

    def connectionMade(self) -> None:
        super().connectionMade()
        policy = self.factory.context.slow_readers
        if policy is not None:
            policy.watch(self.transport, self._too_slow)

    def _too_slow(self, reason: str) -> None:
        close_with(self, CLOSE_POLICY, reason)
        self.dropConnection(abort=True)

    def onConnect(self, request: ConnectionRequest) -> None:
        trusted = self.factory.context.trusted_proxies
        if trusted:
            peer = self._socket_host()
            client = trusted.client(peer, request.headers.get("x-forwarded-for"))
            if client != peer:
                self._client_host = client

    def _socket_host(self) -> str:
        peer = self.transport.getPeer() if self.transport is not None else None
        return getattr(peer, "host", "")

    @property
    def peer_host(self) -> str:
        return self._client_host if self._client_host is not None else self._socket_host()

    def invalid_utf8(self, error: UnicodeDecodeError) -> None:
        """A text message is not UTF-8 (found by ``decode_frame`` where
        Autobahn's validator is off): fail the connection as it would
        (RFC 6455 section 8.1: close code 1007)."""
        fail_invalid_payload(
            self,
            "encountered invalid UTF-8 while processing text message "
            f"at payload octet index {error.start}",
        )

    def write_prepared(self, prepared: Any) -> None:
        """Send one broadcast frame to this member; nothing once the closing
        handshake has begun (``sendPreparedMessage`` would still send it)."""
        if self.state == _OPEN:
            self.sendPreparedMessage(prepared)


_Established = TypeVar("_Established")


class BoundFactory(Generic[_Established]):
    """A one-use factory that hands what the HTTP request established (the
    account, the room, the token) to the connection it builds:
    ``WebSocketResource`` only knows ``buildProtocol``."""

    def __init__(self, factory: ParkchatSocketFactory, established: _Established) -> None:
        self._factory = factory
        self._established = established

    def buildProtocol(self, addr: Any) -> Any:
        protocol: Any = self._factory.buildProtocol(addr)
        protocol.establish(self._established)
        return protocol
