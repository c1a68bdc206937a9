"""Room messages: posting, typing notices, history and its cache, deletion.

A chat message goes: ``post`` validates it and takes a rate-limit token, the
group-commit writer stores it with others in one transaction, and only then
is it published on the bus (``stored_publisher``), which delivers it to the
room's members (the sender included) here and, with a shared bus, on every
other instance.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from parkchat.errors import InvalidRequest, NotInRoom, ServiceBusy
from parkchat.handlers.connections import ConnectionHandler
from parkchat.handlers.moderation import moderation_log
from parkchat.handlers.rooms import RoomHandler
from parkchat.interfaces import IBus, IParticipant, IRoomMessageStore
from parkchat.limits import Limits, TokenBucketLimiter
from parkchat.mentions import candidates
from parkchat.metrics import ServiceMetrics
from parkchat.model import (
    DELETED,
    MAX_ID,
    Message,
    nickname_key,
    validate_content,
    validate_room,
)
from parkchat.recent import RecentMessages
from parkchat.rooms import Room
from parkchat.store.writer import GroupCommitWriter


def _message_id(name: str, value: object, what: str = "a message id") -> int | None:
    """A page boundary: None or a message id (or seq) a store can hold."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_ID:
        raise InvalidRequest(f"{name} must be {what}")
    return value


def check_positions(after_seq: object, before_seq: object) -> tuple[int | None, int | None]:
    """Page boundaries by seq (a room's or a conversation's position)."""
    return (
        _message_id("after_seq", after_seq, "a seq"),
        _message_id("before_seq", before_seq, "a seq"),
    )


def check_page(
    limits: Limits, limit: object, before: object, after: object
) -> tuple[int, int | None, int | None]:
    """A page request (``limit`` messages before or after a message id)
    checked against the history limits; ``limit`` None is the default size."""
    if limit is None:
        limit = limits.history_default
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise InvalidRequest("limit must be an integer")
    if not 1 <= limit <= limits.history_max:
        raise InvalidRequest(f"limit must be between 1 and {limits.history_max}")
    return limit, _message_id("before", before), _message_id("after", after)


def stored_publisher(bus: IBus, recent: RecentMessages | None) -> Callable[[Message], None]:
    """What the group-commit writer calls with every committed message: it
    goes into the recent-history cache, then out on the bus. Built once, with
    what it needs in local names: this runs once per message."""
    publish = bus.publish
    if recent is None:

        def published(message: Message) -> None:
            publish(message.room, message)

        return published
    add = recent.add

    def published_and_cached(message: Message) -> None:
        add(message)
        publish(message.room, message)

    return published_and_cached


class MessageHandler:
    """Posts to rooms, typing notices, history (from ``recent``, the
    in-memory newest messages, when this instance sees every message: see
    parkchat.recent) and moderators' deletions.

    ``rate`` is the per-sender token bucket that direct messages and the
    room directory draw on too; this handler prunes it. ``guest_rate`` is
    the bucket all guests (no account) from one address share, keyed by
    address, so that many guest names from one address do not multiply
    the rate (None: no such limit).
    """

    def __init__(
        self,
        store: IRoomMessageStore,
        writer: GroupCommitWriter,
        recent: RecentMessages | None,
        connections: ConnectionHandler,
        rooms: RoomHandler,
        bus: IBus,
        clock: IReactorTime,
        limits: Limits,
        metrics: ServiceMetrics,
        rate: TokenBucketLimiter,
        guest_rate: TokenBucketLimiter | None = None,
    ) -> None:
        self._store = store
        self._writer = writer
        self._recent = recent
        self._bus = bus
        self._clock = clock
        self._limits = limits
        self._metrics = metrics
        self._rate = rate
        self._guest_rate = guest_rate
        # Read-only views, looked up once per post without a call.
        self._rooms = rooms.by_name
        self._ids = connections.ids
        self._recent_loads: dict[str, list[Deferred[list[Message]]]] = {}
        self._closing = False

    def prune(self) -> None:
        """Forget idle senders' rate buckets (housekeeping)."""
        self._rate.prune()
        if self._guest_rate is not None:
            self._guest_rate.prune()

    def flush(self) -> Deferred[None]:
        """Fires once every message queued so far is stored (or failed)."""
        return self._writer.flush()

    def stop_accepting(self) -> None:
        """The instance drains before stopping: posts are refused from now
        on (ServiceBusy), those queued are still stored and delivered."""
        self._closing = True

    def start_accepting(self) -> None:
        self._closing = False

    @property
    def storing_fails(self) -> bool:
        """The last batch of messages could not be stored and none has been
        since (readiness)."""
        return self._writer.failing

    # -- posting -------------------------------------------------------------

    def post(self, participant: IParticipant, room_name: str, content: object) -> Deferred[Message]:
        """Store a chat message, then deliver it to the room.

        Raises at once for bad content, a room not joined, or a spent rate
        limit; the Deferred fires with the stored message (id set) after it is
        committed and delivered, or fails with StorageFailed.
        """
        return self._writer.submit(self._new_post(participant, room_name, content))

    def post_quietly(
        self,
        participant: IParticipant,
        room_name: str,
        content: object,
        failed: Callable[[Failure], object],
    ) -> None:
        """``post`` for a sender that needs no result, only to hear of a
        failure after the fact (``failed`` gets a Failure, StorageFailed when
        the store refused): no Deferred per message on the hot path."""
        self._writer.submit_quietly(self._new_post(participant, room_name, content), failed)

    def _new_post(self, participant: IParticipant, room_name: str, content: object) -> Message:
        room = self._rooms.get(room_name)
        if room is None or participant not in room:
            raise NotInRoom(f"not in room {room_name!r}")
        if self._closing:
            raise ServiceBusy("server shutting down")
        self._metrics.messages_received += 1
        content = validate_content(content, self._limits.max_content_length)
        if participant.user_id is None and self._guest_rate is not None and self._limits.rate_limit:
            # --rate-limit 0 turns every message rate limit off, this one too.
            address = self._limits.address_key(participant.peer_host)
            if address is not None:  # not a trusted proxy's own address
                self._guest_rate.consume(address)
        self._rate.consume(nickname_key(participant.nickname))
        return Message(
            room=room_name,
            nickname=participant.nickname,
            content=content,
            timestamp_ms=int(self._clock.seconds() * 1000),
            user_id=participant.user_id,
            origin=self._ids.get(participant),
            # Parsed only when there can be one: the rest pay one ``in``.
            mentions=self._mentions(room, content) if "@" in content else (),
        )

    def _mentions(self, room: Room, content: str) -> tuple[str, ...]:
        """The mentions of a message to ``room`` before storing: members
        (here and, as last shared, on the other instances) found by name
        now, other names left to the store (parkchat.mentions)."""
        members: dict[str, str] | None = None

        def member(key: str) -> str | None:
            nonlocal members
            if members is None:
                remote = self._bus.remote_presence()["rooms"].get(room.name, ())
                members = {nickname_key(n): n for n in [*remote, *room.nicknames()]}
            return members.get(key)

        return candidates(content, member)

    def notify(self, participant: IParticipant, room_name: str, kind: str) -> None:
        """Publish an ephemeral room event (e.g. typing) from a member: not
        stored, not rate-limited here; surfaces that do not show ``kind``
        skip it (their encoders return None)."""
        room = self._rooms.get(room_name)
        if room is None or participant not in room:
            raise NotInRoom(f"not in room {room_name!r}")
        self._bus.publish(
            room_name,
            Message(
                room=room_name,
                nickname=participant.nickname,
                content="",
                timestamp_ms=int(self._clock.seconds() * 1000),
                type=kind,
                origin=self._ids.get(participant),
                guest=participant.user_id is None,
            ),
        )

    async def delete_message(
        self, message_id: object, *, by: str | None = None, own: bool = False
    ) -> str | None:
        """Remove a stored message (moderation, or its author: ``by`` names
        who, ``own`` says it was the author): from the database, from this
        instance's recent-history cache, and from the screens of the room's
        members on every instance that show such events (``deleted`` on
        /ws, a notice line on terminals and IRC). The name of its room, or
        None if there was no such message."""
        if isinstance(message_id, bool) or not isinstance(message_id, int):
            raise InvalidRequest('"id" must be a message id')
        if not 0 < message_id <= MAX_ID:
            return None
        deleted = await self._store.delete_message(message_id)
        if deleted is None:
            return None
        room, seq = deleted
        if self._recent is not None:
            self._recent.remove(room, message_id)
        if not own:
            moderation_log.info(
                "moderation: {moderator} deleted message {id} from {room}",
                moderator=by or "the admin API",
                id=message_id,
                room=room,
                action="delete",
            )
        notice = Message(
            room=room,
            nickname="",
            content="",
            timestamp_ms=int(self._clock.seconds() * 1000),
            type=DELETED,
            id=message_id,
            # The deleted message's position: not one of this notice's own,
            # delivery sends it after the message (parkchat.handlers.delivery).
            seq=seq,
        )
        self._bus.publish(room, notice)
        return room

    # -- history -------------------------------------------------------------

    def history(
        self,
        room_name: str,
        limit: int | None = None,
        before: int | None = None,
        after: int | None = None,
        *,
        after_seq: int | None = None,
        before_seq: int | None = None,
    ) -> Deferred[list[Message]]:
        """The last ``limit`` messages of a room (default 50, at most the
        configured maximum), oldest first; paged with ``before``/``after`` ids
        or with ``before_seq``/``after_seq`` room positions (``after_seq``
        wins over the rest, then ``before_seq``)."""
        room_name = validate_room(room_name)
        limit, before, after = check_page(self._limits, limit, before, after)
        after_seq, before_seq = check_positions(after_seq, before_seq)
        if after_seq is not None:
            return self._store.room_messages_after(room_name, after_seq, limit)
        if before_seq is not None:
            return self._store.room_messages_before(room_name, before_seq, limit)
        if self._recent is None or before is not None or after is not None:
            return self._store.recent_messages(room_name, limit, before, after)
        cached = self._recent.get(room_name, limit)
        if cached is not None:
            return succeed(cached)
        return self._load_recent(self._recent, room_name).addCallback(
            lambda window: window[-limit:]
        )

    def _load_recent(self, recent: RecentMessages, room_name: str) -> Deferred[list[Message]]:
        """Load a room's newest messages into ``recent``; concurrent readers
        of the same room share one query."""
        d: Deferred[list[Message]] = Deferred()
        waiting = self._recent_loads.get(room_name)
        if waiting is not None:
            waiting.append(d)
            return d
        self._recent_loads[room_name] = [d]
        recent.loading(room_name)

        def loaded(stored: list[Message]) -> None:
            window = recent.fill(room_name, stored)
            for waiter in self._recent_loads.pop(room_name, []):
                waiter.callback(window)

        def failed(failure: Failure) -> None:
            recent.load_failed(room_name)
            for waiter in self._recent_loads.pop(room_name, []):
                waiter.errback(failure)

        self._store.recent_messages(room_name, self._limits.history_max).addCallbacks(
            loaded, failed
        )
        return d

    def history_version(self, room_name: str) -> int | None:
        """A number that changes whenever the cached newest messages of a room
        change, or None when they are not cached (for response caches)."""
        if self._recent is None or self._recent.get(room_name, 1) is None:
            return None
        return self._recent.version(room_name)
