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
* ``?since=SEQ`` (parkchat's own, for reconnecting clients): the chat
  messages after that room position come first, oldest first, then the live
  events; on such a connection chat message objects also carry ``"seq"``,
  their room position (a seed client never asks, and sees the exact seed
  objects).
* Bad input gets ``{"type": "error", "code": "...", "content": "..."}`` and the
  connection stays open. A frame over the size limit is closed with 1009; a
  connection limit or a policy close uses 1008; server shutdown uses 1001.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from autobahn.twisted.websocket import WebSocketServerFactory
from twisted.python.failure import Failure
from zope.interface import implementer

from parkchat.errors import ChatError, InvalidRequest, ServiceBusy
from parkchat.interfaces import IEncoder, IParticipant
from parkchat.model import CHAT, SYSTEM, DisconnectReason, JoinResult, Message, User
from parkchat.protocols.fastpath import close_with
from parkchat.protocols.participant import (
    CLOSE_GOING_AWAY,
    CLOSE_POLICY,
    AdapterContext,
    Goodbye,
    Participant,
)
from parkchat.protocols.sockets import BoundFactory, ParkchatServerProtocol, ParkchatSocketFactory

#: Most frames a client may send while its resume is being read (they are
#: posted once it has been sent); more are refused.
HELD_FRAMES = 1000


def error_frame(error: ChatError) -> bytes:
    return json.dumps(
        {"type": "error", "code": error.code, "content": error.message}, ensure_ascii=False
    ).encode("utf-8")


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


def with_seq(message: Message) -> bytes:
    """The message object with its room position, ``"seq"`` (chat messages;
    join and leave notices have none)."""
    if message.type != CHAT:
        return message.json()
    return message.json()[:-1] + b',"seq":%d}' % message.seq


@implementer(IEncoder)
class SequencedMessageEncoder:
    """Frames the message object with ``"seq"`` once for every member of a
    room that connected with ``?since=``."""

    def __init__(self, factory: WebSocketServerFactory) -> None:
        self._factory = factory

    surface = "room_ws"

    def encode(self, message: Message) -> Any:
        if message.type not in (CHAT, SYSTEM):
            return None
        return self._factory.prepareMessage(with_seq(message))


@dataclass(frozen=True)
class RoomTicket:
    """What ``RoomSocketResource`` established over HTTP."""

    user: User
    room: str
    #: The login token the request proved, if any (its revocation closes it).
    token_id: str | None = None
    #: ``?since=``: resume after this room position (None: no resume).
    since: int | None = None


# (mypy's misc: two of Autobahn's own base classes disagree on attribute types)
@implementer(IParticipant)
class RoomSocketProtocol(ParkchatServerProtocol, Participant):  # type: ignore[misc]
    """One browser or app connection to one room."""

    factory: RoomSocketFactory
    # Set by ``establish`` before the handshake is replayed.
    user: User
    room_name: str
    #: The login token this connection proved, if any (its revocation closes it).
    token_id: str | None = None
    #: ``?since=``: the room position the client saw up to (None: no resume).
    since: int | None = None
    #: Frames received while the resume is read, posted once it is sent.
    _held: list[tuple[bytes, bool]] | None = None

    surface = "room_ws"
    #: ``send`` is ``write_prepared``: on the fast paths the generated class
    #: binds it directly (``fastpath._options_on_class``).
    send_is_write_prepared = True
    not_an_object = 'frame must be a JSON object like {"content": "..."}'
    goodbyes = {
        DisconnectReason.SHUTDOWN: Goodbye(CLOSE_GOING_AWAY),
        DisconnectReason.REPLACED: Goodbye(CLOSE_POLICY),
        DisconnectReason.BANNED: Goodbye(CLOSE_POLICY),
        DisconnectReason.LOGGED_OUT: Goodbye(CLOSE_POLICY),
        DisconnectReason.TOKEN_REVOKED: Goodbye(CLOSE_POLICY),
        DisconnectReason.DELIVERY_FAILED: Goodbye(CLOSE_POLICY),
        DisconnectReason.NAME_REGISTERED: Goodbye(CLOSE_POLICY),
        DisconnectReason.TOO_MANY_CONNECTIONS: Goodbye(CLOSE_POLICY),
    }

    def establish(self, ticket: RoomTicket) -> None:
        self.user = ticket.user
        self.room_name = ticket.room
        if ticket.token_id is not None:
            self.token_id = ticket.token_id
        self.since = ticket.since

    @property
    def nickname(self) -> str:  # type: ignore[override]
        return self.user.nickname

    @property
    def user_id(self) -> int:
        return self.user.id

    @property
    def encoder(self) -> IEncoder:
        return self.factory.encoder if self.since is None else self.factory.sequenced

    def onOpen(self) -> None:
        service = self.factory.context.service
        try:
            service.connect(self)
            joined = service.join(self, self.room_name, self.since)
        except ChatError as e:
            self._refused(e)
            return
        if self.since is not None and not joined.called:
            self._held = []
        if self.since is not None:
            joined.addCallbacks(self._replay, self._resume_failed)
        self._log.info(
            "{nickname} joined {room} from {peer}",
            nickname=self.nickname,
            room=self.room_name,
            peer=self.peer_host,
        )

    def _refused(self, error: ChatError) -> None:
        self._log.info("{nickname} refused: {reason}", nickname=self.nickname, reason=error.message)
        self.send_error(error)
        close_with(self, CLOSE_POLICY, error.message)

    def _replay(self, result: JoinResult) -> None:
        """What the client missed, before anything live (same callback as
        the join: nothing can come between)."""
        prepare = self.factory.prepareMessage
        for message in result.replay:
            self.write_prepared(prepare(with_seq(message)))
        held, self._held = self._held, None
        for payload, is_binary in held or ():
            if self.state != self.STATE_OPEN:
                break  # failed by one of them (not UTF-8), or closing
            self.onMessage(payload, is_binary)

    def _resume_failed(self, failure: Failure) -> None:
        if self.state == self.STATE_OPEN:
            self._refused(self.chat_error(failure, "resuming"))

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if self._held is not None:
            if len(self._held) >= HELD_FRAMES:
                self.send_error(ServiceBusy("too many messages before the resume was sent"))
                return
            self._held.append((payload, isBinary))
            return
        try:
            data = self.decode_frame(payload, isBinary)
            if data is None:
                return  # not UTF-8: failed with 1007
            if "content" not in data:
                raise InvalidRequest('"content" is required')
            self.factory.context.service.post_quietly(
                self, self.room_name, data["content"], self._post_failed
            )
        except ChatError as e:
            self.send_error(e)

    def _post_failed(self, failure: Failure) -> None:
        self.send_error(self.chat_error(failure, "posting"))

    def write_error(self, error: ChatError, request_id: Any) -> None:
        self.sendMessage(error_frame(error))

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if getattr(self, "user", None) is not None:
            self.factory.context.service.disconnect(self)

    # -- IParticipant ------------------------------------------------------

    def send(self, payload: Any) -> None:
        self.write_prepared(payload)

    def removed(self, room: str, reason: str) -> None:
        # This connection exists for one room: being removed from it ends it.
        close_with(self, CLOSE_POLICY, f"removed from {room}: {reason}")

    def direct(self, message: Any) -> bool:
        return False  # the seed API has no direct messages

    def say_goodbye(self, goodbye: Goodbye, reason: DisconnectReason) -> None:
        close_with(self, goodbye.code, reason.text)


class RoomSocketFactory(ParkchatSocketFactory):
    """Builds room connections; holds the shared encoder."""

    protocol = RoomSocketProtocol  # type: ignore[assignment]
    decodes_text = True

    def __init__(
        self,
        context: AdapterContext,
        *,
        max_message_size: int = 65536,
        ping_interval: float = 30.0,
        ping_timeout: float = 20.0,
        handshake_timeout: float = 10.0,
    ) -> None:
        super().__init__(
            context,
            max_message_size=max_message_size,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            handshake_timeout=handshake_timeout,
        )
        self.encoder = PreparedMessageEncoder(self)
        #: For connections that asked with ``?since=``: objects carry ``"seq"``.
        self.sequenced = SequencedMessageEncoder(self)

    def bound(
        self,
        user: User,
        room_name: str,
        token_id: str | None = None,
        since: int | None = None,
    ) -> BoundFactory[RoomTicket]:
        """A one-use factory for the connection of ``user`` to ``room_name``
        (resuming after the room position ``since``, if given)."""
        return BoundFactory(self, RoomTicket(user, room_name, token_id, since))
