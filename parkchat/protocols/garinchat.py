"""The GarinChat dialect (seed 002, GarinChat-Server), over parkchat's rooms.

Wire protocol, as the seed's code has it (SEED-WIRE.md section 4; the full
reference with a transcript is docs/dialects.md):

* The client opens a WebSocket on any path (on parkchat's main port: an
  upgrade of ``/``) and sends text frames ``{"type", "body", "username",
  "room"}``, read like Go's ``json.Unmarshal`` (``gowire``).
* ``{"type":"auth","body":JWT}`` within 2 s: an HMAC-signed JWT under the
  configured secret (HS256/384/512; ``exp``/``nbf`` checked only when
  present; no claim required), or a parkchat login token.
* ``{"type":"join","username":U,"room":R}`` within 2 s after that: U and R of
  at least 3 bytes. U is a guest's name (``guests.admit_guest``). Everyone in
  R, the joiner included, gets ``{"type":"join","username":U,"totalUsers":N}``.
* ``{"type":"message","body":B}``: every other member of the room gets
  ``{"type":"message","body":B,"username":U}``; the sender gets nothing (its
  client shows its own message). An empty (or blank) body is ignored.
* ``{"type":"userleave"}`` after joining changes nothing, as in the seed; a
  closed connection leaves, and the others get
  ``{"type":"userleave","username":U,"totalUsers":N}``.
* Fields are left out when empty (Go's ``omitempty``); frames have no
  trailing newline (``json.Marshal`` + ``WriteMessage``).

The seed drops the TCP connection whenever a client breaks these rules
(auth or join missing or late, a second auth or join, an unknown type,
invalid JSON, a short name or room). parkchat closes in the same cases, but
with a close frame: 1008 and a reason, 1009 for an oversize frame, 1011 when
parkchat itself failed. Its limits (message length and rate, connections)
apply the same way: past them the client is closed with 1008 and the reason;
nothing is ever sent that the seed would not send.
"""

from __future__ import annotations

import warnings
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure
from zope.interface import implementer

import jwt
from jwt.warnings import InsecureKeyLengthWarning

from parkchat.errors import AuthenticationFailed, ChatError, InvalidRequest
from parkchat.interfaces import IEncoder, IParticipant
from parkchat.model import CHAT, JOINED, SYSTEM, DirectMessage, DisconnectReason, Message
from parkchat.protocols.fastpath import close_with
from parkchat.protocols.gowire import go_dumps, go_struct
from parkchat.protocols.guests import admit_guest
from parkchat.protocols.participant import (
    CLOSE_GOING_AWAY,
    CLOSE_POLICY,
    AdapterContext,
    Goodbye,
    Participant,
)
from parkchat.protocols.sockets import ParkchatServerProtocol, ParkchatSocketFactory
from parkchat.tokens import TokenVerifier

#: Seconds to authenticate after connecting, then to join after that (the seed's).
AUTH_TIMEOUT = 2.0
JOIN_TIMEOUT = 2.0
#: The seed's shortest name and room, in bytes (Go's ``len``).
MIN_NAME_BYTES = 3
CLOSE_INTERNAL = 1011
#: The longest token looked at.
MAX_TOKEN = 8192

#: GarinChat's ``types.Message``: what a client frame is read into.
FRAME_FIELDS = {"type": str, "body": str, "username": str, "room": str, "totalUsers": int}


class GarinChatTokens:
    """What a GarinChat client may authenticate with.

    ``secret`` is the seed's ``JWT_DECODE_SECRET``: the key of the
    third-party service that signs the users' tokens. The seed accepts any
    HMAC-signed JWT under it and requires no claim: ``exp`` and ``nbf`` are
    enforced when present (on the injected clock). parkchat's own login
    tokens (``own``) are accepted too, so that a parkchat deployment without
    such a service can serve GarinChat clients. Either way the token only
    admits: the name comes from the ``join`` frame.
    """

    ALGORITHMS = ("HS256", "HS384", "HS512")

    def __init__(
        self, clock: IReactorTime, secret: bytes | None = None, own: TokenVerifier | None = None
    ) -> None:
        self._clock = clock
        self._secret = secret or None
        self._own = own

    def verify(self, token: object) -> None:
        """Return if ``token`` may connect, else raise AuthenticationFailed."""
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN:
            raise AuthenticationFailed("invalid token")
        if self._secret is not None and self._signed_by_secret(token):
            return
        if self._own is None:
            raise AuthenticationFailed("invalid or expired token")
        self._own.verify(token)

    def _signed_by_secret(self, token: str) -> bool:
        assert self._secret is not None
        try:
            with warnings.catch_warnings():
                # Short secrets are the operator's choice (warned at start),
                # not worth a warning per connection.
                warnings.simplefilter("ignore", InsecureKeyLengthWarning)
                claims = jwt.decode(
                    token,
                    self._secret,
                    algorithms=list(self.ALGORITHMS),
                    options={
                        "require": [],
                        "verify_exp": False,
                        "verify_nbf": False,
                        "verify_iat": False,
                        "verify_aud": False,
                        "verify_iss": False,
                    },
                )
        except jwt.InvalidTokenError:
            return False
        now = self._clock.seconds()
        expires, not_before = claims.get("exp"), claims.get("nbf")
        if expires is not None and (not _number(expires) or now >= expires):
            return False
        return not_before is None or (_number(not_before) and now >= not_before)


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def event_frame(message: Message, total_users: int) -> bytes | None:
    """A room event as GarinChat frames it (field order and ``omitempty``
    of the seed's ``types.Message``); None for events it has no frame for."""
    if message.type == CHAT:
        return go_dumps({"type": "message", "body": message.content, "username": message.nickname})
    if message.type != SYSTEM:
        return None  # typing notices, deletions: unknown to GarinChat
    frame: dict[str, Any] = {
        "type": "join" if message.event == JOINED else "userleave",
        "username": message.nickname,
    }
    if total_users:
        frame["totalUsers"] = total_users
    return go_dumps(frame)


@implementer(IEncoder)
class GarinChatEncoder:
    """Frames each room event once for every GarinChat member; the payload
    keeps the poster's connection id, whom the seed does not send its own
    message."""

    surface = "garinchat"

    def __init__(self, factory: GarinChatFactory) -> None:
        self._factory = factory

    def encode(self, message: Message) -> tuple[str | None, Any] | None:
        total = self._factory.context.service.member_count(message.room)
        frame = event_frame(message, total)
        if frame is None:
            return None
        origin = message.origin if message.type == CHAT else None
        return (origin, self._factory.prepareMessage(frame))


# (mypy's misc: two of Autobahn's own base classes disagree on attribute types)
@implementer(IParticipant)
class GarinChatProtocol(ParkchatServerProtocol, Participant):  # type: ignore[misc]
    """One GarinChat client: auth, join, then messages in one room."""

    factory: GarinChatFactory

    surface = "garinchat"
    goodbyes = {
        **{reason: Goodbye(CLOSE_POLICY) for reason in DisconnectReason},
        DisconnectReason.SHUTDOWN: Goodbye(CLOSE_GOING_AWAY),
    }

    def __init__(self) -> None:
        super().__init__()
        self.nickname = ""
        self.user_id: int | None = None
        self.room: str | None = None
        self.connection_id: str | None = None
        self._authenticated = False
        self._joining = False
        self._closing = False
        #: Frames that arrived while the join was being checked.
        self._held: list[bytes] | None = None

    @property
    def encoder(self) -> IEncoder:
        return self.factory.encoder

    # -- connection ---------------------------------------------------------

    def onOpen(self) -> None:
        self.start_timer(AUTH_TIMEOUT, self._close, CLOSE_POLICY, "no auth message in time")

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if self._closing:
            return
        if self._held is not None:
            self._held.append(payload)
            return
        try:
            self._handle(go_struct(payload, FRAME_FIELDS, whole=True))
        except ChatError as e:
            self.send_error(e)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self._closing = True
        self.cancel_timer()
        if self.connection_id is not None:
            self.factory.context.service.disconnect(self)

    # -- frames -------------------------------------------------------------

    def _handle(self, frame: dict[str, Any]) -> None:
        kind = frame["type"]
        if kind == "auth":
            self._auth(frame["body"])
        elif kind == "join":
            self._join(frame["username"], frame["room"])
        elif kind == "message":
            self._message(frame["body"])
        elif kind == "userleave":
            if self.room is None:
                raise InvalidRequest("userleave before joining a room")
            # The seed only logs it: the user stays until the socket closes.
        else:
            raise InvalidRequest(f"unknown message type {kind!r}")

    def _auth(self, token: str) -> None:
        if self._authenticated:
            raise InvalidRequest("already authenticated")
        self.factory.tokens.verify(token)
        self._authenticated = True
        self.start_timer(JOIN_TIMEOUT, self._close, CLOSE_POLICY, "no join message in time")

    def _join(self, username: str, room: str) -> None:
        if not self._authenticated:
            raise InvalidRequest("authenticate before joining")
        if self._joining:
            raise InvalidRequest("already joined a room")
        if len(username.encode()) < MIN_NAME_BYTES or len(room.encode()) < MIN_NAME_BYTES:
            raise InvalidRequest(f"username and room must be at least {MIN_NAME_BYTES} bytes")
        self._joining = True
        self.cancel_timer()
        self._held = []
        service = self.factory.context.service
        d = Deferred.fromCoroutine(
            admit_guest(service, username, room, allow_guests=self.factory.allow_guests)
        )
        d.addCallback(self._admitted, room)
        d.addErrback(self._failed, "join")

    def _admitted(self, nickname: str, room: str) -> None:
        if self._closing:
            return
        service = self.factory.context.service
        self.nickname = nickname
        self.connection_id = service.connect(self)
        service.join(self, room)
        self.room = room
        self._log.info(
            "{nickname} joined {room} over GarinChat from {peer}",
            nickname=nickname,
            room=room,
            peer=self.peer_host,
        )
        held, self._held = self._held or [], None
        for payload in held:
            self.onMessage(payload, False)

    def _message(self, body: str) -> None:
        if self.room is None:
            raise InvalidRequest("join a room before sending messages")
        if not body.strip():
            return  # the seed ignores an empty body; a blank one is no message either
        d = self.factory.context.service.post(self, self.room, body)
        d.addErrback(self._failed, "posting")

    def _failed(self, failure: Failure, doing: str) -> None:
        if not self._closing:
            self.send_error(self.chat_error(failure, doing))

    # -- errors and closing -----------------------------------------------------

    def write_error(self, error: ChatError, request_id: Any) -> None:
        """GarinChat has no error frame: the seed closes the connection, and
        so does parkchat, saying why in the close frame."""
        code = CLOSE_INTERNAL if error.http_status >= 500 else CLOSE_POLICY
        self._close(code, error.message)

    def say_goodbye(self, goodbye: Goodbye, reason: DisconnectReason) -> None:
        self._close(goodbye.code, reason.text)

    def _close(self, code: int, reason: str) -> None:
        if self._closing:
            return
        self._closing = True
        self.cancel_timer()
        close_with(self, code, reason)

    # -- IParticipant -----------------------------------------------------------

    def send(self, payload: tuple[str | None, Any]) -> None:
        origin, frame = payload
        if origin is not None and origin == self.connection_id:
            return
        if not self._closing:
            self.write_prepared(frame)

    def removed(self, room: str, reason: str) -> None:
        self._close(CLOSE_POLICY, f"removed from {room}: {reason}")

    def direct(self, message: DirectMessage) -> bool:
        return False  # GarinChat has no direct messages (and guests get none)


class GarinChatFactory(ParkchatSocketFactory):
    """Builds GarinChat connections; holds the token check and the encoder."""

    protocol = GarinChatProtocol  # type: ignore[assignment]

    def __init__(
        self,
        context: AdapterContext,
        tokens: GarinChatTokens,
        *,
        max_message_size: int = 65536,
        ping_interval: float = 30.0,
        ping_timeout: float = 20.0,
        handshake_timeout: float = 10.0,
        allow_guests: bool = True,
    ) -> None:
        super().__init__(
            context,
            max_message_size=max_message_size,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            handshake_timeout=handshake_timeout,
        )
        self.tokens = tokens
        #: ``--allow-guests``: GarinChat's users are all guests.
        self.allow_guests = allow_guests
        self.encoder = GarinChatEncoder(self)
