"""The golang-chat dialect (seed 003), over one parkchat room.

Wire protocol, as the seed's code has it (SEED-WIRE.md section 5; the full
reference with a transcript is docs/dialects.md):

* The client opens a WebSocket on ``/chat`` and sends messages
  ``{"userName", "body", "timestamp"}``, read like gorilla's ``ReadJSON``
  (``gowire``: the first JSON value counts). All three are the client's:
  ``timestamp`` is a display string (the seed's page sends ``3:05 PM``).
* Nothing is sent until the client's first message. Then the client gets the
  room's past messages, oldest first, one frame each, and then that first
  message, as everyone does.
* Every message goes to everyone, the sender included, as
  ``{"userName":U,"body":B,"timestamp":T}`` followed by a newline (gorilla's
  ``WriteJSON``). There are no join or leave events.
* ``GET /getAllMessages``: ``{"Messages":[...]}`` (see
  ``parkchat.web.dialects``).

What parkchat does its own way:

* Everything happens in one parkchat room (``--golang-chat-room``, default
  ``lobby``), shared with every other surface, stored, and capped: the past
  sent on the first message and ``/getAllMessages`` are the newest
  ``REPLAY`` messages (the seed sends all of them, and stops serving anyone
  past 100).
* ``userName`` is a guest's name (``guests.admit_guest``): not a registered
  account's, not someone else's in the room. A message under another name
  renames the connection (the others see a leave and a join) if that name
  may be used.
* ``timestamp`` is shown as the client sent it, live and in the past this
  instance sends (it remembers the strings of the newest ``REMEMBERED``
  messages posted through it); otherwise (messages from other surfaces or
  other instances, or from before a restart) it is the time parkchat stored
  the message, in RFC 3339.
* An empty or blank body is not posted. A message parkchat refuses (a name
  it does not admit, too long, too fast, not JSON) closes the connection
  with 1008 and the reason: golang-chat has no error message, and the seed
  dropped or deadlocked instead. Just before that close (and a moderator's
  kick) the client gets one message from ``NOTICE_NAME`` saying why, with
  the ``timestamp`` of its own last frame: the seed's page ignores close
  reasons, so without it a refused visitor (a name with a space, a second
  ``Anonymous``) would see nothing at all.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Mapping
from typing import Any

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from zope.interface import implementer

from parkchat.errors import ChatError
from parkchat.interfaces import IEncoder, IParticipant
from parkchat.model import CHAT, DirectMessage, DisconnectReason, Message, nickname_key
from parkchat.protocols.fastpath import close_with
from parkchat.protocols.gowire import go_encode, go_struct
from parkchat.protocols.guests import admit_guest
from parkchat.protocols.participant import (
    CLOSE_GOING_AWAY,
    CLOSE_POLICY,
    AdapterContext,
    Goodbye,
    Participant,
)
from parkchat.protocols.sockets import ParkchatServerProtocol, ParkchatSocketFactory

#: The most past messages a client is sent when it starts, and that
#: /getAllMessages shows (the seed's server stopped working beyond 100).
REPLAY = 100
DEFAULT_ROOM = "lobby"
CLOSE_INTERNAL = 1011
#: Client timestamps remembered per connection for messages still being stored.
PENDING_STAMPS = 64
#: Client timestamps remembered for stored messages (the past shows them).
REMEMBERED = 1000

#: Who the notice before a refusal's close is from: not a valid nickname, so
#: no guest or account can be mistaken for it.
NOTICE_NAME = "(parkchat)"

#: golang-chat's ``chat.Message``: what a client frame is read into.
FRAME_FIELDS = {"userName": str, "body": str, "timestamp": str}


def message_dict(user_name: str, body: str, timestamp: str) -> dict[str, str]:
    """golang-chat's message object (its field order)."""
    return {"userName": user_name, "body": body, "timestamp": timestamp}


class ClientStamps:
    """The ``timestamp`` strings golang-chat clients sent with their
    messages: the seed shows every message, live and in its past, with the
    string its sender gave.

    While a message is being stored its stamp waits under its connection's
    id, matched by content in order of posting (a connection's messages are
    stored and delivered in that order); once the stored message is
    encoded, the stamp is kept by message id for the newest ``REMEMBERED``.
    """

    def __init__(self) -> None:
        self._pending: dict[str, deque[tuple[str, str]]] = {}
        self._stored: OrderedDict[int, str] = OrderedDict()

    def expect(self, connection_id: str, content: str, stamp: str) -> None:
        queue = self._pending.setdefault(connection_id, deque(maxlen=PENDING_STAMPS))
        queue.append((content, stamp))

    def take(self, message: Message) -> str:
        """The client's stamp for a message being delivered, or the time it
        was stored."""
        queue = self._pending.get(message.origin) if message.origin is not None else None
        if queue and queue[0][0] == message.content:
            stamp = queue.popleft()[1]
            self._stored[message.id] = stamp
            while len(self._stored) > REMEMBERED:
                self._stored.popitem(last=False)
            return stamp
        return self.of(message)

    def of(self, message: Message) -> str:
        """The client's stamp for a stored message if remembered, else the
        time it was stored."""
        return self._stored.get(message.id, message.timestamp)

    def drop(self, connection_id: str, content: str) -> None:
        """A message was not stored: forget its stamp."""
        queue = self._pending.get(connection_id)
        if queue:
            for item in queue:
                if item[0] == content:
                    queue.remove(item)
                    break

    def forget(self, connection_id: str) -> None:
        self._pending.pop(connection_id, None)


def stored_dict(message: Message, stamps: ClientStamps) -> dict[str, str]:
    """A stored message as golang-chat shows it, with its client's stamp
    where remembered."""
    return message_dict(message.nickname, message.content, stamps.of(message))


@implementer(IEncoder)
class GolangChatEncoder:
    """Frames each chat message once for every golang-chat member; the
    payload keeps the message id so that a client still being sent the past
    can skip what it already got."""

    surface = "golang_chat"

    def __init__(self, factory: GolangChatFactory) -> None:
        self._factory = factory

    def encode(self, message: Message) -> tuple[int, Any] | None:
        if message.type != CHAT:
            return None  # golang-chat has no join, leave or typing events
        stamp = self._factory.stamps.take(message)
        frame = go_encode(message_dict(message.nickname, message.content, stamp))
        return (message.id, self._factory.prepareMessage(frame))


# (mypy's misc: two of Autobahn's own base classes disagree on attribute types)
@implementer(IParticipant)
class GolangChatProtocol(ParkchatServerProtocol, Participant):  # type: ignore[misc]
    """One golang-chat client in the dialect's room."""

    factory: GolangChatFactory

    surface = "golang_chat"
    goodbyes = {
        **{reason: Goodbye(CLOSE_POLICY) for reason in DisconnectReason},
        DisconnectReason.SHUTDOWN: Goodbye(CLOSE_GOING_AWAY),
    }

    def __init__(self) -> None:
        super().__init__()
        self.nickname = ""
        self.user_id: int | None = None
        self.connection_id: str | None = None
        self._frames: deque[dict[str, Any]] = deque()
        self._busy = False
        self._closing = False
        #: Live messages held while the past is being sent: (id, frame).
        self._held: list[tuple[int, Any]] | None = None
        #: The ``timestamp`` of the client's latest frame (for a notice).
        self._stamp = ""

    @property
    def encoder(self) -> IEncoder:
        return self.factory.encoder

    # -- connection ---------------------------------------------------------

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if self._closing:
            return
        try:
            frame = go_struct(payload, FRAME_FIELDS)
        except ChatError as e:
            self.send_error(e)
            return
        self._frames.append(frame)
        if not self._busy:
            Deferred.fromCoroutine(self._drain()).addErrback(self._failed, "a message")

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self._closing = True
        self._frames.clear()
        self._unregister()

    def _unregister(self) -> None:
        if self.connection_id is not None:
            self.factory.stamps.forget(self.connection_id)
            self.factory.context.service.disconnect(self)
            self.connection_id = None

    # -- messages, one at a time --------------------------------------------

    async def _drain(self) -> None:
        self._busy = True
        try:
            while self._frames and not self._closing:
                await self._handle(self._frames.popleft())
        finally:
            self._busy = False

    async def _handle(self, frame: dict[str, Any]) -> None:
        self._stamp = frame["timestamp"]
        service = self.factory.context.service
        room = self.factory.room
        name = frame["userName"]
        if self.connection_id is None or nickname_key(name) != nickname_key(self.nickname):
            nickname = await admit_guest(
                service, name, room, allow_guests=self.factory.allow_guests
            )
            if self._closing:
                return
            first = self.connection_id is None
            self._unregister()  # a new name: leave under the old one
            self.nickname = nickname
            self.connection_id = service.connect(self)
            if first:
                self._held = []
            service.join(self, room)
            if first:
                await self._send_past(room)
                if self._closing:
                    return
        body = frame["body"]
        if not body.strip():
            return
        assert self.connection_id is not None
        stamps = self.factory.stamps
        stamps.expect(self.connection_id, body, frame["timestamp"])
        try:
            d = service.post(self, room, body)
        except ChatError:
            stamps.drop(self.connection_id, body)
            raise
        d.addErrback(self._post_failed, self.connection_id, body)

    async def _send_past(self, room: str) -> None:
        """The room's newest messages, oldest first, then what arrived live
        meanwhile and is newer."""
        past = await self.factory.context.service.history(room, limit=REPLAY)
        if self._closing:
            return
        newest = 0
        stamps = self.factory.stamps
        for message in past:
            self.sendMessage(go_encode(stored_dict(message, stamps)))
            newest = max(newest, message.id)
        held, self._held = self._held or [], None
        for message_id, frame in held:
            if message_id > newest:
                self.write_prepared(frame)

    def _post_failed(self, failure: Failure, connection_id: str, body: str) -> None:
        self.factory.stamps.drop(connection_id, body)
        self._failed(failure, "posting")

    def _failed(self, failure: Failure, doing: str) -> None:
        if not self._closing:
            self.send_error(self.chat_error(failure, doing))

    # -- errors and closing -----------------------------------------------------

    def write_error(self, error: ChatError, request_id: Any) -> None:
        """golang-chat has no error message: tell the client in a message
        of its own format, then close, saying why."""
        code = CLOSE_INTERNAL if error.http_status >= 500 else CLOSE_POLICY
        self._refuse(code, error.message)

    def _refuse(self, code: int, reason: str) -> None:
        """A notice the seed's page can show (it shows every frame as a
        message and ignores close reasons), then the close."""
        if self._closing:
            return
        notice = f"{reason.rstrip('.')}. You are disconnected: reload the page to try again."
        self.sendMessage(go_encode(message_dict(NOTICE_NAME, notice, self._stamp)))
        self._close(code, reason)

    def say_goodbye(self, goodbye: Goodbye, reason: DisconnectReason) -> None:
        self._close(goodbye.code, reason.text)

    def _close(self, code: int, reason: str) -> None:
        if self._closing:
            return
        self._closing = True
        close_with(self, code, reason)

    # -- IParticipant -----------------------------------------------------------

    def send(self, payload: tuple[int, Any]) -> None:
        if self._closing:
            return
        if self._held is not None:
            self._held.append(payload)
        else:
            self.write_prepared(payload[1])

    def removed(self, room: str, reason: str) -> None:
        self._refuse(CLOSE_POLICY, f"removed from {room}: {reason}")

    def direct(self, message: DirectMessage) -> bool:
        return False  # golang-chat has no direct messages (and guests get none)


class GolangChatFactory(ParkchatSocketFactory):
    """Builds golang-chat connections to one room."""

    protocol = GolangChatProtocol  # type: ignore[assignment]

    def __init__(
        self,
        context: AdapterContext,
        room: str = DEFAULT_ROOM,
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
        self.room = room
        #: ``--allow-guests``: golang-chat's users are all guests.
        self.allow_guests = allow_guests
        self.stamps = ClientStamps()
        self.encoder = GolangChatEncoder(self)

    def past(self) -> Deferred[list[Mapping[str, str]]]:
        """The room's newest messages as golang-chat objects (``/getAllMessages``)."""
        d = self.context.service.history(self.room, limit=REPLAY)
        return d.addCallback(lambda messages: [stored_dict(m, self.stamps) for m in messages])
