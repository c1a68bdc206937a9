"""Long-lived logins: refresh tokens.

A login with "remember me" gets, besides its short-lived signed token, a
refresh token: random, opaque, only its SHA-256 stored. Presenting it
(``POST /refresh``) spends it and gives a new signed token and the next
refresh token of the same *family*. A spent token presented again means
that someone holds a copy: the whole family is revoked, and whoever holds
the newest one must log in again (OAuth 2.0 Security BCP, refresh token
rotation). Logout revokes the family of the token it is given; logging out
everywhere and a new password revoke every refresh token of the account
(``SessionHandler.cut_off``).
"""

from __future__ import annotations

import hashlib
import secrets

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from parkchat.errors import AuthenticationFailed, InvalidRequest
from parkchat.handlers.moderation import ModerationHandler, moderation_log
from parkchat.interfaces import IAccountStore, IRefreshTokenStore
from parkchat.model import User

_log = Logger()

#: Seconds a refresh token lasts by default (``--refresh-ttl``): 30 days.
REFRESH_TTL = 30 * 24 * 3600
#: Longer than any token this server makes (43 characters): anything
#: longer is refused before hashing.
MAX_TOKEN_LENGTH = 200


def token_hash(token: str) -> str:
    """What is stored of a refresh token. The token carries 256 random
    bits, so a plain SHA-256 (no salt, no stretching) cannot be reversed by
    guessing; it only keeps a copy of the table from being a set of logins."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _token(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidRequest('"refresh_token" must be a non-empty string')
    if len(value) > MAX_TOKEN_LENGTH:
        raise AuthenticationFailed("invalid or expired refresh token")
    return value


class RefreshTokenHandler:
    """Issues, rotates and revokes refresh tokens."""

    def __init__(
        self,
        store: IRefreshTokenStore,
        users: IAccountStore,
        moderation: ModerationHandler,
        clock: IReactorTime,
        *,
        ttl: int = REFRESH_TTL,
    ) -> None:
        self._store = store
        self._users = users
        self._moderation = moderation
        self._clock = clock
        self.ttl = ttl

    def _now_ms(self) -> int:
        return int(self._clock.seconds() * 1000)

    async def issue(self, user: User, family: str | None = None) -> tuple[str, int]:
        """A new refresh token of the account (a new family unless
        ``family``) and its lifetime in seconds."""
        token = secrets.token_urlsafe(32)
        now = self._now_ms()
        await self._store.add_refresh_token(
            token_hash(token),
            user.id,
            family if family is not None else secrets.token_urlsafe(16),
            now,
            now + self.ttl * 1000,
        )
        return token, self.ttl

    async def refresh(self, token: object) -> tuple[User, str, int]:
        """Spend a refresh token: the account, the next refresh token of its
        family and that one's lifetime. AuthenticationFailed for a token
        that is unknown, expired, revoked or spent before (which revokes
        its family); Banned for a banned account."""
        presented = _token(token)
        outcome, user_id, family = await self._store.spend_refresh_token(
            token_hash(presented), self._now_ms()
        )
        if outcome == "reused":
            moderation_log.warn(
                "account: a spent refresh token of user {user_id} was presented again; "
                "its login is revoked",
                user_id=user_id,
                action="refresh_reuse",
            )
            raise AuthenticationFailed(
                "this refresh token was used before: the login is revoked, log in again"
            )
        if outcome != "ok":
            raise AuthenticationFailed("invalid or expired refresh token")
        stored = await self._users.get_user_by_id(user_id)
        if stored is None:
            raise AuthenticationFailed("invalid or expired refresh token")
        self._moderation.check_not_banned(stored.id)
        user = stored.public()
        next_token, ttl = await self.issue(user, family)
        return user, next_token, ttl

    async def revoke(self, token: object) -> bool:
        """Revoke the family of a refresh token (logout); whether it was known."""
        return await self._store.revoke_refresh_token(token_hash(_token(token))) is not None

    def prune(self) -> None:
        """Forget expired refresh tokens (housekeeping)."""
        self._store.prune_refresh_tokens(self._now_ms()).addErrback(
            lambda f: _log.failure("pruning refresh tokens failed", f)
        )
