"""Catching up with the store: after a bus outage, when a peer asks, and
periodically (see docs/scaling.md, "When Redis goes away")."""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from parkchat.events import ResyncEvent
from parkchat.handlers.moderation import ModerationHandler
from parkchat.handlers.rooms import RoomHandler
from parkchat.handlers.sessions import SessionHandler
from parkchat.interfaces import IBus

_log = Logger()

#: Seconds between checks of the rooms' positions in the store (``--position-check``).
POSITION_CHECK = 10.0


class ResyncHandler:
    """While a shared bus is down, each instance's events reach only its own
    members. Once it is back, what was stored meanwhile -- room messages,
    bans, token revocations -- is read from the database: here, and on the
    other instances, which a ``ResyncEvent`` asks to do the same. Room
    messages are caught up by position: each room delivered here is
    compared with the store's position and filled if behind
    (``RoomHandler.check_positions``).

    Every ``position_check`` seconds (0: never) the rooms' positions are
    checked too, so that a message the bus lost in a quiet room, with no
    later message to reveal the gap, arrives within two periods.

    Its own handler because it spans three areas (rooms, moderation,
    sessions) that otherwise need not know of each other.
    """

    def __init__(
        self,
        rooms: RoomHandler,
        moderation: ModerationHandler,
        sessions: SessionHandler,
        bus: IBus,
        clock: IReactorTime,
        *,
        instance_id: str = "",
        position_check: float = 0.0,
    ) -> None:
        self._rooms = rooms
        self._moderation = moderation
        self._sessions = sessions
        self._bus = bus
        self._instance_id = instance_id
        self._running = False
        self._again = False
        self._stopping = False
        self._position_check = position_check
        self._checking = False
        self._checker = LoopingCall(self._check)
        self._checker.clock = clock

    def start(self) -> None:
        self._stopping = False
        if self._position_check > 0 and not self._checker.running:
            self._checker.start(self._position_check, now=False)

    def stop(self) -> None:
        """No new pass starts (one under way finishes its current step)."""
        self._stopping = True
        if self._checker.running:
            self._checker.stop()

    def _check(self) -> None:
        """The periodic check: one at a time, failures logged (the next
        period tries again)."""
        if self._checking:
            return
        self._checking = True

        def done(result: object) -> None:
            self._checking = False

        d = self._rooms.check_positions(grace=True)
        d.addErrback(lambda failure: _log.failure("checking room positions failed", failure))
        d.addBoth(done)

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
        """Reload the stored bans (closing banned accounts' connections
        here) and token revocations, fill every room that is behind the
        store, and take the stored topic of rooms whose topic changed
        meanwhile. Runs one pass at a time; a request during a pass makes one
        more pass after it."""
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
                await self._rooms.check_positions(grace=False)
                await self._rooms.refresh_topics()
                again = self._again
        finally:
            self._running = False
