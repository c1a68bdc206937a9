"""IRC clients in parkchat's rooms (``--irc``): the channel ``#room`` is the
room ``room``, shared with every other surface.

Wire protocol: RFC 1459/2812 as clients speak it today
(modern.ircdocs.horse), with the IRCv3 capabilities ``sasl`` (PLAIN),
``server-time``, ``message-tags``, ``echo-message``, ``batch`` and
``draft/chathistory``. docs/irc.md is the reference: every command, every
numeric, and how parkchat differs from an IRC network.

Built on ``twisted.words.protocols.irc``: ``IRC`` is the base class (its
``sendCommand`` writes replies, with tags), ``parsemsg`` parses lines,
its constants name the numerics and ``ctcpExtract`` reads ``/me``.
This module is the connection (framing, dispatch, output, registration,
keep-alive, the room events it is sent); ``irccommands`` the commands of a
registered client; ``ircwire`` what Twisted does not do for a server
(incoming tags, byte limits, the room-event encoder); ``irchistory``
CHATHISTORY's references; ``guests`` the rules for guest names.

* Registration: ``NICK`` and ``USER`` (after ``CAP END`` if the client
  negotiates). With SASL PLAIN or ``PASS`` the client logs in to an
  account (a token from ``POST /login`` works as the password); without,
  it is a guest under the same rules as every guest, never with an
  account's name (433).
* ``PRIVMSG``/``NOTICE #room`` is a room message, stored and delivered to
  every surface; ``PRIVMSG nick`` a direct message to that account.
* The room's events come through ``IrcEncoder`` (rendered once for all IRC
  members); a member's own joins and leaves are written here instead, so
  that its JOIN comes before the channel's NAMES.
"""

from __future__ import annotations

import base64
import binascii
import time
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure
from twisted.words.protocols import irc
from zope.interface import implementer

from parkchat import __version__
from parkchat.errors import (
    AccountExists,
    AuthenticationFailed,
    Banned,
    ChatError,
    InvalidName,
    InvalidRoom,
    NameRegistered,
    NotInRoom,
    RateLimited,
    UnknownRecipient,
)
from parkchat.interfaces import IChatService, IEncoder, IParticipant
from parkchat.metrics import ServiceMetrics
from parkchat.model import (
    CONNECTION_CLOSED,
    FROM_STORE,
    MAX_NICKNAME_LENGTH,
    MAX_ROOM_LENGTH,
    PING_TIMEOUT,
    DirectMessage,
    DisconnectReason,
    Message,
    nickname_key,
    validate_nickname,
)
from parkchat.protocols import irchistory, ircwire
from parkchat.protocols.guests import guest_name
from parkchat.protocols.irccommands import IrcCommands, IrcOptions, IrcReply, Multiline
from parkchat.protocols.irchistory import line_msgid
from parkchat.protocols.ircwire import (
    ERR_INPUTTOOLONG,
    ERR_INVALIDCAPCMD,
    ERR_NONICKCHANGE,
    ERR_SASLABORTED,
    ERR_SASLALREADY,
    ERR_SASLFAIL,
    ERR_SASLTOOLONG,
    MSGID,
    MULTILINE,
    RPL_LOGGEDIN,
    RPL_SASLMECHS,
    RPL_SASLSUCCESS,
    TIME,
    IrcEncoder,
    IrcEvent,
    LineTooLong,
    channel,
    message_lines,
    user_prefix,
)
from parkchat.protocols.participant import (
    CLOSE_GOING_AWAY,
    CLOSE_POLICY,
    AdapterContext,
    Goodbye,
    Participant,
)

#: Capabilities offered (``CAP LS``), all of which may be requested.
CAPABILITIES = (
    "batch",
    "draft/chathistory",
    "draft/multiline",
    "echo-message",
    "message-tags",
    "sasl",
    "server-time",
)
#: The draft/multiline CAP value: the limits of a client's batch.
MULTILINE_VALUE = f"max-bytes={ircwire.MULTILINE_MAX_BYTES},max-lines={ircwire.MULTILINE_MAX_LINES}"
#: Commands a client may send before registration is complete.
BEFORE_REGISTRATION = frozenset(
    {"CAP", "NICK", "USER", "PASS", "AUTHENTICATE", "PING", "PONG", "QUIT"}
)
#: Pages of history a CHATHISTORY timestamp is looked for in.
HISTORY_SCAN_PAGES = 10
#: Ids of its own messages a connection remembers (``_posted``).
POSTED_REMEMBERED = 64
#: Recent quits a connection remembers, to show each once (``_first_quit``).
QUITS_REMEMBERED = 64
#: SASL PLAIN: the largest answer accepted, base64, in 400-byte chunks.
SASL_CHUNK = 400
SASL_MAX = 4 * SASL_CHUNK


@dataclass(frozen=True)
class Identity:
    """Who a registered connection speaks for."""

    nickname: str
    user_id: int | None
    token_id: str | None = None


def looks_like_token(secret: str) -> bool:
    """A JWT (what ``POST /login`` returns): three base64url parts, the first
    a JSON object (``eyJ``). A password of that shape is taken as a token."""
    return secret.startswith("eyJ") and secret.count(".") == 2


@implementer(IParticipant)
class IrcConnection(irc.IRC, Participant, IrcCommands):
    """One IRC client (see the module docstring)."""

    factory: IrcFactory
    #: The server name (Twisted's IRC declares it None until connectionMade).
    hostname: str = "irc.parkchat"  # type: ignore[assignment]
    surface = "irc"
    goodbyes = {
        **{reason: Goodbye(CLOSE_POLICY, reason.text) for reason in DisconnectReason},
        DisconnectReason.SHUTDOWN: Goodbye(CLOSE_GOING_AWAY, "server shutting down"),
    }

    def __init__(self) -> None:
        self.nickname = ""
        self.user_id: int | None = None
        #: The login token the connection proved, if any (its revocation closes it).
        self.token_id: str | None = None
        self.peer_host = ""
        self.connection_id: str | None = None
        #: Negotiated capabilities.
        self.caps: set[str] = set()
        self._state = "registering"  # -> "checking" -> "registered" -> "closed"
        self._buffer = b""
        self._discarding = False
        self._queued: list[bytes] = []
        self._key = ""
        self._variant = 0
        self._nick: str | None = None
        self._user = False
        self._password: str | None = None
        self._negotiating = False
        self._sasl: bytes | None = None  # the answer so far, while one is expected
        self._sasl_busy = False
        self._account: Identity | None = None
        self._batches = 0
        #: Why this connection goes away, as the others are told (QUIT).
        self._quit_reason = CONNECTION_CLOSED
        #: Quits shown lately (folded nickname -> the quit's time): a member
        #: in several of this client's channels quits once per room.
        self._quits: dict[str, int] = {}
        #: Rooms whose history is being read: their live events wait here
        #: (with the number of reads), to be written after the answer.
        self._held: dict[str, tuple[int, list[IrcEvent]]] = {}
        #: Ids of this connection's messages stored lately: a gap fill
        #: brings them back from the store (``FROM_STORE``) without the
        #: connection's id, and they are not shown without echo-message.
        self._posted: dict[int, None] = {}
        #: The tags of the line being handled (TAGMSG reads ``+typing``).
        self.tags_in: dict[str, str] = {}
        #: The draft/multiline batch the client is sending, if any.
        self._multiline: Multiline | None = None
        self._last_typing = float("-inf")

    @property
    def context(self) -> AdapterContext:
        return self.factory.context

    @property
    def service(self) -> IChatService:
        return self.factory.context.service

    @property
    def encoder(self) -> IEncoder:
        return self.factory.encoder

    @property
    def options(self) -> IrcOptions:
        return self.factory.options

    @property
    def participant(self) -> IParticipant:
        """This connection, as the service's verbs take it."""
        return self

    @property
    def metrics(self) -> ServiceMetrics:
        return self.factory.context.metrics

    @property
    def me(self) -> str:
        """This client's prefix."""
        return user_prefix(self.nickname, self.hostname, self.user_id is None)

    # -- connection ------------------------------------------------------------------

    def connectionMade(self) -> None:
        self.hostname = self.options.server_name  # before IRC.connectionMade resolves one
        super().connectionMade()
        self.peer_host = self._address()
        if self.context.slow_readers is not None:
            self.context.slow_readers.watch(self.transport, self._too_slow)
        self.start_timer(self.options.registration_timeout, self._goodbye, "registration timeout")

    def _address(self) -> str:
        peer = self.transport.getPeer() if self.transport is not None else None
        return getattr(peer, "host", "")

    def _too_slow(self, reason: str) -> None:
        # Its buffer is full: a goodbye would not arrive either.
        self._quit_reason = "Max SendQ exceeded"
        transport: Any = self.transport
        if transport is not None:
            transport.abortConnection()

    def connectionLost(self, reason: Failure | None = None) -> None:
        self._state = "closed"
        self.cancel_timer()
        self.service.disconnect(self, self._quit_reason)

    def dataReceived(self, data: bytes) -> None:
        """Bytes cut into lines (LF or CRLF), each checked against the byte
        limits before it is decoded; an overlong line is answered with 417
        and skipped up to its end."""
        buffer = self._buffer + data
        start = 0
        while self._state != "closed":
            end = buffer.find(b"\n", start)
            if end < 0:
                break
            line = buffer[start:end]
            start = end + 1
            if self._discarding:
                self._discarding = False
                continue
            if self._state == "checking":
                self._queued.append(line)
            else:
                self._line(line)
        rest = buffer[start:]
        if len(rest) > ircwire.MAX_TAGGED_LINE + 2:
            if not self._discarding:
                self.reply(ERR_INPUTTOOLONG, "Input line was too long")
            self._discarding = True
            rest = b""
        self._buffer = rest

    def _line(self, raw: bytes) -> None:
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        if not raw.strip():
            return
        try:
            ircwire.check_length(raw)
        except LineTooLong:
            self.reply(ERR_INPUTTOOLONG, "Input line was too long")
            return
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            _, rest = ircwire.split_tags(raw.decode("utf-8", "replace"))
            command = rest.split(" ", 1)[0].upper() if not rest.startswith(":") else "*"
            self._fail(command or "*", "INVALID_UTF8", [], "Message rejected: send UTF-8")
            return
        self.tags_in, rest = ircwire.split_tags(text)
        try:
            prefix, command, params = irc.parsemsg(rest)
        except (ValueError, IndexError):
            return  # a prefix and nothing else: not a command
        if self._state == "registered":
            self._touch()
        self.handleCommand(command.upper(), prefix, params)

    def handleCommand(self, command: str, prefix: str, params: list[str]) -> None:
        """Dispatch to ``irc_<COMMAND>`` (as Twisted's IRC does), answering
        unknown commands with 421 and failures with their numerics."""
        if self._state == "closed":
            return
        if self._state != "registered" and command not in BEFORE_REGISTRATION:
            self.reply(irc.ERR_NOTREGISTERED, "You have not registered")
            return
        method = getattr(self, "irc_" + command, None)
        if method is None:
            self.reply(irc.ERR_UNKNOWNCOMMAND, command, "Unknown command")
            return
        try:
            result = method(prefix, params)
        except IrcReply as answer:
            self.reply(answer.numeric, *answer.params)
            return
        except ChatError as error:
            self.send_error(error, (command, params[0] if params else None))
            return
        except Exception:
            self.send_error(self.chat_error(Failure(), command), (command, None))
            return
        if isinstance(result, Deferred):
            result.addErrback(self._async_failed, command, params[0] if params else None)

    def _async_failed(self, failure: Failure, command: str, target: str | None) -> None:
        if self._state == "closed":
            return
        if failure.check(IrcReply):
            answer: IrcReply = failure.value
            self.reply(answer.numeric, *answer.params)
            return
        self.send_error(self.chat_error(failure, command), (command, target))

    # -- output ---------------------------------------------------------------------

    def sendLine(self, line: str) -> None:
        """Every reply (``IRC.sendCommand`` ends here): after the room lines
        the factory's writer may still hold for this socket."""
        if self._state == "closed" or self.transport is None:
            return
        self.factory.writer.release(self.transport)
        self.transport.write((line + "\r\n").encode("utf-8"))

    def reply(self, numeric: str, *params: str) -> None:
        """A numeric from the server; the last of ``params`` is the text."""
        *middle, text = params
        self.sendCommand(
            numeric, (self.nickname or "*", *map(_middle, middle), ":" + text), self.hostname
        )

    def server_notice(self, text: str) -> None:
        self.sendCommand("NOTICE", (self.nickname or "*", ":" + text), self.hostname)

    def _fail(self, command: str, code: str, context: list[str], text: str) -> None:
        """An IRCv3 standard reply: ``FAIL <command> <code> [context] :text``."""
        self.sendCommand("FAIL", (command, code, *context, ":" + text), self.hostname)

    def _tags(self, timestamp: str, msgid: str | None, batch: str | None = None) -> dict[str, str]:
        """The tags this client negotiated, for a line sent to it alone."""
        tags: dict[str, str] = {}
        if batch is not None:
            tags["batch"] = batch
        if self._variant & TIME:
            tags["time"] = timestamp
        if msgid is not None and self._variant & MSGID:
            tags["msgid"] = msgid
        return tags

    def _send_lines(
        self, lines: list[str], timestamp: str, msgid: str | None, batch: str | None = None
    ) -> None:
        for index, line in enumerate(lines):
            tags = self._tags(timestamp, line_msgid(msgid, index) if msgid else None, batch)
            self.sendLine(ircwire.tag_prefix(tags) + line)

    def write_error(self, error: ChatError, request_id: Any) -> None:
        """``error`` as the numeric of the command that failed (``request_id``
        is ``(command, target)``), its code in brackets after the text; a
        standard FAIL reply where IRC has no numeric for it."""
        command, target = request_id if request_id is not None else ("*", None)
        text = f"{error.message} [{error.code}]"
        to_channel = target is not None and target.startswith("#")
        if isinstance(error, NameRegistered):
            # ERR_NICKCOLLISION, the numeric of a nick KILL, before ERROR.
            self.reply(irc.ERR_NICKCOLLISION, self.nickname or "*", text)
        elif isinstance(error, InvalidName):
            self.reply(irc.ERR_ERRONEUSNICKNAME, target or "*", text)
        elif isinstance(error, AccountExists):
            self.reply(irc.ERR_NICKNAMEINUSE, target or "*", text)
        elif isinstance(error, Banned) and command == "JOIN" and target is not None:
            self.reply(irc.ERR_BANNEDFROMCHAN, target, text)
        elif isinstance(error, Banned):
            self.reply(irc.ERR_YOUREBANNEDCREEP, text)
        elif isinstance(error, AuthenticationFailed) and command == "PASS":
            self.reply(irc.ERR_PASSWDMISMATCH, text)
        elif isinstance(error, InvalidRoom) and target is not None:
            self.reply(irc.ERR_NOSUCHCHANNEL, target, text)
        elif isinstance(error, UnknownRecipient) and target is not None:
            self.reply(irc.ERR_NOSUCHNICK, target, text)
        elif isinstance(error, RateLimited) and command == "LIST":
            self.reply(irc.RPL_TRYAGAIN, command, text)
        elif command in ("PRIVMSG", "NOTICE", "TAGMSG") and target is not None and to_channel:
            self.reply(irc.ERR_CANNOTSENDTOCHAN, target, text)
        elif isinstance(error, NotInRoom) and target is not None:
            self.reply(irc.ERR_NOTONCHANNEL, target, text)
        else:
            code = error.code.upper()
            self._fail(command, code, [target] if target else [], error.message)

    # -- registration -----------------------------------------------------------------

    def irc_CAP(self, prefix: str, params: list[str]) -> None:
        if not params:
            raise IrcReply(irc.ERR_NEEDMOREPARAMS, "CAP", "Not enough parameters")
        sub = params[0].upper()
        registered = self._state == "registered"
        if sub == "LS":
            if not registered:
                self._negotiating = True
            v302 = len(params) > 1 and params[1].isdigit() and int(params[1]) >= 302
            values = {"sasl": "PLAIN", "draft/multiline": MULTILINE_VALUE} if v302 else {}
            offered = (f"{c}={values[c]}" if c in values else c for c in CAPABILITIES)
            self._cap("LS", " ".join(offered))
        elif sub == "LIST":
            self._cap("LIST", " ".join(sorted(self.caps)))
        elif sub == "REQ":
            if not registered:
                self._negotiating = True
            asked = params[1] if len(params) > 1 else ""
            names = asked.split()
            if names and all(name.removeprefix("-") in CAPABILITIES for name in names):
                for name in names:
                    if name.startswith("-"):
                        self.caps.discard(name[1:])
                    else:
                        self.caps.add(name)
                self._variant = (
                    (TIME if "server-time" in self.caps else 0)
                    | (MSGID if "message-tags" in self.caps else 0)
                    | (MULTILINE if {"batch", "draft/multiline"} <= self.caps else 0)
                )
                self._cap("ACK", asked)
            else:
                self._cap("NAK", asked)
        elif sub == "END":
            if not registered:
                self._negotiating = False
                self._try_registration()
        else:
            raise IrcReply(ERR_INVALIDCAPCMD, params[0], "Invalid CAP command")

    def _cap(self, sub: str, text: str) -> None:
        self.sendCommand("CAP", (self.nickname or "*", sub, ":" + text), self.hostname)

    def irc_PASS(self, prefix: str, params: list[str]) -> None:
        if self._state == "registered":
            raise IrcReply(irc.ERR_ALREADYREGISTRED, "You may not reregister")
        if not params:
            raise IrcReply(irc.ERR_NEEDMOREPARAMS, "PASS", "Not enough parameters")
        self._password = params[0]

    def irc_NICK(self, prefix: str, params: list[str]) -> None:
        if not params or not params[0]:
            raise IrcReply(irc.ERR_NONICKNAMEGIVEN, "No nickname given")
        wanted = params[0]
        if self._state == "registered":
            if wanted != self.nickname:
                raise IrcReply(
                    ERR_NONICKCHANGE, wanted, "Nicknames cannot change on parkchat: reconnect"
                )
            return
        try:
            validate_nickname(wanted)
        except InvalidName as e:
            raise IrcReply(irc.ERR_ERRONEUSNICKNAME, wanted, f"{e.message} [{e.code}]") from None
        self._nick = wanted
        self._try_registration()

    def irc_USER(self, prefix: str, params: list[str]) -> None:
        if self._state == "registered":
            raise IrcReply(irc.ERR_ALREADYREGISTRED, "You may not reregister")
        if len(params) < 4:
            raise IrcReply(irc.ERR_NEEDMOREPARAMS, "USER", "Not enough parameters")
        self._user = True
        self._try_registration()

    def irc_AUTHENTICATE(self, prefix: str, params: list[str]) -> None:
        if not params:
            raise IrcReply(irc.ERR_NEEDMOREPARAMS, "AUTHENTICATE", "Not enough parameters")
        if self._state == "registered" or self._account is not None:
            raise IrcReply(ERR_SASLALREADY, "You have already authenticated")
        if "sasl" not in self.caps:
            raise IrcReply(ERR_SASLFAIL, "SASL authentication failed: request the sasl capability")
        if self._sasl_busy:
            return
        argument = params[0]
        if argument == "*":
            self._sasl = None
            raise IrcReply(ERR_SASLABORTED, "SASL authentication aborted")
        if self._sasl is None:
            if argument.upper() != "PLAIN":
                self.reply(RPL_SASLMECHS, "PLAIN", "are available SASL mechanisms")
                raise IrcReply(ERR_SASLFAIL, "SASL authentication failed: use PLAIN")
            self._sasl = b""
            self.sendCommand("AUTHENTICATE", ("+",))
            return
        if argument != "+":
            self._sasl += argument.encode("ascii", "replace")
        if len(self._sasl) > SASL_MAX:
            self._sasl = None
            raise IrcReply(ERR_SASLTOOLONG, "SASL message too long")
        if len(argument) == SASL_CHUNK:
            return  # more chunks follow
        answer, self._sasl = self._sasl, None
        try:
            authzid, authcid, password = (
                part.decode("utf-8")
                for part in base64.b64decode(answer, validate=True).split(b"\0")
            )
        except (binascii.Error, ValueError):
            raise IrcReply(ERR_SASLFAIL, "SASL authentication failed: malformed PLAIN") from None
        if authzid and nickname_key(authzid) != nickname_key(authcid):
            raise IrcReply(ERR_SASLFAIL, "SASL authentication failed: authzid is not authcid")
        self._sasl_busy = True
        d = Deferred.fromCoroutine(self._log_in(authcid, password))
        d.addCallbacks(self._sasl_succeeded, self._sasl_failed)
        d.addBoth(self._sasl_done)

    def _sasl_succeeded(self, identity: Identity) -> None:
        self._account = identity
        prefix = user_prefix(self._nick or identity.nickname, self.hostname)
        nick = self._nick or "*"
        self.sendCommand(
            RPL_LOGGEDIN,
            (nick, prefix, identity.nickname, f":You are now logged in as {identity.nickname}"),
            self.hostname,
        )
        self.sendCommand(RPL_SASLSUCCESS, (nick, ":SASL authentication successful"), self.hostname)

    def _sasl_failed(self, failure: Failure) -> None:
        error = self.chat_error(failure, "SASL")
        self.context.metrics.error_sent(self.surface, error.code)
        self.reply(ERR_SASLFAIL, f"SASL authentication failed: {error.message} [{error.code}]")

    def _sasl_done(self, result: object) -> None:
        self._sasl_busy = False
        if self._state == "registering":
            self._try_registration()

    async def _log_in(self, name: str, secret: str) -> Identity:
        """Check a password, or a token given as one, for the account ``name``."""
        tokens = self.options.tokens
        if tokens is not None and looks_like_token(secret):
            claims = tokens.verify(secret)
            if nickname_key(claims.nickname) != nickname_key(name):
                raise AuthenticationFailed("the token belongs to another name")
            await self.service.admit_token(claims.nickname, claims.user_id)
            return Identity(claims.nickname, claims.user_id, claims.token_id)
        user = await self.service.login(name, secret, self.peer_host)
        return Identity(user.nickname, user.id)

    def _try_registration(self) -> None:
        if (
            self._state != "registering"
            or self._negotiating
            or self._sasl_busy
            or self._nick is None
            or not self._user
        ):
            return
        self._state = "checking"
        d = Deferred.fromCoroutine(self._register(self._nick))
        d.addErrback(self._registration_failed)

    async def _register(self, nick: str) -> None:
        # Read again: behind the PROXY protocol the address is known only
        # once the proxy's header has arrived.
        self.peer_host = self._address()
        identity = self._account
        if identity is None and self._password is not None:
            try:
                identity = await self._log_in(nick, self._password)
            except AuthenticationFailed as e:
                raise _Refused(irc.ERR_PASSWDMISMATCH, f"{e.message} [{e.code}]") from None
        if identity is None:
            try:
                name = await guest_name(self.service, nick, allow_guests=self.options.allow_guests)
            except AuthenticationFailed as e:  # guests are not allowed
                raise _Refused(irc.ERR_PASSWDMISMATCH, f"{e.message} [{e.code}]") from None
            identity = Identity(name, None)
        if self._state == "closed":
            return
        self.nickname, self.user_id, self.token_id = (
            identity.nickname,
            identity.user_id,
            identity.token_id,
        )
        self._key = nickname_key(self.nickname)
        self.connection_id = self.service.connect(self)
        self._state = "registered"
        self._welcome()
        self._touch()
        queued, self._queued = self._queued, []
        for line in queued:
            if self._state != "registered":
                break
            self._line(line)
        if self.user_id is not None:
            for message in await self.service.offline_messages(self):
                self.direct(message)

    def _registration_failed(self, failure: Failure) -> None:
        if self._state == "closed":
            return
        error = failure.value
        if isinstance(error, InvalidName | AccountExists):
            # The client may pick another nickname and go on registering.
            self.send_error(error, ("NICK", self._nick))
            self._nick = None
            self._state = "registering"
            queued, self._queued = self._queued, []
            for line in queued:
                self._line(line)
            return
        if isinstance(error, _Refused):
            self.context.metrics.error_sent(self.surface, "unauthorized")
            self.reply(error.numeric, error.text)
            reason = "not logged in"
        elif isinstance(error, ChatError):
            self.send_error(error, ("*", None))
            reason = error.message
        else:
            reason = self.chat_error(failure, "registration").message
        self._goodbye(reason)

    def _welcome(self) -> None:
        nick, server, version = self.nickname, self.hostname, f"parkchat-{__version__}"
        created = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.factory.created))
        self.reply(irc.RPL_WELCOME, f"Welcome to the {self.options.network} IRC gateway, {nick}")
        self.reply(irc.RPL_YOURHOST, f"Your host is {server}, running version {version}")
        self.reply(irc.RPL_CREATED, f"This server was created {created}")
        self.sendCommand(irc.RPL_MYINFO, (nick, server, version, "i", "nt"), server)
        self.reply(irc.RPL_ISUPPORT, *self.factory.isupport, "are supported by this server")
        self.irc_MOTD("", [])

    # -- keep-alive -------------------------------------------------------------------

    def _touch(self) -> None:
        if self.options.ping_interval > 0:
            self.start_timer(self.options.ping_interval, self._ping)

    def _ping(self) -> None:
        self.sendCommand("PING", (":" + self.hostname,))
        self.start_timer(self.options.ping_timeout, self._timed_out)

    def _timed_out(self) -> None:
        self._quit_reason = PING_TIMEOUT
        self._goodbye(PING_TIMEOUT)

    def irc_PING(self, prefix: str, params: list[str]) -> None:
        if not params:
            raise IrcReply(irc.ERR_NOORIGIN, "No origin specified")
        self.sendCommand("PONG", (self.hostname, ":" + params[0]), self.hostname)

    def irc_PONG(self, prefix: str, params: list[str]) -> None:
        """Any line shows the client is there (``_touch``); nothing more to do."""

    def irc_QUIT(self, prefix: str, params: list[str]) -> None:
        reason = ircwire.strip_formatting(params[0]) if params and params[0] else "Client Quit"
        # As IRC servers show it to the others ("Quit: " marks the client's own words).
        self._quit_reason = f"Quit: {reason}"
        self._goodbye(self._quit_reason)

    def _goodbye(self, reason: str) -> None:
        """``ERROR :Closing link`` and close."""
        if self._state == "closed":
            return
        self.sendCommand("ERROR", (f":Closing link: {reason}",))
        self._close()

    def _close(self) -> None:
        if self._state == "closed":
            return
        self._state = "closed"
        self.cancel_timer()
        if self.transport is not None:
            self.factory.writer.release(self.transport)
            self.transport.loseConnection()

    # -- IParticipant -------------------------------------------------------------------

    def send(self, payload: IrcEvent) -> None:
        if payload.event is not None and payload.key == self._key:
            return  # its own joins and leaves are written by JOIN and PART
        if payload.origin is not None and payload.origin == self.connection_id:
            if "echo-message" not in self.caps:
                return
        if (
            payload.origin == FROM_STORE
            and payload.message.id in self._posted
            and "echo-message" not in self.caps
        ):
            return
        if self._state == "closed":
            return
        if payload.tag_only and not self._variant & MSGID:
            return  # TAGMSG is for clients that negotiated message-tags
        if self._held and payload.message.room in self._held:
            self._held[payload.message.room][1].append(payload)
            return
        if payload.quit and not self._first_quit(payload):
            return
        self.factory.writer.write(self.transport, payload.data(self._variant))

    def posted(self, message: Message) -> None:
        """One of this connection's messages was stored (see ``_posted``)."""
        self._posted[message.id] = None
        if len(self._posted) > POSTED_REMEMBERED:
            del self._posted[next(iter(self._posted))]

    def _hold(self, room: str) -> None:
        """Keep the room's live events while its history is read."""
        reads, events = self._held.get(room, (0, []))
        self._held[room] = (reads + 1, events)

    def _release(self, room: str, sent: set[int]) -> None:
        """A read of the room's history is answered: its live events that
        the answer held (``sent``: their seqs) are dropped, the others
        written after it once no other read of the room is going on."""
        reads, events = self._held.pop(room)
        events = [e for e in events if not (e.event is None and e.message.seq in sent)]
        if reads > 1:
            self._held[room] = (reads - 1, events)
            return
        for event in events:
            self.send(event)

    def _first_quit(self, payload: IrcEvent) -> bool:
        """Whether this quit was not shown yet (one disconnect gives one
        LEFT event per room, all with the same time)."""
        when = payload.message.timestamp_ms
        if self._quits.get(payload.key) == when:
            return False
        self._quits[payload.key] = when
        if len(self._quits) > QUITS_REMEMBERED:
            del self._quits[next(iter(self._quits))]
        return True

    def direct(self, message: DirectMessage) -> bool:
        if self._state != "registered":
            return False
        lines = message_lines(
            user_prefix(message.from_nickname, self.hostname),
            "PRIVMSG",
            self.nickname,
            message.content,
        )
        self._send_lines(lines, message.timestamp, irchistory.direct_msgid(message))
        return True

    def removed(self, room: str, reason: str) -> None:
        self.sendCommand("KICK", (channel(room), self.nickname, ":" + reason), self.hostname)

    def say_goodbye(self, goodbye: Goodbye, reason: DisconnectReason) -> None:
        self._goodbye(goodbye.line or reason.text)


class _Refused(Exception):
    """Registration refused with a numeric, then the connection closed."""

    def __init__(self, numeric: str, text: str) -> None:
        super().__init__(numeric, text)
        self.numeric = numeric
        self.text = text


def _middle(param: str) -> str:
    """A parameter echoed from the client as one that is not the last: no
    spaces, not empty, not starting with ``:`` (its first word, or ``*``)."""
    word = param.lstrip(":").split(" ", 1)[0]
    return word or "*"


class IrcFactory(Factory):
    """Builds IRC connections; holds what they share."""

    protocol = IrcConnection  # type: ignore[assignment]

    def __init__(
        self,
        context: AdapterContext,
        options: IrcOptions | None = None,
        *,
        max_connections_per_ip: int = 0,
    ) -> None:
        self.context = context
        self.options = options if options is not None else IrcOptions()
        #: Where room lines go (``fastpath.TurnWriter`` or ``PlainWriter``).
        self.writer = context.paths.writer(context.clock)
        self.encoder = IrcEncoder(self.options.server_name)
        #: CHATHISTORY: messages per read, and the reads a timestamp is
        #: looked for in (back from the newest).
        self.history_page = self.options.history_max
        self.history_scan = HISTORY_SCAN_PAGES
        self.created = context.clock.seconds()
        #: Registered connections from one address past which it is refused
        #: (0: no limit).
        self.max_connections_per_ip = max_connections_per_ip
        self.isupport = (
            "CASEMAPPING=ascii",
            "CHANMODES=,,,nt",
            f"CHANNELLEN={MAX_ROOM_LENGTH + 1}",
            "CHANTYPES=#",
            f"CHATHISTORY={self.options.history_max}",
            "CLIENTTAGDENY=*,-typing",
            "MSGREFTYPES=msgid,timestamp",
            f"NETWORK={self.options.network}",
            f"NICKLEN={MAX_NICKNAME_LENGTH}",
            "PREFIX=",
            "UTF8ONLY",
        )

    def buildProtocol(self, addr: Any) -> Any:
        host = getattr(addr, "host", "")
        limit = self.max_connections_per_ip
        if limit and self.context.service.connections_from(host) >= limit:
            self.context.metrics.connection_refused()
            return _Refusal(f"Closing link: too many connections from {host}")
        return super().buildProtocol(addr)


class _Refusal(Protocol):
    """A connection refused before anything else: one ``ERROR`` line (which
    IRC clients show, instead of reconnecting blindly), then closed."""

    def __init__(self, text: str) -> None:
        self.text = text

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(f"ERROR :{self.text}\r\n".encode())
        self.transport.loseConnection()
