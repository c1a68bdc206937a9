"""Group commit: many chat messages, one transaction.

A message is acknowledged (its Deferred fires, and the service broadcasts it)
only after the transaction holding it has committed, so a client can never
have seen a message that a crash then loses. While one batch commits on the
database thread, the next one collects on the reactor; an idle server commits
a lone message on the next reactor turn, so batching adds no waiting time.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence

from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from parkchat.errors import ServiceBusy, StorageFailed
from parkchat.model import Message

_log = Logger()

#: Who hears how a queued message ended: a Deferred (``submit``) or a
#: function called only on failure (``submit_quietly``).
_Waiter = Deferred[Message] | Callable[[Failure], object]


class GroupCommitWriter:
    """Queues messages and writes them in batches, one batch at a time.

    ``insert`` stores a sequence of messages in one transaction and fires with
    their ``(id, seq)`` in order. Batches are committed strictly one after the
    other, so ids and each room's seqs follow submission order.

    ``on_stored`` is told every committed message (id and seq set), in commit
    order, before whoever submitted it: the chat service publishes from there,
    so a message needs no Deferred of its own unless its sender wants the
    result (``submit``); ``submit_quietly`` only reports failure. Per message, the
    Deferred and its callbacks were a tenth of the reactor's time in the
    ingest benchmark.
    """

    def __init__(
        self,
        insert: Callable[[Sequence[Message]], Deferred[list[tuple[int, int]]]],
        clock: IReactorTime,
        max_batch: int = 2000,
        max_pending: int = 50_000,
        on_batch: Callable[[int, float, bool], None] | None = None,
        on_stored: Callable[[Message], object] | None = None,
    ) -> None:
        self._insert = insert
        self._clock = clock
        #: Told ``(size, seconds, committed)`` once per batch (for metrics).
        self._on_batch = on_batch
        self.on_stored = on_stored
        self._started = 0.0
        self.max_batch = max_batch
        self.max_pending = max_pending
        self._queue: list[tuple[Message, _Waiter]] = []
        self._in_flight = False
        self._scheduled: IDelayedCall | None = None
        self._idle_waiters: list[Deferred[None]] = []
        # Results of committed (or failed) batches not yet reported, oldest
        # first. A store that answers synchronously commits batch N+1 inside
        # the report of batch N; the queue keeps the reports in commit order.
        self._outbox: deque[tuple[Callable[[], None], int]] = deque()
        self._reporting = False
        # Messages taken into batches, and reported (stored or failed), since
        # the start; ``after_queued`` callbacks wait for a count of reported
        # messages, oldest first. Counted per batch, not per message.
        self._batched = 0
        self._reported = 0
        self._after: deque[tuple[int, Callable[[], object]]] = deque()
        #: The last batch failed and none has committed since: the store is
        #: not taking messages (readiness reports it).
        self.failing = False
        #: Sizes of recent batches, for metrics and tests.
        self.batches = 0
        self.last_batch_size = 0

    @property
    def pending(self) -> int:
        return len(self._queue)

    def submit(self, message: Message) -> Deferred[Message]:
        """Queue ``message``; the result fires with the stored copy (id and
        seq set) once committed (after ``on_stored``), or fails with StorageFailed."""
        d: Deferred[Message] = Deferred()
        self._enqueue(message, d)
        return d

    def submit_quietly(self, message: Message, failed: Callable[[Failure], object]) -> None:
        """Queue ``message``; ``failed`` is called with a Failure if it could
        not be stored (StorageFailed) or ``on_stored`` raised for it."""
        self._enqueue(message, failed)

    def _enqueue(self, message: Message, waiter: _Waiter) -> None:
        if len(self._queue) >= self.max_pending:
            raise ServiceBusy("too many messages waiting to be stored")
        self._queue.append((message, waiter))
        if not self._in_flight and self._scheduled is None:
            self._scheduled = self._clock.callLater(0, self._commit)

    def flush(self) -> Deferred[None]:
        """Fire when everything queued so far has been committed (or failed)."""
        d: Deferred[None] = Deferred()
        if not self._queue and not self._in_flight:
            d.callback(None)
        else:
            self._idle_waiters.append(d)
        return d

    def after_queued(self, callback: Callable[[], object]) -> None:
        """Call ``callback`` once every message queued so far has been
        stored and told to ``on_stored`` (published), or has failed: at once
        if there is none. A member's leave is announced through here, so
        that it follows the messages the member sent before leaving."""
        position = self._batched + len(self._queue)
        if position <= self._reported:
            callback()
        else:
            self._after.append((position, callback))

    def _commit(self) -> None:
        self._scheduled = None
        batch = self._queue[: self.max_batch]
        del self._queue[: self.max_batch]
        if not batch:
            self._became_idle()
            return
        self._batched += len(batch)
        self._in_flight = True
        self.batches += 1
        self.last_batch_size = len(batch)
        self._started = self._clock.seconds()
        try:
            d = self._insert([message for message, _ in batch])
        except Exception:
            d = fail()
        d.addCallbacks(self._committed, self._failed, callbackArgs=(batch,), errbackArgs=(batch,))

    def _committed(
        self, positions: list[tuple[int, int]], batch: list[tuple[Message, _Waiter]]
    ) -> None:
        self._in_flight = False
        self.failing = False
        if self._on_batch is not None:
            self._on_batch(len(batch), self._clock.seconds() - self._started, True)

        def report() -> None:
            on_stored = self.on_stored
            for (message, waiter), (message_id, seq) in zip(batch, positions, strict=True):
                stored = message.with_ids(message_id, seq)
                if on_stored is not None:
                    try:
                        on_stored(stored)
                    except Exception:
                        _fail(waiter, Failure())
                        continue
                if isinstance(waiter, Deferred):
                    waiter.callback(stored)

        self._outbox.append((report, len(batch)))
        # Start the next transaction before telling anyone, so the database
        # thread writes batch N+1 while the reactor broadcasts batch N.
        self._next()
        self._report()

    def _failed(self, failure: Failure, batch: list[tuple[Message, _Waiter]]) -> None:
        self._in_flight = False
        self.failing = True
        _log.failure("storing a batch of {count} messages failed", failure, count=len(batch))
        if self._on_batch is not None:
            self._on_batch(len(batch), self._clock.seconds() - self._started, False)

        def report() -> None:
            for _, waiter in batch:
                _fail(waiter, Failure(StorageFailed()))

        self._outbox.append((report, len(batch)))
        self._next()
        self._report()

    def _report(self) -> None:
        if self._reporting:
            return
        self._reporting = True
        try:
            while self._outbox:
                report, size = self._outbox.popleft()
                try:
                    report()
                finally:
                    self._reported += size
                    if self._after:
                        self._run_after()
        finally:
            self._reporting = False

    def _run_after(self) -> None:
        after = self._after
        while after and after[0][0] <= self._reported:
            _, callback = after.popleft()
            try:
                callback()
            except Exception:
                _log.failure("a callback waiting for queued messages failed")

    def _next(self) -> None:
        if self._queue:
            self._commit()
        else:
            self._became_idle()

    def _became_idle(self) -> None:
        if self._in_flight or self._queue:
            return
        waiters, self._idle_waiters = self._idle_waiters, []
        for d in waiters:
            d.callback(None)


def _fail(waiter: _Waiter, failure: Failure) -> None:
    if isinstance(waiter, Deferred):
        waiter.errback(failure)
    else:
        try:
            waiter(failure)
        except Exception:
            _log.failure("reporting a message that was not stored failed")
