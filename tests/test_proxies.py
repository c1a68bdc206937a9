"""Client addresses behind trusted reverse proxies (``--trusted-proxies``):
the resolution itself, then what depends on it -- failed-login throttling
and the access log over HTTP, per-address connection limits over WebSocket
and at accept time, with StringTransport and iosim; then one real server
behind a loopback "proxy" (X-Forwarded-For, and the PROXY protocol for TCP).
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Any

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import TestCase

from hypothesis import given
from hypothesis import strategies as st

from parkchat.config import ConfigError, resolve
from parkchat.limits import Limits
from parkchat.protocols.line import LineChatFactory
from parkchat.protocols.participant import AdapterContext
from parkchat.protocols.policies import AddressLimit
from parkchat.proxies import MAX_HOPS, TrustedProxies, parse_network
from parkchat.tokens import TokenAuthority
from parkchat.web.site import access_log_line
from tests.e2e_support import LineSocket, ParkchatProcess
from tests.helpers import adapter_context, make_service, site_for
from tests.test_websocket import SERVER, WebSocketCase, basic

PROXY = "10.0.0.2"
CLIENT_A = "203.0.113.5"
CLIENT_B = "203.0.113.6"


class ParseTests(TestCase):
    def test_addresses_and_networks(self) -> None:
        self.assertEqual(parse_network("10.0.0.0/8"), "10.0.0.0/8")
        self.assertEqual(parse_network(" 10.1.2.3 "), "10.1.2.3/32")
        self.assertEqual(parse_network("10.1.2.3/8"), "10.0.0.0/8")  # host bits dropped
        self.assertEqual(parse_network("fd00::/8"), "fd00::/8")

    def test_bad_entries(self) -> None:
        for bad in ("", "nginx", "10.0.0.0/33", "10.0.0.1,10.0.0.2", "*"):
            with self.assertRaises(ValueError) as caught:
                parse_network(bad)
            self.assertIn("10.0.0.0/8", str(caught.exception))

    def test_setting(self) -> None:
        """The option takes a comma list (env, CLI) and names itself when wrong."""
        settings = resolve({}, {"PARKCHAT_TRUSTED_PROXIES": "10.0.0.0/8, 127.0.0.1"})
        self.assertEqual(settings.trusted_proxies, ("10.0.0.0/8", "127.0.0.1/32"))
        self.assertEqual(resolve({}, {}).trusted_proxies, ())
        with self.assertRaises(ConfigError) as caught:
            resolve({}, {"PARKCHAT_TRUSTED_PROXIES": "10.0.0.0/8,proxy.local"})
        self.assertIn("TRUSTED_PROXIES", str(caught.exception))
        self.assertIn("proxy.local", str(caught.exception))


class ResolveTests(TestCase):
    trusted = TrustedProxies(["10.0.0.0/8", "fd00::/8"])

    def test_none_trusted(self) -> None:
        """Without trusted proxies the header is never read."""
        nobody = TrustedProxies()
        self.assertFalse(nobody)
        self.assertFalse(nobody.trusts(PROXY))
        self.assertEqual(nobody.client(PROXY, CLIENT_A), PROXY)

    def test_untrusted_peer(self) -> None:
        """A client cannot name itself: its header is ignored."""
        self.assertEqual(self.trusted.client(CLIENT_B, CLIENT_A), CLIENT_B)

    def test_one_proxy(self) -> None:
        self.assertEqual(self.trusted.client(PROXY, CLIENT_A), CLIENT_A)
        self.assertEqual(self.trusted.client(PROXY, None), PROXY)

    def test_chain(self) -> None:
        """Trusted hops are walked from the right; the first untrusted
        address is the client, whatever the client put further left."""
        forged = f"198.51.100.9, {CLIENT_A}, 10.9.9.9"
        self.assertEqual(self.trusted.client(PROXY, forged), CLIENT_A)

    def test_garbage_stops_at_the_last_trusted_hop(self) -> None:
        self.assertEqual(self.trusted.client(PROXY, f"{CLIENT_A}, unknown"), PROXY)
        self.assertEqual(self.trusted.client(PROXY, f"{CLIENT_A}, junk, 10.0.0.7"), "10.0.0.7")
        self.assertEqual(self.trusted.client(PROXY, ""), PROXY)

    def test_all_trusted(self) -> None:
        """A chain of proxies only (a health check) is the leftmost proxy."""
        self.assertEqual(self.trusted.client(PROXY, "10.0.0.3, 10.0.0.4"), "10.0.0.3")

    def test_ipv6_and_mapped(self) -> None:
        self.assertTrue(self.trusted.trusts("fd00::1"))
        self.assertTrue(self.trusted.trusts("::ffff:10.0.0.2"))
        self.assertEqual(self.trusted.client("fd00::1", "2001:db8::5"), "2001:db8::5")
        self.assertEqual(self.trusted.client(PROXY, "::ffff:203.0.113.5"), CLIENT_A)

    def test_long_chain_is_cut(self) -> None:
        """Only the last MAX_HOPS entries are read."""
        chain = [CLIENT_A] + ["10.0.0.9"] * MAX_HOPS
        self.assertEqual(self.trusted.client(PROXY, ",".join(chain)), "10.0.0.9")
        self.assertEqual(self.trusted.client(PROXY, ",".join([*chain[1:], CLIENT_B])), CLIENT_B)

    @given(st.lists(st.text(max_size=40), max_size=40), st.booleans())
    def test_any_header(self, hops: list[str], from_proxy: bool) -> None:
        """Whatever the header says, the answer is the peer or an address
        that appears in it, and never a value a non-proxy peer sent."""
        peer = PROXY if from_proxy else CLIENT_B
        header = ",".join(hops)
        client = self.trusted.client(peer, header)
        if not from_proxy:
            self.assertEqual(client, peer)
        elif client != peer:
            self.assertIn(client, {str(a) for a in _readable(hops)})


def _readable(hops: list[str]) -> list[Any]:
    out: list[Any] = []
    for hop in hops:
        for part in hop.split(","):
            try:
                address = ipaddress.ip_address(part.strip())
            except ValueError:
                continue
            mapped = getattr(address, "ipv4_mapped", None)
            out.append(mapped if mapped is not None else address)
    return out


class HttpTests(TestCase):
    """The site's requests see the forwarded client: failed logins are
    throttled per client, and the access log names the client."""

    def setUp(self) -> None:
        self.clock = Clock()
        limits = Limits(
            rate_limit=0,
            login_failures=3,
            login_failures_per_address=3,
            trusted_proxies=TrustedProxies([PROXY]),
        )
        self.service, _, _ = make_service(clock=self.clock, limits=limits)
        self.addCleanup(self.service.stopService)
        self.successResultOf(self.service.register("alice", "alice-pw"))
        self.site = site_for(
            self.service,
            tokens=TokenAuthority(b"k" * 32, self.clock),
            trusted_proxies=limits.trusted_proxies,
        )
        self.site._reactor = self.clock  # type: ignore[attr-defined]
        self.logged: list[str] = []
        self.site.log = lambda request: self.logged.append(  # type: ignore[method-assign]
            access_log_line("[-]", request)
        )
        self.port = 50000

    def login(self, nickname: str, password: str, peer: str, forwarded: str | None) -> int:
        """POST /login from ``peer`` with an X-Forwarded-For; the status."""
        self.port += 1
        address = (IPv6Address if ":" in peer else IPv4Address)("TCP", peer, self.port)
        channel = self.site.buildProtocol(address)
        transport = StringTransport(peerAddress=address)
        channel.makeConnection(transport)
        body = json.dumps({"nickname": nickname, "password": password}).encode()
        head = [b"POST /login HTTP/1.1", b"Host: parkchat.test", b"Connection: close"]
        head += [b"Content-Type: application/json", b"Content-Length: %d" % len(body)]
        if forwarded is not None:
            head.append(b"X-Forwarded-For: " + forwarded.encode())
        channel.dataReceived(b"\r\n".join(head) + b"\r\n\r\n" + body)
        self.clock.advance(0)
        status_line = transport.value().split(b"\r\n", 1)[0]
        self.assertTrue(status_line.startswith(b"HTTP/1.1 "), status_line)
        return int(status_line.split()[1])

    def test_failures_count_per_forwarded_client(self) -> None:
        for n in range(3):
            self.assertEqual(self.login(f"nobody{n}", "x", PROXY, CLIENT_A), 401)
        # CLIENT_A is throttled, CLIENT_B behind the same proxy is not.
        self.assertEqual(self.login("alice", "alice-pw", PROXY, CLIENT_A), 429)
        self.assertEqual(self.login("alice", "alice-pw", PROXY, CLIENT_B), 200)

    def test_untrusted_peer_cannot_dodge_the_throttle(self) -> None:
        """A peer that is not a trusted proxy is counted by its own address,
        whatever it claims in X-Forwarded-For."""
        for n in range(3):
            self.assertEqual(self.login(f"nobody{n}", "x", CLIENT_B, f"192.0.2.{n}"), 401)
        self.assertEqual(self.login("alice", "alice-pw", CLIENT_B, "192.0.2.99"), 429)

    def test_proxy_without_header_is_not_throttled_per_address(self) -> None:
        """The proxy's own address stands for many clients: failures from
        it count per account only."""
        for n in range(3):
            self.assertEqual(self.login(f"nobody{n}", "x", PROXY, None), 401)
        self.assertEqual(self.login("alice", "alice-pw", PROXY, None), 200)

    def test_access_log_names_the_client(self) -> None:
        self.login("alice", "alice-pw", PROXY, f"198.51.100.1, {CLIENT_A}")
        self.login("alice", "alice-pw", CLIENT_B, CLIENT_A)
        self.assertEqual(len(self.logged), 2)
        self.assertTrue(self.logged[0].startswith(f'"{CLIENT_A}" '), self.logged[0])
        self.assertTrue(self.logged[1].startswith(f'"{CLIENT_B}" '), self.logged[1])


class WebSocketTests(WebSocketCase):
    """/ws/{room} behind a proxy: the per-address limit counts clients."""

    limits = Limits(rate_limit=0, max_connections_per_ip=1, trusted_proxies=TrustedProxies([PROXY]))

    def setUp(self) -> None:
        super().setUp()
        self.site.trusted_proxies = self.limits.trusted_proxies  # type: ignore[attr-defined]

    def context(self) -> AdapterContext:
        return adapter_context(
            self.service, self.clock, trusted_proxies=self.limits.trusted_proxies
        )

    def through(self, nickname: str, peer: str, forwarded: str | None) -> Any:
        headers = {"Authorization": basic(nickname, self.passwords[nickname])}
        if forwarded is not None:
            headers["X-Forwarded-For"] = forwarded
        return self.wire(
            self.site.buildProtocol(SERVER), self.client_factory("lobby", headers), peer
        )

    def test_limit_per_forwarded_client(self) -> None:
        first = self.through("alice", PROXY, CLIENT_A)
        self.assertTrue(first.opened)
        self.assertTrue(self.through("bob", PROXY, CLIENT_B).opened)
        again = self.through("carol", PROXY, CLIENT_A)
        self.assertFalse(again.opened)
        self.assertEqual(int(again.http_status_line.split()[1]), 429)
        self.assertEqual(self.service.connections_from(CLIENT_A), 1)
        # The connection knows its client (logs, bans by address later).
        [participant] = self.service.local_connections("alice")
        self.assertEqual(participant.peer_host, CLIENT_A)
        # Closing frees the client's slot.
        first.sendClose(1000)
        self.settle()
        self.assertTrue(self.through("carol", PROXY, CLIENT_A).opened)

    def test_untrusted_peer_is_its_own_address(self) -> None:
        self.assertTrue(self.through("alice", CLIENT_B, CLIENT_A).opened)
        refused = self.through("bob", CLIENT_B, "192.0.2.1")
        self.assertEqual(int(refused.http_status_line.split()[1]), 429)
        self.assertEqual(self.service.connections_from(CLIENT_B), 1)
        self.assertEqual(self.service.connections_from(CLIENT_A), 0)

    def test_proxy_own_connections_are_not_limited(self) -> None:
        """No header from the proxy: nothing to count by, so no per-address cap."""
        self.assertTrue(self.through("alice", PROXY, None).opened)
        self.assertTrue(self.through("bob", PROXY, None).opened)


class AcceptTests(TestCase):
    """At accept time (before any header) a trusted proxy is not capped."""

    def test_address_limit_skips_trusted_proxies(self) -> None:
        service, _, clock = make_service()
        self.addCleanup(service.stopService)
        limit = AddressLimit(1, TrustedProxies([PROXY]))
        factory = limit.wrap(LineChatFactory(adapter_context(service, clock)))
        for _ in range(3):
            protocol = factory.buildProtocol(IPv4Address("TCP", PROXY, 1))
            self.assertIsNotNone(protocol)
            self.assertNotEqual(type(protocol).__name__, "_Refused")
        self.assertEqual(limit.count(PROXY), 0)
        factory.buildProtocol(IPv4Address("TCP", CLIENT_A, 1))
        self.assertEqual(limit.count(CLIENT_A), 1)
        refused = factory.buildProtocol(IPv4Address("TCP", CLIENT_A, 2))
        self.assertEqual(type(refused).__name__, "_Refused")


class EndToEndTests(TestCase):
    """A real server behind a "proxy" on loopback (127.0.0.1 trusted): HTTP
    with X-Forwarded-For, the line protocol with the PROXY protocol
    (``--tcp haproxy:tcp:PORT``), one connection per client address."""

    def setUp(self) -> None:
        workdir = Path(self.mktemp()).resolve()
        self.access_log = workdir / "access.log"
        self.server = ParkchatProcess(
            workdir,
            tcp_proxy_protocol=True,
            args=[
                "--trusted-proxies",
                "127.0.0.1",
                "--max-connections-per-ip",
                "1",
                "--access-log-file",
                str(self.access_log),
            ],
        )
        self.server.start()
        self.addCleanup(self.server.stop)

    def line_client(self, client: str, name: str) -> LineSocket:
        """A line client that nginx's stream proxy would have announced."""
        sock = LineSocket(self.server.tcp_address, timeout=5.0)
        self.addCleanup(sock.close)
        port = self.server.tcp_address[1]
        sock.send(f"PROXY TCP4 {client} 127.0.0.1 40000 {port}\r\n".encode())
        sock.send_line(json.dumps({"name": name, "room": "lounge"}))
        return sock

    def test_clients_behind_the_proxy(self) -> None:
        # HTTP: the access log and per-address limits see the client.
        self.server.register("alice", "alice-secret")
        status, _ = self.server.request(
            "/history/lounge", auth=("alice", "alice-secret"), headers={"X-Forwarded-For": CLIENT_A}
        )
        self.assertEqual(status, 200)
        # TCP: one connection per client address, not one for the proxy.
        first = self.line_client(CLIENT_A, "ann")
        first.send_line("/who")
        self.assertEqual(first.read_line(), "*** in lounge: ann")
        second = self.line_client(CLIENT_B, "ben")
        second.send_line("/who")
        self.assertIn("ben", second.read_line())
        third = self.line_client(CLIENT_A, "cid")
        refused = third.read_until_closed().decode()
        self.assertIn("too many connections", refused)
        first.send_line("still here")
        self.assertEqual(second.read_line(), "~ann:still here")  # a guest
        self.server.stop()
        lines = self.access_log.read_text(encoding="utf-8").splitlines()
        self.assertTrue(
            any(line.startswith(f'"{CLIENT_A}" ') and "/history/lounge" in line for line in lines),
            lines,
        )
