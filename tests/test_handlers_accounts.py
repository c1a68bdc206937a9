"""Tests for parkchat.handlers.accounts.AccountHandler."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from parkchat.accounts import Accounts
from parkchat.auth import VerifiedCredentials
from parkchat.errors import AccountExists, AuthenticationFailed, Banned, TooManyAttempts
from parkchat.events import CutoffEvent
from parkchat.handlers.accounts import AccountHandler
from parkchat.handlers.connections import ConnectionHandler
from parkchat.handlers.moderation import ModerationHandler
from parkchat.handlers.rooms import RoomHandler
from parkchat.handlers.sessions import SessionHandler
from parkchat.limits import Limits, LoginThrottle, TokenBucketLimiter
from parkchat.metrics import ServiceMetrics
from parkchat.model import User
from parkchat.proxies import TrustedProxies
from parkchat.store.memory import MemoryStore
from parkchat.tokens import Revocations, TokenClaims
from tests.helpers import RecordingBus, sync_hasher

START = 1_757_345_400
PROXY = "10.9.9.9"


class AccountHandlerTests(TestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(START)
        self.store = MemoryStore()
        self.bus = RecordingBus()
        limits = Limits(login_failures=2, login_window=60, trusted_proxies=TrustedProxies([PROXY]))
        connections = ConnectionHandler(self.bus, limits)
        self.metrics = ServiceMetrics()
        rooms = RoomHandler(
            connections,
            self.bus,
            self.clock,
            self.metrics,
            TokenBucketLimiter(self.clock, 0, 1),
            self.store,
        )
        self.moderation = ModerationHandler(self.store, self.store, rooms, self.bus, self.clock)
        self.cache = VerifiedCredentials(self.clock)
        self.revocations = Revocations()
        sessions = SessionHandler(
            self.store,
            self.store,
            connections,
            rooms,
            self.bus,
            self.clock,
            self.revocations,
            self.cache,
        )
        self.throttle = LoginThrottle(self.clock, limits.login_failures, limits.login_window)
        self.accounts = AccountHandler(
            self.store,
            Accounts(self.store, sync_hasher(), self.clock, self.cache),
            self.moderation,
            sessions,
            self.throttle,
            self.metrics,
            limits,
        )
        self.alice = self.successResultOf(self.accounts.register("alice", "alice-secret"))

    def login(
        self, password: str, peer: str = "10.0.0.1", nickname: str = "alice"
    ) -> Deferred[Any]:
        return Deferred.fromCoroutine(self.accounts.login(nickname, password, peer))

    def test_register_and_authenticate(self) -> None:
        self.assertEqual(self.alice, User(1, "alice"))
        self.failureResultOf(self.accounts.register("ALICE", "x-secret"), AccountExists)
        self.assertTrue(self.successResultOf(self.accounts.account_exists("Alice")))
        self.assertFalse(self.successResultOf(self.accounts.account_exists("bob")))
        self.assertEqual(
            self.successResultOf(self.accounts.authenticate("alice", "alice-secret")), self.alice
        )
        self.failureResultOf(self.accounts.authenticate("alice", "nope"), AuthenticationFailed)
        self.assertEqual(self.successResultOf(self.accounts.list_accounts(10)), [self.alice])

    def test_banned_accounts_are_refused(self) -> None:
        self.successResultOf(Deferred.fromCoroutine(self.moderation.ban("alice")))
        self.failureResultOf(self.accounts.authenticate("alice", "alice-secret"), Banned)

    def test_throttle(self) -> None:
        """After too many failures the account is refused without a check,
        counted in the metrics, until the window passes; a success clears
        the account's count."""
        for _ in range(2):
            self.failureResultOf(self.login("wrong"), AuthenticationFailed)
        self.failureResultOf(self.login("alice-secret", "10.0.0.2"), TooManyAttempts)
        self.assertEqual(self.metrics.auth_failures["password"], 2)
        self.assertEqual(self.metrics.login_throttled, 1)
        self.clock.advance(61)
        self.assertEqual(self.successResultOf(self.login("alice-secret")), self.alice)
        self.failureResultOf(self.login("wrong"), AuthenticationFailed)
        self.assertEqual(self.successResultOf(self.login("alice-secret")), self.alice)

    def test_throttle_per_address(self) -> None:
        """Failures from one address throttle it for every account, except
        a trusted proxy's own address (it stands for many clients)."""
        self.successResultOf(self.accounts.register("bob", "bob-secret"))
        for name in ("carl", "dora"):
            self.failureResultOf(self.login("x", nickname=name), AuthenticationFailed)
            self.failureResultOf(self.login("x", PROXY, nickname=name), AuthenticationFailed)
        self.failureResultOf(self.login("bob-secret", nickname="bob"), TooManyAttempts)
        self.successResultOf(self.login("bob-secret", PROXY, nickname="bob"))

    def test_portal_login(self) -> None:
        self.assertEqual(
            self.successResultOf(self.accounts.login_for_cred("alice", "alice-secret", "")),
            self.alice,
        )

    def test_change_password(self) -> None:
        """The old password stops working at once (cache included), tokens
        issued until now are cut off everywhere, connections stay."""
        self.successResultOf(self.accounts.authenticate("alice", "alice-secret"))  # cached
        self.successResultOf(self.accounts.change_password("alice", "new-secret-1"))
        self.failureResultOf(
            self.accounts.authenticate("alice", "alice-secret"), AuthenticationFailed
        )
        self.assertEqual(
            [e for e in self.bus.controls if isinstance(e, CutoffEvent)],
            [CutoffEvent(user_id=1, nickname="alice", before_ms=START * 1000, close=False)],
        )
        self.assertTrue(
            self.revocations.revoked(TokenClaims("alice", 1, START + 60, issued_ms=START * 1000))
        )

    def test_admit_token(self) -> None:
        """A token of a banned account, or an external token naming a
        registered account, is refused."""
        admit = self.accounts.admit_token
        self.successResultOf(Deferred.fromCoroutine(admit("alice", 1)))
        self.successResultOf(Deferred.fromCoroutine(admit("garin", None)))
        self.failureResultOf(Deferred.fromCoroutine(admit("Alice", None)), AuthenticationFailed)
        self.successResultOf(Deferred.fromCoroutine(self.moderation.ban("alice")))
        self.failureResultOf(Deferred.fromCoroutine(admit("alice", 1)), Banned)
