"""Rate and connection limits shared by every surface."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

from twisted.internet.interfaces import IReactorTime

from parkchat.errors import RateLimited, TooManyConnections
from parkchat.proxies import TrustedProxies


@dataclass(slots=True)
class _Bucket:
    tokens: float
    stamp: float


@dataclass
class TokenBucketLimiter:
    """Per-key token buckets: ``rate`` tokens a second, at most ``burst`` saved.

    Keys are account (or guest) names, so a user's connections share one
    bucket. ``rate`` 0 turns limiting off. Idle buckets are forgotten by
    ``prune`` so the table stays as small as the set of active users.
    ``on_limited`` is told of every refusal (metrics).
    """

    clock: IReactorTime
    rate: float
    burst: float
    on_limited: Callable[[], object] | None = None
    _buckets: dict[Hashable, _Bucket] = field(default_factory=dict)

    def consume(self, key: Hashable) -> None:
        """Take one token for ``key`` or raise RateLimited."""
        if self.rate <= 0:
            return
        now = self.clock.seconds()
        bucket = self._buckets.get(key)
        if bucket is None:
            self._buckets[key] = _Bucket(self.burst - 1, now)
            return
        tokens = min(self.burst, bucket.tokens + (now - bucket.stamp) * self.rate)
        bucket.stamp = now
        if tokens < 1:
            bucket.tokens = tokens
            if self.on_limited is not None:
                self.on_limited()
            raise RateLimited()
        bucket.tokens = tokens - 1

    def prune(self) -> None:
        """Drop buckets that have refilled completely: they carry no state."""
        if self.rate <= 0:
            self._buckets.clear()
            return
        now = self.clock.seconds()
        full = [
            key
            for key, bucket in self._buckets.items()
            if bucket.tokens + (now - bucket.stamp) * self.rate >= self.burst
        ]
        for key in full:
            del self._buckets[key]

    def __len__(self) -> int:
        return len(self._buckets)


@dataclass
class ConnectionCounter:
    """Counts open connections per key against a maximum (0 = no limit);
    the key None (nothing to count by) is never counted nor refused."""

    limit: int
    what: str
    #: What the refusal says instead of "too many connections for this <what>".
    refusal: str = ""
    _counts: dict[Hashable, int] = field(default_factory=dict)

    def check(self, key: Hashable) -> None:
        """Raise TooManyConnections if one more connection for ``key`` is too many."""
        if self.limit and key is not None and self._counts.get(key, 0) >= self.limit:
            said = self.refusal or f"too many connections for this {self.what}"
            raise TooManyConnections(f"{said} (limit {self.limit})")

    def acquire(self, key: Hashable) -> None:
        self.check(key)
        if key is not None:
            self._counts[key] = self._counts.get(key, 0) + 1

    def release(self, key: Hashable) -> None:
        if key is None:
            return
        count = self._counts.get(key, 0) - 1
        if count > 0:
            self._counts[key] = count
        else:
            self._counts.pop(key, None)

    def count(self, key: Hashable) -> int:
        return self._counts.get(key, 0)


@dataclass(frozen=True)
class Limits:
    """The service's configurable limits (see docs/configuration.md)."""

    max_content_length: int = 4000
    rate_limit: float = 10.0
    rate_burst: float = 20.0
    max_connections_per_user: int = 20
    max_connections_per_ip: int = 1000
    #: Guests (connections without an account) per address, and the rate
    #: all guests from one address share: ten guest names from one address
    #: do not get ten times the rate, nor a thousand sockets.
    max_guests_per_ip: int = 20
    guest_rate_per_ip: float = 20.0
    guest_burst_per_ip: float = 40.0
    history_default: int = 50
    history_max: int = 200
    #: Disconnect (instead of answering with an error) when the rate limit is hit.
    rate_strict: bool = False
    #: Failed logins per account and per address in ``login_window`` seconds.
    login_failures: int = 10
    login_window: float = 300.0
    #: Reverse proxies: a connection that resolves to one of them (no
    #: forwarded client address) stands for many clients and is not limited
    #: or throttled per address.
    trusted_proxies: TrustedProxies = field(default_factory=TrustedProxies)

    def address_key(self, host: str) -> str | None:
        """The key to count ``host`` by per address; None when it is a
        trusted proxy's own address."""
        return None if self.trusted_proxies.trusts(host) else host


@dataclass
class LoginThrottle:
    """Counts failed logins per key (an account, an address) in a sliding
    window; past ``max_failures`` the key is refused until old failures age
    out. Successful logins clear the account's count, not the address's."""

    clock: IReactorTime
    max_failures: int = 10
    window: float = 300.0
    _failures: dict[Hashable, list[float]] = field(default_factory=dict)

    def _recent(self, key: Hashable) -> list[float]:
        cutoff = self.clock.seconds() - self.window
        stamps = [t for t in self._failures.get(key, ()) if t > cutoff]
        if stamps:
            self._failures[key] = stamps
        else:
            self._failures.pop(key, None)
        return stamps

    def retry_after(self, *keys: Hashable) -> float:
        """Seconds until every key may try again (0 = now)."""
        if self.max_failures <= 0:
            return 0.0
        wait = 0.0
        for key in keys:
            stamps = self._recent(key)
            if len(stamps) >= self.max_failures:
                oldest = stamps[-self.max_failures]
                wait = max(wait, oldest + self.window - self.clock.seconds())
        return wait

    def failed(self, *keys: Hashable) -> None:
        if self.max_failures <= 0:
            return
        now = self.clock.seconds()
        for key in keys:
            stamps = self._failures.setdefault(key, [])
            stamps.append(now)
            del stamps[: -self.max_failures]  # bounded per key

    def succeeded(self, key: Hashable) -> None:
        self._failures.pop(key, None)

    def prune(self) -> None:
        for key in list(self._failures):
            self._recent(key)
