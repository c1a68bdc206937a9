"""Catching up after a bus outage (see docs/scaling.md, "When Redis goes away")."""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from parkchat.events import ResyncEvent
from parkchat.handlers.moderation import ModerationHandler
from parkchat.handlers.rooms import RoomHandler
from parkchat.handlers.sessions import SessionHandler
from parkchat.interfaces import IBus, IRoomMessageStore
from parkchat.limits import Limits

_log = Logger()


class ResyncHandler:
    """While a shared bus is down, each instance's events reach only its own
    members. Once it is back, what was stored meanwhile -- room messages,
    bans, token revocations -- is read from the database: here, and on the
    other instances, which a ``ResyncEvent`` asks to do the same.

    Its own handler because it spans three areas (rooms, moderation,
    sessions) that otherwise need not know of each other.
    """

    def __init__(
        self,
        store: IRoomMessageStore,
        rooms: RoomHandler,
        moderation: ModerationHandler,
        sessions: SessionHandler,
        bus: IBus,
        limits: Limits,
        *,
        instance_id: str = "",
    ) -> None:
        self._store = store
        self._rooms = rooms
        self._moderation = moderation
        self._sessions = sessions
        self._bus = bus
        self._limits = limits
        self._instance_id = instance_id
        self._running = False
        self._again = False
        self._stopping = False

    def start(self) -> None:
        self._stopping = False

    def stop(self) -> None:
        """No new pass starts (one under way finishes its current room)."""
        self._stopping = True

    def bus_recovered(self) -> None:
        """The bus carries events between instances again after an outage:
        messages stored meanwhile reached only the members on the instance
        that stored them. Catch up here, and ask every other instance to do
        the same for this one's messages."""
        self._bus.publish_control(ResyncEvent(instance=self._instance_id))
        self.resync()

    def apply(self, event: ResyncEvent) -> None:
        """Another instance is back: catch up on what it stored meanwhile."""
        self.resync()

    def resync(self) -> None:
        """Deliver to local members the stored messages of their rooms that
        never reached this instance: each room's messages above the oldest id
        it remembers delivering (``rooms.SEEN`` of them), minus those it did
        deliver, in id order; and reload the stored bans (closing banned
        accounts' connections here) and token revocations. Runs one pass at a
        time; a request during a pass makes one more pass after it."""
        if self._running:
            self._again = True
            return
        self._running = True  # before the pass: it may finish at once
        Deferred.fromCoroutine(self._resync()).addErrback(
            lambda failure: _log.failure("resync failed", failure)
        )

    async def _resync(self) -> None:
        try:
            again = True
            while again and not self._stopping:
                self._again = False
                await self._moderation.reload()
                await self._sessions.load()
                delivered = 0
                for name in list(self._rooms.by_name):
                    delivered += await self._resync_room(name)
                if delivered:
                    _log.info("resync: delivered {count} missed messages", count=delivered)
                again = self._again
        finally:
            self._running = False

    async def _resync_room(self, name: str) -> int:
        floor = self._rooms.seen_floor(name)
        if floor is None:
            return 0
        try:
            stored = await self._store.recent_messages(name, self._limits.history_max, None, floor)
        except Exception:
            _log.failure("resync: reading {room} failed", room=name)
            return 0
        return self._rooms.deliver_missed(name, stored)
