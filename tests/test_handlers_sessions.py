"""Tests for parkchat.handlers.sessions.SessionHandler."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, fail
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from parkchat.auth import VerifiedCredentials
from parkchat.errors import InvalidRequest
from parkchat.events import CutoffEvent, RevokeEvent, SessionEvent
from parkchat.handlers.connections import ConnectionHandler
from parkchat.handlers.rooms import RoomHandler
from parkchat.handlers.sessions import SessionHandler
from parkchat.limits import Limits, TokenBucketLimiter
from parkchat.metrics import ServiceMetrics
from parkchat.model import DisconnectReason, User
from parkchat.store.memory import MemoryStore
from parkchat.tokens import LEEWAY, Revocations, TokenClaims
from tests.helpers import FakeParticipant, RecordingBus

START = 1_757_345_400


class SessionHandlerCase(TestCase):
    single_session = False

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(START)
        self.store = MemoryStore()
        for nickname in ("alice", "bob"):  # ids 1 and 2
            self.successResultOf(self.store.create_user(nickname, b"hash", 0))
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
        self.revocations = Revocations()
        self.credentials = VerifiedCredentials(self.clock)
        self.sessions = SessionHandler(
            self.store,
            self.store,
            self.connections,
            self.rooms,
            self.bus,
            self.clock,
            self.revocations,
            self.credentials,
            instance_id="i1",
            single_session=self.single_session,
        )

    def connect(self, nickname: str, user_id: int | None = None, **kw: Any) -> FakeParticipant:
        participant = FakeParticipant(nickname, user_id=user_id)
        for name, value in kw.items():
            setattr(participant, name, value)
        self.sessions.replace_older(participant)
        connection_id = self.connections.register(participant)
        self.sessions.started(participant, connection_id)
        return participant

    def claims(self, token_id: str | None = "t1", issued_s: int = START) -> TokenClaims:
        return TokenClaims("alice", 1, START + 3600, token_id=token_id, issued_ms=issued_s * 1000)

    def wait(self, coroutine: Any) -> Any:
        return self.successResultOf(Deferred.fromCoroutine(coroutine))


class LogoutTests(SessionHandlerCase):
    def test_one_token(self) -> None:
        """Revoked (stored, in memory, announced); the connections that used
        it close, the account's others stay."""
        used = self.connect("alice", 1, token_id="t1")
        other = self.connect("alice", 1, token_id="t2")
        self.wait(self.sessions.logout(self.claims()))
        self.assertTrue(self.revocations.revoked(self.claims()))
        self.assertFalse(self.revocations.revoked(self.claims("t2")))
        self.assertEqual(used.disconnected, [DisconnectReason.TOKEN_REVOKED])
        self.assertEqual(other.disconnected, [])
        self.assertEqual(
            self.successResultOf(self.store.list_revoked_tokens(0)), [("t1", START + 3600)]
        )
        self.assertEqual(
            self.bus.controls,
            [
                RevokeEvent(
                    token_id="t1",
                    expires_s=START + 3600,
                    user_id=1,
                    nickname="alice",
                    instance="i1",
                )
            ],
        )

    def test_everywhere(self) -> None:
        """Every token issued until now is refused; every connection closes."""
        phone = self.connect("alice", 1, token_id="t1")
        guest = self.connect("Alice")
        self.wait(self.sessions.logout(self.claims(), everywhere=True))
        self.assertTrue(self.revocations.revoked(self.claims("t9")))
        self.assertFalse(self.revocations.revoked(self.claims("t9", START + 1)))
        self.assertEqual(phone.disconnected, [DisconnectReason.LOGGED_OUT])
        self.assertEqual(guest.disconnected, [])
        self.assertEqual(
            self.bus.controls,
            [
                CutoffEvent(
                    user_id=1, nickname="alice", before_ms=START * 1000, close=True, instance="i1"
                )
            ],
        )

    def test_external_token(self) -> None:
        claims = TokenClaims("garin", None, START + 60, external=True)
        self.failureResultOf(Deferred.fromCoroutine(self.sessions.logout(claims)), InvalidRequest)

    def test_cut_off_without_closing(self) -> None:
        """A password change: tokens end, open connections stay."""
        alice = self.connect("alice", 1)
        self.wait(self.sessions.cut_off(1, "alice", close=False))
        self.assertTrue(self.revocations.revoked(self.claims()))
        self.assertEqual(alice.disconnected, [])
        self.assertFalse(self.bus.controls[0].close)  # type: ignore[attr-defined]

    def test_load_and_prune(self) -> None:
        """Revocations come from the store at start; expired ones are
        forgotten here and in the store by the housekeeping."""
        self.successResultOf(self.store.revoke_token("old", START - LEEWAY - 1))
        self.successResultOf(self.store.revoke_token("t1", START + 3600))
        self.successResultOf(self.store.set_token_cutoff(2, 5))
        self.wait(self.sessions.load())
        self.assertTrue(self.revocations.revoked(self.claims()))
        self.assertEqual(len(self.revocations), 2)
        self.clock.advance(3600 + LEEWAY + 1)
        self.sessions.prune()
        self.assertEqual(len(self.revocations), 1)  # the cutoff stays
        self.assertEqual(self.successResultOf(self.store.list_revoked_tokens(0)), [])


class EventsFromElsewhereTests(SessionHandlerCase):
    def test_revoke(self) -> None:
        used = self.connect("alice", 1, token_id="t1")
        self.sessions.apply_revoke(
            RevokeEvent(token_id="t1", expires_s=START + 3600, user_id=1, nickname="alice")
        )
        self.assertTrue(self.revocations.revoked(self.claims()))
        self.assertEqual(used.disconnected, [DisconnectReason.TOKEN_REVOKED])

    def test_cutoff_forgets_the_cached_password(self) -> None:
        key = "alice"
        self.credentials.remember(key, self.credentials.digest("pw"), User(1, "alice"))
        alice = self.connect("alice", 1)
        self.sessions.apply_cutoff(
            CutoffEvent(user_id=1, nickname="Alice", before_ms=START * 1000, close=False)
        )
        self.assertIsNone(self.credentials.lookup(key, self.credentials.digest("pw")))
        self.assertTrue(self.revocations.revoked(self.claims()))
        self.assertEqual(alice.disconnected, [])
        self.sessions.apply_cutoff(
            CutoffEvent(user_id=1, nickname="alice", before_ms=START * 1000, close=True)
        )
        self.assertEqual(alice.disconnected, [DisconnectReason.LOGGED_OUT])


class SingleSessionTests(SessionHandlerCase):
    single_session = True

    def test_newest_connection_wins(self) -> None:
        """Here the older connections close at once; the others are told
        which connection to keep and its session number (the store's
        per-account counter)."""
        older = self.connect("alice", 1)
        newer = self.connect("alice", 1)
        self.assertEqual(older.disconnected, [DisconnectReason.REPLACED])
        self.assertEqual(newer.disconnected, [])
        keep = self.connections.connection_id(newer)
        self.assertEqual(
            self.bus.controls[-1],
            SessionEvent(user_key="alice", keep=keep or "", number=2, instance="i1"),
        )

    def test_older_announcement_closes_nothing_newer(self) -> None:
        """An announcement that arrives late, of a session numbered below
        this instance's, leaves this one open (it is the newer)."""
        self.successResultOf(self.store.next_session(1))  # a login elsewhere: 1
        mine = self.connect("alice", 1)  # 2
        self.sessions.apply_session(
            SessionEvent(user_key="alice", keep="i2.c7", number=1, instance="i2")
        )
        self.assertEqual(mine.disconnected, [])
        self.sessions.apply_session(
            SessionEvent(user_key="alice", keep="i2.c8", number=3, instance="i2")
        )
        self.assertEqual(mine.disconnected, [DisconnectReason.REPLACED])

    def test_number_drawn_after_a_newer_announcement(self) -> None:
        """A connection whose number is still being drawn when a newer
        session is announced stays until its number comes; lower than the
        announced one, it closes itself and announces nothing."""
        held: Deferred[int] = Deferred()
        self.store.next_session = lambda user_id: held  # type: ignore[method-assign]
        mine = self.connect("alice", 1)
        controls = len(self.bus.controls)
        self.sessions.apply_session(
            SessionEvent(user_key="alice", keep="i2.c7", number=5, instance="i2")
        )
        self.assertEqual(mine.disconnected, [])
        held.callback(4)
        self.assertEqual(mine.disconnected, [DisconnectReason.REPLACED])
        self.assertEqual(len(self.bus.controls), controls)

    def test_store_cannot_count(self) -> None:
        """Without a number (the store failed), the session is announced
        unnumbered: the others close every other connection of the
        account, as before numbers."""
        self.store.next_session = lambda user_id: fail(OSError("db down"))  # type: ignore[method-assign]
        mine = self.connect("alice", 1)
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)
        keep = self.connections.connection_id(mine)
        self.assertEqual(
            self.bus.controls[-1], SessionEvent(user_key="alice", keep=keep or "", instance="i1")
        )

    def test_guests_are_not_sessions(self) -> None:
        first = self.connect("guest")
        self.connect("guest")
        self.assertEqual(first.disconnected, [])
        self.assertEqual(self.bus.controls, [])

    def test_session_elsewhere(self) -> None:
        """A newer session on another instance closes this one's accounts'
        connections (not guests of the name)."""
        mine = self.connect("alice", 1)
        guest = FakeParticipant("alice")
        self.connections.register(guest)
        self.sessions.apply_session(SessionEvent(user_key="alice", keep="i2.c7", instance="i2"))
        self.assertEqual(mine.disconnected, [DisconnectReason.REPLACED])
        self.assertEqual(guest.disconnected, [])


class TwoInstanceSessionTests(TestCase):
    """Two instances share one store (the counter) and see each other's
    announcements in whatever order the bus delivers them."""

    def instance(self, store: MemoryStore, name: str) -> Any:
        clock = Clock()
        bus = RecordingBus()
        connections = ConnectionHandler(bus, Limits(), instance_id=name, single_session=True)
        rooms = RoomHandler(
            connections, bus, clock, ServiceMetrics(), TokenBucketLimiter(clock, 0, 1), store
        )
        sessions = SessionHandler(
            store,
            store,
            connections,
            rooms,
            bus,
            clock,
            Revocations(),
            VerifiedCredentials(clock),
            instance_id=name,
            single_session=True,
        )
        return connections, sessions, bus

    def login(self, instance: Any) -> FakeParticipant:
        connections, sessions, _ = instance
        participant = FakeParticipant("alice", user_id=1)
        sessions.replace_older(participant)
        sessions.started(participant, connections.register(participant))
        return participant

    def test_simultaneous_logins_leave_exactly_one(self) -> None:
        """Ten logins spread over two instances at once, announcements
        crossing in every order: exactly one session stays, the one with
        the highest number (it used to be none: each closed the other)."""
        for order in ("forward", "backward", "interleaved"):
            store = MemoryStore()
            self.successResultOf(store.create_user("alice", b"hash", 0))
            one, two = self.instance(store, "i1"), self.instance(store, "i2")
            held: list[tuple[Deferred[int], int]] = []
            numbers = iter(range(1, 11))

            def drawn(
                user_id: int, held: list[Any] = held, numbers: Any = numbers
            ) -> Deferred[int]:
                d: Deferred[int] = Deferred()
                held.append((d, next(numbers)))
                return d

            store.next_session = drawn  # type: ignore[method-assign]
            logins = [self.login(one if i % 2 else two) for i in range(10)]
            # The store answers in some order; then the bus carries the
            # announcements across in some order.
            answers = held if order != "backward" else held[::-1]
            for d, number in answers:
                d.callback(number)
            crossing = [(e, two) for e in one[2].controls] + [(e, one) for e in two[2].controls]
            if order == "backward":
                crossing.reverse()
            elif order == "interleaved":
                crossing = crossing[::2] + crossing[1::2]
            for event, target in crossing:
                target[1].apply_session(event)
            open_now = [p for p in logins if not p.disconnected]
            self.assertEqual(len(open_now), 1, order)
            self.assertIs(open_now[0], logins[9], order)  # number 10


class MultipleSessionTests(SessionHandlerCase):
    def test_nothing_is_replaced(self) -> None:
        first = self.connect("alice", 1)
        self.connect("alice", 1)
        self.assertEqual(first.disconnected, [])
        self.assertEqual(self.bus.controls, [])
