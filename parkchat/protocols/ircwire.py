"""The IRC wire format, as far as ``twisted.words.protocols.irc`` leaves it
to a server: the pieces the IRC adapter (``irc.py``) builds on, pure and
tested on their own (tests/test_irc_wire.py).

Twisted provides the rest: ``parsemsg`` cuts a line into prefix, command
and parameters, the numeric constants (``RPL_WELCOME`` ...),
``stripFormatting`` and ``ctcpExtract``. What it does not do for a server:

* parse the IRCv3 message tags of an incoming line (``@a=b;c :prefix CMD``;
  ``parsemsg`` would take ``@a=b;c`` for the command): ``split_tags``;
* measure lines in bytes (RFC 1459 counts 512 bytes with CRLF; IRCv3 allows
  tags up to 8191 bytes in all) and split long text into lines that fit
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
from parkchat.model import CHAT, JOINED, LEFT, SYSTEM, Message, nickname_key
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

#: The longest line without tags, CRLF excluded (RFC 1459: 512 with CRLF).
MAX_LINE: Final = 510
#: The longest line with tags, CRLF excluded (IRCv3 message-tags: 8191 with CRLF).
MAX_TAGGED_LINE: Final = 8189

#: Negotiable tag sets of a room event: bit 1 the ``time`` tag
#: (server-time), bit 2 the ``msgid`` tag (message-tags).
TIME: Final = 1
MSGID: Final = 2


class LineTooLong(ValueError):
    """A line over the limits above."""


def check_length(line: bytes) -> None:
    """Raise LineTooLong unless ``line`` (no CRLF) fits: 510 bytes, or with
    tags 510 bytes after them and 8189 in all."""
    if line.startswith(b"@"):
        _, _, rest = line.partition(b" ")
        if len(line) > MAX_TAGGED_LINE or len(rest.lstrip(b" ")) > MAX_LINE:
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


def message_lines(prefix: str, command: str, target: str, content: str) -> list[str]:
    """``:prefix PRIVMSG target :text`` lines (no CRLF, no tags) for
    ``content``: one per line of it, long lines cut to fit 510 bytes.
    Content that is one line starting with ``/me `` is a CTCP ACTION (what
    ``/me`` sends from an IRC client, and what a terminal user types)."""
    head = f":{prefix} {command} {target} :"
    room = MAX_LINE - len(head.encode("utf-8"))
    if content.startswith(ACTION_PREFIX) and "\n" not in content:
        action = content[len(ACTION_PREFIX) :]
        room -= len("\x01ACTION \x01")
        return [f"{head}\x01ACTION {piece}\x01" for piece in wrap(action, room)]
    return [head + piece for line in content.split("\n") for piece in wrap(line, room)]


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
    """A room event rendered for IRC members, in each tag set one of them
    negotiated (at most four, each rendered once, on first use)."""

    __slots__ = ("_lines", "_rendered", "event", "key", "message", "origin")

    def __init__(self, message: Message, lines: list[str]) -> None:
        self.message = message
        #: The connection that posted it (to skip or echo to the poster).
        self.origin = message.origin
        #: JOINED or LEFT for joins and leaves (a member's own are skipped).
        self.event = message.event if message.type == SYSTEM else None
        #: The folded nickname of whoever it is about.
        self.key = nickname_key(message.nickname)
        self._lines = lines
        self._rendered: list[bytes | None] = [None, None, None, None]

    def data(self, variant: int) -> bytes:
        """The bytes for a member with tag set ``variant`` (TIME | MSGID)."""
        rendered = self._rendered[variant]
        if rendered is None:
            rendered = self._rendered[variant] = self._render(variant)
        return rendered

    def _render(self, variant: int) -> bytes:
        message = self.message
        tags: dict[str, str] = {}
        if variant & TIME:
            tags["time"] = message.timestamp
        out = []
        for index, line in enumerate(self._lines):
            if variant & MSGID and message.type == CHAT and message.id:
                tags["msgid"] = line_msgid(room_msgid(message), index)
            out.append(f"{tag_prefix(tags)}{line}\r\n")
        return "".join(out).encode("utf-8")


@implementer(IEncoder)
class IrcEncoder:
    """Renders a room event once for every IRC member: chat messages as
    PRIVMSG lines, joins and leaves as JOIN and PART, other system notices
    as a NOTICE from the server. Typing notices and deletions have no IRC
    form and are not sent."""

    surface = "irc"

    def __init__(self, server_name: str) -> None:
        self.server_name = server_name

    def encode(self, message: Message) -> IrcEvent | None:
        if message.type == CHAT:
            prefix = user_prefix(message.nickname, self.server_name, message.guest)
            lines = message_lines(prefix, "PRIVMSG", channel(message.room), message.content)
        elif message.type == SYSTEM:
            prefix = user_prefix(message.nickname, self.server_name, message.guest)
            if message.event == JOINED:
                lines = [f":{prefix} JOIN {channel(message.room)}"]
            elif message.event == LEFT:
                lines = [f":{prefix} PART {channel(message.room)}"]
            else:
                lines = message_lines(
                    self.server_name, "NOTICE", channel(message.room), message.content
                )
        else:
            return None
        return IrcEvent(message, lines)
