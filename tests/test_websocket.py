"""The room WebSocket, ``GET /ws/{room}`` (MISSION section A), in memory.

Each test connects Autobahn's own client protocol to the real site from
``make_site`` over ``twisted.test.iosim`` fake transports: the request goes
through HTTP Basic authentication and the connection checks in
``RoomSocketResource``, is upgraded by ``WebSocketResource``, and every frame
is real RFC 6455 framing in both directions. Nothing touches a socket or the
global reactor: the chat service, the site and both Autobahn factories run on
one ``Clock`` that the tests advance (group commit needs ``advance(0)``).

``autobahn.twisted.testing.create_memory_agent`` was not used: it connects
the client straight to a protocol (skipping the HTTP resource where our
authentication lives) and pumps on the real reactor every 0.1 s.
"""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import quote

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.test import iosim
from twisted.trial.unittest import TestCase

from txaio._common import _BatchedTimer

from parkchat.limits import Limits
from parkchat.model import User
from parkchat.protocols.fastpath import FAST, PLAIN
from parkchat.protocols.participant import AdapterContext
from parkchat.protocols.websocket import RoomSocketFactory, RoomSocketProtocol
from tests.helpers import FakeParticipant, adapter_context, make_service, settle_pumps, site_for

START = 1_757_345_400.0
SERVER = IPv4Address("TCP", "127.0.0.1", 8080)


def basic(nickname: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{nickname}:{password}".encode()).decode("ascii")


def clock_timer(clock: Clock) -> _BatchedTimer:
    """An Autobahn batched timer on ``clock`` instead of the global reactor
    (Autobahn factories make theirs through txaio, which knows only the
    global reactor)."""
    return _BatchedTimer(
        200.0, 1000, seconds_provider=clock.seconds, delayed_call_creator=clock.callLater
    )


class RecordingClient(WebSocketClientProtocol):
    """An Autobahn client that keeps what it receives."""

    def __init__(self) -> None:
        super().__init__()
        self.opened = False
        self.frames: list[dict[str, Any]] = []
        self.closed: tuple[bool, int | None, str | None] | None = None

    def onOpen(self) -> None:
        self.opened = True

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        assert not isBinary, "the server sends text frames only"
        self.frames.append(json.loads(payload))

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.closed = (wasClean, code, reason)

    # -- what the tests look at -------------------------------------------

    def take(self) -> list[dict[str, Any]]:
        """The frames received since the last ``take``."""
        frames, self.frames = self.frames, []
        return frames

    def chats(self) -> list[dict[str, Any]]:
        return [f for f in self.take() if f.get("type") == "chat"]

    def send_json(self, value: Any) -> None:
        self.sendMessage(json.dumps(value).encode("utf-8"))

    @property
    def close_code(self) -> int | None:
        return self.closed[1] if self.closed is not None else None


#: Text messages that are not UTF-8 (RFC 3629), each inside a JSON string:
#: a stray continuation byte, an overlong "/", an encoded surrogate (which
#: ``json.loads`` on bytes would let through), a code point past U+10FFFF,
#: a sequence cut off at the end, and a byte that never occurs.
NOT_UTF8 = (b"\x80", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe2\x82", b"\xff")


class WebSocketCase(TestCase):
    """A started service, its site and the means to connect clients to it."""

    limits = Limits(rate_limit=0)
    max_message_size = 65536

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(START)
        self.service, self.store, _ = make_service(clock=self.clock, limits=self.limits)
        self.factory = RoomSocketFactory(
            self.context(),
            max_message_size=self.max_message_size,
            ping_interval=0,
            handshake_timeout=0,
        )
        self.factory._batched_timer = clock_timer(self.clock)
        self.site = site_for(self.service, self.factory, access_log=False)
        self.site._reactor = self.clock  # type: ignore[attr-defined]  # HTTP timeouts on the fake clock
        self.pumps: list[iosim.IOPump] = []
        self.clients: list[RecordingClient] = []
        self.next_port = 40000
        self.addCleanup(self.close_everything)
        self.passwords: dict[str, str] = {}
        for nickname in ("alice", "bob", "carol"):
            self.register(nickname)

    def context(self) -> AdapterContext:
        """What the factory is given (tap.makeService's wiring, on the clock)."""
        return adapter_context(self.service, self.clock)

    def register(self, nickname: str, password: str | None = None) -> User:
        password = password if password is not None else f"{nickname}-pw"
        self.passwords[nickname] = password
        return self.successResultOf(self.service.register(nickname, password))

    # -- connections ----------------------------------------------------------

    def client_factory(
        self, room: str, headers: dict[str, str], query: str = ""
    ) -> WebSocketClientFactory:
        factory = WebSocketClientFactory(
            f"ws://parkchat.test/ws/{quote(room, safe='')}{query}", headers=headers
        )
        factory.protocol = RecordingClient
        factory.setProtocolOptions(
            autoPingInterval=0, openHandshakeTimeout=0, serverConnectionDropTimeout=0
        )
        factory._batched_timer = clock_timer(self.clock)
        return factory

    def wire(
        self, server: Any, client_factory: WebSocketClientFactory, peer_host: str = "127.0.0.1"
    ) -> RecordingClient:
        self.next_port += 1
        peer = IPv4Address("TCP", peer_host, self.next_port)
        client = client_factory.buildProtocol(SERVER)
        assert isinstance(client, RecordingClient)
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

    def connect(
        self,
        nickname: str,
        room: str = "lobby",
        *,
        password: str | None = None,
        query: str = "",
    ) -> RecordingClient:
        """A client through the whole site: HTTP, Basic auth, upgrade."""
        password = password if password is not None else self.passwords.get(nickname, "")
        headers = {"Authorization": basic(nickname, password)}
        return self.wire(self.site.buildProtocol(SERVER), self.client_factory(room, headers, query))

    def connect_direct(self, user: User, room: str = "lobby") -> RecordingClient:
        """A client straight to a protocol from ``factory.bound`` (no HTTP
        resource in front: the checks it makes are skipped)."""
        server = self.factory.bound(user, room).buildProtocol(SERVER)
        return self.wire(server, self.client_factory(room, {}))

    def settle(self) -> None:
        """Run the clock's due calls and move bytes until nothing changes."""
        if not settle_pumps(self.clock, self.pumps, rounds=50):
            self.fail("the connections never settled")

    def close_everything(self) -> None:
        for client in self.clients:
            if client.transport is not None and client.closed is None:
                client.transport.loseConnection()
        self.settle()
        self.successResultOf(self.service.stopService())
        self.settle()

    def user(self, nickname: str) -> User:
        stored = self.successResultOf(self.store.get_user(nickname))
        assert stored is not None
        return User(stored.id, stored.nickname)


class JoinLeaveTests(WebSocketCase):
    """Join and leave notices."""

    def test_open(self) -> None:
        """Good Basic credentials upgrade the connection."""
        client = self.connect("alice")
        self.assertTrue(client.opened)
        self.assertIsNone(client.closed)
        self.assertEqual(self.service.members("lobby"), ["alice"])

    def test_join_notice_to_joiner(self) -> None:
        """The joiner gets its own join notice, in the seed's shape."""
        alice = self.connect("alice")
        [notice] = alice.take()
        self.assertEqual(notice["type"], "system")
        self.assertEqual(notice["content"], "alice has joined the room")
        self.assertEqual(notice["chat_room"], "lobby")
        self.assertEqual(notice["nickname"], "alice")
        self.assertEqual(notice["id"], 0)
        self.assertTrue(notice["timestamp"].endswith("Z"))

    def test_join_notice_to_all(self) -> None:
        """A second joiner's notice reaches both members."""
        alice = self.connect("alice")
        alice.take()
        bob = self.connect("bob")
        self.assertEqual([f["content"] for f in alice.take()], ["bob has joined the room"])
        self.assertEqual([f["content"] for f in bob.take()], ["bob has joined the room"])

    def test_leave_notice_to_rest(self) -> None:
        """When one member closes, the others get the leave notice."""
        alice = self.connect("alice")
        bob = self.connect("bob")
        alice.take()
        bob.sendClose(1000)
        self.settle()
        self.assertEqual(bob.close_code, 1000)
        [notice] = alice.take()
        self.assertEqual(notice["type"], "system")
        self.assertEqual(notice["content"], "bob has left the room")
        self.assertEqual(self.service.members("lobby"), ["alice"])

    def test_dropped_connection_leaves(self) -> None:
        """A connection lost without a close frame leaves the room too."""
        alice = self.connect("alice")
        bob = self.connect("bob")
        alice.take()
        assert isinstance(bob.transport, iosim.FakeTransport)
        bob.transport.abortConnection()
        self.settle()
        self.assertEqual([f["content"] for f in alice.take()], ["bob has left the room"])
        self.assertEqual(self.service.connection_count, 1)

    def test_rooms_are_separate(self) -> None:
        """Notices and messages stay in their room."""
        alice = self.connect("alice", "one")
        bob = self.connect("bob", "two")
        alice.take()
        bob.take()
        alice.send_json({"content": "only one"})
        self.settle()
        self.assertEqual([f["content"] for f in alice.take()], ["only one"])
        self.assertEqual(bob.take(), [])

    def test_encoded_room_name(self) -> None:
        """A percent-encoded room in the URL is the decoded room."""
        alice = self.connect("alice", "café au lait")
        self.assertTrue(alice.opened)
        self.assertEqual(self.service.members("café au lait"), ["alice"])
        self.assertEqual(alice.take()[0]["chat_room"], "café au lait")

    def test_outlives_http_idle_timeout(self) -> None:
        """An upgraded connection is not closed by the HTTP idle timeout."""
        alice = self.connect("alice")
        self.clock.advance(3600)
        self.settle()
        self.assertIsNone(alice.closed)


class RefusedHandshakeTests(WebSocketCase):
    """Refusals happen over HTTP, before the upgrade."""

    def assertRefused(self, client: RecordingClient, status: int) -> None:
        self.assertFalse(client.opened)
        self.assertIsNotNone(client.closed)
        self.assertEqual(int(client.http_status_line.split()[1]), status)

    def test_bad_password(self) -> None:
        """A wrong password is 401 with the Basic challenge, no upgrade."""
        client = self.connect("alice", password="wrong")
        self.assertRefused(client, 401)
        self.assertEqual(client.http_headers.get("www-authenticate"), 'Basic realm="parkchat"')
        self.assertEqual(self.service.connection_count, 0)

    def test_no_credentials(self) -> None:
        """No credentials at all is 401 too."""
        factory = self.client_factory("lobby", {})
        client = self.wire(self.site.buildProtocol(SERVER), factory)
        self.assertRefused(client, 401)

    def test_bad_room(self) -> None:
        """A room name breaking the rules is refused with 400."""
        client = self.connect("alice", " padded ")
        self.assertRefused(client, 400)


class ResumeTests(WebSocketCase):
    """``?since=SEQ``: what was missed first, then live; objects carry
    ``seq`` on such connections only."""

    def setUp(self) -> None:
        super().setUp()
        self.alice = self.connect("alice")
        for i in range(5):
            self.alice.send_json({"content": f"m{i}"})
        self.settle()
        self.alice.take()

    def test_since(self) -> None:
        bob = self.connect("bob", query="?since=2")
        frames = bob.take()
        self.assertEqual(
            [f["content"] for f in frames], ["m2", "m3", "m4", "bob has joined the room"]
        )
        [stored] = self.successResultOf(self.store.room_messages_after("lobby", 2, 1))
        self.assertEqual(
            frames[0],
            {
                "id": stored.id,
                "chat_room": "lobby",
                "nickname": "alice",
                "content": "m2",
                "timestamp": "2025-09-08T15:30:00.000Z",
                "type": "chat",
                "seq": 3,
            },
        )
        self.assertNotIn("seq", frames[-1])
        self.alice.take()
        self.alice.send_json({"content": "live"})
        self.settle()
        [live] = bob.take()
        self.assertEqual((live["content"], live["seq"]), ("live", 6))
        [seed] = self.alice.take()
        self.assertNotIn("seq", seed)  # a seed client sees the seed object

    def test_room_empty_when_joined(self) -> None:
        """A client that saw nothing of an empty room resumes from 0."""
        carol = self.connect("carol", "quiet", query="?since=0")
        self.assertEqual([f["content"] for f in carol.take()], ["carol has joined the room"])
        carol.sendClose(1000)
        self.settle()
        bob = self.connect("bob", "quiet")
        bob.send_json({"content": "while carol was away"})
        self.settle()
        carol = self.connect("carol", "quiet", query="?since=0")
        self.assertEqual([f["content"] for f in carol.take()][:1], ["while carol was away"])

    def test_frames_held_until_the_replay_is_sent(self) -> None:
        """What the client sends while its replay is read is posted after
        the replay went out (it is in the room only then)."""
        gate: Deferred[None] = Deferred()
        real = self.store.room_messages_after
        self.store.room_messages_after = lambda *a: gate.addCallback(  # type: ignore[method-assign]
            lambda _: self.successResultOf(real(*a))
        )
        bob = self.connect("bob", query="?since=3")
        bob.send_json({"content": "typed early"})
        self.settle()
        self.assertEqual(bob.take(), [])
        self.store.room_messages_after = real  # type: ignore[method-assign]
        gate.callback(None)
        self.settle()
        self.assertEqual(
            [f["content"] for f in bob.take()],
            ["m3", "m4", "bob has joined the room", "typed early"],
        )

    def test_bad_since(self) -> None:
        for query in ("?since=-1", "?since=x", "?since=1.5"):
            client = self.connect("bob", query=query)
            self.assertFalse(client.opened)
            self.assertEqual(int(client.http_status_line.split()[1]), 400)


class ConnectionLimitTests(WebSocketCase):
    """The per-user connection limit."""

    limits = Limits(rate_limit=0, max_connections_per_user=2)

    def test_over_http(self) -> None:
        """With the account's limit reached, its next upgrade is refused with
        429 before upgrading; open connections and other accounts carry on."""
        first = self.connect("alice")
        second = self.connect("ALICE", password="alice-pw")
        third = self.connect("alice")
        self.assertFalse(third.opened)
        self.assertEqual(int(third.http_status_line.split()[1]), 429)
        self.assertTrue(self.connect("bob").opened)
        first.take()
        second.take()
        first.send_json({"content": "still here"})
        self.settle()
        self.assertEqual([f["content"] for f in second.chats()], ["still here"])

    def test_slot_freed_on_close(self) -> None:
        """Closing a connection frees its slot for a new one."""
        first = self.connect("alice")
        self.connect("alice")
        first.sendClose(1000)
        self.settle()
        self.assertTrue(self.connect("alice").opened)

    def test_limit_reached_after_http_check(self) -> None:
        """A connection that gets past HTTP while the account's last slot is
        taken elsewhere (here: other surfaces' connections) is opened, told
        why in an error frame and closed with 1008."""
        alice = self.user("alice")
        elsewhere = [FakeParticipant("alice", user_id=alice.id) for _ in range(2)]
        for participant in elsewhere:
            self.service.connect(participant)
        client = self.connect_direct(alice)
        self.assertTrue(client.opened)
        [error] = client.take()
        self.assertEqual(error["type"], "error")
        self.assertEqual(error["code"], "too_many_connections")
        self.assertEqual(client.close_code, 1008)
        self.assertEqual(self.service.members("lobby"), [])
        # The refused connection released no slot it did not hold.
        self.service.disconnect(elsewhere[0])
        self.assertTrue(self.connect("alice").opened)
        self.assertFalse(self.connect("alice").opened)


class ChatTests(WebSocketCase):
    """Posting and delivery."""

    def test_echo_after_commit(self) -> None:
        """Nobody, the sender included, sees a message before it is stored;
        after the commit everyone gets it with its real id."""
        alice = self.connect("alice")
        bob = self.connect("bob")
        alice.take()
        bob.take()
        alice.send_json({"content": "hello", "nickname": "mallory", "id": 99})
        for pump in self.pumps:
            pump.pump()
        self.assertEqual(alice.frames, [])
        self.assertEqual(bob.frames, [])
        self.assertEqual(self.successResultOf(self.store.recent_messages("lobby", 10)), [])
        self.settle()
        [echo] = alice.take()
        [delivered] = bob.take()
        self.assertEqual(echo, delivered)
        [stored] = self.successResultOf(self.store.recent_messages("lobby", 10))
        self.assertEqual(
            echo,
            {
                "id": stored.id,
                "chat_room": "lobby",
                "nickname": "alice",
                "content": "hello",
                "timestamp": "2025-09-08T15:30:00.000Z",
                "type": "chat",
            },
        )
        self.assertGreater(echo["id"], 0)

    def test_order_kept(self) -> None:
        """Messages sent in a burst arrive in order with increasing ids."""
        alice = self.connect("alice")
        bob = self.connect("bob")
        alice.take()
        bob.take()
        for i in range(20):
            alice.send_json({"content": f"m{i}"})
        self.settle()
        received = bob.chats()
        self.assertEqual([f["content"] for f in received], [f"m{i}" for i in range(20)])
        ids = [f["id"] for f in received]
        self.assertEqual(ids, sorted(set(ids)))
        self.assertEqual(alice.chats(), received)

    def test_one_prepared_frame_per_broadcast(self) -> None:
        """A message to a room of N members is framed once, not N times."""
        clients = [self.connect(n) for n in ("alice", "bob", "carol")]
        clients.append(self.connect("alice"))
        for c in clients:
            c.take()
        prepared: list[bytes] = []
        original = self.factory.prepareMessage

        def counting(payload: bytes, *args: Any, **kwargs: Any) -> Any:
            prepared.append(payload)
            return original(payload, *args, **kwargs)

        self.patch(self.factory, "prepareMessage", counting)
        clients[0].send_json({"content": "to all"})
        self.settle()
        self.assertEqual(len(prepared), 1)
        for c in clients:
            self.assertEqual([f["content"] for f in c.take()], ["to all"])

    def test_unicode(self) -> None:
        """Non-ASCII content goes through unchanged."""
        alice = self.connect("alice")
        alice.take()
        alice.send_json({"content": "crème brûlée 🍮\nline two"})
        self.settle()
        self.assertEqual(alice.chats()[0]["content"], "crème brûlée 🍮\nline two")


class BadFrameTests(WebSocketCase):
    """Bad input gets an error frame; the connection stays usable."""

    limits = Limits(rate_limit=0, max_content_length=20)

    def assertErrorThenUsable(self, client: RecordingClient, code: str) -> None:
        self.settle()
        frames = client.take()
        self.assertEqual(len(frames), 1, frames)
        [error] = frames
        self.assertEqual(set(error), {"type", "code", "content"})
        self.assertEqual(error["type"], "error")
        self.assertEqual(error["code"], code)
        self.assertTrue(error["content"])
        self.assertIsNone(client.closed)
        client.send_json({"content": "still works"})
        self.settle()
        self.assertEqual([f["content"] for f in client.chats()], ["still works"])
        # The other member saw only the good message, and only it was stored.
        self.assertEqual([f["content"] for f in self.bob.take()], ["still works"])
        stored = self.successResultOf(self.store.recent_messages("lobby", 50))
        self.assertEqual({m.content for m in stored}, {"still works"})

    def setUp(self) -> None:
        super().setUp()
        self.alice = self.connect("alice")
        self.bob = self.connect("bob")
        self.alice.take()
        self.bob.take()

    def test_invalid_json(self) -> None:
        """A frame that is not JSON is an ``invalid_request`` error."""
        self.alice.sendMessage(b"{content: hi")
        self.assertErrorThenUsable(self.alice, "invalid_request")

    def test_not_an_object(self) -> None:
        """JSON that is not an object is an ``invalid_request`` error."""
        for value in (["content", "x"], "hi", 42, None):
            self.alice.send_json(value)
            self.assertErrorThenUsable(self.alice, "invalid_request")

    def test_missing_content(self) -> None:
        """An object without ``content`` is an ``invalid_request`` error."""
        self.alice.send_json({"message": "hi"})
        self.assertErrorThenUsable(self.alice, "invalid_request")

    def test_content_not_a_string(self) -> None:
        """Non-string content is an ``invalid_content`` error."""
        for value in (5, None, ["hi"], {"text": "hi"}, True):
            self.alice.send_json({"content": value})
            self.assertErrorThenUsable(self.alice, "invalid_content")

    def test_empty_content(self) -> None:
        """Empty or blank content is an ``invalid_content`` error."""
        for value in ("", "   ", "\n\t"):
            self.alice.send_json({"content": value})
            self.assertErrorThenUsable(self.alice, "invalid_content")

    def test_control_characters(self) -> None:
        """Terminal control characters are refused."""
        self.alice.send_json({"content": "\x1b[2Jgotcha"})
        self.assertErrorThenUsable(self.alice, "invalid_content")

    def test_storage_failure(self) -> None:
        """A message the store refuses comes back to its sender only, as a
        ``storage_failed`` error, after the commit failed; nobody sees it."""
        self.store.fail_writes = RuntimeError("disk full")
        self.alice.send_json({"content": "lost"})
        self.settle()
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.store.fail_writes = None
        self.assertEqual(self.bob.take(), [])
        self.assertErrorThenUsable(self.alice, "storage_failed")

    def test_binary_frame(self) -> None:
        """A binary frame is an ``invalid_request`` error, not a close."""
        self.alice.sendMessage(b'{"content": "hi"}', isBinary=True)
        self.assertErrorThenUsable(self.alice, "invalid_request")

    def test_invalid_utf8(self) -> None:
        """A text frame with invalid UTF-8 closes the connection (RFC 6455
        requires it; Autobahn answers 1007) and the others carry on."""
        self.alice.sendMessage(b'{"content": "\xff"}')
        self.settle()
        self.assertEqual(self.alice.close_code, 1007)
        self.assertEqual([f["content"] for f in self.bob.take()], ["alice has left the room"])

    def test_not_utf8(self) -> None:
        """Whatever makes a text message not UTF-8 (our own strict decode
        checks it, Autobahn's validator being off) closes with 1007, and a
        message sent right behind it on the same connection is not posted."""
        self.assertFalse(self.factory.protocol.utf8validateIncoming)
        for n, bad in enumerate(NOT_UTF8):
            client = self.connect("carol")
            self.bob.take()
            client.sendMessage(b'{"content": "a' + bad + b'"}')
            client.send_json({"content": f"after {n}"})
            self.settle()
            self.assertEqual(client.close_code, 1007, bad)
            self.assertEqual(
                [f["content"] for f in self.bob.take()], ["carol has left the room"], bad
            )
        self.assertEqual(self.successResultOf(self.store.recent_messages("lobby", 50)), [])

    def test_utf8_validation_only_where_decoded(self) -> None:
        """Autobahn's validator is off only on the fast paths, where the
        failure goes through Autobahn's own method; the plain path keeps it."""
        for paths, validates in ((FAST, False), (PLAIN, True)):
            factory = RoomSocketFactory(adapter_context(self.service, self.clock, paths=paths))
            self.assertIs(factory.utf8validateIncoming, validates)

    def test_content_too_long(self) -> None:
        """Content over the length limit is a ``content_too_long`` error."""
        self.alice.send_json({"content": "x" * 21})
        self.assertErrorThenUsable(self.alice, "content_too_long")

    def test_content_at_limit(self) -> None:
        """Content of exactly the limit is accepted."""
        self.alice.send_json({"content": "x" * 20})
        self.settle()
        self.assertEqual([f["content"] for f in self.alice.chats()], ["x" * 20])
        self.bob.take()


class RateLimitTests(WebSocketCase):
    """The per-user token bucket."""

    limits = Limits(rate_limit=1, rate_burst=3)

    def test_rate_limited(self) -> None:
        """Past the burst a message is refused with ``rate_limited``; the
        connection stays open and may post again once tokens refill."""
        alice = self.connect("alice")
        alice.take()
        for i in range(4):
            alice.send_json({"content": f"m{i}"})
        self.settle()
        frames = alice.take()
        self.assertEqual(
            [f.get("content") for f in frames if f["type"] == "chat"], ["m0", "m1", "m2"]
        )
        errors = [f for f in frames if f["type"] == "error"]
        self.assertEqual([e["code"] for e in errors], ["rate_limited"])
        self.assertIsNone(alice.closed)
        self.clock.advance(1)
        alice.send_json({"content": "later"})
        self.settle()
        self.assertEqual([f["content"] for f in alice.chats()], ["later"])

    def test_shared_by_connections(self) -> None:
        """An account's connections share one bucket."""
        first = self.connect("alice")
        second = self.connect("alice")
        for i in range(3):
            first.send_json({"content": f"m{i}"})
        self.settle()
        first.take()
        second.take()
        second.send_json({"content": "one more"})
        self.settle()
        self.assertEqual([f["code"] for f in second.take()], ["rate_limited"])


class OversizeFrameTests(WebSocketCase):
    """Frames over the size limit."""

    max_message_size = 1024

    def test_close_1009(self) -> None:
        """A message over ``max_message_size`` closes that connection with
        1009; other members carry on and see it leave."""
        alice = self.connect("alice")
        bob = self.connect("bob")
        alice.take()
        bob.take()
        alice.send_json({"content": "x" * 2000})
        self.settle()
        self.assertEqual(alice.close_code, 1009)
        self.assertEqual([f["content"] for f in bob.take()], ["alice has left the room"])
        self.assertEqual(self.successResultOf(self.store.recent_messages("lobby", 10)), [])
        bob.send_json({"content": "carry on"})
        self.settle()
        self.assertEqual([f["content"] for f in bob.chats()], ["carry on"])

    def test_fragmented_message(self) -> None:
        """The limit applies to the whole message, not just to one frame."""
        alice = self.connect("alice")
        alice.take()
        alice.beginMessage()
        for _ in range(4):
            alice.sendMessageFrame(b"x" * 400)
        alice.endMessage()
        self.settle()
        self.assertEqual(alice.close_code, 1009)

    def test_just_under_limit(self) -> None:
        """A message just under the limit is delivered."""
        alice = self.connect("alice")
        alice.take()
        content = "y" * (1024 - len('{"content": ""}'))
        alice.send_json({"content": content})
        self.settle()
        self.assertIsNone(alice.closed)


class ShutdownTests(WebSocketCase):
    """Server shutdown."""

    def test_stop_service_closes_1001(self) -> None:
        """``stopService`` closes every socket with 1001 (going away), and
        nobody is told about leaves during shutdown."""
        alice = self.connect("alice")
        bob = self.connect("bob")
        alice.take()
        bob.take()
        d = self.service.stopService()
        self.settle()
        self.successResultOf(d)
        self.assertEqual(alice.close_code, 1001)
        self.assertEqual(bob.close_code, 1001)
        self.assertEqual(alice.take(), [])
        self.assertEqual(bob.take(), [])

    def test_stop_service_stores_pending(self) -> None:
        """A message accepted just before shutdown is stored before the store
        closes."""
        alice = self.connect("alice")
        alice.take()
        alice.send_json({"content": "last words"})
        for pump in self.pumps:
            pump.pump()
        d = self.service.stopService()
        self.settle()
        self.successResultOf(d)
        [stored] = self.successResultOf(self.store.recent_messages("lobby", 10))
        self.assertEqual(stored.content, "last words")


class ProtocolTests(TestCase):
    """The protocol class as a participant."""

    def test_provides_participant(self) -> None:
        """``RoomSocketProtocol`` provides ``IParticipant`` fully."""
        from zope.interface.verify import verifyObject

        from parkchat.interfaces import IParticipant

        service, _, _ = make_service()
        self.addCleanup(service.stopService)
        factory = RoomSocketFactory(adapter_context(service))
        protocol = factory.bound(User(1, "alice"), "lobby").buildProtocol(SERVER)
        self.assertIsInstance(protocol, RoomSocketProtocol)
        self.assertTrue(verifyObject(IParticipant, protocol))
