"""Tests for parkchat.handlers.state.StateHandler (account state) and
parkchat.handlers.refresh.RefreshTokenHandler (long-lived logins), over the
in-memory store and a fake clock."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase
from zope.interface import implementer

from parkchat.auth import VerifiedCredentials
from parkchat.errors import (
    AuthenticationFailed,
    Banned,
    Forbidden,
    InvalidRequest,
    InvalidRoom,
    NotInRoom,
    UnknownRecipient,
)
from parkchat.events import DirectStateEvent, RoomStateEvent
from parkchat.handlers.connections import ConnectionHandler
from parkchat.handlers.moderation import ModerationHandler
from parkchat.handlers.refresh import RefreshTokenHandler, token_hash
from parkchat.handlers.rooms import RoomHandler
from parkchat.handlers.sessions import SessionHandler
from parkchat.handlers.state import StateHandler
from parkchat.interfaces import IAccountStateReceiver
from parkchat.limits import Limits, TokenBucketLimiter
from parkchat.metrics import ServiceMetrics
from parkchat.model import DirectState, Message, RoomState
from parkchat.store.memory import MemoryStore
from parkchat.tokens import Revocations
from tests.helpers import FakeParticipant, RecordingBus

START = 1_757_345_400


@implementer(IAccountStateReceiver)
class StateParticipant(FakeParticipant):
    """A connection that shows account state (as /ws does)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.states: list[RoomState | DirectState] = []

    def account_state(self, state: RoomState | DirectState) -> None:
        self.states.append(state)


class StateHandlerTests(TestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(START)
        self.store = MemoryStore()
        self.alice = self.successResultOf(self.store.create_user("alice", b"h", 0))
        self.bob = self.successResultOf(self.store.create_user("bob", b"h", 0))
        self.bus = RecordingBus()
        self.connections = ConnectionHandler(self.bus, Limits())
        self.state = StateHandler(
            self.store, self.store, self.connections, self.bus, self.clock, instance_id="i1"
        )
        self.phone = self.connect("alice", self.alice.id)

    def connect(
        self, nickname: str, user_id: int | None, receiver: bool = True
    ) -> StateParticipant:
        participant = (
            StateParticipant(nickname, user_id=user_id)
            if receiver
            else FakeParticipant(nickname, user_id=user_id)
        )
        self.connections.register(participant)
        return participant  # type: ignore[return-value]

    def wait(self, coroutine: Any) -> Any:
        return self.successResultOf(Deferred.fromCoroutine(coroutine))

    def fails(self, coroutine: Any, error: type[Exception]) -> None:
        self.failureResultOf(Deferred.fromCoroutine(coroutine), error)

    def post(self, room: str, user_id: int | None, *contents: str, mentions: Any = ()) -> None:
        self.successResultOf(
            self.store.insert_messages(
                [
                    Message(
                        room=room,
                        nickname="x",
                        content=c,
                        timestamp_ms=0,
                        user_id=user_id,
                        mentions=tuple(mentions),
                    )
                    for c in contents
                ]
            )
        )

    def deliver_controls(self) -> None:
        """Hand what was published to the handler, as the bus does on every
        instance (this one included)."""
        for event in self.bus.controls:
            if isinstance(event, RoomStateEvent):
                self.state.apply_room_state(event)
            elif isinstance(event, DirectStateEvent):
                self.state.apply_direct_state(event)
        self.bus.controls.clear()

    # -- rooms -------------------------------------------------------------------

    def test_join_recorded_once_and_announced(self) -> None:
        """A room joined is recorded and announced on the bus once, read up
        to the room's seq; a second join (another device) changes nothing."""
        self.post("garden", self.bob.id, "a", "b")
        self.wait(self.state.joined(self.phone, "garden"))
        phone_id = self.connections.connection_id(self.phone)
        self.assertEqual(
            self.bus.controls,
            [RoomStateEvent.of(self.alice.id, "alice", RoomState("garden", 2, 2), "i1", phone_id)],
        )
        laptop = self.connect("alice", self.alice.id)
        self.wait(self.state.joined(laptop, "garden"))
        self.assertEqual(len(self.bus.controls), 1)
        rooms, directs = self.wait(self.state.account_state(laptop))
        self.assertEqual((rooms, directs), ([RoomState("garden", 2, 2)], []))

    def test_pushed_to_every_connection_of_the_account(self) -> None:
        """A state event reaches each of the account's connections that
        shows account state; not a guest sharing the name, not another
        account, not a surface without account state; a join not the
        connection that joined (it has its ``joined`` answer), a read all."""
        laptop = self.connect("Alice", self.alice.id)
        guest = self.connect("alice", None)
        terminal = self.connect("alice", self.alice.id, receiver=False)
        bob = self.connect("bob", self.bob.id)
        self.wait(self.state.joined(self.phone, "garden"))
        self.deliver_controls()
        self.assertEqual((self.phone.states, laptop.states), ([], [RoomState("garden", 0, 0)]))
        self.post("garden", self.bob.id, "hi")
        self.wait(self.state.mark_read(laptop, "garden", None, 1))
        self.deliver_controls()
        self.assertEqual(self.phone.states, [RoomState("garden", 1, 1)])
        self.assertEqual(laptop.states[1:], [RoomState("garden", 1, 1)])
        self.assertEqual((guest.states, bob.states), ([], []))
        self.assertFalse(hasattr(terminal, "states"))

    def test_event_from_another_instance(self) -> None:
        """A state made on another instance is shown here the same way."""
        event = RoomStateEvent.of(self.alice.id, "alice", RoomState("attic", 9, 4, 5), "i2")
        self.state.apply_room_state(event)
        self.assertEqual(self.phone.states, [RoomState("attic", 9, 4, 5)])

    def test_guests_have_no_account_state(self) -> None:
        """A guest's joins and leaves are not recorded; its requests are forbidden."""
        guest = self.connect("someone", None)
        self.wait(self.state.joined(guest, "garden"))
        self.wait(self.state.left(guest, "garden"))
        self.assertEqual(self.bus.controls, [])
        self.fails(self.state.account_state(guest), Forbidden)
        self.fails(self.state.mark_read(guest, "garden", None, 1), Forbidden)
        self.fails(self.state.mute(guest, "garden", True), Forbidden)
        self.fails(self.state.set_direct_open(guest, "bob", True), Forbidden)

    def test_leave_forgets_and_announces(self) -> None:
        """Leaving forgets the room and says so (``joined`` false); leaving
        a room not recorded says nothing."""
        self.wait(self.state.joined(self.phone, "garden"))
        self.bus.controls.clear()
        self.wait(self.state.left(self.phone, "garden"))
        [event] = self.bus.controls
        self.assertEqual((event.room, event.joined), ("garden", False))
        self.wait(self.state.left(self.phone, "garden"))
        self.assertEqual(len(self.bus.controls), 1)
        self.assertEqual(self.wait(self.state.account_state(self.phone)), ([], []))

    def test_read_marker_moves_forward_only(self) -> None:
        """``read`` moves the marker forward (clamped to the room's seq) with
        exact counts in what is pushed; backwards or unchanged, nothing is
        pushed."""
        self.wait(self.state.joined(self.phone, "garden"))
        self.post("garden", self.bob.id, "1", "2", mentions=["?alice"])
        self.post("garden", self.bob.id, "3")
        self.bus.controls.clear()
        [state], _ = self.wait(self.state.account_state(self.phone))
        self.assertEqual((state.unread, state.mentions), (3, 2))
        self.wait(self.state.mark_read(self.phone, "garden", None, 1))
        self.wait(self.state.mark_read(self.phone, "garden", None, 1))
        self.wait(self.state.mark_read(self.phone, "garden", None, 0))
        self.wait(self.state.mark_read(self.phone, "garden", None, 50))
        self.assertEqual(
            [(e.read_seq, e.unread, e.mentions, e.seq) for e in self.bus.controls],
            [(1, 2, 1, 3), (3, 0, 0, 3)],
        )

    def test_read_refuses_bad_requests(self) -> None:
        """A seq that is not a non-negative integer, both or neither of room
        and with, a bad room name or an unknown account: each its error."""
        for seq in (-1, "3", True, None, 2**70):
            self.fails(self.state.mark_read(self.phone, "garden", None, seq), InvalidRequest)
        self.fails(self.state.mark_read(self.phone, None, None, 1), InvalidRequest)
        self.fails(self.state.mark_read(self.phone, "garden", "bob", 1), InvalidRequest)
        self.fails(self.state.mark_read(self.phone, " bad", None, 1), InvalidRoom)
        self.fails(self.state.mark_read(self.phone, None, "nobody", 1), UnknownRecipient)

    def test_direct_read(self) -> None:
        """A conversation's marker, by the other's nickname or id."""
        for content in ("hi", "there"):
            self.successResultOf(
                self.store.insert_direct(self.bob.id, self.alice.id, content, 0, False)
            )
        self.wait(self.state.mark_read(self.phone, None, "BOB", 1))
        self.wait(self.state.mark_read(self.phone, None, self.bob.id, 7))
        self.assertEqual(
            self.bus.controls,
            [
                DirectStateEvent.of(
                    self.alice.id, "alice", DirectState("bob", self.bob.id, 2, 1, 1), "i1"
                ),
                DirectStateEvent.of(
                    self.alice.id, "alice", DirectState("bob", self.bob.id, 2, 2, 0), "i1"
                ),
            ],
        )

    def test_mute(self) -> None:
        """Mute is pushed; a room not the account's and a non-boolean are refused."""
        self.wait(self.state.joined(self.phone, "garden"))
        self.bus.controls.clear()
        self.wait(self.state.mute(self.phone, "garden", True))
        [event] = self.bus.controls
        self.assertTrue(event.muted)
        self.fails(self.state.mute(self.phone, "attic", True), NotInRoom)
        self.fails(self.state.mute(self.phone, "garden", "yes"), InvalidRequest)

    def test_open_and_close_direct(self) -> None:
        """Opening lists a conversation without messages; closing hides it;
        both are pushed with ``open``; an unknown account is refused."""
        self.wait(self.state.set_direct_open(self.phone, "bob", True))
        _, directs = self.wait(self.state.account_state(self.phone))
        self.assertEqual(directs, [DirectState("bob", self.bob.id, 0, 0)])
        self.wait(self.state.set_direct_open(self.phone, "bob", False))
        self.assertEqual([e.open for e in self.bus.controls], [True, False])
        self.assertEqual(self.wait(self.state.account_state(self.phone)), ([], []))
        self.fails(self.state.set_direct_open(self.phone, "nobody", True), UnknownRecipient)


class RefreshTokenHandlerTests(TestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(START)
        self.store = MemoryStore()
        self.alice = self.successResultOf(self.store.create_user("alice", b"h", 0)).public()
        self.bus = RecordingBus()
        self.connections = ConnectionHandler(self.bus, Limits())
        self.rooms = RoomHandler(
            self.connections,
            self.bus,
            self.clock,
            ServiceMetrics(),
            TokenBucketLimiter(self.clock, 0, 1),
            self.store,
        )
        self.moderation = ModerationHandler(
            self.store, self.store, self.rooms, self.bus, self.clock
        )
        self.refresh = RefreshTokenHandler(
            self.store, self.store, self.moderation, self.clock, ttl=3600
        )

    def wait(self, coroutine: Any) -> Any:
        return self.successResultOf(Deferred.fromCoroutine(coroutine))

    def fails(self, coroutine: Any, error: type[Exception]) -> Any:
        return self.failureResultOf(Deferred.fromCoroutine(coroutine), error)

    def test_only_the_hash_is_stored(self) -> None:
        """The token is random and long; the store holds its SHA-256 only."""
        token, ttl = self.wait(self.refresh.issue(self.alice))
        self.assertEqual(ttl, 3600)
        self.assertGreaterEqual(len(token), 40)
        self.assertEqual(list(self.store._refresh), [token_hash(token)])
        self.assertNotEqual(token_hash(token), token)

    def test_rotation(self) -> None:
        """A refresh gives the account and the next token; the next one works once too."""
        first, _ = self.wait(self.refresh.issue(self.alice))
        user, second, ttl = self.wait(self.refresh.refresh(first))
        self.assertEqual((user, ttl), (self.alice, 3600))
        self.assertNotEqual(first, second)
        user, third, _ = self.wait(self.refresh.refresh(second))
        self.assertEqual(user, self.alice)
        self.assertNotIn(third, (first, second))

    def test_reuse_revokes_the_family(self) -> None:
        """A spent token presented again fails and revokes its login: the
        token it was exchanged for stops working too; other logins stay."""
        first, _ = self.wait(self.refresh.issue(self.alice))
        other, _ = self.wait(self.refresh.issue(self.alice))
        _, second, _ = self.wait(self.refresh.refresh(first))
        failure = self.fails(self.refresh.refresh(first), AuthenticationFailed)
        self.assertIn("used before", failure.value.message)
        self.fails(self.refresh.refresh(second), AuthenticationFailed)
        self.wait(self.refresh.refresh(other))

    def test_expiry(self) -> None:
        """A token is refused once its lifetime has passed."""
        token, _ = self.wait(self.refresh.issue(self.alice))
        self.clock.advance(3600)
        self.fails(self.refresh.refresh(token), AuthenticationFailed)

    def test_bad_tokens(self) -> None:
        """Not a string: 400; unknown or absurdly long: 401."""
        for value in (None, 5, "", ["x"]):
            self.fails(self.refresh.refresh(value), InvalidRequest)
        self.fails(self.refresh.refresh("nope"), AuthenticationFailed)
        self.fails(self.refresh.refresh("x" * 1000), AuthenticationFailed)

    def test_banned_account_refused(self) -> None:
        """A banned account gets no new token."""
        token, _ = self.wait(self.refresh.issue(self.alice))
        self.wait(self.moderation.ban("alice", "spam"))
        self.fails(self.refresh.refresh(token), Banned)

    def test_revoke(self) -> None:
        """Logout revokes the family of the token given."""
        token, _ = self.wait(self.refresh.issue(self.alice))
        self.assertTrue(self.wait(self.refresh.revoke(token)))
        self.assertFalse(self.wait(self.refresh.revoke("unknown")))
        self.fails(self.refresh.refresh(token), AuthenticationFailed)

    def test_cut_off_revokes_every_refresh_token(self) -> None:
        """Logging out everywhere (or a new password: both are a cut-off)
        revokes every refresh token of the account."""
        sessions = SessionHandler(
            self.store,
            self.store,
            self.connections,
            self.rooms,
            self.bus,
            self.clock,
            Revocations(),
            VerifiedCredentials(self.clock),
            refresh_tokens=self.store,
        )
        tokens = [self.wait(self.refresh.issue(self.alice))[0] for _ in range(2)]
        self.wait(sessions.cut_off(self.alice.id, "alice", close=False))
        for token in tokens:
            self.fails(self.refresh.refresh(token), AuthenticationFailed)
