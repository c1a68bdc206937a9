"""Tests for parkchat.handlers.accounts.AccountHandler."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from parkchat.accounts import Accounts
from parkchat.auth import LOGIN, SUSPECT_LOGIN, VerifiedCredentials
from parkchat.errors import (
    AccountExists,
    AuthenticationFailed,
    Banned,
    InvalidName,
    TooManyAttempts,
)
from parkchat.events import CutoffEvent
from parkchat.handlers.accounts import AccountHandler
from parkchat.handlers.connections import ConnectionHandler
from parkchat.handlers.moderation import ModerationHandler
from parkchat.handlers.rooms import RoomHandler
from parkchat.handlers.sessions import SessionHandler
from parkchat.limits import (
    MAX_CHECKS_PER_ADDRESS,
    Limits,
    LoginThrottle,
    RegistrationThrottle,
    TokenBucketLimiter,
)
from parkchat.metrics import ServiceMetrics
from parkchat.model import DisconnectReason, User
from parkchat.proxies import TrustedProxies
from parkchat.store.memory import MemoryStore
from parkchat.tokens import Revocations, TokenClaims
from tests.helpers import FakeParticipant, RecordingBus, sync_hasher

START = 1_757_345_400
PROXY = "10.9.9.9"


class AccountHandlerTests(TestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(START)
        self.store = MemoryStore()
        self.bus = RecordingBus()
        limits = Limits(
            login_failures=2,
            login_failures_per_address=4,
            login_backoff=60,
            login_window=60,
            trusted_proxies=TrustedProxies([PROXY]),
        )
        self.connections = connections = ConnectionHandler(self.bus, limits)
        self.metrics = ServiceMetrics()
        self.rooms = rooms = RoomHandler(
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
        self.throttle = LoginThrottle(
            self.clock,
            pair_failures=limits.login_failures,
            address_failures=limits.login_failures_per_address,
            backoff=limits.login_backoff,
            forget_after=limits.login_window,
        )
        self.accounts = AccountHandler(
            self.store,
            Accounts(self.store, sync_hasher(), self.clock, self.cache),
            self.moderation,
            sessions,
            self.throttle,
            self.metrics,
            limits,
            RegistrationThrottle(self.clock, per_address=2, per_minute=0),
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
        """After too many failures from one address the account is refused
        there without a check, counted in the metrics, until the back-off
        passes; another address is never refused; a success clears the
        count."""
        for _ in range(2):
            self.failureResultOf(self.login("wrong"), AuthenticationFailed)
        self.failureResultOf(self.login("alice-secret"), TooManyAttempts)
        self.assertEqual(self.successResultOf(self.login("alice-secret", "10.0.0.2")), self.alice)
        self.assertEqual(self.metrics.auth_failures["password"], 2)
        self.assertEqual(self.metrics.login_throttled, 1)
        self.clock.advance(60)
        self.assertEqual(self.successResultOf(self.login("alice-secret")), self.alice)
        self.failureResultOf(self.login("wrong"), AuthenticationFailed)
        self.assertEqual(self.successResultOf(self.login("alice-secret")), self.alice)

    def test_throttle_per_address(self) -> None:
        """Failures from one address throttle it for every account, except
        a trusted proxy's own address (it stands for many clients)."""
        self.successResultOf(self.accounts.register("bob", "bob-secret"))
        for name in ("carl", "dora", "erin", "fred"):
            self.failureResultOf(self.login("x", nickname=name), AuthenticationFailed)
            self.failureResultOf(self.login("x", PROXY, nickname=name), AuthenticationFailed)
        self.failureResultOf(self.login("bob-secret", nickname="bob"), TooManyAttempts)
        self.successResultOf(self.login("bob-secret", PROXY, nickname="bob"))

    def test_concurrent_checks_per_address(self) -> None:
        """One address gets at most MAX_CHECKS_PER_ADDRESS password checks
        at once (a crowd of parallel guesses would all start before the
        first failure counts); other addresses are not affected."""
        hasher = self.accounts._accounts._hasher
        held: list[Deferred[Any]] = []
        self.patch(hasher, "_run", lambda f, *args: held.append(Deferred()) or held[-1])
        guesses = [self.login(f"guess{i}") for i in range(MAX_CHECKS_PER_ADDRESS)]
        self.failureResultOf(self.login("one-more"), TooManyAttempts)
        other = self.login("other-guess", "10.0.0.2")
        self.assertEqual(len(held), MAX_CHECKS_PER_ADDRESS + 1)
        for d in held:
            d.callback(False)
        for guess in guesses:
            self.failureResultOf(guess, AuthenticationFailed)
        self.failureResultOf(other, AuthenticationFailed)

    def test_suspect_logins_wait_behind_clean_ones(self) -> None:
        """After a failure from an address, its next checks go to the bcrypt
        queue as SUSPECT_LOGIN; another address's stay LOGIN."""
        hasher = self.accounts._accounts._hasher
        priorities: list[int] = []
        verify = hasher.verify
        self.patch(
            hasher,
            "verify",
            lambda password, hashed, priority=LOGIN: (
                priorities.append(priority) or verify(password, hashed, priority)
            ),
        )
        self.failureResultOf(self.login("wrong"), AuthenticationFailed)
        self.failureResultOf(self.login("wrong-again"), AuthenticationFailed)
        self.failureResultOf(self.login("other", "10.0.0.2"), AuthenticationFailed)
        self.assertEqual(priorities, [LOGIN, SUSPECT_LOGIN, LOGIN])

    def test_registration_throttle(self) -> None:
        """Registrations from a client are throttled per address (429) before
        any hashing; an administrator's (no address) are not; a bad name
        does not spend the budget."""
        register = self.accounts.register
        self.failureResultOf(register("bad name", "pw-secret", "10.0.0.1"), InvalidName)
        self.successResultOf(register("bob", "bob-secret", "10.0.0.1"))
        self.successResultOf(register("carl", "carl-secret", "10.0.0.1"))
        error = self.failureResultOf(register("dora", "dora-secret", "10.0.0.1"), TooManyAttempts)
        self.assertIn("from this address", error.value.message)
        self.successResultOf(register("dora", "dora-secret", "10.0.0.2"))
        for name in ("erin", "fred", "gina"):
            self.successResultOf(register(name, "pw-secret"))

    def test_portal_login(self) -> None:
        self.assertEqual(
            self.successResultOf(self.accounts.login_for_cred("alice", "alice-secret", "")),
            self.alice,
        )

    def test_change_password(self) -> None:
        """The old password stops working at once (cache included), tokens
        issued until now are cut off, and the account's open connections
        close, here and (the event's ``close``) on every other instance
        (issue 15, item 10); another account's stay."""
        laptop = FakeParticipant("alice", user_id=1)
        other = FakeParticipant("bob", user_id=2)
        self.connections.register(laptop)
        self.connections.register(other)
        self.successResultOf(self.accounts.authenticate("alice", "alice-secret"))  # cached
        self.successResultOf(self.accounts.change_password("alice", "new-secret-1"))
        self.failureResultOf(
            self.accounts.authenticate("alice", "alice-secret"), AuthenticationFailed
        )
        self.assertEqual(
            [e for e in self.bus.controls if isinstance(e, CutoffEvent)],
            [CutoffEvent(user_id=1, nickname="alice", before_ms=START * 1000, close=True)],
        )
        self.assertTrue(
            self.revocations.revoked(TokenClaims("alice", 1, START + 60, issued_ms=START * 1000))
        )
        self.assertEqual(laptop.disconnected, [DisconnectReason.LOGGED_OUT])
        self.assertEqual(other.disconnected, [])
        self.assertIsNone(self.connections.connection_id(laptop))

    def test_change_password_without_revoking_connections(self) -> None:
        """With ``--revoke-on-password-change no`` the tokens are still cut
        off but open connections stay (the behaviour before issue 15)."""
        self.accounts._revoke_on_password_change = False
        laptop = FakeParticipant("alice", user_id=1)
        self.connections.register(laptop)
        self.successResultOf(self.accounts.change_password("alice", "new-secret-1"))
        self.assertEqual(
            [e for e in self.bus.controls if isinstance(e, CutoffEvent)],
            [CutoffEvent(user_id=1, nickname="alice", before_ms=START * 1000, close=False)],
        )
        self.assertEqual(laptop.disconnected, [])

    def test_admit_token(self) -> None:
        """A token of a banned account, or an external token naming a
        registered account, is refused."""
        admit = self.accounts.admit_token
        self.successResultOf(Deferred.fromCoroutine(admit("alice", 1)))
        self.successResultOf(Deferred.fromCoroutine(admit("garin", None)))
        self.failureResultOf(Deferred.fromCoroutine(admit("Alice", None)), AuthenticationFailed)
        self.successResultOf(Deferred.fromCoroutine(self.moderation.ban("alice")))
        self.failureResultOf(Deferred.fromCoroutine(admit("alice", 1)), Banned)
