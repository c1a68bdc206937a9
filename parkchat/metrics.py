"""Prometheus metrics of one ChatService, in a registry of its own.

The hot paths only add to plain integers (``metrics.deliveries += n``): no
locks, no label lookups, nothing per member. Everything that can be read off
the service's state (connections, rooms) is computed when Prometheus scrapes,
by a custom collector. Only the two group-commit histograms go through
``prometheus_client`` objects, observed once per batch.

Each service gets its own ``CollectorRegistry``, so several services in one
process (tests, or two ``makeService`` calls) never clash over metric names
in the global registry. The collector reads service state and must run on
the reactor thread: render with ``render()`` from a resource, never from the
WSGI thread pool ``prometheus_client.twisted.MetricsResource`` uses.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from parkchat.errors import ChatError

#: The connection surfaces, as ``parkchat_connections{surface=...}`` labels.
SURFACES = (
    "room_ws",
    "app_ws",
    "mychat",
    "tcp",
    "irc",
    "garinchat",
    "golang_chat",
    "lildengzi",
)
#: Label for an error code that is not one of the ChatError codes.
OTHER = "other"
CONTENT_TYPE = CONTENT_TYPE_LATEST.encode("ascii")

BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000)
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def error_codes() -> frozenset[str]:
    """Every ``code`` of a ChatError class: the bounded label set of
    ``parkchat_errors_sent_total``."""
    codes: set[str] = set()
    pending: list[type[ChatError]] = [ChatError]
    while pending:
        cls = pending.pop()
        codes.add(cls.code)
        pending.extend(cls.__subclasses__())
    return frozenset(codes)


class ServiceState(Protocol):
    """What the collector reads from the service at scrape time."""

    def connections_by_surface(self) -> Mapping[str, int]: ...

    @property
    def room_count(self) -> int: ...

    @property
    def bus_live(self) -> bool | None: ...


class ServiceMetrics:
    """The counters a ChatService keeps and the registry that exposes them."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        #: Chat messages posted to rooms (before validation and rate limiting).
        self.messages_received = 0
        #: Chat messages committed to the store.
        self.messages_stored = 0
        #: Batches whose transaction failed.
        self.commit_failures = 0
        #: Messages handed to members (one per member per room event).
        self.deliveries = 0
        #: Room messages delivered here from the store because the bus did
        #: not bring them in order (lost, or late): gap fills.
        self.messages_filled = 0
        #: Room messages the bus brought again (or late): dropped.
        self.duplicates_dropped = 0
        #: Refused credentials by method ("password", "token").
        self.auth_failures = {"password": 0, "token": 0}
        #: Logins answered 429 by the failed-login throttle.
        self.login_throttled = 0
        #: Messages refused by the per-user rate limit.
        self.rate_limited = 0
        #: Sockets closed as soon as they were accepted: their address already
        #: had --max-connections-per-ip open.
        self.connections_refused = 0
        #: Error replies sent to clients, by (surface, code).
        self.errors_sent: dict[tuple[str, str], int] = {}
        self._codes = error_codes()
        self.commit_batch_size = Histogram(
            "parkchat_commit_batch_size",
            "Messages per group-commit transaction.",
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.commit_seconds = Histogram(
            "parkchat_commit_seconds",
            "Seconds from starting a group-commit transaction to its commit.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )

    def watch(self, state: ServiceState) -> None:
        """Expose ``state`` (the service) and the counters at scrape time."""
        self.registry.register(_ServiceCollector(self, state))

    def batch_done(self, size: int, seconds: float, committed: bool) -> None:
        """A group-commit batch of ``size`` messages committed (or failed)."""
        if committed:
            self.messages_stored += size
            self.commit_batch_size.observe(size)
            self.commit_seconds.observe(seconds)
        else:
            self.commit_failures += 1

    def rate_limit_hit(self) -> None:
        """A message (or directory listing) was refused by the rate limit."""
        self.rate_limited += 1

    def connection_refused(self) -> None:
        self.connections_refused += 1

    def token_failed(self) -> None:
        self.auth_failures["token"] += 1

    def error_sent(self, surface: str, code: str) -> None:
        """An error reply with ``code`` went to a client of ``surface``."""
        key = (surface, code if code in self._codes else OTHER)
        self.errors_sent[key] = self.errors_sent.get(key, 0) + 1

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)


class _ServiceCollector(Collector):
    def __init__(self, metrics: ServiceMetrics, state: ServiceState) -> None:
        self._metrics = metrics
        self._state = state

    def collect(self) -> Iterable[Metric]:
        m = self._metrics
        connections = GaugeMetricFamily(
            "parkchat_connections",
            "Open registered connections by surface.",
            labels=["surface"],
        )
        by_surface = self._state.connections_by_surface()
        for surface in (*SURFACES, *sorted(set(by_surface) - set(SURFACES))):
            connections.add_metric([surface], by_surface.get(surface, 0))
        yield connections
        yield GaugeMetricFamily(
            "parkchat_rooms", "Rooms with members on this instance.", value=self._state.room_count
        )
        live = self._state.bus_live
        if live is not None:
            yield GaugeMetricFamily(
                "parkchat_bus_up",
                "1 while the shared bus (Redis) carries events between instances, else 0 "
                "(this instance then serves its own members only: /health/ready says degraded).",
                value=int(live),
            )
        yield CounterMetricFamily(
            "parkchat_messages_received",
            "Chat messages posted to rooms, before validation and rate limiting.",
            value=m.messages_received,
        )
        yield CounterMetricFamily(
            "parkchat_messages_stored",
            "Chat messages committed to the database.",
            value=m.messages_stored,
        )
        yield CounterMetricFamily(
            "parkchat_commit_failures",
            "Group-commit transactions that failed.",
            value=m.commit_failures,
        )
        yield CounterMetricFamily(
            "parkchat_deliveries",
            "Room events handed to members (one per member per event).",
            value=m.deliveries,
        )
        yield CounterMetricFamily(
            "parkchat_messages_filled",
            "Room messages delivered from the database because the bus did not bring "
            "them in order (gap fills after a lost or late event).",
            value=m.messages_filled,
        )
        yield CounterMetricFamily(
            "parkchat_duplicates_dropped",
            "Room messages the bus brought after they were delivered here: dropped.",
            value=m.duplicates_dropped,
        )
        auth = CounterMetricFamily(
            "parkchat_auth_failures",
            "Refused credentials by method (password, token).",
            labels=["method"],
        )
        for method, count in sorted(m.auth_failures.items()):
            auth.add_metric([method], count)
        yield auth
        yield CounterMetricFamily(
            "parkchat_login_throttled",
            "Logins refused by the failed-login throttle (429).",
            value=m.login_throttled,
        )
        yield CounterMetricFamily(
            "parkchat_rate_limited",
            "Messages refused by the per-user rate limit.",
            value=m.rate_limited,
        )
        yield CounterMetricFamily(
            "parkchat_connections_refused",
            "Sockets closed at accept because their address was at --max-connections-per-ip.",
            value=m.connections_refused,
        )
        errors = CounterMetricFamily(
            "parkchat_errors_sent",
            "Error replies sent to clients, by surface and error code.",
            labels=["surface", "code"],
        )
        for (surface, code), count in sorted(m.errors_sent.items()):
            errors.add_metric([surface, code], count)
        yield errors
