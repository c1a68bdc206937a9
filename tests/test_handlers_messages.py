"""Tests for parkchat.handlers.messages: MessageHandler, the page check and
the publisher the group-commit writer calls."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, fail
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from parkchat.errors import (
    ContentTooLong,
    InvalidRequest,
    InvalidRoom,
    NotInRoom,
    RateLimited,
    ServiceBusy,
    StorageFailed,
)
from parkchat.handlers.connections import ConnectionHandler
from parkchat.handlers.messages import MAX_ID, MessageHandler, check_page, stored_publisher
from parkchat.handlers.rooms import RoomHandler
from parkchat.limits import Limits, TokenBucketLimiter
from parkchat.metrics import ServiceMetrics
from parkchat.model import CHAT, DELETED, Message
from parkchat.recent import RecentMessages
from parkchat.store.memory import MemoryStore
from parkchat.store.writer import GroupCommitWriter
from tests.helpers import FakeParticipant, RecordingBus

START = 1_757_345_400


def message(id: int, room: str = "lobby") -> Message:
    return Message(id=id, room=room, nickname="n", content=f"m{id}", timestamp_ms=id)


class PublisherTests(TestCase):
    def test_with_cache(self) -> None:
        """A committed message goes into the recent cache, then on the bus."""
        bus = RecordingBus()
        recent = RecentMessages()
        recent.loading("lobby")
        recent.fill("lobby", [])
        stored_publisher(bus, recent)(message(1))
        self.assertEqual(bus.published, [("lobby", message(1))])
        self.assertEqual(recent.get("lobby", 5), [message(1)])

    def test_without_cache(self) -> None:
        bus = RecordingBus()
        stored_publisher(bus, None)(message(1))
        self.assertEqual(bus.published, [("lobby", message(1))])


class PageTests(TestCase):
    limits = Limits(history_default=5, history_max=10)

    def test_defaults_and_bounds(self) -> None:
        self.assertEqual(check_page(self.limits, None, None, None), (5, None, None))
        self.assertEqual(check_page(self.limits, 10, 3, MAX_ID), (10, 3, MAX_ID))
        for limit in (0, 11, True, "5", 2.0):
            self.assertRaises(InvalidRequest, check_page, self.limits, limit, None, None)
        for bound in (-1, MAX_ID + 1, True, "3", 1.5):
            self.assertRaises(InvalidRequest, check_page, self.limits, 5, bound, None)
            self.assertRaises(InvalidRequest, check_page, self.limits, 5, None, bound)


class MessageHandlerCase(TestCase):
    limits = Limits(rate_limit=1, rate_burst=3, max_content_length=20, history_max=100)
    cache = True

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(START)
        self.store = MemoryStore()
        self.bus = RecordingBus(loop_back=True)
        self.metrics = ServiceMetrics()
        self.rate = TokenBucketLimiter(
            self.clock, self.limits.rate_limit, self.limits.rate_burst, self.metrics.rate_limit_hit
        )
        self.recent = RecentMessages(self.limits.history_max) if self.cache else None
        self.writer = GroupCommitWriter(
            lambda batch: self.store.insert_messages(batch),  # late-bound: tests replace it
            self.clock,
            on_stored=stored_publisher(self.bus, self.recent),
        )
        self.connections = ConnectionHandler(self.bus, self.limits, instance_id="i1")
        self.rooms = RoomHandler(
            self.connections,
            self.bus,
            self.clock,
            self.metrics,
            self.rate,
            self.store,
            after_queued=self.writer.after_queued,
        )
        self.bus.attach(self.rooms)
        self.messages = MessageHandler(
            self.store,
            self.writer,
            self.recent,
            self.connections,
            self.rooms,
            self.bus,
            self.clock,
            self.limits,
            self.metrics,
            self.rate,
        )
        self.alice = FakeParticipant("alice", user_id=1)
        self.connections.register(self.alice)
        self.rooms.join(self.alice, "lobby")

    def chats(self) -> list[str]:
        return [m.content for m in self.alice.received if m.type == CHAT]


class MentionTests(MessageHandlerCase):
    limits = Limits(rate_limit=1, rate_burst=3, max_content_length=200, history_max=100)

    def test_mentions(self) -> None:
        """Mentions are parsed at post time: members here and on other
        instances by their spelling, accounts by the store, ``@here``; a
        body without "@" carries none; delivered and stored with them."""
        self.successResultOf(self.store.create_user("Carol", b"h", 0))
        guest = FakeParticipant("Guest7")
        self.connections.register(guest)
        self.rooms.join(guest, "lobby")
        self.bus.remote["rooms"]["lobby"] = ["dave"]
        d = self.messages.post(self.alice, "lobby", "@guest7 @DAVE @carol @zed @here")
        plain = self.messages.post(self.alice, "lobby", "no mention")
        self.clock.advance(0)
        self.assertEqual(self.successResultOf(d).mentions, ("@here", "Carol", "Guest7", "dave"))
        self.assertEqual(self.successResultOf(plain).mentions, ())
        delivered = [m for m in self.alice.received if m.type == CHAT]
        self.assertEqual(delivered[0].mentions, ("@here", "Carol", "Guest7", "dave"))
        stored = self.successResultOf(self.store.room_messages_after("lobby", 0, 5))
        self.assertEqual([m.mentions for m in stored], [delivered[0].mentions, ()])


class PostTests(MessageHandlerCase):
    def test_stored_then_delivered(self) -> None:
        """Nothing is delivered before the commit; the stored message
        carries the sender's account and connection id."""
        d = self.messages.post(self.alice, "lobby", "hello")
        self.assertEqual(self.chats(), [])
        self.clock.advance(0)
        stored = self.successResultOf(d)
        self.assertEqual(self.chats(), ["hello"])
        self.assertEqual(
            (stored.id, stored.user_id, stored.origin, stored.timestamp_ms),
            (1, 1, "i1.c1", START * 1000),
        )
        self.assertEqual(self.metrics.messages_received, 1)

    def test_refused_at_once(self) -> None:
        self.assertRaises(NotInRoom, self.messages.post, self.alice, "elsewhere", "hi")
        self.assertRaises(ContentTooLong, self.messages.post, self.alice, "lobby", "x" * 21)
        for _ in range(3):
            self.messages.post(self.alice, "lobby", "ok")
        self.assertRaises(RateLimited, self.messages.post, self.alice, "lobby", "too many")
        self.assertEqual(self.metrics.rate_limited, 1)
        self.clock.advance(0)
        self.assertEqual(self.chats(), ["ok", "ok", "ok"])

    def test_quietly(self) -> None:
        """No result; a failure to store is reported to ``failed``."""
        failures: list[Failure] = []
        self.messages.post_quietly(self.alice, "lobby", "quiet", failures.append)
        self.clock.advance(0)
        self.assertEqual((self.chats(), failures), (["quiet"], []))
        self.store.insert_messages = lambda batch: fail(OSError("disk"))  # type: ignore[method-assign]
        self.messages.post_quietly(self.alice, "lobby", "lost", failures.append)
        self.clock.advance(0)
        self.flushLoggedErrors(OSError)
        [failure] = failures
        failure.trap(StorageFailed)

    def test_flush(self) -> None:
        self.messages.post(self.alice, "lobby", "queued")
        flushed = self.messages.flush()
        self.assertNoResult(flushed)
        self.clock.advance(0)
        self.successResultOf(flushed)

    def test_prune(self) -> None:
        """Housekeeping forgets refilled buckets."""
        self.messages.post(self.alice, "lobby", "one")
        self.assertEqual(len(self.rate), 1)
        self.clock.advance(3)
        self.messages.prune()
        self.assertEqual(len(self.rate), 0)

    def test_stop_accepting(self) -> None:
        """Draining: new posts are refused (busy), those queued still go."""
        queued = self.messages.post(self.alice, "lobby", "queued")
        self.messages.stop_accepting()
        self.assertRaises(ServiceBusy, self.messages.post, self.alice, "lobby", "late")
        self.clock.advance(0)
        self.assertEqual(self.successResultOf(queued).content, "queued")
        self.messages.start_accepting()
        self.messages.post(self.alice, "lobby", "again")

    def test_notify(self) -> None:
        """Typing notices go out at once, are not stored, cost no token."""
        for _ in range(5):
            self.messages.notify(self.alice, "lobby", "typing")
        self.assertEqual([m.type for m in self.alice.received][-5:], ["typing"] * 5)
        self.assertEqual(self.alice.received[-1].origin, "i1.c1")
        self.assertRaises(NotInRoom, self.messages.notify, self.alice, "elsewhere", "typing")
        self.assertEqual(self.successResultOf(self.store.recent_messages("lobby", 10)), [])


class HistoryTests(MessageHandlerCase):
    def post(self, text: str) -> None:
        self.clock.advance(1)  # a fresh rate token
        self.messages.post(self.alice, "lobby", text)
        self.clock.advance(0)

    def counting(self) -> list[Any]:
        calls: list[Any] = []
        real = self.store.recent_messages

        def recent_messages(*args: Any) -> Deferred[list[Message]]:
            calls.append(args)
            return real(*args)

        self.store.recent_messages = recent_messages  # type: ignore[method-assign]
        return calls

    def history(self, **kwargs: Any) -> list[str]:
        return [m.content for m in self.successResultOf(self.messages.history("lobby", **kwargs))]

    def test_served_from_the_cache(self) -> None:
        calls = self.counting()
        self.post("one")
        self.assertEqual(self.history(), ["one"])
        version = self.messages.history_version("lobby")
        self.post("two")
        self.assertEqual(self.history(limit=1), ["two"])
        self.assertNotEqual(self.messages.history_version("lobby"), version)
        self.assertEqual(len(calls), 1)
        self.assertEqual(self.history(before=2), ["one"])  # paging: the store
        self.assertEqual(len(calls), 2)

    def test_bad_requests(self) -> None:
        self.assertRaises(InvalidRoom, self.messages.history, " lobby")
        self.assertRaises(InvalidRequest, self.messages.history, "lobby", 0)
        for bad in (-1, "3", True, MAX_ID + 1):
            self.assertRaises(InvalidRequest, self.messages.history, "lobby", after_seq=bad)
            self.assertRaises(InvalidRequest, self.messages.history, "lobby", before_seq=bad)

    def test_by_seq(self) -> None:
        """Pages by room position: the first after ``after_seq``, the last
        before ``before_seq``; each message carries its seq."""
        for text in ("a", "b", "c", "d"):
            self.post(text)
        after = self.successResultOf(self.messages.history("lobby", 2, after_seq=1))
        self.assertEqual([(m.content, m.seq) for m in after], [("b", 2), ("c", 3)])
        before = self.successResultOf(self.messages.history("lobby", 2, before_seq=4))
        self.assertEqual([m.seq for m in before], [2, 3])

    def test_failed_load(self) -> None:
        """A failed load fails every waiting reader; the next read tries again."""
        self.store.recent_messages = lambda *a: fail(OSError("gone"))  # type: ignore[method-assign]
        self.failureResultOf(self.messages.history("lobby"), OSError)
        self.assertIsNone(self.messages.history_version("lobby"))
        del self.store.recent_messages
        self.post("back")
        self.assertEqual(self.history(), ["back"])


class UncachedHistoryTests(HistoryTests):
    cache = False

    def test_served_from_the_cache(self) -> None:
        """Without the cache every read is a query."""
        calls = self.counting()
        self.post("one")
        self.assertEqual(self.history(), ["one"])
        self.assertEqual(self.history(), ["one"])
        self.assertEqual(len(calls), 2)
        self.assertIsNone(self.messages.history_version("lobby"))


class DeleteTests(MessageHandlerCase):
    def test_delete(self) -> None:
        """Gone from the store and the cache; members are told."""
        d = self.messages.post(self.alice, "lobby", "spam")
        self.clock.advance(0)
        spam = self.successResultOf(d)
        self.successResultOf(self.messages.history("lobby"))
        room = self.successResultOf(Deferred.fromCoroutine(self.messages.delete_message(spam.id)))
        self.assertEqual(room, "lobby")
        self.assertEqual(self.successResultOf(self.messages.history("lobby")), [])
        notice = self.alice.received[-1]
        self.assertEqual((notice.type, notice.id, notice.seq), (DELETED, spam.id, spam.seq))

    def test_no_such_message(self) -> None:
        for message_id in (999, 0, -1, MAX_ID + 1):
            result = Deferred.fromCoroutine(self.messages.delete_message(message_id))
            self.assertIsNone(self.successResultOf(result))
        bad = Deferred.fromCoroutine(self.messages.delete_message("1"))
        self.failureResultOf(bad, InvalidRequest)
