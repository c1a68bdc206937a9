"""Room events delivered here in sequence order, exactly once.

Every stored room message carries its room's ``seq`` (1, 2, 3, ... in the
order stored; a deleted message leaves a hole). The bus is a doorbell: it
may lose events (Redis down, a subscription not yet confirmed) or, after a
fill, bring one again. The store is the truth. Per room, this instance
remembers the last seq it delivered (``Room.cursor``):

* an event with the next seq is delivered (two integer comparisons, the
  hot path);
* one at or below the cursor was delivered already: dropped;
* one above the next is held; the gap gets GAP_GRACE seconds to close by
  itself (two instances' messages can cross on their way through Redis:
  the missing one is usually on its way), then it is read from the store,
  page by page, and delivered first (a *fill*);
* events without a seq (joins, leaves, typing, topics) are delivered at
  once unless something is held, then they wait behind it, in order;
* events about a stored message (``edited``, ``deleted``) carry that
  message's seq and take no position of their own: they are delivered once
  the cursor has reached it, after the message they change, never before
  (an edit made on another instance can overtake its message on the way
  through Redis: it is held like a message behind a gap, and a fill reads
  the message, with its new text, from the store). A resume replays
  messages, not edits: what it reads from the store is the current text.

A room made here (its first local member) holds its events until its
cursor is read from the store (``current_seq``). The bus coming back, a
peer's ``resync`` and a periodic check (``check_positions``) compare the
cursors with the store's positions and fill the rooms that are behind: a
quiet room whose only message was lost is caught up too.

A resume (``replay``) reads what a member missed and attaches the member
in the same reactor callback as its last read, so that the replay and the
live events neither overlap nor leave a gap (docs/scaling.md).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping

from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger

from parkchat.errors import InvalidRequest
from parkchat.interfaces import IParticipant, IRoomMessageStore, IRoomTopicStore
from parkchat.metrics import ServiceMetrics
from parkchat.model import CHAT, FOLLOWS_MESSAGE, FROM_STORE, TOPIC, JoinResult, Message, RoomTopic
from parkchat.rooms import Room

_log = Logger()

#: Messages per store read of a fill or a resume.
FILL_PAGE = 500
#: Seconds a gap the bus revealed may take to close by itself before it is
#: read from the store: messages of two instances committed a moment apart
#: can reach Redis in the other order.
GAP_GRACE = 0.1
#: Rooms per ``room_positions`` read.
POSITIONS_CHUNK = 500
#: Seconds before a failed store read is tried again (doubling up to RETRY_MAX).
RETRY_FIRST = 0.5
RETRY_MAX = 10.0
#: Most missed messages a resume gives (``--resume-max``).
RESUME_MAX = 5000


class RoomDelivery:
    """The delivery of room events to this instance's members (see the
    module docstring). ``rooms`` is the room handler's own table, read
    here; ``failed`` takes away a member whose delivery raised."""

    def __init__(
        self,
        rooms: Mapping[str, Room],
        store: IRoomMessageStore,
        clock: IReactorTime,
        metrics: ServiceMetrics,
        failed: Callable[[IParticipant], None],
        *,
        resume_max: int = RESUME_MAX,
        topics: IRoomTopicStore | None = None,
    ) -> None:
        self._rooms = rooms
        self._store = store
        self._topics = topics
        self._clock = clock
        self._metrics = metrics
        self._failed = failed
        self.resume_max = resume_max
        self._fills: dict[Room, Deferred[None]] = {}
        self._stopping = False

    def start(self) -> None:
        self._stopping = False

    def stop(self) -> None:
        """No fill goes on (the instance shuts down)."""
        self._stopping = True

    # -- the hot path ------------------------------------------------------------

    def deliver(self, room_name: str, message: Message) -> None:
        """A room event from the bus (IBusHandler.deliver)."""
        room = self._rooms.get(room_name)
        if room is None:
            return
        pending = room.pending
        if pending is not None:
            if room.waiting is not None and message.type == CHAT and message.seq == room.cursor + 1:
                # The message the held ones wait for, late over the bus.
                room.cursor = message.seq
                self._broadcast(room, message)
                self._closed(room)
                return
            # Held behind a gap, a fill or the cursor's read; gaps among
            # what is held are found as it is drained (``_drain``).
            pending.append(message)
            return
        seq = message.seq
        if seq and message.type == CHAT:
            if seq != room.cursor + 1:
                self._out_of_order(room, message)
                return
            room.cursor = seq
        elif seq > room.cursor and message.type in FOLLOWS_MESSAGE:
            self._ahead_of_message(room, message)
            return
        elif message.type == TOPIC:
            room.topic = topic_of(message)
        self._broadcast(room, message)

    def _broadcast(self, room: Room, message: Message) -> None:
        failed = room.broadcast(message)
        self._metrics.deliveries += room.last_delivered
        for member in failed:
            self._failed(member)

    # -- holding and filling ---------------------------------------------------------

    def open(self, room: Room) -> None:
        """A room was made here: read its cursor (events are held meanwhile)."""
        self._start_fill(room)

    def _out_of_order(self, room: Room, message: Message) -> None:
        if message.seq <= room.cursor:
            self._metrics.duplicates_dropped += 1
            return
        # Held; a fill would read up to the message before it.
        room.pending = deque((message,))
        room.target = max(room.target, message.seq - 1)
        room.waiting = self._clock.callLater(GAP_GRACE, self._gap_persists, room)

    def _ahead_of_message(self, room: Room, message: Message) -> None:
        """An edit or deletion of a message not delivered here yet: held
        until it is (the message is stored already, so a fill may read up
        to it)."""
        room.pending = deque((message,))
        room.target = max(room.target, message.seq)
        room.waiting = self._clock.callLater(GAP_GRACE, self._gap_persists, room)

    def _closed(self, room: Room) -> None:
        """A late message closed the gap: deliver what it unblocks."""
        if self._drain(room):
            waiting, room.waiting = room.waiting, None
            if waiting is not None and waiting.active():
                waiting.cancel()

    def _gap_persists(self, room: Room) -> None:
        room.waiting = None
        if self._rooms.get(room.name) is room and room.pending is not None:
            self._start_fill(room)

    def catch_up(self, room: Room, target: int) -> None:
        """The store holds messages of ``room`` up to ``target``: deliver
        those not delivered here (live events wait behind them)."""
        if target > room.target:
            room.target = target
        if room.cursor < 0 or target <= room.cursor:
            return
        if room.pending is None:
            room.pending = deque()
        self._start_fill(room)

    def _start_fill(self, room: Room) -> None:
        waiting, room.waiting = room.waiting, None
        if waiting is not None and waiting.active():
            waiting.cancel()
        if room.filling:
            return
        room.filling = True
        if room.pending is None:
            room.pending = deque()
        d = Deferred.fromCoroutine(self._fill(room))
        if room.filling:  # not finished at once (a synchronous store)
            self._fills[room] = d
        d.addErrback(lambda failure: _log.failure("filling {room} failed", failure, room=room.name))

    async def _fill(self, room: Room) -> None:
        """Read the cursor if unknown, deliver from the store up to the
        target, then what was held; until nothing is held. A failed read is
        tried again later (the held events wait)."""
        delay = RETRY_FIRST
        try:
            while not self._stopping and self._rooms.get(room.name) is room:
                try:
                    if room.cursor < 0:
                        await self._read_cursor(room)
                        continue
                    if room.cursor < room.target:
                        await self._read_page(room)
                        continue
                except Exception:
                    _log.failure(
                        "reading {room} from the store failed; trying again in {delay:g} s",
                        room=room.name,
                        delay=delay,
                    )
                    await deferLater(self._clock, delay, lambda: None)
                    delay = min(delay * 2, RETRY_MAX)
                    continue
                delay = RETRY_FIRST
                if self._drain(room):
                    return
        finally:
            room.filling = False
            self._fills.pop(room, None)

    async def _read_cursor(self, room: Room) -> None:
        # The position is asked for first, before anything a member posts
        # after joining can commit (it is held meanwhile and must come out
        # above the cursor); the topic is read alongside, and topic events
        # held meanwhile are applied after it.
        position = self._store.current_seq(room.name)
        topic = await self._topics.room_topic(room.name) if self._topics is not None else None
        current = await position
        if room.cursor < 0:
            room.topic = topic
            room.cursor = current
            room.target = max(room.target, current)

    async def _read_page(self, room: Room) -> None:
        """Deliver the next page of (cursor, target] from the store. Every
        seq up to ``wanted`` was committed before this read began (it came
        over the bus or from the store's positions), so a short page means
        the store has nothing more up to it: holes are deleted messages.
        Messages past it are left to the bus (or a later fill)."""
        wanted = room.target
        limit = min(FILL_PAGE, wanted - room.cursor)
        page = await self._store.room_messages_after(room.name, room.cursor, limit)
        for message in page:
            if message.seq > wanted:
                break
            if message.seq > room.cursor:
                room.cursor = message.seq
                self._metrics.messages_filled += 1
                message.origin = FROM_STORE
                self._broadcast(room, message)
        if len(page) < limit or page[-1].seq >= wanted:
            room.cursor = max(room.cursor, wanted)

    def _drain(self, room: Room) -> bool:
        """Deliver what was held, in order; False if it holds another gap."""
        pending = room.pending
        assert pending is not None
        while pending:
            message = pending.popleft()
            seq = message.seq
            if seq and message.type == CHAT:
                if seq <= room.cursor:
                    self._metrics.duplicates_dropped += 1
                    continue
                if seq != room.cursor + 1:
                    pending.appendleft(message)
                    room.target = max(room.target, seq - 1)
                    return False
                room.cursor = seq
            elif seq > room.cursor and message.type in FOLLOWS_MESSAGE:
                # Its message is stored: read up to it, then this.
                pending.appendleft(message)
                room.target = max(room.target, seq)
                return False
            elif message.type == TOPIC:
                room.topic = topic_of(message)
            self._broadcast(room, message)
        room.pending = None
        # Joins waiting for a room made here answer now, after what was
        # held (their own join notice among it), as they would have in a
        # room that existed already.
        waiters, room.waiters = room.waiters, []
        for waiter in waiters:
            waiter.callback(None)
        return True

    # -- positions ---------------------------------------------------------------

    def when_known(self, room: Room) -> Deferred[None]:
        """Fires once the room's cursor is known (for a room made here:
        once it is, and what was held meanwhile has been delivered)."""
        if room.cursor >= 0:
            return succeed(None)
        d: Deferred[None] = Deferred()
        room.waiters.append(d)
        return d

    async def check_positions(self, *, grace: bool) -> None:
        """Compare every room's cursor with the store's position and fill
        the rooms that are behind. With ``grace`` (the periodic check), a
        room is filled only up to the position read at the previous check:
        a message just committed may not have been published yet, and a
        fill would show it to its /ws sender (whose own messages come as
        an ``ack``) before the bus does."""
        names = [name for name, room in self._rooms.items() if room.cursor >= 0]
        for start in range(0, len(names), POSITIONS_CHUNK):
            positions = await self._store.room_positions(names[start : start + POSITIONS_CHUNK])
            for name, position in positions.items():
                room = self._rooms.get(name)
                if room is None or room.cursor < 0:
                    continue
                target = position
                if grace:
                    target, room.checked = room.checked, position
                if target > room.cursor:
                    self.catch_up(room, target)

    async def refresh_topics(self) -> None:
        """Compare every room's topic with the store's and, where it changed
        unseen (its event was lost with the bus), take the stored one and
        tell the members with a ``topic`` event (after a bus outage)."""
        if self._topics is None:
            return
        for room in list(self._rooms.values()):
            if room.cursor < 0:
                continue
            stored = await self._topics.room_topic(room.name)
            if self._rooms.get(room.name) is not room or stored == room.topic:
                continue
            event = Message(
                room=room.name,
                nickname=stored.nickname if stored is not None else "",
                content=stored.text if stored is not None else "",
                timestamp_ms=stored.set_ms if stored is not None else 0,
                type=TOPIC,
            )
            self.deliver(room.name, event)

    async def settle(self) -> None:
        """Fill every room up to the store's positions now and wait until
        the fills are done (a drain before shutting down)."""
        await self.check_positions(grace=False)
        while self._fills:
            await DeferredList(list(self._fills.values()), consumeErrors=True)

    # -- resume ----------------------------------------------------------------

    async def replay(self, room: Room, since: int, attach: Callable[[], bool]) -> JoinResult:
        """The messages of ``room`` after ``since`` up to its cursor, read
        from the store (at most ``resume_max``: the newest ones), with the
        member attached (``attach``, False if it went away) in the same
        callback as the last read: every later event reaches it live, none
        of the replayed ones does."""
        await self.when_known(room)
        name = room.name
        limit = self.resume_max
        kept: deque[Message] = deque()
        recovered = True
        covered = since  # every message up to here is in ``kept`` (or not wanted)
        if room.cursor - since > limit:
            # Perhaps more than a resume gives: the newest ``limit``, read back.
            top = covered = room.cursor
            newest: list[Message] = []
            before = top + 1
            while len(newest) < limit:
                want = min(FILL_PAGE, limit - len(newest))
                page = await self._store.room_messages_before(name, before, want)
                fresh = [m for m in page if m.seq > since]
                newest[:0] = fresh
                if len(fresh) < want:
                    break
                before = page[0].seq
            if len(newest) >= limit and newest[0].seq > since + 1:
                older = await self._store.room_messages_before(name, newest[0].seq, 1)
                recovered = not (older and older[0].seq > since)
            kept.extend(newest)
        while covered < room.cursor:
            read_at = room.cursor  # committed, so visible to this read
            page = await self._store.room_messages_after(name, covered, FILL_PAGE)
            kept.extend(page)
            last = page[-1].seq if page else covered
            covered = last if len(page) == FILL_PAGE else max(read_at, last)
            if len(kept) > limit:
                recovered = False
                for _ in range(len(kept) - limit):
                    kept.popleft()
        # Same callback as the last read (or no read at all): attach now.
        seq = room.cursor
        while kept and kept[-1].seq > seq:
            kept.pop()  # stored, not yet delivered here: it comes live
        if not attach():
            raise InvalidRequest("the connection closed while joining")
        return JoinResult(seq, list(kept), recovered, resumed=True, topic=room.topic)


def topic_of(message: Message) -> RoomTopic | None:
    """The topic a ``topic`` room event sets (None: cleared)."""
    if not message.content:
        return None
    return RoomTopic(message.content, message.nickname, message.timestamp_ms)
