"""Signed session tokens: parkchat's own (``TokenAuthority``), a third-party
service's (``ExternalTokenVerifier``) and the verifier that tries both.

Time is a ``Clock``; expiry is checked against it, never the wall clock.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

import jwt

from parkchat.errors import AuthenticationFailed
from parkchat.tokens import (
    LEEWAY,
    MIN_SECRET_BYTES,
    ExternalTokenVerifier,
    Revocations,
    TokenAuthority,
    TokenClaims,
    TokenVerifier,
)

#: 2025-09-08T15:30:00Z: far from the epoch, so a wall-clock check would differ.
START = 1_757_345_400.0

#: 64 bytes: long enough for HS512 without PyJWT warnings.
SECRET = b"s" * 64
OTHER_SECRET = b"o" * 64
EXTERNAL_SECRET = b"e" * 64


def make_clock(at: float = START) -> Clock:
    clock = Clock()
    clock.advance(at)
    return clock


def sign(claims: dict[str, Any], secret: bytes = EXTERNAL_SECRET, algorithm: str = "HS256") -> str:
    """A JWT as a third-party service would make it."""
    return jwt.encode(claims, secret, algorithm=algorithm)


def tamper(token: str) -> str:
    """``token`` with one character of its payload changed."""
    header, payload, signature = token.split(".")
    middle = len(payload) // 2
    replacement = "A" if payload[middle] != "A" else "B"
    return ".".join([header, payload[:middle] + replacement + payload[middle + 1 :], signature])


class TokenAuthorityTests(TestCase):
    """parkchat's own HS256 tokens."""

    def setUp(self) -> None:
        self.clock = make_clock()
        self.authority = TokenAuthority(SECRET, self.clock, lifetime=3600)

    def assertRefused(self, token: Any, authority: TokenAuthority | None = None) -> None:
        with self.assertRaises(AuthenticationFailed):
            (authority or self.authority).verify(token)

    def test_round_trip(self) -> None:
        """A freshly issued token verifies to the account it was issued for,
        with the expiry ``issue`` reported."""
        token, expires = self.authority.issue(7, "Alice")
        self.assertIsInstance(token, str)
        self.assertEqual(expires, int(START) + 3600)
        claims = self.authority.verify(token)
        self.assertEqual(
            (claims.nickname, claims.user_id, claims.expires_at), ("Alice", 7, expires)
        )
        self.assertEqual(claims.issued_ms, int(START * 1000))
        self.assertFalse(claims.external)
        # Every token has its own id (what a logout revokes).
        other, _ = self.authority.issue(7, "Alice")
        self.assertNotEqual(self.authority.verify(other).token_id, claims.token_id)

    def test_claims_are_standard(self) -> None:
        """The token is a plain HS256 JWT with iss, sub, name, iat, exp and
        jti (plus iat_ms), so that clients and other services can read it."""
        token, expires = self.authority.issue(7, "Alice")
        self.assertEqual(jwt.get_unverified_header(token)["alg"], "HS256")
        claims = jwt.decode(token, SECRET, algorithms=["HS256"], options={"verify_exp": False})
        jti = claims.pop("jti")
        self.assertGreaterEqual(len(jti), 20)
        self.assertEqual(
            claims,
            {
                "iss": "parkchat",
                "sub": "7",
                "name": "Alice",
                "iat": int(START),
                "iat_ms": int(START * 1000),
                "exp": expires,
            },
        )

    def test_valid_until_lifetime_plus_leeway(self) -> None:
        """A token still verifies at its expiry plus the leeway: clocks of
        client and server may disagree by a few seconds."""
        token, expires = self.authority.issue(7, "Alice")
        self.clock.advance(expires + LEEWAY - self.clock.seconds())
        self.assertEqual(self.authority.verify(token).user_id, 7)

    def test_expired_after_lifetime(self) -> None:
        """Past expiry plus leeway (by the injected clock) a token is refused."""
        token, expires = self.authority.issue(7, "Alice")
        self.clock.advance(expires + LEEWAY + 1 - self.clock.seconds())
        self.assertRefused(token)

    def test_lifetime_is_configurable(self) -> None:
        """``lifetime`` sets how long tokens live."""
        short = TokenAuthority(SECRET, self.clock, lifetime=60)
        token, expires = short.issue(7, "Alice")
        self.assertEqual(expires, int(START) + 60)
        self.clock.advance(60 + LEEWAY + 1)
        self.assertRefused(token, short)

    def test_tampered(self) -> None:
        """Changing the payload breaks the signature."""
        token, _ = self.authority.issue(7, "Alice")
        self.assertRefused(tamper(token))

    def test_forged_claims(self) -> None:
        """A token naming another account, signed with another key, is refused."""
        forged = jwt.encode(
            {"iss": "parkchat", "sub": "1", "name": "admin", "iat": 0, "exp": int(START) + 60},
            OTHER_SECRET,
            algorithm="HS256",
        )
        self.assertRefused(forged)

    def test_wrong_secret(self) -> None:
        """A token from an authority with another secret is refused."""
        token, _ = TokenAuthority(OTHER_SECRET, self.clock).issue(7, "Alice")
        self.assertRefused(token)

    def test_alg_none(self) -> None:
        """An unsigned token (``alg: none``) is refused even with valid claims."""
        unsigned = jwt.encode(
            {"iss": "parkchat", "sub": "7", "name": "Alice", "iat": 0, "exp": int(START) + 60},
            "",  # PyJWT's spelling of "no key"
            algorithm="none",
        )
        self.assertRefused(unsigned)

    def test_other_hmac_algorithm(self) -> None:
        """Only HS256 is accepted for own tokens, even with the right key."""
        token = jwt.encode(
            {"iss": "parkchat", "sub": "7", "name": "Alice", "iat": 0, "exp": int(START) + 60},
            SECRET,
            algorithm="HS512",
        )
        self.assertRefused(token)

    def test_wrong_issuer(self) -> None:
        """A token with the right key but another issuer (e.g. minted for the
        external service) is not a parkchat token."""
        token = sign(
            {"iss": "elsewhere", "sub": "7", "name": "Alice", "iat": 0, "exp": int(START) + 60},
            SECRET,
        )
        self.assertRefused(token)

    def test_missing_claims(self) -> None:
        """Tokens that lack a required claim, or whose subject is not an
        account id, are refused rather than crashing."""
        base = {"iss": "parkchat", "sub": "7", "name": "Alice", "iat": 0, "exp": int(START) + 60}
        for missing in ("sub", "name", "exp", "iss", "iat"):
            claims = {k: v for k, v in base.items() if k != missing}
            self.assertRefused(sign(claims, SECRET))
        self.assertRefused(sign({**base, "sub": "not-a-number"}, SECRET))
        self.assertRefused(sign({**base, "exp": "soon"}, SECRET))

    def test_garbage(self) -> None:
        """Strings that are not JWTs at all are AuthenticationFailed."""
        for garbage in ("", "abc", "not.a.token", "a.b.c.d", "é.é.é", "Bearer x"):
            self.assertRefused(garbage)

    def test_short_secret_refused(self) -> None:
        """A secret shorter than 32 bytes is a configuration error."""
        with self.assertRaises(ValueError):
            TokenAuthority(b"x" * (MIN_SECRET_BYTES - 1), self.clock)
        TokenAuthority(b"x" * MIN_SECRET_BYTES, self.clock)


class RevocationTests(TestCase):
    """Tokens refused before their expiry."""

    def setUp(self) -> None:
        self.clock = make_clock()
        self.revocations = Revocations()
        self.authority = TokenAuthority(SECRET, self.clock, 3600, self.revocations)

    def test_one_token(self) -> None:
        """Revoking a token by id refuses it and no other."""
        token, expires = self.authority.issue(7, "Alice")
        other, _ = self.authority.issue(7, "Alice")
        token_id = self.authority.verify(token).token_id
        assert token_id is not None
        self.revocations.revoke(token_id, expires)
        with self.assertRaises(AuthenticationFailed) as caught:
            self.authority.verify(token)
        self.assertIn("revoked", str(caught.exception))
        self.assertEqual(self.authority.verify(other).user_id, 7)

    def test_cutoff(self) -> None:
        """A cutoff refuses the account's tokens issued until then (to the
        millisecond), not later ones nor other accounts'."""
        before, _ = self.authority.issue(7, "Alice")
        bob, _ = self.authority.issue(8, "bob")
        self.clock.advance(0.0005)
        self.revocations.cut_off(7, int(self.clock.seconds() * 1000))
        self.clock.advance(0.001)
        after, _ = self.authority.issue(7, "Alice")
        self.assertRaises(AuthenticationFailed, self.authority.verify, before)
        self.assertEqual(self.authority.verify(after).user_id, 7)
        self.assertEqual(self.authority.verify(bob).user_id, 8)
        self.revocations.cut_off(7, 0)  # never backwards
        self.assertRaises(AuthenticationFailed, self.authority.verify, before)

    def test_tokens_from_before_ids(self) -> None:
        """Tokens issued before parkchat added jti/iat_ms still verify and
        obey a cutoff by their iat."""
        old = jwt.encode(
            {"iss": "parkchat", "sub": "7", "name": "Alice", "iat": int(START), "exp": 2**40},
            SECRET,
            algorithm="HS256",
        )
        claims = self.authority.verify(old)
        self.assertEqual((claims.token_id, claims.issued_ms), (None, int(START) * 1000))
        self.revocations.cut_off(7, int(START) * 1000)
        self.assertRaises(AuthenticationFailed, self.authority.verify, old)

    def test_revoked_is_not_tried_as_external(self) -> None:
        """A revoked token is refused as such, even where external tokens
        signed with the same secret would be accepted."""
        token, expires = self.authority.issue(7, "Alice")
        token_id = self.authority.verify(token).token_id
        assert token_id is not None
        self.revocations.revoke(token_id, expires)
        verifier = TokenVerifier(self.authority, ExternalTokenVerifier(SECRET, self.clock, "name"))
        with self.assertRaises(AuthenticationFailed) as caught:
            verifier.verify(token)
        self.assertIn("revoked", str(caught.exception))

    def test_load_and_prune(self) -> None:
        self.revocations.load([("a", 100), ("b", 200)], [(7, 5)])
        self.assertEqual(len(self.revocations), 3)
        self.revocations.prune(150)
        self.assertEqual(len(self.revocations), 2)  # "a" expired (and its token with it)
        self.revocations.load([], [])
        self.assertEqual(len(self.revocations), 0)


class ExternalTokenVerifierTests(TestCase):
    """HMAC-signed JWTs from a third-party auth service."""

    def setUp(self) -> None:
        self.clock = make_clock()
        self.exp = int(START) + 600

    def verifier(self, **kwargs: Any) -> ExternalTokenVerifier:
        return ExternalTokenVerifier(EXTERNAL_SECRET, self.clock, **kwargs)

    def assertRefused(self, verifier: ExternalTokenVerifier, token: str) -> None:
        with self.assertRaises(AuthenticationFailed):
            verifier.verify(token)

    def test_username_claim(self) -> None:
        """By default the ``username`` claim is the nickname; such users have
        no parkchat account."""
        claims = self.verifier().verify(sign({"username": "garin", "exp": self.exp}))
        self.assertEqual(claims, TokenClaims("garin", None, self.exp, external=True))

    def test_sub_claim(self) -> None:
        """With ``claim="sub"`` the subject is the nickname and ``username`` is ignored."""
        verifier = self.verifier(claim="sub")
        token = sign({"sub": "garin", "username": "other", "exp": self.exp})
        self.assertEqual(verifier.verify(token).nickname, "garin")
        self.assertRefused(verifier, sign({"username": "garin", "exp": self.exp}))

    def test_other_hmac_algorithms(self) -> None:
        """HS384 and HS512 signatures from the service are accepted."""
        for algorithm in ("HS384", "HS512"):
            token = sign({"username": "garin", "exp": self.exp}, algorithm=algorithm)
            self.assertEqual(self.verifier().verify(token).nickname, "garin")

    def test_invalid_nickname_in_claim(self) -> None:
        """A claim that breaks parkchat's naming rules (or is missing, or not a
        string) is refused: it would break the line protocol."""
        verifier = self.verifier()
        for bad in ("with space", "a:b", "", "x" * 33, 42, None, ["garin"]):
            self.assertRefused(verifier, sign({"username": bad, "exp": self.exp}))
        self.assertRefused(verifier, sign({"exp": self.exp}))

    def test_expiry_by_clock(self) -> None:
        """Expiry (plus leeway) is judged by the injected clock; a token
        without ``exp`` is refused."""
        verifier = self.verifier()
        token = sign({"username": "garin", "exp": self.exp})
        self.clock.advance(self.exp + LEEWAY - self.clock.seconds())
        self.assertEqual(verifier.verify(token).nickname, "garin")
        self.clock.advance(1)
        self.assertRefused(verifier, token)
        self.assertRefused(verifier, sign({"username": "garin"}))

    def test_wrong_secret_and_tampering(self) -> None:
        """A token signed with another key, altered, unsigned or garbage is refused."""
        verifier = self.verifier()
        good = sign({"username": "garin", "exp": self.exp})
        self.assertRefused(verifier, sign({"username": "garin", "exp": self.exp}, OTHER_SECRET))
        self.assertRefused(verifier, tamper(good))
        unsigned = jwt.encode({"username": "garin", "exp": self.exp}, "", algorithm="none")
        self.assertRefused(verifier, unsigned)
        self.assertRefused(verifier, "garbage")

    def test_audience_when_configured(self) -> None:
        """With an audience configured, only tokens for that audience pass."""
        verifier = self.verifier(audience="parkchat")
        self.assertEqual(
            verifier.verify(sign({"username": "g", "aud": "parkchat", "exp": self.exp})).nickname,
            "g",
        )
        self.assertRefused(verifier, sign({"username": "g", "aud": "other", "exp": self.exp}))
        self.assertRefused(verifier, sign({"username": "g", "exp": self.exp}))

    def test_audience_not_configured(self) -> None:
        """Without an audience configured, an ``aud`` claim does not matter."""
        token = sign({"username": "g", "aud": "anything", "exp": self.exp})
        self.assertEqual(self.verifier().verify(token).nickname, "g")

    def test_issuer_when_configured(self) -> None:
        """With an issuer configured, a token from another issuer, or none, is refused."""
        verifier = self.verifier(issuer="https://auth.example")
        good = sign({"username": "g", "iss": "https://auth.example", "exp": self.exp})
        self.assertEqual(verifier.verify(good).nickname, "g")
        self.assertRefused(verifier, sign({"username": "g", "iss": "evil", "exp": self.exp}))
        self.assertRefused(verifier, sign({"username": "g", "exp": self.exp}))

    def test_short_secret_refused(self) -> None:
        """A secret shorter than 32 bytes is a configuration error."""
        with self.assertRaises(ValueError):
            ExternalTokenVerifier(b"short", self.clock)


class TokenVerifierTests(TestCase):
    """Own tokens first, the external service's only when configured."""

    def setUp(self) -> None:
        self.clock = make_clock()
        self.authority = TokenAuthority(SECRET, self.clock)
        self.external = ExternalTokenVerifier(EXTERNAL_SECRET, self.clock)
        self.external_token = sign({"username": "garin", "exp": int(START) + 600})

    def test_own_token(self) -> None:
        """A parkchat token verifies with or without an external verifier."""
        token, expires = self.authority.issue(3, "alice")
        for verifier in (
            TokenVerifier(self.authority),
            TokenVerifier(self.authority, self.external),
        ):
            self.assertEqual(verifier.verify(token), self.authority.verify(token))
            self.assertEqual(verifier.verify(token).expires_at, expires)

    def test_external_only_when_configured(self) -> None:
        """An external token is refused without an external verifier and
        accepted (as an account-less user) with one."""
        with self.assertRaises(AuthenticationFailed):
            TokenVerifier(self.authority).verify(self.external_token)
        claims = TokenVerifier(self.authority, self.external).verify(self.external_token)
        self.assertEqual((claims.nickname, claims.user_id, claims.external), ("garin", None, True))

    def test_neither(self) -> None:
        """A token neither side accepts is AuthenticationFailed."""
        token = sign({"username": "garin", "exp": int(START) + 600}, OTHER_SECRET)
        with self.assertRaises(AuthenticationFailed):
            TokenVerifier(self.authority, self.external).verify(token)

    def test_expired_own_token_not_rescued_by_external(self) -> None:
        """An expired parkchat token is not accepted through the external path."""
        token, _ = self.authority.issue(3, "alice")
        self.clock.advance(self.authority.lifetime + LEEWAY + 1)
        with self.assertRaises(AuthenticationFailed):
            TokenVerifier(self.authority, self.external).verify(token)

    def test_not_a_string(self) -> None:
        """Tokens that are not non-empty strings of sane length (a JSON number,
        null, bytes, a list, an empty or huge string) are refused up front."""
        verifier = TokenVerifier(self.authority, self.external)
        token, _ = self.authority.issue(3, "alice")
        for bad in (None, 123, token.encode("ascii"), [token], {"token": token}, "", "a" * 9000):
            with self.assertRaises(AuthenticationFailed):
                verifier.verify(bad)
