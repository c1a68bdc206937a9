"""Tests for parkchat.store.writer.GroupCommitWriter."""

from __future__ import annotations

from collections.abc import Sequence

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from parkchat.errors import ServiceBusy, StorageFailed
from parkchat.model import Message
from parkchat.store.writer import GroupCommitWriter


def message(content: str, room: str = "lobby") -> Message:
    return Message(room=room, nickname="alice", content=content, timestamp_ms=0)


class ControlledInsert:
    """An ``insert`` whose transactions commit only when the test says so."""

    def __init__(self) -> None:
        self.batches: list[list[Message]] = []
        self.deferreds: list[Deferred[list[tuple[int, int]]]] = []
        self.next_id = 1
        self.seqs: dict[str, int] = {}

    def __call__(self, messages: Sequence[Message]) -> Deferred[list[tuple[int, int]]]:
        self.batches.append(list(messages))
        d: Deferred[list[tuple[int, int]]] = Deferred()
        self.deferreds.append(d)
        return d

    def commit(self, index: int = -1) -> list[tuple[int, int]]:
        """Commit batch ``index`` with fresh consecutive ids, and each room's
        next seqs, as a store does."""
        positions = []
        for m in self.batches[index]:
            seq = self.seqs[m.room] = self.seqs.get(m.room, 0) + 1
            positions.append((self.next_id, seq))
            self.next_id += 1
        self.deferreds[index].callback(positions)
        return positions

    def fail(self, index: int = -1) -> None:
        self.deferreds[index].errback(RuntimeError("disk full"))


class GroupCommitWriterTests(TestCase):
    """Batching, ordering, failure and back-pressure of the group-commit writer."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.insert = ControlledInsert()
        self.writer = GroupCommitWriter(self.insert, self.clock)

    def contents(self, batch: Sequence[Message]) -> list[str]:
        return [m.content for m in batch]

    def test_nothing_before_next_turn(self) -> None:
        """submit only queues; the transaction starts on the next reactor turn."""
        d = self.writer.submit(message("a"))
        self.assertEqual(self.insert.batches, [])
        self.assertEqual(self.writer.pending, 1)
        self.assertNoResult(d)
        self.clock.advance(0)
        self.assertEqual(len(self.insert.batches), 1)
        self.assertEqual(self.writer.pending, 0)

    def test_one_turn_one_batch(self) -> None:
        """Messages submitted in the same reactor turn share one transaction."""
        for text in "abc":
            self.writer.submit(message(text))
        self.clock.advance(0)
        self.assertEqual([self.contents(b) for b in self.insert.batches], [["a", "b", "c"]])
        self.assertEqual(self.writer.batches, 1)
        self.assertEqual(self.writer.last_batch_size, 3)

    def test_results_only_after_commit(self) -> None:
        """No Deferred fires while its transaction is open; then each fires with
        a copy of its message carrying the assigned id and seq."""
        ds = [self.writer.submit(message(text)) for text in "ab"]
        self.clock.advance(0)
        for d in ds:
            self.assertNoResult(d)
        self.insert.commit()
        stored = [self.successResultOf(d) for d in ds]
        self.assertEqual([(m.id, m.seq, m.content) for m in stored], [(1, 1, "a"), (2, 2, "b")])

    def test_each_message_gets_its_own_position(self) -> None:
        """In a batch spanning rooms, each stored message carries the (id,
        seq) the store gave it in batch order: ids across the batch, seqs
        per room; the rest of the message is unchanged."""
        submitted = [message("a1", "a"), message("b1", "b"), message("a2", "a")]
        ds = [self.writer.submit(m) for m in submitted]
        self.clock.advance(0)
        self.insert.commit()
        stored = [self.successResultOf(d) for d in ds]
        self.assertEqual(
            [(m.id, m.room, m.seq, m.content) for m in stored],
            [(1, "a", 1, "a1"), (2, "b", 1, "b1"), (3, "a", 2, "a2")],
        )
        self.assertEqual(
            [m.as_dict() | {"id": 0} for m in stored], [m.as_dict() for m in submitted]
        )

    def test_submitted_message_not_mutated(self) -> None:
        """The caller's Message keeps id 0; the result is a new object."""
        original = message("a")
        d = self.writer.submit(original)
        self.clock.advance(0)
        self.insert.commit()
        self.assertEqual(original.id, 0)
        self.assertIsNot(self.successResultOf(d), original)

    def test_callbacks_fire_in_submission_order(self) -> None:
        """Within a batch, Deferreds fire in the order the messages came."""
        fired: list[str] = []
        for text in "abcd":
            self.writer.submit(message(text)).addCallback(lambda m: fired.append(m.content))
        self.clock.advance(0)
        self.insert.commit()
        self.assertEqual(fired, ["a", "b", "c", "d"])

    def test_next_batch_collects_while_one_is_in_flight(self) -> None:
        """Messages arriving during a commit wait (no second concurrent
        transaction) and go together as soon as the first commits."""
        first = self.writer.submit(message("a"))
        self.clock.advance(0)
        later = [self.writer.submit(message(text)) for text in "bc"]
        self.clock.advance(0)
        self.clock.advance(1)
        self.assertEqual(len(self.insert.batches), 1)
        self.assertEqual(self.writer.pending, 2)
        self.insert.commit(0)
        # The second transaction starts at once, without waiting for the clock.
        self.assertEqual([self.contents(b) for b in self.insert.batches], [["a"], ["b", "c"]])
        self.assertEqual(self.successResultOf(first).id, 1)
        for d in later:
            self.assertNoResult(d)
        self.insert.commit(1)
        self.assertEqual([self.successResultOf(d).id for d in later], [2, 3])

    def test_first_batch_callbacks_fire_before_second(self) -> None:
        """Across batches, results are reported in commit (= submission) order."""
        fired: list[str] = []
        self.writer.submit(message("a")).addCallback(lambda m: fired.append(m.content))
        self.clock.advance(0)
        self.writer.submit(message("b")).addCallback(lambda m: fired.append(m.content))
        self.insert.commit(0)
        self.insert.commit(1)
        self.assertEqual(fired, ["a", "b"])

    def test_max_batch_splits(self) -> None:
        """More than max_batch messages are split into batches committed one
        after another, in order."""
        writer = GroupCommitWriter(self.insert, self.clock, max_batch=2)
        ds = [writer.submit(message(str(i))) for i in range(5)]
        self.clock.advance(0)
        self.assertEqual([self.contents(b) for b in self.insert.batches], [["0", "1"]])
        self.insert.commit(0)
        self.assertEqual(len(self.insert.batches), 2)
        self.insert.commit(1)
        self.insert.commit(2)
        self.assertEqual(
            [self.contents(b) for b in self.insert.batches], [["0", "1"], ["2", "3"], ["4"]]
        )
        self.assertEqual([self.successResultOf(d).id for d in ds], [1, 2, 3, 4, 5])
        self.assertEqual(writer.batches, 3)
        self.assertEqual(writer.last_batch_size, 1)

    def test_synchronous_store_keeps_order_across_batches(self) -> None:
        """With a store that commits synchronously (the memory store), split
        batches still report their results in submission order."""
        next_id = iter(range(1, 100))

        def insert(messages: Sequence[Message]) -> Deferred[list[tuple[int, int]]]:
            return succeed([(n, n) for n in (next(next_id) for _ in messages)])

        writer = GroupCommitWriter(insert, self.clock, max_batch=2)
        fired: list[int] = []
        for i in range(5):
            writer.submit(message(str(i))).addCallback(lambda m: fired.append(m.id))
        self.clock.advance(0)
        self.assertEqual(fired, [1, 2, 3, 4, 5])

    def test_synchronous_failures_reported_in_order(self) -> None:
        """With a store that fails synchronously, split batches fail in order."""

        def insert(messages: Sequence[Message]) -> Deferred[list[tuple[int, int]]]:
            raise RuntimeError("read-only database")

        writer = GroupCommitWriter(insert, self.clock, max_batch=2)
        failed: list[str] = []

        def record(failure: Failure, content: str) -> None:
            failure.trap(StorageFailed)
            failed.append(content)

        for i in range(5):
            writer.submit(message(str(i))).addErrback(record, str(i))
        self.clock.advance(0)
        self.assertEqual(failed, ["0", "1", "2", "3", "4"])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 3)

    def test_failure_fails_the_whole_batch(self) -> None:
        """A failed transaction fails every Deferred of its batch with StorageFailed."""
        ds = [self.writer.submit(message(text)) for text in "ab"]
        self.clock.advance(0)
        self.insert.fail()
        for d in ds:
            failure = self.failureResultOf(d, StorageFailed)
            self.assertEqual(failure.value.http_status, 503)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_carries_on_after_failure(self) -> None:
        """After a failed batch, queued and later messages are still written."""
        failed = self.writer.submit(message("a"))
        self.clock.advance(0)
        queued = self.writer.submit(message("b"))
        self.insert.fail(0)
        self.failureResultOf(failed, StorageFailed)
        self.assertEqual(self.contents(self.insert.batches[1]), ["b"])
        self.insert.commit(1)
        self.assertEqual(self.successResultOf(queued).content, "b")
        later = self.writer.submit(message("c"))
        self.clock.advance(0)
        self.insert.commit(2)
        self.assertEqual(self.successResultOf(later).content, "c")
        self.flushLoggedErrors(RuntimeError)

    def test_insert_raising_synchronously(self) -> None:
        """An insert that raises instead of failing its Deferred is a failed batch."""
        calls: list[int] = []

        def insert(messages: Sequence[Message]) -> Deferred[list[tuple[int, int]]]:
            calls.append(len(messages))
            if len(calls) == 1:
                raise RuntimeError("no connection")
            return succeed([(10, 1)])

        writer = GroupCommitWriter(insert, self.clock)
        d = writer.submit(message("a"))
        self.clock.advance(0)
        self.failureResultOf(d, StorageFailed)
        self.flushLoggedErrors(RuntimeError)
        d2 = writer.submit(message("b"))
        self.clock.advance(0)
        self.assertEqual(self.successResultOf(d2).id, 10)

    def test_max_pending(self) -> None:
        """Past max_pending queued messages, submit raises ServiceBusy at once."""
        writer = GroupCommitWriter(self.insert, self.clock, max_pending=2)
        writer.submit(message("a"))
        writer.submit(message("b"))
        error = self.assertRaises(ServiceBusy, writer.submit, message("c"))
        self.assertEqual(error.http_status, 503)
        self.assertEqual(writer.pending, 2)
        self.clock.advance(0)
        # Once the queue has gone to the database there is room again.
        writer.submit(message("d"))
        self.assertEqual(writer.pending, 1)

    def test_flush_when_idle(self) -> None:
        """flush() on an idle writer fires at once."""
        self.successResultOf(self.writer.flush())

    def test_flush_waits_for_everything(self) -> None:
        """flush() fires only when queued and in-flight batches have all committed."""
        ds = [self.writer.submit(message("a"))]
        self.clock.advance(0)
        ds.append(self.writer.submit(message("b")))
        flushed = self.writer.flush()
        self.assertNoResult(flushed)
        self.insert.commit(0)
        self.assertNoResult(flushed)
        self.insert.commit(1)
        self.successResultOf(flushed)
        for d in ds:
            self.successResultOf(d)

    def test_flush_before_first_turn(self) -> None:
        """flush() right after submit waits for the scheduled commit."""
        self.writer.submit(message("a"))
        flushed = self.writer.flush()
        self.clock.advance(0)
        self.assertNoResult(flushed)
        self.insert.commit()
        self.successResultOf(flushed)

    def test_flush_after_failure(self) -> None:
        """A failed batch still counts as done for flush()."""
        d = self.writer.submit(message("a"))
        flushed = self.writer.flush()
        self.clock.advance(0)
        self.insert.fail()
        self.successResultOf(flushed)
        self.failureResultOf(d, StorageFailed)
        self.flushLoggedErrors(RuntimeError)


class StoredHookAndQuietTests(TestCase):
    """``on_stored`` hears every committed message before its sender;
    ``submit_quietly`` senders hear only of failures."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.insert = ControlledInsert()
        self.events: list[str] = []
        self.writer = GroupCommitWriter(self.insert, self.clock, on_stored=self.stored)

    def stored(self, message: Message) -> None:
        if message.content == "boom":
            raise ValueError("publishing failed")
        self.events.append(f"stored {message.content}#{message.id}")

    def test_hook_runs_in_commit_order_before_the_sender(self) -> None:
        d = self.writer.submit(message("a"))
        d.addCallback(lambda m: self.events.append(f"sender {m.content}#{m.id}"))
        self.writer.submit_quietly(message("b"), lambda f: self.events.append("failed b"))
        self.writer.submit(message("c"))
        self.clock.advance(0)
        self.assertEqual(self.events, [])
        self.insert.commit()
        self.assertEqual(self.events, ["stored a#1", "sender a#1", "stored b#2", "stored c#3"])

    def test_quiet_sender_hears_of_a_failed_commit(self) -> None:
        failures: list[Failure] = []
        self.writer.submit_quietly(message("a"), failures.append)
        self.writer.submit_quietly(message("b"), failures.append)
        self.clock.advance(0)
        self.insert.fail()
        self.assertEqual([f.check(StorageFailed) for f in failures], [StorageFailed] * 2)
        self.assertEqual(self.events, [])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_hook_error_goes_to_that_message_only(self) -> None:
        """If publishing one message raises, its sender gets the error and
        the rest of the batch is still published and reported."""
        failures: list[Failure] = []
        self.writer.submit_quietly(message("boom"), failures.append)
        bad = self.writer.submit(message("boom"))
        good = self.writer.submit(message("after"))
        self.clock.advance(0)
        self.insert.commit()
        self.assertEqual([f.check(ValueError) for f in failures], [ValueError])
        self.failureResultOf(bad, ValueError)
        self.assertEqual(self.successResultOf(good).id, 3)
        self.assertEqual(self.events, ["stored after#3"])

    def test_quiet_submit_respects_max_pending(self) -> None:
        self.writer.max_pending = 1
        self.writer.submit_quietly(message("a"), self.fail)
        self.assertRaises(ServiceBusy, self.writer.submit_quietly, message("b"), self.fail)


class AfterQueuedTests(TestCase):
    """``after_queued``: a callback once everything queued so far is
    stored and published (a member's leave follows its messages)."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.insert = ControlledInsert()
        self.events: list[str] = []
        self.writer = GroupCommitWriter(
            self.insert,
            self.clock,
            on_stored=lambda m: self.events.append(f"stored {m.content}#{m.id}"),
        )

    def after(self, name: str) -> None:
        self.writer.after_queued(lambda: self.events.append(name))

    def test_idle_at_once(self) -> None:
        self.after("leave")
        self.assertEqual(self.events, ["leave"])

    def test_after_the_queued_messages(self) -> None:
        """Queued (not yet in a batch), in flight, or both: the callback
        runs after their publication, before later batches'."""
        self.writer.submit(message("a"))
        self.after("after a")
        self.clock.advance(0)  # batch 1: a, in flight
        self.writer.submit(message("b"))
        self.after("after b")
        self.writer.submit(message("c"))
        self.assertEqual(self.events, [])
        self.insert.commit(0)  # batch 2 (b, c) starts
        self.assertEqual(self.events, ["stored a#1", "after a"])
        self.insert.commit(1)
        self.assertEqual(
            self.events, ["stored a#1", "after a", "stored b#2", "stored c#3", "after b"]
        )
        self.after("idle again")
        self.assertEqual(self.events[-1], "idle again")

    def test_after_a_failed_batch_too(self) -> None:
        """The messages could not be stored: the callback still runs."""
        self.writer.submit_quietly(message("a"), lambda f: self.events.append("failed a"))
        self.after("leave")
        self.clock.advance(0)
        self.insert.fail()
        self.assertEqual(self.events, ["failed a", "leave"])
        self.flushLoggedErrors(RuntimeError)

    def test_callback_error_is_logged(self) -> None:
        self.writer.submit(message("a"))
        self.writer.after_queued(lambda: 1 / 0)
        self.after("next")
        self.clock.advance(0)
        self.insert.commit()
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.assertEqual(self.events, ["stored a#1", "next"])
