"""Accounts: registration and password checks, with the verified-credential
cache in front of bcrypt."""

from __future__ import annotations

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from parkchat.auth import (
    LOGIN,
    MAX_PASSWORD_LENGTH,
    REGISTRATION,
    PasswordHasher,
    VerifiedCredentials,
)
from parkchat.errors import (
    AccountExists,
    AuthenticationFailed,
    ChatError,
    InvalidPassword,
    StorageFailed,
)
from parkchat.interfaces import IAccountStore
from parkchat.model import StoredUser, User, nickname_key, validate_nickname

_log = Logger()


def validate_password(password: object) -> str:
    if not isinstance(password, str) or not password:
        raise InvalidPassword("password is required")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise InvalidPassword(f"password is longer than {MAX_PASSWORD_LENGTH} characters")
    if not _encodable(password):
        raise InvalidPassword("password is not valid text")
    return password


def _encodable(text: str) -> bool:
    """Whether ``text`` is UTF-8 encodable (JSON can carry lone surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class Accounts:
    """Creates accounts and verifies passwords.

    Verifications that succeed are remembered (see ``VerifiedCredentials``);
    concurrent checks of the same credentials share one bcrypt run, so a burst
    of Basic-auth requests from one client costs one hash, not one each.
    """

    def __init__(
        self,
        store: IAccountStore,
        hasher: PasswordHasher,
        clock: IReactorTime,
        cache: VerifiedCredentials | None = None,
    ) -> None:
        self._store = store
        self._hasher = hasher
        self._clock = clock
        self.cache = cache if cache is not None else VerifiedCredentials(clock)
        # Keyed by the password epoch too, so that a check begun after a
        # password change never waits on (and shares) one begun before it.
        self._in_flight: dict[tuple[str, bytes, int], list[Deferred[User]]] = {}
        # Bumped by every password change: a check that started before one
        # must not put what it verified into the cache afterwards.
        self._password_epoch = 0

    async def register(self, nickname: object, password: object) -> User:
        """Create an account. A taken name, or one that looks like an
        account's (``model.name_skeleton``), is refused before any hashing (a
        409 should not cost a bcrypt); the unique indexes still decide races.
        The new password is remembered as verified, so the account's first
        login does not pay a bcrypt either."""
        nickname = validate_nickname(nickname)
        password = validate_password(password)
        if await self._store.get_user(nickname) is not None:
            raise AccountExists()
        alike = await self._store.get_user_like(nickname)
        if alike is not None:
            raise AccountExists(
                f"nickname looks like the registered account {alike.nickname!r}: choose another"
            )
        epoch = self._password_epoch
        hashed = await self._hasher.hash(password, REGISTRATION)
        try:
            stored = await self._store.create_user(
                nickname, hashed, int(self._clock.seconds() * 1000)
            )
        except ChatError:
            raise
        except Exception as e:
            # A read-only or full database: say so, not "internal error".
            _log.failure("storing a new account failed")
            raise StorageFailed("the account could not be stored; try again later") from e
        if epoch == self._password_epoch:
            self.cache.remember(
                nickname_key(nickname), self.cache.digest(password), stored.public()
            )
        return stored.public()

    def authenticate(self, nickname: str, password: str, priority: int = LOGIN) -> Deferred[User]:
        """Fire with the ``User`` or fail with AuthenticationFailed;
        ``priority`` is the check's place in the bcrypt queue."""
        if (
            not nickname
            or not _encodable(nickname)  # JSON can carry lone surrogates; no store takes them
            or not password
            or len(password) > MAX_PASSWORD_LENGTH
            or not _encodable(password)
        ):
            raise AuthenticationFailed()
        key = nickname_key(nickname)
        digest = self.cache.digest(password)
        user = self.cache.lookup(key, digest)
        if user is not None:
            return succeed(user)
        flight = (key, digest, self._password_epoch)
        waiting = self._in_flight.get(flight)
        d: Deferred[User] = Deferred()
        if waiting is not None:
            waiting.append(d)
            return d
        self._in_flight[flight] = [d]
        Deferred.fromCoroutine(self._verify(nickname, password, priority)).addBoth(
            self._settle, key, digest, self._password_epoch
        )
        return d

    async def _verify(self, nickname: str, password: str, priority: int) -> User:
        stored: StoredUser | None = await self._store.get_user(nickname)
        ok = await self._hasher.verify(password, stored.password_hash if stored else None, priority)
        if not ok or stored is None:
            raise AuthenticationFailed()
        return stored.public()

    def _settle(self, result: object, key: str, digest: bytes, epoch: int) -> None:
        waiters = self._in_flight.pop((key, digest, epoch), [])
        if isinstance(result, User) and epoch == self._password_epoch:
            self.cache.remember(key, digest, result)
        for d in waiters:
            if isinstance(result, User):
                d.callback(result)
            else:
                d.errback(result)  # type: ignore[arg-type]

    async def change_password(self, nickname: str, password: object) -> None:
        """Set a new password; cached verifications of the old one end now."""
        password = validate_password(password)
        stored = await self._store.get_user(nickname)
        if stored is None:
            raise AuthenticationFailed("no such account")
        hashed = await self._hasher.hash(password)
        await self._store.set_password_hash(stored.id, hashed)
        self._password_epoch += 1
        self.cache.forget(nickname_key(nickname))
