"""The unified app WebSocket, ``GET /ws`` (MISSION section C), in memory.

The approach of ``tests/test_websocket.py``: Autobahn's own client protocol is
joined to the real site from ``make_site`` over ``twisted.test.iosim`` fake
transports, so every request goes through ``SocketRoot`` (credentials and the
origin checked over HTTP), is upgraded by ``WebSocketResource`` and talks real
RFC 6455 frames. The service, the site, the token authority and both Autobahn
factories run on one ``Clock``; nothing touches a socket or the reactor.

One class per part of the protocol; every frame type a client may send and
every bad input named in issue 4 has a test here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

from autobahn.twisted.websocket import WebSocketClientFactory
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.test import iosim
from twisted.trial.unittest import TestCase
from zope.interface.verify import verifyObject

import jwt

from parkchat.bus.local import LocalBus
from parkchat.handlers import delivery
from parkchat.interfaces import IParticipant
from parkchat.limits import Limits
from parkchat.model import MAX_ID, User
from parkchat.protocols import unified
from parkchat.protocols.line import LineChatFactory
from parkchat.protocols.stream import StreamOptions
from parkchat.protocols.unified import AppSocketFactory, AppSocketProtocol
from parkchat.protocols.websocket import RoomSocketFactory
from parkchat.tokens import ExternalTokenVerifier, TokenAuthority, TokenVerifier
from tests.helpers import adapter_context, make_service, settle_pumps, site_for
from tests.test_websocket import SERVER, START, RecordingClient, basic, clock_timer

HOST = "parkchat.test"
Frame = dict[str, Any]


class LineClient(Protocol):
    """A plain-TCP line client that keeps the lines it receives."""

    def __init__(self) -> None:
        self.buffer = b""
        self.lines: list[str] = []

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        while b"\n" in self.buffer:
            line, _, self.buffer = self.buffer.partition(b"\n")
            self.lines.append(line.decode("utf-8"))

    def send_line(self, text: str) -> None:
        assert self.transport is not None
        self.transport.write(text.encode("utf-8") + b"\n")

    def take(self) -> list[str]:
        lines, self.lines = self.lines, []
        return lines


class AppSocketCase(TestCase):
    """A started service, its site with /ws, and the means to connect."""

    limits = Limits(rate_limit=0)
    auth_timeout = 10.0
    join_timeout = 0.0
    max_message_size = 65536
    allowed_origins: tuple[str, ...] = ()
    users = ("alice", "bob", "carol")
    single_session = False
    resume_max = 5000

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(START)
        self.service, self.store, _ = self.make_service(
            clock=self.clock,
            limits=self.limits,
            single_session=self.single_session,
            resume_max=self.resume_max,
        )
        self.authority = TokenAuthority(b"k" * 32, self.clock)
        self.tokens = TokenVerifier(self.authority)
        context = adapter_context(self.service, self.clock)
        self.factory = AppSocketFactory(
            context,
            self.tokens,
            auth_timeout=self.auth_timeout,
            join_timeout=self.join_timeout,
            rate_strict=self.limits.rate_strict,
            max_message_size=self.max_message_size,
            ping_interval=0,
            handshake_timeout=0,
        )
        self.factory._batched_timer = clock_timer(self.clock)
        self.room_factory = RoomSocketFactory(context, ping_interval=0, handshake_timeout=0)
        self.room_factory._batched_timer = clock_timer(self.clock)
        self.site = site_for(
            self.service,
            self.room_factory,
            app_factory=self.factory,
            tokens=self.authority,
            allowed_origins=self.allowed_origins,
            access_log=False,
        )
        self.site._reactor = self.clock  # type: ignore[attr-defined]
        self.pumps: list[iosim.IOPump] = []
        self.clients: list[RecordingClient] = []
        self.line_clients: list[LineClient] = []
        self.next_port = 41000
        self.passwords: dict[str, str] = {}
        self.accounts: dict[str, User] = {}
        self.addCleanup(self.close_everything)
        for nickname in self.users:
            self.register(nickname)

    def make_service(self, **options: Any) -> Any:
        return make_service(**options)

    def register(self, nickname: str) -> User:
        password = f"{nickname}-pw"
        self.passwords[nickname] = password
        user = self.successResultOf(self.service.register(nickname, password))
        self.accounts[nickname] = User(user.id, user.nickname)
        return self.accounts[nickname]

    def token(self, nickname: str) -> str:
        user = self.accounts[nickname]
        return self.authority.issue(user.id, user.nickname)[0]

    # -- connections -----------------------------------------------------------

    def _wire(self, server: Any, client: Any) -> None:
        self.next_port += 1
        peer = IPv4Address("TCP", "127.0.0.1", self.next_port)
        server_transport = iosim.FakeTransport(
            server, isServer=True, hostAddress=SERVER, peerAddress=peer
        )
        client_transport = iosim.FakeTransport(
            client, isServer=False, hostAddress=peer, peerAddress=SERVER
        )
        self.pumps.append(iosim.connect(server, server_transport, client, client_transport))
        self.settle()

    def open(
        self,
        path: str = "/ws",
        headers: dict[str, str] | None = None,
        origin: str | None = None,
    ) -> RecordingClient:
        """A WebSocket client through the whole site (HTTP, checks, upgrade)."""
        factory = WebSocketClientFactory(f"ws://{HOST}{path}", headers=headers or {}, origin=origin)
        factory.protocol = RecordingClient
        factory.setProtocolOptions(
            autoPingInterval=0, openHandshakeTimeout=0, serverConnectionDropTimeout=0
        )
        factory._batched_timer = clock_timer(self.clock)
        client = factory.buildProtocol(SERVER)
        assert isinstance(client, RecordingClient)
        self.clients.append(client)
        self._wire(self.site.buildProtocol(SERVER), client)
        return client

    def login(self, nickname: str) -> RecordingClient:
        """A /ws client authenticated with GarinChat's auth frame; its
        ``ready`` frame and the account's ``state`` after it are checked
        and consumed."""
        client = self.open()
        client.send_json({"type": "auth", "body": self.token(nickname)})
        self.settle()
        ready, state = client.take()
        self.assertEqual(ready["type"], "ready")
        self.assertEqual(ready["nickname"], nickname)
        self.assertEqual(state["type"], "state")
        return client

    def joined(self, nickname: str, *rooms: str) -> RecordingClient:
        """A logged-in client in ``rooms`` (default ``lobby``), frames consumed."""
        client = self.login(nickname)
        for room in rooms or ("lobby",):
            client.send_json({"type": "join", "room": room})
            self.settle()
        client.take()
        for other in self.clients:
            other.take()
        return client

    def seed_client(self, nickname: str, room: str = "lobby") -> RecordingClient:
        """A seed-API client on ``/ws/{room}`` (Basic auth)."""
        headers = {"Authorization": basic(nickname, self.passwords[nickname])}
        return self.open(f"/ws/{quote(room, safe='')}", headers)

    def line_client(self, name: str, room: str = "lobby") -> LineClient:
        """A guest on the plain-TCP line protocol, handshake done."""
        factory = LineChatFactory(adapter_context(self.service, self.clock), StreamOptions())
        server = factory.buildProtocol(SERVER)
        client = LineClient()
        self._wire(server, client)
        client.send_line(json.dumps({"name": name, "room": room}))
        self.settle()
        self.line_clients.append(client)
        return client

    def send(self, client: RecordingClient, value: Any) -> list[Frame]:
        """Send one frame, let everything settle, return what ``client`` got."""
        client.send_json(value)
        self.settle()
        return client.take()

    def settle(self) -> None:
        """Run the clock's due calls and move bytes until nothing changes."""
        if not settle_pumps(self.clock, self.pumps):
            self.fail("the connections never settled")

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.settle()

    def close_everything(self) -> None:
        for client in self.clients:
            if client.transport is not None and client.closed is None:
                client.transport.loseConnection()
        for line in self.line_clients:
            if line.transport is not None:
                line.transport.loseConnection()
        self.settle()
        if self.service.running:
            self.successResultOf(self.service.stopService())
        self.settle()

    # -- assertions ------------------------------------------------------------

    def assertError(self, frames: list[Frame], code: str, request_id: Any = None) -> Frame:
        """``frames`` is exactly one error frame with ``code``."""
        self.assertEqual(len(frames), 1, frames)
        [error] = frames
        self.assertEqual(error["type"], "error", error)
        self.assertEqual(error["code"], code, error)
        self.assertIsInstance(error["content"], str)
        self.assertTrue(error["content"])
        if request_id is not None:
            self.assertEqual(error["id"], request_id)
        else:
            self.assertNotIn("id", error)
        return error

    def assertRefused(self, client: RecordingClient, status: int) -> None:
        self.assertFalse(client.opened)
        self.assertIsNotNone(client.closed)
        self.assertEqual(int(client.http_status_line.split()[1]), status)

    def post(self, client: RecordingClient, body: str, **fields: Any) -> Frame:
        """Post a message and return the sender's ack."""
        [ack] = self.send(client, {"type": "message", "body": body, **fields})
        self.assertEqual(ack["type"], "ack", ack)
        return ack


class AuthFrameTests(AppSocketCase):
    """GarinChat's authentication: a first frame ``{"type":"auth","body":jwt}``."""

    auth_timeout = 2.0

    def test_auth_frame_ready(self) -> None:
        """A connection without credentials is upgraded; a valid token in an
        auth frame is answered with ``ready`` naming the account."""
        client = self.open()
        self.assertTrue(client.opened)
        self.assertEqual(client.take(), [])
        frames = self.send(client, {"type": "auth", "body": self.token("alice"), "id": "a1"})
        self.assertEqual(
            frames,
            [
                {
                    "type": "ready",
                    "user_id": self.accounts["alice"].id,
                    "nickname": "alice",
                    "connection_id": "c1",
                    "id": "a1",
                },
                # The account's state comes right after (tests/test_app_socket_state.py).
                {"type": "state", "rooms": [], "directs": []},
            ],
        )
        self.assertEqual(self.service.connection_count, 1)

    def test_token_field_alias(self) -> None:
        """``token`` is accepted in place of ``body``."""
        client = self.open()
        ready, _ = self.send(client, {"type": "auth", "token": self.token("bob")})
        self.assertEqual(ready["type"], "ready")
        self.assertEqual(ready["nickname"], "bob")

    def test_auth_timeout(self) -> None:
        """No auth frame within the timeout closes with 4001."""
        client = self.open()
        self.advance(1.9)
        self.assertIsNone(client.closed)
        self.advance(0.2)
        self.assertEqual(client.close_code, 4001)
        self.assertEqual(self.service.connection_count, 0)

    def test_ping_does_not_stop_auth_timer(self) -> None:
        """Pings are answered before authentication but do not extend the
        auth timeout."""
        client = self.open()
        self.assertEqual(self.send(client, {"type": "ping", "id": 7}), [{"type": "pong", "id": 7}])
        self.advance(2.1)
        self.assertEqual(client.close_code, 4001)

    def test_authenticated_not_closed_by_timer(self) -> None:
        """After a good auth frame the auth timer is cancelled."""
        client = self.login("alice")
        self.advance(60)
        self.assertIsNone(client.closed)

    def test_bad_token(self) -> None:
        """A bad token in the auth frame is an ``unauthorized`` error (with
        the client id) and a 1008 close."""
        client = self.open()
        frames = self.send(client, {"type": "auth", "body": "not-a-jwt", "id": 3})
        self.assertError(frames, "unauthorized", 3)
        self.assertEqual(client.close_code, 1008)
        self.assertEqual(self.service.connection_count, 0)

    def test_wrong_body_type(self) -> None:
        """A missing or non-string token is refused the same way."""
        for body in (None, 42, ["x"], ""):
            client = self.open()
            frame: Frame = {"type": "auth"} if body is None else {"type": "auth", "body": body}
            self.assertError(self.send(client, frame), "unauthorized")
            self.assertEqual(client.close_code, 1008)

    def test_token_signed_with_other_key(self) -> None:
        """A token signed with another secret is refused."""
        other = TokenAuthority(b"x" * 32, self.clock)
        token = other.issue(self.accounts["alice"].id, "alice")[0]
        client = self.open()
        self.assertError(self.send(client, {"type": "auth", "body": token}), "unauthorized")
        self.assertEqual(client.close_code, 1008)

    def test_expired_token(self) -> None:
        """A token past its expiry (on the injected clock) is refused."""
        token = self.token("alice")
        self.clock.advance(self.authority.lifetime + 60)
        client = self.open()
        self.assertError(self.send(client, {"type": "auth", "body": token}), "unauthorized")

    def test_second_auth(self) -> None:
        """Authenticating twice is an ``invalid_request`` error; the
        connection stays as it was."""
        client = self.login("alice")
        frames = self.send(client, {"type": "auth", "body": self.token("bob"), "id": "x"})
        self.assertError(frames, "invalid_request", "x")
        self.assertIsNone(client.closed)
        self.assertEqual(self.service.online_users(), [self.accounts["alice"]])

    def test_banned_account_auth_frame(self) -> None:
        """A valid token of a banned account is answered with ``banned`` and
        a 4003 close (not left open until the auth timeout)."""
        self.successResultOf(Deferred.fromCoroutine(self.service.ban("alice", "spam")))
        client = self.open()
        self.assertError(self.send(client, {"type": "auth", "body": self.token("alice")}), "banned")
        self.assertEqual(client.close_code, 4003)
        self.assertEqual(self.service.connection_count, 0)

    def test_external_token(self) -> None:
        """With an external verifier, a third-party HMAC JWT (GarinChat's
        deployment) authenticates a guest nickname without an account."""
        secret = b"e" * 32
        self.factory.tokens = TokenVerifier(
            self.authority, ExternalTokenVerifier(secret, self.clock)
        )
        token = jwt.encode(
            {"username": "garin", "exp": int(self.clock.seconds()) + 60}, secret, "HS256"
        )
        client = self.open()
        [ready] = self.send(client, {"type": "auth", "body": token})
        self.assertEqual((ready["nickname"], ready["user_id"]), ("garin", None))
        [joined] = self.send(client, {"type": "join", "room": "lobby"})[1:]
        self.assertEqual(joined["type"], "joined")
        # Direct messages need an account.
        self.assertError(
            self.send(client, {"type": "chat", "to": "alice", "content": "hi"}), "invalid_request"
        )


class HttpCredentialTests(AppSocketCase):
    """Credentials and the origin checked over HTTP, before the upgrade."""

    def test_bearer_header(self) -> None:
        """``Authorization: Bearer`` makes the connection ready at once."""
        client = self.open(headers={"Authorization": "Bearer " + self.token("alice")})
        ready, state = client.take()
        self.assertEqual(ready["type"], "ready")
        self.assertEqual(ready["nickname"], "alice")
        self.assertEqual(state["type"], "state")

    def test_query_token(self) -> None:
        """``?token=`` (seed 004's way) makes the connection ready at once."""
        client = self.open("/ws?token=" + quote(self.token("bob")))
        ready, _ = client.take()
        self.assertEqual((ready["type"], ready["nickname"]), ("ready", "bob"))

    def test_basic(self) -> None:
        """HTTP Basic with the account's password makes it ready at once."""
        client = self.open(headers={"Authorization": basic("carol", "carol-pw")})
        ready, _ = client.take()
        self.assertEqual((ready["type"], ready["user_id"]), ("ready", self.accounts["carol"].id))

    def test_no_auth_timer_when_ready(self) -> None:
        """A connection authenticated over HTTP is not closed by the auth timeout."""
        client = self.open(headers={"Authorization": "Bearer " + self.token("alice")})
        self.advance(60)
        self.assertIsNone(client.closed)

    def test_bad_bearer(self) -> None:
        """A bad Bearer token is 401, no upgrade."""
        client = self.open(headers={"Authorization": "Bearer nope"})
        self.assertRefused(client, 401)
        self.assertEqual(self.service.connection_count, 0)

    def test_bad_query_token(self) -> None:
        """A bad ``?token=`` is 401, no upgrade."""
        self.assertRefused(self.open("/ws?token=nope"), 401)

    def test_bad_basic(self) -> None:
        """A wrong Basic password is 401 with the Basic challenge."""
        client = self.open(headers={"Authorization": basic("alice", "wrong")})
        self.assertRefused(client, 401)
        self.assertEqual(client.http_headers.get("www-authenticate"), 'Basic realm="parkchat"')

    def test_unknown_scheme(self) -> None:
        """An Authorization header of another scheme is 401."""
        self.assertRefused(self.open(headers={"Authorization": "Digest x"}), 401)

    def test_banned_bearer(self) -> None:
        """A valid token of a banned account is 403."""
        self.successResultOf(Deferred.fromCoroutine(self.service.ban("alice")))
        client = self.open(headers={"Authorization": "Bearer " + self.token("alice")})
        self.assertRefused(client, 403)

    def test_foreign_origin(self) -> None:
        """A browser on another site (foreign ``Origin``) is 403."""
        client = self.open(
            headers={"Authorization": "Bearer " + self.token("alice")}, origin="http://evil.test"
        )
        self.assertRefused(client, 403)

    def test_same_origin(self) -> None:
        """The page's own origin may connect, also when the ``Host`` header
        names the default port (Autobahn's client sends ``parkchat.test:80``)
        and the ``Origin`` leaves it out, as browsers do."""
        client = self.open(origin=f"http://{HOST}")
        self.assertTrue(client.opened)

    def test_same_host_other_port(self) -> None:
        """The same host on another port is another origin: 403."""
        self.assertRefused(self.open(origin=f"http://{HOST}:8081"), 403)


class ConnectionLimitTests(AppSocketCase):
    """The per-account connection limit on /ws."""

    limits = Limits(rate_limit=0, max_connections_per_user=1)

    def test_connection_limit_over_http(self) -> None:
        """Past the per-user connection limit the upgrade is refused with 429."""
        self.open(headers={"Authorization": "Bearer " + self.token("alice")})
        self.assertRefused(
            self.open(headers={"Authorization": "Bearer " + self.token("alice")}), 429
        )

    def test_connection_limit_after_auth_frame(self) -> None:
        """Past the limit, an auth frame gets ``too_many_connections`` and 1008."""
        self.login("alice")
        client = self.open()
        self.assertError(
            self.send(client, {"type": "auth", "body": self.token("alice"), "id": 2}),
            "too_many_connections",
            2,
        )
        self.assertEqual(client.close_code, 1008)


class AllowListOriginTests(AppSocketCase):
    """An explicit origin allow-list."""

    allowed_origins = ("https://chat.example.com",)

    def test_listed_origin(self) -> None:
        """A listed origin may connect."""
        self.assertTrue(self.open(origin="https://chat.example.com").opened)

    def test_unlisted_origin(self) -> None:
        """Any other origin, the server's own included, is 403."""
        self.assertRefused(self.open(origin=f"http://{HOST}"), 403)

    def test_no_origin(self) -> None:
        """Non-browser clients (no ``Origin``) may connect."""
        self.assertTrue(self.open().opened)


class BeforeAuthTests(AppSocketCase):
    """Frames before authentication."""

    def test_not_authenticated(self) -> None:
        """Every type but ``auth`` and ``ping`` is ``not_authenticated``;
        the connection stays open."""
        client = self.open()
        for kind in ("join", "message", "history", "who", "rooms", "chat", "get_offline"):
            frames = self.send(client, {"type": kind, "id": kind, "room": "lobby"})
            self.assertError(frames, "not_authenticated", kind)
        self.assertIsNone(client.closed)

    def test_ping_allowed(self) -> None:
        """``ping`` is answered before authentication."""
        client = self.open()
        self.assertEqual(self.send(client, {"type": "ping"}), [{"type": "pong"}])


class JoinTests(AppSocketCase):
    """``join {room, username?}`` and the GarinChat join event."""

    def test_join(self) -> None:
        """The joiner gets the join event and a ``joined`` reply, the other
        members the join event with ``username`` and ``totalUsers``."""
        alice = self.joined("alice")
        bob = self.login("bob")
        frames = self.send(bob, {"type": "join", "room": "lobby", "username": "bob", "id": 1})
        event = {
            "type": "join",
            "room": "lobby",
            "username": "bob",
            "timestamp": "2025-09-08T15:30:00.000Z",
            "totalUsers": 2,
        }
        self.assertEqual(
            frames,
            [event, {"type": "joined", "room": "lobby", "seq": 0, "totalUsers": 2, "id": 1}],
        )
        self.assertEqual(alice.take(), [event])

    def test_username_case_insensitive(self) -> None:
        """``username`` matching the account case-insensitively is accepted."""
        bob = self.login("bob")
        frames = self.send(bob, {"type": "join", "room": "lobby", "username": "BOB"})
        self.assertEqual([f["type"] for f in frames], ["join", "joined"])

    def test_username_mismatch(self) -> None:
        """A ``username`` naming someone else is an ``invalid_request`` error."""
        bob = self.login("bob")
        for username in ("alice", 5):
            frames = self.send(bob, {"type": "join", "room": "lobby", "username": username})
            self.assertError(frames, "invalid_request")
        self.assertEqual(self.service.members("lobby"), [])

    def test_room_missing_or_wrong_type(self) -> None:
        """A missing or non-string room is ``invalid_request``."""
        bob = self.login("bob")
        for frame in ({"type": "join"}, {"type": "join", "room": 5}, {"type": "join", "room": []}):
            self.assertError(self.send(bob, frame), "invalid_request")

    def test_bad_room_name(self) -> None:
        """A room name breaking the naming rules is ``invalid_room``."""
        bob = self.login("bob")
        for room in ("", " padded ", "x" * 500, "tab\there"):
            self.assertError(self.send(bob, {"type": "join", "room": room}), "invalid_room")

    def test_join_twice(self) -> None:
        """Joining a room again is answered but announces nothing."""
        alice = self.joined("alice")
        bob = self.joined("bob")
        alice.take()
        frames = self.send(bob, {"type": "join", "room": "lobby"})
        self.assertEqual(frames, [{"type": "joined", "room": "lobby", "seq": 0, "totalUsers": 2}])
        self.assertEqual(alice.take(), [])


class JoinTimeoutTests(AppSocketCase):
    """The join timeout, when configured."""

    join_timeout = 2.0

    def test_join_timeout(self) -> None:
        """An authenticated connection that joins no room in time is closed with 4002."""
        client = self.login("alice")
        self.advance(2.1)
        self.assertEqual(client.close_code, 4002)
        self.assertEqual(self.service.connection_count, 0)

    def test_join_in_time(self) -> None:
        """Joining in time cancels the timer."""
        client = self.login("alice")
        self.send(client, {"type": "join", "room": "lobby"})
        self.advance(10)
        self.assertIsNone(client.closed)

    def test_failed_join_keeps_timer(self) -> None:
        """A refused join does not count."""
        client = self.login("alice")
        self.send(client, {"type": "join", "room": " bad "})
        self.advance(2.1)
        self.assertEqual(client.close_code, 4002)


class MessageTests(AppSocketCase):
    """``message {body, room?}``: no echo to the sender, an ack instead."""

    def test_message_and_ack(self) -> None:
        """The others get the message event; the sender gets only an ack with
        the stored id and its own id back."""
        alice = self.joined("alice")
        bob = self.joined("bob")
        alice.take()
        frames = self.send(alice, {"type": "message", "body": "hello", "id": "m-1"})
        [stored] = self.successResultOf(self.store.recent_messages("lobby", 10))
        self.assertEqual(
            frames,
            [
                {
                    "type": "ack",
                    "message_id": stored.id,
                    "seq": 1,
                    "room": "lobby",
                    "timestamp": "2025-09-08T15:30:00.000Z",
                    "id": "m-1",
                }
            ],
        )
        self.assertEqual(
            bob.take(),
            [
                {
                    "type": "message",
                    "id": stored.id,
                    "seq": 1,
                    "room": "lobby",
                    "username": "alice",
                    "body": "hello",
                    "timestamp": "2025-09-08T15:30:00.000Z",
                    "totalUsers": 2,
                }
            ],
        )

    def test_content_alias(self) -> None:
        """``content`` is accepted in place of ``body``."""
        alice = self.joined("alice")
        bob = self.joined("bob")
        [ack] = self.send(alice, {"type": "message", "content": "via content"})
        self.assertEqual(ack["type"], "ack")
        self.assertEqual([f["body"] for f in bob.take()], ["via content"])

    def test_senders_other_connection(self) -> None:
        """The sender's other connection in the room does get the message."""
        first = self.joined("alice")
        second = self.joined("alice")
        first.take()
        self.post(first, "from one tab")
        [event] = second.take()
        self.assertEqual((event["type"], event["body"]), ("message", "from one tab"))

    def test_no_ack_without_id(self) -> None:
        """Without a client id the ack has no ``id`` key."""
        alice = self.joined("alice")
        self.assertNotIn("id", self.post(alice, "x"))

    def test_not_joined(self) -> None:
        """A message with no room joined is ``not_in_room``."""
        alice = self.login("alice")
        self.assertError(
            self.send(alice, {"type": "message", "body": "x", "id": 4}), "not_in_room", 4
        )

    def test_room_not_joined(self) -> None:
        """A message to a room the connection is not in is ``not_in_room``."""
        alice = self.joined("alice")
        bob = self.joined("bob", "other")
        self.assertError(
            self.send(alice, {"type": "message", "body": "x", "room": "other"}), "not_in_room"
        )
        self.assertEqual(bob.take(), [])

    def test_bad_content(self) -> None:
        """Missing, non-string, empty or control-character bodies are
        ``invalid_content``; nothing is stored."""
        alice = self.joined("alice")
        for body in (None, 5, ["x"], "", "   ", "\x1b[2J"):
            frame: Frame = {"type": "message"}
            if body is not None:
                frame["body"] = body
            self.assertError(self.send(alice, frame), "invalid_content")
        self.assertEqual(self.successResultOf(self.store.recent_messages("lobby", 10)), [])

    def test_room_wrong_type(self) -> None:
        """A non-string room is ``invalid_request``."""
        alice = self.joined("alice")
        self.assertError(
            self.send(alice, {"type": "message", "body": "x", "room": 1}), "invalid_request"
        )


class ContentLimitTests(AppSocketCase):
    """The message length limit."""

    limits = Limits(rate_limit=0, max_content_length=10)

    def test_content_too_long(self) -> None:
        """A body over the limit is ``content_too_long``; at the limit is fine."""
        alice = self.joined("alice")
        self.assertError(
            self.send(alice, {"type": "message", "body": "x" * 11, "id": 1}), "content_too_long", 1
        )
        self.post(alice, "x" * 10)

    def test_dm_too_long(self) -> None:
        """A direct message over the limit is ``content_too_long`` too."""
        alice = self.login("alice")
        frames = self.send(alice, {"type": "chat", "to": "bob", "content": "y" * 11})
        self.assertError(frames, "content_too_long")


class MultiRoomTests(AppSocketCase):
    """Several rooms on one connection."""

    def test_room_required_in_two_rooms(self) -> None:
        """In two rooms, a message without ``room`` is ``invalid_request``;
        with ``room`` it goes to that room only."""
        alice = self.joined("alice", "one", "two")
        bob = self.joined("bob", "one")
        carol = self.joined("carol", "two")
        alice.take()
        self.assertError(self.send(alice, {"type": "message", "body": "which?"}), "invalid_request")
        ack = self.post(alice, "to two", room="two")
        self.assertEqual(ack["room"], "two")
        self.assertEqual(bob.take(), [])
        self.assertEqual([f["body"] for f in carol.take()], ["to two"])

    def test_rooms(self) -> None:
        """``rooms`` lists the connection's rooms, sorted."""
        alice = self.joined("alice", "two", "one")
        self.assertEqual(
            self.send(alice, {"type": "rooms", "id": 9}),
            [{"type": "rooms", "rooms": ["one", "two"], "id": 9}],
        )

    def test_rooms_empty(self) -> None:
        """Before any join ``rooms`` is empty."""
        alice = self.login("alice")
        self.assertEqual(self.send(alice, {"type": "rooms"}), [{"type": "rooms", "rooms": []}])


class LeaveTests(AppSocketCase):
    """``userleave`` (GarinChat) and its alias ``leave``."""

    def test_userleave(self) -> None:
        """``userleave`` really leaves: the rest get the userleave event with
        the new ``totalUsers``, the leaver a ``left`` reply."""
        alice = self.joined("alice")
        bob = self.joined("bob")
        alice.take()
        frames = self.send(bob, {"type": "userleave", "id": "bye"})
        self.assertEqual(frames, [{"type": "left", "rooms": ["lobby"], "id": "bye"}])
        self.assertEqual(
            alice.take(),
            [
                {
                    "type": "userleave",
                    "room": "lobby",
                    "username": "bob",
                    "timestamp": "2025-09-08T15:30:00.000Z",
                    "totalUsers": 1,
                }
            ],
        )
        self.assertEqual(self.service.members("lobby"), ["alice"])
        self.assertError(self.send(bob, {"type": "message", "body": "x"}), "not_in_room")

    def test_leave_one_of_two(self) -> None:
        """``leave {room}`` leaves that room only."""
        alice = self.joined("alice", "one", "two")
        self.assertEqual(
            self.send(alice, {"type": "leave", "room": "one"}),
            [{"type": "left", "rooms": ["one"]}],
        )
        self.assertEqual(self.service.rooms_of(self._protocol_of("alice")), {"two"})

    def test_userleave_all(self) -> None:
        """Without ``room`` in several rooms, ``userleave`` leaves them all."""
        alice = self.joined("alice", "one", "two")
        self.assertEqual(
            self.send(alice, {"type": "userleave"}), [{"type": "left", "rooms": ["one", "two"]}]
        )

    def test_not_in_room(self) -> None:
        """Leaving with no room joined, or a room not joined, is ``not_in_room``."""
        alice = self.login("alice")
        self.assertError(self.send(alice, {"type": "userleave"}), "not_in_room")
        self.send(alice, {"type": "join", "room": "lobby"})
        self.assertError(self.send(alice, {"type": "leave", "room": "other"}), "not_in_room")

    def test_close_is_leave(self) -> None:
        """Closing the socket announces the leave to the rest."""
        alice = self.joined("alice")
        bob = self.joined("bob")
        alice.take()
        bob.sendClose(1000)
        self.settle()
        [event] = alice.take()
        self.assertEqual(
            (event["type"], event["username"], event["totalUsers"]), ("userleave", "bob", 1)
        )

    def _protocol_of(self, nickname: str) -> Any:
        [protocol] = self.service.local_connections(nickname)
        return protocol


class HistoryTests(AppSocketCase):
    """``history {room, before?, after?, limit?}``."""

    def setUp(self) -> None:
        super().setUp()
        self.alice = self.joined("alice")
        self.ids = [self.post(self.alice, f"m{i}")["message_id"] for i in range(5)]

    def bodies(self, frames: list[Frame]) -> list[str]:
        [reply] = frames
        self.assertEqual(reply["type"], "history")
        return [m["body"] for m in reply["messages"]]

    def test_latest_oldest_first(self) -> None:
        """Without paging: the latest messages, oldest first, as message events."""
        bob = self.login("bob")  # history does not need membership
        frames = self.send(bob, {"type": "history", "room": "lobby", "limit": 3, "id": "h"})
        [reply] = frames
        self.assertEqual(reply["id"], "h")
        self.assertEqual(reply["room"], "lobby")
        self.assertIs(reply["last"], True)
        self.assertEqual([m["body"] for m in reply["messages"]], ["m2", "m3", "m4"])
        self.assertEqual(
            reply["messages"][0],
            {
                "type": "message",
                "id": self.ids[2],
                "seq": 3,
                "room": "lobby",
                "username": "alice",
                "body": "m2",
                "timestamp": "2025-09-08T15:30:00.000Z",
            },
        )

    def test_before(self) -> None:
        """``before`` pages back."""
        frames = self.send(self.alice, {"type": "history", "room": "lobby", "before": self.ids[2]})
        self.assertEqual(self.bodies(frames), ["m0", "m1"])

    def test_after(self) -> None:
        """``after`` pages forward, oldest first."""
        frames = self.send(
            self.alice, {"type": "history", "room": "lobby", "after": self.ids[0], "limit": 2}
        )
        self.assertEqual(self.bodies(frames), ["m1", "m2"])

    def test_unknown_room(self) -> None:
        """An unknown room has an empty history."""
        self.assertEqual(
            self.bodies(self.send(self.alice, {"type": "history", "room": "void"})), []
        )

    def test_bad_params(self) -> None:
        """Wrong types, a limit out of range, negative ids, a bad room name
        and a missing room are errors with stable codes."""
        cases: list[tuple[Frame, str]] = [
            ({"room": "lobby", "limit": "5"}, "invalid_request"),
            ({"room": "lobby", "limit": True}, "invalid_request"),
            ({"room": "lobby", "before": 1.5}, "invalid_request"),
            ({"room": "lobby", "after": "3"}, "invalid_request"),
            ({"room": "lobby", "limit": 0}, "invalid_request"),
            ({"room": "lobby", "limit": 10_000}, "invalid_request"),
            ({"room": "lobby", "before": -1}, "invalid_request"),
            ({}, "invalid_request"),
            ({"room": 3}, "invalid_request"),
            ({"room": " x "}, "invalid_room"),
        ]
        for fields, code in cases:
            with self.subTest(fields=fields):
                frames = self.send(self.alice, {"type": "history", "id": 1, **fields})
                self.assertError(frames, code, 1)


class ResumeCase(AppSocketCase):
    """alice has posted m0..m5 (seqs 1..6) in lobby."""

    def setUp(self) -> None:
        super().setUp()
        self.alice = self.joined("alice")
        self.acks = [self.post(self.alice, f"m{i}") for i in range(6)]

    def resume(self, last_seq: int, **fields: Any) -> list[Frame]:
        """bob's frames for a resuming join: ``joined``, the history pages,
        then (after the replay) his own join event."""
        bob = self.login("bob")
        frame = {"type": "join", "room": "lobby", "last_seq": last_seq, "id": "r", **fields}
        frames = self.send(bob, frame)
        self.assertEqual(frames[0]["type"], "joined")
        self.assertEqual(frames[-1]["type"], "join")
        return frames[:-1]

    def replayed(self, frames: list[Frame]) -> list[Frame]:
        pages = frames[1:]
        for page in pages:
            self.assertEqual((page["type"], page["resume"], page["id"]), ("history", True, "r"))
        self.assertEqual([page["last"] for page in pages], [False] * (len(pages) - 1) + [True])
        return [m for page in pages for m in page["messages"]]


class ResumeTests(ResumeCase):
    """``join`` with ``last_seq``: resume after a reconnect (docs/websocket.md)."""

    def test_recovered(self) -> None:
        """The messages after ``last_seq`` come after ``joined``, oldest
        first, with their seqs; ``joined`` gives the room's position and
        says how many follow."""
        frames = self.resume(3)
        self.assertEqual(
            frames[0],
            {
                "type": "joined",
                "room": "lobby",
                "seq": 6,
                "totalUsers": 2,
                "resume": {"count": 3, "recovered": True, "first_seq": 4},
                "id": "r",
            },
        )
        messages = self.replayed(frames)
        self.assertEqual(
            [(m["body"], m["seq"]) for m in messages], [("m3", 4), ("m4", 5), ("m5", 6)]
        )
        self.assertEqual(messages[0]["id"], self.acks[3]["message_id"])

    def test_nothing_missed(self) -> None:
        """Resuming from the newest seq: count 0 and no history frame."""
        frames = self.resume(6)
        self.assertEqual(frames[0]["resume"], {"count": 0, "recovered": True, "first_seq": None})
        self.assertEqual(len(frames), 1)

    def test_then_live(self) -> None:
        """After the replay, live messages continue from the next seq."""
        bob = self.login("bob")
        self.send(bob, {"type": "join", "room": "lobby", "last_seq": 5})
        self.alice.take()
        self.post(self.alice, "live")
        [event] = bob.take()
        self.assertEqual((event["body"], event["seq"]), ("live", 7))

    def test_room_empty_when_joined(self) -> None:
        """A client that joined an empty room (``seq`` 0) and left resumes
        from 0: everything stored meanwhile arrives."""
        carol = self.login("carol")
        [joined] = [
            f for f in self.send(carol, {"type": "join", "room": "quiet"}) if f["type"] == "joined"
        ]
        self.assertEqual(joined["seq"], 0)
        self.send(carol, {"type": "leave", "room": "quiet"})
        self.send(self.alice, {"type": "join", "room": "quiet"})
        for text in ("a", "b", "c"):
            self.post(self.alice, text, room="quiet")
        frames = self.send(carol, {"type": "join", "room": "quiet", "last_seq": joined["seq"]})
        [history] = [f for f in frames if f["type"] == "history"]
        self.assertEqual([m["body"] for m in history["messages"]], ["a", "b", "c"])

    def test_pages_under_the_client_limit(self) -> None:
        """``max_frame`` bounds every history frame: a long gap comes in
        several, with ``last`` only on the final one, in order."""
        for i in range(20):
            self.post(self.alice, f"{i:02d} " + "x" * 200)
        frames = self.resume(0, max_frame=1024)
        pages = frames[1:]
        self.assertGreater(len(pages), 5)
        for page in pages:
            self.assertLessEqual(len(json.dumps(page, separators=(",", ":"))), 1024)
        bodies = [m["body"] for m in self.replayed(frames)]
        self.assertEqual(bodies[:6], [f"m{i}" for i in range(6)])
        self.assertEqual([b[:2] for b in bodies[6:]], [f"{i:02d}" for i in range(20)])
        self.assertEqual(frames[0]["resume"]["count"], 26)

    def test_bad_fields(self) -> None:
        """A ``last_seq`` that is not a seq, or a ``max_frame`` below 1024,
        is ``invalid_request`` and nothing is joined."""
        bob = self.login("bob")
        for bad in ({"last_seq": "5"}, {"last_seq": -1}, {"last_seq": 1.5}, {"last_seq": True}):
            self.assertError(
                self.send(bob, {"type": "join", "room": "lobby", **bad}), "invalid_request"
            )
        for bad in ({"max_frame": 100}, {"max_frame": "big"}):
            self.assertError(
                self.send(bob, {"type": "join", "room": "lobby", **bad}), "invalid_request"
            )
        self.assertEqual(self.service.members("lobby"), ["alice"])


class ResumeLimitTests(ResumeCase):
    """More missed than ``--resume-max``: the newest, ``recovered: false``."""

    resume_max = 3

    def test_too_many_missed(self) -> None:
        frames = self.resume(0)
        self.assertEqual(frames[0]["resume"], {"count": 3, "recovered": False, "first_seq": 4})
        self.assertEqual([m["body"] for m in self.replayed(frames)], ["m3", "m4", "m5"])

    def test_exactly_limit_missed(self) -> None:
        """Exactly ``--resume-max`` missed is still recovered."""
        frames = self.resume(3)
        self.assertEqual(frames[0]["resume"], {"count": 3, "recovered": True, "first_seq": 4})


class ServerFrameLimitTests(AppSocketCase):
    """The server's own frame limit (``--max-frame-size``) bounds every
    history frame too: a resume of 1 KB messages never exceeds it."""

    max_message_size = 4096

    def test_resume_and_history_in_pages(self) -> None:
        alice = self.joined("alice")
        for i in range(30):
            self.post(alice, f"{i:02d} " + "é" * 500)
        bob = self.login("bob")
        frames = self.send(bob, {"type": "join", "room": "lobby", "last_seq": 0, "id": 1})
        pages = [f for f in frames if f["type"] == "history"]
        self.assertGreater(len(pages), 5)
        for page in pages:
            self.assertLessEqual(len(json.dumps(page, ensure_ascii=False).encode()), 4096)
        bodies = [m["body"][:2] for p in pages for m in p["messages"]]
        self.assertEqual(bodies, [f"{i:02d}" for i in range(30)])
        frames = self.send(bob, {"type": "history", "room": "lobby", "limit": 30, "id": 2})
        self.assertGreater(len(frames), 5)
        self.assertEqual([f["last"] for f in frames], [False] * (len(frames) - 1) + [True])
        self.assertEqual([m["seq"] for f in frames for m in f["messages"]], list(range(1, 31)))
        self.assertIsNone(bob.closed)


class LegacyResumeTests(AppSocketCase):
    """``join`` with ``last_id`` (deprecated): mapped to that message's seq
    and answered with one ``history`` frame carrying ``recovered``."""

    max_message_size = 4096

    def setUp(self) -> None:
        super().setUp()
        self.alice = self.joined("alice")
        self.ids = [self.post(self.alice, f"m{i}")["message_id"] for i in range(6)]

    def resume(self, last_id: int) -> Frame:
        bob = self.login("bob")
        frames = self.send(bob, {"type": "join", "room": "lobby", "last_id": last_id, "id": "r"})
        self.assertEqual([f["type"] for f in frames], ["joined", "history", "join"])
        self.assertEqual(frames[1]["id"], "r")
        return frames[1]

    def test_recovered(self) -> None:
        reply = self.resume(self.ids[2])
        self.assertEqual([m["body"] for m in reply["messages"]], ["m3", "m4", "m5"])
        self.assertIs(reply["recovered"], True)

    def test_nothing_missed(self) -> None:
        reply = self.resume(self.ids[-1])
        self.assertEqual((reply["messages"], reply["recovered"]), ([], True))

    def test_deleted_last_id(self) -> None:
        """The client's last message was deleted meanwhile: it resumes after
        the newest message before it."""
        self.successResultOf(Deferred.fromCoroutine(self.service.delete_message(self.ids[2])))
        reply = self.resume(self.ids[2])
        self.assertEqual([m["body"] for m in reply["messages"]], ["m3", "m4", "m5"])

    def test_over_the_frame_limit(self) -> None:
        """More than one frame can hold: the newest that fit, and
        ``recovered: false`` (the client pages back with ``history``)."""
        for i in range(10):
            self.post(self.alice, f"{i} " + "x" * 1000)
        reply = self.resume(self.ids[0])
        self.assertIs(reply["recovered"], False)
        self.assertLessEqual(len(json.dumps(reply)), 4096)
        self.assertEqual(reply["messages"][-1]["body"][:2], "9 ")

    def test_bad_last_id(self) -> None:
        """A ``last_id`` that is not a message id -- not an integer, negative,
        or past the largest id (issue 15, item 12: -5 and 10**20 joined and
        then failed) -- is ``invalid_request`` before anything is joined."""
        bob = self.login("bob")
        for last_id in ("5", 1.5, True, -5, -1, 10**20, MAX_ID + 1):
            frames = self.send(bob, {"type": "join", "room": "lobby", "last_id": last_id})
            self.assertError(frames, "invalid_request")
            self.assertNotIn("joined", [frame["type"] for frame in frames])
        self.assertEqual(self.service.members("lobby"), ["alice"])


class PagedResumeTests(AppSocketCase):
    """Resume when the gap spans several store pages."""

    def setUp(self) -> None:
        super().setUp()
        self.patch(delivery, "FILL_PAGE", 2)
        self.alice = self.joined("alice")
        for i in range(7):
            self.post(self.alice, f"m{i}")

    def test_recovered_over_pages(self) -> None:
        bob = self.login("bob")
        frames = self.send(bob, {"type": "join", "room": "lobby", "last_seq": 1})
        [history] = [f for f in frames if f["type"] == "history"]
        self.assertEqual([m["body"] for m in history["messages"]], [f"m{i}" for i in range(1, 7)])


class PresenceTests(AppSocketCase):
    """``who``, ``get_online_list`` and ``ping``."""

    def test_who(self) -> None:
        """``who`` lists the room's people (each once) and ``totalUsers``."""
        alice = self.joined("alice")
        self.joined("bob")
        self.joined("alice")
        alice.take()
        self.assertEqual(
            self.send(alice, {"type": "who", "room": "lobby", "id": 2}),
            [{"type": "who", "room": "lobby", "users": ["alice", "bob"], "totalUsers": 2, "id": 2}],
        )

    def test_who_default_room(self) -> None:
        """In one room, ``who`` needs no ``room``."""
        alice = self.joined("alice")
        [reply] = self.send(alice, {"type": "who"})
        self.assertEqual(reply["users"], ["alice"])

    def test_who_not_joined(self) -> None:
        """``who`` of a room not joined is ``not_in_room``."""
        alice = self.joined("alice")
        self.joined("bob", "other")
        self.assertError(self.send(alice, {"type": "who", "room": "other"}), "not_in_room")

    def test_online_list(self) -> None:
        """``get_online_list`` lists the online accounts by id (seed 004's
        ``data``) and with nicknames, from every surface."""
        alice = self.login("alice")
        self.login("carol")
        self.seed_client("bob")
        ids = {n: self.accounts[n].id for n in ("alice", "bob", "carol")}
        self.assertEqual(
            self.send(alice, {"type": "get_online_list"}),
            [
                {
                    "type": "online_list",
                    "data": sorted(ids.values()),
                    "users": [
                        {"user_id": ids[n], "nickname": n} for n in sorted(ids, key=ids.__getitem__)
                    ],
                }
            ],
        )

    def test_ping(self) -> None:
        """``ping`` is answered with ``pong`` carrying the client id."""
        alice = self.login("alice")
        self.assertEqual(
            self.send(alice, {"type": "ping", "id": "p1"}), [{"type": "pong", "id": "p1"}]
        )


class TypingTests(AppSocketCase):
    """Typing notices: app clients only, rate-limited."""

    def test_typing(self) -> None:
        """The others get ``typing``; the typist gets nothing back."""
        alice = self.joined("alice")
        bob = self.joined("bob")
        alice.take()
        self.assertEqual(self.send(alice, {"type": "typing"}), [])
        self.assertEqual(bob.take(), [{"type": "typing", "room": "lobby", "username": "alice"}])

    def test_rate_limited(self) -> None:
        """A second notice within a second is dropped quietly."""
        alice = self.joined("alice")
        bob = self.joined("bob")
        self.send(alice, {"type": "typing"})
        self.advance(0.5)
        self.assertEqual(self.send(alice, {"type": "typing"}), [])
        self.assertEqual(len(bob.take()), 1)
        self.advance(0.6)
        self.send(alice, {"type": "typing"})
        self.assertEqual(len(bob.take()), 1)

    def test_other_surfaces_skip_typing(self) -> None:
        """``/ws/{room}`` seed clients and TCP line clients are not sent typing notices."""
        seed = self.seed_client("bob")
        line = self.line_client("dave")
        alice = self.joined("alice")
        seed.take()
        line.take()
        self.send(alice, {"type": "typing"})
        self.assertEqual(seed.take(), [])
        self.assertEqual(line.take(), [])

    def test_deleted_message(self) -> None:
        """A moderator's deletion reaches /ws members as ``deleted`` with the
        id, TCP clients as a notice line; seed clients, whose protocol has
        no such event (their client would print it as a message), get
        nothing."""
        alice = self.joined("alice")
        bob = self.joined("bob")
        seed = self.seed_client("carol")
        line = self.line_client("dave")
        alice.take()
        frames = self.send(alice, {"type": "message", "body": "oops"})
        [ack] = [f for f in frames if f["type"] == "ack"]
        for client in (bob, seed, line):
            client.take()
        self.successResultOf(Deferred.fromCoroutine(self.service.delete_message(ack["message_id"])))
        self.settle()
        deleted = {"type": "deleted", "room": "lobby", "id": ack["message_id"], "seq": ack["seq"]}
        self.assertEqual(alice.take(), [deleted])
        self.assertEqual(bob.take(), [deleted])
        self.assertEqual(seed.take(), [])
        self.assertEqual(line.take(), [f"*** message #{ack['seq']} deleted"])

    def test_not_joined(self) -> None:
        """Typing in a room not joined is ``not_in_room``."""
        alice = self.login("alice")
        self.assertError(self.send(alice, {"type": "typing", "room": "lobby"}), "not_in_room")


class CrossSurfaceTests(AppSocketCase):
    """/ws clients share rooms with ``/ws/{room}`` and TCP clients."""

    def test_messages_cross(self) -> None:
        """A /ws message reaches seed and TCP members in their formats, and
        theirs reach the /ws client as message events."""
        seed = self.seed_client("bob")
        line = self.line_client("dave")
        alice = self.joined("alice")
        seed.take()
        line.take()
        self.post(alice, "from app")
        self.assertEqual([f["content"] for f in seed.chats()], ["from app"])
        self.assertEqual(line.take(), ["alice:from app"])
        seed.send_json({"content": "from seed"})
        line.send_line("from tcp")
        self.settle()
        self.assertEqual(
            [(f["username"], f["body"]) for f in alice.take()],
            [("bob", "from seed"), ("dave", "from tcp")],
        )


class DirectMessageTests(AppSocketCase):
    """Seed 004's ``chat``, ``get_offline``."""

    def test_chat_by_id(self) -> None:
        """``chat {to_user_id, content}`` reaches every connection of the
        recipient with ``from_user_id``; the sender gets an ack."""
        alice = self.login("alice")
        bob1 = self.login("bob")
        bob2 = self.login("bob")
        bob_id = self.accounts["bob"].id
        frames = self.send(alice, {"type": "chat", "to_user_id": bob_id, "content": "hi", "id": 5})
        [ack] = frames
        self.assertEqual(
            ack,
            {
                "type": "ack",
                "message_id": ack["message_id"],
                "seq": 1,
                "to_user_id": bob_id,
                "timestamp": "2025-09-08T15:30:00.000Z",
                "id": 5,
            },
        )
        expected = {
            "type": "chat",
            "id": ack["message_id"],
            "seq": 1,
            "from_user_id": self.accounts["alice"].id,
            "from": "alice",
            "to_user_id": bob_id,
            "to": "bob",
            "content": "hi",
            "timestamp": "2025-09-08T15:30:00.000Z",
        }
        self.assertEqual(bob1.take(), [expected])
        self.assertEqual(bob2.take(), [expected])
        # Delivered live: nothing waits offline.
        self.assertEqual(
            self.send(bob1, {"type": "get_offline"}), [{"type": "offline_list", "data": []}]
        )

    def test_chat_by_nickname(self) -> None:
        """``to`` names the recipient by nickname."""
        alice = self.login("alice")
        bob = self.login("bob")
        self.send(alice, {"type": "chat", "to": "bob", "content": "by name"})
        self.assertEqual([f["content"] for f in bob.take()], ["by name"])

    def test_unknown_recipient(self) -> None:
        """An unknown id or nickname is ``unknown_recipient``."""
        alice = self.login("alice")
        for to in ({"to_user_id": 999}, {"to": "nobody"}):
            frames = self.send(alice, {"type": "chat", "content": "x", "id": "d", **to})
            self.assertError(frames, "unknown_recipient", "d")

    def test_bad_recipient_or_content(self) -> None:
        """A missing or wrong-typed recipient is ``invalid_request``, bad
        content ``invalid_content``."""
        alice = self.login("alice")
        for frame, code in (
            ({"content": "x"}, "invalid_request"),
            ({"to": ["bob"], "content": "x"}, "invalid_request"),
            ({"to_user_id": True, "content": "x"}, "invalid_request"),
            ({"to": "", "content": "x"}, "invalid_request"),
            ({"to": "bob"}, "invalid_content"),
            ({"to": "bob", "content": 3}, "invalid_content"),
        ):
            with self.subTest(frame=frame):
                self.assertError(self.send(alice, {"type": "chat", **frame}), code)

    def test_offline_delivery(self) -> None:
        """A DM to an offline user waits; ``get_offline`` returns it (oldest
        first) once, then an empty list."""
        alice = self.login("alice")
        bob_id = self.accounts["bob"].id
        self.send(alice, {"type": "chat", "to_user_id": bob_id, "content": "first"})
        self.clock.advance(1)
        self.send(alice, {"type": "chat", "to": "bob", "content": "second"})
        bob = self.login("bob")
        self.assertEqual(bob.take(), [])
        [reply] = self.send(bob, {"type": "get_offline", "id": "o"})
        self.assertEqual(reply["type"], "offline_list")
        self.assertEqual(reply["id"], "o")
        self.assertEqual([m["content"] for m in reply["data"]], ["first", "second"])
        self.assertEqual(
            reply["data"][0],
            {
                "msg_id": reply["data"][0]["msg_id"],
                "to_user_id": bob_id,
                "from_user_id": self.accounts["alice"].id,
                "from": "alice",
                "content": "first",
                "created_at": "2025-09-08T15:30:00.000Z",
            },
        )
        self.assertEqual(
            self.send(bob, {"type": "get_offline"}), [{"type": "offline_list", "data": []}]
        )

    def test_direct_history(self) -> None:
        """``get_direct_history`` returns both directions of one
        conversation, oldest first, paged back with ``limit``/``before``;
        other conversations stay out."""
        alice = self.login("alice")
        bob = self.login("bob")
        carol = self.login("carol")
        sent = []
        for sender, to, text in (
            (alice, "bob", "hi bob"),
            (bob, "alice", "hi alice"),
            (carol, "alice", "not this one"),
            (alice, "bob", "how are you"),
        ):
            frames = self.send(sender, {"type": "chat", "to": to, "content": text})
            [ack] = [f for f in frames if f["type"] == "ack"]  # DMs to it come too
            sent.append(ack["message_id"])
            self.clock.advance(1)
        for client in (alice, bob, carol):
            client.take()
        [reply] = self.send(alice, {"type": "get_direct_history", "with": "BOB", "id": "h"})
        self.assertEqual(
            (reply["type"], reply["id"], reply["with"], reply["with_user_id"]),
            ("direct_history", "h", "bob", self.accounts["bob"].id),
        )
        self.assertEqual(
            [(m["from"], m["to"], m["content"]) for m in reply["messages"]],
            [
                ("alice", "bob", "hi bob"),
                ("bob", "alice", "hi alice"),
                ("alice", "bob", "how are you"),
            ],
        )
        self.assertEqual(reply["messages"][0]["id"], sent[0])
        # The same conversation from bob's side, by user id; then paged.
        [mirror] = self.send(
            bob, {"type": "get_direct_history", "with_user_id": self.accounts["alice"].id}
        )
        self.assertEqual(mirror["messages"], reply["messages"])
        [page] = self.send(
            alice, {"type": "get_direct_history", "with": "bob", "limit": 1, "before": sent[3]}
        )
        self.assertEqual([m["content"] for m in page["messages"]], ["hi alice"])

    def test_direct_history_refusals(self) -> None:
        alice = self.login("alice")
        for frame, code in (
            ({"with": "nobody"}, "unknown_recipient"),
            ({}, "invalid_request"),
            ({"with": "bob", "limit": 0}, "invalid_request"),
            ({"with": "bob", "limit": "5"}, "invalid_request"),
            ({"with": "bob", "before": -1}, "invalid_request"),
            ({"with": "bob", "before": True}, "invalid_request"),
        ):
            with self.subTest(frame=frame):
                self.assertError(
                    self.send(alice, {"type": "get_direct_history", "id": "x", **frame}), code, "x"
                )

    def test_seed_socket_does_not_take_dms(self) -> None:
        """A recipient connected only on ``/ws/{room}`` (no DMs there) gets
        the message later through ``get_offline``."""
        alice = self.login("alice")
        seed = self.seed_client("bob")
        seed.take()
        self.send(alice, {"type": "chat", "to": "bob", "content": "later"})
        self.assertEqual(seed.take(), [])
        bob = self.login("bob")
        [reply] = self.send(bob, {"type": "get_offline"})
        self.assertEqual([m["content"] for m in reply["data"]], ["later"])


class BadFrameTests(AppSocketCase):
    """Bad input: an error frame with a stable code, and the connection carries on."""

    def setUp(self) -> None:
        super().setUp()
        self.alice = self.joined("alice")
        self.bob = self.joined("bob")
        self.alice.take()

    def assertUsable(self) -> None:
        self.assertIsNone(self.alice.closed)
        self.post(self.alice, "still works")
        self.assertEqual([f["body"] for f in self.bob.take()], ["still works"])

    def test_invalid_json(self) -> None:
        """Not JSON: ``invalid_request``."""
        self.alice.sendMessage(b'{"type": "ping"')
        self.settle()
        self.assertError(self.alice.take(), "invalid_request")
        self.assertUsable()

    def test_not_an_object(self) -> None:
        """JSON that is not an object: ``invalid_request``."""
        for value in ([{"type": "ping"}], "ping", 3, None):
            self.assertError(self.send(self.alice, value), "invalid_request")
        self.assertUsable()

    def test_missing_or_wrong_type(self) -> None:
        """No ``type``, or a non-string one: ``invalid_request`` (with the id)."""
        for frame in ({"id": 1}, {"type": 5, "id": 1}, {"type": None, "id": 1}):
            self.assertError(self.send(self.alice, frame), "invalid_request", 1)
        self.assertUsable()

    def test_unknown_type(self) -> None:
        """An unknown ``type``: ``unknown_type`` (with the id)."""
        for kind in ("shout", "", "__init__", "HANDLE_ping"):
            self.assertError(
                self.send(self.alice, {"type": kind, "id": kind}), "unknown_type", kind
            )
        self.assertUsable()

    def test_not_utf8(self) -> None:
        """A text message that is not UTF-8 closes with 1007 (the strict
        decode before the JSON parser checks it; Autobahn's validator is
        off), and what the client sent behind it is not handled."""
        self.assertFalse(self.factory.protocol.utf8validateIncoming)
        self.alice.sendMessage(b'{"type": "message", "body": "\xed\xa0\x80"}')
        self.alice.sendMessage(b'{"type": "message", "body": "after"}')
        self.settle()
        self.assertEqual(self.alice.close_code, 1007)
        self.assertEqual([f for f in self.bob.take() if f["type"] == "message"], [])

    def test_binary_frame(self) -> None:
        """A binary frame: ``invalid_request``."""
        self.alice.sendMessage(b'{"type":"ping"}', isBinary=True)
        self.settle()
        self.assertError(self.alice.take(), "invalid_request")
        self.assertUsable()

    def test_ids_of_any_json_type(self) -> None:
        """The client id comes back as it was sent, whatever its JSON type."""
        for request_id in ("s", 0, 1.5, ["a"], {"k": 1}):
            self.assertError(
                self.send(self.alice, {"type": "nope", "id": request_id}),
                "unknown_type",
                request_id,
            )

    def test_others_unaffected(self) -> None:
        """A bad frame from one client sends nothing to the others."""
        self.send(self.alice, {"type": "message", "body": 5})
        self.assertEqual(self.bob.take(), [])


class RateLimitTests(AppSocketCase):
    """The per-user token bucket on ``message`` and ``chat``."""

    limits = Limits(rate_limit=1, rate_burst=2)

    def test_rate_limited(self) -> None:
        """Past the burst: ``rate_limited`` with the id, the connection stays;
        after a refill posting works again."""
        alice = self.joined("alice")
        self.post(alice, "1")
        self.post(alice, "2")
        self.assertError(
            self.send(alice, {"type": "message", "body": "3", "id": 3}), "rate_limited", 3
        )
        self.assertIsNone(alice.closed)
        self.advance(1)
        self.post(alice, "4")

    def test_dm_rate_limited(self) -> None:
        """Direct messages take from the same bucket."""
        alice = self.joined("alice")
        self.post(alice, "1")
        self.post(alice, "2")
        self.assertError(
            self.send(alice, {"type": "chat", "to": "bob", "content": "x"}), "rate_limited"
        )


class LossyBus(LocalBus):
    """A bus that loses the room messages whose content is in ``lose``."""

    def __init__(self) -> None:
        super().__init__()
        self.lose: set[str] = set()

    def publish(self, room: str, message: Any) -> None:
        if message.content not in self.lose:
            super().publish(room, message)


class FilledOwnMessageTests(AppSocketCase):
    """A message the bus lost comes from the store (a gap fill), without
    the connection that posted it: that connection, which had its ``ack``,
    still does not get it as an event."""

    def setUp(self) -> None:
        self.bus = LossyBus()
        super().setUp()

    def make_service(self, **options: Any) -> Any:
        return make_service(bus=self.bus, **options)

    def test_no_event_next_to_the_ack(self) -> None:
        alice = self.joined("alice")
        bob = self.joined("bob")
        alice.take()
        self.bus.lose.add("lost")
        lost = self.post(alice, "lost")
        self.post(alice, "found")
        self.advance(delivery.GAP_GRACE)
        self.assertEqual([(f["body"], f["seq"]) for f in bob.take()], [("lost", 1), ("found", 2)])
        self.assertEqual(alice.take(), [])
        self.assertEqual(lost["seq"], 1)


class StrictRateLimitTests(AppSocketCase):
    """``rate_strict``: GarinChat's disconnect-on-spam policy."""

    limits = Limits(rate_limit=1, rate_burst=1, rate_strict=True)

    def test_closes_1008(self) -> None:
        """Past the limit the client gets the error, then a 1008 close; the
        others see it leave."""
        alice = self.joined("alice")
        bob = self.joined("bob")
        alice.take()
        self.post(alice, "ok")
        bob.take()
        frames = self.send(alice, {"type": "message", "body": "spam"})
        self.assertError(frames, "rate_limited")
        self.assertEqual(alice.close_code, 1008)
        self.assertEqual([f["type"] for f in bob.take()], ["userleave"])

    def test_leave_after_the_accepted_message(self) -> None:
        """A burst: the first message is accepted, the second kicks; the
        others get the accepted message before the leave (issue 13)."""
        alice = self.joined("alice")
        bob = self.joined("bob")
        alice.take()
        alice.send_json({"type": "message", "body": "accepted"})
        alice.send_json({"type": "message", "body": "spam"})
        self.settle()
        self.assertEqual(alice.close_code, 1008)
        frames = bob.take()
        self.assertEqual([f["type"] for f in frames], ["message", "userleave"])
        self.assertEqual(frames[0]["body"], "accepted")


class FrameSizeTests(AppSocketCase):
    """The frame size limit."""

    max_message_size = 1024

    def test_oversize_closes_1009(self) -> None:
        """A frame over the limit closes that connection with 1009."""
        alice = self.joined("alice")
        bob = self.joined("bob")
        alice.take()
        alice.send_json({"type": "message", "body": "x" * 2000})
        self.settle()
        self.assertEqual(alice.close_code, 1009)
        self.assertEqual([f["type"] for f in bob.take()], ["userleave"])
        self.assertEqual(self.successResultOf(self.store.recent_messages("lobby", 5)), [])


class ModerationTests(AppSocketCase):
    """Kick, ban, single session, shutdown."""

    def test_kicked(self) -> None:
        """``service.kick`` sends ``kicked`` and takes the connection out of
        the room; it stays open and may rejoin."""
        alice = self.joined("alice")
        bob = self.joined("bob")
        alice.take()
        self.assertEqual(self.service.kick("bob", "lobby", "be nice"), 1)
        self.settle()
        self.assertEqual(bob.take(), [{"type": "kicked", "room": "lobby", "reason": "be nice"}])
        self.assertEqual([f["type"] for f in alice.take()], ["userleave"])
        self.assertIsNone(bob.closed)
        self.assertError(self.send(bob, {"type": "message", "body": "x"}), "not_in_room")

    def test_ban_closes_4003(self) -> None:
        """Banning an account closes its /ws connections with 4003."""
        alice = self.joined("alice")
        bob = self.joined("bob")
        self.successResultOf(Deferred.fromCoroutine(self.service.ban("bob", "spam")))
        self.settle()
        self.assertEqual(bob.close_code, 4003)
        self.assertIsNone(alice.closed)
        self.assertEqual(self.service.members("lobby"), ["alice"])

    def test_shutdown_closes_1001(self) -> None:
        """``stopService`` closes every /ws connection with 1001, without
        telling anyone about the leaves."""
        alice = self.joined("alice")
        bob = self.joined("bob")
        alice.take()
        d = self.service.stopService()
        self.settle()
        self.successResultOf(d)
        self.assertEqual((alice.close_code, bob.close_code), (1001, 1001))
        self.assertEqual(alice.take() + bob.take(), [])


class SingleSessionTests(AppSocketCase):
    """--single-session on /ws."""

    single_session = True

    def test_single_session_closes_4004(self) -> None:
        """With the single-session policy a new login closes the older
        connection with 4004."""
        old = self.joined("alice")
        new = self.login("alice")
        self.settle()
        self.assertEqual(old.close_code, 4004)
        self.assertIsNone(new.closed)
        self.assertEqual(self.service.connection_count, 1)


class ProtocolTests(TestCase):
    """The protocol class as a participant."""

    def test_provides_participant(self) -> None:
        """``AppSocketProtocol`` provides ``IParticipant`` fully."""
        service, _, clock = make_service()
        self.addCleanup(service.stopService)
        factory = AppSocketFactory(
            adapter_context(service, clock), TokenVerifier(TokenAuthority(b"k" * 32, clock))
        )
        protocol = factory.bound(None).buildProtocol(SERVER)
        self.assertIsInstance(protocol, AppSocketProtocol)
        self.assertTrue(verifyObject(IParticipant, protocol))


class ReferenceDocTests(TestCase):
    """docs/websocket.md keeps up with the code."""

    def setUp(self) -> None:
        path = Path(__file__).resolve().parent.parent / "docs" / "websocket.md"
        self.text = path.read_text(encoding="utf-8")

    def test_every_client_type(self) -> None:
        """Every ``handle_<type>`` of the protocol is documented."""
        kinds = [
            name[len("handle_") :] for name in dir(AppSocketProtocol) if name.startswith("handle_")
        ]
        self.assertIn("message", kinds)
        missing = [kind for kind in kinds if f"`{kind}`" not in self.text]
        self.assertEqual(missing, [], "client frame types missing from docs/websocket.md")

    def test_close_codes(self) -> None:
        """Every close code /ws uses is in the close-code table."""
        ours = [getattr(unified, name) for name in dir(unified) if name.startswith("CLOSE_")]
        codes = [1001, 1008, 1009, *ours]
        missing = [code for code in codes if f"| `{code}` |" not in self.text]
        self.assertEqual(missing, [])

    def test_error_codes(self) -> None:
        """The error codes a /ws client can get are in the error table."""
        codes = (
            "invalid_request unknown_type not_authenticated unauthorized banned "
            "too_many_connections not_in_room invalid_room invalid_content content_too_long "
            "rate_limited unknown_recipient busy storage_failed error"
        ).split()
        missing = [code for code in codes if f"| `{code}` |" not in self.text]
        self.assertEqual(missing, [])


class TokenRevocationTests(AppSocketCase):
    """A revoked token's live connections close (4005 on /ws), on every
    surface it was used on; the account's other sessions stay."""

    def test_revoked_token_closes_its_connections(self) -> None:
        stolen, kept = self.token("alice"), self.token("alice")
        app = self.open()
        app.send_json({"type": "auth", "body": stolen})
        self.settle()
        ready, _ = app.take()
        self.assertEqual(ready["type"], "ready")
        room = self.open("/ws/lobby", {"Authorization": f"Bearer {stolen}"})
        other = self.open()
        other.send_json({"type": "auth", "body": kept})
        basic_client = self.seed_client("alice", "garden")
        self.settle()
        for client in (room, other, basic_client):
            self.assertTrue(client.opened)
            client.take()
        claims = self.authority.verify(stolen)
        self.successResultOf(Deferred.fromCoroutine(self.service.logout(claims)))
        self.settle()
        self.assertEqual(app.close_code, 4005)
        self.assertEqual(room.close_code, 1008)  # the seed API has no such code
        self.assertIsNone(other.closed)
        self.assertIsNone(basic_client.closed)
        self.assertEqual(self.service.connection_count, 2)


class RoomDirectoryTests(AppSocketCase):
    """``list_rooms``: rooms with people in them, busiest first."""

    limits = Limits(rate_limit=1, rate_burst=1)

    def test_list_rooms(self) -> None:
        self.joined("alice", "lobby", "garden")
        self.joined("bob", "lobby")
        self.seed_client("carol", "attic")  # any surface counts
        self.register("dave")
        dave = self.login("dave")  # in no room: may still browse
        [reply] = self.send(dave, {"type": "list_rooms", "id": "r"})
        self.assertEqual(
            reply,
            {
                "type": "room_list",
                "rooms": [
                    {"room": "lobby", "totalUsers": 2},
                    {"room": "attic", "totalUsers": 1},
                    {"room": "garden", "totalUsers": 1},
                ],
                "id": "r",
            },
        )

    def test_rate_limited(self) -> None:
        """Each answer walks every room: it counts against the rate limit."""
        alice = self.login("alice")
        self.assertEqual(self.send(alice, {"type": "list_rooms"})[0]["type"], "room_list")
        self.assertError(self.send(alice, {"type": "list_rooms", "id": "x"}), "rate_limited", "x")
