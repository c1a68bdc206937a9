"""Accounts: registration, logins behind the failed-login throttle, passwords."""

from __future__ import annotations

from twisted.internet.defer import Deferred

from parkchat.accounts import Accounts
from parkchat.errors import AuthenticationFailed, TooManyAttempts
from parkchat.handlers.moderation import ModerationHandler, moderation_log
from parkchat.handlers.sessions import SessionHandler
from parkchat.interfaces import IAccountStore
from parkchat.limits import Limits, LoginThrottle
from parkchat.metrics import ServiceMetrics
from parkchat.model import User, nickname_key


class AccountHandler:
    """What the surfaces ask of accounts. Password hashing and the cache of
    verified credentials are ``parkchat.accounts.Accounts``; on top of it
    this adds the ban check, the failed-login throttle and what a password
    change means for the account's tokens."""

    def __init__(
        self,
        store: IAccountStore,
        accounts: Accounts,
        moderation: ModerationHandler,
        sessions: SessionHandler,
        throttle: LoginThrottle,
        metrics: ServiceMetrics,
        limits: Limits,
    ) -> None:
        self._store = store
        self._accounts = accounts
        self._moderation = moderation
        self._sessions = sessions
        self._throttle = throttle
        self._metrics = metrics
        self._limits = limits

    def prune(self) -> None:
        self._throttle.prune()

    def register(self, nickname: object, password: object) -> Deferred[User]:
        """Create an account; before it is answered, the guests holding the
        name (or one like it) are closed on every instance
        (``SessionHandler.claim_name``)."""
        return Deferred.fromCoroutine(self._register(nickname, password))

    async def _register(self, nickname: object, password: object) -> User:
        user = await self._accounts.register(nickname, password)
        self._sessions.claim_name(user.nickname)
        return user

    def account_exists(self, nickname: str) -> Deferred[bool]:
        """Whether ``nickname`` belongs to a registered account, or looks like
        the name of one (``model.name_skeleton``): guests and external-token
        users may not take such names."""
        return self._store.get_user_like(nickname).addCallback(lambda user: user is not None)

    def list_accounts(self, limit: int, after_id: int = 0) -> Deferred[list[User]]:
        """Accounts by id (the admin API's user list)."""
        return self._store.list_users(limit, after_id)

    def authenticate(self, nickname: str, password: str) -> Deferred[User]:
        """Check a password and refuse banned accounts."""
        return self._accounts.authenticate(nickname, password).addCallback(self._not_banned)

    def _not_banned(self, user: User) -> User:
        self._moderation.check_not_banned(user.id)
        return user

    async def login(self, nickname: str, password: str, peer_host: str = "") -> User:
        """``authenticate`` behind the failed-login throttle: too many failures
        for the account or from the address answer TooManyAttempts (429)
        without even checking the password."""
        account = ("account", nickname_key(nickname) if nickname else "")
        keys: tuple[tuple[str, str], ...] = (account,)
        if self._limits.address_key(peer_host) is not None:  # not a proxy's own address
            keys += (("address", peer_host),)
        wait = self._throttle.retry_after(*keys)
        if wait > 0:
            self._metrics.login_throttled += 1
            raise TooManyAttempts(f"too many failed logins: try again in {int(wait) + 1} seconds")
        try:
            user: User = await self.authenticate(nickname, password)
        except AuthenticationFailed:
            self._metrics.auth_failures["password"] += 1
            self._throttle.failed(*keys)
            raise
        self._throttle.succeeded(keys[0])
        return user

    def login_for_cred(self, nickname: str, password: str, peer_host: str) -> Deferred[User]:
        """``login`` as the twisted.cred checker of the Portal wants it."""
        return Deferred.fromCoroutine(self.login(nickname, password, peer_host))

    async def admit_token(self, nickname: str, user_id: int | None) -> None:
        """Checks for a connection that authenticated with a token: a
        parkchat account must not be banned; a name from an external token
        must not belong to a registered account (or it would speak as them
        and slip past their ban)."""
        if user_id is not None:
            self._moderation.check_not_banned(user_id)
        elif await self.account_exists(nickname):
            raise AuthenticationFailed(
                f"{nickname} is a registered account: log in with its password"
            )

    def change_password(self, nickname: str, password: object) -> Deferred[None]:
        """Set a new password; the account's tokens issued until now stop
        working (whoever knew the old password may hold one), and every
        instance forgets the old password's cached verification. Open
        connections stay: they proved the password when they opened."""
        return Deferred.fromCoroutine(self._change_password(nickname, password))

    async def _change_password(self, nickname: str, password: object) -> None:
        await self._accounts.change_password(nickname, password)
        user = await self._store.get_user(nickname)
        if user is not None:
            await self._sessions.cut_off(user.id, user.nickname, close=False)
            moderation_log.info(
                "account: new password for {nickname}", nickname=user.nickname, action="password"
            )
