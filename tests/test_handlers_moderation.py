"""Tests for parkchat.handlers.moderation.ModerationHandler."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from parkchat.errors import Banned, UnknownRecipient
from parkchat.events import BanEvent, KickEvent, UnbanEvent
from parkchat.handlers.connections import ConnectionHandler
from parkchat.handlers.moderation import ModerationHandler
from parkchat.handlers.rooms import RoomHandler
from parkchat.limits import Limits, TokenBucketLimiter
from parkchat.metrics import ServiceMetrics
from parkchat.model import Ban, DisconnectReason
from parkchat.store.memory import MemoryStore
from tests.helpers import FakeParticipant, RecordingBus

START = 1_757_345_400.0


class ModerationHandlerTests(TestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(START)
        self.store = MemoryStore()
        self.bus = RecordingBus(loop_back=True)
        self.connections = ConnectionHandler(self.bus, Limits())
        self.rooms = RoomHandler(
            self.connections,
            self.bus,
            self.clock,
            ServiceMetrics(),
            TokenBucketLimiter(self.clock, 0, 1),
            self.store,
        )
        self.bus.attach(self.rooms)
        self.moderation = ModerationHandler(
            self.store, self.store, self.rooms, self.bus, self.clock, instance_id="i1"
        )
        self.bob = self.successResultOf(self.store.create_user("bob", b"h", 0))

    def wait(self, coroutine: Any) -> Any:
        return self.successResultOf(Deferred.fromCoroutine(coroutine))

    def connect(self, nickname: str, **kwargs: Any) -> FakeParticipant:
        participant = FakeParticipant(nickname, **kwargs)
        self.connections.register(participant)
        return participant

    def test_ban(self) -> None:
        """A ban is stored, closes the account's connections here (not a
        guest's of the same name), refuses it from now on and is announced."""
        bob = self.connect("bob", user_id=self.bob.id)
        guest = self.connect("Bob")
        ban = self.wait(self.moderation.ban("BOB", "spam"))
        self.assertEqual(ban, Ban(self.bob.id, "bob", "spam", int(START * 1000), None))
        self.assertEqual(bob.disconnected, [DisconnectReason.BANNED])
        self.assertEqual(guest.disconnected, [])
        with self.assertRaises(Banned) as refused:
            self.moderation.check_not_banned(self.bob.id)
        self.assertIn("spam", str(refused.exception))
        self.assertEqual(self.successResultOf(self.store.get_ban(self.bob.id)), ban)
        self.assertEqual(self.bus.controls, [BanEvent.of(ban, "i1")])
        self.assertEqual(self.moderation.bans(), [ban])

    def test_ban_for_a_while(self) -> None:
        self.wait(self.moderation.ban("bob", "", 60))
        self.assertRaises(Banned, self.moderation.check_not_banned, self.bob.id)
        self.clock.advance(60)
        self.moderation.check_not_banned(self.bob.id)
        self.assertEqual(self.moderation.bans(), [])

    def test_unban(self) -> None:
        self.wait(self.moderation.ban("bob"))
        self.assertTrue(self.wait(self.moderation.unban("bob")))
        self.moderation.check_not_banned(self.bob.id)
        self.assertEqual(self.bus.controls[-1], UnbanEvent(user_id=self.bob.id, instance="i1"))
        self.assertFalse(self.wait(self.moderation.unban("bob")))

    def test_unknown_account(self) -> None:
        for coroutine in (self.moderation.ban("nobody"), self.moderation.unban("nobody")):
            self.failureResultOf(Deferred.fromCoroutine(coroutine), UnknownRecipient)
        self.assertEqual(self.bus.controls, [])

    def test_load_at_start(self) -> None:
        self.successResultOf(self.store.set_ban(self.bob.id, "old", 0, None))
        self.moderation.load()
        self.assertRaises(Banned, self.moderation.check_not_banned, self.bob.id)

    def test_reload_after_an_outage(self) -> None:
        """The stored list replaces the one in memory: bans made elsewhere
        close connections here, bans lifted elsewhere are lifted."""
        carl = self.successResultOf(self.store.create_user("carl", b"h", 0))
        self.wait(self.moderation.ban("carl"))
        self.successResultOf(self.store.remove_ban(carl.id))
        bob = self.connect("bob", user_id=self.bob.id)
        self.successResultOf(self.store.set_ban(self.bob.id, "spam", 0, None))
        self.wait(self.moderation.reload())
        self.assertEqual(bob.disconnected, [DisconnectReason.BANNED])
        self.moderation.check_not_banned(carl.id)

    def test_kick(self) -> None:
        bob = self.connect("bob")
        self.rooms.join(bob, "lobby")
        self.assertEqual(self.moderation.kick("bob", "lobby", "behave"), 1)
        self.assertEqual(bob.removals, [("lobby", "behave")])
        self.assertEqual(
            self.bus.controls,
            [KickEvent(nickname="bob", room="lobby", reason="behave", instance="i1")],
        )

    def test_events_from_elsewhere(self) -> None:
        bob = self.connect("bob", user_id=self.bob.id)
        self.rooms.join(bob, "lobby")
        self.moderation.apply_kick(KickEvent(nickname="bob", room="lobby", instance="i2"))
        self.assertEqual(bob.removals, [("lobby", "kicked by a moderator")])
        ban = Ban(self.bob.id, "bob", "", 0, None)
        self.moderation.apply_ban(BanEvent.of(ban, "i2"))
        self.assertEqual(bob.disconnected, [DisconnectReason.BANNED])
        self.assertRaises(Banned, self.moderation.check_not_banned, self.bob.id)
        self.moderation.apply_unban(UnbanEvent(user_id=self.bob.id, instance="i2"))
        self.moderation.check_not_banned(self.bob.id)
        self.assertEqual(self.bus.controls, [])  # nothing is announced again
