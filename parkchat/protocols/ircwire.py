"""The IRC wire format, as far as ``twisted.words.protocols.irc`` leaves it
to a server: the pieces the IRC adapter (``irc.py``) builds on, pure and
tested on their own (tests/test_irc_wire.py).

Twisted provides the rest: ``parsemsg`` cuts a line into prefix, command
and parameters, the numeric constants (``RPL_WELCOME`` ...),
``stripFormatting`` and ``ctcpExtract``. What it does not do for a server:

* parse the IRCv3 message tags of an incoming line (``@a=b;c :prefix CMD``;
  ``parsemsg`` would take ``@a=b;c`` for the command): ``split_tags``;
* measure lines in bytes (RFC 1459 counts 512 bytes with CRLF; IRCv3 allows
  a client 4094 bytes of tags before that) and split long text into lines that fit
  without cutting a UTF-8 character: ``check_length``, ``wrap``;
* strip the formatting codes added after its parser was written (italics,
  strike-through, monospace, hex colours): ``strip_formatting``;
* render a room event once for every IRC member (``IrcEncoder``), in the
  few tag combinations clients can negotiate.
"""

from __future__ import annotations

import re
from typing import Final

from twisted.words.protocols.irc import stripFormatting
from zope.interface import implementer

from parkchat.interfaces import IEncoder
from parkchat.model import (
    CHAT,
    CONNECTION_CLOSED,
    DELETED,
    EDITED,
    JOINED,
    KICK,
    LEFT,
    QUIT,
    SYSTEM,
    TOPIC,
    Message,
    nickname_key,
)
from parkchat.protocols.irchistory import line_msgid, room_msgid

# -- numerics Twisted does not name (IRCv3 SASL, modern.ircdocs.horse) ---------------

ERR_INVALIDCAPCMD: Final = "410"
ERR_INPUTTOOLONG: Final = "417"
ERR_NONICKCHANGE: Final = "447"
RPL_LOGGEDIN: Final = "900"
RPL_SASLSUCCESS: Final = "903"
ERR_SASLFAIL: Final = "904"
ERR_SASLTOOLONG: Final = "905"
ERR_SASLABORTED: Final = "906"
ERR_SASLALREADY: Final = "907"
RPL_SASLMECHS: Final = "908"

#: The room event type of typing notices (``IChatService.notify``), and
#: the client-only tag that carries them on IRC (IRCv3 ``+typing``).
TYPING: Final = "typing"
TYPING_TAG: Final = "+typing"

#: The longest line without tags, CRLF excluded (RFC 1459: 512 with CRLF).
MAX_LINE: Final = 510
#: The most tag data a client may send (IRCv3 message-tags: 4094 bytes
#: between the ``@`` and the space; a server's own tags may take 8191).
MAX_CLIENT_TAGS: Final = 4094
#: The longest line a client may send, CRLF excluded: its tags, ``@`` and a
#: space, then a line of at most MAX_LINE.
MAX_TAGGED_LINE: Final = MAX_CLIENT_TAGS + 2 + MAX_LINE

#: Negotiable renderings of a room event: bit 1 the ``time`` tag
#: (server-time), bit 2 the ``msgid`` tag (message-tags), bit 4 a message
#: of several IRC lines as one ``draft/multiline`` batch.
TIME: Final = 1
MSGID: Final = 2
MULTILINE: Final = 4
#: The draft/multiline limits a client's batch is held to (CAP value).
MULTILINE_MAX_BYTES: Final = 4096
MULTILINE_MAX_LINES: Final = 100
MULTILINE_CONCAT: Final = "draft/multiline-concat"


class LineTooLong(ValueError):
    """A line over the limits above."""


def check_length(line: bytes) -> None:
    """Raise LineTooLong unless ``line`` (no CRLF) fits: 510 bytes, after
    at most 4094 bytes of tag data (the server answers 417 to either, as
    message-tags says)."""
    if line.startswith(b"@"):
        tags, _, rest = line[1:].partition(b" ")
        if len(tags) > MAX_CLIENT_TAGS or len(rest.lstrip(b" ")) > MAX_LINE:
            raise LineTooLong()
    elif len(line) > MAX_LINE:
        raise LineTooLong()


# -- message tags (https://ircv3.net/specs/extensions/message-tags) --------------------

_UNESCAPE = {":": ";", "s": " ", "\\": "\\", "r": "\r", "n": "\n"}
_ESCAPE = str.maketrans({";": "\\:", " ": "\\s", "\\": "\\\\", "\r": "\\r", "\n": "\\n"})


def unescape_tag_value(value: str) -> str:
    """A tag value as sent, unescaped: ``\\:`` is ``;``, ``\\s`` a space,
    ``\\\\`` a backslash, ``\\r`` and ``\\n``; a backslash before any other
    character is dropped, and so is a trailing one (as the spec says)."""
    if "\\" not in value:
        return value
    out: list[str] = []
    chars = iter(value)
    for char in chars:
        if char != "\\":
            out.append(char)
            continue
        following = next(chars, None)
        if following is not None:
            out.append(_UNESCAPE.get(following, following))
    return "".join(out)


def escape_tag_value(value: str) -> str:
    """The inverse of ``unescape_tag_value``."""
    return value.translate(_ESCAPE)


def parse_tags(text: str) -> dict[str, str]:
    """``a=b;c;+d=e`` (without the ``@``) as a dict; a tag without a value
    maps to "", a repeated key keeps its last value, empty keys are skipped."""
    tags: dict[str, str] = {}
    for item in text.split(";"):
        key, _, value = item.partition("=")
        if key:
            tags[key] = unescape_tag_value(value)
    return tags


def split_tags(line: str) -> tuple[dict[str, str], str]:
    """A line as its tags and the rest, which ``parsemsg`` can read."""
    if not line.startswith("@"):
        return {}, line
    text, _, rest = line[1:].partition(" ")
    return parse_tags(text), rest.lstrip(" ")


def tag_prefix(tags: dict[str, str]) -> str:
    """``@a=b;c `` for ``tags`` (empty for none), values escaped."""
    if not tags:
        return ""
    items = (f"{k}={escape_tag_value(v)}" if v else k for k, v in tags.items())
    return "@" + ";".join(items) + " "


# -- text ------------------------------------------------------------------------------

#: Formatting codes: bold, colour, hex colour, reset, monospace, reverse,
#: italics, strike-through, underline.
FORMATTING: Final = re.compile("[\x02\x03\x04\x0f\x11\x16\x1d\x1e\x1f]")
# What twisted.words.protocols.irc.stripFormatting leaves in place: hex
# colours (\x04RRGGBB[,RRGGBB]), monospace, italics, strike-through.
_NEWER_FORMATTING = re.compile("\x04(?:[0-9a-fA-F]{6}(?:,[0-9a-fA-F]{6})?)?|[\x11\x1d\x1e]")


def strip_formatting(text: str) -> str:
    """``text`` without IRC formatting codes (see ``FORMATTING``)."""
    return stripFormatting(_NEWER_FORMATTING.sub("", text))


def wrap(text: str, limit: int) -> list[str]:
    """``text`` (one line) cut into pieces of at most ``limit`` UTF-8 bytes,
    never inside a character, after the last space of a piece when there is
    one in its second half. No character is dropped or added: the pieces
    joined are ``text``. (``twisted.words.protocols.irc.split`` counts
    characters and drops white space.)"""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return [text]
    pieces: list[str] = []
    while len(data) > limit:
        cut = limit
        while cut > 0 and data[cut] & 0xC0 == 0x80:  # a continuation byte
            cut -= 1
        space = data.rfind(b" ", 0, cut)
        if space >= limit // 2:
            cut = space + 1
        pieces.append(data[:cut].decode("utf-8"))
        data = data[cut:]
    if data:
        pieces.append(data.decode("utf-8"))
    return pieces


ACTION_PREFIX: Final = "/me "


def message_pieces(prefix: str, command: str, target: str, content: str) -> list[tuple[str, bool]]:
    """``:prefix PRIVMSG target :text`` lines (no CRLF, no tags) for
    ``content``, each with whether it continues the line before it (a long
    line cut to fit 510 bytes; ``draft/multiline-concat``). Content that
    is one line starting with ``/me `` is a CTCP ACTION (what ``/me`` sends
    from an IRC client, and what a terminal user types)."""
    head = f":{prefix} {command} {target} :"
    room = MAX_LINE - len(head.encode("utf-8"))
    if is_action(content):
        action = content[len(ACTION_PREFIX) :]
        room -= len("\x01ACTION \x01")
        return [
            (f"{head}\x01ACTION {piece}\x01", n > 0) for n, piece in enumerate(wrap(action, room))
        ]
    return [
        (head + piece, n > 0)
        for line in content.split("\n")
        for n, piece in enumerate(wrap(line, room))
    ]


def message_lines(prefix: str, command: str, target: str, content: str) -> list[str]:
    """``message_pieces`` without the continuation marks: one line per line
    of ``content``, long lines cut to fit 510 bytes."""
    return [line for line, _ in message_pieces(prefix, command, target, content)]


def is_action(content: str) -> bool:
    """Whether ``content`` is shown on IRC as a CTCP ACTION (``/me``)."""
    return content.startswith(ACTION_PREFIX) and "\n" not in content


def user_prefix(nickname: str, host: str, guest: bool = False) -> str:
    """``nick!nick@host``: how every member appears on IRC, whatever its
    surface (parkchat has no ident or real host to show); a guest (no
    account) as ``nick!~nick@host``, IRC's usual mark of an identity nobody
    vouched for (clients show it in joins, WHO and message details)."""
    return f"{nickname}!{'~' if guest else ''}{nickname}@{host}"


def channel(room: str) -> str:
    """The IRC channel of a parkchat room."""
    return "#" + room


# -- room events ---------------------------------------------------------------------


class IrcEvent:
    """A room event rendered for IRC members, in each rendering one of them
    negotiated (at most eight, each rendered once, on first use)."""

    __slots__ = (
        "_batch",
        "_lines",
        "_rendered",
        "event",
        "key",
        "message",
        "origin",
        "quit",
        "tag_only",
    )

    def __init__(
        self,
        message: Message,
        lines: list[str],
        *,
        quit: bool = False,
        tag_only: bool = False,
        batch: tuple[str, str, list[bool]] | None = None,
    ) -> None:
        self.message = message
        #: The connection that posted it (to skip or echo to the poster).
        self.origin = message.origin
        #: JOINED or LEFT for joins and leaves (a member's own are skipped).
        self.event = message.event if message.type == SYSTEM else None
        #: The folded nickname of whoever it is about.
        self.key = nickname_key(message.nickname)
        #: A QUIT: the same quit comes once per room the member was in,
        #: and a client shown it once takes the member out of every channel.
        self.quit = quit
        #: A TAGMSG (``+typing``): only for clients with message-tags.
        self.tag_only = tag_only
        self._lines = lines
        #: For a chat message of several lines: its prefix, its target and
        #: which lines continue the one before (a draft/multiline batch).
        self._batch = batch
        self._rendered: list[bytes | None] = [None] * 8

    def data(self, variant: int) -> bytes:
        """The bytes for a member with rendering ``variant`` (TIME | MSGID |
        MULTILINE)."""
        rendered = self._rendered[variant]
        if rendered is None:
            rendered = self._rendered[variant] = self._render(variant)
        return rendered

    def _render(self, variant: int) -> bytes:
        message = self.message
        if variant & MULTILINE and self._batch is not None:
            return self._render_batch(variant)
        tags: dict[str, str] = {}
        if self.tag_only:
            tags[TYPING_TAG] = "active"
        if variant & TIME:
            tags["time"] = message.timestamp
        out = []
        for index, line in enumerate(self._lines):
            if variant & MSGID and message.type == CHAT and message.id:
                tags["msgid"] = line_msgid(room_msgid(message), index)
            out.append(f"{tag_prefix(tags)}{line}\r\n")
        return "".join(out).encode("utf-8")

    def _render_batch(self, variant: int) -> bytes:
        """One ``draft/multiline`` batch: ``time`` and ``msgid`` on its
        opening line, the lines inside, cut ones marked to be joined."""
        assert self._batch is not None
        message = self.message
        prefix, target, concat = self._batch
        tags: dict[str, str] = {}
        if variant & TIME:
            tags["time"] = message.timestamp
        if variant & MSGID:
            tags["msgid"] = room_msgid(message)
        reference = f"ml{message.id}"
        out = [f"{tag_prefix(tags)}:{prefix} BATCH +{reference} draft/multiline {target}\r\n"]
        for line, joined in zip(self._lines, concat, strict=True):
            inner = {"batch": reference, MULTILINE_CONCAT: ""} if joined else {"batch": reference}
            out.append(f"{tag_prefix(inner)}{line}\r\n")
        out.append(f":{prefix} BATCH -{reference}\r\n")
        return "".join(out).encode("utf-8")


@implementer(IEncoder)
class IrcEncoder:
    """Renders a room event once for every IRC member: chat messages as
    PRIVMSG lines, joins as JOIN, leaves as PART, QUIT or KICK
    (``departure_line``), typing notices as ``@+typing=active TAGMSG`` (for
    clients with message-tags), other system notices as a NOTICE from the
    server; topics as TOPIC from whoever set them; edits and deletions,
    which IRC has no command for, as a NOTICE from the server to the
    channel (``bob edited #5: new text``, ``message #5 deleted``; ``#5`` is
    the message's room position)."""

    surface = "irc"

    def __init__(self, server_name: str) -> None:
        self.server_name = server_name

    def encode(self, message: Message) -> IrcEvent | None:
        if message.type == CHAT:
            prefix = user_prefix(message.nickname, self.server_name, message.guest)
            target = channel(message.room)
            pieces = message_pieces(prefix, "PRIVMSG", target, message.content)
            lines = [line for line, _ in pieces]
            if len(pieces) > 1 and not is_action(message.content):
                batch = (prefix, target, [joined for _, joined in pieces])
                return IrcEvent(message, lines, batch=batch)
        elif message.type == SYSTEM:
            prefix = user_prefix(message.nickname, self.server_name, message.guest)
            if message.event == JOINED:
                lines = [f":{prefix} JOIN {channel(message.room)}"]
            elif message.event == LEFT:
                return self._departure(message, prefix)
            else:
                lines = message_lines(
                    self.server_name, "NOTICE", channel(message.room), message.content
                )
        elif message.type == TYPING:
            prefix = user_prefix(message.nickname, self.server_name)
            return IrcEvent(message, [f":{prefix} TAGMSG {channel(message.room)}"], tag_only=True)
        elif message.type == TOPIC:
            prefix = user_prefix(message.nickname, self.server_name)
            lines = [f":{prefix} TOPIC {channel(message.room)} :{message.content}"]
        elif message.type == EDITED:
            lines = message_lines(
                self.server_name,
                "NOTICE",
                channel(message.room),
                f"{message.nickname} edited #{message.seq}: {message.content}",
            )
        elif message.type == DELETED:
            lines = message_lines(
                self.server_name,
                "NOTICE",
                channel(message.room),
                f"message #{message.seq} deleted",
            )
        else:
            return None
        return IrcEvent(message, lines)

    def _departure(self, message: Message, prefix: str) -> IrcEvent:
        line = departure_line(message, prefix, self.server_name)
        departure = message.departure
        return IrcEvent(message, [line], quit=departure is not None and departure.kind == QUIT)


def departure_line(message: Message, prefix: str, server_name: str) -> str:
    """A member's leave (a LEFT event) as IRC shows it, by how it left
    (``Departure.kind``): ``PART #room :reason`` (its own words, if any),
    ``QUIT :reason`` (its connection went away; the reasons are
    ``model.QUIT_REASONS``) or ``KICK #room nick :reason`` from the server.
    A leave without a departure (from an older instance) is a PART."""
    departure = message.departure
    kind, reason = (departure.kind, departure.reason) if departure is not None else (None, "")
    room = channel(message.room)
    if kind == QUIT:
        return _with_trailing(f":{prefix} QUIT :", reason or CONNECTION_CLOSED)
    if kind == KICK:
        return _with_trailing(f":{server_name} KICK {room} {message.nickname} :", reason)
    if reason:
        return _with_trailing(f":{prefix} PART {room} :", reason)
    return f":{prefix} PART {room}"


def _with_trailing(head: str, text: str) -> str:
    """``head + text``, ``text`` cut to fit a 510-byte line (reasons are
    at most ``MAX_REASON_LENGTH`` characters, but not bytes)."""
    return head + wrap(text, MAX_LINE - len(head.encode("utf-8")))[0]
