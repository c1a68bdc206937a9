"""Tests for parkchat.limits: token buckets and connection counting."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from parkchat.errors import RateLimited, TooManyAttempts, TooManyConnections
from parkchat.limits import (
    MAX_CHECKS_PER_ADDRESS,
    ConnectionCounter,
    Limits,
    LoginThrottle,
    RegistrationThrottle,
    TokenBucketLimiter,
    throttle_address,
)


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


class ThrottleAddressTests(TestCase):
    """What failed logins and registrations are counted by."""

    def test_ipv4_as_it_is(self) -> None:
        self.assertEqual(throttle_address("203.0.113.7"), "203.0.113.7")

    def test_ipv6_by_its_64(self) -> None:
        """Two addresses of one /64 count as one; another /64 apart."""
        a = throttle_address("2001:db8:1:2::1")
        self.assertEqual(a, throttle_address("2001:db8:1:2:ffff::9"))
        self.assertEqual(a, "2001:db8:1:2::/64")
        self.assertNotEqual(a, throttle_address("2001:db8:1:3::1"))

    def test_ipv4_mapped(self) -> None:
        """An IPv4-mapped IPv6 address is its IPv4 address, not the /64
        every IPv4 client would share."""
        self.assertEqual(throttle_address("::ffff:198.51.100.4"), "198.51.100.4")
        self.assertNotEqual(
            throttle_address("::ffff:198.51.100.4"), throttle_address("::ffff:198.51.100.5")
        )

    def test_not_an_address(self) -> None:
        self.assertEqual(throttle_address("unix"), "unix")
        self.assertEqual(throttle_address("fe80::1%eth0"), "fe80::/64")


class LoginBackoffTests(TestCase):
    """LoginThrottle: per (account, address) and per address, exponential
    back-off, never per account alone."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1000)
        self.throttle = LoginThrottle(
            self.clock, pair_failures=3, address_failures=10, backoff=1, backoff_max=60,
            forget_after=100,
        )  # fmt: skip

    def keys(self, account: str, host: str) -> tuple[object, object]:
        return LoginThrottle.keys(account, host, host)

    def fail(self, account: str, host: str, times: int = 1) -> None:
        for _ in range(times):
            self.throttle.failed(*self.keys(account, host))

    def wait(self, account: str, host: str) -> float:
        return self.throttle.retry_after(*self.keys(account, host))

    def test_free_failures_then_doubling(self) -> None:
        """The first ``pair_failures`` cost nothing; then each failure
        doubles the wait after it, up to ``backoff_max``."""
        self.fail("victim", "10.0.0.1", 2)
        self.assertEqual(self.wait("victim", "10.0.0.1"), 0)
        waits = []
        for _ in range(9):
            self.fail("victim", "10.0.0.1")
            waits.append(self.wait("victim", "10.0.0.1"))
        self.assertEqual(waits, [1, 2, 4, 8, 16, 32, 60, 60, 60])

    def test_wait_counts_down(self) -> None:
        self.fail("victim", "10.0.0.1", 5)
        self.assertEqual(self.wait("victim", "10.0.0.1"), 4)
        self.clock.advance(3)
        self.assertEqual(self.wait("victim", "10.0.0.1"), 1)
        self.clock.advance(1)
        self.assertEqual(self.wait("victim", "10.0.0.1"), 0)

    def test_other_addresses_are_not_locked_out(self) -> None:
        """However many failures for an account come from other addresses,
        an address with none of its own may try at once: a stranger cannot
        lock a user out."""
        for i in range(50):
            self.fail("victim", f"10.1.{i}.1", 10)
        self.assertEqual(self.wait("victim", "192.0.2.1"), 0)

    def test_per_address_across_accounts(self) -> None:
        """One address guessing many accounts backs off as a whole."""
        for i in range(10):
            self.fail(f"user{i}", "10.0.0.1")
        self.assertEqual(self.wait("fresh", "10.0.0.1"), 1)
        self.assertEqual(self.wait("fresh", "10.0.0.2"), 0)

    def test_no_address_key_for_a_proxy(self) -> None:
        """A trusted proxy's own address (``address`` None) is counted per
        account and address only, never as one address for all."""
        pair, address = LoginThrottle.keys("alice", None, "10.9.9.9")
        self.assertIsNone(address)
        for i in range(20):
            self.throttle.failed(*LoginThrottle.keys(f"user{i}", None, "10.9.9.9"))
        self.assertEqual(self.throttle.retry_after(pair, address), 0)

    def test_forgotten_after_quiet(self) -> None:
        """A count is forgotten ``forget_after`` seconds after its back-off
        ends: the next failures are free again."""
        self.fail("victim", "10.0.0.1", 4)
        self.assertEqual(self.wait("victim", "10.0.0.1"), 2)
        self.clock.advance(2 + 100 + 1)
        self.assertEqual(self.wait("victim", "10.0.0.1"), 0)
        self.throttle.prune()
        self.assertEqual(len(self.throttle), 0)
        self.fail("victim", "10.0.0.1", 2)
        self.assertEqual(self.wait("victim", "10.0.0.1"), 0)

    def test_success_clears_the_pair_only(self) -> None:
        pair, address = self.keys("alice", "10.0.0.1")
        self.fail("alice", "10.0.0.1", 3)
        for i in range(7):
            self.fail(f"user{i}", "10.0.0.1")
        self.throttle.succeeded(pair)
        self.assertEqual(self.throttle.retry_after(pair), 0)
        self.assertEqual(self.throttle.retry_after(address), 1)

    def test_off(self) -> None:
        """``--login-failures 0`` turns the whole throttle off, per address too."""
        throttle = LoginThrottle(self.clock, pair_failures=0, address_failures=50)
        for _ in range(100):
            throttle.failed(*self.keys("victim", "10.0.0.1"))
        self.assertEqual(throttle.retry_after(*self.keys("victim", "10.0.0.1")), 0)
        self.assertEqual(len(throttle), 0)

    def test_checks_in_progress(self) -> None:
        """At most MAX_CHECKS_PER_ADDRESS checks at once per key."""
        _, address = self.keys("alice", "10.0.0.1")
        for _ in range(MAX_CHECKS_PER_ADDRESS):
            self.assertFalse(self.throttle.busy(address))
            self.throttle.checking(address, +1)
        self.assertTrue(self.throttle.busy(address))
        self.throttle.checking(address, -1)
        self.assertFalse(self.throttle.busy(address))
        self.assertFalse(self.throttle.busy(None))


class RegistrationThrottleTests(TestCase):
    """RegistrationThrottle: per address an hour, in all a minute."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1000)

    def allowed(self, throttle: RegistrationThrottle, host: str | None, tries: int = 100) -> int:
        for n in range(tries):
            try:
                throttle.check(host)
            except TooManyAttempts:
                return n
        return tries

    def test_per_address(self) -> None:
        """``per_address`` at once, then one every 3600/per_address seconds;
        other addresses unaffected; the refusal says how long to wait."""
        throttle = RegistrationThrottle(self.clock, per_address=3, per_minute=0)
        self.assertEqual(self.allowed(throttle, "10.0.0.1"), 3)
        error = self.assertRaises(TooManyAttempts, throttle.check, "10.0.0.1")
        self.assertEqual(error.http_status, 429)
        self.assertIn("try again in 1200 seconds", error.message)
        self.assertEqual(self.allowed(throttle, "10.0.0.2"), 3)
        self.clock.advance(1201)
        self.assertEqual(self.allowed(throttle, "10.0.0.1"), 1)

    def test_global_budget(self) -> None:
        """Many addresses together get ``per_minute``; a refusal by the
        global budget does not spend the address's own."""
        throttle = RegistrationThrottle(self.clock, per_address=2, per_minute=5)
        total = sum(self.allowed(throttle, f"10.0.0.{i}", 3) for i in range(10))
        self.assertEqual(total, 5)
        self.clock.advance(13)
        self.assertEqual(self.allowed(throttle, "10.0.0.9"), 1)

    def test_administrator_not_per_address(self) -> None:
        throttle = RegistrationThrottle(self.clock, per_address=1, per_minute=0)
        self.assertEqual(self.allowed(throttle, None), 100)

    def test_prune(self) -> None:
        throttle = RegistrationThrottle(self.clock, per_address=2, per_minute=10)
        throttle.check("10.0.0.1")
        self.clock.advance(3600)
        throttle.prune()
        self.assertEqual(throttle._buckets, {})
