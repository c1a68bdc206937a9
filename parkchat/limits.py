"""Rate and connection limits shared by every surface."""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

from twisted.internet.interfaces import IReactorTime

from parkchat.errors import RateLimited, TooManyAttempts, TooManyConnections
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
    #: Failed logins allowed per (account, address) and per address before
    #: the back-off (``LoginThrottle``); counts forgotten ``login_window``
    #: seconds after the back-off ends.
    login_failures: int = 5
    login_failures_per_address: int = 50
    login_backoff: float = 1.0
    login_backoff_max: float = 900.0
    login_window: float = 300.0
    #: New accounts per address an hour, and in all a minute (0 = no
    #: limit). Off here, for services built in code (tests, embedding);
    #: the command line's defaults are 10 and 60 (``parkchat.config``).
    registrations_per_address: int = 0
    registrations_per_minute: int = 0
    #: Reverse proxies: a connection that resolves to one of them (no
    #: forwarded client address) stands for many clients and is not limited
    #: or throttled per address.
    trusted_proxies: TrustedProxies = field(default_factory=TrustedProxies)

    def address_key(self, host: str) -> str | None:
        """The key to count ``host`` by per address; None when it is a
        trusted proxy's own address."""
        return None if self.trusted_proxies.trusts(host) else host


def throttle_address(host: str) -> str:
    """The address failed logins and registrations are counted by: an IPv6
    client by its /64 (one subscriber is routinely given a whole /64, so
    counting single IPv6 addresses would count nothing), an IPv4 client
    (or anything else) as it is."""
    if ":" not in host:
        return host
    try:
        address = ipaddress.IPv6Address(host.partition("%")[0])
    except ValueError:
        return host
    if address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(ipaddress.IPv6Network(f"{address}/64", strict=False))


#: A throttle key: ("pair", account, address) or ("address", address).
Key = tuple[str, ...]


@dataclass(slots=True)
class _Failures:
    count: int
    last: float


#: Most password checks in progress at once from one address: a crowd of
#: concurrent guesses would otherwise all start before the first failure
#: is counted.
MAX_CHECKS_PER_ADDRESS = 8


@dataclass
class LoginThrottle:
    """Failed logins with exponential back-off, counted per (account,
    address) and per address, never per account alone.

    Each key may fail ``free`` times (``pair_failures`` for one account from
    one address, ``address_failures`` for all accounts from one address);
    after that it must wait ``backoff`` seconds after its last failure,
    doubling with each further failure up to ``backoff_max``. A key's count
    is forgotten ``forget_after`` seconds after its back-off ends. A success
    clears the (account, address) count, not the address's (an attacker
    could otherwise reset it with a login of their own).

    Why not per account: then anyone could lock a user out with ten wrong
    passwords. Here a correct password from an address with no recent
    failures is never refused; the price is that a crowd of many addresses
    gets ``pair_failures`` guesses (plus the back-off's) per address and
    account (docs/security.md says what bounds it).
    """

    clock: IReactorTime
    pair_failures: int = 5
    address_failures: int = 50
    backoff: float = 1.0
    backoff_max: float = 900.0
    forget_after: float = 300.0
    _failures: dict[Key, _Failures] = field(default_factory=dict)
    _checking: dict[Key, int] = field(default_factory=dict)

    @staticmethod
    def keys(account: str, address: str | None, host: str) -> tuple[Key, Key | None]:
        """The (account, address) key and the address key of a login from
        ``host``; ``address`` None (a trusted proxy's own address: many
        clients) has no address key."""
        where = throttle_address(address if address is not None else host)
        return ("pair", account, where), (("address", where) if address is not None else None)

    def _free(self, key: Key) -> int:
        """Failures ``key`` may have before its back-off; 0 = not counted.
        ``pair_failures`` 0 turns the whole throttle off (``--login-failures 0``)."""
        if self.pair_failures <= 0:
            return 0
        return self.address_failures if key[0] == "address" else self.pair_failures

    def _delay(self, key: Key, record: _Failures) -> float:
        over = record.count - self._free(key)
        if over < 0:
            return 0.0
        return min(self.backoff_max, self.backoff * 2.0 ** min(over, 64))

    def _record(self, key: Key) -> _Failures | None:
        record = self._failures.get(key)
        if record is None:
            return None
        if self.clock.seconds() > record.last + self._delay(key, record) + self.forget_after:
            del self._failures[key]
            return None
        return record

    def retry_after(self, *keys: Key | None) -> float:
        """Seconds until every key may try again (0 = now)."""
        wait = 0.0
        now = self.clock.seconds()
        for key in keys:
            if key is None or self._free(key) <= 0:
                continue
            record = self._record(key)
            if record is not None:
                wait = max(wait, record.last + self._delay(key, record) - now)
        return wait

    def suspect(self, *keys: Key | None) -> bool:
        """Whether any of ``keys`` has recent failures (its logins wait
        behind clean ones in the bcrypt queue)."""
        return any(
            key is not None and self._free(key) > 0 and self._record(key) is not None
            for key in keys
        )

    def busy(self, key: Key | None) -> bool:
        """Whether ``key`` has MAX_CHECKS_PER_ADDRESS checks in progress."""
        return key is not None and self._checking.get(key, 0) >= MAX_CHECKS_PER_ADDRESS

    def checking(self, key: Key | None, delta: int) -> None:
        """Count a check starting (+1) or ending (-1) for ``key``."""
        if key is None:
            return
        count = self._checking.get(key, 0) + delta
        if count > 0:
            self._checking[key] = count
        else:
            self._checking.pop(key, None)

    def failed(self, *keys: Key | None) -> None:
        now = self.clock.seconds()
        for key in keys:
            if key is None or self._free(key) <= 0:
                continue
            record = self._record(key)
            if record is None:
                self._failures[key] = _Failures(1, now)
            else:
                record.count += 1
                record.last = now

    def succeeded(self, key: Key) -> None:
        self._failures.pop(key, None)

    def prune(self) -> None:
        for key in list(self._failures):
            self._record(key)

    def __len__(self) -> int:
        return len(self._failures)


@dataclass
class RegistrationThrottle:
    """New accounts: at most ``per_address`` an hour from one address and
    ``per_minute`` a minute in all (token buckets; 0 = no limit), so that a
    storm of registrations is refused before it costs a bcrypt hash each.
    The global budget bounds what a crowd of addresses can make the bcrypt
    threads do; logins go first in the bcrypt queue anyway
    (``PasswordHasher``)."""

    clock: IReactorTime
    per_address: int = 10
    per_minute: int = 60
    _buckets: dict[Hashable, _Bucket] = field(default_factory=dict)

    def _take(self, key: Hashable, rate: float, burst: float) -> float:
        """Take a token from ``key``'s bucket; the seconds to wait if empty."""
        now = self.clock.seconds()
        bucket = self._buckets.get(key)
        tokens = (
            burst if bucket is None else min(burst, bucket.tokens + (now - bucket.stamp) * rate)
        )
        if tokens < 1:
            return (1 - tokens) / rate
        self._buckets[key] = _Bucket(tokens - 1, now)
        return 0.0

    def _give_back(self, key: Hashable) -> None:
        bucket = self._buckets.get(key)
        if bucket is not None:
            bucket.tokens += 1

    def check(self, address: str | None) -> None:
        """Take one registration for ``address`` (None: not counted per
        address) or raise TooManyAttempts."""
        where = None if address is None else ("address", throttle_address(address))
        if where is not None and self.per_address > 0:
            wait = self._take(where, self.per_address / 3600.0, self.per_address)
            if wait > 0:
                raise TooManyAttempts(
                    f"too many new accounts from this address: try again in {math.ceil(wait)} "
                    "seconds"
                )
        if self.per_minute > 0:
            wait = self._take("all", self.per_minute / 60.0, self.per_minute)
            if wait > 0:
                if where is not None and self.per_address > 0:
                    self._give_back(where)
                raise TooManyAttempts(
                    f"too many new accounts right now: try again in {math.ceil(wait)} seconds"
                )

    def prune(self) -> None:
        """Forget full buckets (they carry no state)."""
        now = self.clock.seconds()
        for key, bucket in list(self._buckets.items()):
            rate, burst = (
                (self.per_minute / 60.0, self.per_minute)
                if key == "all"
                else (self.per_address / 3600.0, self.per_address)
            )
            if rate <= 0 or bucket.tokens + (now - bucket.stamp) * rate >= burst:
                del self._buckets[key]
