"""The room behaviour every surface shares, written once and run over each
adapter that speaks rooms: plain TCP, ``/mychat``, ``/ws/{room}``, ``/ws``,
IRC (``--irc``) and the GarinChat and golang-chat dialects, on the transport
fast paths and again on the public-API paths
(``parkchat.protocols.fastpath.PLAIN``), which must look the same to clients.

``RoomBehaviour`` and ``RateBehaviour`` use a surface only through its
driver (``Surface``: join a room as someone, say something, read what
arrived, hang up, how it closed), like the ``_Transit`` mixin that
transit-relay runs once per transport. What arrives is read as events in
one vocabulary, whatever the wire format:

* ``("message", nickname, text)``: a chat message of the room;
* ``("notice", text)``: a join, a leave, a goodbye (a ``*** `` line on the
  stream surfaces, a system or join/leave frame on the WebSocket ones,
  JOIN, PART, QUIT, KICK, NOTICE or ERROR on IRC);
* ``("error", code)``: an error reply (on IRC a numeric whose text ends
  with the code in brackets);
* ``("ack",)``: ``/ws``'s answer to its own message, which it is not sent.

The dialects have no error reply: where the others answer an error and
carry on, they close the connection with 1008 and the reason
(``refusal_closes``), as their seeds drop it.

What is particular to one surface (framing, handshakes, commands, frame
types) stays in tests/test_stream.py, test_websocket.py and
test_app_socket.py and test_irc.py. Everything runs in memory on one ``Clock`` over
``twisted.test.iosim``, through the real site and the real factories.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import quote

from autobahn.twisted.websocket import WebSocketClientFactory
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.test import iosim
from twisted.trial.unittest import TestCase

import jwt

from parkchat.limits import Limits
from parkchat.model import CHAT, JOINED, LEFT, SYSTEM
from parkchat.protocols.fastpath import FAST, PLAIN, FastConnection, TransportPaths
from parkchat.protocols.garinchat import GarinChatFactory, GarinChatTokens
from parkchat.protocols.golangchat import GolangChatFactory
from parkchat.protocols.irc import IrcFactory, IrcOptions
from parkchat.protocols.line import LineChatFactory
from parkchat.protocols.mychat import MyChatFactory
from parkchat.protocols.stream import StreamOptions
from parkchat.protocols.unified import AppSocketFactory
from parkchat.protocols.websocket import RoomSocketFactory
from parkchat.tokens import TokenAuthority, TokenVerifier
from parkchat.web.dialects import GarinChatSocket, GolangChatRoot
from parkchat.web.site import make_dialect_site
from tests.helpers import FakeParticipant, adapter_context, make_service, settle_pumps, site_for
from tests.irc_support import Line, RawIrcClient
from tests.test_stream import MyChatClient, RawLineClient, handshake
from tests.test_websocket import RecordingClient, basic, clock_timer

START = 1_757_345_400.0
HTTP_SERVER = IPv4Address("TCP", "127.0.0.1", 8080)
LINE_SERVER = IPv4Address("TCP", "127.0.0.1", 8989)
IRC_SERVER = IPv4Address("TCP", "127.0.0.1", 6667)
MAX_CONTENT = 100
GARIN_SECRET = b"the third-party service's secret"

Event = tuple[Any, ...]

_ERROR_LINE = re.compile(r"\*\*\* error \(([a-z_]+)\): ")
_IRC_ERROR = re.compile(r"\[([a-z_]+)\]\Z")


def stream_events(lines: list[str]) -> list[Event]:
    """Stream lines as events (``nick:text``, ``*** ...``)."""
    events: list[Event] = []
    for line in lines:
        error = _ERROR_LINE.match(line)
        if error is not None:
            events.append(("error", error.group(1)))
        elif line.startswith("*** "):
            events.append(("notice", line[4:]))
        else:
            nickname, sep, text = line.partition(":")
            assert sep, f"not a stream line: {line!r}"
            # A guest's name comes marked "~" (tested in test_stream); the
            # suite compares what every surface shows alike.
            events.append(("message", nickname.removeprefix("~"), text))
    return events


def room_socket_events(frames: list[dict[str, Any]]) -> list[Event]:
    """/ws/{room} frames as events."""
    events: list[Event] = []
    for frame in frames:
        if frame["type"] == CHAT:
            events.append(("message", frame["nickname"], frame["content"]))
        elif frame["type"] == SYSTEM:
            events.append(("notice", frame["content"]))
        elif frame["type"] == "error":
            events.append(("error", frame["code"]))
        else:
            raise AssertionError(f"unexpected /ws/{{room}} frame {frame}")
    return events


def app_socket_events(frames: list[dict[str, Any]]) -> list[Event]:
    """/ws frames as events."""
    events: list[Event] = []
    for frame in frames:
        kind = frame["type"]
        if kind == "message":
            events.append(("message", frame["username"], frame["body"]))
        elif kind in ("join", "userleave"):
            events.append(("notice", f"{frame['username']} {kind}"))
        elif kind == "error":
            events.append(("error", frame["code"]))
        elif kind == "ack":
            events.append(("ack",))
        elif kind in ("state", "room_state", "direct_state"):
            continue  # the account's state, not a room event (test_app_socket_state)
        else:
            raise AssertionError(f"unexpected /ws frame {frame}")
    return events


def irc_events(lines: list[Line]) -> list[Event]:
    """IRC lines as events."""
    events: list[Event] = []
    for line in lines:
        error = _IRC_ERROR.search(line.text) if line.command.isdigit() else None
        if error is not None:
            events.append(("error", error.group(1)))
        elif line.command == "PRIVMSG":
            events.append(("message", line.nick, line.text))
        elif line.command in ("JOIN", "PART"):
            events.append(("notice", f"{line.nick} {line.command} {line.params[0]}"))
        elif line.command == "QUIT":
            events.append(("notice", f"{line.nick} QUIT"))
        elif line.command == "KICK":
            events.append(("notice", f"{line.params[1]} KICK {line.params[0]}"))
        elif line.command in ("NOTICE", "ERROR"):
            events.append(("notice", line.text))
        else:
            raise AssertionError(f"unexpected IRC line {line.raw!r}")
    return events


def garinchat_events(frames: list[dict[str, Any]]) -> list[Event]:
    """GarinChat frames as events."""
    events: list[Event] = []
    for frame in frames:
        kind = frame["type"]
        if kind == "message":
            events.append(("message", frame["username"], frame["body"]))
        elif kind in ("join", "userleave"):
            events.append(("notice", f"{frame['username']} {kind}"))
        else:
            raise AssertionError(f"unexpected GarinChat frame {frame}")
    return events


def golang_chat_events(frames: list[dict[str, Any]]) -> list[Event]:
    """golang-chat frames as events (it has nothing but messages)."""
    assert all(list(f) == ["userName", "body", "timestamp"] for f in frames), frames
    return [("message", f["userName"], f["body"]) for f in frames]


# -- members: one connected client, whatever its surface ---------------------------------


class Member:
    """A client in a room, as the behaviour tests see it."""

    def __init__(self, name: str, client: Any) -> None:
        self.name = name
        self.client = client

    def say(self, text: str) -> None:
        raise NotImplementedError

    def take(self) -> list[Event]:
        """The events that arrived since the last ``take``."""
        raise NotImplementedError

    def chat(self) -> list[Event]:
        """``take`` without the notices (which surfaces show differently)."""
        return [event for event in self.take() if event[0] != "notice"]

    def hang_up(self) -> None:
        raise NotImplementedError

    @property
    def closed(self) -> bool:
        raise NotImplementedError

    @property
    def close_code(self) -> int | None:
        """The WebSocket close code; None for TCP or while open."""
        return None


class LineMember(Member):
    client: RawLineClient

    def say(self, text: str) -> None:
        self.client.send_line(text)

    def take(self) -> list[Event]:
        return stream_events(self.client.take())

    def hang_up(self) -> None:
        assert self.client.transport is not None
        self.client.transport.loseConnection()

    @property
    def closed(self) -> bool:
        return self.client.closed


class MyChatMember(LineMember):
    client: MyChatClient  # type: ignore[assignment]

    def hang_up(self) -> None:
        self.client.sendClose(1000)

    @property
    def close_code(self) -> int | None:
        info = self.client.close_info
        return info[1] if info is not None else None


class RoomSocketMember(Member):
    client: RecordingClient

    def say(self, text: str) -> None:
        self.client.send_json({"content": text})

    def take(self) -> list[Event]:
        return room_socket_events(self.client.take())

    def hang_up(self) -> None:
        self.client.sendClose(1000)

    @property
    def closed(self) -> bool:
        return self.client.closed is not None

    @property
    def close_code(self) -> int | None:
        return self.client.close_code


class AppSocketMember(RoomSocketMember):
    def say(self, text: str) -> None:
        self.client.send_json({"type": "message", "body": text})

    def take(self) -> list[Event]:
        return app_socket_events(self.client.take())


class IrcMember(Member):
    client: RawIrcClient

    def __init__(self, name: str, client: RawIrcClient, room: str) -> None:
        super().__init__(name, client)
        self.room = room

    def say(self, text: str) -> None:
        self.client.send(f"PRIVMSG #{self.room} :{text}")

    def take(self) -> list[Event]:
        return irc_events(self.client.take())

    def hang_up(self) -> None:
        assert self.client.transport is not None
        self.client.transport.loseConnection()

    @property
    def closed(self) -> bool:
        return self.client.lost


class GarinChatMember(RoomSocketMember):
    def say(self, text: str) -> None:
        self.client.send_json({"type": "message", "body": text})

    def take(self) -> list[Event]:
        return garinchat_events(self.client.take())


class GolangChatMember(RoomSocketMember):
    def say(self, text: str) -> None:
        self.client.send_json({"userName": self.name, "body": text, "timestamp": "3:05 PM"})

    def take(self) -> list[Event]:
        return golang_chat_events(self.client.take())


# -- the fixture: every surface on one service and one clock ---------------------------------


class SurfaceCase(TestCase):
    """A started service, every protocol factory on the given transport
    ``paths`` and the site, all on one Clock, and the means to wire
    clients to them."""

    limits = Limits(rate_limit=0, max_content_length=MAX_CONTENT)
    paths: TransportPaths = FAST

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(START)
        self.service, self.store, _ = make_service(clock=self.clock, limits=self.limits)
        self.authority = TokenAuthority(b"k" * 32, self.clock)
        context = adapter_context(self.service, self.clock, paths=self.paths)
        self.line_factory = LineChatFactory(context, StreamOptions())
        self.irc_factory = IrcFactory(context, IrcOptions(ping_interval=0))
        self.room_factory = RoomSocketFactory(context, ping_interval=0, handshake_timeout=0)
        self.mychat_factory = MyChatFactory(context, StreamOptions(), ping_interval=0)
        self.app_factory = AppSocketFactory(
            context, TokenVerifier(self.authority), ping_interval=0, handshake_timeout=0
        )
        self.garinchat_factory = GarinChatFactory(
            context,
            GarinChatTokens(self.clock, GARIN_SECRET),
            ping_interval=0,
            handshake_timeout=0,
        )
        self.golang_chat_factories: dict[str, GolangChatFactory] = {}
        self.golang_chat_sites: dict[str, Any] = {}
        self.context = context
        for factory in (
            self.room_factory,
            self.mychat_factory,
            self.app_factory,
            self.garinchat_factory,
        ):
            factory._batched_timer = clock_timer(self.clock)
            # The paths asked for are the paths taken.
            self.assertEqual(FastConnection in factory.protocol.__mro__, self.paths.fast)
        self.site = site_for(
            self.service,
            self.room_factory,
            self.mychat_factory,
            app_factory=self.app_factory,
            tokens=self.authority,
            access_log=False,
            garinchat=GarinChatSocket(self.garinchat_factory, ()),
        )
        self.site._reactor = self.clock
        self.pumps: list[iosim.IOPump] = []
        self.client_transports: list[iosim.FakeTransport] = []
        self.next_port = 42000
        self.accounts: dict[str, tuple[int, str]] = {}
        self.addCleanup(self.close_everything)

    def wire(self, server: Any, client: Any, server_address: IPv4Address) -> None:
        self.next_port += 1
        peer = IPv4Address("TCP", "127.0.0.1", self.next_port)
        server_transport = iosim.FakeTransport(
            server, isServer=True, hostAddress=server_address, peerAddress=peer
        )
        client_transport = iosim.FakeTransport(
            client, isServer=False, hostAddress=peer, peerAddress=server_address
        )
        self.pumps.append(iosim.connect(server, server_transport, client, client_transport))
        self.client_transports.append(client_transport)
        self.settle()

    def golang_chat_site(self, room: str) -> Any:
        """A golang-chat listener's site for ``room`` (the dialect has one
        room per listener)."""
        if room not in self.golang_chat_sites:
            factory = GolangChatFactory(self.context, room, ping_interval=0, handshake_timeout=0)
            factory._batched_timer = clock_timer(self.clock)
            site = make_dialect_site(GolangChatRoot(factory, ()), access_log=False)
            site._reactor = self.clock
            self.golang_chat_sites[room] = site
        return self.golang_chat_sites[room]

    def websocket(
        self, path: str, headers: dict[str, str], protocol: type, site: Any = None
    ) -> Any:
        """An Autobahn client of ``path`` through the whole site."""
        site = site if site is not None else self.site
        factory = WebSocketClientFactory(f"ws://parkchat.test{path}", headers=headers)
        factory.protocol = protocol
        factory.setProtocolOptions(
            autoPingInterval=0, openHandshakeTimeout=0, serverConnectionDropTimeout=0
        )
        factory._batched_timer = clock_timer(self.clock)
        client = factory.buildProtocol(HTTP_SERVER)
        self.wire(site.buildProtocol(HTTP_SERVER), client, HTTP_SERVER)
        return client

    def account(self, nickname: str) -> tuple[int, str]:
        """The id and password of ``nickname``'s account (registered on first use)."""
        if nickname not in self.accounts:
            password = f"{nickname}-pw"
            user = self.successResultOf(self.service.register(nickname, password))
            self.accounts[nickname] = (user.id, password)
        return self.accounts[nickname]

    def settle(self) -> None:
        if not settle_pumps(self.clock, self.pumps):
            self.fail("the connections never settled")

    def close_everything(self) -> None:
        for transport in self.client_transports:
            if not transport.disconnecting:
                transport.loseConnection()
        self.settle()
        if self.service.running:
            self.successResultOf(self.service.stopService())
        self.settle()


# -- the surfaces: one driver each ------------------------------------------------------------


class Surface:
    """What the behaviour mixins need of the surface under test."""

    #: Whether the sender gets its own message back.
    echoes_sender: bool
    #: Whether the sender gets an ack instead (where it is not echoed).
    acknowledges: bool = False
    #: Whether a refused message closes the connection (1008 and the
    #: reason) instead of being answered with an error.
    refusal_closes: bool = False
    #: Whether its members are registered accounts (else: guests).
    accounts: bool
    #: What a member is sent when the server shuts down, before the close.
    shutdown_events: list[Event] = []
    #: The close code at shutdown (None: no close codes, plain TCP).
    shutdown_code: int | None = 1001

    def connect_member(self, name: str, room: str) -> Member:
        """A member of ``room`` that has done what the surface asks to get
        there; whatever it was sent on the way is still to be taken."""
        raise NotImplementedError


class LineSurface(Surface):
    """MaChat over plain TCP (``--tcp``): guests, every line echoed."""

    echoes_sender = True
    accounts = False
    shutdown_events = [("notice", "server shutting down, bye")]
    shutdown_code = None

    def connect_member(self, name: str, room: str) -> Member:
        case: Any = self
        client = RawLineClient()
        case.wire(case.line_factory.buildProtocol(LINE_SERVER), client, LINE_SERVER)
        client.send_line(handshake(name, room))
        case.settle()
        return LineMember(name, client)


class IrcSurface(Surface):
    """IRC (``--irc``): guests, with echo-message so that the sender sees
    its own messages as stored."""

    echoes_sender = True
    accounts = False
    shutdown_events = [("notice", "Closing link: server shutting down")]
    shutdown_code = None

    def connect_member(self, name: str, room: str) -> Member:
        case: Any = self
        client = RawIrcClient()
        case.wire(case.irc_factory.buildProtocol(IRC_SERVER), client, IRC_SERVER)
        client.send(
            "CAP REQ :echo-message", f"NICK {name}", "USER u 0 * :x", "CAP END", f"JOIN #{room}"
        )
        case.settle()
        # Up to the end of the channel's NAMES: the rest is the room's.
        lines = client.take_raw()
        end = next(i for i, line in enumerate(lines) if " 366 " in line)
        client.unread(lines[end + 1 :])
        return IrcMember(name, client, room)


class MyChatSurface(Surface):
    """MaChat inside WebSocket messages (``/mychat``)."""

    echoes_sender = True
    accounts = False
    shutdown_events = [("notice", "server shutting down, bye")]

    def connect_member(self, name: str, room: str) -> Member:
        case: Any = self
        client = case.websocket("/mychat", {}, MyChatClient)
        client.send_line(handshake(name, room))
        case.settle()
        return MyChatMember(name, client)


class RoomSocketSurface(Surface):
    """The seed API's room socket (``/ws/{room}``, Basic auth)."""

    echoes_sender = True
    accounts = True

    def connect_member(self, name: str, room: str) -> Member:
        case: Any = self
        _, password = case.account(name)
        headers = {"Authorization": basic(name, password)}
        client = case.websocket(f"/ws/{quote(room, safe='')}", headers, RecordingClient)
        return RoomSocketMember(name, client)


class AppSocketSurface(Surface):
    """The app socket (``/ws``, a token, then a join frame): the sender gets
    an ack, not its own message."""

    echoes_sender = False
    acknowledges = True
    accounts = True

    def connect_member(self, name: str, room: str) -> Member:
        case: Any = self
        user_id, _ = case.account(name)
        token, _ = case.authority.issue(user_id, name)
        client = case.websocket("/ws", {"Authorization": f"Bearer {token}"}, RecordingClient)
        client.send_json({"type": "join", "room": room})
        case.settle()
        # The answers to the connection's own requests; the room's events
        # stay for the member to take.
        answers = [f for f in client.frames if f["type"] in ("ready", "joined")]
        assert [f["type"] for f in answers] == ["ready", "joined"], client.frames
        client.frames = [f for f in client.frames if f not in answers]
        return AppSocketMember(name, client)


class GarinChatSurface(Surface):
    """The GarinChat dialect (a WebSocket upgrade of ``/``): an auth frame
    with a JWT of the third-party service, a join frame with a guest's
    name; the sender gets nothing back; refusals close."""

    echoes_sender = False
    accounts = False
    refusal_closes = True

    def connect_member(self, name: str, room: str) -> Member:
        case: Any = self
        client = case.websocket("/", {}, RecordingClient)
        client.send_json({"type": "auth", "body": jwt.encode({}, GARIN_SECRET)})
        client.send_json({"type": "join", "username": name, "room": room})
        case.settle()
        return GarinChatMember(name, client)


class GolangChatSurface(Surface):
    """The golang-chat dialect (``/chat`` of a listener whose room it is):
    a first message with an empty body joins; every message is echoed;
    refusals close."""

    echoes_sender = True
    accounts = False
    refusal_closes = True

    def connect_member(self, name: str, room: str) -> Member:
        case: Any = self
        client = case.websocket("/chat", {}, RecordingClient, case.golang_chat_site(room))
        client.send_json({"userName": name, "body": "", "timestamp": ""})
        case.settle()
        return GolangChatMember(name, client)


# -- the behaviour ---------------------------------------------------------------------------


class MemberHelpers:
    """What the behaviour mixins share. Mixed into ``SurfaceCase`` with a
    ``Surface``; ``self`` is then a ``TestCase``."""

    connect_member: Any
    echoes_sender: bool
    acknowledges: bool
    refusal_closes: bool
    accounts: bool
    shutdown_events: list[Event]
    shutdown_code: int | None
    service: Any
    account: Any
    settle: Any
    assertEqual: Any
    assertTrue: Any
    assertFalse: Any
    assertIn: Any
    assertNotIn: Any
    successResultOf: Any

    def join(self, name: str, room: str = "dev") -> Member:
        """A member of ``room`` with nothing left to take."""
        member: Member = self.connect_member(name, room)
        self.assertFalse(member.closed, f"{name} could not join: {member.take()}")
        member.take()
        return member

    def observer(self, room: str = "dev") -> FakeParticipant:
        """A participant in ``room`` that records the room's events as they
        are before any surface renders them."""
        observer = FakeParticipant("observer")
        self.service.connect(observer)
        self.service.join(observer, room)
        return observer

    def said(self, name: str, *texts: str) -> list[Event]:
        """What the other members of the room get when ``name`` says ``texts``."""
        return [("message", name, text) for text in texts]

    def back(self, name: str, *texts: str) -> list[Event]:
        """What ``name`` gets back for saying ``texts``: the messages on a
        surface that echoes, acks on one that acknowledges, else nothing."""
        if self.echoes_sender:
            return self.said(name, *texts)
        return [("ack",) for _ in texts] if self.acknowledges else []

    def assertRefused(self, member: Member, code: str, events: list[Event]) -> None:
        """``member`` was refused with ``code``: an error it was sent
        (``events``, its surface's), or, where refusals close, a close with
        1008."""
        if self.refusal_closes:
            self.assertTrue(member.closed, f"{member.name} is still connected")
            self.assertEqual(member.close_code, 1008)
        else:
            self.assertIn(("error", code), events)
            self.assertFalse(member.closed)


class RoomBehaviour(MemberHelpers):
    """Rooms as every surface shows them."""

    def test_join(self) -> None:
        """Joining puts the member in the room, as everyone there is told."""
        observer = self.observer()
        self.join("mina")
        self.assertEqual(sorted(self.service.members("dev")), ["mina", "observer"])
        last = observer.received[-1]
        self.assertEqual((last.type, last.event, last.nickname), (SYSTEM, JOINED, "mina"))

    def test_everyone_receives(self) -> None:
        """A message reaches every member of its room (the sender too, where
        the surface echoes; an ack instead, where it does not); a member of
        another room gets nothing."""
        alice = self.join("alice")
        bob = self.join("bob")
        carol = self.join("carol", "elsewhere")
        alice.take()
        bob.say("hi all")
        self.settle()
        self.assertEqual(alice.chat(), self.said("bob", "hi all"))
        self.assertEqual(bob.chat(), self.back("bob", "hi all"))
        self.assertEqual(carol.take(), [])

    def test_order_kept(self) -> None:
        """A member's messages arrive in the order they were sent."""
        alice = self.join("alice")
        bob = self.join("bob")
        alice.take()
        texts = [f"line {n}" for n in range(5)]
        for text in texts:
            alice.say(text)
        self.settle()
        self.assertEqual(bob.chat(), self.said("alice", *texts))
        self.assertEqual(alice.chat(), self.back("alice", *texts))

    def test_messages_stored(self) -> None:
        """Messages are stored as chat messages of the room, by the member's
        name, with its account id (None for a guest)."""
        alice = self.join("alice")
        alice.say("keep me")
        self.settle()
        [stored] = self.successResultOf(self.service.history("dev"))
        user_id = self.account("alice")[0] if self.accounts else None
        self.assertEqual(
            (stored.room, stored.nickname, stored.content, stored.type, stored.user_id),
            ("dev", "alice", "keep me", CHAT, user_id),
        )

    def assertRefusedMessage(self, text: str, code: str) -> None:
        """``text`` gets the sender one error ``code``, reaches nobody and is
        not stored; the connection stays and the next message works."""
        alice = self.join("alice")
        bob = self.join("bob")
        alice.take()
        alice.say(text)
        self.settle()
        events = alice.chat()
        self.assertRefused(alice, code, events)
        self.assertEqual(bob.chat(), [])
        if self.refusal_closes:
            self.assertEqual(self.successResultOf(self.service.history("dev")), [])
            return
        self.assertEqual(events, [("error", code)])
        alice.say("short")
        self.settle()
        self.assertEqual(bob.chat(), self.said("alice", "short"))
        self.assertFalse(alice.closed)
        stored = self.successResultOf(self.service.history("dev"))
        self.assertEqual([m.content for m in stored], ["short"])

    def test_content_too_long(self) -> None:
        """Content over the limit is this surface's ``content_too_long`` error."""
        self.assertRefusedMessage("x" * (MAX_CONTENT + 1), "content_too_long")

    def test_control_characters(self) -> None:
        """Control characters are this surface's ``invalid_content`` error."""
        self.assertRefusedMessage("bell\x07", "invalid_content")

    def test_leave_on_disconnect(self) -> None:
        """A member that hangs up leaves the room, as everyone there is told."""
        observer = self.observer()
        bob = self.join("bob")
        bob.hang_up()
        self.settle()
        self.assertTrue(bob.closed)
        self.assertEqual(self.service.members("dev"), ["observer"])
        self.assertEqual(self.service.connection_count, 1)
        last = observer.received[-1]
        self.assertEqual((last.type, last.event, last.nickname), (SYSTEM, LEFT, "bob"))

    def test_leave_after_last_messages(self) -> None:
        """Messages sent just before hanging up reach the others before the
        notice that their sender left (issue 13): the leave waits for what
        the member had sent to be stored and published."""
        observer = self.observer()
        bob = self.join("bob")
        bob.say("last words")
        bob.say("really")
        bob.hang_up()
        self.settle()
        self.assertTrue(bob.closed)
        events = [
            m.content if m.type == CHAT else m.event
            for m in observer.received
            if m.nickname == "bob" and m.event != JOINED
        ]
        self.assertEqual(events, ["last words", "really", LEFT])

    def test_shutdown(self) -> None:
        """Stopping the service gives every member this surface's goodbye
        and closes it (with 1001 where there are close codes)."""
        alice = self.join("alice")
        bob = self.join("bob", "elsewhere")
        self.successResultOf(self.service.stopService())
        self.settle()
        for member in (alice, bob):
            self.assertEqual(member.take(), self.shutdown_events)
            self.assertTrue(member.closed)
            self.assertEqual(member.close_code, self.shutdown_code)
        self.assertEqual(self.service.connection_count, 0)


class RateBehaviour(MemberHelpers):
    """The per-account rate limit as every surface shows it."""

    limits = Limits(rate_limit=1, rate_burst=2)
    clock: Clock

    def test_rate_limit(self) -> None:
        """Past the burst a message is refused with ``rate_limited``; the
        connection stays, and tokens come back with time."""
        alice = self.join("alice")
        bob = self.join("bob")
        alice.take()
        for text in ("one", "two", "three"):
            alice.say(text)
            self.settle()
        self.assertEqual(bob.chat(), self.said("alice", "one", "two"))
        events = alice.chat()
        self.assertRefused(alice, "rate_limited", events)
        if self.refusal_closes:
            return
        self.assertEqual(events, [*self.back("alice", "one", "two"), ("error", "rate_limited")])
        self.clock.advance(1)
        alice.say("four")
        self.settle()
        self.assertEqual(bob.chat(), self.said("alice", "four"))


# -- the suites: every surface, on both transport paths ------------------------------------------


class LineRoomTests(RoomBehaviour, LineSurface, SurfaceCase):
    """Rooms over plain TCP."""


class MyChatRoomTests(RoomBehaviour, MyChatSurface, SurfaceCase):
    """Rooms over /mychat."""


class RoomSocketRoomTests(RoomBehaviour, RoomSocketSurface, SurfaceCase):
    """Rooms over /ws/{room}."""


class AppSocketRoomTests(RoomBehaviour, AppSocketSurface, SurfaceCase):
    """Rooms over /ws."""


class IrcRoomTests(RoomBehaviour, IrcSurface, SurfaceCase):
    """Rooms over IRC."""


class GarinChatRoomTests(RoomBehaviour, GarinChatSurface, SurfaceCase):
    """Rooms over the GarinChat dialect."""


class GolangChatRoomTests(RoomBehaviour, GolangChatSurface, SurfaceCase):
    """Rooms over the golang-chat dialect."""


class LineRateTests(RateBehaviour, LineSurface, SurfaceCase):
    """The rate limit over plain TCP."""


class MyChatRateTests(RateBehaviour, MyChatSurface, SurfaceCase):
    """The rate limit over /mychat."""


class RoomSocketRateTests(RateBehaviour, RoomSocketSurface, SurfaceCase):
    """The rate limit over /ws/{room}."""


class AppSocketRateTests(RateBehaviour, AppSocketSurface, SurfaceCase):
    """The rate limit over /ws."""


class IrcRateTests(RateBehaviour, IrcSurface, SurfaceCase):
    """The rate limit over IRC."""


class GarinChatRateTests(RateBehaviour, GarinChatSurface, SurfaceCase):
    """The rate limit over the GarinChat dialect."""


class GolangChatRateTests(RateBehaviour, GolangChatSurface, SurfaceCase):
    """The rate limit over the golang-chat dialect."""


class LinePlainPathTests(LineRoomTests):
    """Rooms over plain TCP, on public APIs only."""

    paths = PLAIN


class MyChatPlainPathTests(MyChatRoomTests):
    """Rooms over /mychat, on public APIs only."""

    paths = PLAIN


class RoomSocketPlainPathTests(RoomSocketRoomTests):
    """Rooms over /ws/{room}, on public APIs only."""

    paths = PLAIN


class AppSocketPlainPathTests(AppSocketRoomTests):
    """Rooms over /ws, on public APIs only."""

    paths = PLAIN


class IrcPlainPathTests(IrcRoomTests):
    """Rooms over IRC, on public APIs only."""


class GarinChatPlainPathTests(GarinChatRoomTests):
    """Rooms over the GarinChat dialect, on public APIs only."""

    paths = PLAIN


class GolangChatPlainPathTests(GolangChatRoomTests):
    """Rooms over the golang-chat dialect, on public APIs only."""

    paths = PLAIN


class DecodingTests(SurfaceCase):
    """Both JSON WebSocket surfaces read a frame the same way: UTF-8 text,
    then JSON (never bytes sniffed for UTF-16 or a byte-order mark)."""

    def test_utf16_and_bom_refused_everywhere(self) -> None:
        """JSON in UTF-16 (valid UTF-8 bytes, as NULs and ASCII) or after a
        UTF-8 byte-order mark is not valid JSON on /ws/{room} nor on /ws."""
        self.account("alice")
        room = RoomSocketSurface.connect_member(self, "alice", "dev")
        app = AppSocketSurface.connect_member(self, "alice", "dev")
        room.take()
        app.take()
        for member, frame in ((room, {"content": "hi"}), (app, {"type": "ping"})):
            for payload in (
                json.dumps(frame).encode("utf-16-be"),
                b"\xef\xbb\xbf" + json.dumps(frame).encode(),
            ):
                member.client.sendMessage(payload)
                self.settle()
                [error] = member.client.take()
                self.assertEqual(
                    (error["code"], error["content"]),
                    ("invalid_request", "frame is not valid JSON"),
                )
        self.assertEqual(self.successResultOf(self.service.history("dev")), [])
