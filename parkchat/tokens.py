"""Signed session tokens (JWT, HS256 via PyJWT).

parkchat issues its own tokens from ``POST /login`` and can also accept
tokens from a third-party auth service that signs with a shared HMAC secret
(GarinChat's deployment), mapping one of their claims to a nickname.
"""

from __future__ import annotations

from collections.abc import Callable
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


@dataclass(frozen=True, slots=True)
class TokenClaims:
    """Who a verified token speaks for."""

    nickname: str
    user_id: int | None
    expires_at: int
    external: bool = False


class TokenAuthority:
    """Issues and verifies parkchat's own tokens."""

    def __init__(self, secret: bytes, clock: IReactorTime, lifetime: float = 86400.0) -> None:
        if len(secret) < MIN_SECRET_BYTES:
            raise ValueError(f"token secret must be at least {MIN_SECRET_BYTES} bytes")
        self._secret = secret
        self._clock = clock
        self.lifetime = lifetime

    def issue(self, user_id: int, nickname: str) -> tuple[str, int]:
        """A token for the account and its expiry (seconds since the epoch)."""
        now = int(self._clock.seconds())
        expires = now + int(self.lifetime)
        token = jwt.encode(
            {"iss": ISSUER, "sub": str(user_id), "name": nickname, "iat": now, "exp": expires},
            self._secret,
            algorithm=ALGORITHM,
        )
        return token, expires

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
            return TokenClaims(str(claims["name"]), int(claims["sub"]), int(claims["exp"]))
        except (jwt.InvalidTokenError, KeyError, TypeError, ValueError) as e:
            raise AuthenticationFailed("invalid or expired token") from e


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
        except AuthenticationFailed:
            if self.external is None:
                raise
        return self.external.verify(token)
