"""The MaChat stream protocol (MISSION section B), in memory.

The room behaviour every surface shares (members receive, order, storage,
content errors, rate limit) is in tests/test_surfaces.py, run over TCP and
/mychat with the WebSocket surfaces. What every MaChat client relies on
beyond that is written once, in ``StreamBehaviour`` and ``LimitBehaviour``,
and run for both carriers of ``StreamSession``:

* ``LineCarrier``: a raw byte client (what ``nc`` is) connected to a
  ``LineChatProtocol`` from ``LineChatFactory`` over ``twisted.test.iosim``;
* ``MyChatCarrier``: Autobahn's own client protocol connected to the real site
  from ``make_site`` on ``/mychat`` over ``iosim``, so the HTTP upgrade and
  every frame are real RFC 6455 in both directions.

Both see the server as lines of text (``take()``); the carrier-specific
framing (partial packets, ``\\r\\n``, line length, bytes that are not UTF-8,
one WebSocket message per server line) has its own test classes. WebSocket
members of ``/ws/{room}`` are connected through the same site with HTTP Basic
auth, so shared rooms are tested with the real thing. Nothing touches a
socket or the global reactor: every component runs on one ``Clock`` that the
tests advance (group commit needs ``advance(0)``).
"""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from typing import Any
from urllib.parse import quote

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.test import iosim
from twisted.trial.unittest import SynchronousTestCase, TestCase

from txaio._common import _BatchedTimer

from parkchat.auth import PasswordHasher, VerifiedCredentials
from parkchat.limits import Limits
from parkchat.model import CHAT, JOINED, LEFT, SYSTEM, Message, system_message
from parkchat.protocols.line import LineChatFactory, LineChatProtocol
from parkchat.protocols.mychat import MyChatFactory
from parkchat.protocols.stream import HELP, LineEncoder, StreamOptions, render_lines
from parkchat.protocols.websocket import RoomSocketFactory
from parkchat.service import ChatService
from parkchat.store.memory import MemoryStore
from tests.helpers import (
    TEST_ROUNDS,
    FakeParticipant,
    adapter_context,
    make_service,
    settle_pumps,
    site_for,
)

START = 1_757_345_400.0
HTTP_SERVER = IPv4Address("TCP", "127.0.0.1", 8080)
LINE_SERVER = IPv4Address("TCP", "127.0.0.1", 8989)
HANDSHAKE_TIMEOUT = 10.0
IDLE_TIMEOUT = 300.0
MAX_LINE = 256
MAX_CONTENT = 100


def handshake(name: str, room: str = "dev", **extra: Any) -> str:
    return json.dumps({"name": name, "room": room, **extra})


def basic(nickname: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{nickname}:{password}".encode()).decode("ascii")


def clock_timer(clock: Clock) -> _BatchedTimer:
    """An Autobahn batched timer on ``clock`` instead of the global reactor."""
    return _BatchedTimer(
        200.0, 1000, seconds_provider=clock.seconds, delayed_call_creator=clock.callLater
    )


# -- clients -----------------------------------------------------------------


class StreamClient:
    """What a behaviour test does with a MaChat client, whatever carries it."""

    def send_line(self, text: str) -> None:
        """Send one line (a TCP line, or one /mychat message)."""
        raise NotImplementedError

    def send_raw(self, text: str) -> None:
        """Send ``text`` as it is, in one TCP packet or one /mychat message."""
        raise NotImplementedError

    def take(self) -> list[str]:
        """The complete lines received since the last ``take``."""
        raise NotImplementedError

    @property
    def closed(self) -> bool:
        raise NotImplementedError


class RawLineClient(Protocol, StreamClient):
    """A TCP client that keeps every byte it receives, like ``nc``."""

    def __init__(self) -> None:
        self.received = b""
        self._taken = 0
        self.lost = False

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Failure = ConnectionDone) -> None:  # type: ignore[assignment]
        self.lost = True

    def send_bytes(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def send_line(self, text: str) -> None:
        self.send_bytes(text.encode("utf-8") + b"\n")

    def send_raw(self, text: str) -> None:
        self.send_bytes(text.encode("utf-8"))

    def take(self) -> list[str]:
        end = self.received.rfind(b"\n") + 1
        chunk = self.received[self._taken : end] if end > self._taken else b""
        self._taken = max(self._taken, end)
        return chunk.decode("utf-8").splitlines() if chunk else []

    @property
    def closed(self) -> bool:
        return self.lost


class MyChatClient(WebSocketClientProtocol, StreamClient):
    """An Autobahn client of /mychat that keeps every message it receives."""

    def __init__(self) -> None:
        super().__init__()
        self.opened = False
        self.messages: list[bytes] = []
        self._taken = 0
        self.close_info: tuple[bool, int | None, str | None] | None = None

    def onOpen(self) -> None:
        self.opened = True

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        assert not isBinary, "/mychat sends text messages only"
        self.messages.append(payload)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.close_info = (wasClean, code, reason)

    def send_line(self, text: str) -> None:
        self.sendMessage(text.encode("utf-8"))

    def send_raw(self, text: str) -> None:
        self.sendMessage(text.encode("utf-8"))

    def take(self) -> list[str]:
        new = self.messages[self._taken :]
        self._taken = len(self.messages)
        return [line for m in new for line in m.decode("utf-8").splitlines()]

    def take_messages(self) -> list[bytes]:
        new = self.messages[self._taken :]
        self._taken = len(self.messages)
        return new

    @property
    def closed(self) -> bool:
        return self.close_info is not None


class RoomClient(WebSocketClientProtocol):
    """An Autobahn client of /ws/{room}: the parkchat JSON message objects."""

    def __init__(self) -> None:
        super().__init__()
        self.frames: list[dict[str, Any]] = []
        self.close_info: tuple[bool, int | None, str | None] | None = None

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.frames.append(json.loads(payload))

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.close_info = (wasClean, code, reason)

    def take(self) -> list[dict[str, Any]]:
        frames, self.frames = self.frames, []
        return frames

    def post(self, content: str) -> None:
        self.sendMessage(json.dumps({"content": content}).encode("utf-8"))


# -- the common fixture --------------------------------------------------------


class StreamCase(TestCase):
    """A started service, the TCP factory and the site with /ws and /mychat,
    all on one Clock, and the means to connect clients to them."""

    limits = Limits(rate_limit=0, max_content_length=MAX_CONTENT)
    options = StreamOptions(
        max_line_length=MAX_LINE,
        handshake_timeout=HANDSHAKE_TIMEOUT,
        idle_timeout=IDLE_TIMEOUT,
    )

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(START)
        self.service, self.store = self.make_chat_service()
        context = adapter_context(self.service, self.clock)
        self.line_factory = LineChatFactory(
            context, self.options, max_connections_per_ip=self.limits.max_connections_per_ip
        )
        self.ws_factory = RoomSocketFactory(context, ping_interval=0, handshake_timeout=0)
        self.ws_factory._batched_timer = clock_timer(self.clock)
        self.mychat_factory = MyChatFactory(context, self.options, ping_interval=0)
        self.mychat_factory._batched_timer = clock_timer(self.clock)
        self.site = site_for(self.service, self.ws_factory, self.mychat_factory, access_log=False)
        self.site._reactor = self.clock
        self.pumps: list[iosim.IOPump] = []
        self.endings: list[Any] = []
        self.next_port = 40000
        self.passwords: dict[str, str] = {}
        self.addCleanup(self.close_everything)

    def make_chat_service(self) -> tuple[ChatService, Any]:
        service, store, _ = make_service(clock=self.clock, limits=self.limits)
        return service, store

    # -- connections ---------------------------------------------------------

    def peer(self, host: str = "127.0.0.1") -> IPv4Address:
        self.next_port += 1
        return IPv4Address("TCP", host, self.next_port)

    def wire(self, server: Any, client: Any, server_address: IPv4Address, peer: Any) -> None:
        server_transport = iosim.FakeTransport(
            server, isServer=True, hostAddress=server_address, peerAddress=peer
        )
        client_transport = iosim.FakeTransport(
            client, isServer=False, hostAddress=peer, peerAddress=server_address
        )
        self.pumps.append(iosim.connect(server, server_transport, client, client_transport))
        self.endings.append(client_transport)
        self.settle()

    def connect_tcp(self, host: str = "127.0.0.1") -> RawLineClient:
        peer = self.peer(host)
        server = self.line_factory.buildProtocol(peer)
        assert server is not None, "the factory refused the connection"
        client = RawLineClient()
        self.wire(server, client, LINE_SERVER, peer)
        return client

    def ws_client_factory(self, path: str, headers: dict[str, str]) -> WebSocketClientFactory:
        factory = WebSocketClientFactory(f"ws://parkchat.test{path}", headers=headers)
        factory.setProtocolOptions(
            autoPingInterval=0, openHandshakeTimeout=0, serverConnectionDropTimeout=0
        )
        factory._batched_timer = clock_timer(self.clock)
        return factory

    def connect_mychat(self, host: str = "127.0.0.1") -> MyChatClient:
        factory = self.ws_client_factory("/mychat", {})
        factory.protocol = MyChatClient
        client = factory.buildProtocol(HTTP_SERVER)
        self.wire(self.site.buildProtocol(HTTP_SERVER), client, HTTP_SERVER, self.peer(host))
        assert client.opened, "the /mychat upgrade failed"
        return client

    def connect_room(self, nickname: str, room: str = "dev") -> RoomClient:
        """A registered user on /ws/{room} (registered on first use)."""
        if nickname not in self.passwords:
            self.register(nickname)
        factory = self.ws_client_factory(
            f"/ws/{quote(room, safe='')}",
            {"Authorization": basic(nickname, self.passwords[nickname])},
        )
        factory.protocol = RoomClient
        client = factory.buildProtocol(HTTP_SERVER)
        self.wire(self.site.buildProtocol(HTTP_SERVER), client, HTTP_SERVER, self.peer())
        assert client.close_info is None, "the /ws upgrade failed"
        return client

    def register(self, nickname: str, password: str | None = None) -> int:
        password = password if password is not None else f"{nickname}-pw"
        self.passwords[nickname] = password
        return self.successResultOf(self.service.register(nickname, password)).id

    def settle(self) -> None:
        """Run the clock's due calls and move bytes until nothing changes."""
        if not settle_pumps(self.clock, self.pumps):
            self.fail("the connections never settled")

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.settle()

    def close_everything(self) -> None:
        for transport in self.endings:
            if not transport.disconnecting:
                transport.loseConnection()
        self.settle()
        if self.service.running:
            self.successResultOf(self.service.stopService())
        self.settle()

    def use_options(self, **changes: Any) -> None:
        """New stream options for the connections made from now on."""
        options = replace(self.options, **changes)
        self.line_factory.options = options
        self.mychat_factory.options = options

    def history(self, room: str = "dev") -> list[Message]:
        return self.successResultOf(self.service.history(room))


class Carrier:
    """What a behaviour mixin needs of the carrier under test."""

    def connect_client(self, host: str = "127.0.0.1") -> StreamClient:
        raise NotImplementedError


class LineCarrier(Carrier):
    """MaChat over plain TCP (``--tcp``)."""

    def connect_client(self, host: str = "127.0.0.1") -> StreamClient:
        return self.connect_tcp(host)  # type: ignore[attr-defined,no-any-return]


class MyChatCarrier(Carrier):
    """MaChat inside WebSocket messages (``/mychat``)."""

    def connect_client(self, host: str = "127.0.0.1") -> StreamClient:
        return self.connect_mychat(host)  # type: ignore[attr-defined,no-any-return]


# -- behaviour shared by every carrier -------------------------------------------


class StreamHelpers:
    """Helpers of the behaviour mixins. Mixed into ``StreamCase`` with a
    ``Carrier``; ``self`` is then a ``TestCase`` with the ``StreamCase``
    helpers."""

    connect_client: Any
    settle: Any
    advance: Any
    assertEqual: Any
    assertTrue: Any
    assertFalse: Any
    assertIn: Any

    def join(self, name: str, room: str = "dev", **extra: Any) -> StreamClient:
        """A client that has sent its handshake and is in ``room``."""
        client: StreamClient = self.connect_client()
        client.send_line(handshake(name, room, **extra))
        self.settle()
        if client.closed:
            raise AssertionError(f"{name} was refused: {client.take()}")
        return client

    def assertRefused(self, client: StreamClient, code: str) -> str:
        """Exactly one error line with ``code``, then the server closed."""
        self.settle()
        lines = client.take()
        self.assertEqual(len(lines), 1, lines)
        self.assertTrue(lines[0].startswith(f"*** error ({code}): "), lines)
        self.assertTrue(client.closed, "the connection is still open")
        return lines[0]


class StreamBehaviour(StreamHelpers):
    """The stream protocol as a MaChat client sees it, carrier left abstract."""

    # -- handshake and messages -------------------------------------------------

    def test_handshake_then_lines(self) -> None:
        """After the JSON handshake every line is a message, echoed to the
        sender as ``name:text``; the handshake itself gets no answer."""
        mina = self.connect_client()
        mina.send_line('{"name": "Mina", "room": "devroom"}')
        self.settle()
        self.assertEqual(mina.take(), [])
        self.assertEqual(self.service.members("devroom"), ["Mina"])
        mina.send_line("hello there")
        self.settle()
        self.assertEqual(mina.take(), ["~Mina:hello there"])

    def test_lines_with_handshake_not_lost(self) -> None:
        """Lines that arrive together with the handshake are posted (the Go
        seed loses them)."""
        mina = self.connect_client()
        mina.send_raw(handshake("mina") + "\nfirst\nsecond\n")
        self.settle()
        self.assertEqual(mina.take(), ["~mina:first", "~mina:second"])

    def test_text_after_handshake_on_same_line(self) -> None:
        """Text after the handshake object on the same line is a message."""
        mina = self.connect_client()
        mina.send_line(handshake("mina") + " straight away")
        self.settle()
        self.assertEqual(mina.take(), ["~mina:straight away"])

    def test_handshake_without_newline(self) -> None:
        """MaChat's own clients (``chattcpclient``, ``chatwebsocketclient``)
        send the handshake without a newline and then wait for their user
        to type: such a client is in the room at once, receives the room's
        messages and is not closed for want of a handshake."""
        mina = self.connect_client()
        mina.send_raw(handshake("mina"))
        self.settle()
        self.assertEqual(self.service.members("dev"), ["mina"])
        ann = self.join("ann")
        ann.send_line("hi mina")
        self.settle()
        self.assertEqual(mina.take(), ["~ann:hi mina"])
        self.advance(HANDSHAKE_TIMEOUT + 1)
        self.assertFalse(mina.closed)
        mina.send_line("hello ann")
        self.settle()
        self.assertEqual(ann.take(), ["~ann:hi mina", "~mina:hello ann"])

    def test_handshake_spread_over_lines(self) -> None:
        """A pretty-printed handshake over several lines is accepted."""
        mina = self.connect_client()
        for line in json.dumps({"name": "mina", "room": "dev"}, indent=2).split("\n"):
            mina.send_line(line)
            self.settle()
        self.assertFalse(mina.closed)
        mina.send_line("made it")
        self.settle()
        self.assertEqual(mina.take(), ["~mina:made it"])

    def test_blank_lines_ignored(self) -> None:
        """Blank lines before the handshake and after it are not messages."""
        mina = self.connect_client()
        mina.send_line("")
        mina.send_line("   ")
        mina.send_line(handshake("mina"))
        mina.send_line("")
        mina.send_line(" ")
        self.settle()
        self.assertEqual(mina.take(), [])
        self.assertEqual(self.history(), [])

    def test_unicode(self) -> None:
        """Non-ASCII names and text go through as UTF-8."""
        zoe = self.join("Zoë", "café")
        zoe.send_line("naïve ☕ 🎉")
        self.settle()
        self.assertEqual(zoe.take(), ["~Zoë:naïve ☕ 🎉"])

    # -- shared rooms ----------------------------------------------------------

    def test_websocket_member_sees_stream_messages(self) -> None:
        """A /ws/{room} member gets a stream client's lines as normal message
        objects, nickname = the handshake name."""
        dora = self.connect_room("dora")
        dora.take()
        mina = self.join("mina")
        self.assertEqual(
            [(f["type"], f["content"]) for f in dora.take()],
            [(SYSTEM, "mina has joined the room")],
        )
        mina.send_line("hello dora")
        self.settle()
        [frame] = dora.take()
        self.assertEqual(
            {k: frame[k] for k in ("chat_room", "nickname", "content", "type")},
            {"chat_room": "dev", "nickname": "mina", "content": "hello dora", "type": CHAT},
        )
        self.assertTrue(frame["id"] > 0)

    def test_stream_member_sees_websocket_messages(self) -> None:
        """A stream member gets a /ws member's message as ``nick:content``."""
        mina = self.join("mina")
        dora = self.connect_room("dora")
        dora.post("hi mina")
        self.settle()
        self.assertEqual(mina.take(), ["dora:hi mina"])

    def test_multiline_content_from_websocket(self) -> None:
        """A multi-line message from a /ws member arrives as several
        ``nick:line`` lines, so it cannot forge a line from someone else."""
        mina = self.join("mina")
        dora = self.connect_room("dora")
        dora.post("one\nmina:forged\n\nthree")
        self.settle()
        self.assertEqual(mina.take(), ["dora:one", "dora:mina:forged", "dora:", "dora:three"])

    def test_fake_participant_shares_room(self) -> None:
        """Any IParticipant in the room gets stream messages as Message
        objects, and stream members get its messages."""
        fake = FakeParticipant("fake")
        self.service.connect(fake)
        self.service.join(fake, "dev")
        mina = self.join("mina")
        mina.send_line("to the fake")
        self.settle()
        self.assertEqual(fake.received[-1].content, "to the fake")
        self.assertEqual(fake.received[-1].nickname, "mina")
        self.service.post(fake, "dev", "from the fake")
        self.settle()
        self.assertEqual(mina.take(), ["~mina:to the fake", "~fake:from the fake"])

    def test_disconnect_leaves_room(self) -> None:
        """When a stream client goes away the others are told it left."""
        fake = FakeParticipant("fake")
        self.service.connect(fake)
        self.service.join(fake, "dev")
        mina = self.join("mina")
        mina.send_line("/quit")
        self.settle()
        self.assertEqual(self.service.members("dev"), ["fake"])
        last = fake.received[-1]
        self.assertEqual((last.type, last.event, last.nickname), (SYSTEM, LEFT, "mina"))

    # -- notices ----------------------------------------------------------------

    def test_notices_off_by_default(self) -> None:
        """A MaChat client sees no join/leave notices unless it asks."""
        mina = self.join("mina")
        bob = self.join("bob")
        self.connect_room("dora")
        bob.send_line("/quit")
        self.settle()
        self.assertEqual(mina.take(), [])

    def test_notices_on_in_handshake(self) -> None:
        """``"notices": true`` shows joins and leaves as ``*** `` lines, its
        own join included."""
        mina = self.join("mina", notices=True)
        bob = self.join("bob")
        bob.send_line("/quit")
        self.settle()
        self.assertEqual(
            mina.take(),
            [
                "*** ~mina has joined the room",
                "*** ~bob has joined the room",
                "*** ~bob has left the room",
            ],
        )

    def test_notices_command(self) -> None:
        """``/notices on`` and ``/notices off`` switch the notices."""
        mina = self.join("mina")
        mina.send_line("/notices on")
        self.settle()
        self.assertEqual(mina.take(), ["*** join/leave notices on"])
        self.join("bob")
        self.assertEqual(mina.take(), ["*** ~bob has joined the room"])
        mina.send_line("/NOTICES off")
        self.join("carol")
        self.assertEqual(mina.take(), ["*** join/leave notices off"])
        mina.send_line("/notices maybe")
        self.settle()
        [line] = mina.take()
        self.assertTrue(line.startswith("*** error (invalid_request): usage: /notices"))

    # -- bad handshakes -----------------------------------------------------------

    def test_bad_handshakes(self) -> None:
        """Each bad handshake gets exactly one error line and a close."""
        cases = [
            ("hello", "invalid_request"),
            ('{"name": "mina", "room": "dev"', "invalid_request"),  # then more garbage
            ("[1, 2]", "invalid_request"),
            ("42", "invalid_request"),
            ('"mina"', "invalid_request"),
            ("null", "invalid_request"),
            ('{"room": "dev"}', "invalid_nickname"),
            ('{"name": "", "room": "dev"}', "invalid_nickname"),
            ('{"name": "mi na", "room": "dev"}', "invalid_nickname"),
            ('{"name": "mi:na", "room": "dev"}', "invalid_nickname"),
            ('{"name": 7, "room": "dev"}', "invalid_nickname"),
            ('{"name": "' + "n" * 33 + '", "room": "dev"}', "invalid_nickname"),
            ('{"name": "mina"}', "invalid_room"),
            ('{"name": "mina", "room": ""}', "invalid_room"),
            ('{"name": "mina", "room": " dev"}', "invalid_room"),
            ('{"name": "mina", "room": ["dev"]}', "invalid_room"),
            ('{"name": "mina", "room": "dev", "notices": "yes"}', "invalid_request"),
            ('{"name": "mina", "room": "dev", "password": 5}', "invalid_request"),
            ('{"name": "mina", "room": "dev", "token": "x"}', "invalid_request"),
        ]
        for text, code in cases:
            client = self.connect_client()
            client.send_line(text)
            if text.endswith('"dev"'):
                client.send_line("this is not JSON")
            self.assertRefused(client, code)
        self.assertEqual(self.service.connection_count, 0)
        self.assertEqual(self.service.room_names(), [])

    def test_handshake_too_long(self) -> None:
        """A handshake that never completes within the line length limit is
        refused instead of being buffered for ever."""
        client = self.connect_client()
        client.send_line('{"name": "mina",')
        for _ in range(MAX_LINE // 10):
            client.send_line(" " * 10)
            self.settle()
            if client.closed:
                break
        self.assertRefused(client, "invalid_request")

    def test_refused_client_lines_not_posted(self) -> None:
        """Lines sent together with a bad handshake are not posted."""
        fake = FakeParticipant("fake")
        self.service.connect(fake)
        self.service.join(fake, "dev")
        fake.received.clear()
        client = self.connect_client()
        client.send_raw('{"name": "no one", "room": "dev"}\nsneaky\n')
        self.assertRefused(client, "invalid_nickname")
        self.assertEqual(fake.received, [])
        self.assertEqual(self.history(), [])

    def test_name_taken_in_room(self) -> None:
        """A guest cannot take a name (case-insensitively) already in the
        room; the member holding it is not disturbed. The name is free in
        another room."""
        bob = self.join("bob")
        other = self.connect_client()
        other.send_line(handshake("BOB"))
        line = self.assertRefused(other, "invalid_request")
        self.assertIn("already taken", line)
        self.assertFalse(bob.closed)
        self.assertEqual(bob.take(), [])
        self.join("bob", "elsewhere")

    def test_name_taken_by_websocket_member(self) -> None:
        """A name in use by someone on /ws/{room} is not available to a
        guest either (it is a registered name)."""
        self.connect_room("dora")
        client = self.connect_client()
        client.send_line(handshake("dora"))
        self.assertRefused(client, "unauthorized")

    def test_guest_cannot_use_account_name(self) -> None:
        """A guest name that belongs to a registered account is refused."""
        self.register("alice")
        client = self.connect_client()
        client.send_line(handshake("Alice"))
        line = self.assertRefused(client, "unauthorized")
        self.assertIn("registered account", line)

    def test_wrong_password(self) -> None:
        """A wrong password (or an unknown account) is refused."""
        self.register("alice", "right-password")
        for name, password in (("alice", "wrong"), ("nobody", "whatever")):
            client = self.connect_client()
            client.send_line(handshake(name, password=password))
            line = self.assertRefused(client, "unauthorized")
            self.assertIn("invalid nickname or password", line)

    def test_password_speaks_as_account(self) -> None:
        """With the right password the client speaks as the account: its
        spelling of the nickname, its user id on stored messages."""
        user_id = self.register("Alice", "right-password")
        alice = self.join("ALICE", password="right-password")
        alice.send_line("it is me")
        self.settle()
        self.assertEqual(alice.take(), ["Alice:it is me"])
        [stored] = self.history()
        self.assertEqual((stored.nickname, stored.user_id), ("Alice", user_id))

    def test_account_may_connect_twice(self) -> None:
        """A registered user may be in the room over several connections
        (name uniqueness is for guests)."""
        self.register("alice", "pw-alice")
        first = self.join("alice", password="pw-alice")
        second = self.join("alice", password="pw-alice")
        second.send_line("twice")
        self.settle()
        self.assertEqual(first.take(), ["alice:twice"])
        self.assertEqual(second.take(), ["alice:twice"])
        self.assertEqual(self.service.members("dev"), ["alice"])

    def test_guests_off(self) -> None:
        """With guests switched off a handshake without a password is
        refused, one with a password accepted."""
        self.use_options(allow_guests=False)
        self.register("alice", "pw-alice")
        guest = self.connect_client()
        guest.send_line(handshake("mina"))
        line = self.assertRefused(guest, "unauthorized")
        self.assertIn("guests are not allowed", line)
        self.join("alice", password="pw-alice")

    # -- timeouts -----------------------------------------------------------------

    def test_handshake_timeout(self) -> None:
        """A client that sends no handshake in time is told and closed."""
        client = self.connect_client()
        self.advance(HANDSHAKE_TIMEOUT - 1)
        self.assertFalse(client.closed)
        self.advance(1.5)
        self.assertEqual(client.take(), ["*** disconnected: no handshake received in time"])
        self.assertTrue(client.closed)

    def test_partial_handshake_times_out(self) -> None:
        """An unfinished handshake does not keep the connection open."""
        client = self.connect_client()
        client.send_line('{"name": "mina",')
        self.advance(HANDSHAKE_TIMEOUT + 1)
        self.assertEqual(client.take(), ["*** disconnected: no handshake received in time"])
        self.assertTrue(client.closed)

    def test_idle_timeout(self) -> None:
        """A member silent for the idle timeout is told and closed; every
        line it sends starts the timeout again."""
        mina = self.join("mina")
        self.advance(IDLE_TIMEOUT - 10)
        mina.send_line("")  # a keep-alive counts as activity
        self.settle()
        self.advance(IDLE_TIMEOUT - 10)
        self.assertFalse(mina.closed)
        self.advance(11)
        self.assertEqual(mina.take(), ["*** disconnected: idle for too long"])
        self.assertTrue(mina.closed)
        self.assertEqual(self.service.members("dev"), [])

    def test_no_idle_timeout(self) -> None:
        """An idle timeout of 0 never disconnects."""
        self.use_options(idle_timeout=0)
        mina = self.join("mina")
        self.advance(10 * IDLE_TIMEOUT)
        self.assertFalse(mina.closed)
        timers = [c for c in self.clock.getDelayedCalls() if "_timed_out" in repr(c)]
        self.assertEqual(timers, [])

    # -- commands -------------------------------------------------------------------

    def test_who(self) -> None:
        """``/who`` lists the room's members, whatever their surface."""
        mina = self.join("mina")
        self.join("bob")
        self.connect_room("dora")
        mina.send_line("/who")
        self.settle()
        [line] = mina.take()
        self.assertTrue(line.startswith("*** in dev: "), line)
        self.assertEqual(sorted(line[len("*** in dev: ") :].split(", ")), ["bob", "dora", "mina"])

    def test_join(self) -> None:
        """``/join ROOM`` moves the client: the old room is told it left, its
        lines go to the new room."""
        fake = FakeParticipant("fake")
        self.service.connect(fake)
        self.service.join(fake, "dev")
        mina = self.join("mina")
        bob = self.join("bob", notices=True)
        carol = self.join("carol", "other")
        bob.take()
        mina.send_line("/join other")
        self.settle()
        self.assertEqual(mina.take(), ["*** you are now in other"])
        self.assertEqual(bob.take(), ["*** ~mina has left the room"])
        last = fake.received[-1]
        self.assertEqual((last.event, last.nickname), (LEFT, "mina"))
        self.assertEqual(sorted(self.service.members("other")), ["carol", "mina"])
        mina.send_line("over here")
        self.settle()
        self.assertEqual(carol.take(), ["~mina:over here"])
        self.assertEqual(bob.take(), [])
        self.assertEqual([m.room for m in self.history("other")], ["other"])

    def test_join_same_room(self) -> None:
        """``/join`` of the current room does nothing."""
        mina = self.join("mina")
        mina.send_line("/join dev")
        self.settle()
        self.assertEqual(mina.take(), [])
        self.assertEqual(self.service.members("dev"), ["mina"])

    def test_join_bad(self) -> None:
        """``/join`` without a valid room, or to a room where the guest's name
        is taken, is an error and the client stays where it was."""
        mina = self.join("mina")
        self.join("mina", "other")
        for command, code in (("/join", "invalid_room"), ("/join other", "invalid_request")):
            mina.send_line(command)
            self.settle()
            [line] = mina.take()
            self.assertTrue(line.startswith(f"*** error ({code}): "), line)
        mina.send_line("still here")
        self.settle()
        self.assertEqual(mina.take(), ["~mina:still here"])
        self.assertEqual(self.service.members("dev"), ["mina"])

    def test_history(self) -> None:
        """``/history N`` shows the last N messages of the room, oldest first."""
        mina = self.join("mina")
        for text in ("one", "two", "three"):
            mina.send_line(text)
        self.settle()
        mina.take()
        mina.send_line("/history 2")
        self.settle()
        self.assertEqual(
            mina.take(),
            ["*** last 2 messages in dev:", "~mina:two", "~mina:three", "*** end of history"],
        )
        mina.send_line("/history")
        self.settle()
        self.assertEqual(len(mina.take()), 5)  # header, three messages, end marker

    def test_history_bad(self) -> None:
        """A bad ``/history`` argument is an error line, not a close."""
        mina = self.join("mina")
        for argument in ("abc", "0", "100000"):
            mina.send_line(f"/history {argument}")
            self.settle()
            [line] = mina.take()
            self.assertTrue(line.startswith("*** error (invalid_request): "), line)
        self.assertFalse(mina.closed)

    def test_help(self) -> None:
        """``/help`` is one notice line listing the commands."""
        mina = self.join("mina")
        mina.send_line("/help")
        self.settle()
        self.assertEqual(mina.take(), ["*** " + HELP])

    def test_quit(self) -> None:
        """``/quit`` says bye and closes."""
        mina = self.join("mina")
        mina.send_line("/quit")
        self.settle()
        self.assertEqual(mina.take(), ["*** bye"])
        self.assertTrue(mina.closed)
        self.assertEqual(self.service.connection_count, 0)

    def test_quit_waits_for_pending_echoes(self) -> None:
        """A message sent just before ``/quit`` is still being stored; its echo
        reaches the client before the goodbye and the close."""
        mina = self.join("mina")
        mina.send_line("last words")
        mina.send_line("/quit")
        self.settle()
        self.assertEqual(mina.take(), ["~mina:last words", "*** bye"])
        self.assertTrue(mina.closed)

    def test_double_slash_escape(self) -> None:
        """``//text`` sends ``/text``."""
        mina = self.join("mina")
        mina.send_line("//who")
        self.settle()
        self.assertEqual(mina.take(), ["~mina:/who"])

    def test_unknown_command_is_a_message(self) -> None:
        """A ``/word`` that is not a command is an ordinary message."""
        mina = self.join("mina")
        mina.send_line("/shrug ok")
        mina.send_line("/")
        self.settle()
        self.assertEqual(mina.take(), ["~mina:/shrug ok", "~mina:/"])

    # -- server side --------------------------------------------------------------

    def test_server_shutdown(self) -> None:
        """Stopping the service says goodbye and closes every stream client."""
        mina = self.join("mina")
        bob = self.join("bob", "other", notices=True)
        bob.take()
        self.successResultOf(self.service.stopService())
        self.settle()
        self.assertEqual(mina.take(), ["*** server shutting down, bye"])
        self.assertEqual(bob.take(), ["*** server shutting down, bye"])
        self.assertTrue(mina.closed)
        self.assertTrue(bob.closed)
        self.assertEqual(self.service.connection_count, 0)


class LimitBehaviour(StreamHelpers):
    """Rate and connection limits, shared with the WebSocket surface."""

    limits = Limits(rate_limit=1, rate_burst=2, max_connections_per_ip=2)
    service: Any
    history: Any

    def test_rate_limit_per_name(self) -> None:
        """An account's connections share one bucket."""
        self.service.register("alice", "pw-alice")
        self.settle()
        first = self.join("alice", password="pw-alice")
        second = self.join("alice", password="pw-alice")
        first.send_line("one")
        second.send_line("two")
        second.send_line("three")
        self.settle()
        self.assertIn("*** error (rate_limited): too many messages: slow down", second.take())

    def test_per_address_limit_at_handshake(self) -> None:
        """A connection over the per-address limit is refused at the
        handshake with an error line and a close."""
        self.join("one")
        pending = self.connect_client()
        self.join("two")
        pending.send_line(handshake("three"))
        self.assertRefused(pending, "too_many_connections")
        other = self.connect_client("10.0.0.2")
        other.send_line(handshake("four"))
        self.settle()
        self.assertFalse(other.closed)


class HeldHasher(PasswordHasher):
    """bcrypt inline, but each result is held back until ``release``: the
    password check of a handshake takes as long as a test wants."""

    def __init__(self) -> None:
        self.held: list[tuple[Deferred[Any], Any]] = []
        self.holding = True
        super().__init__(self._run_held, rounds=TEST_ROUNDS)

    def _run_held(self, f: Any, *args: Any) -> Deferred[Any]:
        result = f(*args)
        d: Deferred[Any] = Deferred()
        if self.holding:
            self.held.append((d, result))
        else:
            d.callback(result)
        return d

    def release(self) -> None:
        held, self.held = self.held, []
        for d, result in held:
            d.callback(result)


class SlowCheckBehaviour(StreamHelpers):
    """What happens while a handshake's password is being checked (bcrypt
    runs in a thread in the real server)."""

    clock: Clock
    limits: Limits
    service: ChatService
    history: Any
    assertRefused: Any

    def make_chat_service(self) -> tuple[ChatService, Any]:
        self.hasher = HeldHasher()
        store = MemoryStore()
        cache = VerifiedCredentials(self.clock)
        service, _, _ = make_service(
            store, self.clock, self.limits, hasher=self.hasher, credential_cache=cache
        )
        self.hasher.holding = False
        service.register("alice", "pw-alice")
        cache.clear()  # registration warms it; these tests need a real check
        self.hasher.holding = True
        return service, store

    def checking(self, password: str = "pw-alice") -> StreamClient:
        client = self.connect_client()
        client.send_line(handshake("alice", password=password))
        self.settle()
        self.assertEqual(len(self.hasher.held), 1)
        return client

    def test_lines_during_check_kept(self) -> None:
        """Lines that arrive while the password is checked are posted, in
        order, once it is accepted."""
        alice = self.checking()
        alice.send_line("first")
        alice.send_line("second")
        self.settle()
        self.assertEqual(alice.take(), [])
        self.hasher.release()
        self.settle()
        self.assertEqual(alice.take(), ["alice:first", "alice:second"])

    def test_wrong_password_drops_queued_lines(self) -> None:
        """When the check fails, the lines queued meanwhile are not posted."""
        alice = self.checking("wrong")
        alice.send_line("sneaky")
        self.settle()
        self.hasher.release()
        self.assertRefused(alice, "unauthorized")
        self.assertEqual(self.history(), [])

    def test_hang_up_during_check(self) -> None:
        """A client gone before its check ends never joins the room."""
        alice = self.checking()
        alice.send_line("/quit")  # queued, not run
        self.settle()
        transport = self.endings[-1]  # type: ignore[attr-defined]
        transport.loseConnection()
        self.settle()
        self.hasher.release()
        self.settle()
        self.assertEqual(self.service.members("dev"), [])
        self.assertEqual(self.service.connection_count, 0)

    def test_timeout_during_check(self) -> None:
        """The handshake timeout still applies while a check is pending; a
        late success does not bring the client back."""
        alice = self.checking()
        self.advance(HANDSHAKE_TIMEOUT + 1)
        self.assertEqual(alice.take(), ["*** disconnected: no handshake received in time"])
        self.assertTrue(alice.closed)
        self.hasher.release()
        self.settle()
        self.assertEqual(self.service.members("dev"), [])
        self.assertEqual(self.service.connection_count, 0)


# -- the suites, one per carrier ---------------------------------------------------


class LineStreamTests(StreamBehaviour, LineCarrier, StreamCase):
    """The stream protocol over plain TCP."""


class MyChatStreamTests(StreamBehaviour, MyChatCarrier, StreamCase):
    """The stream protocol over /mychat."""


class LineLimitTests(LimitBehaviour, LineCarrier, StreamCase):
    """Limits over plain TCP."""


class MyChatLimitTests(LimitBehaviour, MyChatCarrier, StreamCase):
    """Limits over /mychat."""


class LineSlowCheckTests(SlowCheckBehaviour, LineCarrier, StreamCase):
    """Pending password checks over plain TCP."""


class MyChatSlowCheckTests(SlowCheckBehaviour, MyChatCarrier, StreamCase):
    """Pending password checks over /mychat."""


# -- carrier-specific framing ---------------------------------------------------------


class LineFramingTests(StreamHelpers, LineCarrier, StreamCase):
    """How the TCP listener cuts bytes into lines."""

    def connect(self) -> RawLineClient:
        return self.connect_tcp()

    def joined(self, name: str = "mina") -> RawLineClient:
        client = self.connect()
        client.send_line(handshake(name))
        self.settle()
        return client

    def test_exact_bytes(self) -> None:
        """The server writes exactly ``name:text\\n`` and nothing else."""
        mina = self.joined()
        mina.send_bytes(b"hello\n")
        self.settle()
        self.assertEqual(mina.received, b"~mina:hello\n")

    def test_crlf(self) -> None:
        """``\\r\\n`` line endings (telnet) work for the handshake and lines;
        the server answers with ``\\n``."""
        mina = self.connect()
        mina.send_bytes(handshake("mina").encode() + b"\r\nhello\r\n")
        self.settle()
        self.assertEqual(mina.received, b"~mina:hello\n")

    def test_split_packets(self) -> None:
        """A handshake and lines cut anywhere, even inside a UTF-8 character,
        are put back together."""
        zoe = self.connect()
        data = (handshake("Zoë") + "\nnaïve\n").encode()
        for i in range(len(data)):
            zoe.send_bytes(data[i : i + 1])
            self.settle()
        self.assertEqual(zoe.received.decode(), "~Zoë:naïve\n")

    def test_handshake_without_newline_then_split_line(self) -> None:
        """After a handshake that came without its newline, what follows
        it in the same packet starts the next line, finished by the next
        packet; the newline that may still follow the handshake is a blank
        line, ignored."""
        mina = self.connect()
        mina.send_bytes(handshake("mina").encode() + b"hel")
        self.settle()
        self.assertEqual(self.service.members("dev"), ["mina"])
        mina.send_bytes(b"lo\n")
        self.settle()
        self.assertEqual(mina.received, b"~mina:hello\n")
        ann = self.connect()
        ann.send_bytes(handshake("ann").encode())
        self.settle()
        ann.send_bytes(b"\n")
        ann.send_bytes(b"hi\n")
        self.settle()
        self.assertEqual(ann.received, b"~ann:hi\n")

    def test_unfinished_values_wait_for_the_newline(self) -> None:
        """Only a complete JSON object is taken early: a handshake cut
        short, or a value that is not an object, waits for its newline
        (then is refused, if it is not a handshake)."""
        half = self.connect()
        half.send_bytes(b'{"name": "mina", "ro')
        self.settle()
        self.assertEqual(self.service.members("dev"), [])
        half.send_bytes(b'om": "dev"}')
        self.settle()
        self.assertEqual(self.service.members("dev"), ["mina"])
        number = self.connect()
        number.send_bytes(b"12")
        self.settle()
        self.assertFalse(number.lost)
        number.send_bytes(b"3\n")
        self.assertRefused(number, "invalid_request")

    def test_everything_in_one_packet(self) -> None:
        """Handshake and several lines in one packet: none is lost."""
        mina = self.connect()
        mina.send_bytes(handshake("mina").encode() + b"\na\nb\r\nc\n")
        self.settle()
        self.assertEqual(mina.received, b"~mina:a\n~mina:b\n~mina:c\n")

    def test_unterminated_line_waits(self) -> None:
        """A line without its newline yet is not posted."""
        mina = self.joined()
        mina.send_bytes(b"half a li")
        self.settle()
        self.assertEqual(mina.received, b"")
        mina.send_bytes(b"ne\n")
        self.settle()
        self.assertEqual(mina.received, b"~mina:half a line\n")

    def test_line_too_long(self) -> None:
        """A line over the limit gets an error line and is dropped; the
        connection stays and the next line works."""
        mina = self.joined()
        mina.send_bytes(b"x" * (MAX_LINE + 1) + b"\nnext\n")
        self.settle()
        self.assertEqual(
            mina.take(),
            [
                f"*** error (invalid_request): line longer than {MAX_LINE} bytes; it was dropped",
                "~mina:next",
            ],
        )
        self.assertFalse(mina.closed)
        self.assertEqual([m.content for m in self.history()], ["next"])

    def test_line_at_limit_is_a_line(self) -> None:
        """A line of exactly the limit is not refused by the framing (here it
        is then too long as content, a different error)."""
        mina = self.joined()
        mina.send_bytes(b"x" * MAX_LINE + b"\n")
        self.settle()
        [line] = mina.take()
        self.assertTrue(line.startswith("*** error (content_too_long): "), line)

    def test_long_chunk_without_newline(self) -> None:
        """Bytes past the limit with no newline yet are answered once and
        dropped up to the end of that line, without being buffered."""
        mina = self.joined()
        mina.send_bytes(b"x" * (MAX_LINE + 10))
        self.settle()
        self.assertEqual(
            mina.take(),
            [f"*** error (invalid_request): line longer than {MAX_LINE} bytes; it was dropped"],
        )
        protocol = self.pumps[-1].server
        for _ in range(5):
            mina.send_bytes(b"y" * MAX_LINE)
            self.settle()
        self.assertTrue(len(protocol._buffer) <= MAX_LINE)
        mina.send_bytes(b"end of the long line\nnext\n")
        self.settle()
        self.assertEqual(mina.take(), ["~mina:next"])
        self.assertEqual([m.content for m in self.history()], ["next"])
        self.assertFalse(mina.closed)

    def test_long_line_instead_of_handshake(self) -> None:
        """An over-long first line is refused with one error line and a close."""
        client = self.connect()
        client.send_bytes(b"{" + b" " * MAX_LINE * 2)
        self.assertRefused(client, "invalid_request")

    def test_not_utf8(self) -> None:
        """A line that is not UTF-8 gets an error line and is dropped; the
        connection stays and the next line works."""
        mina = self.joined()
        mina.send_bytes(b"caf\xe9\n\xff\xfe\nok\n")
        self.settle()
        self.assertEqual(
            mina.take(),
            [
                "*** error (invalid_request): line is not valid UTF-8; it was dropped",
                "*** error (invalid_request): line is not valid UTF-8; it was dropped",
                "~mina:ok",
            ],
        )
        self.assertFalse(mina.closed)

    def test_not_utf8_handshake(self) -> None:
        """A first line that is not UTF-8 is refused with one error line."""
        client = self.connect()
        client.send_bytes(b'{"name": "caf\xe9", "room": "dev"}\n')
        self.assertRefused(client, "invalid_request")

    def test_bytes_after_refusal_ignored(self) -> None:
        """What follows a bad handshake in the same packet gets no answer."""
        client = self.connect()
        client.send_bytes(b"hello\n" + handshake("mina").encode() + b"\nmore\n")
        self.assertRefused(client, "invalid_request")
        self.assertEqual(self.service.connection_count, 0)

    def test_client_closes(self) -> None:
        """A client that hangs up leaves its room and frees its name."""
        mina = self.joined()
        assert mina.transport is not None
        mina.transport.loseConnection()
        self.settle()
        self.assertEqual(self.service.members("dev"), [])
        self.assertEqual(self.service.connection_count, 0)
        self.joined()
        self.assertEqual(self.service.members("dev"), ["mina"])

    def test_client_closes_before_handshake(self) -> None:
        """A client that hangs up before its handshake leaves no timer."""
        client = self.connect()
        assert client.transport is not None
        client.transport.loseConnection()
        self.settle()
        timers = [c for c in self.clock.getDelayedCalls() if "_timed_out" in repr(c)]
        self.assertEqual(timers, [])


class MyChatFramingTests(StreamHelpers, MyChatCarrier, StreamCase):
    """How /mychat maps the stream onto WebSocket messages."""

    def joined(self, name: str = "mina", **extra: Any) -> MyChatClient:
        client = self.connect_mychat()
        client.send_line(handshake(name, **extra))
        self.settle()
        return client

    def test_one_message_per_line(self) -> None:
        """Each server line is one text message, newline included: the same
        bytes a TCP client gets."""
        mina = self.joined(notices=True)
        mina.send_line("hello")
        self.settle()
        mina.send_line("/help")
        self.settle()
        self.assertEqual(
            mina.take_messages(),
            [b"*** ~mina has joined the room\n", b"~mina:hello\n", f"*** {HELP}\n".encode()],
        )

    def test_multiline_content_one_message(self) -> None:
        """A multi-line chat message is one WebSocket message of several
        ``nick:line`` lines."""
        mina = self.joined()
        dora = self.connect_room("dora")
        dora.post("a\nb")
        self.settle()
        self.assertEqual(mina.take_messages(), [b"dora:a\ndora:b\n"])

    def test_several_lines_in_one_message(self) -> None:
        """A client message of several lines (``\\n`` or ``\\r\\n``) is
        several chat messages."""
        mina = self.joined()
        mina.send_raw("one\r\ntwo\nthree\n")
        self.settle()
        self.assertEqual(mina.take(), ["~mina:one", "~mina:two", "~mina:three"])

    def test_binary_utf8_accepted(self) -> None:
        """A binary message holding UTF-8 text is treated like a text one."""
        mina = self.connect_mychat()
        mina.sendMessage(handshake("mina").encode(), isBinary=True)
        mina.sendMessage("hé".encode(), isBinary=True)
        self.settle()
        self.assertEqual(mina.take(), ["~mina:hé"])

    def test_binary_not_utf8(self) -> None:
        """A binary message that is not UTF-8 gets an error line; the
        connection stays and the next message works."""
        mina = self.joined()
        mina.sendMessage(b"\xff\xfe", isBinary=True)
        mina.send_line("ok")
        self.settle()
        self.assertEqual(
            mina.take(), ["*** error (invalid_request): message is not valid UTF-8", "~mina:ok"]
        )
        self.assertFalse(mina.closed)

    def test_binary_not_utf8_handshake(self) -> None:
        """A first message that is not UTF-8 is refused."""
        client = self.connect_mychat()
        client.sendMessage(b"\xff", isBinary=True)
        self.assertRefused(client, "invalid_request")

    def test_invalid_utf8_text_frame(self) -> None:
        """A text message that is not UTF-8 breaks RFC 6455: Autobahn closes
        with 1007 and the member is gone from its room."""
        mina = self.joined()
        mina.sendMessage(b"caf\xe9", isBinary=False)
        self.settle()
        assert mina.close_info is not None
        self.assertEqual(mina.close_info[1], 1007)
        self.assertEqual(self.service.members("dev"), [])

    def test_refusal_close_is_clean(self) -> None:
        """A refused handshake ends with a WebSocket closing handshake, not a
        dropped socket."""
        client = self.connect_mychat()
        client.send_line("hello")
        self.assertRefused(client, "invalid_request")
        assert client.close_info is not None
        self.assertTrue(client.close_info[0])

    def test_message_too_big(self) -> None:
        """A message over the frame size limit closes with 1009."""
        self.mychat_factory.setProtocolOptions(maxFramePayloadSize=1024, maxMessagePayloadSize=1024)
        mina = self.joined()
        mina.send_line("x" * 2000)
        self.settle()
        assert mina.close_info is not None
        self.assertEqual(mina.close_info[1], 1009)
        self.assertEqual(self.service.connection_count, 0)

    def test_tcp_and_mychat_share_rooms(self) -> None:
        """A TCP member and a /mychat member of one room see each other."""
        mina = self.joined()
        tom = self.connect_tcp()
        tom.send_line(handshake("tom"))
        tom.send_line("from tcp")
        self.settle()
        mina.send_line("from mychat")
        self.settle()
        self.assertEqual(mina.take(), ["~tom:from tcp", "~mina:from mychat"])
        self.assertEqual(tom.received, b"~tom:from tcp\n~mina:from mychat\n")


class LineProtocolTests(SynchronousTestCase):
    """``LineChatProtocol`` and its factory over ``StringTransport``."""

    def setUp(self) -> None:
        self.service, self.store, self.clock = make_service(
            limits=Limits(rate_limit=0, max_connections_per_ip=2)
        )
        self.factory = LineChatFactory(
            adapter_context(self.service, self.clock), max_connections_per_ip=2
        )
        self.next_port = 50000

    def connect(self, host: str = "192.0.2.1") -> tuple[LineChatProtocol, StringTransport]:
        self.next_port += 1
        address = IPv4Address("TCP", host, self.next_port)
        protocol = self.factory.buildProtocol(address)
        self.assertIsInstance(protocol, LineChatProtocol)
        transport = StringTransport(peerAddress=address, hostAddress=LINE_SERVER)
        protocol.makeConnection(transport)
        return protocol, transport

    def test_defaults(self) -> None:
        """Without options the factory uses the documented defaults."""
        self.assertEqual(self.factory.options, StreamOptions())
        self.assertEqual(self.factory.options.max_line_length, 8192)

    def test_byte_at_a_time(self) -> None:
        """Input delivered one byte per ``dataReceived`` works."""
        protocol, transport = self.connect()
        for byte in (handshake("mina", "r") + "\nhi\n").encode():
            protocol.dataReceived(bytes([byte]))
        self.clock.advance(0)
        self.assertEqual(transport.value(), b"~mina:hi\n")

    def test_refusal_loses_connection(self) -> None:
        """A bad handshake writes one error line and asks the transport to
        close; the session is forgotten when the connection is lost."""
        protocol, transport = self.connect()
        protocol.dataReceived(b"nope\n")
        self.assertEqual(
            transport.value().decode(),
            "*** error (invalid_request): handshake must be a JSON object like "
            '{"name": "Mina", "room": "devroom"}\n',
        )
        self.assertTrue(transport.disconnecting)
        protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.service.connection_count, 0)

    def test_peer_host(self) -> None:
        """The session knows the client's address (for per-address limits)."""
        protocol, _ = self.connect("198.51.100.7")
        assert protocol.session is not None
        self.assertEqual(protocol.session.peer_host, "198.51.100.7")

    def test_per_address_limit(self) -> None:
        """Past the per-address limit the factory refuses to build a
        protocol for that address; other addresses are served, and a slot
        frees when a connection closes."""
        first, _ = self.connect()
        first.dataReceived(handshake("one", "r").encode() + b"\n")
        second, _ = self.connect()
        second.dataReceived(handshake("two", "r").encode() + b"\n")
        self.assertEqual(self.service.connections_from("192.0.2.1"), 2)
        self.assertIsNone(self.factory.buildProtocol(IPv4Address("TCP", "192.0.2.1", 1)))
        self.assertIsNotNone(self.factory.buildProtocol(IPv4Address("TCP", "192.0.2.9", 1)))
        first.connectionLost(Failure(ConnectionDone()))
        self.assertIsNotNone(self.factory.buildProtocol(IPv4Address("TCP", "192.0.2.1", 1)))

    def test_no_address_limit(self) -> None:
        """A per-address limit of 0 means no limit."""
        service, _, clock = make_service(limits=Limits(max_connections_per_ip=0))
        factory = LineChatFactory(adapter_context(service, clock), max_connections_per_ip=0)
        self.assertIsNotNone(factory.buildProtocol(IPv4Address("TCP", "192.0.2.1", 1)))


class RenderTests(SynchronousTestCase):
    """The ``name:text`` rendering shared by every stream member."""

    def message(self, content: str) -> Message:
        """A message of the account mina (a guest's is marked: test_guest)."""
        return Message(room="dev", nickname="mina", content=content, timestamp_ms=0, user_id=1)

    def test_guest(self) -> None:
        """A guest's lines and notices carry ``~`` before the name."""
        guest = Message(room="dev", nickname="mina", content="a\nb", timestamp_ms=0)
        self.assertEqual(render_lines(guest), b"~mina:a\n~mina:b\n")
        joined = system_message("dev", "mina", JOINED, 0, guest=True)
        self.assertEqual(render_lines(joined), b"*** ~mina has joined the room\n")

    def test_chat(self) -> None:
        """A chat message is ``nick:content\\n``."""
        self.assertEqual(render_lines(self.message("hi")), b"mina:hi\n")

    def test_multiline(self) -> None:
        """Every line of the content carries the nickname."""
        self.assertEqual(render_lines(self.message("a\n\nb")), b"mina:a\nmina:\nmina:b\n")

    def test_system(self) -> None:
        """A system event is a ``*** `` notice."""
        joined = system_message("dev", "mina", JOINED, 0)
        self.assertEqual(render_lines(joined), b"*** mina has joined the room\n")

    def test_encoder_flags_notices(self) -> None:
        """The encoder tells notices apart so sessions can skip them."""
        encoder = LineEncoder()
        self.assertEqual(encoder.encode(self.message("x")), (False, b"mina:x\n"))
        leave = system_message("dev", "mina", LEFT, 0)
        self.assertEqual(encoder.encode(leave), (True, b"*** mina has left the room\n"))
