"""The IRC adapter (``parkchat.protocols.irc``): every command and numeric,
over ``twisted.test.iosim`` on a ``Clock``, against a real service on the
in-memory store. What IRC shares with every surface (rooms, rate limits,
shutdown) is also run by tests/test_surfaces.py."""

from __future__ import annotations

import base64
from dataclasses import replace
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.test import iosim
from twisted.trial.unittest import TestCase
from zope.interface.verify import verifyObject

from parkchat.errors import Banned
from parkchat.interfaces import IParticipant
from parkchat.limits import Limits
from parkchat.model import (
    CHAT,
    CONNECTION_CLOSED,
    JOINED,
    LEFT,
    PART,
    PING_TIMEOUT,
    QUIT,
    QUIT_REASONS,
    SYSTEM,
    Departure,
    DisconnectReason,
    Message,
)
from parkchat.protocols.fastpath import PLAIN
from parkchat.protocols.irc import IrcConnection, IrcFactory, IrcOptions, looks_like_token
from parkchat.tokens import TokenAuthority, TokenVerifier
from tests.helpers import FakeParticipant, adapter_context, make_service, settle_pumps
from tests.irc_support import Line, RawIrcClient

START = 1_757_345_400.0
SERVER = IPv4Address("TCP", "127.0.0.1", 6667)
MAX_CONTENT = 1000
HISTORY_CAPS = ("batch", "server-time", "message-tags", "draft/chathistory")
MULTILINE_CAPS = ("batch", "server-time", "message-tags", "draft/multiline")


def commands(lines: list[Line]) -> list[str]:
    return [line.command for line in lines]


class IrcCase(TestCase):
    """A started service, an IRC factory on its Clock, and clients wired
    to it through ``iosim``."""

    options = IrcOptions(ping_interval=0, registration_timeout=10)
    limits = Limits(rate_limit=0, max_content_length=MAX_CONTENT)
    paths = PLAIN

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(START)
        self.service, self.store, _ = make_service(clock=self.clock, limits=self.limits)
        self.authority = TokenAuthority(b"k" * 32, self.clock)
        options = replace(self.options, tokens=TokenVerifier(self.authority))
        self.factory = IrcFactory(
            adapter_context(self.service, self.clock, paths=self.paths), options
        )
        self.pumps: list[iosim.IOPump] = []
        self.transports: list[iosim.FakeTransport] = []
        self.accounts: dict[str, tuple[int, str]] = {}
        self.next_port = 50000
        self.servers: dict[RawIrcClient, IrcConnection] = {}
        self.addCleanup(self.close_everything)

    def close_everything(self) -> None:
        for transport in self.transports:
            if not transport.disconnecting:
                transport.loseConnection()
        self.settle()
        if self.service.running:
            self.successResultOf(self.service.stopService())
        self.settle()

    def settle(self) -> None:
        if not settle_pumps(self.clock, self.pumps):
            self.fail("the connections never settled")

    def connect(self) -> RawIrcClient:
        self.next_port += 1
        peer = IPv4Address("TCP", "127.0.0.1", self.next_port)
        server = self.factory.buildProtocol(peer)
        client = RawIrcClient()
        server_transport = iosim.FakeTransport(
            server, isServer=True, hostAddress=SERVER, peerAddress=peer
        )
        client_transport = iosim.FakeTransport(
            client, isServer=False, hostAddress=peer, peerAddress=SERVER
        )
        self.pumps.append(iosim.connect(server, server_transport, client, client_transport))
        self.transports.append(client_transport)
        self.servers[client] = server
        self.settle()
        return client

    def server_of(self, client: RawIrcClient) -> IrcConnection:
        return self.servers[client]

    def send(self, client: RawIrcClient, *lines: str) -> list[Line]:
        """Send ``lines``, let everything settle, return what came back."""
        client.send(*lines)
        self.settle()
        return client.take()

    def account(self, nickname: str) -> tuple[int, str]:
        if nickname not in self.accounts:
            password = f"{nickname}-pw"
            user = self.successResultOf(self.service.register(nickname, password))
            self.accounts[nickname] = (user.id, password)
        return self.accounts[nickname]

    def register(
        self,
        nick: str,
        *,
        caps: tuple[str, ...] = (),
        password: str | None = None,
        sasl: tuple[str, str] | None = None,
    ) -> RawIrcClient:
        """A client through registration, with the welcome burst taken."""
        client = self.connect()
        lines = []
        if caps or sasl:
            wanted = " ".join(caps + (("sasl",) if sasl else ()))
            lines += ["CAP LS 302", f"CAP REQ :{wanted}"]
        if password is not None:
            lines.append(f"PASS {password}")
        lines += [f"NICK {nick}", "USER u 0 * :Real Name"]
        client.send(*lines)
        self.settle()
        if sasl:
            client.send("AUTHENTICATE PLAIN")
            self.settle()
            secret = base64.b64encode(f"\0{sasl[0]}\0{sasl[1]}".encode()).decode()
            client.send(f"AUTHENTICATE {secret}")
            self.settle()
        if caps or sasl:
            client.send("CAP END")
            self.settle()
        received = client.take()
        self.assertIn("001", commands(received), received)
        return client

    def joined(self, nick: str, room: str = "dev", **kwargs: Any) -> RawIrcClient:
        client = self.register(nick, **kwargs)
        received = self.send(client, f"JOIN #{room}")
        self.assertEqual(commands(received)[0], "JOIN")
        return client

    def observer(
        self, room: str = "dev", nickname: str = "observer", peer_host: str = "127.0.0.1"
    ) -> FakeParticipant:
        observer = FakeParticipant(nickname, peer_host=peer_host)
        self.service.connect(observer)
        self.service.join(observer, room)
        return observer


class RegistrationTests(IrcCase):
    """NICK, USER, CAP, PASS, SASL and the welcome burst."""

    def test_guest_welcome_burst(self) -> None:
        """NICK and USER register a guest: 001-005 with the ISUPPORT tokens,
        then 422 (no MOTD)."""
        client = self.connect()
        received = self.send(client, "NICK mina", "USER mina 0 * :Mina M")
        self.assertEqual(commands(received), ["001", "002", "003", "004", "005", "422"])
        self.assertTrue(all(line.params[0] == "mina" for line in received))
        self.assertEqual(received[0].prefix, "irc.parkchat")
        isupport = received[4].params[1:-1]
        for token in (
            "CASEMAPPING=ascii",
            "CHANTYPES=#",
            "NICKLEN=32",
            "CHANNELLEN=65",
            "CHATHISTORY=200",
            "CLIENTTAGDENY=*,-typing",
            "MSGREFTYPES=msgid,timestamp",
            "UTF8ONLY",
        ):
            self.assertIn(token, isupport)
        server = self.server_of(client)
        self.assertEqual((server.nickname, server.user_id), ("mina", None))
        self.assertEqual(self.service.connection_count, 1)
        verifyObject(IParticipant, server)

    def test_motd(self) -> None:
        """With a MOTD, registration ends with 375, one 372 per line, 376;
        MOTD sends it again."""
        self.factory.options = replace(self.factory.options, motd=("Welcome", "Be kind"))
        client = self.connect()
        received = self.send(client, "NICK mina", "USER mina 0 * :Mina")
        self.assertEqual(commands(received)[-4:], ["375", "372", "372", "376"])
        self.assertEqual([line.text for line in received[-3:-1]], ["- Welcome", "- Be kind"])
        self.assertEqual(commands(self.send(client, "MOTD")), ["375", "372", "372", "376"])

    def test_commands_before_registration(self) -> None:
        """Anything but the registration commands before registering is 451."""
        client = self.connect()
        [reply] = self.send(client, "JOIN #dev")
        self.assertEqual(reply.command, "451")

    def test_bad_nicknames(self) -> None:
        """A nickname against the naming rules is 432, no nickname 431; the
        client may try another one."""
        client = self.connect()
        [reply] = self.send(client, "NICK :bad nick")
        self.assertEqual((reply.command, reply.params[1]), ("432", "bad"))
        self.assertIn("[invalid_nickname]", reply.text)
        self.assertEqual(commands(self.send(client, "NICK")), ["431"])
        received = self.send(client, "NICK good", "USER u 0 * :x")
        self.assertEqual(commands(received)[0], "001")

    def test_user_needs_params(self) -> None:
        """USER with fewer than four parameters is 461."""
        client = self.connect()
        [reply] = self.send(client, "USER u 0")
        self.assertEqual((reply.command, reply.params[1]), ("461", "USER"))

    def test_guest_cannot_take_an_account_name(self) -> None:
        """A guest with a registered account's name gets 433 and registers
        under another nickname."""
        self.account("alice")
        client = self.connect()
        [reply] = self.send(client, "NICK Alice", "USER u 0 * :x")
        self.assertEqual((reply.command, reply.params[1]), ("433", "Alice"))
        self.assertIn("[nickname_taken]", reply.text)
        received = self.send(client, "NICK alice_")
        self.assertEqual(commands(received)[0], "001")
        self.assertEqual(self.server_of(client).nickname, "alice_")

    def test_guests_not_allowed(self) -> None:
        """Without guests, registering without credentials is 464 and the
        connection closes."""
        self.factory.options = replace(self.factory.options, allow_guests=False)
        client = self.connect()
        received = self.send(client, "NICK mina", "USER u 0 * :x")
        self.assertEqual(commands(received), ["464", "ERROR"])
        self.assertTrue(client.lost)

    def test_password(self) -> None:
        """PASS with the account's password logs the nickname in."""
        user_id, password = self.account("alice")
        client = self.register("alice", password=password)
        server = self.server_of(client)
        self.assertEqual((server.nickname, server.user_id), ("alice", user_id))

    def test_wrong_password(self) -> None:
        """A wrong PASS is 464, then ERROR, and the connection closes."""
        self.account("alice")
        client = self.connect()
        received = self.send(client, "PASS nope", "NICK alice", "USER u 0 * :x")
        self.assertEqual(commands(received), ["464", "ERROR"])
        self.assertIn("[unauthorized]", received[0].text)
        self.assertTrue(client.lost)
        self.assertEqual(self.service.connection_count, 0)

    def test_token_as_password(self) -> None:
        """A token from /login works as the password of its own name only."""
        user_id, _ = self.account("alice")
        token, _ = self.authority.issue(user_id, "alice")
        self.assertTrue(looks_like_token(token))
        client = self.register("alice", password=token)
        server = self.server_of(client)
        self.assertEqual((server.user_id, server.token_id is not None), (user_id, True))
        other = self.connect()
        received = self.send(other, f"PASS {token}", "NICK bob", "USER u 0 * :x")
        self.assertEqual(commands(received), ["464", "ERROR"])

    def test_banned_account(self) -> None:
        """A banned account is refused with 465 and closed."""
        _, password = self.account("alice")
        self.successResultOf(self.service.ban("alice", "spam"))
        client = self.connect()
        received = self.send(client, f"PASS {password}", "NICK alice", "USER u 0 * :x")
        self.assertEqual(commands(received), ["465", "ERROR"])
        self.assertTrue(client.lost)

    def test_pass_and_user_after_registration(self) -> None:
        """PASS and USER after registration are 462."""
        client = self.register("mina")
        self.assertEqual(commands(self.send(client, "PASS x", "USER u 0 * :x")), ["462", "462"])

    def test_nick_change_refused(self) -> None:
        """Nicknames are identities on parkchat: NICK after registration is
        447 (the same nickname again is nothing)."""
        client = self.register("mina")
        self.assertEqual(self.send(client, "NICK mina"), [])
        [reply] = self.send(client, "NICK other")
        self.assertEqual((reply.command, reply.params[1]), ("447", "other"))

    def test_registration_timeout(self) -> None:
        """A client that does not register in time gets ERROR and is closed."""
        client = self.connect()
        client.send("NICK mina")
        self.settle()
        self.clock.advance(10)
        self.settle()
        [error] = client.take()
        self.assertEqual(
            (error.command, error.text), ("ERROR", "Closing link: registration timeout")
        )
        self.assertTrue(client.lost)

    def test_registration_waits_for_cap_end(self) -> None:
        """A client that starts CAP negotiation registers at CAP END."""
        client = self.connect()
        received = self.send(client, "CAP LS 302", "NICK mina", "USER u 0 * :x")
        self.assertEqual(commands(received), ["CAP"])
        self.assertEqual(commands(self.send(client, "CAP END"))[0], "001")

    def test_lines_while_checking_are_kept(self) -> None:
        """Commands sent right after USER, while the registration is being
        checked, run once it is done, in order."""
        _, password = self.account("alice")
        client = self.connect()
        received = self.send(client, f"PASS {password}", "NICK alice", "USER u 0 * :x", "JOIN #dev")
        self.assertIn("JOIN", commands(received))
        self.assertEqual(self.service.members("dev"), ["alice"])


class CapabilityTests(IrcCase):
    """CAP LS, REQ, LIST, END."""

    def test_ls(self) -> None:
        """CAP LS lists every capability; with 302, SASL's mechanism too."""
        client = self.connect()
        [old] = self.send(client, "CAP LS")
        self.assertEqual(old.params[:2], ["*", "LS"])
        self.assertEqual(
            old.text.split(),
            [
                "batch",
                "draft/chathistory",
                "draft/multiline",
                "echo-message",
                "message-tags",
                "sasl",
                "server-time",
            ],
        )
        [new] = self.send(client, "CAP LS 302")
        self.assertIn("sasl=PLAIN", new.text.split())
        self.assertIn("draft/multiline=max-bytes=4096,max-lines=100", new.text.split())

    def test_req_ack_nak_list(self) -> None:
        """REQ of known capabilities is ACKed (all), of any unknown one NAKed
        (none); LIST shows what is on; -cap turns one off."""
        client = self.connect()
        [ack] = self.send(client, "CAP REQ :server-time echo-message")
        self.assertEqual((ack.params[1], ack.text), ("ACK", "server-time echo-message"))
        [nak] = self.send(client, "CAP REQ :server-time away-notify")
        self.assertEqual((nak.params[1], nak.text), ("NAK", "server-time away-notify"))
        [listed] = self.send(client, "CAP LIST")
        self.assertEqual(listed.text, "echo-message server-time")
        self.send(client, "CAP REQ -echo-message")
        [listed] = self.send(client, "CAP LIST")
        self.assertEqual(listed.text, "server-time")

    def test_bad_cap(self) -> None:
        """An unknown CAP subcommand is 410; CAP alone 461."""
        client = self.connect()
        [reply] = self.send(client, "CAP FROB")
        self.assertEqual((reply.command, reply.params[1]), ("410", "FROB"))
        [reply] = self.send(client, "CAP")
        self.assertEqual(reply.command, "461")


class SaslTests(IrcCase):
    """SASL PLAIN (AUTHENTICATE)."""

    def authenticate(self, client: RawIrcClient, authzid: str, authcid: str, pw: str) -> list[Line]:
        self.send(client, "CAP REQ sasl")
        [plus] = self.send(client, "AUTHENTICATE PLAIN")
        self.assertEqual((plus.command, plus.params), ("AUTHENTICATE", ["+"]))
        secret = base64.b64encode(f"{authzid}\0{authcid}\0{pw}".encode()).decode()
        return self.send(client, f"AUTHENTICATE {secret}")

    def test_success(self) -> None:
        """Good credentials: 900 and 903; registration then uses the account
        (and its nickname, whatever NICK said)."""
        user_id, password = self.account("alice")
        client = self.connect()
        client.send("CAP LS 302", "NICK someone", "USER u 0 * :x")
        self.settle()
        client.take()
        received = self.authenticate(client, "", "Alice", password)
        self.assertEqual(commands(received), ["900", "903"])
        self.assertEqual(received[0].params[2], "alice")
        # Addressed to the nickname the client gave (as WeeChat expects), not "*".
        self.assertEqual([line.params[0] for line in received], ["someone", "someone"])
        welcome = self.send(client, "CAP END")
        self.assertEqual(welcome[0].params[0], "alice")
        server = self.server_of(client)
        self.assertEqual((server.nickname, server.user_id), ("alice", user_id))

    def test_failure(self) -> None:
        """Bad credentials are 904; the client may still register as a
        guest, but not with the account's name."""
        self.account("alice")
        client = self.connect()
        client.send("CAP LS 302", "NICK alice", "USER u 0 * :x")
        self.settle()
        client.take()
        [fail] = self.authenticate(client, "", "alice", "nope")
        self.assertEqual(fail.command, "904")
        self.assertIn("[unauthorized]", fail.text)
        [taken] = self.send(client, "CAP END")
        self.assertEqual(taken.command, "433")

    def test_authzid_must_be_authcid(self) -> None:
        """Logging in as one account on behalf of another is 904."""
        _, password = self.account("alice")
        client = self.connect()
        [fail] = self.authenticate(client, "bob", "alice", password)
        self.assertEqual(fail.command, "904")

    def test_other_mechanism(self) -> None:
        """Another mechanism: 908 lists PLAIN, then 904."""
        client = self.connect()
        self.send(client, "CAP REQ sasl")
        received = self.send(client, "AUTHENTICATE EXTERNAL")
        self.assertEqual(commands(received), ["908", "904"])
        self.assertEqual(received[0].params[1], "PLAIN")

    def test_abort_and_too_long(self) -> None:
        """``AUTHENTICATE *`` is 906; an answer over 1600 bytes is 905;
        malformed base64 is 904."""
        client = self.connect()
        self.send(client, "CAP REQ sasl")
        self.send(client, "AUTHENTICATE PLAIN")
        self.assertEqual(commands(self.send(client, "AUTHENTICATE *")), ["906"])
        self.send(client, "AUTHENTICATE PLAIN")
        for _ in range(4):
            self.assertEqual(self.send(client, "AUTHENTICATE " + "A" * 400), [])
        self.assertEqual(commands(self.send(client, "AUTHENTICATE " + "A" * 400)), ["905"])
        self.send(client, "AUTHENTICATE PLAIN")
        self.assertEqual(commands(self.send(client, "AUTHENTICATE !!!")), ["904"])

    def test_without_cap_or_after_registration(self) -> None:
        """AUTHENTICATE without the sasl capability is 904; once registered,
        907."""
        client = self.connect()
        self.assertEqual(commands(self.send(client, "AUTHENTICATE PLAIN")), ["904"])
        registered = self.register("mina")
        self.assertEqual(commands(self.send(registered, "AUTHENTICATE PLAIN")), ["907"])
        self.assertEqual(commands(self.send(registered, "AUTHENTICATE")), ["461"])


class LineTests(IrcCase):
    """Framing, limits and keep-alive."""

    def test_unknown_command(self) -> None:
        """An unknown command is 421 and changes nothing."""
        client = self.register("mina")
        [reply] = self.send(client, "FROBNICATE x")
        self.assertEqual((reply.command, reply.params[1]), ("421", "FROBNICATE"))

    def test_line_too_long(self) -> None:
        """A line over 512 bytes (with CRLF) is 417 and dropped; with tags
        the part after them may still be 510 bytes."""
        client = self.joined("mina")
        [reply] = self.send(client, "PRIVMSG #dev :" + "x" * 500)
        self.assertEqual(reply.command, "417")
        tags = "@+draft/reply=" + "y" * 4000
        self.assertEqual(self.send(client, f"{tags} PRIVMSG #dev :" + "x" * 100), [])
        self.assertEqual(
            [m.content for m in self.successResultOf(self.service.history("dev"))], ["x" * 100]
        )

    def test_endless_line(self) -> None:
        """Bytes without a newline past the longest line a client may send
        (4094 bytes of tags, then 512) are 417 once; the rest of that line
        is skipped and the next line works."""
        client = self.joined("mina")
        client.send_bytes(b"PRIVMSG #dev :" + b"x" * 9000)
        self.settle()
        self.assertEqual(commands(client.take()), ["417"])
        client.send_bytes(b"y" * 100 + b"\r\nPING :t\r\n")
        self.settle()
        self.assertEqual(commands(client.take()), ["PONG"])

    def test_not_utf8(self) -> None:
        """A line that is not UTF-8 is refused with FAIL ... INVALID_UTF8."""
        client = self.joined("mina")
        client.send_bytes(b"PRIVMSG #dev :caf\xe9\r\n")
        self.settle()
        [fail] = client.take()
        self.assertEqual(fail.command, "FAIL")
        self.assertEqual(fail.params[:2], ["PRIVMSG", "INVALID_UTF8"])

    def test_client_tags_limit(self) -> None:
        """Over 4094 bytes of tag data is 417 (message-tags), even when the
        rest of the line is short."""
        client = self.joined("mina")
        [reply] = self.send(client, "@+x=" + "y" * 4092 + " PRIVMSG #dev :hi")
        self.assertEqual(reply.command, "417")
        self.assertEqual(self.successResultOf(self.service.history("dev")), [])

    def test_connections_per_address(self) -> None:
        """Past ``max_connections_per_ip`` registered connections from one
        address, another is told why (ERROR) and closed at once."""
        self.factory.max_connections_per_ip = 1
        self.service.connect(FakeParticipant("other", peer_host="127.0.0.1"))
        client = self.connect()
        self.assertEqual(
            [line.raw for line in client.take()],
            ["ERROR :Closing link: too many connections from 127.0.0.1"],
        )
        self.assertTrue(client.lost)
        self.assertEqual(self.factory.context.metrics.connections_refused, 1)

    def test_lf_only_and_blank_lines(self) -> None:
        """LF-only lines work; blank lines are ignored."""
        client = self.register("mina")
        client.send_bytes(b"\r\n\nPING :abc\n")
        self.settle()
        [pong] = client.take()
        self.assertEqual((pong.command, pong.params), ("PONG", ["irc.parkchat", "abc"]))

    def test_ping_needs_origin(self) -> None:
        """PING without a parameter is 409."""
        client = self.register("mina")
        self.assertEqual(commands(self.send(client, "PING")), ["409"])


class KeepAliveTests(IrcCase):
    """The server's PING after silence, and the timeout."""

    options = IrcOptions(ping_interval=30, ping_timeout=20)

    def test_ping_and_timeout(self) -> None:
        """After 30 s of silence the server sends PING; a PONG keeps the
        connection; silence for 20 s more closes it with ERROR."""
        client = self.register("mina")
        self.clock.advance(30)
        self.settle()
        [ping] = client.take()
        self.assertEqual((ping.command, ping.params), ("PING", ["irc.parkchat"]))
        self.send(client, "PONG :irc.parkchat")
        self.clock.advance(30)
        self.settle()
        self.assertEqual(commands(client.take()), ["PING"])
        self.clock.advance(20)
        self.settle()
        [error] = client.take()
        self.assertEqual((error.command, error.text), ("ERROR", "Closing link: Ping timeout"))
        self.assertTrue(client.lost)
        self.assertEqual(self.service.connection_count, 0)

    def test_quit(self) -> None:
        """QUIT: ERROR, closed, out of every room; the others are told it
        quit, with "Quit: " and its words (as IRC servers show them)."""
        observer = self.observer()
        client = self.joined("mina")
        [error] = self.send(client, "QUIT :bye \x02all\x02")
        self.assertEqual((error.command, error.text), ("ERROR", "Closing link: Quit: bye all"))
        self.assertTrue(client.lost)
        last = observer.received[-1]
        self.assertEqual((last.type, last.event, last.nickname), (SYSTEM, LEFT, "mina"))
        self.assertEqual(last.departure, Departure(QUIT, "Quit: bye all"))

    def test_quit_reasons(self) -> None:
        """A ping timeout is "Ping timeout" to the others, a connection that
        just closes "Connection closed"."""
        observer = self.observer()
        silent = self.joined("mina")
        self.clock.advance(30)
        self.clock.advance(20)
        self.settle()
        self.assertTrue(silent.lost)
        self.assertEqual(observer.received[-1].departure, Departure(QUIT, PING_TIMEOUT))
        client = self.joined("omar")
        assert client.transport is not None
        client.transport.loseConnection()
        self.settle()
        self.assertEqual(observer.received[-1].departure, Departure(QUIT, CONNECTION_CLOSED))


class ChannelTests(IrcCase):
    """JOIN, PART, NAMES, WHO, TOPIC, LIST, MODE, KICK."""

    def test_join(self) -> None:
        """JOIN #room puts the client in the parkchat room ``room``: its own
        JOIN, then NAMES (353, 366); members elsewhere hear of it."""
        observer = self.observer()
        client = self.register("mina")
        received = self.send(client, "JOIN #dev")
        self.assertEqual(commands(received), ["JOIN", "353", "366"])
        # A guest: "~" before its user part (docs/irc.md).
        self.assertEqual(received[0].prefix, "mina!~mina@irc.parkchat")
        self.assertEqual(received[0].params, ["#dev"])
        self.assertEqual(received[1].params[1:3], ["=", "#dev"])
        self.assertEqual(sorted(received[1].text.split()), ["mina", "observer"])
        self.assertEqual(self.service.rooms_of(self.server_of(client)), {"dev"})
        last = observer.received[-1]
        self.assertEqual((last.type, last.event, last.nickname), (SYSTEM, JOINED, "mina"))
        self.assertEqual(self.send(client, "JOIN #dev"), [])  # already there

    def test_join_several_and_zero(self) -> None:
        """JOIN takes a comma list; JOIN 0 leaves every channel."""
        client = self.register("mina")
        received = self.send(client, "JOIN #a,#b")
        self.assertEqual(commands(received), ["JOIN", "353", "366", "JOIN", "353", "366"])
        received = self.send(client, "JOIN 0")
        self.assertEqual(
            [(r.command, r.params[0]) for r in received], [("PART", "#a"), ("PART", "#b")]
        )
        self.assertEqual(self.service.rooms_of(self.server_of(client)), frozenset())

    def test_join_errors(self) -> None:
        """No parameter is 461; a name without # or an invalid room name 403,
        each target of a list on its own."""
        client = self.register("mina")
        self.assertEqual(commands(self.send(client, "JOIN")), ["461"])
        received = self.send(client, "JOIN dev,#" + "x" * 65 + ",#ok")
        self.assertEqual(commands(received), ["403", "403", "JOIN", "353", "366"])
        self.assertIn("[invalid_room]", received[1].text)

    def test_guest_name_taken_in_room(self) -> None:
        """A guest may not join a room where someone has its name: 437."""
        self.observer(nickname="mina")
        client = self.register("Mina")
        [reply] = self.send(client, "JOIN #dev")
        self.assertEqual((reply.command, reply.params[1]), ("437", "#dev"))
        self.assertIn("[nickname_taken]", reply.text)

    def test_part(self) -> None:
        """PART leaves (its own PART line, with the reason); PART of a room
        not joined is 442; no parameter 461."""
        observer = self.observer()
        client = self.joined("mina")
        [part] = self.send(client, "PART #dev :see \x1fyou")
        self.assertEqual((part.command, part.params), ("PART", ["#dev", "see you"]))
        self.assertEqual(observer.received[-1].event, LEFT)
        self.assertEqual(observer.received[-1].departure, Departure(PART, "see you"))
        self.assertEqual(commands(self.send(client, "PART #dev")), ["442"])
        self.assertEqual(commands(self.send(client, "PART")), ["461"])

    def test_names(self) -> None:
        """NAMES lists a room's members, long lists over several 353 lines."""
        for n in range(40):
            # Guests from 40 addresses (an address holds 20 guests at most).
            self.observer(nickname=f"person{n:02d}-with-a-long-name", peer_host=f"10.0.0.{n}")
        client = self.register("mina")
        received = self.send(client, "NAMES #dev")
        self.assertEqual(commands(received)[-1], "366")
        names = [name for line in received[:-1] for name in line.text.split()]
        self.assertEqual(len(names), 40)
        self.assertGreater(len(received), 2)
        self.assertEqual(commands(self.send(client, "NAMES")), ["366"])

    def test_who_whois_whowas_ison_userhost(self) -> None:
        """WHO (352/315), WHOIS (311/312/318 or 401), WHOWAS (406/369), ISON
        (303), USERHOST (302)."""
        self.observer()
        client = self.joined("mina")
        received = self.send(client, "WHO #dev")
        self.assertEqual(commands(received), ["352", "352", "315"])
        self.assertEqual(sorted(line.params[5] for line in received[:2]), ["mina", "observer"])
        self.assertEqual(commands(self.send(client, "WHO observer")), ["352", "315"])
        self.assertEqual(commands(self.send(client, "WHOIS observer")), ["311", "312", "318"])
        self.assertEqual(commands(self.send(client, "WHOIS nobody")), ["401", "318"])
        self.assertEqual(commands(self.send(client, "WHOWAS nobody")), ["406", "369"])
        [ison] = self.send(client, "ISON observer nobody")
        self.assertEqual((ison.command, ison.text), ("303", "observer"))
        [userhost] = self.send(client, "USERHOST observer")
        self.assertEqual(
            (userhost.command, userhost.text), ("302", "observer=+observer@irc.parkchat")
        )
        self.assertEqual(
            commands(self.send(client, "WHOIS", "ISON", "USERHOST")), ["431", "461", "461"]
        )

    def test_list(self) -> None:
        """LIST: 321, one 322 per active room (with its head count), 323;
        rooms an IRC client could not name are left out."""
        self.observer("dev")
        self.observer("dev", "other")
        self.observer("two words")
        client = self.joined("mina", "ops")
        received = self.send(client, "LIST")
        self.assertEqual(commands(received), ["321", "322", "322", "323"])
        self.assertEqual([r.params[1:3] for r in received[1:3]], [["#dev", "2"], ["#ops", "1"]])
        received = self.send(client, "LIST #ops")
        self.assertEqual([r.params[1] for r in received if r.command == "322"], ["#ops"])

    def test_topic(self) -> None:
        """TOPIC without a topic is 331; the rest is tests/test_irc_topics.py."""
        client = self.joined("mina")
        self.assertEqual(commands(self.send(client, "TOPIC #dev")), ["331"])
        self.assertEqual(commands(self.send(client, "TOPIC")), ["461"])
        self.assertEqual(commands(self.send(client, "TOPIC nochan")), ["403"])

    def test_mode(self) -> None:
        """MODE #room is 324 (+nt); ban-list queries end at once (368);
        changes are 482; one's own modes 221; another's 502."""
        client = self.joined("mina")
        [modes] = self.send(client, "MODE #dev")
        self.assertEqual((modes.command, modes.params[1:3]), ("324", ["#dev", "+nt"]))
        self.assertEqual(commands(self.send(client, "MODE #dev b")), ["368"])
        self.assertEqual(commands(self.send(client, "MODE #dev +o mina")), ["482"])
        self.assertEqual(commands(self.send(client, "MODE mina +i")), ["221"])
        self.assertEqual(commands(self.send(client, "MODE other")), ["502"])
        self.assertEqual(commands(self.send(client, "MODE")), ["461"])

    def test_kick_and_others(self) -> None:
        """KICK from a client is 482 (moderators kick through the admin
        API); AWAY is 306/305; VERSION 351."""
        client = self.joined("mina")
        self.assertEqual(commands(self.send(client, "KICK #dev observer")), ["482"])
        self.assertEqual(commands(self.send(client, "KICK #dev")), ["461"])
        self.assertEqual(commands(self.send(client, "AWAY :lunch", "AWAY")), ["306", "305"])
        self.assertEqual(commands(self.send(client, "VERSION")), ["351"])

    def test_kicked_by_moderator(self) -> None:
        """A moderator's kick reaches the client as KICK."""
        client = self.joined("mina")
        self.assertEqual(self.service.kick("mina", "dev", "be nice"), 1)
        self.settle()
        [kick] = client.take()
        self.assertEqual((kick.command, kick.params), ("KICK", ["#dev", "mina", "be nice"]))
        self.assertEqual(self.service.rooms_of(self.server_of(client)), frozenset())

    def test_banned_while_connected(self) -> None:
        """A ban closes the account's IRC connection with ERROR."""
        _, password = self.account("alice")
        client = self.register("alice", password=password)
        self.successResultOf(self.service.ban("alice"))
        self.settle()
        [error] = client.take()
        self.assertEqual((error.command, error.text), ("ERROR", "Closing link: banned"))
        self.assertTrue(client.lost)

    def test_banned_on_join(self) -> None:
        """A ban refusing a JOIN is 474 for that channel (elsewhere, 465):
        an account whose ban has not closed its connection yet."""
        _, password = self.account("alice")
        alice = self.register("alice", password=password)

        def banned(user_id: int) -> None:
            raise Banned("this account is banned")

        self.service.check_not_banned = banned  # type: ignore[method-assign]
        [refused] = self.send(alice, "JOIN #dev")
        self.assertEqual((refused.command, refused.params[1]), ("474", "#dev"))
        self.assertEqual(self.service.rooms_of(self.server_of(alice)), frozenset())
        client = self.joined("mina")
        server = self.server_of(client)
        server.send_error(Banned("this account is banned"), ("JOIN", "#dev"))
        server.send_error(Banned("this account is banned"), ("PASS", None))
        self.settle()
        [on_join, other] = client.take()
        self.assertEqual((on_join.command, on_join.params[1]), ("474", "#dev"))
        self.assertIn("[banned]", on_join.text)
        self.assertEqual(other.command, "465")

    def test_shutdown(self) -> None:
        """Stopping the service says goodbye with ERROR and closes."""
        client = self.joined("mina")
        self.successResultOf(self.service.stopService())
        self.settle()
        [error] = client.take()
        self.assertEqual(error.text, "Closing link: server shutting down")
        self.assertTrue(client.lost)


class RoomEventTests(IrcCase):
    """What other members' messages, joins and leaves look like on IRC."""

    def post(self, who: FakeParticipant, text: str, room: str = "dev") -> Message:
        d = self.service.post(who, room, text)
        self.settle()
        message: Message = self.successResultOf(d)
        return message

    def test_others_messages(self) -> None:
        """Another surface's message arrives as PRIVMSG from nick!nick@server,
        with ``time`` (server-time) and ``msgid`` (message-tags) tags only
        for the clients that asked for them."""
        plain = self.joined("plain")
        tagged = self.joined("tagged", caps=("server-time", "message-tags"))
        timed = self.joined("timed", caps=("server-time",))
        observer = self.observer()
        self.settle()
        for client in (plain, tagged, timed):
            client.take()
        message = self.post(observer, "hello irc")
        [line] = plain.take()
        self.assertEqual(line.raw, ":observer!~observer@irc.parkchat PRIVMSG #dev :hello irc")
        [line] = tagged.take()
        self.assertEqual(
            line.tags, {"time": message.timestamp, "msgid": f"{message.seq}-{message.id}"}
        )
        [line] = timed.take()
        self.assertEqual(line.tags, {"time": message.timestamp})

    def test_multiline_and_long(self) -> None:
        """Several lines become several PRIVMSGs, a line over 512 bytes is
        cut at a space (never in a character); msgids S-N, S-N.2, S-N.3..."""
        client = self.joined("mina", caps=("message-tags",))
        observer = self.observer()
        self.settle()
        client.take()
        long_line = " ".join(["héllo"] * 80)
        message = self.post(observer, f"first\nsecond\n{long_line}")
        lines = client.take()
        self.assertEqual([line.text for line in lines[:2]], ["first", "second"])
        self.assertEqual("".join(line.text for line in lines[2:]), long_line)
        self.assertGreater(len(lines), 3)
        base = f"{message.seq}-{message.id}"
        self.assertEqual(
            [line.tags["msgid"] for line in lines],
            [base] + [f"{base}.{n}" for n in range(2, len(lines) + 1)],
        )

    def test_multiline_batch(self) -> None:
        """With draft/multiline (and batch), a message of several lines is
        one batch: time and msgid on its opening, cut lines marked
        ``draft/multiline-concat``; one line is one PRIVMSG, as without."""
        client = self.joined("mina", caps=MULTILINE_CAPS)
        observer = self.observer()
        self.settle()
        client.take()
        long_line = " ".join(["word"] * 120)
        message = self.post(observer, f"first\n\n{long_line}")
        lines = client.take()
        reference = lines[0].params[0][1:]
        self.assertEqual(
            (lines[0].command, lines[0].params[1:], lines[0].prefix),
            ("BATCH", ["draft/multiline", "#dev"], "observer!~observer@irc.parkchat"),
        )
        self.assertEqual(
            lines[0].tags, {"time": message.timestamp, "msgid": f"{message.seq}-{message.id}"}
        )
        self.assertEqual((lines[-1].command, lines[-1].params), ("BATCH", ["-" + reference]))
        inner = lines[1:-1]
        self.assertTrue(all(line.tags["batch"] == reference for line in inner))
        self.assertEqual([line.text for line in inner[:2]], ["first", ""])
        self.assertEqual("".join(line.text for line in inner[2:]), long_line)
        self.assertEqual(
            ["draft/multiline-concat" in line.tags for line in inner],
            [False, False, False] + [True] * (len(inner) - 3),
        )
        self.post(observer, "just one")
        [line] = client.take()
        self.assertEqual((line.command, line.text), ("PRIVMSG", "just one"))

    def test_me_is_an_action(self) -> None:
        """``/me waves`` from any surface is a CTCP ACTION on IRC."""
        client = self.joined("mina")
        observer = self.observer()
        self.settle()
        client.take()
        self.post(observer, "/me waves")
        [line] = client.take()
        self.assertEqual(line.text, "\x01ACTION waves\x01")

    def test_joins_and_leaves(self) -> None:
        """Others joining and leaving are JOIN and PART; typing notices and
        deletions are not sent."""
        client = self.joined("mina")
        observer = FakeParticipant("observer")
        self.service.connect(observer)
        self.service.join(observer, "dev")
        self.service.notify(observer, "dev", "typing")
        self.service.leave(observer, "dev")
        self.settle()
        lines = client.take()
        self.assertEqual(
            [(line.command, line.nick) for line in lines],
            [("JOIN", "observer"), ("PART", "observer")],
        )

    def test_part_quit_and_kick(self) -> None:
        """How others leave: PART (with the reason their surface gave), QUIT
        when their connection went away (why, from ``QUIT_REASONS``), a
        KICK from the server when a moderator removed them."""
        client = self.joined("mina")
        people = {}
        for name in ("ana", "bob", "cyd", "dee"):
            people[name] = self.observer(nickname=name)
        self.settle()
        client.take()
        self.service.leave(people["ana"], "dev", "lunch \x07time")
        self.settle()
        self.service.disconnect(people["bob"])
        self.settle()
        # dee's socket fails on the next event: the server drops it.
        people["dee"].fail_sends = True
        self.service.kick("cyd", "dev", "be nice")
        self.settle()
        self.assertEqual(len(self.flushLoggedErrors(ConnectionError)), 1)
        self.assertEqual(
            [line.raw for line in client.take()],
            [
                ":ana!~ana@irc.parkchat PART #dev :lunch  time",
                ":bob!~bob@irc.parkchat QUIT :Connection closed",
                ":irc.parkchat KICK #dev cyd :be nice",
                ":dee!~dee@irc.parkchat QUIT :" + QUIT_REASONS[DisconnectReason.DELIVERY_FAILED],
            ],
        )

    def test_quit_reasons_cover_every_disconnect(self) -> None:
        """Every reason the server closes a connection for has a QUIT reason."""
        self.assertEqual(set(QUIT_REASONS), set(DisconnectReason))
        client = self.joined("mina")
        user_id, _ = self.account("ana")
        ana = FakeParticipant("ana", user_id=user_id)
        self.service.connect(ana)
        self.service.join(ana, "dev")
        self.successResultOf(self.service.ban("ana", "spam"))
        self.settle()
        self.assertEqual(client.take()[-1].raw, ":ana!ana@irc.parkchat QUIT :Banned")

    def test_one_quit_for_several_channels(self) -> None:
        """A member in several of the client's channels quits once (a QUIT
        takes it out of every channel); still online on another
        connection, it only parts the rooms it left."""
        client = self.joined("mina")
        self.send(client, "JOIN #ops")
        bob = self.observer("dev", "bob")
        self.service.join(bob, "ops")
        self.settle()
        client.take()
        self.service.disconnect(bob)
        self.settle()
        self.assertEqual(
            [line.raw for line in client.take()], [":bob!~bob@irc.parkchat QUIT :Connection closed"]
        )
        user_id, _ = self.account("ana")
        first, second = (FakeParticipant("ana", user_id=user_id) for _ in range(2))
        for connection in (first, second):
            self.service.connect(connection)
        self.service.join(first, "dev")
        self.settle()
        client.take()
        self.service.disconnect(first)
        self.settle()
        self.assertEqual(
            [line.raw for line in client.take()],
            [":ana!ana@irc.parkchat PART #dev :Connection closed"],
        )

    def test_departure_without_details(self) -> None:
        """A leave from an instance that does not say how (an earlier
        version) is a PART."""
        event = self.factory.encoder.encode(
            Message(room="dev", nickname="old", content="", timestamp_ms=0, type=SYSTEM, event=LEFT)
        )
        self.assertEqual(event.data(0), b":old!old@irc.parkchat PART #dev\r\n")

    def test_typing(self) -> None:
        """Typing on another surface is ``@+typing=active TAGMSG`` for the
        clients with message-tags; ``TAGMSG`` with ``+typing=active`` from
        IRC is a typing notice in the room (one a second at most)."""
        plain = self.joined("plain")
        tagged = self.joined("tagged", caps=("message-tags",))
        observer = self.observer()
        self.settle()
        plain.take()
        tagged.take()
        self.service.notify(observer, "dev", "typing")
        self.settle()
        self.assertEqual(plain.take(), [])
        [line] = tagged.take()
        self.assertEqual(line.raw, "@+typing=active :observer!observer@irc.parkchat TAGMSG #dev")
        self.assertEqual(self.send(tagged, "@+typing=active TAGMSG #dev"), [])
        self.assertEqual(self.send(tagged, "@+typing=active TAGMSG #dev"), [])
        typing = [m for m in observer.received if m.type == "typing"]
        self.assertEqual([m.nickname for m in typing], ["observer", "tagged"])
        self.assertEqual([line.command for line in plain.take()], [])
        self.assertEqual(self.send(tagged, "@+typing=done TAGMSG #dev", "@+x=y TAGMSG mina"), [])
        self.clock.advance(2)
        self.assertEqual(commands(self.send(tagged, "@+typing=active TAGMSG #elsewhere")), ["404"])
        self.assertEqual(commands(self.send(tagged, "TAGMSG")), ["411"])

    def test_own_other_connection(self) -> None:
        """The account joining or leaving on another connection does not
        make the IRC client think it joined or left."""
        user_id, password = self.account("alice")
        client = self.joined("alice", password=password)
        other = FakeParticipant("alice", user_id=user_id)
        self.service.connect(other)
        self.service.join(other, "dev")
        self.service.leave(other, "dev")
        self.settle()
        self.assertEqual(client.take(), [])


class MessageTests(IrcCase):
    """PRIVMSG and NOTICE from IRC clients."""

    def test_privmsg_to_room(self) -> None:
        """PRIVMSG #room is a stored room message that every member gets;
        without echo-message the sender gets nothing back."""
        observer = self.observer()
        client = self.joined("mina")
        other = self.joined("omar")
        client.take()
        self.assertEqual(self.send(client, "PRIVMSG #dev :hello everyone"), [])
        [stored] = self.successResultOf(self.service.history("dev"))
        self.assertEqual(
            (stored.nickname, stored.content, stored.type), ("mina", "hello everyone", CHAT)
        )
        self.assertEqual(observer.received[-1].content, "hello everyone")
        [line] = other.take()
        self.assertEqual((line.nick, line.text), ("mina", "hello everyone"))

    def test_echo_message(self) -> None:
        """With echo-message the sender gets its own message back, stored,
        with its msgid."""
        client = self.joined("mina", caps=("echo-message", "message-tags"))
        [echo] = self.send(client, "PRIVMSG #dev :hi")
        [stored] = self.successResultOf(self.service.history("dev"))
        self.assertEqual(
            (echo.nick, echo.text, echo.tags["msgid"]), ("mina", "hi", f"{stored.seq}-{stored.id}")
        )

    def test_notice_to_room(self) -> None:
        """NOTICE to a channel is a room message too."""
        client = self.joined("mina")
        self.send(client, "NOTICE #dev :heads up")
        [stored] = self.successResultOf(self.service.history("dev"))
        self.assertEqual(stored.content, "heads up")

    def test_errors(self) -> None:
        """411 without a target, 412 without text, 404 for a room not joined
        or content the room refuses (code in brackets); nothing stored."""
        client = self.joined("mina")
        self.assertEqual(commands(self.send(client, "PRIVMSG")), ["411"])
        self.assertEqual(commands(self.send(client, "PRIVMSG #dev")), ["412"])
        [reply] = self.send(client, "PRIVMSG #elsewhere :hi")
        self.assertEqual((reply.command, reply.params[1]), ("404", "#elsewhere"))
        self.assertIn("[not_in_room]", reply.text)
        [reply] = self.send(client, "PRIVMSG #dev :bell\x07")
        self.assertIn("[invalid_content]", reply.text)
        self.assertEqual(self.successResultOf(self.service.history("dev")), [])

    def test_multiline_from_the_client(self) -> None:
        """A client's draft/multiline batch is one message, posted when the
        batch closes: lines joined with newlines, concat ones without."""
        observer = self.observer()
        client = self.joined("mina", caps=MULTILINE_CAPS)
        self.settle()
        self.send(
            client,
            "BATCH +b1 draft/multiline #dev",
            "@batch=b1 PRIVMSG #dev :def hello():",
            "@batch=b1 PRIVMSG #dev :    return 'hi",
            "@batch=b1;draft/multiline-concat PRIVMSG #dev : there'",
        )
        self.assertEqual(observer.contents()[-1], "mina has joined the room")
        self.send(client, "BATCH -b1")
        self.assertEqual(observer.contents()[-1], "def hello():\n    return 'hi there'")

    def test_multiline_errors(self) -> None:
        """A batch without the capability, a second one, a line for another
        target, a concat first line, too many lines or bytes, an unknown
        reference: FAIL BATCH with the draft/multiline codes; nothing posted."""
        plain = self.joined("plain")
        [fail] = self.send(plain, "BATCH +x draft/multiline #dev")
        self.assertEqual(fail.params[:2], ["BATCH", "MULTILINE_INVALID"])
        client = self.joined("mina", caps=MULTILINE_CAPS)
        self.assertEqual(commands(self.send(client, "BATCH +x")), ["461"])
        for lines, code in (
            (
                ["BATCH +a draft/multiline #dev", "BATCH +b draft/multiline #dev"],
                "MULTILINE_INVALID",
            ),
            (["@batch=a PRIVMSG #other :x"], "MULTILINE_INVALID_TARGET"),
            (
                [
                    "BATCH +c draft/multiline #dev",
                    "@batch=c;draft/multiline-concat PRIVMSG #dev :x",
                ],
                "MULTILINE_INVALID",
            ),
            (
                ["BATCH +d draft/multiline #dev"] + ["@batch=d PRIVMSG #dev :x"] * 101,
                "MULTILINE_MAX_LINES",
            ),
            (
                ["BATCH +e draft/multiline #dev"] + ["@batch=e PRIVMSG #dev :" + "y" * 400] * 11,
                "MULTILINE_MAX_BYTES",
            ),
            (["BATCH -zz"], "MULTILINE_INVALID"),
            (["@batch=zz PRIVMSG #dev :x"], "MULTILINE_INVALID"),
        ):
            fails = [line for line in self.send(client, *lines) if line.command == "FAIL"]
            self.assertEqual([f.params[:2] for f in fails], [["BATCH", code]], lines)
        self.assertEqual(self.successResultOf(self.service.history("dev")), [])

    def test_formatting_removed(self) -> None:
        """Formatting codes are removed, with a NOTICE saying so; the text
        is posted."""
        client = self.joined("mina")
        [notice] = self.send(client, "PRIVMSG #dev :\x02bold\x02 and \x0304red\x03 \x1ditalic\x1d")
        self.assertEqual(notice.command, "NOTICE")
        self.assertIn("Formatting codes", notice.text)
        [stored] = self.successResultOf(self.service.history("dev"))
        self.assertEqual(stored.content, "bold and red italic")

    def test_action_and_other_ctcp(self) -> None:
        """CTCP ACTION (/me) is posted as ``/me text``; other CTCP is not
        carried, and the sender is told."""
        client = self.joined("mina")
        self.send(client, "PRIVMSG #dev :\x01ACTION waves\x01")
        [notice] = self.send(client, "PRIVMSG #dev :\x01VERSION\x01")
        self.assertIn("CTCP VERSION is not carried", notice.text)
        stored = self.successResultOf(self.service.history("dev"))
        self.assertEqual([m.content for m in stored], ["/me waves"])


class DirectMessageTests(IrcCase):
    """PRIVMSG to a nickname: direct messages between accounts."""

    def test_to_and_from_an_account(self) -> None:
        """PRIVMSG bob reaches bob's connections; bob's answer arrives as
        PRIVMSG to the client, with time and msgid ``dN`` tags if asked."""
        _, password = self.account("alice")
        bob_id, _ = self.account("bob")
        bob = FakeParticipant("bob", user_id=bob_id)
        self.service.connect(bob)
        client = self.register("alice", password=password, caps=("server-time", "message-tags"))
        self.assertEqual(self.send(client, "PRIVMSG bob :psst"), [])
        [dm] = bob.directs
        self.assertEqual((dm.from_nickname, dm.content), ("alice", "psst"))
        self.successResultOf(self.service_direct(bob, "alice", "hi alice\nline two"))
        self.settle()
        lines = client.take()
        self.assertEqual(
            [(line.nick, line.params[0], line.text) for line in lines],
            [("bob", "alice", "hi alice"), ("bob", "alice", "line two")],
        )
        self.assertTrue(lines[0].tags["msgid"].startswith("d"))
        self.assertIn("time", lines[0].tags)

    def service_direct(self, sender: Any, to: str, text: str) -> Any:
        from twisted.internet.defer import Deferred

        return Deferred.fromCoroutine(self.service.send_direct(sender, to, text))

    def test_echo(self) -> None:
        """With echo-message the sender sees its direct message."""
        _, password = self.account("alice")
        self.account("bob")
        client = self.register("alice", password=password, caps=("echo-message",))
        [echo] = self.send(client, "PRIVMSG bob :psst")
        self.assertEqual((echo.nick, echo.params[0], echo.text), ("alice", "bob", "psst"))

    def test_errors(self) -> None:
        """An unknown account is 401; a guest cannot send direct messages
        (FAIL PRIVMSG INVALID_REQUEST)."""
        _, password = self.account("alice")
        client = self.register("alice", password=password)
        [reply] = self.send(client, "PRIVMSG nobody :hi")
        self.assertEqual((reply.command, reply.params[1]), ("401", "nobody"))
        guest = self.register("mina")
        [fail] = self.send(guest, "PRIVMSG alice :hi")
        self.assertEqual(
            (fail.command, fail.params[:3]), ("FAIL", ["PRIVMSG", "INVALID_REQUEST", "alice"])
        )

    def test_offline_messages(self) -> None:
        """Direct messages that arrived while away come after the welcome."""
        _, password = self.account("alice")
        bob_id, _ = self.account("bob")
        bob = FakeParticipant("bob", user_id=bob_id)
        self.service.connect(bob)
        self.successResultOf(self.service_direct(bob, "alice", "while you were out"))
        client = self.register("alice", password=password)
        # register() took everything: ask the store instead.
        self.assertEqual(
            self.successResultOf(self.store.pending_direct(self.accounts["alice"][0], 10)), []
        )
        self.assertIn(b"PRIVMSG alice :while you were out", client.received)


class RateLimitTests(IrcCase):
    """The per-account rate limit, which LIST draws on too."""

    limits = Limits(rate_limit=1, rate_burst=1)

    def test_list_rate_limited(self) -> None:
        """Past the limit LIST is 263 (try again), not an error."""
        client = self.register("mina")
        self.assertEqual(commands(self.send(client, "LIST"))[0], "321")
        [reply] = self.send(client, "LIST")
        self.assertEqual((reply.command, reply.params[1]), ("263", "LIST"))


class ChatHistoryTests(IrcCase):
    """CHATHISTORY over the room's stored messages."""

    def setUp(self) -> None:
        super().setUp()
        poster = self.observer("dev", "poster")
        self.messages: list[Message] = []
        for n in range(1, 11):
            self.clock.advance(1)
            d = self.service.post(poster, "dev", f"m{n}")
            self.settle()
            self.messages.append(self.successResultOf(d))
        # Another room's messages share the id sequence; never in #dev's history.
        elsewhere = self.observer("elsewhere", "poster2")
        self.service.post(elsewhere, "elsewhere", "not dev")
        self.settle()
        self.client = self.register("mina", caps=HISTORY_CAPS)

    def history(self, *args: str) -> list[str]:
        """The texts of the batch a CHATHISTORY command gets back."""
        lines = self.send(self.client, "CHATHISTORY " + " ".join(args))
        self.assertEqual(lines[0].command, "BATCH", lines)
        batch = lines[0].params[0][1:]
        self.assertEqual(lines[0].params[1:], ["chathistory", args[1]])
        self.assertEqual((lines[-1].command, lines[-1].params), ("BATCH", ["-" + batch]))
        for line in lines[1:-1]:
            self.assertEqual(line.tags["batch"], batch)
            self.assertIn("time", line.tags)
        return [line.text for line in lines[1:-1]]

    def msgid(self, n: int) -> str:
        message = self.messages[n - 1]
        return f"msgid={message.seq}-{message.id}"

    def timestamp(self, n: int) -> str:
        return f"timestamp={self.messages[n - 1].timestamp}"

    def test_latest(self) -> None:
        """LATEST * gives the newest messages; LATEST ref only those after it
        (what a client missed), oldest first, with their msgids."""
        lines = self.send(self.client, "CHATHISTORY LATEST #dev * 3")
        self.assertEqual([line.text for line in lines[1:-1]], ["m8", "m9", "m10"])
        self.assertEqual(lines[1].tags["msgid"], f"8-{self.messages[7].id}")
        self.assertEqual(lines[1].tags["time"], self.messages[7].timestamp)
        self.assertEqual(lines[1].prefix, "poster!~poster@irc.parkchat")
        self.assertEqual(self.history("LATEST", "#dev", self.msgid(7), "50"), ["m8", "m9", "m10"])
        self.assertEqual(self.history("LATEST", "#dev", self.timestamp(8), "50"), ["m9", "m10"])
        self.assertEqual(self.history("LATEST", "#dev", self.msgid(7), "2"), ["m9", "m10"])

    def test_before_and_after(self) -> None:
        """BEFORE and AFTER exclude the reference, by msgid or timestamp."""
        self.assertEqual(self.history("BEFORE", "#dev", self.msgid(5), "2"), ["m3", "m4"])
        self.assertEqual(self.history("BEFORE", "#dev", self.timestamp(5), "2"), ["m3", "m4"])
        self.assertEqual(self.history("AFTER", "#dev", self.msgid(5), "2"), ["m6", "m7"])
        self.assertEqual(self.history("AFTER", "#dev", self.timestamp(5), "2"), ["m6", "m7"])
        self.assertEqual(self.history("BEFORE", "#dev", self.msgid(1), "5"), [])
        self.assertEqual(self.history("AFTER", "#dev", self.msgid(1) + ".3", "1"), ["m2"])

    def test_by_position(self) -> None:
        """A msgid is read for its seq, the room position history is paged
        by: the id part is not looked up, and a deleted message's position
        still finds its neighbours."""
        self.assertEqual(self.history("AFTER", "#dev", "msgid=5-999999", "2"), ["m6", "m7"])
        self.successResultOf(self.service.delete_message(self.messages[4].id))
        self.settle()
        self.assertEqual(self.history("AFTER", "#dev", self.msgid(5), "2"), ["m6", "m7"])
        self.assertEqual(self.history("BEFORE", "#dev", self.msgid(5), "2"), ["m3", "m4"])
        self.assertEqual(self.history("AFTER", "#dev", self.msgid(4), "2"), ["m6", "m7"])

    def test_reconnect_gets_what_was_missed(self) -> None:
        """A client that noted the msgid of the last message it saw gets,
        after reconnecting, exactly the messages it missed, in order."""
        self.send(self.client, "JOIN #dev")
        poster = self.observer("dev", "late")
        self.settle()
        self.client.take()
        self.service.post(poster, "dev", "seen")
        self.settle()
        [seen] = self.client.take()
        self.send(self.client, "QUIT")
        for n in range(3):
            self.service.post(poster, "dev", f"missed {n}")
            self.settle()
        again = self.register("mina", caps=HISTORY_CAPS)
        self.send(again, "JOIN #dev")
        self.client = again
        missed = self.history("LATEST", "#dev", f"msgid={seen.tags['msgid']}", "200")
        self.assertEqual(missed, ["missed 0", "missed 1", "missed 2"])

    def test_live_lines_wait_for_the_answer(self) -> None:
        """Messages that arrive while a member's history request is being
        read come after the answer, and those in it are not repeated."""
        self.send(self.client, "JOIN #dev")
        reads: list[tuple[Deferred[Any], Any, Any]] = []
        real = self.service.history

        def slow(*args: Any, **kwargs: Any) -> Deferred[Any]:
            d: Deferred[Any] = Deferred()
            reads.append((d, args, kwargs))
            return d

        self.service.history = slow  # type: ignore[method-assign]
        self.client.send("CHATHISTORY LATEST #dev * 3")
        self.settle()
        poster = self.observer("dev", "late")
        self.settle()
        self.service.post(poster, "dev", "m11")
        self.settle()
        self.assertEqual(self.client.take(), [])
        [(d, args, kwargs)] = reads
        d.callback(self.successResultOf(real(*args, **kwargs)))
        self.service.post(poster, "dev", "m12")
        self.settle()
        self.assertEqual(
            [(line.command, line.text) for line in self.client.take()],
            [("BATCH", "#dev")]
            + [("PRIVMSG", text) for text in ("m9", "m10", "m11")]
            + [("BATCH", "-h1"), ("JOIN", "#dev"), ("PRIVMSG", "m12")],
        )

    def test_around_and_between(self) -> None:
        """AROUND centres on the reference; BETWEEN counts from the first
        reference, forwards or backwards, both excluded."""
        self.assertEqual(
            self.history("AROUND", "#dev", self.msgid(5), "4"), ["m3", "m4", "m5", "m6"]
        )
        self.assertEqual(
            self.history("BETWEEN", "#dev", self.msgid(2), self.msgid(9), "3"), ["m3", "m4", "m5"]
        )
        self.assertEqual(
            self.history("BETWEEN", "#dev", self.msgid(9), self.msgid(2), "3"), ["m6", "m7", "m8"]
        )
        self.assertEqual(
            self.history("BETWEEN", "#dev", self.timestamp(2), self.timestamp(5), "10"),
            ["m3", "m4"],
        )

    def test_targets(self) -> None:
        """TARGETS lists the joined rooms with messages in the time range."""
        self.send(self.client, "JOIN #dev,#quiet")
        lines = self.send(
            self.client, f"CHATHISTORY TARGETS {self.timestamp(1)} {self.timestamp(10)} 10"
        )
        self.assertEqual(lines[0].params[1], "draft/chathistory-targets")
        self.assertEqual(
            [line.params for line in lines[1:-1]],
            [["TARGETS", "#dev", self.timestamp(10)]],
        )

    def test_errors(self) -> None:
        """Unknown subcommands, missing parameters, bad references, counts
        and targets are FAIL CHATHISTORY with the standard codes."""
        for command, code in (
            ("CHATHISTORY", "NEED_MORE_PARAMS"),
            ("CHATHISTORY FROB #dev * 1", "UNKNOWN_COMMAND"),
            ("CHATHISTORY LATEST #dev", "NEED_MORE_PARAMS"),
            ("CHATHISTORY BEFORE #dev * 5", "INVALID_PARAMS"),
            ("CHATHISTORY BEFORE #dev msgid=abc 5", "INVALID_PARAMS"),
            ("CHATHISTORY BEFORE #dev msgid=5 5", "INVALID_PARAMS"),
            ("CHATHISTORY BEFORE #dev msgid=d5-5 5", "INVALID_PARAMS"),
            ("CHATHISTORY BEFORE #dev timestamp=yesterday 5", "INVALID_PARAMS"),
            ("CHATHISTORY LATEST #dev * many", "INVALID_PARAMS"),
            ("CHATHISTORY LATEST nochannel * 5", "INVALID_TARGET"),
            ("CHATHISTORY LATEST # * 5", "INVALID_TARGET"),
            ("CHATHISTORY TARGETS * * 5", "INVALID_PARAMS"),
        ):
            [fail] = self.send(self.client, command)
            self.assertEqual(
                (fail.command, fail.params[:2]), ("FAIL", ["CHATHISTORY", code]), command
            )

    def test_limit_capped(self) -> None:
        """A count above CHATHISTORY (the history page maximum) is capped."""
        self.assertEqual(len(self.history("LATEST", "#dev", "*", "100000")), 10)

    def test_timestamp_too_far_back(self) -> None:
        """Timestamps are found within the newest pages of a room; further
        back, MESSAGE_ERROR asks for a msgid."""
        self.factory.history_page = 2
        self.factory.history_scan = 2
        [fail] = self.send(self.client, f"CHATHISTORY AFTER #dev {self.timestamp(2)} 5")
        self.assertEqual(fail.params[:2], ["CHATHISTORY", "MESSAGE_ERROR"])
        self.assertEqual(self.history("AFTER", "#dev", self.timestamp(8), "5"), ["m9", "m10"])

    def test_without_batch(self) -> None:
        """A client without the batch capability gets the lines alone."""
        plain = self.register("omar")
        lines = self.send(plain, "CHATHISTORY LATEST #dev * 2")
        self.assertEqual(
            [(line.command, line.text) for line in lines], [("PRIVMSG", "m9"), ("PRIVMSG", "m10")]
        )
        self.assertEqual(lines[0].tags, {})

    def test_direct_messages(self) -> None:
        """A nickname as target: the direct messages between the two
        accounts, by the conversation's positions (msgid ``d<seq>-<id>``),
        every subcommand; guests and unknown accounts are INVALID_TARGET."""
        _, password = self.account("alice")
        bob_id, _ = self.account("bob")
        bob = FakeParticipant("bob", user_id=bob_id)
        self.service.connect(bob)
        client = self.register("alice", password=password, caps=HISTORY_CAPS)
        for text in ("one", "two", "three"):
            client.send(f"PRIVMSG bob :{text}")
            self.settle()
        sent = bob.directs
        self.assertEqual([m.seq for m in sent], [1, 2, 3])
        ref = [f"msgid=d{m.seq}-{m.id}" for m in sent]
        self.client = client
        self.assertEqual(self.history("LATEST", "bob", "*", "2"), ["two", "three"])
        self.assertEqual(self.history("BEFORE", "bob", ref[2], "5"), ["one", "two"])
        self.assertEqual(self.history("LATEST", "bob", ref[0], "5"), ["two", "three"])
        self.assertEqual(self.history("AFTER", "bob", ref[0], "1"), ["two"])
        self.assertEqual(self.history("AROUND", "bob", ref[1], "2"), ["one", "two"])
        self.assertEqual(self.history("BETWEEN", "bob", ref[2], ref[0], "5"), ["two"])
        lines = self.send(client, "CHATHISTORY LATEST bob * 1")
        self.assertEqual(lines[1].tags["msgid"], f"d3-{sent[2].id}")
        for command, code in (
            ("CHATHISTORY LATEST bob msgid=1-1 5", "INVALID_PARAMS"),
            ("CHATHISTORY LATEST nobody * 5", "INVALID_TARGET"),
        ):
            [fail] = self.send(client, command)
            self.assertEqual(fail.params[:2], ["CHATHISTORY", code], command)
