"""An in-memory fixture for the seed dialects (GarinChat, golang-chat,
lildengzi): a started service on a Clock, the dialect factories as
``tap.makeService`` builds them, the main site (with the dialects' paths)
and each dialect listener's site, and clients wired to them over
``twisted.test.iosim``: real HTTP and RFC 6455 framing, no socket, no real
time.
"""

from __future__ import annotations

import json
from typing import Any

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from treq.testing import StubTreq
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.test import iosim
from twisted.trial.unittest import TestCase
from twisted.web.iweb import IResponse

from parkchat.limits import Limits
from parkchat.model import User
from parkchat.protocols.garinchat import GarinChatFactory, GarinChatTokens
from parkchat.protocols.golangchat import GolangChatFactory
from parkchat.protocols.lildengzi import LildengziFactory, LildengziTokens
from parkchat.tokens import TokenAuthority, TokenVerifier
from parkchat.web.dialects import (
    GarinChatSocket,
    GolangChatRoot,
    LildengziRoot,
    golang_chat_children,
)
from parkchat.web.site import make_dialect_site
from tests.helpers import adapter_context, make_service, settle_pumps, site_for
from tests.test_websocket import clock_timer

#: 2025-09-08T15:30:00Z
START = 1_757_345_400.0
SERVER = IPv4Address("TCP", "127.0.0.1", 8080)
GARIN_SECRET = b"garin-secret"
LILDENGZI_SECRET = b"lildengzi-secret-of-at-least-32-bytes!"
BASE = "http://parkchat.test"


class RawClient(WebSocketClientProtocol):
    """An Autobahn client that keeps every payload exactly as it arrived."""

    def __init__(self) -> None:
        super().__init__()
        self.opened = False
        self.payloads: list[bytes] = []
        self.closed: tuple[bool, int | None, str | None] | None = None
        self.http_status: int | None = None

    def onConnect(self, response: Any) -> None:
        self.http_status = 101

    def onOpen(self) -> None:
        self.opened = True

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        assert not isBinary, "the dialects send text frames only"
        self.payloads.append(payload)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.closed = (wasClean, code, reason)

    def take(self) -> list[bytes]:
        """The payloads received since the last ``take``."""
        payloads, self.payloads = self.payloads, []
        return payloads

    def frames(self) -> list[Any]:
        """``take``, each payload decoded as JSON."""
        return [json.loads(p) for p in self.take()]

    def send_json(self, value: Any) -> None:
        self.sendMessage(json.dumps(value).encode("utf-8"))

    @property
    def close_code(self) -> int | None:
        return self.closed[1] if self.closed is not None else None

    @property
    def close_reason(self) -> str | None:
        return self.closed[2] if self.closed is not None else None


class DialectCase(TestCase):
    """A started service with every dialect wired as ``tap`` wires it."""

    limits = Limits(rate_limit=0)
    allowed_origins: tuple[str, ...] = ()

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(START)
        self.service, self.store, _ = make_service(clock=self.clock, limits=self.limits)
        self.authority = TokenAuthority(b"k" * 32, self.clock)
        context = adapter_context(self.service, self.clock)
        options: dict[str, Any] = {"ping_interval": 0, "handshake_timeout": 0}
        self.garinchat = GarinChatFactory(
            context,
            GarinChatTokens(self.clock, GARIN_SECRET, TokenVerifier(self.authority)),
            **options,
        )
        self.golang_chat = GolangChatFactory(context, "lobby", **options)
        self.lildengzi_tokens = LildengziTokens(
            LILDENGZI_SECRET, self.clock, revocations=self.service.revocations
        )
        self.lildengzi = LildengziFactory(context, self.lildengzi_tokens, **options)
        for factory in (self.garinchat, self.golang_chat, self.lildengzi):
            factory._batched_timer = clock_timer(self.clock)
        self.main_site = site_for(
            self.service,
            access_log=False,
            tokens=self.authority,
            garinchat=GarinChatSocket(self.garinchat, self.allowed_origins),
            golang_chat=golang_chat_children(self.golang_chat, self.allowed_origins),
        )
        self.garinchat_site = make_dialect_site(
            GarinChatSocket(self.garinchat, self.allowed_origins), access_log=False
        )
        self.golang_chat_site = make_dialect_site(
            GolangChatRoot(self.golang_chat, self.allowed_origins), access_log=False
        )
        self.lildengzi_site = make_dialect_site(
            LildengziRoot(self.service, self.lildengzi, self.lildengzi_tokens), access_log=False
        )
        for site in (self.main_site, self.garinchat_site, self.golang_chat_site):
            site._reactor = self.clock
        self.lildengzi_site._reactor = self.clock
        self.pumps: list[iosim.IOPump] = []
        self.clients: list[RawClient] = []
        self.next_port = 43000
        self.addCleanup(self.close_everything)

    # -- clients ---------------------------------------------------------------------

    def websocket(
        self, site: Any, path: str, headers: dict[str, str] | None = None, origin: str | None = None
    ) -> RawClient:
        """A client of ``path`` on ``site`` (through HTTP and the upgrade)."""
        factory = WebSocketClientFactory(
            f"ws://parkchat.test{path}", headers=headers or {}, origin=origin
        )
        factory.protocol = RawClient
        factory.setProtocolOptions(
            autoPingInterval=0, openHandshakeTimeout=0, serverConnectionDropTimeout=0
        )
        factory._batched_timer = clock_timer(self.clock)
        client = factory.buildProtocol(SERVER)
        self.next_port += 1
        peer = IPv4Address("TCP", "127.0.0.1", self.next_port)
        server = site.buildProtocol(SERVER)
        server_transport = iosim.FakeTransport(
            server, isServer=True, hostAddress=SERVER, peerAddress=peer
        )
        client_transport = iosim.FakeTransport(
            client, isServer=False, hostAddress=peer, peerAddress=SERVER
        )
        self.pumps.append(iosim.connect(server, server_transport, client, client_transport))
        self.clients.append(client)
        self.settle()
        return client

    def http(
        self,
        site: Any,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[IResponse, bytes]:
        """One HTTP request to ``site``'s resource tree (StubTreq)."""
        stub: Any = StubTreq(site.resource)
        d = stub.request(method, BASE + path, data=body, headers=headers or {})
        stub.flush()
        self.clock.advance(0)
        stub.flush()
        response = self.successResultOf(d)
        content = stub.content(response)
        stub.flush()
        return response, self.successResultOf(content)

    def account(self, nickname: str, password: str | None = None) -> User:
        user: User = self.successResultOf(
            self.service.register(nickname, password or f"{nickname}-pw")
        )
        return user

    def settle(self) -> None:
        if not settle_pumps(self.clock, self.pumps):
            self.fail("the connections never settled")

    def close_everything(self) -> None:
        for client in self.clients:
            if client.transport is not None and client.closed is None:
                client.transport.loseConnection()
        self.settle()
        if self.service.running:
            self.successResultOf(self.service.stopService())
        self.settle()


def header(response: IResponse, name: str) -> str | None:
    values = response.headers.getRawHeaders(name)
    return values[0] if values else None
