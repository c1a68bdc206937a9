"""Tests for parkchat.limits: token buckets and connection counting."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from parkchat.errors import RateLimited, TooManyConnections
from parkchat.limits import ConnectionCounter, Limits, TokenBucketLimiter


class TokenBucketLimiterTests(TestCase):
    """Per-key token buckets driven by an injected clock."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1000)

    def spend(self, limiter: TokenBucketLimiter, key: str) -> int:
        """Consume until refused; return how many were allowed (at most 1000)."""
        for allowed in range(1000):
            try:
                limiter.consume(key)
            except RateLimited:
                return allowed
        return 1000

    def test_burst(self) -> None:
        """A fresh key may send exactly ``burst`` messages at once."""
        limiter = TokenBucketLimiter(self.clock, rate=1, burst=5)
        self.assertEqual(self.spend(limiter, "alice"), 5)

    def test_refused_raises_rate_limited(self) -> None:
        """The refusal is RateLimited with HTTP status 429."""
        limiter = TokenBucketLimiter(self.clock, rate=1, burst=1)
        limiter.consume("alice")
        error = self.assertRaises(RateLimited, limiter.consume, "alice")
        self.assertEqual(error.http_status, 429)
        self.assertEqual(error.code, "rate_limited")

    def test_refill_over_time(self) -> None:
        """Tokens come back at ``rate`` per second of clock time."""
        limiter = TokenBucketLimiter(self.clock, rate=2, burst=4)
        self.assertEqual(self.spend(limiter, "alice"), 4)
        self.clock.advance(0.4)
        self.assertRaises(RateLimited, limiter.consume, "alice")
        self.clock.advance(0.1)  # 0.5 s at 2/s: one token
        limiter.consume("alice")
        self.assertRaises(RateLimited, limiter.consume, "alice")
        self.clock.advance(1)
        self.assertEqual(self.spend(limiter, "alice"), 2)

    def test_refused_attempts_do_not_cost(self) -> None:
        """Being refused does not push the next token further away."""
        limiter = TokenBucketLimiter(self.clock, rate=1, burst=1)
        limiter.consume("alice")
        for _ in range(5):
            self.clock.advance(0.1)
            self.assertRaises(RateLimited, limiter.consume, "alice")
        self.clock.advance(0.5)
        limiter.consume("alice")

    def test_refill_capped_at_burst(self) -> None:
        """A long idle period saves at most ``burst`` tokens."""
        limiter = TokenBucketLimiter(self.clock, rate=10, burst=3)
        self.spend(limiter, "alice")
        self.clock.advance(3600)
        self.assertEqual(self.spend(limiter, "alice"), 3)

    def test_keys_independent(self) -> None:
        """One user's spent bucket does not limit another."""
        limiter = TokenBucketLimiter(self.clock, rate=1, burst=2)
        self.spend(limiter, "alice")
        self.assertEqual(self.spend(limiter, "bob"), 2)
        self.assertRaises(RateLimited, limiter.consume, "alice")

    def test_rate_zero_is_off(self) -> None:
        """Rate 0 never refuses and keeps no state."""
        limiter = TokenBucketLimiter(self.clock, rate=0, burst=1)
        self.assertEqual(self.spend(limiter, "alice"), 1000)
        self.assertEqual(len(limiter), 0)

    def test_fractional_rate(self) -> None:
        """A rate below one per second still refills, just slowly."""
        limiter = TokenBucketLimiter(self.clock, rate=0.5, burst=1)
        limiter.consume("alice")
        self.clock.advance(1.9)
        self.assertRaises(RateLimited, limiter.consume, "alice")
        self.clock.advance(0.1)
        limiter.consume("alice")

    def test_prune_drops_full_buckets(self) -> None:
        """prune forgets buckets that have refilled, keeps ones still draining."""
        limiter = TokenBucketLimiter(self.clock, rate=1, burst=5)
        limiter.consume("alice")
        self.clock.advance(0.5)
        self.spend(limiter, "bob")
        self.assertEqual(len(limiter), 2)
        self.clock.advance(0.5)  # alice is full again, bob is not
        limiter.prune()
        self.assertEqual(len(limiter), 1)
        self.clock.advance(10)
        limiter.prune()
        self.assertEqual(len(limiter), 0)

    def test_prune_keeps_limits(self) -> None:
        """Pruning a spent bucket is impossible, so pruning never resets a limit."""
        limiter = TokenBucketLimiter(self.clock, rate=1, burst=2)
        self.spend(limiter, "alice")
        limiter.prune()
        self.assertRaises(RateLimited, limiter.consume, "alice")

    def test_pruned_key_starts_full(self) -> None:
        """A key forgotten by prune gets a full burst again."""
        limiter = TokenBucketLimiter(self.clock, rate=1, burst=3)
        self.spend(limiter, "alice")
        self.clock.advance(3)
        limiter.prune()
        self.assertEqual(len(limiter), 0)
        self.assertEqual(self.spend(limiter, "alice"), 3)

    def test_prune_with_rate_zero_clears(self) -> None:
        """With limiting off, prune empties the table."""
        limiter = TokenBucketLimiter(self.clock, rate=1, burst=2)
        limiter.consume("alice")
        limiter.rate = 0
        limiter.prune()
        self.assertEqual(len(limiter), 0)


class ConnectionCounterTests(TestCase):
    """ConnectionCounter enforces a per-key maximum of open connections."""

    def test_limit(self) -> None:
        """acquire succeeds ``limit`` times, then raises TooManyConnections."""
        counter = ConnectionCounter(limit=2, what="account")
        counter.acquire("alice")
        counter.acquire("alice")
        error = self.assertRaises(TooManyConnections, counter.acquire, "alice")
        self.assertEqual(counter.count("alice"), 2)
        self.assertIn("account", error.message)
        self.assertIn("2", error.message)
        self.assertEqual(error.http_status, 429)

    def test_check_does_not_count(self) -> None:
        """check raises at the limit but never takes a slot itself."""
        counter = ConnectionCounter(limit=1, what="address")
        counter.check("1.2.3.4")
        counter.check("1.2.3.4")
        self.assertEqual(counter.count("1.2.3.4"), 0)
        counter.acquire("1.2.3.4")
        self.assertRaises(TooManyConnections, counter.check, "1.2.3.4")

    def test_release_frees_a_slot(self) -> None:
        """After release another connection fits; the key vanishes at zero."""
        counter = ConnectionCounter(limit=1, what="account")
        counter.acquire("alice")
        counter.release("alice")
        self.assertEqual(counter.count("alice"), 0)
        self.assertEqual(counter._counts, {})
        counter.acquire("alice")
        self.assertEqual(counter.count("alice"), 1)

    def test_release_unknown_key(self) -> None:
        """Releasing a key never acquired is harmless and never goes negative."""
        counter = ConnectionCounter(limit=1, what="account")
        counter.release("ghost")
        self.assertEqual(counter.count("ghost"), 0)
        counter.acquire("ghost")
        self.assertRaises(TooManyConnections, counter.acquire, "ghost")

    def test_keys_independent(self) -> None:
        """One key at its limit does not affect another."""
        counter = ConnectionCounter(limit=1, what="account")
        counter.acquire("alice")
        counter.acquire("bob")
        self.assertEqual(counter.count("bob"), 1)

    def test_zero_is_unlimited(self) -> None:
        """Limit 0 turns the check off."""
        counter = ConnectionCounter(limit=0, what="account")
        for _ in range(100):
            counter.acquire("alice")
        self.assertEqual(counter.count("alice"), 100)


class LimitsTests(TestCase):
    """The documented defaults."""

    def test_defaults(self) -> None:
        """Defaults match MISSION.md: rate 10/s, 20 per user, 1000 per IP, history 50."""
        limits = Limits()
        self.assertEqual(limits.rate_limit, 10.0)
        self.assertEqual(limits.max_connections_per_user, 20)
        self.assertEqual(limits.max_connections_per_ip, 1000)
        self.assertEqual(limits.history_default, 50)
