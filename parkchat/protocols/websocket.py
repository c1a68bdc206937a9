"""The parkchat room WebSocket, ``GET /ws/{room}`` (MISSION section A).

Wire protocol (also in docs/protocol.md):

* The client is authenticated (HTTP Basic) and the room chosen by the URL
  before the upgrade; see ``parkchat.web.resources.RoomSocketResource``.
* Client -> server: text frames ``{"content": "..."}``; other fields are
  ignored.
* Server -> client: the message object
  ``{"id", "chat_room", "nickname", "content", "timestamp", "type"}`` for every
  chat message of the room, the sender's own included (``type`` ``"chat"``),
  and for joins and leaves (``type`` ``"system"``, ``id`` 0).
* Bad input gets ``{"type": "error", "code": "...", "content": "..."}`` and the
  connection stays open. A frame over the size limit is closed with 1009; a
  connection limit or a policy close uses 1008; server shutdown uses 1001.
"""

from __future__ import annotations

import json
from typing import Any

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.util import encode_truncate
from autobahn.websocket.protocol import WebSocketProtocol
from autobahn.websocket.types import ConnectionRequest
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from parkchat.errors import ChatError, InvalidRequest
from parkchat.interfaces import IEncoder, IParticipant
from parkchat.model import CHAT, SYSTEM, DisconnectReason, Message, User
from parkchat.protocols.policies import SlowReaderPolicy
from parkchat.protocols.writes import TurnWriter
from parkchat.proxies import TrustedProxies
from parkchat.service import ChatService

CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008


def error_frame(error: ChatError) -> bytes:
    return json.dumps(
        {"type": "error", "code": error.code, "content": error.message}, ensure_ascii=False
    ).encode("utf-8")


def configure_factory(
    factory: WebSocketServerFactory,
    *,
    max_message_size: int,
    ping_interval: float,
    ping_timeout: float,
    handshake_timeout: float,
) -> None:
    """The protocol options every parkchat WebSocket endpoint shares."""
    factory.setProtocolOptions(
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
    """A WebSocket factory whose protocol class carries the options.

    Autobahn copies every option (some forty) from the factory onto each new
    protocol instance unless the instance already has it. Here every
    ``setProtocolOptions`` also makes a protocol subclass holding the options
    as class attributes, so nothing is copied and each idle connection is a
    few KB smaller. The subclass also watches for slow readers (below).
    """

    #: Closes connections that stop reading (set by ``tap.makeService``).
    slow_readers: SlowReaderPolicy | None = None
    #: Proxies whose X-Forwarded-For names the client (set by ``tap.makeService``).
    trusted_proxies: TrustedProxies = TrustedProxies()

    def __init__(
        self,
        *,
        max_message_size: int = 65536,
        ping_interval: float = 30.0,
        ping_timeout: float = 20.0,
        handshake_timeout: float = 10.0,
    ) -> None:
        super().__init__()
        #: Broadcast frames for idle sockets, sent once per reactor turn.
        self.turn_writer = TurnWriter(self.reactor)
        configure_factory(
            self,
            max_message_size=max_message_size,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            handshake_timeout=handshake_timeout,
        )

    def setProtocolOptions(self, **options: Any) -> None:  # type: ignore[override]
        super().setProtocolOptions(**options)
        base: Any = self.protocol
        while getattr(base, "_parkchat_shared_options", False):
            base = base.__bases__[-1]
        attrs: dict[str, Any] = {"_parkchat_shared_options": True}
        for name in base.CONFIG_ATTRS:
            if hasattr(self, name):
                value = getattr(self, name)
                # a function stored on a class would become a method
                attrs[name] = staticmethod(value) if callable(value) else value
        # Every option is a class attribute now: nothing for Autobahn to copy
        # per connection, and an empty list spares each connection the
        # pformat of all options that Autobahn builds for a debug log line
        # (a fifth of the cost of accepting a connection) even with debug off.
        attrs["CONFIG_ATTRS"] = ()
        self.protocol = type(base.__name__, (_ParkchatConnection, base), attrs)  # type: ignore[assignment]


class _ParkchatConnection:
    """What every parkchat WebSocket connection adds to Autobahn's protocol.

    * The factory's SlowReaderPolicy watches the transport: a client that
      stops reading gets a 1008 close frame (which it will not read either)
      and its TCP connection is dropped.
    * Frames held by the factory's TurnWriter go out before anything
      Autobahn writes itself (error frames, pings, the closing handshake)
      and before a graceful drop.
    * Incoming bytes go straight to the frame parser, and a complete
      message straight to ``onMessage``: Autobahn's ``dataReceived`` builds
      (click-styled) debug-log arguments for every read even with debug
      logging off, and its ``onMessageEnd`` also fires a "message" observer
      event, which makes a txaio future per message that nothing here
      listens to.
    """

    factory: ParkchatSocketFactory
    transport: Any
    failedByMe: bool
    message_data: list[bytes] | None
    message_is_binary: bool

    def connectionMade(self) -> None:
        super().connectionMade()  # type: ignore[misc]
        policy = self.factory.slow_readers
        if policy is not None:
            policy.watch(self.transport, self._too_slow)

    def _too_slow(self, reason: str) -> None:
        protocol: Any = self
        close_with(protocol, CLOSE_POLICY, reason)
        protocol.dropConnection(abort=True)

    def sendData(self, data: bytes, sync: bool = False, chopsize: int | None = None) -> None:
        self.factory.turn_writer.release(self.transport)
        super().sendData(data, sync, chopsize)  # type: ignore[misc]

    def dropConnection(self, abort: bool = False) -> None:
        if not abort:
            self.factory.turn_writer.release(self.transport)
        super().dropConnection(abort)  # type: ignore[misc]

    def dataReceived(self, data: bytes) -> None:
        protocol: Any = self
        protocol._dataReceived(data)

    def onMessageEnd(self) -> None:
        if not self.failedByMe and self.message_data is not None:
            protocol: Any = self
            protocol.onMessage(b"".join(self.message_data), self.message_is_binary)
        self.message_data = None


class ParkchatServerProtocol(WebSocketServerProtocol):
    """The base of parkchat's WebSocket protocols: the client's address.

    ``peer_host`` is the socket's peer, or the client a trusted reverse proxy
    names in X-Forwarded-For (``parkchat.proxies``), read from the opening
    handshake; it is what per-address limits, login throttling and logs use.
    """

    factory: ParkchatSocketFactory
    #: Set only when a trusted proxy named someone other than the peer.
    _client_host: str | None = None

    def onConnect(self, request: ConnectionRequest) -> None:
        trusted = self.factory.trusted_proxies
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


def close_with(protocol: WebSocketServerProtocol, code: int, reason: str) -> None:
    """Start the closing handshake with a protocol-level code such as 1001 or
    1008. Autobahn's ``sendClose`` accepts only 1000 and 3000-4999 (the codes
    an application may pick) and raises for the rest, so send the frame
    directly; it is a no-op once the connection is closing."""
    protocol.sendCloseFrame(code=code, reasonUtf8=encode_truncate(reason, 123), isReply=False)


_OPEN = WebSocketProtocol.STATE_OPEN


def write_prepared(protocol: WebSocketServerProtocol, prepared: Any) -> None:
    """Send a frame made by ``factory.prepareMessage`` to one member.

    The common case goes to the transport (through the factory's
    TurnWriter, see parkchat.protocols.writes): Autobahn's ``sendData``
    evaluates its debug-log arguments for every frame even with debug logging
    off (``hltype``/``hlval`` style text with click when click is installed),
    which costs more than the write itself, and a broadcast pays it once per
    member. Frames are never sent once the closing handshake has begun.
    """
    if protocol.state != _OPEN:
        return
    transport = protocol.transport
    if transport is not None and not protocol.send_queue and protocol._perMessageCompress is None:
        protocol.factory.turn_writer.write(transport, prepared.payloadHybi)
    else:
        protocol.sendPreparedMessage(prepared)


@implementer(IEncoder)
class PreparedMessageEncoder:
    """Frames the parkchat message object once for every member of a room."""

    def __init__(self, factory: WebSocketServerFactory) -> None:
        self._factory = factory

    surface = "room_ws"

    def encode(self, message: Message) -> Any:
        if message.type not in (CHAT, SYSTEM):
            return None  # ephemeral events (typing) are not part of the seed API
        return self._factory.prepareMessage(message.json())


@implementer(IParticipant)
class RoomSocketProtocol(ParkchatServerProtocol):
    """One browser or app connection to one room."""

    factory: RoomSocketFactory
    # Set by RoomSocketResource before the handshake is replayed.
    user: User
    room_name: str
    #: The login token this connection proved, if any (its revocation closes it).
    token_id: str | None = None

    _log = Logger()

    @property
    def nickname(self) -> str:
        return self.user.nickname

    @property
    def user_id(self) -> int:
        return self.user.id

    @property
    def encoder(self) -> IEncoder:
        return self.factory.encoder

    def onOpen(self) -> None:
        service = self.factory.service
        try:
            service.connect(self)
            service.join(self, self.room_name)
        except ChatError as e:
            self._log.info("{nickname} refused: {reason}", nickname=self.nickname, reason=e.message)
            self._send_error(e)
            close_with(self, CLOSE_POLICY, e.message)
            return
        self._log.info(
            "{nickname} joined {room} from {peer}",
            nickname=self.nickname,
            room=self.room_name,
            peer=self.peer_host,
        )

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        try:
            if isBinary:
                raise InvalidRequest("binary frames are not accepted; send JSON text")
            try:
                # Decoded here: json.loads would first sniff bytes for UTF-16/32.
                data = json.loads(payload.decode("utf-8"))
            except (ValueError, RecursionError) as e:  # RecursionError: nested too deeply
                raise InvalidRequest("frame is not valid JSON") from e
            if not isinstance(data, dict):
                raise InvalidRequest('frame must be a JSON object like {"content": "..."}')
            if "content" not in data:
                raise InvalidRequest('"content" is required')
            self.factory.service.post_quietly(
                self, self.room_name, data["content"], self._post_failed
            )
        except ChatError as e:
            self._send_error(e)

    def _post_failed(self, failure: Failure) -> None:
        if failure.check(ChatError):
            error = failure.value
            assert isinstance(error, ChatError)
            self._send_error(error)
        else:
            self._log.failure("posting for {nickname} failed", failure, nickname=self.nickname)

    def _send_error(self, error: ChatError) -> None:
        self.factory.service.metrics.error_sent("room_ws", error.code)
        self.sendMessage(error_frame(error))

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if getattr(self, "user", None) is not None:
            self.factory.service.disconnect(self)

    # -- IParticipant ------------------------------------------------------

    def send(self, payload: Any) -> None:
        write_prepared(self, payload)

    def removed(self, room: str, reason: str) -> None:
        # This connection exists for one room: being removed from it ends it.
        close_with(self, CLOSE_POLICY, f"removed from {room}: {reason}")

    def direct(self, message: Any) -> bool:
        return False  # the seed API has no direct messages

    def disconnect(self, reason: DisconnectReason) -> None:
        code = CLOSE_GOING_AWAY if reason is DisconnectReason.SHUTDOWN else CLOSE_POLICY
        close_with(self, code, reason.text)


class RoomSocketFactory(ParkchatSocketFactory):
    """Builds room connections; holds the service and the shared encoder."""

    protocol = RoomSocketProtocol  # type: ignore[assignment]

    def __init__(
        self,
        service: ChatService,
        *,
        max_message_size: int = 65536,
        ping_interval: float = 30.0,
        ping_timeout: float = 20.0,
        handshake_timeout: float = 10.0,
    ) -> None:
        super().__init__(
            max_message_size=max_message_size,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            handshake_timeout=handshake_timeout,
        )
        self.service = service
        self.encoder = PreparedMessageEncoder(self)

    def bound(self, user: User, room_name: str, token_id: str | None = None) -> _BoundFactory:
        """A one-use factory that hands the authenticated user and room (and
        the id of the token it proved, if any) to the protocol it builds
        (``WebSocketResource`` only knows ``buildProtocol``)."""
        return _BoundFactory(self, user, room_name, token_id)


class _BoundFactory:
    def __init__(
        self, factory: RoomSocketFactory, user: User, room_name: str, token_id: str | None
    ) -> None:
        self._factory = factory
        self._user = user
        self._room_name = room_name
        self._token_id = token_id

    def buildProtocol(self, addr: Any) -> RoomSocketProtocol:
        protocol = self._factory.buildProtocol(addr)
        assert isinstance(protocol, RoomSocketProtocol)
        protocol.user = self._user
        protocol.room_name = self._room_name
        if self._token_id is not None:
            protocol.token_id = self._token_id
        return protocol
