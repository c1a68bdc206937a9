"""Passwords and credentials: bcrypt off the reactor, a safe cache of recent
verifications, and the twisted.cred glue.

Why the cache is safe (also in docs/operations.md): an entry holds the account
record and ``HMAC-SHA256(k, password)`` where ``k`` is 32 random bytes made
when the process starts and never stored or sent anywhere. No plaintext and
no reusable hash leaves the process; an entry expires after a TTL, the table
is bounded (least recently used entries go first), and changing a password
drops the account's entry at once. A wrong password never hits the cache: it
always pays a full bcrypt, so the cache does not make guessing cheaper.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any, TypeVar

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword, UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import IRealm, Portal
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool
from zope.interface import Interface, implementer

import bcrypt

from parkchat.errors import AuthenticationFailed, ServiceBusy
from parkchat.model import User

T = TypeVar("T")

MAX_PASSWORD_LENGTH = 1024


def _prehash(password: str) -> bytes:
    """bcrypt reads at most 72 bytes and refuses longer input (bcrypt >= 5):
    hash the password first so every character counts, and base64 it so no
    NUL byte reaches bcrypt."""
    return base64.b64encode(hashlib.sha256(password.encode("utf-8")).digest())


def hash_password_blocking(password: str, rounds: int) -> bytes:
    """The bcrypt hash of ``password``; blocking, for threads and tools."""
    return bcrypt.hashpw(_prehash(password), bcrypt.gensalt(rounds))


def check_password_blocking(password: str, hashed: bytes) -> bool:
    """Whether ``password`` matches ``hashed``; blocking, for threads and tools."""
    try:
        return bcrypt.checkpw(_prehash(password), hashed)
    except ValueError:  # a corrupt hash in the database is a failed check
        return False


#: Priorities of the bcrypt queue: a login (a user waiting to get in, or
#: changing a password) before a new account.
LOGIN = 0
#: A login from an address with recent failed logins: it waits behind the
#: logins of clean addresses, so a guessing crowd cannot keep an account's
#: owner waiting (it still goes before any registration).
SUSPECT_LOGIN = 1
REGISTRATION = 2
PRIORITIES = (LOGIN, SUSPECT_LOGIN, REGISTRATION)


class _Job:
    """One bcrypt call waiting for (or holding) a thread."""

    __slots__ = ("args", "done", "f", "priority", "started")

    def __init__(
        self, priority: int, f: Callable[..., Any], args: tuple[Any, ...], done: Deferred[Any]
    ) -> None:
        self.priority = priority
        self.f = f
        self.args = args
        self.done = done
        self.started = False


class PasswordHasher:
    """bcrypt on its own bounded thread pool, logins first.

    bcrypt releases the GIL, so a few threads use the cores while the reactor
    stays free; a separate pool means a login storm cannot starve the database
    threads. At most ``concurrency`` jobs are handed to the pool at once (its
    thread count); the others wait here in two queues, and a free thread
    takes the oldest login before any registration, so that a storm of new
    accounts (each a bcrypt hash) cannot make logins wait behind it: a login
    waits at most for the jobs already running. ``concurrency`` None hands
    every job over at once (tests with an inline ``run``).

    At most ``max_pending`` jobs wait or run at once, and of them at most
    ``max_pending_registrations`` registrations; past that callers get
    ServiceBusy (HTTP 503) instead of an ever-growing queue. A waiting job
    whose caller gives up (its Deferred cancelled: the client went away)
    leaves the queue without costing a bcrypt.
    """

    def __init__(
        self,
        run: Callable[..., Deferred[Any]],
        rounds: int = 12,
        max_pending: int = 256,
        *,
        concurrency: int | None = None,
        max_pending_registrations: int | None = None,
    ) -> None:
        self._run = run
        self.rounds = rounds
        self.max_pending = max_pending
        self.max_pending_registrations = (
            max(1, max_pending // 4)
            if max_pending_registrations is None
            else max_pending_registrations
        )
        self.concurrency = concurrency
        self._queues: tuple[deque[_Job], ...] = tuple(deque() for _ in PRIORITIES)
        self._counts = [0 for _ in PRIORITIES]  # pending jobs per priority
        self._running = 0
        self._pumping = False
        # A hash to check unknown accounts against, so that "no such user"
        # costs as much time as "wrong password".
        self._dummy = hash_password_blocking("parkchat-dummy-" + os.urandom(8).hex(), rounds)

    @classmethod
    def on_threadpool(
        cls,
        reactor: Any,
        pool: ThreadPool,
        rounds: int = 12,
        max_pending: int = 256,
        max_pending_registrations: int | None = None,
    ) -> PasswordHasher:
        """A hasher handing at most ``pool.max`` jobs at a time to ``pool``
        (through ``deferToThreadPool``; the rest wait in its queues)."""

        def run(f: Callable[..., T], *args: Any) -> Deferred[T]:
            return deferToThreadPool(reactor, pool, f, *args)

        return cls(
            run,
            rounds,
            max_pending,
            concurrency=pool.max,
            max_pending_registrations=max_pending_registrations,
        )

    @property
    def pending(self) -> int:
        """Jobs waiting or running."""
        return sum(self._counts)

    @property
    def waiting(self) -> int:
        """Jobs not yet handed to the pool."""
        return sum(len(queue) for queue in self._queues)

    def _submit(self, priority: int, f: Callable[..., T], *args: Any) -> Deferred[T]:
        if self.pending >= self.max_pending:
            raise ServiceBusy("too many password checks in progress")
        if priority == REGISTRATION and self._counts[REGISTRATION] >= (
            self.max_pending_registrations
        ):
            raise ServiceBusy("too many new accounts in progress")
        self._counts[priority] += 1

        def cancel(d: Deferred[T]) -> None:
            # Only a job still waiting can be taken back; a running one
            # finishes in its thread and its result is dropped.
            if not job.started:
                self._queues[priority].remove(job)

        def done(result: T | Failure) -> T | Failure:
            self._counts[priority] -= 1
            return result

        d: Deferred[T] = Deferred(canceller=cancel)
        job = _Job(priority, f, args, d)
        d.addBoth(done)
        self._queues[priority].append(job)
        self._pump()
        return d

    def _pump(self) -> None:
        """Hand waiting jobs to the pool while it has free threads, logins
        first. Not re-entered: an inline ``run`` finishes a job inside the
        loop, and the loop itself goes on with the next."""
        if self._pumping:
            return
        self._pumping = True
        try:
            while self.concurrency is None or self._running < self.concurrency:
                queue = next((q for q in self._queues if q), None)
                if queue is None:
                    break
                job = queue.popleft()
                job.started = True
                self._running += 1
                self._run(job.f, *job.args).addBoth(self._finished, job)
        finally:
            self._pumping = False

    def _finished(self, result: Any, job: _Job) -> None:
        self._running -= 1
        if not job.done.called:
            if isinstance(result, Failure):
                job.done.errback(result)
            else:
                job.done.callback(result)
        self._pump()

    def hash(self, password: str, priority: int = LOGIN) -> Deferred[bytes]:
        """Hash a new password; ``priority`` REGISTRATION for a new account
        (it waits behind every login)."""
        return self._submit(priority, hash_password_blocking, password, self.rounds)

    def verify(self, password: str, hashed: bytes | None, priority: int = LOGIN) -> Deferred[bool]:
        """Check ``password`` (a login); with ``hashed`` None (no such
        account) check a dummy hash and fire False, in the same time."""
        if hashed is None:
            return self._submit(
                priority, check_password_blocking, password, self._dummy
            ).addCallback(lambda _: False)
        return self._submit(priority, check_password_blocking, password, hashed)


class VerifiedCredentials:
    """A bounded, expiring cache of recently verified (nickname, password)
    pairs that stores no plaintext. See the module docstring for why."""

    def __init__(self, clock: IReactorTime, ttl: float = 300.0, max_entries: int = 10_000) -> None:
        self._clock = clock
        self.ttl = ttl
        self.max_entries = max_entries
        self._key = os.urandom(32)
        self._entries: OrderedDict[str, tuple[bytes, User, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def digest(self, password: str) -> bytes:
        return hmac.new(self._key, password.encode("utf-8"), hashlib.sha256).digest()

    def lookup(self, key: str, digest: bytes) -> User | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        stored, user, expires = entry
        if expires <= self._clock.seconds():
            del self._entries[key]
            return None
        if not hmac.compare_digest(stored, digest):
            return None
        self._entries.move_to_end(key)
        return user

    def remember(self, key: str, digest: bytes, user: User) -> None:
        if self.ttl <= 0 or self.max_entries <= 0:
            return
        self._entries[key] = (digest, user, self._clock.seconds() + self.ttl)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def forget(self, key: str) -> None:
        self._entries.pop(key, None)

    def clear(self) -> None:
        self._entries.clear()


class IChatUser(Interface):
    """The avatar interface of parkchat's portal: a :class:`parkchat.model.User`."""


@implementer(ICredentialsChecker)
class AccountChecker:
    """A twisted.cred checker over the service's accounts.

    Its avatar ids are ``User`` records rather than names, so the realm does
    not look the account up a second time.
    """

    credentialInterfaces = (IUsernamePassword,)

    def __init__(self, authenticate: Callable[[str, str, str], Deferred[User]]) -> None:
        self._authenticate = authenticate

    def requestAvatarId(self, credentials: Any) -> Deferred[Any]:
        username, password = credentials.username, credentials.password
        try:
            if isinstance(username, bytes):
                username = username.decode("utf-8")
            if isinstance(password, bytes):
                password = password.decode("utf-8")
        except UnicodeDecodeError:
            return Deferred.fromCoroutine(_fail_login())

        def translate(failure: Failure) -> Failure:
            # Banned and TooManyAttempts pass through: callers answer them
            # with 403 and 429, not 401.
            failure.trap(AuthenticationFailed)
            return Failure(UnauthorizedLogin())

        try:
            d = self._authenticate(username, password, getattr(credentials, "peer", ""))
        except AuthenticationFailed:
            return Deferred.fromCoroutine(_fail_login())
        return d.addErrback(translate)


async def _fail_login() -> User:
    raise UnauthorizedLogin()


@implementer(IRealm)
class ChatRealm:
    """Hands the authenticated ``User`` back as the avatar."""

    def requestAvatar(self, avatarId: Any, mind: Any, *interfaces: Any) -> Any:
        if IChatUser not in interfaces:
            raise NotImplementedError("parkchat offers only IChatUser avatars")
        return (IChatUser, avatarId, lambda: None)


class PeerUsernamePassword(UsernamePassword):
    """Username and password plus the client address, so the checker can
    throttle failed logins per address as well as per account."""

    def __init__(self, username: bytes, password: bytes, peer: str) -> None:
        super().__init__(username, password)
        self.peer = peer


def make_portal(authenticate: Callable[[str, str, str], Deferred[User]]) -> Portal:
    return Portal(ChatRealm(), [AccountChecker(authenticate)])
