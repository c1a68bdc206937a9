"""Tests for parkchat.auth and parkchat.accounts: bcrypt off the reactor, the
verified-credential cache, the twisted.cred glue and account operations."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import CancelledError, Deferred, fail, maybeDeferred
from twisted.internet.task import Clock
from twisted.python.threadpool import ThreadPool
from twisted.trial.unittest import TestCase
from zope.interface import Interface

from parkchat.accounts import Accounts, validate_password
from parkchat.auth import (
    MAX_PASSWORD_LENGTH,
    REGISTRATION,
    SUSPECT_LOGIN,
    AccountChecker,
    ChatRealm,
    IChatUser,
    PasswordHasher,
    VerifiedCredentials,
    check_password_blocking,
    hash_password_blocking,
    make_portal,
)
from parkchat.errors import (
    AccountExists,
    AuthenticationFailed,
    InvalidName,
    InvalidPassword,
    ServiceBusy,
    StorageFailed,
)
from parkchat.model import User
from parkchat.store.memory import MemoryStore
from tests.helpers import TEST_ROUNDS, sync_hasher


def without_peer(
    authenticate: Callable[[str, str], Deferred[User]],
) -> Callable[[str, str, str], Deferred[User]]:
    """Adapt ``Accounts.authenticate`` to the checker's (name, password, peer)."""
    return lambda nickname, password, peer: authenticate(nickname, password)


class ControlledRun:
    """A ``run`` for PasswordHasher that counts calls and, when ``hold`` is
    set, keeps each job until the test runs it (as a thread pool would)."""

    def __init__(self) -> None:
        self.calls: list[Callable[..., Any]] = []
        self.hold = False
        self.jobs: list[tuple[Callable[..., Any], tuple[Any, ...], Deferred[Any]]] = []

    def __call__(self, f: Callable[..., Any], *args: Any) -> Deferred[Any]:
        self.calls.append(f)
        if not self.hold:
            return maybeDeferred(f, *args)
        d: Deferred[Any] = Deferred()
        self.jobs.append((f, args, d))
        return d

    def run(self, index: int = 0) -> None:
        """Run the held job at ``index`` and fire its Deferred."""
        f, args, d = self.jobs.pop(index)
        d.callback(f(*args))

    def run_all(self) -> None:
        while self.jobs:
            self.run(0)

    def checks(self) -> int:
        return sum(1 for f in self.calls if f is check_password_blocking)


class PasswordHasherTests(TestCase):
    """bcrypt hashing and checking through an injected ``run``."""

    def test_round_trip(self) -> None:
        """A hash verifies its password and no other."""
        hasher = sync_hasher()
        hashed = self.successResultOf(hasher.hash("s3cret"))
        self.assertTrue(hashed.startswith(b"$2"))
        self.assertTrue(self.successResultOf(hasher.verify("s3cret", hashed)))
        self.assertFalse(self.successResultOf(hasher.verify("s3cret ", hashed)))
        self.assertFalse(self.successResultOf(hasher.verify("S3cret", hashed)))

    def test_rounds_used(self) -> None:
        """The configured cost is written into the hash."""
        hashed = self.successResultOf(sync_hasher(rounds=5).hash("pw"))
        self.assertEqual(hashed.split(b"$")[2], b"05")

    def test_salted(self) -> None:
        """The same password hashes differently each time."""
        hasher = sync_hasher()
        self.assertNotEqual(
            self.successResultOf(hasher.hash("pw")), self.successResultOf(hasher.hash("pw"))
        )

    def test_long_passwords_every_character_counts(self) -> None:
        """Passwords longer than bcrypt's 72 bytes differ past byte 72 and still
        tell apart (plain bcrypt would truncate or refuse them)."""
        hasher = sync_hasher()
        long = "a" * 100
        hashed = self.successResultOf(hasher.hash(long))
        self.assertTrue(self.successResultOf(hasher.verify(long, hashed)))
        self.assertFalse(self.successResultOf(hasher.verify("a" * 99 + "b", hashed)))
        self.assertFalse(self.successResultOf(hasher.verify("a" * 72, hashed)))

    def test_multibyte_passwords(self) -> None:
        """Non-ASCII passwords round-trip; 30 four-byte characters are > 72 bytes."""
        hasher = sync_hasher()
        password = "🔑" * 30
        hashed = self.successResultOf(hasher.hash(password))
        self.assertTrue(self.successResultOf(hasher.verify(password, hashed)))
        self.assertFalse(self.successResultOf(hasher.verify("🔑" * 29 + "🔒", hashed)))

    def test_nul_bytes_count(self) -> None:
        """A NUL in the password neither breaks hashing nor truncates it."""
        hasher = sync_hasher()
        hashed = self.successResultOf(hasher.hash("ab\x00cd"))
        self.assertTrue(self.successResultOf(hasher.verify("ab\x00cd", hashed)))
        self.assertFalse(self.successResultOf(hasher.verify("ab\x00ce", hashed)))

    def test_unknown_account_checks_dummy(self) -> None:
        """With no hash (no such account) verify still runs bcrypt and fires False."""
        run = ControlledRun()
        hasher = PasswordHasher(run, rounds=TEST_ROUNDS)
        self.assertIs(self.successResultOf(hasher.verify("anything", None)), False)
        self.assertEqual(run.checks(), 1)

    def test_corrupt_hash_is_a_failed_check(self) -> None:
        """A malformed stored hash verifies as False, not as an error."""
        hasher = sync_hasher()
        self.assertFalse(self.successResultOf(hasher.verify("pw", b"not a bcrypt hash")))

    def test_work_goes_through_run(self) -> None:
        """Hashing and checking are handed to ``run`` (the thread pool)."""
        run = ControlledRun()
        run.hold = True
        hasher = PasswordHasher(run, rounds=TEST_ROUNDS)
        d = hasher.hash("pw")
        self.assertNoResult(d)
        self.assertEqual(hasher.pending, 1)
        run.run()
        self.assertEqual(hasher.pending, 0)
        self.assertTrue(check_password_blocking("pw", self.successResultOf(d)))

    def test_max_pending(self) -> None:
        """Past max_pending checks in progress, more raise ServiceBusy; a slot
        frees when one finishes, whether it succeeded or failed."""
        run = ControlledRun()
        run.hold = True
        hasher = PasswordHasher(run, rounds=TEST_ROUNDS, max_pending=2)
        hashed = hash_password_blocking("pw", TEST_ROUNDS)
        first = hasher.verify("pw", hashed)
        second = hasher.verify("pw", None)
        error = self.assertRaises(ServiceBusy, hasher.verify, "pw", hashed)
        self.assertEqual(error.http_status, 503)
        self.assertRaises(ServiceBusy, hasher.hash, "pw")
        self.assertEqual(len(run.jobs), 2)
        run.run(0)
        self.assertTrue(self.successResultOf(first))
        third = hasher.verify("pw", hashed)
        # A job that fails also gives its slot back.
        _, _, d = run.jobs.pop(0)
        d.errback(RuntimeError("thread died"))
        self.failureResultOf(second, RuntimeError)
        self.assertEqual(hasher.pending, 1)
        run.run_all()
        self.assertTrue(self.successResultOf(third))
        self.assertEqual(hasher.pending, 0)

    def test_on_threadpool(self) -> None:
        """on_threadpool builds a hasher with the given cost and bound, handing
        the pool at most as many jobs as it has threads."""
        hasher = PasswordHasher.on_threadpool(
            object(), ThreadPool(minthreads=0, maxthreads=3), rounds=4, max_pending=3
        )
        self.assertEqual(hasher.rounds, 4)
        self.assertEqual(hasher.max_pending, 3)
        self.assertEqual(hasher.concurrency, 3)


class BcryptQueueTests(TestCase):
    """The bcrypt queue in front of the pool: logins before registrations."""

    def setUp(self) -> None:
        self.run = ControlledRun()
        self.run.hold = True
        self.hashed = hash_password_blocking("pw", TEST_ROUNDS)
        self.hasher = PasswordHasher(
            self.run, rounds=TEST_ROUNDS, max_pending=20, concurrency=2,
            max_pending_registrations=8,
        )  # fmt: skip

    def test_only_concurrency_jobs_run(self) -> None:
        """No more jobs go to the pool than it has threads; the rest wait
        here, and each finished job lets the next one in."""
        results = [self.hasher.verify("pw", self.hashed) for _ in range(5)]
        self.assertEqual(len(self.run.jobs), 2)
        self.assertEqual((self.hasher.pending, self.hasher.waiting), (5, 3))
        self.run.run(0)
        self.assertEqual(len(self.run.jobs), 2)
        self.run.run_all()
        self.assertEqual([self.successResultOf(d) for d in results], [True] * 5)
        self.assertEqual((self.hasher.pending, self.hasher.waiting), (0, 0))

    def test_logins_overtake_registrations(self) -> None:
        """With the threads busy with a storm of registrations, a login
        waits only for the jobs running: it is the next to run."""
        storm = [self.hasher.hash("new-pw", REGISTRATION) for _ in range(8)]
        self.assertEqual(len(self.run.jobs), 2)
        login = self.hasher.verify("pw", self.hashed)
        self.run.run(0)  # one registration finishes: the login goes next
        self.assertEqual(self.run.jobs[-1][0], check_password_blocking)
        self.run.run(1)
        self.assertTrue(self.successResultOf(login))
        self.run.run_all()
        for d in storm:
            self.assertTrue(self.successResultOf(d).startswith(b"$2"))

    def test_clean_logins_overtake_suspect_ones(self) -> None:
        """A guessing crowd's checks (from addresses with recent failures)
        wait behind a login from a clean address, and before registrations."""
        guesses = [self.hasher.verify("guess", self.hashed, SUSPECT_LOGIN) for _ in range(6)]
        signup = self.hasher.hash("new-pw", REGISTRATION)
        owner = self.hasher.verify("pw", self.hashed)
        self.run.run(0)  # a guess finishes: the owner's check is next
        self.assertEqual(self.run.jobs[-1][1][0], "pw")
        self.run.run(1)
        self.assertTrue(self.successResultOf(owner))
        self.run.run_all()
        self.assertEqual([self.successResultOf(d) for d in guesses], [False] * 6)
        self.assertTrue(self.successResultOf(signup).startswith(b"$2"))
        self.assertEqual(self.run.calls[-1], hash_password_blocking)

    def test_registrations_have_their_own_bound(self) -> None:
        """Registrations past their bound are ServiceBusy while logins still
        queue: a storm of new accounts cannot fill the queue for logins."""
        for _ in range(8):
            self.hasher.hash("new-pw", REGISTRATION)
        self.assertRaises(ServiceBusy, self.hasher.hash, "new-pw", REGISTRATION)
        logins = [self.hasher.verify("pw", self.hashed) for _ in range(12)]
        self.assertRaises(ServiceBusy, self.hasher.verify, "pw", self.hashed)
        self.run.run_all()
        self.assertEqual([self.successResultOf(d) for d in logins], [True] * 12)

    def test_cancelled_while_waiting(self) -> None:
        """A waiting job whose caller gave up leaves the queue without
        costing a bcrypt; a running one finishes and is dropped."""
        running = [self.hasher.hash("x", REGISTRATION) for _ in range(2)]
        waiting = self.hasher.hash("y", REGISTRATION)
        waiting.cancel()
        self.failureResultOf(waiting, CancelledError)
        self.assertEqual((self.hasher.pending, self.hasher.waiting), (2, 0))
        running[0].cancel()
        self.failureResultOf(running[0], CancelledError)
        self.run.run_all()
        self.assertEqual(len(self.run.calls), 2)
        self.successResultOf(running[1])
        self.assertEqual(self.hasher.pending, 0)

    def test_no_recursion_with_an_inline_run(self) -> None:
        """An inline run (tests) works through a long queue in a loop."""
        hasher = PasswordHasher(lambda f, *a: maybeDeferred(f, *a), rounds=4, concurrency=1)
        results = [hasher.verify("pw", self.hashed) for _ in range(50)]
        self.assertEqual([self.successResultOf(d) for d in results], [True] * 50)

    def test_blocking_helpers(self) -> None:
        """The blocking functions agree with each other."""
        hashed = hash_password_blocking("pw", TEST_ROUNDS)
        self.assertTrue(check_password_blocking("pw", hashed))
        self.assertFalse(check_password_blocking("pW", hashed))


class VerifiedCredentialsTests(TestCase):
    """The cache of recent verifications: no plaintext, TTL, LRU bound, forget."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.cache = VerifiedCredentials(self.clock, ttl=60, max_entries=3)
        self.alice = User(1, "alice")

    def test_remember_and_lookup(self) -> None:
        """A remembered pair is found with the same password only."""
        self.cache.remember("alice", self.cache.digest("pw"), self.alice)
        self.assertEqual(self.cache.lookup("alice", self.cache.digest("pw")), self.alice)
        self.assertIsNone(self.cache.lookup("alice", self.cache.digest("other")))
        self.assertIsNone(self.cache.lookup("bob", self.cache.digest("pw")))

    def test_no_plaintext_stored(self) -> None:
        """Entries hold an HMAC, never the password or its plain SHA-256 or bcrypt input."""
        password = "correct horse battery staple"
        self.cache.remember("alice", self.cache.digest(password), self.alice)
        self.assertEqual(len(self.cache), 1)
        for key, entry in self.cache._entries.items():
            stored = entry[0]
            self.assertEqual(len(stored), 32)
            self.assertNotIn(password.encode(), stored)
            self.assertNotEqual(stored, hashlib.sha256(password.encode()).digest())
            for part in (key, *entry):
                self.assertNotIn(password, repr(part))

    def test_digest_keyed_per_process(self) -> None:
        """Two caches (two processes) digest the same password differently."""
        other = VerifiedCredentials(self.clock)
        self.assertNotEqual(self.cache.digest("pw"), other.digest("pw"))
        self.assertEqual(self.cache.digest("pw"), self.cache.digest("pw"))

    def test_ttl_expiry(self) -> None:
        """An entry is valid until ttl seconds have passed, then gone."""
        self.cache.remember("alice", self.cache.digest("pw"), self.alice)
        self.clock.advance(59.9)
        self.assertEqual(self.cache.lookup("alice", self.cache.digest("pw")), self.alice)
        self.clock.advance(0.1)
        self.assertIsNone(self.cache.lookup("alice", self.cache.digest("pw")))
        self.assertEqual(len(self.cache), 0)

    def test_lookup_does_not_extend_ttl(self) -> None:
        """Using an entry does not keep it alive past its TTL."""
        self.cache.remember("alice", self.cache.digest("pw"), self.alice)
        for _ in range(5):
            self.clock.advance(11)
            self.assertIsNotNone(self.cache.lookup("alice", self.cache.digest("pw")))
        self.clock.advance(6)
        self.assertIsNone(self.cache.lookup("alice", self.cache.digest("pw")))

    def test_lru_bound(self) -> None:
        """Past max_entries the least recently used entry is dropped."""
        for i in range(3):
            self.cache.remember(f"u{i}", self.cache.digest("pw"), User(i, f"u{i}"))
        # Touch u0 so that u1 is now the least recently used.
        self.assertIsNotNone(self.cache.lookup("u0", self.cache.digest("pw")))
        self.cache.remember("u3", self.cache.digest("pw"), User(3, "u3"))
        self.assertEqual(len(self.cache), 3)
        self.assertIsNone(self.cache.lookup("u1", self.cache.digest("pw")))
        for name in ("u0", "u2", "u3"):
            self.assertIsNotNone(self.cache.lookup(name, self.cache.digest("pw")))

    def test_remember_replaces(self) -> None:
        """One entry per account: remembering again replaces the password."""
        self.cache.remember("alice", self.cache.digest("old"), self.alice)
        self.cache.remember("alice", self.cache.digest("new"), self.alice)
        self.assertEqual(len(self.cache), 1)
        self.assertIsNone(self.cache.lookup("alice", self.cache.digest("old")))
        self.assertIsNotNone(self.cache.lookup("alice", self.cache.digest("new")))

    def test_forget(self) -> None:
        """forget drops an account's entry; forgetting an unknown one is harmless."""
        self.cache.remember("alice", self.cache.digest("pw"), self.alice)
        self.cache.forget("alice")
        self.cache.forget("nobody")
        self.assertIsNone(self.cache.lookup("alice", self.cache.digest("pw")))
        self.assertEqual(len(self.cache), 0)

    def test_clear(self) -> None:
        """clear empties the cache."""
        self.cache.remember("alice", self.cache.digest("pw"), self.alice)
        self.cache.clear()
        self.assertEqual(len(self.cache), 0)

    def test_disabled(self) -> None:
        """ttl 0 or max_entries 0 turns caching off."""
        for cache in (
            VerifiedCredentials(self.clock, ttl=0),
            VerifiedCredentials(self.clock, max_entries=0),
        ):
            cache.remember("alice", cache.digest("pw"), self.alice)
            self.assertEqual(len(cache), 0)


class AccountsTests(TestCase):
    """Registration, authentication with the cache, and password changes."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.store = MemoryStore()
        self.bcrypt = ControlledRun()
        self.hasher = PasswordHasher(self.bcrypt, rounds=TEST_ROUNDS)
        self.accounts = Accounts(self.store, self.hasher, self.clock)

    def register(self, nickname: object, password: object) -> Deferred[User]:
        """Register, then empty the verification cache (registration warms
        it), so that cache tests start cold, as after a restart."""
        d = Deferred.fromCoroutine(self.accounts.register(nickname, password))

        def cold(user: User) -> User:
            self.accounts.cache.clear()
            return user

        return d.addCallback(cold)

    def test_registration_warms_the_cache(self) -> None:
        """The first login right after registering costs no bcrypt check:
        registration has just hashed that very password."""
        self.successResultOf(Deferred.fromCoroutine(self.accounts.register("alice", "pw")))
        before = self.bcrypt.checks()
        self.assertEqual(
            self.successResultOf(self.accounts.authenticate("alice", "pw")).nickname, "alice"
        )
        self.assertEqual(self.bcrypt.checks(), before)
        self.failureResultOf(self.accounts.authenticate("alice", "wrong"), AuthenticationFailed)

    def test_unwritable_store_is_storage_failed(self) -> None:
        """A database that refuses the write (read-only, full) answers
        StorageFailed (503), not an internal error; the failure is logged."""

        def refuse(*args: Any) -> Deferred[Any]:
            return fail(OSError("attempt to write a readonly database"))

        self.store.create_user = refuse  # type: ignore[method-assign]
        failure = self.failureResultOf(self.register("alice", "pw"), StorageFailed)
        self.assertIn("could not be stored", failure.value.message)
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)

    def test_taken_name_costs_no_hash(self) -> None:
        """A registration of a taken name is refused before bcrypt runs."""
        self.successResultOf(self.register("alice", "pw"))
        jobs = len(self.bcrypt.jobs)
        self.failureResultOf(self.register("Alice", "other"), AccountExists)
        self.assertEqual(len(self.bcrypt.jobs), jobs)

    def authenticate(self, nickname: str, password: str) -> Deferred[User]:
        return maybeDeferred(self.accounts.authenticate, nickname, password)

    def change_password(self, nickname: str, password: object) -> Deferred[None]:
        return Deferred.fromCoroutine(self.accounts.change_password(nickname, password))

    def test_register(self) -> None:
        """register stores a bcrypt hash (not the password) and returns the User."""
        user = self.successResultOf(self.register("Alice", "pw1"))
        self.assertEqual(user, User(1, "Alice"))
        stored = self.successResultOf(self.store.get_user("alice"))
        assert stored is not None
        self.assertNotIn(b"pw1", stored.password_hash)
        self.assertTrue(check_password_blocking("pw1", stored.password_hash))

    def test_register_invalid_nickname(self) -> None:
        """Bad or missing nicknames fail with InvalidName before any hashing."""
        for nickname in ["", None, "a b", "a:b", "x" * 33, 7]:
            self.failureResultOf(self.register(nickname, "pw"), InvalidName)
        self.assertEqual(self.bcrypt.calls, [])

    def test_register_invalid_password(self) -> None:
        """Empty, missing, non-string and over-long passwords fail with InvalidPassword."""
        for password in ["", None, 1234, ["pw"], "x" * (MAX_PASSWORD_LENGTH + 1)]:
            self.failureResultOf(self.register("alice", password), InvalidPassword)
        self.assertEqual(self.bcrypt.calls, [])
        self.successResultOf(self.register("alice", "x" * MAX_PASSWORD_LENGTH))

    def test_register_unencodable_password(self) -> None:
        """A password with a lone surrogate (possible in JSON) is InvalidPassword,
        not an internal error."""
        self.failureResultOf(self.register("alice", "pw\ud800"), InvalidPassword)

    def test_validate_password(self) -> None:
        """validate_password returns good passwords unchanged."""
        self.assertEqual(validate_password(" spaced pw "), " spaced pw ")

    def test_duplicate_case_insensitive(self) -> None:
        """A nickname taken in another case fails with AccountExists (409)."""
        self.successResultOf(self.register("Alice", "pw"))
        for nickname in ["Alice", "alice", "ALICE", "\uff41\uff4c\uff49\uff43\uff45"]:
            failure = self.failureResultOf(self.register(nickname, "pw"), AccountExists)
            self.assertEqual(failure.value.http_status, 409)

    def test_authenticate(self) -> None:
        """The right password gives the User, in any case of the nickname."""
        self.successResultOf(self.register("Alice", "pw"))
        self.assertEqual(self.successResultOf(self.authenticate("alice", "pw")), User(1, "Alice"))

    def test_authenticate_failures(self) -> None:
        """Wrong password, unknown account, empty fields and over-long passwords
        all fail with the same AuthenticationFailed."""
        self.successResultOf(self.register("alice", "pw"))
        for nickname, password in [
            ("alice", "wrong"),
            ("alice", "PW"),
            ("nobody", "pw"),
            ("", "pw"),
            ("alice", ""),
            ("alice", "x" * (MAX_PASSWORD_LENGTH + 1)),
            ("alice", "pw\udc80"),
        ]:
            failure = self.failureResultOf(self.authenticate(nickname, password))
            self.assertIs(failure.type, AuthenticationFailed, (nickname, password))
            self.assertEqual(failure.value.message, "invalid nickname or password")

    def test_unknown_account_costs_a_bcrypt(self) -> None:
        """An unknown nickname still pays a bcrypt check (no timing oracle)."""
        self.failureResultOf(self.authenticate("nobody", "pw"), AuthenticationFailed)
        self.assertEqual(self.bcrypt.checks(), 1)

    def test_success_cached(self) -> None:
        """A second check of the same credentials does not call bcrypt, even
        with the nickname in another case."""
        self.successResultOf(self.register("alice", "pw"))
        self.successResultOf(self.authenticate("alice", "pw"))
        self.assertEqual(self.bcrypt.checks(), 1)
        self.assertEqual(self.successResultOf(self.authenticate("alice", "pw")).nickname, "alice")
        self.successResultOf(self.authenticate("ALICE", "pw"))
        self.assertEqual(self.bcrypt.checks(), 1)

    def test_cache_entry_expires(self) -> None:
        """After the cache TTL, bcrypt runs again."""
        self.successResultOf(self.register("alice", "pw"))
        self.successResultOf(self.authenticate("alice", "pw"))
        self.clock.advance(self.accounts.cache.ttl)
        self.successResultOf(self.authenticate("alice", "pw"))
        self.assertEqual(self.bcrypt.checks(), 2)

    def test_wrong_password_never_cached(self) -> None:
        """Every wrong guess pays a full bcrypt, before and after a success."""
        self.successResultOf(self.register("alice", "pw"))
        self.failureResultOf(self.authenticate("alice", "guess"), AuthenticationFailed)
        self.failureResultOf(self.authenticate("alice", "guess"), AuthenticationFailed)
        self.assertEqual(self.bcrypt.checks(), 2)
        self.successResultOf(self.authenticate("alice", "pw"))
        self.failureResultOf(self.authenticate("alice", "guess"), AuthenticationFailed)
        self.assertEqual(self.bcrypt.checks(), 4)
        self.assertEqual(len(self.accounts.cache), 1)

    def test_concurrent_checks_share_one_bcrypt(self) -> None:
        """Identical checks in flight together cost one bcrypt and all succeed."""
        self.successResultOf(self.register("alice", "pw"))
        self.bcrypt.hold = True
        ds = [self.authenticate(name, "pw") for name in ("alice", "alice", "Alice")]
        self.assertEqual(len(self.bcrypt.jobs), 1)
        for d in ds:
            self.assertNoResult(d)
        self.bcrypt.run_all()
        for d in ds:
            self.assertEqual(self.successResultOf(d), User(1, "alice"))
        self.assertEqual(self.bcrypt.checks(), 1)

    def test_concurrent_wrong_passwords_all_fail(self) -> None:
        """Shared in-flight wrong checks fail every waiter and cache nothing."""
        self.successResultOf(self.register("alice", "pw"))
        self.bcrypt.hold = True
        ds = [self.authenticate("alice", "bad") for _ in range(3)]
        self.bcrypt.run_all()
        for d in ds:
            self.failureResultOf(d, AuthenticationFailed)
        self.assertEqual(len(self.accounts.cache), 0)

    def test_different_passwords_not_shared(self) -> None:
        """Checks with different passwords run separately: a wrong one is not
        answered by a right one's result."""
        self.successResultOf(self.register("alice", "pw"))
        self.bcrypt.hold = True
        good = self.authenticate("alice", "pw")
        bad = self.authenticate("alice", "bad")
        self.assertEqual(len(self.bcrypt.jobs), 2)
        self.bcrypt.run_all()
        self.successResultOf(good)
        self.failureResultOf(bad, AuthenticationFailed)

    def test_busy_hasher_fails_waiters(self) -> None:
        """With the bcrypt queue full, authentication fails with ServiceBusy."""
        hasher = PasswordHasher(self.bcrypt, rounds=TEST_ROUNDS, max_pending=0)
        accounts = Accounts(self.store, hasher, self.clock)
        self.failureResultOf(maybeDeferred(accounts.authenticate, "alice", "pw"), ServiceBusy)
        self.assertEqual(accounts._in_flight, {})

    def test_change_password(self) -> None:
        """After a change the new password works and the cached old one does not."""
        self.successResultOf(self.register("alice", "old"))
        self.successResultOf(self.authenticate("alice", "old"))
        self.successResultOf(self.change_password("Alice", "new"))
        self.failureResultOf(self.authenticate("alice", "old"), AuthenticationFailed)
        self.successResultOf(self.authenticate("alice", "new"))

    def test_change_password_validation(self) -> None:
        """Invalid new passwords and unknown accounts are refused."""
        self.successResultOf(self.register("alice", "old"))
        self.failureResultOf(self.change_password("alice", ""), InvalidPassword)
        self.failureResultOf(self.change_password("nobody", "new"), AuthenticationFailed)
        self.successResultOf(self.authenticate("alice", "old"))

    def test_verification_in_flight_during_change_not_cached(self) -> None:
        """A check of the old password that was running when the password
        changed must not be cached once it completes."""
        self.successResultOf(self.register("alice", "old"))
        self.bcrypt.hold = True
        in_flight = self.authenticate("alice", "old")  # bcrypt job 0
        changed = self.change_password("alice", "new")  # bcrypt job 1 (hash)
        self.bcrypt.run(1)
        self.successResultOf(changed)
        self.bcrypt.run(0)
        # It began before the change, against the old hash: it may succeed...
        self.successResultOf(in_flight)
        # ...but must not let the old password in afterwards.
        self.assertEqual(len(self.accounts.cache), 0)
        later = self.authenticate("alice", "old")
        self.bcrypt.run_all()
        self.failureResultOf(later, AuthenticationFailed)

    def test_check_started_after_change_does_not_join_stale_one(self) -> None:
        """A check of the old password that arrives after the change has
        completed is not answered by an older in-flight check."""
        self.successResultOf(self.register("alice", "old"))
        self.bcrypt.hold = True
        stale = self.authenticate("alice", "old")  # read the old hash; job 0
        changed = self.change_password("alice", "new")  # job 1
        self.bcrypt.run(1)
        self.successResultOf(changed)
        after = self.authenticate("alice", "old")
        self.bcrypt.run_all()
        self.successResultOf(stale)
        self.failureResultOf(after, AuthenticationFailed)
        self.assertEqual(len(self.accounts.cache), 0)


class AccountCheckerTests(TestCase):
    """The twisted.cred checker, realm and portal over Accounts."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.store = MemoryStore()
        self.accounts = Accounts(self.store, sync_hasher(), self.clock)
        self.successResultOf(Deferred.fromCoroutine(self.accounts.register("alice", "pw")))
        self.portal = make_portal(without_peer(self.accounts.authenticate))

    def login(self, username: bytes, password: bytes) -> Deferred[Any]:
        return self.portal.login(UsernamePassword(username, password), None, IChatUser)

    def test_login(self) -> None:
        """Good credentials log in with the User record as avatar."""
        interface, avatar, logout = self.successResultOf(self.login(b"alice", b"pw"))
        self.assertIs(interface, IChatUser)
        self.assertEqual(avatar, User(1, "alice"))
        logout()

    def test_non_ascii_credentials(self) -> None:
        """UTF-8 credentials are decoded before checking."""
        self.successResultOf(Deferred.fromCoroutine(self.accounts.register("José", "pässwörd")))
        _, avatar, _ = self.successResultOf(self.login("josé".encode(), "pässwörd".encode()))
        self.assertEqual(avatar.nickname, "José")

    def test_bad_password(self) -> None:
        """A wrong password is UnauthorizedLogin."""
        self.failureResultOf(self.login(b"alice", b"nope"), UnauthorizedLogin)

    def test_unknown_user(self) -> None:
        """An unknown account is UnauthorizedLogin too."""
        self.failureResultOf(self.login(b"mallory", b"pw"), UnauthorizedLogin)

    def test_empty_password(self) -> None:
        """An empty password (refused synchronously) is UnauthorizedLogin."""
        self.failureResultOf(self.login(b"alice", b""), UnauthorizedLogin)

    def test_invalid_utf8(self) -> None:
        """Credentials that are not UTF-8 are UnauthorizedLogin, not an error."""
        self.failureResultOf(self.login(b"alice", b"\xff\xfe"), UnauthorizedLogin)
        self.failureResultOf(self.login(b"\xc3", b"pw"), UnauthorizedLogin)

    def test_str_credentials(self) -> None:
        """The checker also accepts already-decoded credentials."""
        checker = AccountChecker(without_peer(self.accounts.authenticate))
        user = self.successResultOf(checker.requestAvatarId(UsernamePassword("alice", "pw")))  # type: ignore[arg-type]
        self.assertEqual(user, User(1, "alice"))

    def test_other_errors_pass_through(self) -> None:
        """ServiceBusy is not disguised as a bad password."""
        accounts = Accounts(self.store, sync_hasher(max_pending=0), self.clock)
        portal = make_portal(without_peer(accounts.authenticate))
        d = portal.login(UsernamePassword(b"alice", b"pw"), None, IChatUser)
        self.failureResultOf(d, ServiceBusy)

    def test_realm_refuses_other_interfaces(self) -> None:
        """The realm offers only IChatUser avatars."""

        class IOther(Interface):
            pass

        self.assertRaises(
            NotImplementedError, ChatRealm().requestAvatar, User(1, "a"), None, IOther
        )
