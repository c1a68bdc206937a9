"""/metrics: the Prometheus exposition of one service, its counters, the
token protection and the separate-listener configuration."""

from __future__ import annotations

from typing import Any

from treq.testing import StubTreq
from twisted.internet.address import IPv4Address
from twisted.internet.defer import fail
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial.unittest import TestCase
from twisted.web.server import Site

from prometheus_client.parser import text_string_to_metric_families

from parkchat.config import ConfigError, resolve
from parkchat.errors import AuthenticationFailed, RateLimited, TooManyAttempts
from parkchat.limits import Limits
from parkchat.metrics import SURFACES, ServiceMetrics, error_codes
from parkchat.model import Message
from parkchat.protocols.line import LineChatFactory
from parkchat.protocols.stream import StreamOptions
from parkchat.rooms import Room
from parkchat.store.writer import GroupCommitWriter
from parkchat.tap import Listener, Options, makeService
from parkchat.tokens import TokenAuthority, TokenVerifier
from tests.helpers import FakeParticipant, RecordingEncoder, adapter_context, make_service, site_for

TOKEN = "metrics-bearer-9f2c7a41d0b85e36c4a1f7d2"


class SurfaceEncoder(RecordingEncoder):
    def __init__(self, surface: str) -> None:
        super().__init__()
        self.surface = surface


def parse(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape, keyed by (name, sorted labels)."""
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


class MetricsScrapeTests(TestCase):
    """Drive a service in memory, then scrape /metrics and parse it."""

    def setUp(self) -> None:
        self.service, self.store, self.clock = make_service(
            limits=Limits(rate_limit=1, rate_burst=3, login_failures=1)
        )
        self.addCleanup(self.service.stopService)

    def scrape(self, **site_options: Any) -> Any:
        site = site_for(self.service, access_log=False, **site_options)
        return StubTreq(site.resource), site

    async def get(self, headers: dict[str, str] | None = None, **site_options: Any) -> Any:
        stub, _ = self.scrape(metrics=self.service.metrics, **site_options)
        response = await stub.get("http://x/metrics", headers=headers)
        return response, (await response.content()).decode("utf-8")

    async def test_counts_after_traffic(self) -> None:
        """Connections by surface, rooms, messages received and stored,
        deliveries, commit histograms, auth failures, throttle and rate-limit
        hits, and error replies all show what the service did."""
        ws, tcp = SurfaceEncoder("room_ws"), SurfaceEncoder("tcp")
        alice = FakeParticipant("alice", ws)
        bob = FakeParticipant("bob", ws)
        carol = FakeParticipant("carol", tcp)
        for p in (alice, bob, carol):
            self.service.connect(p)
            self.service.join(p, "lobby")
        self.service.connect(FakeParticipant("dave", tcp))  # connected, in no room
        joined = self.service.metrics.deliveries
        self.assertEqual(joined, 1 + 2 + 3)  # each join goes to everyone present
        for text in ("one", "two", "three"):
            self.service.post(alice, "lobby", text)
        with self.assertRaises(RateLimited):
            self.service.post(alice, "lobby", "four")
        self.clock.advance(0)  # one group commit of three messages

        await self.service.register("erin", "correct horse battery")
        with self.assertRaises(AuthenticationFailed):
            await self.service.login("erin", "wrong password", "10.0.0.1")
        with self.assertRaises(TooManyAttempts):
            await self.service.login("erin", "wrong password", "10.0.0.1")
        verifier = TokenVerifier(
            TokenAuthority(b"k" * 32, self.clock), on_failure=self.service.metrics.token_failed
        )
        self.assertRaises(AuthenticationFailed, verifier.verify, "not-a-token")
        self.service.metrics.error_sent("app_ws", "not_in_room")
        self.service.metrics.error_sent("app_ws", "made-up code")

        response, text = await self.get()
        self.assertEqual(response.code, 200)
        self.assertTrue(
            response.headers.getRawHeaders("content-type")[0].startswith("text/plain; version=")
        )
        s = parse(text)
        self.assertEqual(s[("parkchat_connections", (("surface", "room_ws"),))], 2)
        self.assertEqual(s[("parkchat_connections", (("surface", "tcp"),))], 2)
        self.assertEqual(s[("parkchat_connections", (("surface", "app_ws"),))], 0)
        self.assertEqual(s[("parkchat_connections", (("surface", "mychat"),))], 0)
        self.assertEqual(s[("parkchat_rooms", ())], 1)
        self.assertEqual(s[("parkchat_messages_received_total", ())], 4)
        self.assertEqual(s[("parkchat_messages_stored_total", ())], 3)
        self.assertEqual(s[("parkchat_deliveries_total", ())], joined + 3 * 3)
        self.assertEqual(s[("parkchat_commit_batch_size_count", ())], 1)
        self.assertEqual(s[("parkchat_commit_batch_size_sum", ())], 3)
        self.assertEqual(s[("parkchat_commit_seconds_count", ())], 1)
        self.assertEqual(s[("parkchat_auth_failures_total", (("method", "password"),))], 1)
        self.assertEqual(s[("parkchat_auth_failures_total", (("method", "token"),))], 1)
        self.assertEqual(s[("parkchat_login_throttled_total", ())], 1)
        self.assertEqual(s[("parkchat_rate_limited_total", ())], 1)
        errors = (("code", "not_in_room"), ("surface", "app_ws"))
        self.assertEqual(s[("parkchat_errors_sent_total", errors)], 1)
        other = (("code", "other"), ("surface", "app_ws"))
        self.assertEqual(s[("parkchat_errors_sent_total", other)], 1)

    async def test_tcp_error_replies_counted(self) -> None:
        """An error line sent to a TCP client counts under surface "tcp" with
        its ChatError code."""
        factory = LineChatFactory(adapter_context(self.service, self.clock), StreamOptions())
        protocol = factory.buildProtocol(None)
        protocol.makeConnection(StringTransport())
        protocol.dataReceived(b"[1, 2]\n")  # a handshake that is not an object
        _, text = await self.get()
        codes = {
            dict(labels)["code"]: value
            for (name, labels), value in parse(text).items()
            if name == "parkchat_errors_sent_total" and dict(labels)["surface"] == "tcp"
        }
        self.assertEqual(codes, {"invalid_request": 1})

    async def test_token_required(self) -> None:
        """With a metrics token, a scrape without it or with a wrong one is
        401 with a Bearer challenge; with it, 200."""
        for headers in (None, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
            response, _ = await self.get(headers, metrics_token=TOKEN)
            self.assertEqual(response.code, 401)
            self.assertEqual(
                response.headers.getRawHeaders("www-authenticate"),
                ['Bearer realm="parkchat-metrics"'],
            )
        response, text = await self.get({"Authorization": f"Bearer {TOKEN}"}, metrics_token=TOKEN)
        self.assertEqual(response.code, 200)
        self.assertIn("parkchat_rooms 0.0", text)

    def test_not_mounted_by_default(self) -> None:
        """make_site mounts /metrics only when asked."""
        _, site = self.scrape()
        self.assertNotIn(b"metrics", site.resource.children)

    def test_registries_are_separate(self) -> None:
        """Two services in one process each have their own registry: no
        duplicate-timeseries clash, no shared counts."""
        other, _, _ = make_service()
        self.addCleanup(other.stopService)
        other.metrics.messages_received = 7
        mine = parse(self.service.metrics.render().decode())
        theirs = parse(other.metrics.render().decode())
        self.assertEqual(mine[("parkchat_messages_received_total", ())], 0)
        self.assertEqual(theirs[("parkchat_messages_received_total", ())], 7)

    def test_every_surface_always_exposed(self) -> None:
        """Each surface has a sample even with no connection, so dashboards
        see 0 rather than a gap."""
        samples = parse(self.service.metrics.render().decode())
        for surface in SURFACES:
            self.assertEqual(samples[("parkchat_connections", (("surface", surface),))], 0)

    def test_bus_up(self) -> None:
        """``parkchat_bus_up`` follows a shared bus (1 live, 0 down, what
        alerting should watch while /health/ready says degraded) and is
        absent with the in-process bus."""
        samples = parse(self.service.metrics.render().decode())
        self.assertNotIn(("parkchat_bus_up", ()), samples)
        bus: Any = self.service.bus
        bus.live = False
        self.assertEqual(parse(self.service.metrics.render().decode())[("parkchat_bus_up", ())], 0)
        bus.live = True
        self.assertEqual(parse(self.service.metrics.render().decode())[("parkchat_bus_up", ())], 1)


class CountingTests(TestCase):
    """The counting done on the hot paths themselves."""

    def test_room_records_deliveries(self) -> None:
        """Room.broadcast records how many members it handed the message
        to: not those whose encoder skips the event, not failed sends."""
        room = Room("r")
        a, b, broken = FakeParticipant("a"), FakeParticipant("b"), FakeParticipant("c")
        broken.fail_sends = True

        class Skipping(RecordingEncoder):
            def encode(self, message: Message) -> None:
                return None

        skipped = FakeParticipant("d", Skipping())
        shared = RecordingEncoder()
        a.encoder = b.encoder = broken.encoder = shared
        for p in (a, b, broken, skipped):
            room.add(p)
        room.broadcast(Message(room="r", nickname="a", content="hi", timestamp_ms=0))
        self.assertEqual(room.last_delivered, 2)
        self.flushLoggedErrors(ConnectionError)

    def test_writer_reports_batches(self) -> None:
        """The writer reports each batch once: size, seconds and whether it
        committed; failed batches count as commit failures."""
        from twisted.internet.task import Clock

        clock = Clock()
        metrics = ServiceMetrics()
        writer = GroupCommitWriter(
            lambda batch: fail(OSError("disk full")), clock, on_batch=metrics.batch_done
        )
        message = Message(room="r", nickname="a", content="x", timestamp_ms=0)
        d1, d2 = writer.submit(message), writer.submit(message)
        d1.addErrback(lambda f: None)
        d2.addErrback(lambda f: None)
        clock.advance(0)
        self.assertEqual(metrics.commit_failures, 1)
        self.assertEqual(metrics.messages_stored, 0)
        self.flushLoggedErrors(OSError)

    def test_error_codes_are_the_chat_error_codes(self) -> None:
        """The label set of errors_sent is bounded by the ChatError codes."""
        codes = error_codes()
        self.assertIn("rate_limited", codes)
        self.assertIn("invalid_request", codes)
        self.assertLess(len(codes), 40)


class MetricsConfigTests(TestCase):
    """--metrics and --metrics-token, down to makeService."""

    def test_values(self) -> None:
        """yes/no (and TOML booleans) or an endpoint; a bare port is tcp:PORT."""
        for raw, expected in (
            ("yes", "yes"),
            ("off", "no"),
            (False, "no"),
            ("9100", "tcp:9100"),
            ("tcp:9100:interface=127.0.0.1", "tcp:9100:interface=127.0.0.1"),
        ):
            self.assertEqual(resolve({"metrics": raw}, {}).metrics, expected)
        self.assertRaises(ConfigError, resolve, {"metrics": "sometimes"}, {})
        self.assertRaises(ConfigError, resolve, {"metrics_token": "short"}, {})

    def make(self, *argv: str) -> Any:
        options = Options()
        options.parseOptions(["--db", ":memory:", "--port", "tcp:0", *argv])
        return makeService(options, MemoryReactorClock())

    def main_site(self, top: Any) -> Site:
        factory = top.getServiceNamed("http:tcp:0").factory
        site = getattr(factory, "wrappedFactory", factory)  # a per-address limit wraps it
        assert isinstance(site, Site)
        return site

    def test_default_on_main_port(self) -> None:
        """By default /metrics is on the HTTP listeners and nowhere else."""
        top = self.make()
        self.assertIn(b"metrics", self.main_site(top).resource.children)
        self.assertFalse([s for s in top if s.name and s.name.startswith("metrics:")])

    def test_off(self) -> None:
        """--metrics no: no /metrics at all."""
        top = self.make("--metrics", "no")
        self.assertNotIn(b"metrics", self.main_site(top).resource.children)

    async def test_separate_listener(self) -> None:
        """--metrics ENDPOINT: a listener of its own serving only /metrics
        (token-protected when --metrics-token is set); the main site has none."""
        top = self.make("--metrics", "tcp:9100:interface=127.0.0.1", "--metrics-token", TOKEN)
        self.assertNotIn(b"metrics", self.main_site(top).resource.children)
        listener = top.getServiceNamed("metrics:tcp:9100:interface=127.0.0.1")
        self.assertIsInstance(listener, Listener)
        self.assertEqual(listener.endpoint._port, 9100)
        self.assertEqual(listener.endpoint._interface, "127.0.0.1")
        stub = StubTreq(listener.factory.resource)
        response = await stub.get("http://x/metrics")
        self.assertEqual(response.code, 401)
        response = await stub.get("http://x/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        self.assertEqual(response.code, 200)
        self.assertIn(b"parkchat_connections", await response.content())
        response = await stub.get("http://x/health")
        self.assertEqual(response.code, 404)

    def test_refusals_at_accept_are_counted(self) -> None:
        """Sockets the per-address limit closes at accept (HTTP and line
        listeners alike) show as parkchat_connections_refused_total."""
        top = self.make("--max-connections-per-ip", "1", "--tcp", "tcp:0")
        http = top.getServiceNamed("http:tcp:0").factory
        line = top.getServiceNamed("tcp:tcp:0").factory
        address = IPv4Address("TCP", "192.0.2.7", 1234)
        self.assertIsNotNone(http.buildProtocol(address))  # counted: the first
        for factory in (http, line):
            refused = factory.buildProtocol(address)
            self.assertEqual(type(refused).__name__, "_Refused")
        metrics = self.main_site(top).resource.children[b"metrics"]
        text = metrics._metrics.render().decode()
        self.assertIn("parkchat_connections_refused_total 2.0", text)

    def test_bad_endpoint_is_a_usage_error(self) -> None:
        """A --metrics value that is not a usable endpoint stops at parse time."""
        from twisted.python.usage import UsageError

        options = Options()
        self.assertRaises(UsageError, options.parseOptions, ["--metrics", "nope:1"])
