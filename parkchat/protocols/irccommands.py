"""The IRC commands of a registered client: channels, messages, queries
and CHATHISTORY, as a mixin of ``irc.IrcConnection`` (which holds the
connection, registration and output these use; see its module docstring).
Split from it only to keep each module readable."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from twisted.words.protocols import irc

from parkchat import __version__
from parkchat.errors import ChatError, Forbidden, InvalidRoom, NotInRoom, UnknownRecipient
from parkchat.interfaces import IChatService, IParticipant
from parkchat.metrics import ServiceMetrics
from parkchat.model import (
    LEFT,
    PART,
    Departure,
    DirectMessage,
    Message,
    clean_reason,
    nickname_key,
    system_message,
    validate_room,
)
from parkchat.protocols import irchistory, ircwire
from parkchat.protocols.guests import guest_may_join
from parkchat.protocols.ircwire import channel, message_lines, user_prefix
from parkchat.tokens import TokenVerifier

#: Rooms in one LIST answer.
LIST_LIMIT = 100
#: Seconds between two typing notices a connection passes on (as /ws).
TYPING_INTERVAL = 1.0

#: Who set a channel's topic and when (not in RFC 1459; every server sends it).
RPL_TOPICWHOTIME = "333"


@dataclass(frozen=True)
class IrcOptions:
    """Settings of the IRC listener (``tap`` builds them from ``config``)."""

    #: The server's name in replies (and the host part of everyone's prefix).
    server_name: str = "irc.parkchat"
    #: ISUPPORT NETWORK.
    network: str = "parkchat"
    #: The message of the day, line by line; None: ERR_NOMOTD (422).
    motd: tuple[str, ...] | None = None
    #: Seconds a connection has to register (NICK, USER, CAP END).
    registration_timeout: float = 10.0
    #: Seconds of silence before the server sends PING; 0: never.
    ping_interval: float = 30.0
    #: Seconds to wait for any line after that PING.
    ping_timeout: float = 20.0
    allow_guests: bool = True
    #: The largest history page (ISUPPORT CHATHISTORY).
    history_max: int = 200
    #: Verifies tokens given as a password; None: tokens are not accepted.
    tokens: TokenVerifier | None = None


@dataclass
class Multiline:
    """A draft/multiline batch a client is sending."""

    reference: str
    target: str
    command: str | None = None
    lines: list[tuple[str, bool]] = field(default_factory=list)
    size: int = 0

    def add(self, command: str, text: str, concat: bool) -> None:
        """A line (``concat``: joined to the one before without a newline);
        ``size`` counts its bytes and the newline before it."""
        self.command = command
        self.size += len(text.encode("utf-8")) + (1 if self.lines and not concat else 0)
        self.lines.append((text, concat))

    def content(self) -> str:
        """The lines as one message."""
        parts: list[str] = []
        for text, concat in self.lines:
            if concat:
                parts[-1] += text
            else:
                parts.append(text)
        return "\n".join(parts)


class IrcReply(Exception):
    """Answer the command being handled with a numeric and stop."""

    def __init__(self, numeric: str, *params: str) -> None:
        super().__init__(numeric, *params)
        self.numeric = numeric
        self.params = params


class IrcCommands:
    """JOIN, PART, NAMES, WHO, WHOIS, WHOWAS, ISON, USERHOST, LIST, TOPIC,
    MODE, KICK, AWAY, MOTD, VERSION, PRIVMSG, NOTICE and CHATHISTORY.

    Mixed in last into ``IrcConnection``, which provides what is declared
    here (the stubs below are never reached)."""

    nickname: str
    user_id: int | None
    hostname: str
    caps: set[str]
    factory: Any
    _key: str
    _state: str
    _batches: int
    _last_typing: float
    _multiline: Multiline | None
    tags_in: dict[str, str]

    @property
    def service(self) -> IChatService:
        raise NotImplementedError

    @property
    def options(self) -> IrcOptions:
        raise NotImplementedError

    @property
    def metrics(self) -> ServiceMetrics:
        raise NotImplementedError

    @property
    def me(self) -> str:
        raise NotImplementedError

    @property
    def participant(self) -> IParticipant:
        raise NotImplementedError

    def reply(self, numeric: str, *params: str) -> None:
        raise NotImplementedError

    def sendCommand(
        self, command: str, parameters: Any, prefix: Any = None, tags: Any = None
    ) -> None:
        raise NotImplementedError

    def sendLine(self, line: str) -> None:
        raise NotImplementedError

    def server_notice(self, text: str) -> None:
        raise NotImplementedError

    def _fail(self, command: str, code: str, context: list[str], text: str) -> None:
        raise NotImplementedError

    def _send_lines(
        self, lines: list[str], timestamp: str, msgid: str | None, batch: str | None = None
    ) -> None:
        raise NotImplementedError

    def send_error(self, error: ChatError, request_id: Any = None) -> None:
        raise NotImplementedError

    def chat_error(self, failure: Failure, doing: str) -> ChatError:
        raise NotImplementedError

    def _async_failed(self, failure: Failure, command: str, target: str | None) -> None:
        raise NotImplementedError

    def _hold(self, room: str) -> None:
        raise NotImplementedError

    def posted(self, message: Message) -> None:
        raise NotImplementedError

    def _release(self, room: str, sent: set[int]) -> None:
        raise NotImplementedError

    # -- channels ---------------------------------------------------------------------

    def _room(self, target: str) -> str:
        """The room of a channel name, or 403."""
        if not target.startswith("#"):
            raise IrcReply(irc.ERR_NOSUCHCHANNEL, target, "No such channel (channels start with #)")
        try:
            return validate_room(target[1:])
        except InvalidRoom as e:
            raise IrcReply(irc.ERR_NOSUCHCHANNEL, target, f"{e.message} [{e.code}]") from None

    def _each(self, command: str, targets: str, act: Callable[[str], None]) -> None:
        """``act`` on every comma-separated target, each failure answered on its own."""
        for target in targets.split(","):
            if not target:
                continue
            try:
                act(target)
            except IrcReply as answer:
                self.reply(answer.numeric, *answer.params)
            except ChatError as error:
                self.send_error(error, (command, target))

    def irc_JOIN(self, prefix: str, params: list[str]) -> None:
        if not params:
            raise IrcReply(irc.ERR_NEEDMOREPARAMS, "JOIN", "Not enough parameters")
        if params[0] == "0":
            for room in sorted(self.service.rooms_of(self.participant)):
                self._part(channel(room), "")
            return
        self._each("JOIN", params[0], self._join)

    def _join(self, target: str) -> None:
        room = self._room(target)
        if room in self.service.rooms_of(self.participant):
            return
        if self.user_id is not None:
            # A ban closes the account's connections, but one may still be
            # on its way from another instance: 474, not a join.
            self.service.check_not_banned(self.user_id)
        if self.user_id is None and not guest_may_join(self.service, room, self.nickname):
            raise IrcReply(
                irc.ERR_UNAVAILRESOURCE,
                target,
                f"the name {self.nickname} is already taken in {target} [nickname_taken]",
            )
        joined = self.service.join(self.participant, room)
        self.sendLine(f":{self.me} JOIN {channel(room)}")
        # RPL_TOPIC now, before the names, when the room is known here;
        # once its topic has been read from the store when the room is new.
        joined.addCallback(lambda result: self._topic_reply(room, result.topic, on_join=True))
        joined.addErrback(self._async_failed, "JOIN", channel(room))
        self._names(room)

    def irc_PART(self, prefix: str, params: list[str]) -> None:
        if not params:
            raise IrcReply(irc.ERR_NEEDMOREPARAMS, "PART", "Not enough parameters")
        reason = params[1] if len(params) > 1 else ""
        self._each("PART", params[0], lambda target: self._part(target, reason))

    def _part(self, target: str, reason: str) -> None:
        room = self._room(target)
        # The reason goes to every surface: plain text, as messages are.
        reason = clean_reason(ircwire.strip_formatting(reason))
        try:
            self.service.leave(self.participant, room, reason)
        except NotInRoom:
            raise IrcReply(irc.ERR_NOTONCHANNEL, target, "You're not on that channel") from None
        self.sendLine(
            ircwire.departure_line(
                system_message(room, self.nickname, LEFT, 0, Departure(PART, reason)),
                self.me,
                self.hostname,
            )
        )

    def irc_NAMES(self, prefix: str, params: list[str]) -> None:
        if not params:
            self.reply(irc.RPL_ENDOFNAMES, "*", "End of /NAMES list")
            return
        self._each("NAMES", params[0], lambda target: self._names(self._room(target)))

    def _names(self, room: str) -> None:
        """RPL_NAMREPLY lines of at most 510 bytes (Twisted's ``IRC.names``
        counts characters), then RPL_ENDOFNAMES."""
        head = f":{self.hostname} {irc.RPL_NAMREPLY} {self.nickname} = {channel(room)} :"
        for names in _fill(head, self.service.members(room)):
            self.sendLine(head + names)
        self.reply(irc.RPL_ENDOFNAMES, channel(room), "End of /NAMES list")

    def irc_WHO(self, prefix: str, params: list[str]) -> None:
        mask = params[0] if params else "*"
        if mask.startswith("#"):
            room = self._room(mask)
            members = [(channel(room), name) for name in self.service.members(room)]
        elif mask != "*" and self.service.is_online(mask):
            members = [("*", mask)]
        else:
            members = []
        for where, name in members:
            self.sendCommand(
                irc.RPL_WHOREPLY,
                (self.nickname, where, name, self.hostname, self.hostname, name, "H", f":0 {name}"),
                self.hostname,
            )
        self.reply(irc.RPL_ENDOFWHO, mask, "End of /WHO list")

    def irc_WHOIS(self, prefix: str, params: list[str]) -> None:
        if not params:
            raise IrcReply(irc.ERR_NONICKNAMEGIVEN, "No nickname given")
        name = params[-1]
        if self.service.is_online(name):
            self.sendCommand(
                irc.RPL_WHOISUSER,
                (self.nickname, name, name, self.hostname, "*", f":{name}"),
                self.hostname,
            )
            self.reply(irc.RPL_WHOISSERVER, name, self.hostname, self.options.network)
        else:
            self.reply(irc.ERR_NOSUCHNICK, name, "No such nick/channel")
        self.reply(irc.RPL_ENDOFWHOIS, name, "End of /WHOIS list")

    def irc_WHOWAS(self, prefix: str, params: list[str]) -> None:
        if not params:
            raise IrcReply(irc.ERR_NONICKNAMEGIVEN, "No nickname given")
        self.reply(irc.ERR_WASNOSUCHNICK, params[0], "There was no such nickname")
        self.reply(irc.RPL_ENDOFWHOWAS, params[0], "End of WHOWAS")

    def irc_ISON(self, prefix: str, params: list[str]) -> None:
        if not params:
            raise IrcReply(irc.ERR_NEEDMOREPARAMS, "ISON", "Not enough parameters")
        names = " ".join(params).split()
        self.reply(irc.RPL_ISON, " ".join(n for n in names if self.service.is_online(n)))

    def irc_USERHOST(self, prefix: str, params: list[str]) -> None:
        if not params:
            raise IrcReply(irc.ERR_NEEDMOREPARAMS, "USERHOST", "Not enough parameters")
        online = [n for n in params[:5] if self.service.is_online(n)]
        self.reply(irc.RPL_USERHOST, " ".join(f"{n}=+{n}@{self.hostname}" for n in online))

    def irc_LIST(self, prefix: str, params: list[str]) -> None:
        wanted = {self._room(t) for t in params[0].split(",") if t} if params else None
        rooms = self.service.active_rooms(self.participant, LIST_LIMIT)
        self.reply(irc.RPL_LISTSTART, "Channel", "Users  Name")
        for room, people in rooms:
            if (wanted is None or room in wanted) and _channel_safe(room):
                self.reply(irc.RPL_LIST, channel(room), str(people), "")
        self.reply(irc.RPL_LISTEND, "End of /LIST")

    def irc_TOPIC(self, prefix: str, params: list[str]) -> Deferred[None]:
        """``TOPIC #room``: RPL_TOPIC + RPL_TOPICWHOTIME (333), or
        RPL_NOTOPIC; ``TOPIC #room :text`` sets it (empty: clears it), and
        every member sees the TOPIC line, the setter too."""
        if not params:
            raise IrcReply(irc.ERR_NEEDMOREPARAMS, "TOPIC", "Not enough parameters")
        target = params[0]
        room = self._room(target)
        if len(params) == 1:
            d = Deferred.fromCoroutine(self.service.room_topic(room))
            d.addCallback(lambda topic: self._topic_reply(room, topic))
        else:
            if room not in self.service.rooms_of(self.participant):
                raise IrcReply(irc.ERR_NOTONCHANNEL, target, "You're not on that channel")
            d = Deferred.fromCoroutine(self.service.set_topic(self.participant, room, params[1]))
            d.addCallback(lambda _: None)
        return d.addErrback(self._topic_failed, target)

    def _topic_reply(self, room: str, topic: Any, on_join: bool = False) -> None:
        """332 and 333 for a topic; 331 for none (not on a JOIN, where a
        channel without a topic says nothing)."""
        target = channel(room)
        if topic is None:
            if not on_join:
                self.reply(irc.RPL_NOTOPIC, target, "No topic is set")
            return
        self.reply(irc.RPL_TOPIC, target, topic.text)
        self.reply(RPL_TOPICWHOTIME, target, topic.nickname, str(topic.set_ms // 1000))

    def _topic_failed(self, failure: Failure, target: str) -> None:
        if failure.check(Forbidden):
            self.reply(irc.ERR_CHANOPRIVSNEEDED, target, failure.getErrorMessage())
            return
        self._async_failed(failure, "TOPIC", target)

    def irc_MODE(self, prefix: str, params: list[str]) -> None:
        if not params:
            raise IrcReply(irc.ERR_NEEDMOREPARAMS, "MODE", "Not enough parameters")
        target = params[0]
        if target.startswith("#"):
            self._room(target)
            if len(params) == 1:
                self.sendCommand(
                    irc.RPL_CHANNELMODEIS, (self.nickname, target, "+nt"), self.hostname
                )
            elif params[1].lstrip("+") in ("b", "e", "I"):
                end = {"b": irc.RPL_ENDOFBANLIST, "e": "349", "I": "347"}[params[1].lstrip("+")]
                self.reply(end, target, "End of list")
            else:
                raise IrcReply(
                    irc.ERR_CHANOPRIVSNEEDED, target, "parkchat rooms have no modes to change"
                )
        elif nickname_key(target) == self._key:
            self.reply(irc.RPL_UMODEIS, "+i")
        else:
            raise IrcReply(irc.ERR_USERSDONTMATCH, "Can't change mode for other users")

    def irc_KICK(self, prefix: str, params: list[str]) -> None:
        if len(params) < 2:
            raise IrcReply(irc.ERR_NEEDMOREPARAMS, "KICK", "Not enough parameters")
        self._room(params[0])
        raise IrcReply(
            irc.ERR_CHANOPRIVSNEEDED, params[0], "only moderators kick, with the admin API"
        )

    def irc_AWAY(self, prefix: str, params: list[str]) -> None:
        if params and params[0]:
            self.reply(irc.RPL_NOWAWAY, "You have been marked as being away (here only)")
        else:
            self.reply(irc.RPL_UNAWAY, "You are no longer marked as being away")

    def irc_MOTD(self, prefix: str, params: list[str]) -> None:
        motd = self.options.motd
        if motd is None:
            self.reply(irc.ERR_NOMOTD, "MOTD File is missing")
            return
        self.reply(irc.RPL_MOTDSTART, f"- {self.hostname} Message of the day - ")
        for line in motd:
            self.reply(irc.RPL_MOTD, f"- {line}")
        self.reply(irc.RPL_ENDOFMOTD, "End of /MOTD command.")

    def irc_VERSION(self, prefix: str, params: list[str]) -> None:
        self.reply(irc.RPL_VERSION, f"parkchat-{__version__}.", self.hostname, "parkchat")

    # -- messages -----------------------------------------------------------------------

    def irc_PRIVMSG(self, prefix: str, params: list[str]) -> None:
        self._message("PRIVMSG", params)

    def irc_NOTICE(self, prefix: str, params: list[str]) -> None:
        self._message("NOTICE", params)

    def _message(self, command: str, params: list[str]) -> None:
        if "batch" in self.tags_in:
            self._batched(command, params)
            return
        if not params or not params[0]:
            raise IrcReply(irc.ERR_NORECIPIENT, f"No recipient given ({command})")
        if len(params) < 2 or not params[1]:
            raise IrcReply(irc.ERR_NOTEXTTOSEND, "No text to send")
        content = self._content(params[1])
        if content is None:
            return
        self._each(command, params[0], lambda target: self._send_to(command, target, content))

    def irc_TAGMSG(self, prefix: str, params: list[str]) -> None:
        """IRCv3 message-tags: a message of tags only. ``+typing=active`` to
        a channel is a typing notice in the room (at most one a second,
        as on /ws); other client-only tags, and typing to a nickname, are
        not carried (CLIENTTAGDENY says so)."""
        if not params or not params[0]:
            raise IrcReply(irc.ERR_NORECIPIENT, "No recipient given (TAGMSG)")
        target = params[0]
        if self.tags_in.get(ircwire.TYPING_TAG) != "active" or not target.startswith("#"):
            return
        room = self._room(target)
        now = self.factory.context.clock.seconds()
        if now - self._last_typing < TYPING_INTERVAL:
            return  # best effort: excess is dropped quietly
        self._last_typing = now
        try:
            self.service.notify(self.participant, room, ircwire.TYPING)
        except NotInRoom:
            raise IrcReply(
                irc.ERR_CANNOTSENDTOCHAN, target, "You are not in that channel [not_in_room]"
            ) from None

    # -- draft/multiline: a message of several lines from the client --------------

    def irc_BATCH(self, prefix: str, params: list[str]) -> None:
        """``BATCH +ref draft/multiline <target>``, the batch's PRIVMSG (or
        NOTICE) lines, ``BATCH -ref``: one message, its lines joined with
        newlines (``draft/multiline-concat`` ones without), posted when the
        batch closes. One batch at a time, within the CAP's limits."""
        if not params or (params[0].startswith("+") and len(params) < 3):
            raise IrcReply(irc.ERR_NEEDMOREPARAMS, "BATCH", "Not enough parameters")
        reference = params[0][1:]
        if params[0].startswith("+"):
            if params[1] != "draft/multiline" or "draft/multiline" not in self.caps:
                self._batch_failed("MULTILINE_INVALID", [], f"unsupported batch type {params[1]}")
            elif self._multiline is not None:
                self._batch_failed("MULTILINE_INVALID", [], "a batch is open already")
            else:
                self._multiline = Multiline(reference, params[2])
            return
        batch = self._multiline
        if not params[0].startswith("-") or batch is None or batch.reference != reference:
            self._batch_failed("MULTILINE_INVALID", [], f"no open batch {reference}")
            return
        self._multiline = None
        if batch.command is None:
            return  # an empty batch: nothing to post
        content = self._content(batch.content())
        if content is not None:
            command = batch.command
            self._each(command, batch.target, lambda t: self._send_to(command, t, content))

    def _batched(self, command: str, params: list[str]) -> None:
        """A line of the open multiline batch (``@batch=ref PRIVMSG ...``)."""
        batch = self._multiline
        if batch is None or batch.reference != self.tags_in["batch"]:
            self._batch_failed("MULTILINE_INVALID", [], "no open batch of that reference")
            return
        target = params[0] if params else ""
        text = params[1] if len(params) > 1 else ""
        if target != batch.target:
            self._multiline = None
            self._batch_failed(
                "MULTILINE_INVALID_TARGET", [batch.target, target or "*"], "wrong target"
            )
            return
        concat = ircwire.MULTILINE_CONCAT in self.tags_in
        if (batch.command not in (None, command)) or (concat and (not batch.lines or not text)):
            self._multiline = None
            self._batch_failed("MULTILINE_INVALID", [], "a malformed multiline batch")
            return
        batch.add(command, text, concat)
        if len(batch.lines) > ircwire.MULTILINE_MAX_LINES:
            self._multiline = None
            self._batch_failed(
                "MULTILINE_MAX_LINES", [str(ircwire.MULTILINE_MAX_LINES)], "too many lines"
            )
        elif batch.size > ircwire.MULTILINE_MAX_BYTES:
            self._multiline = None
            self._batch_failed(
                "MULTILINE_MAX_BYTES", [str(ircwire.MULTILINE_MAX_BYTES)], "too many bytes"
            )

    def _batch_failed(self, code: str, context: list[str], text: str) -> None:
        self.metrics.error_sent("irc", "invalid_request")
        self._fail("BATCH", code, context, text)

    def _content(self, text: str) -> str | None:
        """What an IRC message posts: ``/me text`` for a CTCP ACTION, other
        CTCP refused with a notice (None), formatting codes removed with a
        notice (parkchat content is plain text: ``validate_content``)."""
        if text.startswith("\x01"):
            extended = irc.ctcpExtract(text)["extended"]
            if extended and extended[0][0].upper() == "ACTION":
                text = ircwire.ACTION_PREFIX + (extended[0][1] or "")
            else:
                kind = extended[0][0] if extended else "?"
                self.server_notice(f"CTCP {kind} is not carried by parkchat: nothing was sent")
                return None
        if ircwire.FORMATTING.search(text) is not None:
            text = ircwire.strip_formatting(text)
            self.server_notice(
                "Formatting codes (bold, colours...) were removed: parkchat messages are plain text"
            )
        return text

    def _send_to(self, command: str, target: str, content: str) -> None:
        if target.startswith("#"):
            room = self._room(target)
            d = self.service.post(self.participant, room, content)
            d.addCallbacks(self.posted, self._async_failed, errbackArgs=(command, target))
        else:
            sent = Deferred.fromCoroutine(
                self.service.send_direct(self.participant, target, content)
            )
            sent.addCallbacks(self._direct_sent, self._async_failed, errbackArgs=(command, target))

    def _direct_sent(self, message: DirectMessage) -> None:
        if "echo-message" in self.caps and message.to_user_id != self.user_id:
            lines = message_lines(self.me, "PRIVMSG", message.to_nickname, message.content)
            self._send_lines(lines, message.timestamp, irchistory.direct_msgid(message))

    # -- CHATHISTORY ----------------------------------------------------------------------

    def irc_CHATHISTORY(self, prefix: str, params: list[str]) -> Deferred[None] | None:
        if not params:
            self._fail("CHATHISTORY", "NEED_MORE_PARAMS", [], "Missing parameters")
            return None
        sub = params[0].upper()
        wanted = {"LATEST": 4, "BEFORE": 4, "AFTER": 4, "AROUND": 4, "BETWEEN": 5, "TARGETS": 4}
        if sub not in wanted:
            self._fail("CHATHISTORY", "UNKNOWN_COMMAND", [params[0]], "Unknown command")
            return None
        if len(params) < wanted[sub]:
            self._fail("CHATHISTORY", "NEED_MORE_PARAMS", [sub], "Missing parameters")
            return None
        d = Deferred.fromCoroutine(self._chathistory(sub, params[1:]))
        d.addErrback(self._history_failed, sub, params[1])
        return d

    async def _chathistory(self, sub: str, args: list[str]) -> None:
        limit = self._limit(args[-1])
        if sub == "TARGETS":
            await self._targets(args[0], args[1], limit)
            return
        target = args[0]
        star = sub == "LATEST"
        if target.startswith("#"):
            room = self._room_or_history_error(target)
            refs = [irchistory.parse_reference(a, star=star) for a in args[1:-1]]
            pager = irchistory.room_pager(
                self.service, room, self.factory.history_page, self.factory.history_scan
            )
            # Live lines of the room wait while it is read, and those the
            # answer holds are not written again (``_hold``, ``_release``).
            held = room in self.service.rooms_of(self.participant)
            if held:
                self._hold(room)
            sent: set[int] = set()
            try:
                messages = await pager.answer(sub, refs, limit)
                if self._state == "closed":
                    return
                batch = self._open_batch("chathistory", target)
                for message in messages:
                    lines = message_lines(
                        user_prefix(message.nickname, self.hostname, message.guest),
                        "PRIVMSG",
                        target,
                        message.content,
                    )
                    msgid = irchistory.room_msgid(message)
                    self._send_lines(lines, message.timestamp, msgid, batch)
                    sent.add(message.seq)
                self._close_batch(batch)
            finally:
                if held:
                    self._release(room, sent)
            return
        if self.user_id is None:
            raise irchistory.HistoryError(
                "INVALID_TARGET", "direct messages need a registered account"
            )
        refs = [irchistory.parse_reference(a, star=star, direct=True) for a in args[1:-1]]
        directs = await irchistory.direct_pager(
            self.service,
            self.participant,
            target,
            self.factory.history_page,
            self.factory.history_scan,
        ).answer(sub, refs, limit)
        if self._state == "closed":
            return
        batch = self._open_batch("chathistory", target)
        for dm in directs:
            to = dm.to_nickname
            lines = message_lines(
                user_prefix(dm.from_nickname, self.hostname), "PRIVMSG", to, dm.content
            )
            self._send_lines(lines, dm.timestamp, irchistory.direct_msgid(dm), batch)
        self._close_batch(batch)

    def _limit(self, text: str) -> int:
        if not text.isascii() or not text.isdigit() or int(text) < 1:
            raise irchistory.HistoryError("INVALID_PARAMS", f"{text} is not a message count")
        return min(int(text), self.options.history_max)

    def _room_or_history_error(self, target: str) -> str:
        try:
            return self._room(target)
        except IrcReply:
            raise irchistory.HistoryError("INVALID_TARGET", f"{target} is not a room") from None

    async def _targets(self, start: str, end: str, limit: int) -> None:
        """The joined rooms with a message between two timestamps, newest first."""
        low = irchistory.parse_reference(start).timestamp_ms
        high = irchistory.parse_reference(end).timestamp_ms
        if low is None or high is None:
            raise irchistory.HistoryError("INVALID_PARAMS", "TARGETS takes two timestamps")
        low, high = min(low, high), max(low, high)
        found: list[Message] = []
        for room in sorted(self.service.rooms_of(self.participant)):
            newest = await self.service.history(room, limit=1)
            if newest and low <= newest[-1].timestamp_ms <= high:
                found.append(newest[-1])
        found.sort(key=lambda m: -m.timestamp_ms)
        batch = self._open_batch("draft/chathistory-targets")
        for message in found[:limit]:
            self.sendLine(
                ircwire.tag_prefix({"batch": batch} if batch else {})
                + f"CHATHISTORY TARGETS {channel(message.room)} timestamp={message.timestamp}"
            )
        self._close_batch(batch)

    def _open_batch(self, kind: str, *params: str) -> str | None:
        if "batch" not in self.caps:
            return None
        self._batches += 1
        reference = f"h{self._batches}"
        self.sendCommand("BATCH", ("+" + reference, kind, *params), self.hostname)
        return reference

    def _close_batch(self, reference: str | None) -> None:
        if reference is not None:
            self.sendCommand("BATCH", ("-" + reference,), self.hostname)

    def _history_failed(self, failure: Failure, sub: str, target: str) -> None:
        if self._state == "closed":
            return
        error = failure.value
        if isinstance(error, irchistory.HistoryError):
            code, text = error.code, error.text
        elif isinstance(error, UnknownRecipient):
            code, text = "INVALID_TARGET", f"{error.message} [{error.code}]"
        else:
            chat = self.chat_error(failure, "CHATHISTORY")
            code, text = "MESSAGE_ERROR", f"{chat.message} [{chat.code}]"
        self.metrics.error_sent("irc", "invalid_request")
        self._fail("CHATHISTORY", code, [sub, target], text)


def _channel_safe(room: str) -> bool:
    """Whether ``#room`` can be written as one IRC parameter (rooms may have
    names with spaces or commas, which IRC clients cannot join)."""
    return " " not in room and "," not in room


def _fill(head: str, names: Iterable[str]) -> list[str]:
    """``names`` joined by spaces into as few texts as fit after ``head``
    in a 510-byte line."""
    room = ircwire.MAX_LINE - len(head.encode("utf-8"))
    texts: list[str] = []
    current = ""
    for name in names:
        candidate = f"{current} {name}" if current else name
        if current and len(candidate.encode("utf-8")) > room:
            texts.append(current)
            candidate = name
        current = candidate
    if current:
        texts.append(current)
    return texts
