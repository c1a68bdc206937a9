"""Tests for parkchat.service.ChatService over the in-memory store.

Group commit schedules with ``clock.callLater(0, ...)``: ``clock.advance(0)``
is "the next reactor turn", when queued messages are stored and delivered.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from twisted.cred.credentials import UsernamePassword
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from zope.interface.verify import verifyObject

from parkchat.auth import IChatUser
from parkchat.bus.local import LocalBus
from parkchat.errors import (
    AuthenticationFailed,
    Banned,
    ContentTooLong,
    InvalidContent,
    InvalidRequest,
    InvalidRoom,
    NotInRoom,
    RateLimited,
    ServiceBusy,
    StorageFailed,
    TooManyConnections,
)
from parkchat.events import ControlEvent, DirectMessageEvent, KickEvent, ResyncEvent
from parkchat.handlers.delivery import GAP_GRACE
from parkchat.interfaces import IBus, IBusHandler, IChatService, IParticipant
from parkchat.limits import Limits
from parkchat.model import CHAT, DELETED, SYSTEM, DisconnectReason, Message
from parkchat.store.memory import MemoryStore
from parkchat.tap import build_chat_service
from parkchat.tokens import TokenAuthority, TokenClaims
from tests.helpers import (
    FakeParticipant,
    RecordingBus,
    RecordingEncoder,
    make_service,
    sync_hasher,
)
from tests.test_events import SAMPLES


class ServiceTestCase(TestCase):
    """Shared set-up: a started service, its memory store and clock."""

    limits: Limits | None = None

    def setUp(self) -> None:
        self.service, self.store, self.clock = make_service(limits=self.limits)
        self.encoder = RecordingEncoder()

    def connect(self, nickname: str, **kwargs: Any) -> FakeParticipant:
        participant = FakeParticipant(nickname, self.encoder, **kwargs)
        self.service.connect(participant)
        return participant

    def joined(self, nickname: str, room: str = "lobby", **kwargs: Any) -> FakeParticipant:
        participant = self.connect(nickname, **kwargs)
        self.service.join(participant, room)
        return participant

    def post(self, participant: FakeParticipant, content: str, room: str = "lobby") -> Message:
        """Post and commit; return the stored message."""
        d = self.service.post(participant, room, content)
        self.clock.advance(0)
        return self.successResultOf(d)

    def chats(self, participant: FakeParticipant) -> list[str]:
        return [m.content for m in participant.received if m.type == CHAT]

    def stored(self, room: str = "lobby") -> list[Message]:
        return self.successResultOf(self.store.recent_messages(room, 1000))


class InterfaceTests(TestCase):
    """The fakes and local implementations provide the interfaces they claim."""

    def test_fake_participant(self) -> None:
        """FakeParticipant is a faithful IParticipant."""
        self.assertTrue(verifyObject(IParticipant, FakeParticipant("alice")))

    def test_chat_service(self) -> None:
        """ChatService provides every verb of IChatService, the one
        interface the surfaces depend on."""
        service, _, _ = make_service()
        self.assertTrue(verifyObject(IChatService, service))

    def test_local_bus(self) -> None:
        """LocalBus provides IBus."""
        self.assertTrue(verifyObject(IBus, LocalBus()))

    def test_unattached_local_bus(self) -> None:
        """Publishing on a LocalBus before attach is a programming error."""
        self.assertRaises(RuntimeError, LocalBus().publish, "lobby", object())

    def test_local_bus_passes_events_through(self) -> None:
        """The in-process bus hands the event object itself over: nothing is
        encoded when nothing crosses a process."""
        received: list[object] = []
        bus = LocalBus()
        bus.attach(type("Handler", (), {"control": lambda self, e: received.append(e)})())
        event = KickEvent(nickname="bob", room="lobby")
        bus.publish_control(event)
        self.assertIs(received[0], event)

    def test_bus_handler(self) -> None:
        """ChatService is what the bus hands events to; the test bus is an IBus."""
        service, _, _ = make_service()
        self.assertTrue(verifyObject(IBusHandler, service))
        self.assertTrue(verifyObject(IBus, RecordingBus()))


class ControlDispatchTests(TestCase):
    """Control events from the bus reach the handler of their type."""

    def setUp(self) -> None:
        self.service, self.store, _ = make_service(instance_id="here")
        self.bob = self.successResultOf(self.service.register("bob", "bob-secret"))
        self.connection = FakeParticipant("bob", user_id=self.bob.id)
        self.service.connect(self.connection)
        self.service.join(self.connection, "lobby")

    def test_every_kind_is_dispatched(self) -> None:
        """No registered kind is left without a handler."""
        for event, _ in SAMPLES:
            with self.subTest(kind=event.KIND):
                self.service.control(dataclasses.replace(event, instance="elsewhere"))

    def test_own_events_were_applied_already(self) -> None:
        """An instance's own events come back over a shared bus; all but
        direct messages were applied when they were made."""
        self.service.control(KickEvent(nickname="bob", room="lobby", instance="here"))
        self.assertEqual(self.connection.removals, [])
        self.service.control(KickEvent(nickname="bob", room="lobby", instance="there"))
        self.assertEqual(self.connection.removals, [("lobby", "kicked by a moderator")])
        dm = DirectMessageEvent(
            id=1,
            from_user_id=self.bob.id,
            from_nickname="bob",
            to_user_id=self.bob.id,
            to_nickname="bob",
            content="note to self",
            timestamp_ms=0,
            instance="here",
        )
        self.service.control(dm)
        self.assertEqual(self.connection.directs, [dm.message])


class JoinLeaveTests(ServiceTestCase):
    """Room membership and the join/leave notices."""

    def test_join_notice_to_everyone_including_joiner(self) -> None:
        """Joining sends '<nick> has joined the room' to every member, joiner included."""
        alice = self.joined("alice")
        self.assertEqual(alice.contents(), ["alice has joined the room"])
        bob = self.joined("bob")
        self.assertEqual(alice.contents(), ["alice has joined the room", "bob has joined the room"])
        self.assertEqual(bob.contents(), ["bob has joined the room"])
        notice = bob.received[0]
        self.assertEqual(notice.type, SYSTEM)
        self.assertEqual(notice.id, 0)
        self.assertEqual(notice.room, "lobby")
        self.assertEqual(notice.nickname, "bob")

    def test_join_gives_the_position(self) -> None:
        """join fires with the room's position at the join; without a
        resume the participant is in the room at once."""
        alice = self.connect("alice")
        result = self.successResultOf(self.service.join(alice, "lobby"))
        self.assertEqual((result.seq, result.replay, result.resumed), (0, [], False))
        self.assertEqual(self.service.rooms_of(alice), frozenset({"lobby"}))
        posted = self.service.post(alice, "lobby", "hi")
        self.clock.advance(0)  # the group commit
        self.successResultOf(posted)
        bob = self.connect("bob")
        self.assertEqual(self.successResultOf(self.service.join(bob, "lobby")).seq, 1)

    def test_join_twice_is_idempotent(self) -> None:
        """Joining a room already joined announces nothing new."""
        alice = self.joined("alice")
        bob = self.joined("bob")
        self.service.join(alice, "lobby")
        self.assertEqual(len(bob.received), 1)
        self.assertEqual(self.service.members("lobby"), ["alice", "bob"])

    def test_join_requires_connect(self) -> None:
        """A participant that was never connected cannot join."""
        stranger = FakeParticipant("stranger")
        self.assertRaises(InvalidRequest, self.service.join, stranger, "lobby")
        self.assertEqual(self.service.room_names(), [])

    def test_join_invalid_room(self) -> None:
        """Bad room names raise InvalidRoom and create nothing."""
        alice = self.connect("alice")
        for name in ["", " lobby", "x" * 65, "a\nb"]:
            self.assertRaises(InvalidRoom, self.service.join, alice, name)
        self.assertEqual(self.service.room_names(), [])
        self.assertEqual(alice.received, [])

    def test_leave_tells_the_rest_only(self) -> None:
        """'<nick> has left the room' goes to those still there, not the leaver."""
        alice = self.joined("alice")
        bob = self.joined("bob")
        self.service.leave(bob, "lobby")
        self.assertEqual(alice.contents()[-1], "bob has left the room")
        self.assertEqual(alice.received[-1].type, SYSTEM)
        self.assertEqual(bob.contents(), ["bob has joined the room"])
        self.assertEqual(self.service.members("lobby"), ["alice"])
        self.assertEqual(self.service.rooms_of(bob), frozenset())

    def test_leave_not_joined(self) -> None:
        """Leaving a room not joined raises NotInRoom."""
        alice = self.joined("alice")
        bob = self.connect("bob")
        self.assertRaises(NotInRoom, self.service.leave, bob, "lobby")
        self.assertRaises(NotInRoom, self.service.leave, alice, "elsewhere")
        self.assertRaises(NotInRoom, self.service.leave, FakeParticipant("x"), "lobby")

    def test_rooms_created_and_dropped(self) -> None:
        """A room exists from its first join until its last member leaves."""
        self.assertEqual(self.service.room_names(), [])
        alice = self.joined("alice", "b-room")
        bob = self.joined("bob", "a-room")
        self.assertEqual(self.service.room_names(), ["a-room", "b-room"])
        self.service.leave(alice, "b-room")
        self.assertEqual(self.service.room_names(), ["a-room"])
        self.service.disconnect(bob)
        self.assertEqual(self.service.room_names(), [])
        self.assertEqual(self.service.members("a-room"), [])

    def test_bus_subscriptions_follow_rooms(self) -> None:
        """The bus is subscribed on a room's first join and unsubscribed when it empties."""
        calls: list[tuple[str, str]] = []

        class RecordingBus(LocalBus):
            def subscribe(self, room: str) -> None:
                calls.append(("subscribe", room))

            def unsubscribe(self, room: str) -> None:
                calls.append(("unsubscribe", room))

        service = build_chat_service(MemoryStore(), sync_hasher(), Clock(), bus=RecordingBus())
        alice, bob = FakeParticipant("alice"), FakeParticipant("bob")
        for p in (alice, bob):
            service.connect(p)
            service.join(p, "lobby")
        service.leave(alice, "lobby")
        self.assertEqual(calls, [("subscribe", "lobby")])
        service.disconnect(bob)
        self.assertEqual(calls, [("subscribe", "lobby"), ("unsubscribe", "lobby")])

    def test_room_isolation(self) -> None:
        """Joins, leaves and messages in one room are not seen in another."""
        alice = self.joined("alice", "one")
        bob = self.joined("bob", "two")
        carol = self.joined("carol", "two")
        self.post(alice, "only in one", "one")
        self.service.leave(carol, "two")
        self.assertEqual(alice.contents(), ["alice has joined the room", "only in one"])
        self.assertNotIn("only in one", bob.contents())
        self.assertEqual(self.service.members("one"), ["alice"])

    def test_several_rooms_per_connection(self) -> None:
        """One connection can be in several rooms; disconnect leaves them all."""
        alice = self.connect("alice")
        for room in ("one", "two"):
            self.service.join(alice, room)
        bob = self.joined("bob", "one")
        carol = self.joined("carol", "two")
        self.assertEqual(self.service.rooms_of(alice), frozenset({"one", "two"}))
        self.service.disconnect(alice)
        self.assertEqual(bob.contents()[-1], "alice has left the room")
        self.assertEqual(carol.contents()[-1], "alice has left the room")
        self.assertEqual(self.service.rooms_of(alice), frozenset())
        self.assertEqual(self.service.connection_count, 2)

    def test_disconnect_twice(self) -> None:
        """Disconnecting an unknown or already gone connection is harmless."""
        alice = self.joined("alice")
        self.service.disconnect(alice)
        self.service.disconnect(alice)
        self.service.disconnect(FakeParticipant("never"))
        self.assertEqual(self.service.connection_count, 0)

    def test_same_nickname_twice(self) -> None:
        """Two connections of one user are two members, listed once by name."""
        first = self.joined("alice")
        second = self.joined("alice")
        self.assertEqual(self.service.members("lobby"), ["alice"])
        self.post(first, "hi")
        self.assertEqual(self.chats(second), ["hi"])


class PostTests(ServiceTestCase):
    """Posting: validation, storage before delivery, ordering."""

    limits = Limits(max_content_length=20)

    def test_delivered_to_everyone_after_commit(self) -> None:
        """A message reaches every member, sender included, only once stored."""
        alice = self.joined("alice")
        bob = self.joined("bob")
        d = self.service.post(alice, "lobby", "hello")
        self.assertNoResult(d)
        self.assertEqual(self.chats(alice), [])
        self.assertEqual(self.chats(bob), [])
        self.assertEqual(self.stored(), [])
        self.clock.advance(0)
        stored = self.successResultOf(d)
        self.assertEqual(self.chats(alice), ["hello"])
        self.assertEqual(self.chats(bob), ["hello"])
        self.assertEqual(bob.received[-1], stored)
        self.assertEqual(self.stored(), [stored])

    def test_message_fields(self) -> None:
        """The delivered message has its id, room, sender, user id and time."""
        self.clock.advance(12.345)
        alice = self.joined("alice", user_id=7)
        stored = self.post(alice, "hello")
        self.assertGreater(stored.id, 0)
        self.assertEqual(stored.room, "lobby")
        self.assertEqual(stored.nickname, "alice")
        self.assertEqual(stored.user_id, 7)
        self.assertEqual(stored.type, CHAT)
        self.assertEqual(stored.timestamp_ms, 12345)

    def test_ids_increase(self) -> None:
        """Ids grow with each message, across rooms and batches, and every
        member sees them in id order."""
        alice = self.joined("alice")
        bob = self.joined("bob", "other")
        ds = [self.service.post(alice, "lobby", f"m{i}") for i in range(3)]
        ds.append(self.service.post(bob, "other", "x"))
        self.clock.advance(0)
        ds.append(self.service.post(alice, "lobby", "later"))
        self.clock.advance(0)
        ids = [self.successResultOf(d).id for d in ds]
        self.assertEqual(ids, sorted(set(ids)))
        delivered = [m.id for m in alice.received if m.type == CHAT]
        self.assertEqual(delivered, sorted(delivered))
        self.assertEqual(self.chats(alice), ["m0", "m1", "m2", "later"])

    def test_not_in_room(self) -> None:
        """Posting to a room not joined (existing or not) raises NotInRoom."""
        alice = self.connect("alice")
        self.joined("bob")
        self.assertRaises(NotInRoom, self.service.post, alice, "lobby", "hi")
        self.assertRaises(NotInRoom, self.service.post, alice, "nowhere", "hi")
        self.clock.advance(0)
        self.assertEqual(self.stored(), [])

    def test_not_in_room_after_leaving(self) -> None:
        """After leaving, posting to that room is refused."""
        alice = self.joined("alice")
        self.joined("bob")
        self.service.leave(alice, "lobby")
        self.assertRaises(NotInRoom, self.service.post, alice, "lobby", "hi")

    def test_invalid_content(self) -> None:
        """Blank, non-string and control-character content is refused, nothing stored."""
        alice = self.joined("alice")
        for content in ["", "   ", None, 42, "\x1b[2J"]:
            self.assertRaises(InvalidContent, self.service.post, alice, "lobby", content)
        self.clock.advance(0)
        self.assertEqual(self.stored(), [])
        self.assertEqual(self.chats(alice), [])

    def test_max_content_length(self) -> None:
        """Content longer than the configured maximum raises ContentTooLong."""
        alice = self.joined("alice")
        self.assertRaises(ContentTooLong, self.service.post, alice, "lobby", "x" * 21)
        self.assertEqual(self.post(alice, "x" * 20).content, "x" * 20)

    def test_invalid_content_costs_no_token(self) -> None:
        """A refused message does not spend the sender's rate limit."""
        service, _, clock = make_service(limits=Limits(rate_limit=1, rate_burst=1))
        alice = FakeParticipant("alice")
        service.connect(alice)
        service.join(alice, "lobby")
        self.assertRaises(InvalidContent, service.post, alice, "lobby", "")
        d = service.post(alice, "lobby", "hi")
        clock.advance(0)
        self.successResultOf(d)

    def test_storage_failure(self) -> None:
        """When the store refuses the batch the post fails with StorageFailed
        and nobody is told about the message."""
        alice = self.joined("alice")
        bob = self.joined("bob")
        self.store.fail_writes = RuntimeError("disk full")
        d = self.service.post(alice, "lobby", "lost")
        self.clock.advance(0)
        self.failureResultOf(d, StorageFailed)
        self.assertEqual(self.chats(alice), [])
        self.assertEqual(self.chats(bob), [])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        # The service carries on once the store recovers.
        self.store.fail_writes = None
        self.post(alice, "kept")
        self.assertEqual(self.chats(bob), ["kept"])

    def test_post_quietly(self) -> None:
        """The no-result post delivers like post, after the commit; its
        sender hears only of a storage failure; bad input still raises."""
        alice = self.joined("alice")
        bob = self.joined("bob")
        failures: list[Failure] = []
        self.service.post_quietly(alice, "lobby", "hello", failures.append)
        self.assertEqual(self.chats(bob), [])
        self.clock.advance(0)
        self.assertEqual((self.chats(alice), self.chats(bob)), (["hello"], ["hello"]))
        self.assertEqual([m.content for m in self.stored()], ["hello"])
        self.store.fail_writes = RuntimeError("disk full")
        self.service.post_quietly(alice, "lobby", "lost", failures.append)
        self.clock.advance(0)
        self.assertEqual([f.check(StorageFailed) for f in failures], [StorageFailed])
        self.assertEqual(self.chats(bob), ["hello"])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertRaises(
            NotInRoom, self.service.post_quietly, alice, "elsewhere", "x", failures.append
        )
        self.assertRaises(
            ContentTooLong, self.service.post_quietly, alice, "lobby", "x" * 21, failures.append
        )

    def test_sender_left_before_commit(self) -> None:
        """A message is still delivered to the room if its sender left meanwhile."""
        alice = self.joined("alice")
        bob = self.joined("bob")
        d = self.service.post(alice, "lobby", "bye")
        self.service.disconnect(alice)
        self.clock.advance(0)
        self.successResultOf(d)
        self.assertEqual(self.chats(bob), ["bye"])

    def test_failing_member_disconnected(self) -> None:
        """A member whose send raises is dropped from the service (and others
        told it left); everyone else still gets the message."""
        alice = self.joined("alice")
        broken = self.joined("broken")
        carol = self.joined("carol")
        broken.fail_sends = True
        self.post(alice, "hi")
        self.flushLoggedErrors(ConnectionError)
        for member in (alice, carol):
            self.assertEqual(self.chats(member), ["hi"])
            self.assertEqual(member.contents()[-1], "broken has left the room")
        self.assertEqual(self.service.members("lobby"), ["alice", "carol"])
        self.assertEqual(self.service.connection_count, 2)
        self.assertEqual(self.service.rooms_of(broken), frozenset())
        self.post(alice, "again")
        self.assertEqual(self.chats(carol), ["hi", "again"])

    def test_failing_joiner_disconnected(self) -> None:
        """A member that fails on its own join notice is dropped; others are fine."""
        alice = self.joined("alice")
        broken = FakeParticipant("broken", self.encoder)
        broken.fail_sends = True
        self.service.connect(broken)
        self.service.join(broken, "lobby")
        self.flushLoggedErrors(ConnectionError)
        self.assertEqual(self.service.members("lobby"), ["alice"])
        self.assertEqual(
            alice.contents(),
            ["alice has joined the room", "broken has joined the room", "broken has left the room"],
        )

    def test_two_failing_members(self) -> None:
        """Several broken members in one broadcast are all dropped."""
        alice = self.joined("alice")
        broken = [self.joined(f"broken{i}") for i in range(2)]
        for member in broken:
            member.fail_sends = True
        self.post(alice, "hi")
        self.flushLoggedErrors(ConnectionError)
        self.assertEqual(self.service.members("lobby"), ["alice"])
        self.assertEqual(self.service.connection_count, 1)


class RateLimitTests(ServiceTestCase):
    """Per-user token buckets shared by the user's connections."""

    limits = Limits(rate_limit=1, rate_burst=3)

    def test_burst_then_limited(self) -> None:
        """After ``burst`` messages the next raises RateLimited; nothing extra is stored."""
        alice = self.joined("alice")
        for i in range(3):
            self.service.post(alice, "lobby", f"m{i}")
        self.assertRaises(RateLimited, self.service.post, alice, "lobby", "too many")
        self.clock.advance(0)
        self.assertEqual([m.content for m in self.stored()], ["m0", "m1", "m2"])

    def test_shared_by_connections(self) -> None:
        """Two connections of the same user (any case) draw on one bucket."""
        first = self.joined("alice")
        second = self.joined("Alice", "other")
        for _ in range(3):
            self.service.post(first, "lobby", "hi")
        self.assertRaises(RateLimited, self.service.post, second, "other", "hi")

    def test_users_independent(self) -> None:
        """One user's spent bucket does not limit another."""
        alice = self.joined("alice")
        bob = self.joined("bob")
        for _ in range(3):
            self.service.post(alice, "lobby", "hi")
        self.service.post(bob, "lobby", "hi")

    def test_refill(self) -> None:
        """Tokens come back with clock time."""
        alice = self.joined("alice")
        for _ in range(3):
            self.service.post(alice, "lobby", "hi")
        self.clock.advance(0.5)
        self.assertRaises(RateLimited, self.service.post, alice, "lobby", "hi")
        self.clock.advance(0.5)
        self.service.post(alice, "lobby", "hi")
        self.assertRaises(RateLimited, self.service.post, alice, "lobby", "hi")

    def test_rate_limit_off(self) -> None:
        """rate_limit 0 never limits."""
        service, _, clock = make_service(limits=Limits(rate_limit=0, rate_burst=1))
        alice = FakeParticipant("alice")
        service.connect(alice)
        service.join(alice, "lobby")
        for _ in range(100):
            service.post(alice, "lobby", "hi")
        clock.advance(0)
        self.assertEqual(len(alice.received), 101)

    def test_housekeeping_runs_every_minute(self) -> None:
        """The periodic housekeeping runs while the service does (what each
        handler prunes is tested with the handler): revoked tokens that have
        expired are forgotten after a minute."""
        self.service.revocations.revoke("old-token", 0)
        self.clock.advance(59)
        self.assertEqual(len(self.service.revocations), 1)
        self.clock.advance(1)
        self.assertEqual(len(self.service.revocations), 0)
        self.service.stopService()
        self.service.revocations.revoke("old-token", 0)
        self.clock.advance(120)
        self.assertEqual(len(self.service.revocations), 1)


class ConnectionLimitTests(ServiceTestCase):
    """Per-user and per-address connection limits."""

    limits = Limits(max_connections_per_user=2, max_connections_per_ip=3)

    def test_per_user(self) -> None:
        """A user's third connection (any case) is refused with TooManyConnections."""
        self.connect("alice", peer_host="10.0.0.1")
        self.connect("ALICE", peer_host="10.0.0.2")
        extra = FakeParticipant("Alice", peer_host="10.0.0.3")
        self.assertRaises(TooManyConnections, self.service.connect, extra)
        self.assertRaises(TooManyConnections, self.service.check_connection, "alice", "10.0.0.9")
        self.assertEqual(self.service.connection_count, 2)
        self.assertRaises(InvalidRequest, self.service.join, extra, "lobby")
        self.connect("bob", peer_host="10.0.0.3")

    def test_per_address(self) -> None:
        """A fourth connection from one address is refused."""
        for name in ("a", "b", "c"):
            self.connect(name, peer_host="10.0.0.1")
        self.assertRaises(
            TooManyConnections, self.service.connect, FakeParticipant("d", peer_host="10.0.0.1")
        )
        self.assertRaises(TooManyConnections, self.service.check_connection, "d", "10.0.0.1")
        self.connect("d", peer_host="10.0.0.2")

    def test_refused_by_address_takes_no_user_slot(self) -> None:
        """A connection refused for its address does not count against its user."""
        for name in ("a", "b", "c"):
            self.connect(name, peer_host="10.0.0.1")
        for _ in range(3):
            self.assertRaises(
                TooManyConnections,
                self.service.connect,
                FakeParticipant("zed", peer_host="10.0.0.1"),
            )
        self.connect("zed", peer_host="10.0.0.2")
        self.connect("zed", peer_host="10.0.0.3")

    def test_release_on_disconnect(self) -> None:
        """Disconnecting frees both the user's and the address's slot."""
        first = self.connect("alice")
        self.connect("alice")
        self.service.disconnect(first)
        self.service.check_connection("alice", "127.0.0.1")
        self.connect("alice")

    def test_release_once(self) -> None:
        """Disconnecting twice does not free a slot someone else holds."""
        first = self.connect("alice")
        self.connect("alice")
        self.service.disconnect(first)
        self.service.disconnect(first)
        self.connect("alice")
        self.assertRaises(TooManyConnections, self.service.connect, FakeParticipant("alice"))

    def test_connect_twice_counts_once(self) -> None:
        """Registering the same connection again takes no second slot."""
        alice = self.connect("alice")
        self.service.connect(alice)
        self.connect("alice")

    def test_zero_is_unlimited(self) -> None:
        """Limits of 0 turn the checks off."""
        service, _, _ = make_service(
            limits=Limits(max_connections_per_user=0, max_connections_per_ip=0, max_guests_per_ip=0)
        )
        for _ in range(50):
            service.connect(FakeParticipant("alice"))
        self.assertEqual(service.connection_count, 50)


class HistoryTests(ServiceTestCase):
    """History: last N oldest-first, bounds, paging."""

    limits = Limits(rate_limit=0, history_max=100)

    def setUp(self) -> None:
        super().setUp()
        self.alice = self.joined("alice")
        for i in range(60):
            self.service.post(self.alice, "lobby", f"m{i}")
        self.clock.advance(0)
        self.ids = [m.id for m in self.stored()]

    def history(self, **kwargs: Any) -> list[str]:
        return [m.content for m in self.successResultOf(self.service.history("lobby", **kwargs))]

    def test_default_last_50_oldest_first(self) -> None:
        """Without a limit, the last 50 messages, oldest first."""
        self.assertEqual(self.history(), [f"m{i}" for i in range(10, 60)])

    def test_ids_and_fields(self) -> None:
        """History entries carry real ids, room and type."""
        messages = self.successResultOf(self.service.history("lobby", limit=2))
        self.assertEqual([m.id for m in messages], self.ids[-2:])
        for m in messages:
            self.assertEqual(m.as_dict()["chat_room"], "lobby")
            self.assertEqual(m.as_dict()["type"], "chat")

    def test_system_messages_not_stored(self) -> None:
        """Join and leave notices are not part of history."""
        bob = self.joined("bob")
        self.service.leave(bob, "lobby")
        self.assertTrue(all(m.startswith("m") for m in self.history(limit=100)))

    def test_limit(self) -> None:
        """limit picks the last N."""
        self.assertEqual(self.history(limit=3), ["m57", "m58", "m59"])
        self.assertEqual(len(self.history(limit=100)), 60)

    def test_limit_bounds(self) -> None:
        """limit must be between 1 and history_max."""
        for limit in (0, -1, 101):
            self.assertRaises(InvalidRequest, self.service.history, "lobby", limit=limit)
        self.assertEqual(len(self.history(limit=1)), 1)

    def test_before(self) -> None:
        """before pages backwards: the N messages just older than an id."""
        self.assertEqual(self.history(limit=3, before=self.ids[10]), ["m7", "m8", "m9"])
        self.assertEqual(self.history(limit=50, before=self.ids[2]), ["m0", "m1"])
        self.assertEqual(self.history(before=self.ids[0]), [])

    def test_after(self) -> None:
        """after pages forwards: the first N messages newer than an id."""
        self.assertEqual(self.history(limit=3, after=self.ids[10]), ["m11", "m12", "m13"])
        self.assertEqual(self.history(after=self.ids[-1]), [])
        self.assertEqual(self.history(after=0), [f"m{i}" for i in range(50)])

    def test_paging_covers_everything(self) -> None:
        """Walking backwards with before visits every message once."""
        seen: list[str] = []
        before = None
        while True:
            page = self.successResultOf(self.service.history("lobby", limit=7, before=before))
            if not page:
                break
            seen[:0] = [m.content for m in page]
            before = page[0].id
        self.assertEqual(seen, [f"m{i}" for i in range(60)])

    def test_negative_ids_refused(self) -> None:
        """Negative before/after are InvalidRequest."""
        self.assertRaises(InvalidRequest, self.service.history, "lobby", before=-1)
        self.assertRaises(InvalidRequest, self.service.history, "lobby", after=-5)

    def test_unknown_room_empty(self) -> None:
        """A room with no messages has an empty history."""
        self.assertEqual(self.successResultOf(self.service.history("empty")), [])

    def test_invalid_room(self) -> None:
        """A bad room name is InvalidRoom."""
        self.assertRaises(InvalidRoom, self.service.history, "")

    def test_rooms_separate(self) -> None:
        """History of one room holds none of another's messages."""
        bob = self.joined("bob", "other")
        self.post(bob, "elsewhere", "other")
        self.assertEqual(
            [m.content for m in self.successResultOf(self.service.history("other"))],
            ["elsewhere"],
        )
        self.assertNotIn("elsewhere", self.history(limit=100))


class AccountTests(ServiceTestCase):
    """The service's account verbs delegate to Accounts."""

    def test_register_and_authenticate(self) -> None:
        """A registered user can authenticate, through the service and its portal."""
        user = self.successResultOf(self.service.register("alice", "pw"))
        self.assertEqual(self.successResultOf(self.service.authenticate("alice", "pw")), user)
        _, avatar, _ = self.successResultOf(
            self.service.portal.login(UsernamePassword(b"alice", b"pw"), None, IChatUser)
        )
        self.assertEqual(avatar, user)

    def test_change_password(self) -> None:
        """change_password takes effect at once."""
        self.successResultOf(self.service.register("alice", "old"))
        self.successResultOf(self.service.authenticate("alice", "old"))
        self.successResultOf(self.service.change_password("alice", "new"))
        self.failureResultOf(self.service.authenticate("alice", "old"), AuthenticationFailed)


class ShutdownTests(ServiceTestCase):
    """stopService: goodbye to every connection, no leave noise, flush the store."""

    def test_disconnects_everyone(self) -> None:
        """Every participant, in a room or not, is closed with DisconnectReason.SHUTDOWN."""
        alice = self.joined("alice")
        bob = self.joined("bob", "other")
        idle = self.connect("idle")
        d = self.service.stopService()
        for p in (alice, bob, idle):
            self.assertEqual(p.disconnected, [DisconnectReason.SHUTDOWN])
        self.successResultOf(d)
        self.assertFalse(self.service.running)

    def test_no_leave_broadcast(self) -> None:
        """Connections closing during shutdown do not announce their leaving."""
        members = [self.joined(name) for name in ("alice", "bob", "carol")]
        before = [len(p.received) for p in members]
        d = self.service.stopService()
        for p in members:  # the transports report their closing
            self.service.disconnect(p)
        self.assertEqual([len(p.received) for p in members], before)
        self.assertEqual(self.service.room_names(), [])
        self.successResultOf(d)

    def test_flushes_queued_messages(self) -> None:
        """Messages queued for storage are committed before stopService's
        Deferred fires, and only then is the store closed."""
        closed: list[bool] = []
        real_close = self.store.close

        def close() -> Deferred[None]:
            closed.append(True)
            return real_close()

        self.store.close = close  # type: ignore[method-assign]
        alice = self.joined("alice")
        posted = [self.service.post(alice, "lobby", f"m{i}") for i in range(3)]
        d = self.service.stopService()
        self.assertNoResult(d)
        self.assertEqual(closed, [])
        self.clock.advance(0)
        self.successResultOf(d)
        self.assertEqual([m.content for m in self.stored()], ["m0", "m1", "m2"])
        self.assertEqual(closed, [True])
        for p in posted:
            self.successResultOf(p)

    def test_failing_disconnect_does_not_stop_shutdown(self) -> None:
        """One participant raising in disconnect does not stop the others' goodbye."""

        class Stubborn(FakeParticipant):
            def disconnect(self, reason: DisconnectReason) -> None:
                raise ConnectionError("already gone")

        stubborn = Stubborn("stubborn")
        self.service.connect(stubborn)
        alice = self.connect("alice")
        d = self.service.stopService()
        self.assertEqual(alice.disconnected, [DisconnectReason.SHUTDOWN])
        self.successResultOf(d)
        self.assertEqual(len(self.flushLoggedErrors(ConnectionError)), 1)

    def test_restart(self) -> None:
        """After a stop, a start brings announcements back."""
        self.successResultOf(self.service.stopService())
        self.service.startService()
        alice = self.joined("alice")
        bob = self.joined("bob")
        self.service.leave(bob, "lobby")
        self.assertEqual(alice.contents()[-1], "bob has left the room")
        self.successResultOf(self.service.stopService())


class ClosingParticipant(FakeParticipant):
    """A connection that closes a moment after it is told to (its closing
    handshake), recording what it got before."""

    def __init__(self, nickname: str, service: Any, clock: Clock, **kwargs: Any) -> None:
        super().__init__(nickname, **kwargs)
        self.service = service
        self.clock = clock

    def disconnect(self, reason: DisconnectReason) -> None:
        super().disconnect(reason)
        self.received.append("goodbye")
        self.clock.callLater(0.1, self.service.disconnect, self)


class DrainTests(TestCase):
    """SIGTERM: stop accepting, store what is queued, deliver and echo it,
    then say goodbye and wait for the connections to close (bounded by
    ``--drain-timeout``)."""

    def make(self, bus: Any = None) -> None:
        self.clock = Clock()
        self.store = MemoryStore()
        self.service, _, _ = make_service(self.store, self.clock, bus=bus, drain_timeout=10.0)

    def member(self, nickname: str) -> ClosingParticipant:
        participant = ClosingParticipant(nickname, self.service, self.clock)
        self.service.connect(participant)
        self.service.join(participant, "lobby")
        return participant

    def texts(self, participant: FakeParticipant) -> list[str]:
        return [
            m if isinstance(m, str) else m.content
            for m in participant.received
            if isinstance(m, str) or m.type == CHAT
        ]

    def test_queued_messages_echoed_before_goodbye(self) -> None:
        self.make()
        alice = self.member("alice")
        for i in range(3):
            self.service.post(alice, "lobby", f"m{i}")
        d = self.service.stopService()
        self.assertRaises(ServiceBusy, self.service.post, alice, "lobby", "too late")
        self.clock.advance(0)  # the commit
        self.assertEqual(self.texts(alice), ["m0", "m1", "m2", "goodbye"])
        self.assertNoResult(d)  # the connection is still closing
        self.clock.pump([0.05] * 2)
        self.successResultOf(d)
        self.assertEqual(
            [m.content for m in self.successResultOf(self.store.recent_messages("lobby", 9))],
            ["m0", "m1", "m2"],
        )

    def test_echo_the_bus_lost_comes_from_the_store(self) -> None:
        """With a shared bus that did not bring the messages back, every
        room is brought up to the store's position before the goodbye."""
        self.make(bus=RecordingBus())
        alice = self.member("alice")
        self.service.deliver("lobby", self.service_join_notice(alice))
        self.service.post(alice, "lobby", "lost on the bus")
        d = self.service.stopService()
        self.clock.advance(0)
        self.assertEqual(self.texts(alice), ["lost on the bus", "goodbye"])
        self.clock.pump([0.05] * 2)
        self.successResultOf(d)

    def service_join_notice(self, participant: FakeParticipant) -> Message:
        return Message(
            room="lobby", nickname=participant.nickname, content="", timestamp_ms=0, type=SYSTEM
        )

    def test_bounded(self) -> None:
        """A store that never commits and a connection that never closes
        hold the shutdown for the drain timeout, not longer."""
        self.make()
        alice = self.member("alice")
        alice.disconnect = alice.removed = lambda *a: None  # type: ignore[method-assign]
        self.store.insert_messages = lambda batch: Deferred()  # type: ignore[method-assign,assignment]
        self.service.post(alice, "lobby", "stuck")
        d = self.service.stopService()
        self.clock.advance(0)
        self.clock.pump([1.0] * 9)
        self.assertNoResult(d)
        self.clock.pump([0.5] * 3)
        self.successResultOf(d)


class LeaveOrderTests(ServiceTestCase):
    """A member's leave reaches the others after every message of theirs
    accepted before it (issue 13), whatever took it out of the room."""

    def assertMessagesThenLeave(self, observer: FakeParticipant, *texts: str) -> None:
        events = [
            m.content if m.type == CHAT else m.event
            for m in observer.received
            if m.nickname == "bob" and m.event != "joined"
        ]
        self.assertEqual(events, [*texts, "left"])

    def sent_then(self, take_out: Any) -> FakeParticipant:
        alice = self.joined("alice")
        bob = self.joined("bob", user_id=self.bob.id if hasattr(self, "bob") else None)
        self.service.post(bob, "lobby", "one")
        self.service.post(bob, "lobby", "two")
        take_out(bob)
        self.assertEqual(self.chats(alice), [])
        self.clock.advance(0)
        return alice

    def test_disconnect(self) -> None:
        alice = self.sent_then(self.service.disconnect)
        self.assertMessagesThenLeave(alice, "one", "two")

    def test_leave(self) -> None:
        alice = self.sent_then(lambda bob: self.service.leave(bob, "lobby"))
        self.assertMessagesThenLeave(alice, "one", "two")

    def test_kick(self) -> None:
        alice = self.sent_then(lambda bob: self.service.kick("bob", "lobby"))
        self.assertMessagesThenLeave(alice, "one", "two")

    def test_ban(self) -> None:
        self.bob = self.successResultOf(self.service.register("bob", "bob-secret"))
        alice = self.sent_then(lambda bob: Deferred.fromCoroutine(self.service.ban("bob")))
        self.assertMessagesThenLeave(alice, "one", "two")

    def test_nothing_queued(self) -> None:
        """Without messages on the way the leave goes out at once."""
        alice = self.joined("alice")
        bob = self.joined("bob")
        self.service.leave(bob, "lobby")
        self.assertEqual(alice.contents()[-1], "bob has left the room")


class DeleteMessageTests(ServiceTestCase):
    """Moderators remove stored messages."""

    def test_delete(self) -> None:
        """The message leaves the history (cached or not) and the room's
        members get a ``deleted`` event for its id; others stay."""
        alice = self.joined("alice")
        outsider = self.joined("bob", room="garden")
        keep = self.post(alice, "keep")
        spam = self.post(alice, "spam")
        self.assertEqual(
            [m.content for m in self.successResultOf(self.service.history("lobby"))],
            ["keep", "spam"],
        )
        room = self.successResultOf(Deferred.fromCoroutine(self.service.delete_message(spam.id)))
        self.assertEqual(room, "lobby")
        history = self.successResultOf(self.service.history("lobby"))
        self.assertEqual([m.id for m in history], [keep.id])
        [event] = [m for m in alice.received if m.type == DELETED]
        self.assertEqual((event.room, event.id), ("lobby", spam.id))
        self.assertEqual([m for m in outsider.received if m.type == DELETED], [])

    def test_unknown_or_bad_ids(self) -> None:
        for message_id in (12345, 0, -1, 2**70):
            result = self.successResultOf(
                Deferred.fromCoroutine(self.service.delete_message(message_id))
            )
            self.assertIsNone(result)
        for bad in ("1", True, None, 1.5):
            failure = self.failureResultOf(Deferred.fromCoroutine(self.service.delete_message(bad)))
            failure.trap(InvalidRequest)


class ResyncTests(TestCase):
    """After a bus outage, members get the stored messages that did not
    reach this instance, once each, in seq order (``ChatService.resync``)."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.store = MemoryStore()
        self.bus = ControlRecordingBus()
        self.service, _, _ = make_service(self.store, self.clock, bus=self.bus, instance_id="here")
        self.addCleanup(self.service.stopService)
        self.alice = FakeParticipant("alice")
        self.service.connect(self.alice)
        self.service.join(self.alice, "lobby")

    def post(self, text: str) -> Message:
        d = self.service.post(self.alice, "lobby", text)
        self.clock.advance(0)  # the group commit
        message: Message = self.successResultOf(d)
        return message

    def stored_elsewhere(self, *texts: str, room: str = "lobby") -> list[Message]:
        """Messages another instance stored (and this one never delivered)."""
        batch = [
            Message(room=room, nickname="bob", content=t, timestamp_ms=0, user_id=None)
            for t in texts
        ]
        stored = self.successResultOf(self.store.insert_messages(batch))
        return [m.with_ids(i, seq) for m, (i, seq) in zip(batch, stored, strict=True)]

    def chats(self) -> list[str]:
        return [m.content for m in self.alice.received if m.type == CHAT]

    def test_missed_messages_are_delivered_once(self) -> None:
        """A gap shows when the next message arrives and is filled before
        it; what no later message reveals, the resync fills; nothing twice."""
        self.post("one")
        self.stored_elsewhere("missed 1")
        self.post("two")
        self.assertEqual(self.chats(), ["one"])  # a moment for "missed 1" to come
        self.clock.advance(GAP_GRACE)
        self.assertEqual(self.chats(), ["one", "missed 1", "two"])
        self.stored_elsewhere("missed 2", "missed 3")
        self.service.resync()
        self.assertEqual(self.chats(), ["one", "missed 1", "two", "missed 2", "missed 3"])
        self.service.resync()  # nothing new: nothing twice
        self.assertEqual(len(self.chats()), 5)

    def test_filled_message_arriving_late_over_the_bus(self) -> None:
        """A message a fill read from the database may still come over the
        bus afterwards (stored, then published): it is shown once."""
        self.post("one")
        [late] = self.stored_elsewhere("late")
        self.service.resync()
        self.service.deliver("lobby", late)
        self.service.deliver("lobby", late)
        self.assertEqual(self.chats(), ["one", "late"])
        self.assertEqual(self.service.metrics.duplicates_dropped, 2)
        self.assertEqual(self.service.metrics.messages_filled, 1)

    def test_bans_made_elsewhere_apply(self) -> None:
        """Bans and unbans stored by another instance during the outage take
        effect here: banned accounts are closed, unbanned ones admitted."""
        carl = self.successResultOf(self.service.register("carl", "carl-secret"))
        dora = self.successResultOf(self.service.register("dora", "dora-secret"))
        connection = FakeParticipant("carl", user_id=carl.id)
        self.service.connect(connection)
        self.successResultOf(Deferred.fromCoroutine(self.service.ban("dora", "old")))
        self.successResultOf(self.store.remove_ban(dora.id))
        self.successResultOf(self.store.set_ban(carl.id, "spam", 0, None))
        self.service.resync()
        self.assertEqual(connection.disconnected, [DisconnectReason.BANNED])
        self.service.check_not_banned(dora.id)  # lifted elsewhere: no error
        with self.assertRaises(Banned):
            self.service.check_not_banned(carl.id)

    def test_quiet_rooms_are_caught_up(self) -> None:
        """A room that delivered nothing yet is compared with the store too:
        what was stored after its first member joined arrives; what was
        stored before does not (it is history)."""
        self.stored_elsewhere("before the join", room="quiet")
        bob = FakeParticipant("bob")
        self.service.connect(bob)
        self.service.join(bob, "quiet")
        self.stored_elsewhere("after the join", room="quiet")
        self.service.resync()
        self.assertEqual([m.content for m in bob.received if m.type == CHAT], ["after the join"])

    def test_one_pass_at_a_time(self) -> None:
        """Requests during a pass make one more pass, not one each."""
        self.post("one")
        gate: Deferred[None] = Deferred()
        reads: list[list[str]] = []
        positions = self.store.room_positions

        def slow(rooms: list[str]) -> Deferred[dict[str, int]]:
            reads.append(list(rooms))
            return gate.addCallback(lambda _: self.successResultOf(positions(rooms)))

        self.store.room_positions = slow  # type: ignore[method-assign,assignment]
        self.service.resync()
        self.service.resync()
        self.service.resync()
        self.assertEqual(reads, [["lobby"]])
        self.stored_elsewhere("missed")
        self.store.room_positions = positions  # type: ignore[method-assign]
        gate.callback(None)
        self.assertEqual(self.chats(), ["one", "missed"])

    def test_read_failure_is_logged(self) -> None:
        self.post("one")
        positions = self.store.room_positions
        self.store.room_positions = lambda *a: Deferred.fromCoroutine(  # type: ignore[method-assign]
            _raise(OSError("disk gone"))
        )
        self.service.resync()
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)
        self.assertEqual(self.chats(), ["one"])
        self.store.room_positions = positions  # type: ignore[method-assign]

    def test_recovery_asks_the_others(self) -> None:
        """``bus_recovered`` resyncs here and publishes a resync for the
        other instances; one from another instance resyncs here; its own
        echo does not."""
        self.post("one")
        self.stored_elsewhere("missed")
        self.service.bus_recovered()
        self.assertEqual(self.bus.controls, [ResyncEvent(instance="here")])
        self.assertEqual(self.chats(), ["one", "missed"])
        self.stored_elsewhere("missed again")
        self.service.control(ResyncEvent(instance="here"))
        self.assertEqual(self.chats(), ["one", "missed"])
        self.service.control(ResyncEvent(instance="there"))
        self.assertEqual(self.chats(), ["one", "missed", "missed again"])

    def test_periodic_check_only_with_a_shared_bus(self) -> None:
        """With a bus that can lose events the rooms' positions are checked
        every ``position_check`` seconds; in one process nothing can be
        lost, and nothing is checked."""
        self.post("one")
        self.stored_elsewhere("lost")
        self.clock.pump([10, 10])
        self.assertEqual(self.chats(), ["one", "lost"])
        service, store, clock = make_service()
        self.addCleanup(service.stopService)
        alice = FakeParticipant("alice")
        service.connect(alice)
        service.join(alice, "lobby")
        store.insert_messages([Message(room="lobby", nickname="bob", content="x", timestamp_ms=0)])
        clock.pump([10] * 5)
        self.assertEqual([m for m in alice.received if m.type == CHAT], [])


async def _raise(error: Exception) -> Any:
    raise error


class ControlRecordingBus(LocalBus):
    """A LocalBus (events come straight back) that also records what the
    service publishes to the other instances."""

    def __init__(self) -> None:
        super().__init__()
        self.controls: list[ControlEvent] = []

    def publish_control(self, event: ControlEvent) -> None:
        self.controls.append(event)
        super().publish_control(event)


class TokenRevocationTests(TestCase):
    """Revocations outlive the process and follow password changes."""

    def setUp(self) -> None:
        self.service, self.store, self.clock = make_service()
        self.clock.advance(1_757_345_400)
        self.addCleanup(self.service.stopService)
        self.user = self.successResultOf(self.service.register("alice", "alice-secret"))
        self.authority = TokenAuthority(b"k" * 32, self.clock, 3600, self.service.revocations)

    def test_loaded_at_start(self) -> None:
        one, _ = self.authority.issue(self.user.id, "alice")
        two, _ = self.authority.issue(self.user.id, "alice")
        self.successResultOf(
            Deferred.fromCoroutine(self.service.logout(self.authority.verify(one)))
        )
        self.clock.advance(1)
        everywhere_before, _ = self.authority.issue(self.user.id, "alice")
        bob = self.successResultOf(self.service.register("bob", "bob-secret"))
        bobs, _ = self.authority.issue(bob.id, "bob")
        self.successResultOf(
            Deferred.fromCoroutine(
                self.service.logout(self.authority.verify(bobs), everywhere=True)
            )
        )
        # A new process on the same database.
        restarted, _, _ = make_service(store=self.store, clock=self.clock)
        self.addCleanup(restarted.stopService)
        fresh = TokenAuthority(b"k" * 32, self.clock, 3600, restarted.revocations)
        self.assertRaises(AuthenticationFailed, fresh.verify, one)
        self.assertEqual(fresh.verify(two).user_id, self.user.id)
        self.assertEqual(fresh.verify(everywhere_before).user_id, self.user.id)
        self.assertRaises(AuthenticationFailed, fresh.verify, bobs)

    def test_password_change_revokes(self) -> None:
        connection = FakeParticipant("alice", user_id=self.user.id)
        self.service.connect(connection)
        token, _ = self.authority.issue(self.user.id, "alice")
        self.clock.advance(0.001)
        self.successResultOf(self.service.change_password("alice", "new-secret-123"))
        self.assertRaises(AuthenticationFailed, self.authority.verify, token)
        # --revoke-on-password-change (the default): a stolen session ends too.
        self.assertEqual(connection.disconnected, [DisconnectReason.LOGGED_OUT])

    def test_external_tokens_cannot_be_revoked(self) -> None:
        claims = TokenClaims("garin", None, 2**40, external=True)
        failure = self.failureResultOf(Deferred.fromCoroutine(self.service.logout(claims)))
        failure.trap(InvalidRequest)


class ModerationLogTests(ServiceTestCase):
    """Every moderation and password action leaves one log line for the
    operator, without the password."""

    def test_actions_are_logged(self) -> None:
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        self.successResultOf(self.service.register("carl", "carl-secret-1"))
        carl = self.joined("carl")
        posted = self.post(carl, "spam")
        self.service.kick("carl", "lobby", "off topic")
        run = Deferred.fromCoroutine
        self.successResultOf(run(self.service.ban("carl", "spam", 60)))
        self.successResultOf(run(self.service.unban("carl")))
        self.successResultOf(run(self.service.delete_message(posted.id)))
        self.successResultOf(self.service.change_password("carl", "another-secret-2"))
        mine = [e for e in events if e.get("log_namespace") == "parkchat.moderation"]
        self.assertEqual(
            [e["action"] for e in mine], ["kick", "ban", "unban", "delete", "password"]
        )
        lines = [formatEvent(e) for e in mine]
        self.assertIn("kicked carl from lobby (off topic)", lines[0])
        self.assertIn("deleted message", lines[3])
        everything = repr(events)
        self.assertNotIn("another-secret-2", everything)
        self.assertNotIn("carl-secret-1", everything)
