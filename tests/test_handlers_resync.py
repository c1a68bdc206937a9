"""Tests for parkchat.handlers.resync.ResyncHandler."""

from __future__ import annotations

from twisted.internet.defer import Deferred, fail
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from parkchat.auth import VerifiedCredentials
from parkchat.events import ResyncEvent
from parkchat.handlers.connections import ConnectionHandler
from parkchat.handlers.moderation import ModerationHandler
from parkchat.handlers.resync import ResyncHandler
from parkchat.handlers.rooms import RoomHandler
from parkchat.handlers.sessions import SessionHandler
from parkchat.limits import Limits, TokenBucketLimiter
from parkchat.metrics import ServiceMetrics
from parkchat.model import CHAT, TOPIC, DisconnectReason, Message, RoomTopic
from parkchat.store.memory import MemoryStore
from parkchat.tokens import Revocations, TokenClaims
from tests.helpers import FakeParticipant, RecordingBus

START = 1_757_345_400


class ResyncHandlerTests(TestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(START)
        self.store = MemoryStore()
        self.bus = RecordingBus(loop_back=True)
        limits = Limits()
        self.connections = ConnectionHandler(self.bus, limits)
        self.rooms = RoomHandler(
            self.connections,
            self.bus,
            self.clock,
            ServiceMetrics(),
            TokenBucketLimiter(self.clock, 0, 1),
            self.store,
        )
        self.bus.attach(self.rooms)
        moderation = ModerationHandler(self.store, self.store, self.rooms, self.bus, self.clock)
        self.revocations = Revocations()
        sessions = SessionHandler(
            self.store,
            self.store,
            self.connections,
            self.rooms,
            self.bus,
            self.clock,
            self.revocations,
            VerifiedCredentials(self.clock),
        )
        self.resync = ResyncHandler(
            self.rooms,
            moderation,
            sessions,
            self.bus,
            self.clock,
            instance_id="i1",
            position_check=10.0,
        )
        self.alice = FakeParticipant("alice")
        self.connections.register(self.alice)
        self.rooms.join(self.alice, "lobby")

    def stored(self, *texts: str) -> list[Message]:
        """Messages stored (by any instance) that were not delivered here."""
        batch = [Message(room="lobby", nickname="bob", content=t, timestamp_ms=0) for t in texts]
        positions = self.successResultOf(self.store.insert_messages(batch))
        return [m.with_ids(i, seq) for m, (i, seq) in zip(batch, positions, strict=True)]

    def delivered(self, *texts: str) -> None:
        for message in self.stored(*texts):
            self.rooms.deliver("lobby", message)

    def chats(self) -> list[str]:
        return [m.content for m in self.alice.received if m.type == CHAT]

    def test_recovery(self) -> None:
        """The bus is back: the others are asked to resync, and this
        instance catches up on messages, bans and revocations."""
        self.delivered("seen")
        self.stored("missed")
        bob = self.successResultOf(self.store.create_user("bob", b"h", 0))
        bobs = FakeParticipant("bob", user_id=bob.id)
        self.connections.register(bobs)
        self.successResultOf(self.store.set_ban(bob.id, "", 0, None))
        self.successResultOf(self.store.revoke_token("t1", START + 60))
        self.resync.bus_recovered()
        self.assertEqual(self.bus.controls, [ResyncEvent(instance="i1")])
        self.assertEqual(self.chats(), ["seen", "missed"])
        self.assertEqual(bobs.disconnected, [DisconnectReason.BANNED])
        self.assertTrue(self.revocations.revoked(TokenClaims("x", 1, START + 60, token_id="t1")))

    def test_topic_changed_during_an_outage(self) -> None:
        """A topic set elsewhere while the bus was down (its event lost) is
        taken from the store on recovery and shown to the members; an
        unchanged topic sends nothing."""
        rooms = RoomHandler(
            self.connections,
            self.bus,
            self.clock,
            ServiceMetrics(),
            TokenBucketLimiter(self.clock, 0, 1),
            self.store,
            topics=self.store,
        )
        self.bus.attach(rooms)
        resync = ResyncHandler(
            rooms,
            ModerationHandler(self.store, self.store, rooms, self.bus, self.clock),
            SessionHandler(
                self.store,
                self.store,
                self.connections,
                rooms,
                self.bus,
                self.clock,
                self.revocations,
                VerifiedCredentials(self.clock),
            ),
            self.bus,
            self.clock,
            instance_id="i1",
        )
        carol = FakeParticipant("carol")
        self.connections.register(carol)
        self.successResultOf(rooms.join(carol, "lobby"))
        self.successResultOf(
            self.store.set_room_topic("lobby", RoomTopic("set elsewhere", "dan", 7))
        )
        resync.resync()
        [event] = [m for m in carol.received if m.type == TOPIC]
        self.assertEqual((event.content, event.nickname), ("set elsewhere", "dan"))
        resync.resync()
        self.assertEqual(len([m for m in carol.received if m.type == TOPIC]), 1)
        bob = FakeParticipant("bob")
        self.connections.register(bob)
        self.assertEqual(
            self.successResultOf(rooms.join(bob, "lobby")).topic,
            RoomTopic("set elsewhere", "dan", 7),
        )

    def test_asked_by_another_instance(self) -> None:
        self.delivered("seen")
        self.stored("missed")
        self.resync.apply(ResyncEvent(instance="i2"))
        self.assertEqual(self.chats(), ["seen", "missed"])
        self.assertEqual(self.bus.controls, [])

    def test_one_pass_at_a_time(self) -> None:
        """Requests during a pass make one more pass, not one each."""
        self.delivered("seen")
        gate: Deferred[None] = Deferred()
        real = self.store.list_bans
        reads: list[None] = []

        def slow_bans() -> Deferred[list[object]]:
            reads.append(None)
            return gate.addCallback(lambda _: self.successResultOf(real()))

        self.store.list_bans = slow_bans  # type: ignore[method-assign,assignment]
        for _ in range(3):
            self.resync.resync()
        self.assertEqual(len(reads), 1)
        self.store.list_bans = real  # type: ignore[method-assign]
        self.stored("missed")
        gate.callback(None)
        self.assertEqual(self.chats(), ["seen", "missed"])

    def test_stopped(self) -> None:
        self.delivered("seen")
        self.stored("missed")
        self.resync.stop()
        self.resync.resync()
        self.assertEqual(self.chats(), ["seen"])
        self.resync.start()
        self.resync.resync()
        self.assertEqual(self.chats(), ["seen", "missed"])

    def test_periodic_check(self) -> None:
        """Every period the rooms' positions are read; a room still behind
        the position read one period earlier is filled (a message just
        committed may not have been published yet: it is left to the bus
        for one period)."""
        self.resync.start()
        self.delivered("seen")
        self.stored("lost")
        self.clock.advance(10)
        self.assertEqual(self.chats(), ["seen"])
        self.clock.advance(10)
        self.assertEqual(self.chats(), ["seen", "lost"])
        self.delivered("next")  # in order: no fill needed
        self.clock.pump([10, 10])
        self.assertEqual(self.chats(), ["seen", "lost", "next"])
        self.resync.stop()
        self.stored("after the stop")
        self.clock.advance(30)
        self.assertEqual(self.chats(), ["seen", "lost", "next"])

    def test_periodic_check_failure(self) -> None:
        """A failed read is logged; the next period tries again."""
        self.resync.start()
        self.delivered("seen")
        self.stored("lost")
        real = self.store.room_positions
        self.store.room_positions = lambda rooms: fail(ConnectionError("down"))  # type: ignore[method-assign]
        self.clock.pump([10, 10])
        self.assertEqual(len(self.flushLoggedErrors(ConnectionError)), 2)
        self.store.room_positions = real  # type: ignore[method-assign]
        self.clock.pump([10, 10])
        self.assertEqual(self.chats(), ["seen", "lost"])
