"""Accounts: registration, logins behind the failed-login throttle, passwords."""

from __future__ import annotations

import math

from twisted.internet.defer import Deferred

from parkchat.accounts import Accounts
from parkchat.auth import LOGIN, SUSPECT_LOGIN
from parkchat.errors import AuthenticationFailed, TooManyAttempts
from parkchat.handlers.moderation import ModerationHandler, moderation_log
from parkchat.handlers.sessions import SessionHandler
from parkchat.interfaces import IAccountStore
from parkchat.limits import Limits, LoginThrottle, RegistrationThrottle
from parkchat.metrics import ServiceMetrics
from parkchat.model import User, nickname_key, validate_nickname


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
        registrations: RegistrationThrottle | None = None,
        *,
        revoke_on_password_change: bool = True,
    ) -> None:
        self._store = store
        self._accounts = accounts
        self._moderation = moderation
        self._sessions = sessions
        self._throttle = throttle
        self._metrics = metrics
        self._limits = limits
        self._registrations = (
            registrations
            if registrations is not None
            else RegistrationThrottle(throttle.clock, per_address=0, per_minute=0)
        )
        self._revoke_on_password_change = revoke_on_password_change

    def prune(self) -> None:
        self._throttle.prune()
        self._registrations.prune()

    def register(
        self, nickname: object, password: object, peer_host: str | None = None
    ) -> Deferred[User]:
        """Create an account. From a client (``peer_host`` its address) the
        registration throttle applies first: per address and in all, so that
        a storm is refused before it costs bcrypt; an administrator's
        (``peer_host`` None) is not throttled. Before it is answered, the
        guests holding the name (or one like it) are closed on every
        instance (``SessionHandler.claim_name``)."""
        return Deferred.fromCoroutine(self._register(nickname, password, peer_host))

    async def _register(self, nickname: object, password: object, peer_host: str | None) -> User:
        if peer_host is not None:
            validate_nickname(nickname)  # a bad name is not worth a registration
            self._registrations.check(self._limits.address_key(peer_host))
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

    def authenticate(self, nickname: str, password: str, priority: int = LOGIN) -> Deferred[User]:
        """Check a password and refuse banned accounts."""
        return self._accounts.authenticate(nickname, password, priority).addCallback(
            self._not_banned
        )

    def _not_banned(self, user: User) -> User:
        self._moderation.check_not_banned(user.id)
        return user

    async def login(self, nickname: str, password: str, peer_host: str = "") -> User:
        """``authenticate`` behind the failed-login throttle (``LoginThrottle``):
        an (account, address) or an address in back-off gets TooManyAttempts
        (429) without its password even being checked; failures elsewhere do
        not count, so nobody can lock a user out from another address."""
        account = nickname_key(nickname) if nickname else ""
        pair, address = LoginThrottle.keys(account, self._limits.address_key(peer_host), peer_host)
        wait = self._throttle.retry_after(pair, address)
        if wait > 0:
            self._metrics.login_throttled += 1
            raise TooManyAttempts(f"too many failed logins: try again in {math.ceil(wait)} seconds")
        checking = address if address is not None else pair
        if self._throttle.busy(checking):
            self._metrics.login_throttled += 1
            raise TooManyAttempts("too many logins in progress from this address: try again")
        # A login from where logins failed lately waits behind the others in
        # the bcrypt queue: a guessing crowd cannot keep the owner waiting.
        priority = SUSPECT_LOGIN if self._throttle.suspect(pair, address) else LOGIN
        self._throttle.checking(checking, +1)
        try:
            user: User = await self.authenticate(nickname, password, priority)
        except AuthenticationFailed:
            self._metrics.auth_failures["password"] += 1
            self._throttle.failed(pair, address)
            raise
        finally:
            self._throttle.checking(checking, -1)
        self._throttle.succeeded(pair)
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
        instance forgets the old password's cached verification. With
        ``revoke_on_password_change`` (the default) the account's open
        connections close too, on every instance (the way "log out
        everywhere" closes them): a user who suspects theft changes the
        password, and a stolen session must not outlive it. Without it they
        stay (they proved the old password when they opened)."""
        return Deferred.fromCoroutine(self._change_password(nickname, password))

    async def _change_password(self, nickname: str, password: object) -> None:
        await self._accounts.change_password(nickname, password)
        user = await self._store.get_user(nickname)
        if user is not None:
            await self._sessions.cut_off(
                user.id, user.nickname, close=self._revoke_on_password_change
            )
            moderation_log.info(
                "account: new password for {nickname}", nickname=user.nickname, action="password"
            )
