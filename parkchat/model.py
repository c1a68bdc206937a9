"""Small value types and the naming rules; pure, no I/O.

The wire formats of the different surfaces are rendered from these objects by
the protocol adapters; the one JSON rendering that several of them share (the
parkchat message object of the REST/WebSocket API) is cached on the message so
that a broadcast serialises it once, not once per member.
"""

from __future__ import annotations

import functools
import json
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Any, Final

from parkchat.errors import (
    ContentTooLong,
    InvalidContent,
    InvalidName,
    InvalidRequest,
    InvalidRoom,
)
from parkchat.skeleton import skeleton

CHAT: Final = "chat"
SYSTEM: Final = "system"
#: A room event saying that the stored message ``id`` was deleted (by its
#: author or a moderator).
DELETED: Final = "deleted"
#: A room event carrying the new text of the stored message ``id`` (its
#: ``content``; ``edited_ms`` says when). Like DELETED it rides on the seq of
#: the message it changes and is delivered after that message, never before
#: (parkchat.handlers.delivery).
EDITED: Final = "edited"
#: A room event: the room's topic is now ``content`` (empty: cleared), set by
#: ``nickname`` at ``timestamp_ms``.
TOPIC: Final = "topic"
#: Room events that change a stored message: they carry its ``seq``.
FOLLOWS_MESSAGE: Final = frozenset((DELETED, EDITED))

#: Longest room topic, in characters.
MAX_TOPIC_LENGTH: Final = 300

#: System event kinds carried by ``Message.event``.
JOINED: Final = "joined"
LEFT: Final = "left"

#: How a member left a room (``Departure.kind`` of a LEFT event): it left
#: the room, its connection went away, or a moderator removed it.
PART: Final = "part"
QUIT: Final = "quit"
KICK: Final = "kick"

#: The longest departure reason passed on to the other members (a PART
#: message or a kick reason); longer ones are cut.
MAX_REASON_LENGTH: Final = 300

#: The ``origin`` of a room message a gap fill read from the store (which does
#: not keep the posting connection): surfaces that skip their own messages
#: recognise them by id instead.
FROM_STORE: Final = "*store"

#: The largest id a store can hold (SQL BIGINT); larger ones are refused, not sent to it.
MAX_ID: Final = 2**63 - 1

MAX_ROOM_LENGTH: Final = 64
MAX_NICKNAME_LENGTH: Final = 32

_NICKNAME = re.compile(r"[^\W][\w.\-]*\Z")


def format_timestamp(ms: int) -> str:
    """RFC 3339 in UTC with milliseconds, e.g. ``2025-09-08T15:32:10.123Z``."""
    seconds, millis = divmod(ms, 1000)
    return f"{_utc_second(seconds)}.{millis:03d}Z"


@functools.lru_cache(maxsize=64)
def _utc_second(seconds: int) -> str:
    # Messages come in bursts within the same second; building a datetime
    # per message was a twentieth of the reactor's time under load.
    return f"{datetime.fromtimestamp(seconds, UTC):%Y-%m-%dT%H:%M:%S}"


# json's own string encoder (C), non-ASCII kept literal as with
# ensure_ascii=False.
_json_string = json.encoder.encode_basestring


# Unicode categories Cc (C0, DEL, C1 controls) and Cs (surrogates), as
# character classes: a regex search runs in C, where a per-character
# unicodedata loop costs more than the rest of a message's validation.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_CONTROL_EXCEPT_NL_TAB = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")


def _has_control(text: str) -> bool:
    return _CONTROL.search(text) is not None


#: Characters that change the direction of the text around them (bidi
#: embeddings, overrides, isolates and marks, Arabic letter mark) or that
#: are invisible (zero-width space, non-joiner, joiner, word joiner, BOM):
#: a name holding one can look like another name or turn the text after it
#: around. Refused in names (nicknames, rooms) everywhere.
_INVISIBLE = re.compile("[\u061c\u200b-\u200f\u202a-\u202e\u2060\u2066-\u2069\ufeff]")

#: Bidi controls that open a scope (embeddings and overrides, closed by PDF
#: U+202C; isolates, closed by PDI U+2069) and their closers.
_OPENS_EMBEDDING = "\u202a\u202b\u202d\u202e"
_OPENS_ISOLATE = "\u2066\u2067\u2068"
_PDF = "\u202c"
_PDI = "\u2069"
_BIDI_SCOPE = re.compile("[\u202a-\u202e\u2066-\u2069]")


def _has_invisible(text: str) -> bool:
    return _INVISIBLE.search(text) is not None


def neutralise_bidi(content: str) -> str:
    """``content`` with every bidi embedding, override and isolate closed on
    the line that opened it, and closers that close nothing dropped.

    A message may carry right-to-left text and the controls that lay it out,
    but none of them may reach past the end of its own line: a terminal
    shows each line as a paragraph after the sender's name, and an override
    left open (U+202E) would turn around whatever follows it there. Text
    without such controls is returned as it is (one regex search, in C).
    """
    if _BIDI_SCOPE.search(content) is None:
        return content
    return "\n".join(_balanced_line(line) for line in content.split("\n"))


def _balanced_line(line: str) -> str:
    out: list[str] = []
    # Open scopes, innermost last: "e" an embedding/override, "i" an isolate.
    open_scopes: list[str] = []
    for char in line:
        if char in _OPENS_EMBEDDING:
            open_scopes.append("e")
        elif char in _OPENS_ISOLATE:
            open_scopes.append("i")
        elif char == _PDF:
            # Closes the innermost embedding, but never across an isolate.
            if not open_scopes or open_scopes[-1] != "e":
                continue
            open_scopes.pop()
        elif char == _PDI:
            if "i" not in open_scopes:
                continue
            # Closes the innermost isolate and the embeddings opened in it.
            while open_scopes.pop() != "i":
                pass
        out.append(char)
    out.extend(_PDF if scope == "e" else _PDI for scope in reversed(open_scopes))
    return "".join(out)


def validate_room(name: object) -> str:
    """Return ``name`` if it is a valid room name, else raise InvalidRoom.

    1 to 64 characters, no control characters, no leading or trailing white
    space (so that ``"lobby"`` and ``"lobby "`` cannot be two rooms that look
    alike).
    """
    if not isinstance(name, str) or not name:
        raise InvalidRoom("room name is required")
    if len(name) > MAX_ROOM_LENGTH:
        raise InvalidRoom(f"room name is longer than {MAX_ROOM_LENGTH} characters")
    if _has_control(name):
        raise InvalidRoom("room name contains control characters")
    if name != name.strip():
        raise InvalidRoom("room name starts or ends with white space")
    if _has_invisible(name):
        raise InvalidRoom(
            "room name contains invisible or direction-changing characters "
            "(zero-width or bidi controls)"
        )
    return name


def validate_nickname(name: object) -> str:
    """Return ``name`` if it is a valid nickname, else raise InvalidName.

    1 to 32 characters: letters, digits, ``_``, ``-`` and ``.``, starting with
    a letter, digit or ``_``. No ``:`` or white space, because the plain-TCP
    protocol renders messages as ``nick:text``.
    """
    if not isinstance(name, str) or not name:
        raise InvalidName("nickname is required")
    if len(name) > MAX_NICKNAME_LENGTH:
        raise InvalidName(f"nickname is longer than {MAX_NICKNAME_LENGTH} characters")
    if _has_invisible(name):
        raise InvalidName(
            "nickname contains invisible or direction-changing characters "
            "(zero-width or bidi controls)"
        )
    if not _NICKNAME.match(name):
        raise InvalidName(
            "nickname may contain only letters, digits, '_', '-' and '.', "
            "and must start with a letter, digit or '_'"
        )
    return name


@functools.lru_cache(maxsize=65536)
def nickname_key(name: str) -> str:
    """The form under which nicknames are unique: ``Alice`` and ``alice`` clash."""
    return unicodedata.normalize("NFKC", name).casefold()


def validate_topic(topic: object) -> str:
    """Return ``topic`` (surrounding white space removed) if it can be a
    room's topic, else raise InvalidContent; "" clears the topic.

    At most MAX_TOPIC_LENGTH characters on one line, no control characters:
    every surface shows it on one line (IRC's 332, the terminal's notice).
    """
    if topic is None:
        return ""
    if not isinstance(topic, str):
        raise InvalidContent("topic must be a string")
    topic = topic.strip()
    if len(topic) > MAX_TOPIC_LENGTH:
        raise ContentTooLong(f"topic is longer than {MAX_TOPIC_LENGTH} characters")
    if _has_control(topic):
        raise InvalidContent("topic contains control characters (it is one line)")
    return topic


@functools.lru_cache(maxsize=65536)
def name_skeleton(name: str) -> str:
    """The form under which names may not look alike: the one normalisation
    of accounts, guests and every dialect's user names.

    Width and compatibility forms folded (NFKC) and case folded, then the
    UTS #39 confusable skeleton (``parkchat.skeleton``), folded and taken
    again (a prototype may be a capital: ``0`` looks like ``O``), so that
    ``alice``, ``ALICE``, ``alice`` spelt with a Cyrillic a (U+0430),
    ``a1ice`` and ``b0b`` / ``bob`` each share a skeleton with their twin.
    Case is folded first, as ``nickname_key`` does: a capital I and a small
    L are told apart only as far as their lower cases are (``Ian`` is
    ``ian``, not ``lan``).
    Two names with one skeleton cannot both be held: the second is refused
    (an account: 409; a guest: its surface's refusal).
    """
    folded = skeleton(unicodedata.normalize("NFKC", name).casefold()).casefold()
    return skeleton(folded)


@functools.lru_cache(maxsize=4096)
def room_skeleton(name: str) -> str:
    """The form under which room names may not look alike: the confusable
    skeleton without case folding (``Lobby`` and ``lobby`` are two rooms,
    as before; ``lobby`` spelt with a Cyrillic o, U+043E, is refused while
    ``lobby`` is open)."""
    return skeleton(unicodedata.normalize("NFKC", name))


def validate_content(content: object, max_length: int) -> str:
    """Return ``content`` if it can be posted, else raise.

    Content must be a non-blank string of at most ``max_length`` characters.
    Control characters other than newline and tab are refused so that no
    client can rewrite another's terminal; bidi controls are kept but
    closed on their own line (``neutralise_bidi``), so the content returned
    may differ from the content given.
    """
    if not isinstance(content, str):
        raise InvalidContent("content must be a string")
    if not content.strip():
        raise InvalidContent("content is empty")
    if len(content) > max_length:
        raise ContentTooLong(f"content is longer than {max_length} characters")
    if _CONTROL_EXCEPT_NL_TAB.search(content) is not None:
        raise InvalidContent("content contains control characters")
    return neutralise_bidi(content)


# -- search ---------------------------------------------------------------------

#: A word, for search: a run of letters and digits (what SQLite's unicode61
#: tokenizer and PostgreSQL's parser both take as one word, near enough).
_WORD = re.compile(r"[^\W_]+")
#: Longest search query, in characters; most words in one.
MAX_QUERY_LENGTH: Final = 200
MAX_QUERY_TERMS: Final = 8


def search_terms(query: object) -> list[str]:
    """The words of a search query, lower case, each once, in order; raise
    InvalidRequest for a query that is not a string, is longer than
    MAX_QUERY_LENGTH, has more than MAX_QUERY_TERMS words or none."""
    if not isinstance(query, str):
        raise InvalidRequest('"q" must be a string')
    if len(query) > MAX_QUERY_LENGTH:
        raise InvalidRequest(f"the search query is longer than {MAX_QUERY_LENGTH} characters")
    terms = list(dict.fromkeys(word.casefold() for word in _WORD.findall(query)))
    if not terms:
        raise InvalidRequest("the search query has no words to look for")
    if len(terms) > MAX_QUERY_TERMS:
        raise InvalidRequest(f"the search query has more than {MAX_QUERY_TERMS} words")
    return terms


def _fold(word: str) -> str:
    """Case and accents folded away (as FTS5's ``remove_diacritics``)."""
    decomposed = unicodedata.normalize("NFKD", word.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def search_highlights(text: str, terms: Sequence[str]) -> tuple[tuple[int, int], ...]:
    """``(start, end)`` code-point offsets of the words of ``text`` that
    begin with one of ``terms`` (case and accents aside): what a search for
    them matched. Computed here, not by the database, so that both engines
    give the same offsets, and never as markup."""
    folded = [_fold(term) for term in terms]
    return tuple(
        (m.start(), m.end())
        for m in _WORD.finditer(text)
        if any(_fold(m.group()).startswith(term) for term in folded)
    )


def search_matches(text: str, terms: Sequence[str]) -> bool:
    """Whether every term begins a word of ``text`` (the in-memory store's
    search; the SQL engines use their full-text indexes)."""
    words = [_fold(word) for word in _WORD.findall(text)]
    return all(any(word.startswith(_fold(term)) for word in words) for term in terms)


class Moderators:
    """The accounts named moderators (``--moderators``): they edit and
    delete anyone's room messages at any time and set topics where only
    moderators may. Only a registered account (a connection with a
    ``user_id``) can be one: a guest cannot take a registered name, but it
    could take a listed name nobody registered."""

    __slots__ = ("_keys",)

    def __init__(self, nicknames: Sequence[str] = ()) -> None:
        self._keys = frozenset(nickname_key(name) for name in nicknames)

    def includes(self, nickname: str, user_id: int | None) -> bool:
        return user_id is not None and nickname_key(nickname) in self._keys

    def __bool__(self) -> bool:
        return bool(self._keys)


class DisconnectReason(Enum):
    """Why the server closes a connection.

    The service says *why*; each surface decides *how* (a WebSocket close
    code, a goodbye line), in one table per adapter. ``text`` is what a
    client is told.
    """

    SHUTDOWN = "server shutting down"
    REPLACED = "replaced by a newer session"
    BANNED = "banned"
    LOGGED_OUT = "logged out everywhere"
    TOKEN_REVOKED = "logged out"
    DELIVERY_FAILED = "delivery failed"
    #: A guest's name was registered as an account (or one like it was).
    NAME_REGISTERED = "the name was registered as an account"
    TOO_MANY_CONNECTIONS = "too many connections for this account"

    @property
    def text(self) -> str:
        return self.value


#: The reason the other members are given when a connection goes away: for
#: each ``DisconnectReason`` (the server closed it) and for the client going
#: away by itself (``CONNECTION_CLOSED``, the default, and ``PING_TIMEOUT``
#: for a surface that noticed the silence). The one table every surface
#: renders departures from (IRC shows them as QUIT reasons); a test checks
#: that it covers every ``DisconnectReason``.
CONNECTION_CLOSED: Final = "Connection closed"
PING_TIMEOUT: Final = "Ping timeout"
QUIT_REASONS: Final[dict[DisconnectReason, str]] = {
    DisconnectReason.SHUTDOWN: "Server shutting down",
    DisconnectReason.REPLACED: "Replaced by a newer session",
    DisconnectReason.BANNED: "Banned",
    DisconnectReason.LOGGED_OUT: "Logged out everywhere",
    DisconnectReason.TOKEN_REVOKED: "Logged out",
    DisconnectReason.DELIVERY_FAILED: "Connection lost (delivery failed)",
    DisconnectReason.NAME_REGISTERED: "Name registered as an account",
    DisconnectReason.TOO_MANY_CONNECTIONS: "Too many connections for this account",
}


@dataclass(frozen=True, slots=True)
class Departure:
    """How and why a member left a room: carried by its LEFT event
    (``Message.departure``) to every surface, across instances. Surfaces
    with one way of showing a leave ignore it; IRC shows PART, QUIT and
    KICK."""

    #: PART (it left the room), QUIT (its connection went away) or KICK.
    kind: str
    #: The member's PART message, why the connection went away
    #: (``QUIT_REASONS``), or the moderator's reason; may be empty.
    reason: str = ""


def clean_reason(reason: object) -> str:
    """A departure reason as others may be shown it: a string of at most
    MAX_REASON_LENGTH characters without control characters (each becomes
    a space); anything else is no reason."""
    if not isinstance(reason, str):
        return ""
    return _CONTROL.sub(" ", reason[:MAX_REASON_LENGTH]).strip()


@dataclass(frozen=True, slots=True)
class User:
    """A registered account as the service sees it (never the password hash)."""

    id: int
    nickname: str


@dataclass(frozen=True, slots=True)
class StoredUser:
    """An account row as the store returns it, hash included."""

    id: int
    nickname: str
    password_hash: bytes

    def public(self) -> User:
        return User(self.id, self.nickname)


class Message:
    """A chat message or a system event in a room.

    Chat messages get their ``id`` and ``seq`` from the store when their
    batch commits: ``id`` is global (the seed API pages by it), ``seq`` the
    message's position in its room (1, 2, 3, ... in the order the room's
    messages were stored), which delivery and resume go by. System events
    (joins, leaves) are not stored and keep both 0, as ``id`` is in the seed
    API. ``seq`` is not part of the seed API object (``as_dict``, ``json``).
    Instances are treated as immutable once published.

    ``guest`` says that the sender (of a join or leave: the member) has no
    account here (a guest name, or an external token's): surfaces show it
    so that a guest cannot pass for an account. For chat messages it is
    ``user_id is None`` unless given.
    """

    __slots__ = (
        "_json",
        "content",
        "departure",
        "edited_ms",
        "event",
        "guest",
        "id",
        "mentions",
        "nickname",
        "origin",
        "room",
        "seq",
        "timestamp_ms",
        "type",
        "user_id",
    )

    def __init__(
        self,
        *,
        room: str,
        nickname: str,
        content: str,
        timestamp_ms: int,
        type: str = CHAT,
        id: int = 0,
        seq: int = 0,
        user_id: int | None = None,
        event: str | None = None,
        origin: str | None = None,
        mentions: tuple[str, ...] = (),
        departure: Departure | None = None,
        edited_ms: int | None = None,
        guest: bool | None = None,
    ) -> None:
        self.id = id
        self.seq = seq
        self.room = room
        self.nickname = nickname
        self.content = content
        self.timestamp_ms = timestamp_ms
        self.type = type
        self.user_id = user_id
        self.event = event
        #: The connection id that posted it (not sent on the wire): lets a
        #: surface that acknowledges instead of echoing skip the sender.
        self.origin = origin
        #: Who the message mentions (``parkchat.mentions``): account or
        #: member nicknames and ``@room``/``@here``; empty for most messages.
        #: Before it is stored it may hold candidates that the store
        #: resolves (``IRoomMessageStore.insert_messages``).
        self.mentions = mentions
        #: For a LEFT event: how and why the member left (None: not known,
        #: e.g. from an instance of an earlier version).
        self.departure = departure
        #: When the stored text was last edited (ms), None if never.
        self.edited_ms = edited_ms
        self.guest = (type == CHAT and user_id is None) if guest is None else guest
        self._json: bytes | None = None

    def with_ids(self, id: int, seq: int) -> Message:
        """A copy carrying the id and the room position the store assigned."""
        return Message(
            room=self.room,
            nickname=self.nickname,
            content=self.content,
            timestamp_ms=self.timestamp_ms,
            type=self.type,
            id=id,
            seq=seq,
            user_id=self.user_id,
            event=self.event,
            origin=self.origin,
            mentions=self.mentions,
            departure=self.departure,
            edited_ms=self.edited_ms,
            guest=self.guest,
        )

    def edited(self, content: str, edited_ms: int) -> Message:
        """A copy with another text, edited at ``edited_ms``."""
        return Message(
            room=self.room,
            nickname=self.nickname,
            content=content,
            timestamp_ms=self.timestamp_ms,
            type=self.type,
            id=self.id,
            seq=self.seq,
            user_id=self.user_id,
            event=self.event,
            origin=self.origin,
            edited_ms=edited_ms,
            guest=self.guest,
        )

    def with_id(self, id: int) -> Message:
        """A copy carrying another id (``seq`` kept)."""
        return self.with_ids(id, self.seq)

    @property
    def timestamp(self) -> str:
        return format_timestamp(self.timestamp_ms)

    @property
    def edited_at(self) -> str | None:
        """When the text was last edited (RFC 3339), None if never."""
        return None if self.edited_ms is None else format_timestamp(self.edited_ms)

    def as_dict(self) -> dict[str, Any]:
        """The parkchat API message object (MISSION section A), with
        ``"guest": true`` after the seed's fields when the sender is a guest
        (seed 000's clients ignore keys they do not know)."""
        data = {
            "id": self.id,
            "chat_room": self.room,
            "nickname": self.nickname,
            "content": self.content,
            "timestamp": self.timestamp,
            "type": self.type,
        }
        if self.guest:
            data["guest"] = True
        return data

    def json(self) -> bytes:
        """``as_dict`` as compact UTF-8 JSON, computed once per message.

        The same bytes as ``json.dumps(self.as_dict(), ensure_ascii=False,
        separators=(",", ":"))`` (a test checks it), written out field by
        field: ``json.dumps`` sets up an encoder per call, which cost more
        than the strings themselves on the broadcast path.
        """
        encoded = self._json
        if encoded is None:
            q = _json_string
            guest = ',"guest":true' if self.guest else ""
            encoded = self._json = (
                f'{{"id":{int(self.id)},"chat_room":{q(self.room)},'
                f'"nickname":{q(self.nickname)},"content":{q(self.content)},'
                f'"timestamp":{q(self.timestamp)},"type":{q(self.type)}{guest}}}'
            ).encode()
        return encoded

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Message):
            return NotImplemented
        return (
            self.as_dict() == other.as_dict()
            and self.seq == other.seq
            and self.user_id == other.user_id
            and self.edited_ms == other.edited_ms
        )

    def __hash__(self) -> int:
        return hash((self.id, self.room, self.timestamp_ms, self.content))

    def __repr__(self) -> str:
        return (
            f"Message(id={self.id}, seq={self.seq}, room={self.room!r}, "
            f"nickname={self.nickname!r}, "
            f"type={self.type!r}, content={self.content!r})"
        )


def system_message(
    room: str,
    nickname: str,
    event: str,
    timestamp_ms: int,
    departure: Departure | None = None,
    *,
    guest: bool = False,
) -> Message:
    """The join/leave notice of the seed API (a leave with its ``departure``;
    ``guest``: the member has no account)."""
    verb = "joined" if event == JOINED else "left"
    return Message(
        room=room,
        nickname=nickname,
        content=f"{nickname} has {verb} the room",
        timestamp_ms=timestamp_ms,
        type=SYSTEM,
        event=event,
        departure=departure,
        guest=guest,
    )


@dataclass(frozen=True, slots=True)
class RoomTopic:
    """A room's topic: its text, who set it and when (ms)."""

    text: str
    nickname: str
    set_ms: int

    @property
    def set_at(self) -> str:
        return format_timestamp(self.set_ms)


@dataclass(frozen=True, slots=True)
class MessageEdit:
    """One edit of a stored room message, kept for moderators: the text it
    replaced, who edited (``editor_id`` None for a guest) and when."""

    message_id: int
    old_content: str
    editor: str
    editor_id: int | None
    edited_ms: int

    @property
    def edited_at(self) -> str:
        return format_timestamp(self.edited_ms)


@dataclass(frozen=True, slots=True)
class SearchHit:
    """A stored message found by a search: a room message (``room`` set) or
    a direct message (``with_nickname``: the other account of the
    conversation, as the searcher sees it). ``highlights`` are
    ``(start, end)`` code-point offsets into ``content``."""

    id: int
    seq: int
    nickname: str
    content: str
    timestamp_ms: int
    room: str | None = None
    with_nickname: str | None = None
    edited_ms: int | None = None
    highlights: tuple[tuple[int, int], ...] = ()

    @property
    def timestamp(self) -> str:
        return format_timestamp(self.timestamp_ms)


@dataclass(frozen=True, slots=True)
class JoinResult:
    """What joining a room gives a surface (``IChatService.join``).

    ``seq`` is the room's position when the member was attached: every
    room message after it reaches the member live, none at or before it
    does. With a resume (``since``), ``replay`` holds the messages after
    ``since`` up to ``seq``, oldest first, to be shown before anything live;
    ``recovered`` is False when more than the resume maximum were missed
    (``replay`` then holds the newest of them and ``first_seq``, the seq of
    its first message, says where the shown part begins).
    """

    seq: int
    replay: list[Message]
    recovered: bool = True
    #: Whether a resume was asked (``since`` given), even if nothing was missed.
    resumed: bool = False
    #: The room's topic at the join, as the member's live events continue it
    #: (None: no topic).
    topic: RoomTopic | None = None

    @property
    def first_seq(self) -> int | None:
        """The seq of the first replayed message (None: nothing replayed)."""
        return self.replay[0].seq if self.replay else None


@dataclass(frozen=True, slots=True)
class DirectMessage:
    """A one-to-one message between two accounts (seed 004's ``chat``).

    ``seq`` is its position in the conversation of the two accounts (either
    direction; an account's notes to itself are a conversation of one): 1,
    2, 3, ... in the order they were stored; 0 until stored.
    """

    id: int
    from_user_id: int
    from_nickname: str
    to_user_id: int
    to_nickname: str
    content: str
    timestamp_ms: int
    seq: int = 0

    @property
    def timestamp(self) -> str:
        return format_timestamp(self.timestamp_ms)


@dataclass(frozen=True, slots=True)
class Ban:
    """An account's ban; ``expires_ms`` None means until lifted."""

    user_id: int
    nickname: str
    reason: str
    created_ms: int
    expires_ms: int | None

    def active(self, now_ms: int) -> bool:
        return self.expires_ms is None or self.expires_ms > now_ms


@dataclass(frozen=True, slots=True)
class RoomState:
    """An account's state in a room it has joined (``IChatService.account_state``).

    ``seq`` is the room's current position, ``read_seq`` the account's read
    marker; ``unread`` and ``mentions`` count the others' messages (and the
    mentions of the account, ``@room`` and ``@here``) after the marker, up
    to ``COUNT_CAP``. ``joined`` False says the account left the room.
    """

    room: str
    seq: int
    read_seq: int
    unread: int = 0
    mentions: int = 0
    muted: bool = False
    topic: str | None = None
    joined: bool = True


@dataclass(frozen=True, slots=True)
class DirectState:
    """An account's state in a conversation with another account:
    positions, read marker, the other's messages after it (up to
    ``COUNT_CAP``), and whether the conversation is in the account's list
    (``open``)."""

    with_nickname: str
    with_user_id: int
    seq: int
    read_seq: int
    unread: int = 0
    open: bool = True


#: Unread and mention counts stop here: counting every message of a room
#: never read would read it all, and a badge shows "999+" long before.
COUNT_CAP: Final = 1000
