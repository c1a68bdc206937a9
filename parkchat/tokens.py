"""Signed session tokens (JWT, HS256 via PyJWT).

parkchat issues its own tokens from ``POST /login`` and can also accept
tokens from a third-party auth service that signs with a shared HMAC secret
(GarinChat's deployment), mapping one of their claims to a nickname.

Its own tokens can be revoked before they expire (``Revocations``): one
token by its id (``jti``, logout), or every token of an account issued up to
a moment (log out everywhere, password change). The service keeps the
revocations in the database and in memory on every instance, so checking a
token stays a dictionary lookup.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from twisted.internet.interfaces import IReactorTime

import jwt

from parkchat.errors import AuthenticationFailed
from parkchat.model import validate_nickname

ISSUER = "parkchat"
ALGORITHM = "HS256"
#: Seconds of clock skew tolerated on expiry.
LEEWAY = 5
#: HMAC keys shorter than this are refused (RFC 7518 section 3.2).
MIN_SECRET_BYTES = 32


class TokenRevoked(AuthenticationFailed):
    """A genuine parkchat token that was revoked: no other verifier may
    accept it instead."""


@dataclass(frozen=True, slots=True)
class TokenClaims:
    """Who a verified token speaks for."""

    nickname: str
    user_id: int | None
    expires_at: int
    external: bool = False
    #: The token's own id (``jti``); None for external tokens and for
    #: tokens issued before parkchat had ids.
    token_id: str | None = None
    #: When it was issued, in ms since the epoch (0 for external tokens).
    issued_ms: int = 0


class Revocations:
    """Tokens refused before their expiry: single ones by id, and every
    token of an account issued at or before a cutoff."""

    def __init__(self) -> None:
        self._tokens: dict[str, int] = {}  # jti -> its expiry (s)
        self._cutoffs: dict[int, int] = {}  # user id -> ms

    def revoke(self, token_id: str, expires_s: int) -> None:
        self._tokens[token_id] = expires_s

    def cut_off(self, user_id: int, before_ms: int) -> None:
        """Refuse the account's tokens issued at or before ``before_ms``."""
        if before_ms > self._cutoffs.get(user_id, 0):
            self._cutoffs[user_id] = before_ms

    def load(self, tokens: Iterable[tuple[str, int]], cutoffs: Iterable[tuple[int, int]]) -> None:
        """Replace everything with what the database holds."""
        self._tokens = dict(tokens)
        self._cutoffs = dict(cutoffs)

    def prune(self, now_s: float) -> None:
        """Forget revoked ids whose tokens have expired anyway."""
        self._tokens = {k: v for k, v in self._tokens.items() if v + LEEWAY >= now_s}

    def revoked(self, claims: TokenClaims) -> bool:
        if claims.token_id is not None and claims.token_id in self._tokens:
            return True
        cutoff = self._cutoffs.get(claims.user_id) if claims.user_id is not None else None
        return cutoff is not None and claims.issued_ms <= cutoff

    def __len__(self) -> int:
        return len(self._tokens) + len(self._cutoffs)


class TokenAuthority:
    """Issues and verifies parkchat's own tokens."""

    def __init__(
        self,
        secret: bytes,
        clock: IReactorTime,
        lifetime: float = 86400.0,
        revocations: Revocations | None = None,
    ) -> None:
        if len(secret) < MIN_SECRET_BYTES:
            raise ValueError(f"token secret must be at least {MIN_SECRET_BYTES} bytes")
        self._secret = secret
        self._clock = clock
        self.lifetime = lifetime
        self.revocations = revocations if revocations is not None else Revocations()

    def issue(self, user_id: int, nickname: str) -> tuple[str, int]:
        """A token for the account and its expiry (seconds since the epoch)."""
        now = self._clock.seconds()
        expires = int(now) + int(self.lifetime)
        claims = {
            "iss": ISSUER,
            "sub": str(user_id),
            "name": nickname,
            "iat": int(now),
            # ms: a logout-everywhere must not also refuse a login made in
            # the same second right after it.
            "iat_ms": int(now * 1000),
            "exp": expires,
            "jti": secrets.token_urlsafe(16),
        }
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM), expires

    def verify(self, token: str) -> TokenClaims:
        """The claims of a valid, unexpired parkchat token, else AuthenticationFailed."""
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                issuer=ISSUER,
                options={
                    "require": ["exp", "iat", "sub", "iss"],
                    "verify_iat": False,
                    "verify_exp": False,
                },
            )
            # Expiry is checked against the reactor's clock, not PyJWT's wall
            # clock, so that time is injectable like everywhere else.
            if int(claims["exp"]) + LEEWAY < self._clock.seconds():
                raise jwt.ExpiredSignatureError("expired")
            token_id = claims.get("jti")
            verified = TokenClaims(
                str(claims["name"]),
                int(claims["sub"]),
                int(claims["exp"]),
                token_id=token_id if isinstance(token_id, str) else None,
                issued_ms=int(claims.get("iat_ms", int(claims["iat"]) * 1000)),
            )
        except (jwt.InvalidTokenError, KeyError, TypeError, ValueError) as e:
            raise AuthenticationFailed("invalid or expired token") from e
        if self.revocations.revoked(verified):
            raise TokenRevoked("this token was revoked (logged out): log in again")
        return verified


class ExternalTokenVerifier:
    """Accepts HMAC-signed JWTs from a third-party auth service.

    ``claim`` names the claim that holds the nickname (``username`` for
    GarinChat's examples, ``sub`` for many providers). The nickname must pass
    parkchat's naming rules. Such users have no parkchat account (user_id None).
    """

    def __init__(
        self,
        secret: bytes,
        clock: IReactorTime,
        claim: str = "username",
        audience: str | None = None,
        issuer: str | None = None,
    ) -> None:
        if len(secret) < MIN_SECRET_BYTES:
            raise ValueError(f"external JWT secret must be at least {MIN_SECRET_BYTES} bytes")
        self._secret = secret
        self._clock = clock
        self.claim = claim
        self.audience = audience
        self.issuer = issuer

    def verify(self, token: str) -> TokenClaims:
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=["HS256", "HS384", "HS512"],
                audience=self.audience,
                issuer=self.issuer,
                options={
                    "require": ["exp"],
                    "verify_aud": self.audience is not None,
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                },
            )
            if int(claims["exp"]) + LEEWAY < self._clock.seconds():
                raise jwt.ExpiredSignatureError("expired")
            nickname = validate_nickname(claims.get(self.claim))
            return TokenClaims(nickname, None, int(claims["exp"]), external=True)
        except Exception as e:
            raise AuthenticationFailed("invalid or expired token") from e


class TokenVerifier:
    """Tries parkchat's own tokens, then the external service's, if configured."""

    def __init__(
        self,
        own: TokenAuthority,
        external: ExternalTokenVerifier | None = None,
        on_failure: Callable[[], None] | None = None,
    ) -> None:
        self.own = own
        self.external = external
        #: Called once per refused token (for metrics).
        self.on_failure = on_failure

    def verify(self, token: object) -> TokenClaims:
        try:
            return self._verify(token)
        except AuthenticationFailed:
            if self.on_failure is not None:
                self.on_failure()
            raise

    def _verify(self, token: object) -> TokenClaims:
        if not isinstance(token, str) or not token or len(token) > 8192:
            raise AuthenticationFailed("invalid or expired token")
        try:
            return self.own.verify(token)
        except TokenRevoked:
            raise
        except AuthenticationFailed:
            if self.external is None:
                raise
        return self.external.verify(token)
