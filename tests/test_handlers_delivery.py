"""Tests for parkchat.handlers.delivery: room events in sequence order,
exactly once, gaps filled from the store, and resumes that neither overlap
nor leave a gap with the live events (through RoomHandler, which owns it).

The store answers as the database would: a read sees what was stored when
it was issued, and its answer may arrive later (``GatedStore``), while other
events come over the bus."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, fail
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from parkchat.errors import InvalidRequest
from parkchat.handlers import delivery
from parkchat.handlers.connections import ConnectionHandler
from parkchat.handlers.rooms import RoomHandler
from parkchat.limits import Limits, TokenBucketLimiter
from parkchat.metrics import ServiceMetrics
from parkchat.model import (
    CHAT,
    DELETED,
    EDITED,
    JOINED,
    LEFT,
    SYSTEM,
    TOPIC,
    JoinResult,
    Message,
    RoomTopic,
    system_message,
)
from parkchat.store.memory import MemoryStore
from tests.helpers import FakeParticipant, RecordingBus


class GatedStore:
    """A MemoryStore whose reads named in ``gated`` are answered only when
    the test says so, with what the store held when they were issued."""

    def __init__(self) -> None:
        self.memory = MemoryStore()
        self.gated: set[str] = set()
        self.waiting: list[tuple[str, Deferred[Any], Any]] = []
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def __getattr__(self, name: str) -> Any:
        real = getattr(self.memory, name)
        if not callable(real):
            return real

        def call(*args: Any) -> Any:
            self.calls.append((name, args))
            if name not in self.gated:
                return real(*args)
            answer: Deferred[Any] = Deferred()
            self.waiting.append((name, answer, real(*args)))
            return answer

        return call

    def release(self, name: str | None = None) -> None:
        """Answer the oldest waiting read (of ``name``, if given)."""
        for index, (waiting, answer, result) in enumerate(self.waiting):
            if name is None or waiting == name:
                del self.waiting[index]
                result.chainDeferred(answer)
                return
        raise AssertionError(f"no {name or 'read'} is waiting")

    def read_count(self, name: str) -> int:
        return sum(1 for called, _ in self.calls if called == name)


class DeliveryCase(TestCase):
    resume_max = 5000

    def setUp(self) -> None:
        self.clock = Clock()
        self.bus = RecordingBus()
        self.metrics = ServiceMetrics()
        self.connections = ConnectionHandler(self.bus, Limits())
        self.store = GatedStore()
        self.rooms = RoomHandler(
            self.connections,
            self.bus,
            self.clock,
            self.metrics,
            TokenBucketLimiter(self.clock, 0, 1),
            self.store,  # type: ignore[arg-type]
            resume_max=self.resume_max,
        )
        self.bus.attach(self.rooms)

    def member(self, nickname: str) -> FakeParticipant:
        participant = FakeParticipant(nickname)
        self.connections.register(participant)
        return participant

    def joined(self, nickname: str, room: str = "lobby") -> FakeParticipant:
        participant = self.member(nickname)
        self.successResultOf(self.rooms.join(participant, room))
        return participant

    def stored(self, *texts: str, room: str = "lobby") -> list[Message]:
        """Messages stored (by any instance), not yet published."""
        batch = [Message(room=room, nickname="bob", content=t, timestamp_ms=0) for t in texts]
        positions = self.successResultOf(self.store.memory.insert_messages(batch))
        return [m.with_ids(i, seq) for m, (i, seq) in zip(batch, positions, strict=True)]

    def deliver(self, *messages: Message) -> None:
        for message in messages:
            self.rooms.deliver(message.room, message)

    def published(self, *texts: str) -> list[Message]:
        """Stored and delivered over the bus, in order."""
        messages = self.stored(*texts)
        self.deliver(*messages)
        return messages

    def notice(self, nickname: str, event: str = LEFT) -> Message:
        return system_message("lobby", nickname, event, 0)

    def seen(self, participant: FakeParticipant) -> list[str]:
        """What reached ``participant`` besides join notices: chat texts,
        and other events by type."""
        shown = []
        for m in participant.received:
            if m.type == CHAT:
                shown.append(m.content)
            elif m.type == SYSTEM and m.event == LEFT:
                shown.append(f"<{m.nickname} left>")
            elif m.type != SYSTEM:
                shown.append(f"<{m.type}>")
        return shown


class InOrderTests(DeliveryCase):
    def test_in_order(self) -> None:
        """Consecutive seqs are delivered as they come."""
        alice = self.joined("alice")
        self.published("one", "two")
        self.assertEqual(self.seen(alice), ["one", "two"])
        self.assertEqual(self.rooms.position("lobby"), 2)
        self.assertEqual(self.store.read_count("room_messages_after"), 0)

    def test_duplicates_and_old_dropped(self) -> None:
        """A seq at or below the last delivered is dropped (the bus brought
        it again, or a fill got there first)."""
        alice = self.joined("alice")
        one, two = self.published("one", "two")
        self.deliver(one, two, one)
        self.assertEqual(self.seen(alice), ["one", "two"])
        self.assertEqual(self.metrics.duplicates_dropped, 3)

    def test_unsequenced_events_at_once(self) -> None:
        """Events without a seq (leaves, typing, older senders) go out as
        they come while nothing is held."""
        alice = self.joined("alice")
        self.deliver(self.notice("bob"))
        self.deliver(
            Message(room="lobby", nickname="bob", content="", timestamp_ms=0, type="typing")
        )
        self.deliver(Message(room="lobby", nickname="old", content="no seq", timestamp_ms=0, id=9))
        self.assertEqual(self.seen(alice), ["<bob left>", "<typing>", "no seq"])

    def test_deleted_notice_is_not_a_position(self) -> None:
        """A deletion notice carries the deleted message's seq but does not
        move the cursor, nor count as a duplicate."""
        alice = self.joined("alice")
        [one] = self.published("one")
        self.deliver(
            Message(
                room="lobby",
                nickname="",
                content="",
                timestamp_ms=0,
                type=DELETED,
                id=one.id,
                seq=1,
            )
        )
        self.published("two")
        self.assertEqual(self.seen(alice), ["one", "<deleted>", "two"])
        self.assertEqual(self.metrics.duplicates_dropped, 0)


class GapTests(DeliveryCase):
    def grace(self) -> None:
        """Let a gap's moment to close by itself pass."""
        self.clock.advance(delivery.GAP_GRACE)

    def test_late_message_closes_the_gap(self) -> None:
        """Two instances' messages can cross on their way: the one the held
        message waits for arrives within the grace and nothing is read."""
        alice = self.joined("alice")
        one, two, three = self.stored("1", "2", "3")
        self.deliver(two, self.notice("bob"), three)
        self.assertEqual(self.seen(alice), [])
        self.deliver(one)
        self.assertEqual(self.seen(alice), ["1", "2", "<bob left>", "3"])
        self.grace()
        self.assertEqual(self.store.read_count("room_messages_after"), 0)
        self.assertEqual(self.metrics.messages_filled, 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_late_message_reveals_another_gap(self) -> None:
        """The late message closes one gap but the held ones hold another:
        the grace runs on, then the rest is read."""
        alice = self.joined("alice")
        one, _, three = self.stored("1", "2", "3")
        self.deliver(three, one)
        self.assertEqual(self.seen(alice), ["1"])
        self.grace()
        self.assertEqual(self.seen(alice), ["1", "2", "3"])
        self.assertEqual(self.metrics.messages_filled, 1)

    def test_gap_filled_in_pages(self) -> None:
        """A seq beyond the next one: after the grace, the gap is read from
        the store, as many pages as it takes, and delivered first."""
        self.patch(delivery, "FILL_PAGE", 2)
        alice = self.joined("alice")
        messages = self.stored(*(f"m{i}" for i in range(1, 8)))
        self.deliver(messages[-1])
        self.assertEqual(self.seen(alice), [])
        self.grace()
        self.assertEqual(self.seen(alice), [f"m{i}" for i in range(1, 8)])
        self.assertEqual(self.store.read_count("room_messages_after"), 3)
        self.assertEqual(self.metrics.messages_filled, 6)
        self.deliver(*messages)  # the bus brings them after all: nothing twice
        self.assertEqual(len(self.seen(alice)), 7)

    def test_holes(self) -> None:
        """Deleted messages leave holes: a fill reads ranges and does not
        wait for seqs that will never come."""
        alice = self.joined("alice")
        one, _, three, four, five = self.stored("1", "2", "3", "4", "5")
        for gone in (three, five):
            self.successResultOf(self.store.memory.delete_message(gone.id))
        self.deliver(one, four)
        self.grace()
        [six] = self.stored("6")
        self.deliver(six)
        self.grace()
        self.assertEqual(self.seen(alice), ["1", "2", "4", "6"])
        self.assertEqual(self.rooms.position("lobby"), 6)

    def test_events_behind_a_fill_wait_in_order(self) -> None:
        """While a fill reads, later events -- with a seq or without -- are
        held and follow it in the order they came."""
        alice = self.joined("alice")
        self.published("one")
        self.store.gated.add("room_messages_after")
        _, three = self.stored("two", "three")
        self.deliver(three, self.notice("bob"))
        self.grace()
        [four] = self.stored("four")
        self.deliver(
            four, Message(room="lobby", nickname="c", content="", timestamp_ms=0, type="typing")
        )
        self.assertEqual(self.seen(alice), ["one"])
        self.store.release()
        self.assertEqual(
            self.seen(alice), ["one", "two", "three", "<bob left>", "four", "<typing>"]
        )

    def test_second_gap_while_draining(self) -> None:
        """A held event beyond another gap starts another fill."""
        alice = self.joined("alice")
        _, _, three, four, five = self.stored("1", "2", "3", "4", "5")
        self.store.gated.add("room_messages_after")
        self.deliver(three, five)
        self.grace()
        self.store.release()  # 1, 2: then 3 is held and the next, 5, is not 4
        self.assertEqual(self.seen(alice), ["1", "2", "3"])
        self.store.release()  # 4
        self.assertEqual(self.seen(alice), ["1", "2", "3", "4", "5"])
        self.deliver(four)
        self.assertEqual(len(self.seen(alice)), 5)

    def test_failed_read_is_tried_again(self) -> None:
        """The store fails: the held events wait, the read is retried later."""
        alice = self.joined("alice")
        [_, two] = self.stored("1", "2")
        real = self.store.memory.room_messages_after
        self.store.memory.room_messages_after = lambda *a: fail(OSError("gone"))  # type: ignore[method-assign]
        self.deliver(two)
        self.grace()
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)
        self.assertEqual(self.seen(alice), [])
        self.store.memory.room_messages_after = real  # type: ignore[method-assign]
        self.clock.advance(delivery.RETRY_FIRST)
        self.assertEqual(self.seen(alice), ["1", "2"])

    def test_room_gone_during_a_fill(self) -> None:
        """The last member leaves while a fill reads: the fill ends quietly."""
        alice = self.joined("alice")
        self.store.gated.add("room_messages_after")
        self.deliver(self.stored("1", "2")[1])
        self.grace()
        self.rooms.leave(alice, "lobby")
        self.store.release()
        self.assertEqual(self.seen(alice), [])
        self.assertEqual(self.rooms.room_count, 0)


class FirstMemberTests(DeliveryCase):
    def test_cursor_read_when_the_room_is_made(self) -> None:
        """The first member here makes the room: its position is read from
        the store; events meanwhile are held, those at or below the
        position dropped (they are history), the rest delivered (gaps
        filled); then the join answers, with the position reached."""
        history = self.stored("history 1", "history 2")
        self.store.gated.add("current_seq")
        alice = self.member("alice")
        d = self.rooms.join(alice, "lobby")
        self.assertEqual(self.rooms.local_members("lobby"), ["alice"])  # in at once
        # Stored after the read was issued (its answer says 2); "new" and a
        # late copy of history come over the bus before the answer.
        _, new = self.stored("after the read", "new")
        self.deliver(history[1], new)
        order: list[str] = []
        d.addCallback(lambda result: order.append(f"joined at {result.seq}: {self.seen(alice)}"))
        self.store.release("current_seq")
        self.assertEqual(order, ["joined at 4: ['after the read', 'new']"])
        self.assertEqual(self.seen(alice), ["after the read", "new"])
        self.assertEqual(self.rooms.position("lobby"), 4)

    def test_own_join_notice_after_the_read(self) -> None:
        """The joiner's own join notice, published at once, is held with the
        rest and delivered once the position is known."""
        self.store.gated.add("current_seq")
        alice = self.member("alice")
        self.rooms.join(alice, "lobby")
        self.deliver(*[m for _, m in self.bus.published])
        self.assertEqual(alice.received, [])
        self.store.release()
        self.assertEqual([(m.event, m.nickname) for m in alice.received], [(JOINED, "alice")])


class PositionTests(DeliveryCase):
    def test_check_fills_rooms_behind(self) -> None:
        """Rooms whose store position is ahead are filled; others are not read."""
        alice = self.joined("alice")
        bob = self.joined("bob", "quiet")
        self.published("one")
        self.stored("lost")
        self.successResultOf(self.rooms.check_positions(grace=False))
        self.assertEqual(self.seen(alice), ["one", "lost"])
        self.assertEqual(self.seen(bob), [])
        self.assertEqual(self.store.read_count("room_messages_after"), 1)

    def test_grace(self) -> None:
        """With ``grace`` only what was already stored at the previous check
        is filled (the bus gets one period to bring new messages)."""
        alice = self.joined("alice")
        [lost] = self.stored("lost")
        self.successResultOf(self.rooms.check_positions(grace=True))
        self.assertEqual(self.seen(alice), [])
        [arrives] = self.stored("arrives")
        self.successResultOf(self.rooms.check_positions(grace=True))
        self.assertEqual(self.seen(alice), ["lost"])
        self.deliver(arrives)
        self.successResultOf(self.rooms.check_positions(grace=True))
        self.assertEqual(self.seen(alice), ["lost", "arrives"])
        del lost

    def test_live_events_wait_for_a_check_fill(self) -> None:
        """A message arriving over the bus while a check's fill reads waits
        behind the filled ones."""
        alice = self.joined("alice")
        self.stored("lost")
        self.store.gated.add("room_messages_after")
        self.rooms.check_positions(grace=False)
        [live] = self.stored("live")
        self.deliver(live)
        self.store.release()
        self.assertEqual(self.seen(alice), ["lost", "live"])

    def test_settle(self) -> None:
        """``settle`` fires once every room delivered what the store held."""
        alice = self.joined("alice")
        self.stored("a", "b")
        self.store.gated.add("room_messages_after")
        settled = self.rooms.settle()
        self.assertNoResult(settled)
        self.store.release()
        self.successResultOf(settled)
        self.assertEqual(self.seen(alice), ["a", "b"])


class ResumeTests(DeliveryCase):
    """``join`` with ``since``: the replay and the live events meet
    exactly, whatever is stored or delivered while the replay is read."""

    def setUp(self) -> None:
        super().setUp()
        self.alice = self.joined("alice")
        self.published(*(f"m{i}" for i in range(1, 6)))  # seqs 1..5

    def resume(
        self, since: int, nickname: str = "bob"
    ) -> tuple[FakeParticipant, Deferred[JoinResult]]:
        participant = self.member(nickname)
        return participant, self.rooms.join(participant, "lobby", since)

    def everything(self, participant: FakeParticipant, result: JoinResult) -> list[str]:
        return [m.content for m in result.replay] + self.seen(participant)

    def test_replay(self) -> None:
        bob, d = self.resume(2)
        result = self.successResultOf(d)
        self.assertEqual((result.seq, result.recovered, result.resumed), (5, True, True))
        self.assertEqual([m.content for m in result.replay], ["m3", "m4", "m5"])
        self.assertEqual(result.first_seq, 3)
        self.published("m6")
        self.assertEqual(self.everything(bob, result), ["m3", "m4", "m5", "m6"])

    def test_delivered_while_reading(self) -> None:
        """A message delivered here while the replay is read: read again,
        attached after it; it is in the replay, not live."""
        self.store.gated.add("room_messages_after")
        bob, d = self.resume(3)
        self.published("m6")
        self.store.release()  # m4, m5: the room moved on to 6 meanwhile
        self.assertNoResult(d)
        self.store.release()  # m6
        result = self.successResultOf(d)
        self.published("m7")
        self.assertEqual(result.seq, 6)
        self.assertEqual(self.everything(bob, result), ["m4", "m5", "m6", "m7"])

    def test_stored_not_yet_delivered(self) -> None:
        """A message stored before the read but not yet delivered here is
        left out of the replay: it comes live."""
        self.store.gated.add("room_messages_after")
        [six] = self.stored("m6")
        bob, d = self.resume(4)
        self.store.release()
        result = self.successResultOf(d)
        self.assertEqual(result.seq, 5)
        self.deliver(six)
        self.assertEqual(self.everything(bob, result), ["m5", "m6"])

    def test_stored_during_the_read(self) -> None:
        """Stored after the read began, delivered after it ended: live."""
        self.store.gated.add("room_messages_after")
        bob, d = self.resume(4)
        [six] = self.stored("m6")
        self.store.release()
        result = self.successResultOf(d)
        self.deliver(six)
        self.assertEqual(self.everything(bob, result), ["m5", "m6"])

    def test_nothing_missed(self) -> None:
        """``since`` at (or past) the position: attached at once, no read."""
        _, d = self.resume(5)
        self.assertEqual(self.successResultOf(d).replay, [])
        _, d = self.resume(99, "carol")
        self.assertEqual(self.successResultOf(d).seq, 5)
        self.assertEqual(self.store.read_count("room_messages_after"), 0)

    def test_join_notice_after_the_replay(self) -> None:
        """The joiner's notice goes out after the replay was handed over."""
        published = len(self.bus.published)
        _, d = self.resume(3)
        self.successResultOf(d)
        self.assertEqual(len(self.bus.published), published)
        self.clock.advance(0)
        [(_, notice)] = self.bus.published[published:]
        self.assertEqual((notice.event, notice.nickname), (JOINED, "bob"))

    def test_connection_gone_while_reading(self) -> None:
        """The client went away before the replay was read: not attached;
        a room kept only for it goes."""
        self.stored("x", room="elsewhere")
        self.store.gated.add("room_messages_after")
        bob = self.member("bob")
        d = self.rooms.join(bob, "elsewhere", 0)
        self.assertEqual(self.rooms.room_names(), ["elsewhere", "lobby"])
        self.connections.unregister(bob)
        self.store.release()
        self.failureResultOf(d, InvalidRequest)
        self.assertEqual(self.rooms.room_names(), ["lobby"])

    def test_room_made_for_a_resume(self) -> None:
        """A resume into a room nobody here is in: its position is read,
        then the replay."""
        self.stored("a", "b", room="quiet")
        bob = self.member("bob")
        result = self.successResultOf(self.rooms.join(bob, "quiet", 0))
        self.assertEqual([m.content for m in result.replay], ["a", "b"])
        self.assertEqual(self.rooms.local_members("quiet"), ["bob"])

    def test_bad_since(self) -> None:
        bob = self.member("bob")
        for since in (-1, "3", True, 1.5):
            self.assertRaises(InvalidRequest, self.rooms.join, bob, "lobby", since)


class ResumeLimitTests(DeliveryCase):
    resume_max = 3

    def setUp(self) -> None:
        super().setUp()
        self.joined("alice")
        self.messages = self.published(*(f"m{i}" for i in range(1, 7)))  # seqs 1..6

    def replay(self, since: int) -> JoinResult:
        bob = self.member(f"bob{since}")
        return self.successResultOf(self.rooms.join(bob, "lobby", since))

    def test_newest_when_too_many(self) -> None:
        result = self.replay(0)
        self.assertEqual([m.content for m in result.replay], ["m4", "m5", "m6"])
        self.assertEqual((result.recovered, result.first_seq), (False, 4))

    def test_exactly_the_maximum(self) -> None:
        result = self.replay(3)
        self.assertEqual(([m.seq for m in result.replay], result.recovered), ([4, 5, 6], True))

    def test_holes_before_the_newest(self) -> None:
        """More seqs than the maximum, but the older ones were deleted:
        everything missed is there, recovered."""
        for message in self.messages[:3]:
            self.successResultOf(self.store.memory.delete_message(message.id))
        result = self.replay(0)
        self.assertEqual(([m.seq for m in result.replay], result.recovered), ([4, 5, 6], True))

    def test_too_many_arrive_while_reading(self) -> None:
        """The room moves on while the replay is read: still at most the
        maximum, the newest, not recovered."""
        self.store.gated.add("room_messages_after")
        bob = self.member("bob")
        d = self.rooms.join(bob, "lobby", 4)
        self.published("m7", "m8", "m9")
        self.store.release()
        self.store.release()
        result = self.successResultOf(d)
        self.assertEqual(([m.seq for m in result.replay], result.recovered), ([7, 8, 9], False))


class StoredMessageEventTests(DeliveryCase):
    """Edits and deletions ride on the seq of the message they change: never
    delivered before it, and taking no position of their own."""

    def grace(self) -> None:
        self.clock.advance(delivery.GAP_GRACE)

    def change(self, message: Message, kind: str = EDITED, text: str = "") -> Message:
        return Message(
            room="lobby",
            nickname=message.nickname,
            content=text,
            timestamp_ms=message.timestamp_ms,
            type=kind,
            id=message.id,
            seq=message.seq,
            edited_ms=1 if kind == EDITED else None,
        )

    def test_edit_after_its_message(self) -> None:
        """An edit of a delivered message goes out at once and moves nothing."""
        alice = self.joined("alice")
        [one] = self.published("one")
        self.deliver(self.change(one, text="uno"))
        self.published("two")
        self.assertEqual(self.seen(alice), ["one", "<edited>", "two"])
        self.assertEqual(self.rooms.position("lobby"), 2)

    def test_edit_overtakes_its_message(self) -> None:
        """An edit made on another instance arrives before its message: it
        is held, and follows the message when that arrives within the grace."""
        alice = self.joined("alice")
        [one] = self.stored("one")
        self.deliver(self.change(one, text="uno"))
        self.assertEqual(self.seen(alice), [])
        self.deliver(one)
        self.assertEqual(self.seen(alice), ["one", "<edited>"])
        self.grace()
        self.assertEqual(self.store.read_count("room_messages_after"), 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_edit_whose_message_is_lost(self) -> None:
        """The message never comes over the bus: after the grace it is read
        from the store (with its new text), then the edit follows."""
        alice = self.joined("alice")
        [one] = self.stored("one")
        self.successResultOf(self.store.memory.edit_message(one.id, "uno", None, "bob", 1))
        self.deliver(self.change(one, text="uno"))
        self.grace()
        self.assertEqual(self.seen(alice), ["uno", "<edited>"])
        self.assertEqual(self.rooms.position("lobby"), 1)
        self.assertEqual(self.metrics.messages_filled, 1)

    def test_deletion_overtakes_its_message(self) -> None:
        """A deletion ahead of its message waits for the fill, which finds a
        hole: the message is never shown, the deletion comes after."""
        alice = self.joined("alice")
        [one] = self.stored("one")
        self.successResultOf(self.store.memory.delete_message(one.id))
        self.deliver(self.change(one, DELETED))
        self.assertEqual(self.seen(alice), [])
        self.grace()
        self.assertEqual(self.seen(alice), ["<deleted>"])
        self.assertEqual(self.rooms.position("lobby"), 1)

    def test_edit_held_behind_a_gap(self) -> None:
        """An edit that arrives while a gap is held waits behind it in order."""
        alice = self.joined("alice")
        one, two = self.stored("one", "two")
        self.deliver(two, self.change(two, text="dos"))
        self.deliver(one)
        self.assertEqual(self.seen(alice), ["one", "two", "<edited>"])


class TopicDeliveryTests(DeliveryCase):
    """The room keeps the topic its delivered events lead to."""

    def topic(self, text: str, nickname: str = "bob", at: int = 5) -> Message:
        return Message(room="lobby", nickname=nickname, content=text, timestamp_ms=at, type=TOPIC)

    def test_topic_read_with_the_cursor_and_kept(self) -> None:
        """A room made here reads its stored topic; a topic event delivered
        later replaces it; a join reports the topic of that moment."""
        rooms = RoomHandler(
            self.connections,
            self.bus,
            self.clock,
            self.metrics,
            TokenBucketLimiter(self.clock, 0, 1),
            self.store.memory,
            topics=self.store.memory,
        )
        self.bus.attach(rooms)
        self.successResultOf(
            self.store.memory.set_room_topic("lobby", RoomTopic("old topic", "carol", 1))
        )
        alice = self.member("alice")
        first = self.successResultOf(rooms.join(alice, "lobby"))
        self.assertEqual(first.topic, RoomTopic("old topic", "carol", 1))
        rooms.deliver("lobby", self.topic("new topic"))
        bob = self.member("bob")
        self.assertEqual(
            self.successResultOf(rooms.join(bob, "lobby")).topic, RoomTopic("new topic", "bob", 5)
        )
        rooms.deliver("lobby", self.topic(""))
        carol = self.member("carol")
        self.assertIsNone(self.successResultOf(rooms.join(carol, "lobby")).topic)
        self.assertIn(TOPIC, [m.type for m in alice.received])
