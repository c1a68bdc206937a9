"""The lildengzi dialect (seed 004, lildengzi/chat-server): direct messages
between parkchat accounts.

Wire protocol, as the seed's code has it (SEED-WIRE.md section 6; the full
reference with a transcript is docs/dialects.md). The HTTP side (``POST
/register``, ``POST /login``, the token check of ``GET /ws``) is in
``parkchat.web.dialects``; this module is the WebSocket and its tokens.

* A lildengzi user is a parkchat account: ``user_id`` is the account id, so a
  direct message reaches the same person here, on ``/ws`` and in the page.
* Tokens (``LildengziTokens``) are HS256 JWTs with the seed's claims
  ``user_id``, ``username``, ``exp`` (24 hours by default) and ``iat``.
* Client frames (read like gorilla's ``ReadJSON``; at most 4096 bytes, past
  that the connection closes with 1009):
  ``{"type":"chat","to_user_id":N,"content":C}`` sends C (trimmed) to account
  N, who gets ``{"type":"chat","to_user_id":N,"from_user_id":M,"content":C}``
  at once if connected anywhere (lildengzi, ``/ws``, the page, TCP), else it
  waits for ``get_offline``; the sender gets nothing back.
  ``{"type":"get_online_list"}`` -> ``{"type":"online_list","data":[ids]}``;
  ``{"type":"get_offline"}`` -> ``{"type":"offline_list","data":[...]}``
  (``"data":null`` when nothing waits) with ``msg_id``, ``to_user_id``,
  ``from_user_id``, ``content``, ``created_at``, oldest first; what it hands
  over is marked delivered.
* Errors are ``{"type":"error","content":TEXT}`` with the seed's texts
  (``invalid to_user_id``, ``content is required``, ``target user not
  found``, ``unsupported message type``) or parkchat's for its own limits
  (too long, too fast). A frame that is not a JSON object of the seed's
  types closes the connection with 1008 and the reason (the seed drops it).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure
from zope.interface import implementer

import jwt
from jwt.warnings import InsecureKeyLengthWarning

from parkchat.errors import AuthenticationFailed, ChatError, InvalidRequest, UnknownRecipient
from parkchat.interfaces import IEncoder, IParticipant
from parkchat.model import DirectMessage, DisconnectReason, Message, User
from parkchat.protocols.fastpath import close_with
from parkchat.protocols.gowire import go_dumps, go_struct, go_time
from parkchat.protocols.participant import (
    CLOSE_GOING_AWAY,
    CLOSE_POLICY,
    AdapterContext,
    Goodbye,
    Participant,
)
from parkchat.protocols.sockets import BoundFactory, ParkchatServerProtocol, ParkchatSocketFactory
from parkchat.tokens import Revocations, TokenClaims

#: The seed's read limit (``SetReadLimit``).
MAX_FRAME = 4096
#: The seed's default secret, which parkchat refuses to sign with.
INSECURE_SECRET = "dev-secret-change-me"
ALGORITHM = "HS256"
CLOSE_REPLACED = 4004
#: The longest token looked at.
MAX_TOKEN = 8192

#: lildengzi's ``WsMessage``: what a client frame is read into.
FRAME_FIELDS = {
    "type": str,
    "to_user_id": int,
    "from_user_id": int,
    "content": str,
    "data": object,
}

#: The seed's error texts (its clients show them).
INVALID_RECIPIENT = "invalid to_user_id"
CONTENT_REQUIRED = "content is required"
RECIPIENT_NOT_FOUND = "target user not found"
UNSUPPORTED = "unsupported message type"


class InsecureSecret(ValueError):
    """The seed's default JWT secret was given: anyone could sign tokens."""


@dataclass(frozen=True)
class LildengziClaims:
    """Who a verified lildengzi token speaks for."""

    user_id: int
    username: str
    issued_at: int


class LildengziTokens:
    """Issues and verifies lildengzi's tokens: HS256 JWTs whose claims are
    ``user_id``, ``username``, ``exp`` and ``iat``, as the seed signs them.

    The seed enforces ``exp`` only when present; so does this. Tokens of an
    account whose tokens were cut off (password change, log out everywhere)
    are refused like parkchat's own (``revocations``).
    """

    def __init__(
        self,
        secret: bytes,
        clock: IReactorTime,
        lifetime: float = 86400.0,
        revocations: Revocations | None = None,
    ) -> None:
        if not secret:
            raise ValueError("a lildengzi token secret is required")
        if secret == INSECURE_SECRET.encode():
            raise InsecureSecret(
                f"the lildengzi JWT secret is the seed's default {INSECURE_SECRET!r}, "
                "which anyone can sign tokens with: set a real secret"
            )
        self._secret = secret
        self._clock = clock
        self.lifetime = lifetime
        self._revocations = revocations if revocations is not None else Revocations()

    def issue(self, user: User) -> str:
        now = int(self._clock.seconds())
        claims = {
            "user_id": user.id,
            "username": user.nickname,
            "exp": now + int(self.lifetime),
            "iat": now,
        }
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", InsecureKeyLengthWarning)
            return jwt.encode(claims, self._secret, algorithm=ALGORITHM)

    def verify(self, token: str) -> LildengziClaims:
        """The claims of a valid token, else AuthenticationFailed."""
        if not token or len(token) > MAX_TOKEN:
            raise AuthenticationFailed("unauthorized")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", InsecureKeyLengthWarning)
                claims = jwt.decode(
                    token,
                    self._secret,
                    algorithms=[ALGORITHM],
                    options={
                        "require": [],
                        "verify_exp": False,
                        "verify_nbf": False,
                        "verify_iat": False,
                        "verify_aud": False,
                        "verify_iss": False,
                    },
                )
        except jwt.InvalidTokenError as e:
            raise AuthenticationFailed("unauthorized") from e
        user_id, expires, issued = claims.get("user_id"), claims.get("exp"), claims.get("iat", 0)
        if isinstance(user_id, bool) or not isinstance(user_id, int):
            raise AuthenticationFailed("unauthorized")
        if expires is not None and (not _number(expires) or self._clock.seconds() >= expires):
            raise AuthenticationFailed("unauthorized")
        if not _number(issued):
            raise AuthenticationFailed("unauthorized")
        username = claims.get("username")
        verified = LildengziClaims(
            user_id, username if isinstance(username, str) else "", int(issued)
        )
        cut_off = TokenClaims(verified.username, user_id, 0, issued_ms=verified.issued_at * 1000)
        if self._revocations.revoked(cut_off):
            raise AuthenticationFailed("unauthorized")
        return verified


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def direct_frame(message: DirectMessage) -> bytes:
    """A direct message as a lildengzi receiver gets it."""
    return go_dumps(
        {
            "type": "chat",
            "to_user_id": message.to_user_id,
            "from_user_id": message.from_user_id,
            "content": message.content,
        }
    )


def offline_item(message: DirectMessage) -> dict[str, Any]:
    return {
        "msg_id": message.id,
        "to_user_id": message.to_user_id,
        "from_user_id": message.from_user_id,
        "content": message.content,
        "created_at": go_time(message.timestamp_ms),
    }


@implementer(IEncoder)
class NoRoomEvents:
    """lildengzi connections are in no room: nothing to encode."""

    surface = "lildengzi"

    def encode(self, message: Message) -> None:
        return None


# (mypy's misc: two of Autobahn's own base classes disagree on attribute types)
@implementer(IParticipant)
class LildengziProtocol(ParkchatServerProtocol, Participant):  # type: ignore[misc]
    """One lildengzi client: an account's direct messages."""

    factory: LildengziFactory
    user: User

    surface = "lildengzi"
    goodbyes = {
        **{reason: Goodbye(CLOSE_POLICY) for reason in DisconnectReason},
        DisconnectReason.SHUTDOWN: Goodbye(CLOSE_GOING_AWAY),
        DisconnectReason.REPLACED: Goodbye(CLOSE_REPLACED),
    }

    def __init__(self) -> None:
        super().__init__()
        self.connection_id: str | None = None
        self._closing = False

    def establish(self, user: User) -> None:
        """The account ``GET /ws``'s token named."""
        self.user = user

    @property
    def nickname(self) -> str:  # type: ignore[override]
        return self.user.nickname

    @property
    def user_id(self) -> int:
        return self.user.id

    @property
    def encoder(self) -> IEncoder:
        return self.factory.encoder

    # -- connection ---------------------------------------------------------

    def onOpen(self) -> None:
        try:
            self.connection_id = self.factory.context.service.connect(self)
        except ChatError as e:
            self._close(CLOSE_POLICY, e.message)
            return
        self._log.info(
            "{nickname} connected over lildengzi from {peer}",
            nickname=self.nickname,
            peer=self.peer_host,
        )

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self._closing = True
        if self.connection_id is not None:
            self.factory.context.service.disconnect(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if self._closing or self.connection_id is None:
            return
        try:
            frame = go_struct(payload, FRAME_FIELDS)
        except ChatError as e:
            self._close(CLOSE_POLICY, e.message)
            return
        kind = frame["type"]
        handler = {
            "chat": self._chat,
            "get_online_list": self._online_list,
            "get_offline": self._offline,
        }.get(kind)
        if handler is None:
            self.send_error(InvalidRequest(UNSUPPORTED))
            return
        try:
            result = handler(frame)
        except ChatError as e:
            self.send_error(e)
            return
        if result is not None:
            result.addErrback(self._failed)

    # -- frames -------------------------------------------------------------

    def _chat(self, frame: dict[str, Any]) -> Deferred[Any]:
        content = frame["content"].strip()
        to = frame["to_user_id"]
        if to <= 0:
            raise InvalidRequest(INVALID_RECIPIENT)
        if not content:
            raise InvalidRequest(CONTENT_REQUIRED)
        service = self.factory.context.service
        # The sender is told nothing of a message that went out.
        return Deferred.fromCoroutine(service.send_direct(self, to, content))

    def _online_list(self, frame: dict[str, Any]) -> None:
        ids = [user.id for user in self.factory.context.service.online_users()]
        self._send_frame({"type": "online_list", "data": ids})

    def _offline(self, frame: dict[str, Any]) -> Deferred[None]:
        service = self.factory.context.service
        d = Deferred.fromCoroutine(service.offline_messages(self))

        def reply(messages: list[DirectMessage]) -> None:
            data = [offline_item(m) for m in messages] or None
            self._send_frame({"type": "offline_list", "data": data})

        return d.addCallback(reply)

    def _failed(self, failure: Failure) -> None:
        if failure.check(UnknownRecipient):
            self.send_error(InvalidRequest(RECIPIENT_NOT_FOUND))
        elif not self._closing:
            self.send_error(self.chat_error(failure, "a request"))

    def _send_frame(self, value: dict[str, Any]) -> None:
        if not self._closing:
            self.sendMessage(go_dumps(value))

    # -- errors and closing -----------------------------------------------------

    def write_error(self, error: ChatError, request_id: Any) -> None:
        self._send_frame({"type": "error", "content": error.message})

    def say_goodbye(self, goodbye: Goodbye, reason: DisconnectReason) -> None:
        self._close(goodbye.code, reason.text)

    def _close(self, code: int, reason: str) -> None:
        if self._closing:
            return
        self._closing = True
        if 3000 <= code <= 4999:
            self.sendClose(code, reason[:120])
        else:
            close_with(self, code, reason)

    # -- IParticipant -----------------------------------------------------------

    def send(self, payload: Any) -> None:
        pass  # in no room

    def removed(self, room: str, reason: str) -> None:
        pass  # in no room

    def direct(self, message: DirectMessage) -> bool:
        if self._closing:
            return False
        self.sendMessage(direct_frame(message))
        return True


class LildengziFactory(ParkchatSocketFactory):
    """Builds lildengzi connections: frames of at most ``MAX_FRAME`` bytes."""

    protocol = LildengziProtocol  # type: ignore[assignment]

    def __init__(
        self,
        context: AdapterContext,
        tokens: LildengziTokens,
        *,
        ping_interval: float = 30.0,
        ping_timeout: float = 20.0,
        handshake_timeout: float = 10.0,
    ) -> None:
        super().__init__(
            context,
            max_message_size=MAX_FRAME,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            handshake_timeout=handshake_timeout,
        )
        self.tokens = tokens
        self.encoder = NoRoomEvents()

    def bound(self, user: User) -> BoundFactory[User]:
        """A one-use factory for a connection of ``user``'s account."""
        return BoundFactory(self, user)
