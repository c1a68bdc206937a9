"""Tests for parkchat.handlers.rooms.RoomHandler."""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from parkchat.errors import InvalidRequest, NotInRoom, RateLimited
from parkchat.handlers.connections import ConnectionHandler
from parkchat.handlers.rooms import RoomHandler
from parkchat.limits import Limits, TokenBucketLimiter
from parkchat.metrics import ServiceMetrics
from parkchat.model import (
    CHAT,
    CONNECTION_CLOSED,
    JOINED,
    KICK,
    LEFT,
    MAX_REASON_LENGTH,
    PART,
    QUIT,
    QUIT_REASONS,
    SYSTEM,
    Departure,
    DisconnectReason,
    Message,
)
from parkchat.store.memory import MemoryStore
from tests.helpers import FakeParticipant, RecordingBus


def chat(id: int, room: str = "lobby") -> Message:
    return Message(id=id, room=room, nickname="bob", content=f"m{id}", timestamp_ms=id)


class RoomHandlerCase(TestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.bus = RecordingBus(loop_back=True)
        self.metrics = ServiceMetrics()
        self.rate = TokenBucketLimiter(self.clock, 1, 2, on_limited=self.metrics.rate_limit_hit)
        self.connections = ConnectionHandler(self.bus, Limits())
        self.store = MemoryStore()
        self.rooms = RoomHandler(
            self.connections,
            self.bus,
            self.clock,
            self.metrics,
            self.rate,
            self.store,
        )
        self.bus.attach(self.rooms)  # room events come straight back

    def connect(self, nickname: str, **kwargs: Any) -> FakeParticipant:
        participant = FakeParticipant(nickname, **kwargs)
        self.connections.register(participant)
        return participant

    def joined(self, nickname: str, room: str = "lobby", **kwargs: Any) -> FakeParticipant:
        participant = self.connect(nickname, **kwargs)
        self.rooms.join(participant, room)
        return participant

    def notices(self, participant: FakeParticipant) -> list[tuple[str | None, str]]:
        return [(m.event, m.nickname) for m in participant.received if m.type == SYSTEM]


class MembershipTests(RoomHandlerCase):
    def test_join_and_leave(self) -> None:
        """A join is published to the room (the joiner hears it too); a leave
        to those who stay. The bus is subscribed while the room exists here."""
        alice = self.joined("alice")
        bob = self.joined("bob")
        self.assertEqual(self.notices(alice), [(JOINED, "alice"), (JOINED, "bob")])
        self.rooms.leave(bob, "lobby")
        self.assertEqual(self.notices(alice)[-1], (LEFT, "bob"))
        self.assertEqual(self.notices(bob), [(JOINED, "bob")])
        self.assertEqual(self.rooms.rooms_of(bob), frozenset())
        self.rooms.leave(alice, "lobby")
        self.assertEqual(self.bus.subscriptions, [("subscribe", "lobby"), ("unsubscribe", "lobby")])
        self.assertEqual(self.rooms.room_names(), [])

    def test_join_needs_registration(self) -> None:
        self.assertRaises(InvalidRequest, self.rooms.join, FakeParticipant("x"), "lobby")
        self.assertEqual(self.rooms.room_count, 0)

    def test_join_twice(self) -> None:
        """A second join of the same room changes nothing and announces
        nothing; it answers the room's position."""
        alice = self.joined("alice")
        result = self.successResultOf(self.rooms.join(alice, "lobby"))
        self.assertEqual((result.seq, result.replay), (0, []))
        self.assertEqual(self.rooms.local_members("lobby"), ["alice"])
        self.assertEqual(len(self.bus.published), 1)

    def test_leave_not_joined(self) -> None:
        alice = self.joined("alice")
        self.assertRaises(NotInRoom, self.rooms.leave, alice, "elsewhere")
        self.assertRaises(NotInRoom, self.rooms.leave, self.connect("bob"), "lobby")

    def test_disconnect_leaves_every_room(self) -> None:
        alice = self.joined("alice", "one")
        self.rooms.join(alice, "two")
        watcher = self.joined("watcher", "two")
        self.rooms.disconnect(alice)
        self.assertEqual(self.notices(watcher)[-1], (LEFT, "alice"))
        self.assertEqual(self.rooms.room_names(), ["two"])
        self.assertIsNone(self.connections.connection_id(alice))
        self.rooms.disconnect(alice)  # again: nothing
        self.assertEqual(len(self.notices(watcher)), 2)

    def test_force_out(self) -> None:
        """The connection is told why and forgotten now, even if telling it fails."""
        alice = self.joined("alice")
        self.rooms.force_out(alice, DisconnectReason.BANNED)
        self.assertEqual(alice.disconnected, [DisconnectReason.BANNED])
        self.assertEqual(self.connections.count, 0)
        broken = self.joined("broken")
        broken.disconnect = lambda reason: 1 / 0  # type: ignore[method-assign]
        self.rooms.force_out(broken, DisconnectReason.BANNED)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.assertEqual(self.connections.count, 0)

    def test_close_account(self) -> None:
        """Only the account's connections close (not a guest of the same
        name); with a token id, only those that used that token."""
        phone = self.joined("bob", user_id=2)
        phone.token_id = "t1"  # type: ignore[attr-defined]
        laptop = self.joined("bob", user_id=2)
        guest = self.joined("Bob")
        self.rooms.close_account(2, "bob", DisconnectReason.TOKEN_REVOKED, "t1")
        self.assertEqual(phone.disconnected, [DisconnectReason.TOKEN_REVOKED])
        self.assertEqual(laptop.disconnected, [])
        self.rooms.close_account(2, "BOB", DisconnectReason.LOGGED_OUT)
        self.assertEqual(laptop.disconnected, [DisconnectReason.LOGGED_OUT])
        self.assertEqual(guest.disconnected, [])

    def test_kick_here(self) -> None:
        bob = self.joined("bob")
        also_bob = self.joined("BOB")
        alice = self.joined("alice")
        self.assertEqual(self.rooms.kick_here("bob", "lobby", ""), 2)
        self.assertEqual(bob.removals, [("lobby", "kicked by a moderator")])
        self.assertEqual(also_bob.removals, [("lobby", "kicked by a moderator")])
        self.assertEqual(self.rooms.local_members("lobby"), ["alice"])
        self.assertEqual(self.notices(alice)[-2:], [(LEFT, "bob"), (LEFT, "BOB")])
        self.assertEqual(self.rooms.kick_here("bob", "lobby", "again"), 0)

    def test_departures(self) -> None:
        """Every leave says how and why: PART with the member's reason
        (control characters blanked, cut at MAX_REASON_LENGTH), QUIT when
        the connection went away (``QUIT_REASONS`` when the server closed
        it), PART when the account is still online on another connection,
        KICK with the moderator's reason."""
        watcher = self.joined("watcher")
        ana, bob, cyd = (self.joined(name) for name in ("ana", "bob", "cyd"))
        self.joined("dee")
        self.rooms.leave(ana, "lobby", "off\nnow" + "x" * 400)
        self.rooms.disconnect(bob, "Ping timeout")
        self.rooms.force_out(cyd, DisconnectReason.REPLACED)
        self.rooms.kick_here("dee", "lobby", "")
        second = self.connect("eve", user_id=5)
        first = self.joined("eve", user_id=5)
        self.rooms.disconnect(first)
        self.rooms.disconnect(second)  # in no room: nothing to announce
        departures = [
            (m.nickname, m.departure)
            for m in watcher.received
            if m.type == SYSTEM and m.event == LEFT
        ]
        self.assertEqual(
            departures,
            [
                ("ana", Departure(PART, ("off now" + "x" * 400)[:MAX_REASON_LENGTH])),
                ("bob", Departure(QUIT, "Ping timeout")),
                ("cyd", Departure(QUIT, QUIT_REASONS[DisconnectReason.REPLACED])),
                ("dee", Departure(KICK, "kicked by a moderator")),
                ("eve", Departure(PART, CONNECTION_CLOSED)),
            ],
        )

    def test_stopping_announces_no_leaves(self) -> None:
        alice = self.joined("alice")
        bob = self.joined("bob")
        self.rooms.stop()
        self.rooms.disconnect(bob)
        self.assertEqual(self.notices(alice)[-1], (JOINED, "bob"))
        self.rooms.start()
        self.rooms.disconnect(alice)
        self.assertEqual(self.bus.published[-1][1].event, LEFT)


class PresenceTests(RoomHandlerCase):
    def test_members_here_and_elsewhere(self) -> None:
        self.joined("alice")
        self.joined("alice")
        self.joined("bob")
        self.assertEqual(self.rooms.member_count("lobby"), 2)
        self.bus.remote["rooms"] = {"lobby": ["carol", "bob"], "den": ["dan"]}
        self.assertEqual(self.rooms.members("lobby"), ["alice", "bob", "carol"])
        self.assertEqual(self.rooms.member_count("lobby"), 3)
        self.assertEqual(self.rooms.room_sizes(), {"lobby": 3})
        self.assertTrue(self.rooms.name_in_room("lobby", "ALICE"))
        self.assertFalse(self.rooms.name_in_room("lobby", "carol"))  # not here

    def test_directory(self) -> None:
        """Busiest first, then by name, on every instance; it spends a rate token."""
        asker = self.joined("asker", "quiet")
        self.joined("b", "busy")
        self.joined("c", "busy")
        self.bus.remote["rooms"] = {"elsewhere": ["x", "y", "z"], "empty": []}
        self.assertEqual(
            self.rooms.active_rooms(asker),
            [("elsewhere", 3), ("busy", 2), ("quiet", 1)],
        )
        self.assertEqual(self.rooms.active_rooms(asker, limit=1), [("elsewhere", 3)])
        self.assertRaises(RateLimited, self.rooms.active_rooms, asker)
        self.assertEqual(self.metrics.rate_limited, 1)

    def test_snapshot(self) -> None:
        self.joined("bob", user_id=2)
        self.joined("guest", "den")
        self.assertEqual(
            self.rooms.presence_snapshot(),
            {
                "users": {"bob": [2, "bob"]},
                "rooms": {"lobby": ["bob"], "den": ["guest"]},
                "connections": {"bob": 1},
            },
        )


class DeliveryTests(RoomHandlerCase):
    def test_broadcast_and_count(self) -> None:
        alice = self.joined("alice")
        bob = self.joined("bob")
        before = self.metrics.deliveries
        self.rooms.deliver("lobby", chat(1))
        self.assertEqual([m.id for m in alice.received + bob.received if m.type == CHAT], [1, 1])
        self.assertEqual(self.metrics.deliveries - before, 2)
        self.rooms.deliver("nowhere", chat(2))  # no such room here: nothing

    def test_failed_member_is_forced_out(self) -> None:
        alice = self.joined("alice")
        broken = self.joined("broken")
        broken.fail_sends = True
        self.rooms.deliver("lobby", chat(1))
        self.flushLoggedErrors(ConnectionError)
        self.assertEqual(broken.disconnected, [DisconnectReason.DELIVERY_FAILED])
        self.assertEqual(self.rooms.local_members("lobby"), ["alice"])
        self.assertEqual(self.notices(alice)[-1], (LEFT, "broken"))
