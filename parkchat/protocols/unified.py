"""``GET /ws``: the one WebSocket endpoint for apps (MISSION section C).

One JSON dispatcher that speaks GarinChat's vocabulary (``auth``, ``join``,
``message``, ``userleave``), seed 004's (``chat``, ``get_online_list``,
``get_offline``) and parkchat's own (``history``, ``who``, ``ping``,
``typing``, several rooms per connection, resume from the last seen room
position (``seq``), client ``id`` acknowledged with the stored id and seq,
and the account state that follows an account from device to device:
``state``, ``read``, ``mute``, ``open_direct``, ``close_direct``, pushed
``room_state`` / ``direct_state``).
Every frame is a JSON object with a ``type``; every reply to a frame that
carried an ``id`` carries it back. The full reference with one example
exchange per type is docs/websocket.md.

Messages are not echoed to the connection that sent them (GarinChat clients
show their own messages at once); that connection gets an ``ack`` with the
stored id instead. The account's other connections do receive them.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable
from typing import Any

from autobahn.twisted.websocket import WebSocketServerFactory
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from zope.interface import implementer

from parkchat.errors import (
    AuthenticationFailed,
    Banned,
    ChatError,
    InvalidRequest,
    NotAuthenticated,
    NotInRoom,
    RateLimited,
    UnknownType,
)
from parkchat.interfaces import IAccountStateReceiver, IChatService, IEncoder, IParticipant
from parkchat.model import (
    DELETED,
    EDITED,
    FROM_STORE,
    JOINED,
    MAX_ID,
    SYSTEM,
    TOPIC,
    DirectMessage,
    DirectState,
    DisconnectReason,
    JoinResult,
    Message,
    MessageEdit,
    RoomState,
    RoomTopic,
    SearchHit,
    format_timestamp,
    nickname_key,
)
from parkchat.protocols.fastpath import close_with
from parkchat.protocols.participant import (
    CLOSE_GOING_AWAY,
    CLOSE_POLICY,
    AdapterContext,
    Goodbye,
    Participant,
)
from parkchat.protocols.sockets import BoundFactory, ParkchatServerProtocol, ParkchatSocketFactory
from parkchat.tokens import TokenClaims, TokenVerifier

#: Close codes of /ws beyond RFC 6455's (documented in docs/websocket.md).
CLOSE_AUTH_TIMEOUT = 4001
CLOSE_JOIN_TIMEOUT = 4002
CLOSE_BANNED = 4003
CLOSE_REPLACED = 4004
CLOSE_LOGGED_OUT = 4005
CLOSE_NAME_REGISTERED = 4006

TYPING = "typing"
TYPING_INTERVAL = 1.0
#: How many of its own acknowledged message ids a /ws connection remembers.
ACKED_KEPT = 1000
#: The smallest ``max_frame`` a client may ask for (bytes).
MIN_FRAME = 1024
#: Rooms in one ``room_list`` answer.
ROOM_LIST_LIMIT = 100


def dumps(value: Any) -> bytes:
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate echoed from the client (its "id")
        return json.dumps(value, separators=(",", ":")).encode("ascii")


def event_dict(message: Message, total_users: int | None = None) -> dict[str, Any]:
    """A room event as /ws shows it; one about a guest (a member without an
    account) carries ``"guest": true`` (before ``totalUsers``)."""
    if message.type == SYSTEM:
        kind = "join" if message.event == JOINED else "userleave"
        event: dict[str, Any] = {
            "type": kind,
            "room": message.room,
            "username": message.nickname,
            "timestamp": message.timestamp,
        }
    elif message.type == TYPING:
        typing: dict[str, Any] = {
            "type": "typing",
            "room": message.room,
            "username": message.nickname,
        }
        if message.guest:
            typing["guest"] = True
        return typing
    elif message.type == DELETED:
        return {"type": "deleted", "room": message.room, "id": message.id, "seq": message.seq}
    elif message.type == EDITED:
        return {
            "type": "edited",
            "room": message.room,
            "id": message.id,
            "seq": message.seq,
            "body": message.content,
            "username": message.nickname,
            "edited_at": message.edited_at,
        }
    elif message.type == TOPIC:
        return {
            "type": "topic",
            "room": message.room,
            "topic": message.content,
            "username": message.nickname,
            "timestamp": message.timestamp,
        }
    else:
        event = {
            "type": "message",
            "id": message.id,
            "seq": message.seq,
            "room": message.room,
            "username": message.nickname,
            "body": message.content,
            "timestamp": message.timestamp,
        }
        if message.edited_ms is not None:
            event["edited_at"] = message.edited_at
        if message.mentions:
            event["mentions"] = list(message.mentions)
    if message.guest:
        event["guest"] = True
    if total_users is not None:
        event["totalUsers"] = total_users
    return event


def search_result_dict(hit: SearchHit) -> dict[str, Any]:
    """One search result as /ws and ``GET /search`` show it."""
    result: dict[str, Any] = (
        {"room": hit.room} if hit.room is not None else {"with": hit.with_nickname}
    )
    result.update(
        id=hit.id,
        seq=hit.seq,
        username=hit.nickname,
        body=hit.content,
        timestamp=hit.timestamp,
        highlights=[list(span) for span in hit.highlights],
    )
    if hit.edited_ms is not None:
        result["edited_at"] = format_timestamp(hit.edited_ms)
    return result


def edit_dict(edit: MessageEdit) -> dict[str, Any]:
    """One recorded edit, as ``/ws`` ``edits`` and the admin API show it."""
    return {
        "old_body": edit.old_content,
        "editor": edit.editor,
        "editor_id": edit.editor_id,
        "edited_at": edit.edited_at,
    }


def topic_dict(room: str, topic: RoomTopic | None) -> dict[str, Any]:
    """A room's topic as a /ws ``topic`` frame (``""``: none)."""
    if topic is None:
        return {"type": "topic", "room": room, "topic": ""}
    return {
        "type": "topic",
        "room": room,
        "topic": topic.text,
        "username": topic.nickname,
        "timestamp": topic.set_at,
    }


def direct_dict(message: DirectMessage) -> dict[str, Any]:
    return {
        "type": "chat",
        "id": message.id,
        "seq": message.seq,
        "from_user_id": message.from_user_id,
        "from": message.from_nickname,
        "to_user_id": message.to_user_id,
        "to": message.to_nickname,
        "content": message.content,
        "timestamp": message.timestamp,
    }


def room_state_dict(state: RoomState) -> dict[str, Any]:
    """R of the ``state`` frame (docs/websocket.md, "Account state")."""
    return {
        "room": state.room,
        "seq": state.seq,
        "read_seq": state.read_seq,
        "unread": state.unread,
        "mentions": state.mentions,
        "muted": state.muted,
        "topic": state.topic,
    }


def direct_state_dict(state: DirectState) -> dict[str, Any]:
    """D of the ``state`` frame."""
    return {
        "with": state.with_nickname,
        "with_user_id": state.with_user_id,
        "seq": state.seq,
        "read_seq": state.read_seq,
        "unread": state.unread,
    }


def paged(head: dict[str, Any], items: list[bytes], limit: int) -> list[bytes]:
    """Frames ``head`` + ``"messages": [...]`` + ``"last": bool`` holding
    ``items`` (encoded message objects) in order, each frame at most
    ``limit`` bytes (0: no limit) unless one item alone is larger (a frame
    holds at least one); ``last`` is true on the final frame. No items: no
    frame."""
    prefix = dumps(head)[:-1] + b',"messages":['
    budget = limit - len(prefix) - len(b'],"last":false}') if limit > 0 else None
    pages: list[list[bytes]] = []
    page: list[bytes] = []
    size = 0
    for item in items:
        extra = len(item) + (1 if page else 0)
        if page and budget is not None and size + extra > budget:
            pages.append(page)
            page, extra, size = [], len(item), 0
        page.append(item)
        size += extra
    if page:
        pages.append(page)
    return [
        prefix + b",".join(page) + (b'],"last":true}' if n == len(pages) else b'],"last":false}')
        for n, page in enumerate(pages, 1)
    ]


def newest_fitting(head: dict[str, Any], items: list[bytes], limit: int) -> int:
    """How many of the last ``items`` fit in one ``paged`` frame of at most
    ``limit`` bytes (at least one, if there are any)."""
    if limit <= 0:
        return len(items)
    budget = limit - len(dumps(head)) - len(b',"messages":[],"last":false')
    count = size = 0
    for item in reversed(items):
        extra = len(item) + (1 if count else 0)
        if count and size + extra > budget:
            break
        count += 1
        size += extra
    return count


@implementer(IEncoder)
class AppEventEncoder:
    """Frames each room event once for every /ws member; the payload keeps
    the poster's connection id, and the message id, so that the poster can
    be skipped (by id when the message came from the store, which does not
    keep the connection: ``FROM_STORE``)."""

    def __init__(self, factory: WebSocketServerFactory, member_count: Callable[[str], int]):
        self._factory = factory
        self._member_count = member_count

    surface = "app_ws"

    def encode(self, message: Message) -> tuple[str | None, Any, int]:
        total = (
            None
            if message.type in (TYPING, DELETED, EDITED, TOPIC)
            else self._member_count(message.room)
        )
        frame = self._factory.prepareMessage(dumps(event_dict(message, total)))
        return (message.origin if message.type != SYSTEM else None, frame, message.id)


# (mypy's misc: two of Autobahn's own base classes disagree on attribute types)
@implementer(IParticipant, IAccountStateReceiver)
class AppSocketProtocol(ParkchatServerProtocol, Participant):  # type: ignore[misc]
    """One app connection on /ws."""

    factory: AppSocketFactory
    claims: TokenClaims | None = None

    surface = "app_ws"
    not_an_object = 'frame must be a JSON object with a "type"'
    goodbyes = {
        DisconnectReason.SHUTDOWN: Goodbye(CLOSE_GOING_AWAY),
        DisconnectReason.REPLACED: Goodbye(CLOSE_REPLACED),
        DisconnectReason.BANNED: Goodbye(CLOSE_BANNED),
        DisconnectReason.LOGGED_OUT: Goodbye(CLOSE_LOGGED_OUT),
        DisconnectReason.TOKEN_REVOKED: Goodbye(CLOSE_LOGGED_OUT),
        DisconnectReason.DELIVERY_FAILED: Goodbye(CLOSE_POLICY),
        DisconnectReason.NAME_REGISTERED: Goodbye(CLOSE_NAME_REGISTERED),
        DisconnectReason.TOO_MANY_CONNECTIONS: Goodbye(CLOSE_POLICY),
    }

    def __init__(self) -> None:
        super().__init__()
        self.connection_id: str | None = None
        self._last_typing = float("-inf")
        self._closing = False
        self._authenticating = False
        # Ids of this connection's messages, acknowledged lately: one a gap
        # fill brings back from the store (``FROM_STORE``) is not shown as
        # an event next to its ack.
        self._acked: set[int] = set()
        self._acked_order: deque[int] = deque()

    def establish(self, claims: TokenClaims | None) -> None:
        """The identity established over HTTP, if any (else: an auth frame)."""
        self.claims = claims

    # -- IParticipant attributes --------------------------------------------

    @property
    def nickname(self) -> str:  # type: ignore[override]
        return self.claims.nickname if self.claims is not None else ""

    @property
    def user_id(self) -> int | None:
        return self.claims.user_id if self.claims is not None else None

    @property
    def encoder(self) -> IEncoder:
        return self.factory.encoder

    @property
    def token_id(self) -> str | None:
        """The id of the login token this connection proved (None for
        Basic credentials and external tokens): its revocation closes it."""
        return self.claims.token_id if self.claims is not None else None

    @property
    def service(self) -> IChatService:
        return self.factory.context.service

    # -- connection ---------------------------------------------------------

    def onOpen(self) -> None:
        if self.claims is not None:
            self._authenticated()
        else:
            self.start_timer(
                self.factory.auth_timeout,
                self._close,
                CLOSE_AUTH_TIMEOUT,
                "no authentication received in time",
            )

    def _authenticated(self, request_id: Any = None) -> None:
        try:
            self.connection_id = self.service.connect(self)
        except ChatError as e:
            self.send_error(e, request_id)
            self._close(CLOSE_POLICY, e.message)
            return
        self.cancel_timer()
        ready: dict[str, Any] = {
            "type": "ready",
            "user_id": self.user_id,
            "nickname": self.nickname,
            "connection_id": self.connection_id,
        }
        if request_id is not None:
            ready["id"] = request_id
        self._send_json(ready)
        if self.user_id is not None:
            self._send_state(None)
        self._log.info(
            "{nickname} connected to /ws from {peer}", nickname=self.nickname, peer=self.peer_host
        )
        if self.factory.join_timeout > 0:
            self.start_timer(
                self.factory.join_timeout, self._close, CLOSE_JOIN_TIMEOUT, "no room joined in time"
            )

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        request_id: Any = None
        try:
            frame = self.decode_frame(payload, isBinary)
            if frame is None:
                return  # not UTF-8: failed with 1007
            request_id = frame.get("id")
            kind = frame.get("type")
            if not isinstance(kind, str):
                raise InvalidRequest(
                    '"type" is required',
                )
            handler = getattr(self, "handle_" + kind, None)
            if handler is None:
                raise UnknownType(f"unknown message type {kind!r}")
            if self.connection_id is None and kind not in ("auth", "ping"):
                raise NotAuthenticated('authenticate first: {"type": "auth", "body": TOKEN}')
            result = handler(frame)
        except ChatError as e:
            self._failed(e, request_id)
            return
        if isinstance(result, Deferred):
            result.addErrback(self._async_failed, request_id)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self._closing = True
        self.cancel_timer()
        if self.connection_id is not None:
            self.service.disconnect(self)

    # -- handlers: authentication -------------------------------------------

    def handle_auth(self, frame: dict[str, Any]) -> Deferred[None]:
        if self.connection_id is not None or self._authenticating:
            raise InvalidRequest("already authenticated")
        token = frame.get("body", frame.get("token"))
        claims = self.factory.tokens.verify(token)
        self._authenticating = True
        return Deferred.fromCoroutine(self._admit(claims, frame.get("id")))

    async def _admit(self, claims: TokenClaims, request_id: Any) -> None:
        try:
            await self.service.admit_token(claims.nickname, claims.user_id)
        finally:
            self._authenticating = False
        if self._closing:
            return
        self.claims = claims
        self._authenticated(request_id)

    # -- handlers: rooms (GarinChat + parkchat) --------------------------------

    def handle_join(self, frame: dict[str, Any]) -> Deferred[None]:
        """Join a room; with ``last_seq`` (the last room seq the client saw)
        the messages it missed come first, in ``history`` frames (the
        deprecated ``last_id`` still works: see ``_join_after_id``)."""
        username = frame.get("username")
        if username is not None and (
            not isinstance(username, str) or nickname_key(username) != nickname_key(self.nickname)
        ):
            raise InvalidRequest("username does not match the authenticated account")
        room = frame.get("room")
        last_seq = _optional_int(frame, "last_seq", 0, MAX_ID, "a room seq")
        # Checked, like every field, before anything is joined: an error
        # frame and no membership, not a join followed by an error.
        last_id = _optional_int(frame, "last_id", 0, MAX_ID, "a message id (0 or more)")
        max_frame = _optional_int(frame, "max_frame", MIN_FRAME, None, f"at least {MIN_FRAME}")
        if not isinstance(room, str):
            raise InvalidRequest('"room" is required')
        limit = self._frame_limit(max_frame)
        if last_seq is None and last_id is not None:
            return Deferred.fromCoroutine(self._join_after_id(frame, room, last_id, limit))
        d = self.service.join(self, room, last_seq)
        if self.factory.join_timeout > 0:
            self.cancel_timer()
        return d.addCallback(self._joined, frame, room, limit)

    def _joined(self, result: JoinResult, frame: dict[str, Any], room: str, limit: int) -> None:
        """``joined``, then the replay in ``history`` frames under ``limit``
        bytes, all before anything live can reach this connection."""
        self._record_join(room)
        replay = [dumps(event_dict(m)) for m in result.replay]
        self._reply(frame, self._joined_frame(result, room, len(replay), result.recovered))
        head: dict[str, Any] = {"type": "history", "room": room, "resume": True}
        if frame.get("id") is not None:
            head["id"] = frame["id"]
        for page in paged(head, replay, limit):
            self._send_bytes(page)

    async def _join_after_id(
        self, frame: dict[str, Any], room: str, last_id: int, limit: int
    ) -> None:
        """The deprecated resume by message id: ``last_id`` is mapped to the
        seq of that message (or of the newest before it) and answered as
        before this release, with one ``history`` frame (with
        ``recovered``), now holding only the newest missed messages that fit
        under the frame limit."""
        since = 0
        if last_id > 0:
            before = await self.service.history(room, limit=1, before=min(last_id + 1, MAX_ID))
            since = before[-1].seq if before else 0
        if self._closing:
            return
        d = self.service.join(self, room, since)
        if self.factory.join_timeout > 0:
            self.cancel_timer()
        result = await d
        self._record_join(room)
        replay = [dumps(event_dict(m)) for m in result.replay]
        head: dict[str, Any] = {"type": "history", "room": room, "recovered": False, "resume": True}
        if frame.get("id") is not None:
            head["id"] = frame["id"]
        fits = newest_fitting(head, replay, limit)
        recovered = head["recovered"] = result.recovered and fits == len(replay)
        shown = replay[len(replay) - fits :]
        self._reply(frame, self._joined_frame(result, room, fits, recovered))
        pages = paged(head, shown, 0)
        self._send_bytes(pages[0] if pages else dumps({**head, "messages": [], "last": True}))

    def _joined_frame(
        self, result: JoinResult, room: str, count: int, recovered: bool
    ) -> dict[str, Any]:
        joined: dict[str, Any] = {
            "type": "joined",
            "room": room,
            "seq": result.seq,
            "totalUsers": self.service.member_count(room),
        }
        if result.topic is not None:
            joined["topic"] = result.topic.text
        if result.resumed:
            first = result.replay[len(result.replay) - count].seq if count else None
            joined["resume"] = {"count": count, "recovered": recovered, "first_seq": first}
        return joined

    def _frame_limit(self, max_frame: int | None) -> int:
        """The largest frame to send this client: the server's frame limit,
        or the client's own ``max_frame`` if smaller (0: no limit)."""
        server = int(getattr(self, "maxMessagePayloadSize", 0) or 0)
        if max_frame is None:
            return server
        return min(server, max_frame) if server > 0 else max_frame

    def handle_message(self, frame: dict[str, Any]) -> Deferred[None]:
        room = self._room_of(frame)
        content = frame.get("body", frame.get("content"))
        d = self.service.post(self, room, content)
        return d.addCallback(self._answered, frame)

    def _answered(self, message: Message, frame: dict[str, Any]) -> None:
        self._acked.add(message.id)
        self._acked_order.append(message.id)
        if len(self._acked_order) > ACKED_KEPT:
            self._acked.discard(self._acked_order.popleft())
        self._reply(
            frame,
            {
                "type": "ack",
                "message_id": message.id,
                "seq": message.seq,
                "room": message.room,
                "timestamp": message.timestamp,
            },
        )

    def handle_userleave(self, frame: dict[str, Any]) -> None:
        rooms = (
            [self._room_of(frame)]
            if frame.get("room") is not None or len(self.service.rooms_of(self)) == 1
            else sorted(self.service.rooms_of(self))
        )
        if not rooms:
            raise NotInRoom("not in any room")
        for room in rooms:
            self.service.leave(self, room)
            if self.user_id is not None:
                self._quietly(self.service.record_leave(self, room), "forgetting a left room")
        self._reply(frame, {"type": "left", "rooms": rooms})

    handle_leave = handle_userleave

    def handle_history(self, frame: dict[str, Any]) -> Deferred[None]:
        """Stored messages of a room, paged by id (``before``/``after``) or
        by seq (``before_seq``/``after_seq``); the answer comes in as many
        ``history`` frames as the frame limit needs (``last`` marks the
        final one)."""
        room = frame.get("room")
        params = {}
        for name in ("before", "after", "limit", "after_seq", "before_seq"):
            value = frame.get(name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise InvalidRequest(f'"{name}" must be an integer')
            params[name] = value
        max_frame = _optional_int(frame, "max_frame", MIN_FRAME, None, f"at least {MIN_FRAME}")
        if not isinstance(room, str):
            raise InvalidRequest('"room" is required')
        d = self.service.history(
            room,
            limit=params["limit"],
            before=params["before"],
            after=params["after"],
            after_seq=params["after_seq"],
            before_seq=params["before_seq"],
        )
        limit = self._frame_limit(max_frame)

        def reply(messages: list[Message]) -> None:
            head: dict[str, Any] = {"type": "history", "room": room}
            if frame.get("id") is not None:
                head["id"] = frame["id"]
            pages = paged(head, [dumps(event_dict(m)) for m in messages], limit)
            for page in pages or [dumps({**head, "messages": [], "last": True})]:
                self._send_bytes(page)

        return d.addCallback(reply)

    # -- handlers: edits, deletions, search, topics (issue #16) ------------------

    def handle_edit(self, frame: dict[str, Any]) -> Deferred[None]:
        """Give one's own message (anyone's, for a moderator) a new text:
        ``ack`` here, ``edited`` to every member of the room."""
        d = Deferred.fromCoroutine(
            self.service.edit_message(
                self, frame.get("room"), frame.get("seq"), frame.get("body", frame.get("content"))
            )
        )
        return d.addCallback(self._changed, frame)

    def handle_delete(self, frame: dict[str, Any]) -> Deferred[None]:
        """Delete one's own message (anyone's, for a moderator): ``ack``
        here, ``deleted`` to every member of the room."""
        d = Deferred.fromCoroutine(
            self.service.delete_own_message(self, frame.get("room"), frame.get("seq"))
        )
        return d.addCallback(self._changed, frame)

    def handle_edits(self, frame: dict[str, Any]) -> Deferred[None]:
        """For moderators: the recorded edits of the message ``message_id``
        (the texts it replaced, who edited, when), oldest first."""
        message_id = frame.get("message_id")
        d = self.service.message_edits(message_id, self)

        def reply(edits: list[Any]) -> None:
            self._reply(
                frame,
                {"type": "edits", "message_id": message_id, "edits": [edit_dict(e) for e in edits]},
            )

        return d.addCallback(reply)

    def _changed(self, message: Message, frame: dict[str, Any]) -> None:
        self._reply(frame, {"type": "ack", "room": message.room, "seq": message.seq})

    def handle_search(self, frame: dict[str, Any]) -> Deferred[None]:
        """Search the messages this account may read (``q``, optional
        ``room`` or ``with``, ``before`` cursor, ``limit``)."""
        d = Deferred.fromCoroutine(
            self.service.search(
                self.user_id,
                self.nickname,
                frame.get("q"),
                room=frame.get("room"),
                with_nickname=frame.get("with"),
                before=frame.get("before"),
                limit=frame.get("limit"),
            )
        )

        def reply(page: Any) -> None:
            results = [search_result_dict(hit) for hit in page.hits]
            self._reply(frame, {"type": "search", "results": results, "next": page.next})

        return d.addCallback(reply)

    def handle_topic(self, frame: dict[str, Any]) -> Deferred[None]:
        """With ``"topic"``: set (``""``: clear) the topic of a room this
        connection is in (``ack``; every member gets a ``topic`` event).
        Without: the room's topic, as a ``topic`` frame."""
        room = frame.get("room")
        if "topic" not in frame:
            d = Deferred.fromCoroutine(self.service.room_topic(room))
            return d.addCallback(lambda topic: self._reply(frame, topic_dict(str(room), topic)))
        d = Deferred.fromCoroutine(self.service.set_topic(self, room, frame["topic"]))
        return d.addCallback(lambda _: self._reply(frame, {"type": "ack", "room": room}))

    def handle_who(self, frame: dict[str, Any]) -> None:
        room = self._room_of(frame)
        users = self.service.members(room)
        self._reply(frame, {"type": "who", "room": room, "users": users, "totalUsers": len(users)})

    def handle_rooms(self, frame: dict[str, Any]) -> None:
        self._reply(frame, {"type": "rooms", "rooms": sorted(self.service.rooms_of(self))})

    def handle_list_rooms(self, frame: dict[str, Any]) -> None:
        """The room directory: rooms with people in them, busiest first."""
        rooms = self.service.active_rooms(self, ROOM_LIST_LIMIT)
        self._reply(
            frame,
            {"type": "room_list", "rooms": [{"room": n, "totalUsers": c} for n, c in rooms]},
        )

    def handle_typing(self, frame: dict[str, Any]) -> None:
        room = self._room_of(frame)
        now = self.factory.context.clock.seconds()
        if now - self._last_typing < TYPING_INTERVAL:
            return  # typing notices are best effort: excess is dropped quietly
        self._last_typing = now
        self.service.notify(self, room, TYPING)

    def handle_ping(self, frame: dict[str, Any]) -> None:
        self._reply(frame, {"type": "pong"})

    # -- handlers: account state ---------------------------------------------------

    def _record_join(self, room: str) -> None:
        """A room joined here is the account's on every device until left."""
        if self.user_id is not None:
            self._quietly(self.service.record_join(self, room), "recording a joined room")

    def _quietly(self, work: Any, doing: str) -> None:
        """Run ``work`` (a coroutine) for its effect; a failure is logged."""
        Deferred.fromCoroutine(work).addErrback(
            lambda f: self._log.failure("{doing} failed", f, doing=doing)
        )

    def _send_state(self, frame: dict[str, Any] | None) -> Deferred[None]:
        d = Deferred.fromCoroutine(self.service.account_state(self))

        def send(state: tuple[list[RoomState], list[DirectState]]) -> None:
            rooms, directs = state
            reply = {
                "type": "state",
                "rooms": [room_state_dict(r) for r in rooms],
                "directs": [direct_state_dict(d) for d in directs],
            }
            if frame is not None:
                self._reply(frame, reply)
            else:
                self._send_json(reply)

        d.addCallback(send)
        if frame is None:
            d.addErrback(lambda f: self._log.failure("reading the account state failed", f))
        return d

    def handle_state(self, frame: dict[str, Any]) -> Deferred[None]:
        """The account's rooms and conversations again (as after ``ready``)."""
        return self._send_state(frame)

    def handle_read(self, frame: dict[str, Any]) -> Deferred[None]:
        """Move a read marker forward: ``room`` or ``with``, and ``seq``."""
        other = frame.get("with_user_id", frame.get("with"))
        d = Deferred.fromCoroutine(
            self.service.mark_read(self, frame.get("room"), other, frame.get("seq"))
        )
        return d.addCallback(self._acked_request, frame)

    def handle_mute(self, frame: dict[str, Any]) -> Deferred[None]:
        d = Deferred.fromCoroutine(
            self.service.mute(self, frame.get("room"), frame.get("muted", True))
        )
        return d.addCallback(self._acked_request, frame)

    def handle_open_direct(self, frame: dict[str, Any]) -> Deferred[None]:
        other = frame.get("with_user_id", frame.get("with"))
        d = Deferred.fromCoroutine(self.service.open_direct(self, other))
        return d.addCallback(self._acked_request, frame)

    def handle_close_direct(self, frame: dict[str, Any]) -> Deferred[None]:
        other = frame.get("with_user_id", frame.get("with"))
        d = Deferred.fromCoroutine(self.service.close_direct(self, other))
        return d.addCallback(self._acked_request, frame)

    def _acked_request(self, _: object, frame: dict[str, Any]) -> None:
        """Requests whose effect comes as a pushed state: an ``ack`` only
        if the client gave an ``id``."""
        if frame.get("id") is not None:
            self._reply(frame, {"type": "ack"})

    def account_state(self, state: RoomState | DirectState) -> None:
        """IAccountStateReceiver: a change from any of the account's connections."""
        if isinstance(state, RoomState):
            frame = {"type": "room_state", **room_state_dict(state), "joined": state.joined}
        else:
            frame = {"type": "direct_state", **direct_state_dict(state), "open": state.open}
        self._send_json(frame)

    # -- handlers: direct messages (seed 004) ----------------------------------

    def handle_chat(self, frame: dict[str, Any]) -> Deferred[None]:
        to = frame.get("to_user_id", frame.get("to"))
        d = Deferred.fromCoroutine(self.service.send_direct(self, to, frame.get("content")))

        def ack(message: DirectMessage) -> None:
            self._reply(
                frame,
                {
                    "type": "ack",
                    "message_id": message.id,
                    "seq": message.seq,
                    "to_user_id": message.to_user_id,
                    "timestamp": message.timestamp,
                },
            )

        return d.addCallback(ack)

    def handle_get_direct_history(self, frame: dict[str, Any]) -> Deferred[None]:
        """The direct messages between this account and ``with`` (a user id
        or nickname), oldest first; ``limit`` and ``before`` page back."""
        other = frame.get("with_user_id", frame.get("with"))
        d = Deferred.fromCoroutine(
            self.service.direct_history(
                self,
                other,
                frame.get("limit"),
                frame.get("before"),
                after_seq=frame.get("after_seq"),
                before_seq=frame.get("before_seq"),
            )
        )

        def reply(result: tuple[Any, list[DirectMessage]]) -> None:
            account, messages = result
            self._reply(
                frame,
                {
                    "type": "direct_history",
                    "with_user_id": account.id,
                    "with": account.nickname,
                    "messages": [direct_dict(m) for m in messages],
                },
            )

        return d.addCallback(reply)

    def handle_get_online_list(self, frame: dict[str, Any]) -> None:
        users = self.service.online_users()
        self._reply(
            frame,
            {
                "type": "online_list",
                "data": [u.id for u in users],
                "users": [{"user_id": u.id, "nickname": u.nickname} for u in users],
            },
        )

    def handle_get_offline(self, frame: dict[str, Any]) -> Deferred[None]:
        d = Deferred.fromCoroutine(self.service.offline_messages(self))

        def reply(messages: list[DirectMessage]) -> None:
            self._reply(
                frame,
                {
                    "type": "offline_list",
                    "data": [
                        {
                            "msg_id": m.id,
                            "to_user_id": m.to_user_id,
                            "from_user_id": m.from_user_id,
                            "from": m.from_nickname,
                            "content": m.content,
                            "created_at": m.timestamp,
                        }
                        for m in messages
                    ],
                },
            )

        return d.addCallback(reply)

    # -- IParticipant -----------------------------------------------------------

    def send(self, payload: tuple[str | None, Any, int]) -> None:
        origin, frame, message_id = payload
        if origin is not None and (
            origin == self.connection_id or (origin == FROM_STORE and message_id in self._acked)
        ):
            return
        if not self._closing:
            self.write_prepared(frame)

    def direct(self, message: DirectMessage) -> bool:
        if self._closing:
            return False
        self._send_json(direct_dict(message))
        return True

    def removed(self, room: str, reason: str) -> None:
        self._send_json({"type": "kicked", "room": room, "reason": reason})

    def say_goodbye(self, goodbye: Goodbye, reason: DisconnectReason) -> None:
        self._close(goodbye.code, reason.text)

    # -- helpers ----------------------------------------------------------------

    def _room_of(self, frame: dict[str, Any]) -> str:
        """The frame's room, or the connection's only room if it names none."""
        room = frame.get("room")
        if room is None:
            rooms = self.service.rooms_of(self)
            if len(rooms) != 1:
                if not rooms:
                    raise NotInRoom("join a room first")
                raise InvalidRequest('"room" is required: this connection is in several rooms')
            return next(iter(rooms))
        if not isinstance(room, str):
            raise InvalidRequest('"room" must be a string')
        if room not in self.service.rooms_of(self):
            raise NotInRoom(f"not in room {room!r}")
        return room

    def _send_json(self, value: dict[str, Any]) -> None:
        self._send_bytes(dumps(value))

    def _send_bytes(self, frame: bytes) -> None:
        # Not once closing has begun, from either side: an answer (an ack)
        # may come after the client sent its close frame.
        if not self._closing and self.state == self.STATE_OPEN:
            self.sendMessage(frame)

    def _reply(self, frame: dict[str, Any], value: dict[str, Any]) -> None:
        if frame.get("id") is not None:
            value["id"] = frame["id"]
        self._send_json(value)

    def write_error(self, error: ChatError, request_id: Any) -> None:
        value: dict[str, Any] = {"type": "error", "code": error.code, "content": error.message}
        if request_id is not None:
            value["id"] = request_id
        self._send_json(value)

    def _failed(self, error: ChatError, request_id: Any) -> None:
        self.send_error(error, request_id)
        if isinstance(error, RateLimited) and self.factory.rate_strict:
            self._close(CLOSE_POLICY, "rate limit exceeded")
        elif isinstance(error, Banned) and self.connection_id is None:
            self._close(CLOSE_BANNED, error.message)
        elif isinstance(error, AuthenticationFailed) and self.connection_id is None:
            self._close(CLOSE_POLICY, error.message)

    def _async_failed(self, failure: Failure, request_id: Any) -> None:
        self._failed(self.chat_error(failure, "request"), request_id)

    def _close(self, code: int, reason: str) -> None:
        if self._closing:
            return
        self._closing = True
        if 3000 <= code <= 4999:
            self.sendClose(code, reason[:120])
        else:
            close_with(self, code, reason)


def _optional_int(
    frame: dict[str, Any], name: str, low: int | None, high: int | None, what: str
) -> int | None:
    """``frame[name]`` if given: an integer within ``low``..``high``."""
    value = frame.get(name)
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or (low is not None and value < low)
        or (high is not None and value > high)
    ):
        raise InvalidRequest(f'"{name}" must be {what}')
    return value


class AppSocketFactory(ParkchatSocketFactory):
    """Builds /ws connections; holds the token verifier, the timeouts and
    the limits they apply."""

    protocol = AppSocketProtocol  # type: ignore[assignment]
    decodes_text = True

    def __init__(
        self,
        context: AdapterContext,
        tokens: TokenVerifier,
        *,
        auth_timeout: float = 10.0,
        join_timeout: float = 0.0,
        rate_strict: bool = False,
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
        self.tokens = tokens
        self.auth_timeout = auth_timeout
        self.join_timeout = join_timeout
        #: Close a connection that hits the rate limit (GarinChat's policy).
        self.rate_strict = rate_strict
        self.encoder = AppEventEncoder(self, context.service.member_count)

    def bound(self, claims: TokenClaims | None) -> BoundFactory[TokenClaims | None]:
        """A one-use factory for a connection whose identity was (or was
        not: None) established over HTTP."""
        return BoundFactory(self, claims)
