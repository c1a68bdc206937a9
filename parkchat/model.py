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
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Any, Final

from parkchat.errors import ContentTooLong, InvalidContent, InvalidName, InvalidRoom

CHAT: Final = "chat"
SYSTEM: Final = "system"
#: A room event saying that the stored message ``id`` was deleted (moderation).
DELETED: Final = "deleted"

#: System event kinds carried by ``Message.event``.
JOINED: Final = "joined"
LEFT: Final = "left"

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


def validate_content(content: object, max_length: int) -> str:
    """Return ``content`` if it can be posted, else raise.

    Content must be a non-blank string of at most ``max_length`` characters.
    Control characters other than newline and tab are refused so that no
    client can rewrite another's terminal.
    """
    if not isinstance(content, str):
        raise InvalidContent("content must be a string")
    if not content.strip():
        raise InvalidContent("content is empty")
    if len(content) > max_length:
        raise ContentTooLong(f"content is longer than {max_length} characters")
    if _CONTROL_EXCEPT_NL_TAB.search(content) is not None:
        raise InvalidContent("content contains control characters")
    return content


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
    TOO_MANY_CONNECTIONS = "too many connections for this account"

    @property
    def text(self) -> str:
        return self.value


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
    """

    __slots__ = (
        "_json",
        "content",
        "event",
        "id",
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
        )

    def with_id(self, id: int) -> Message:
        """A copy carrying another id (``seq`` kept)."""
        return self.with_ids(id, self.seq)

    @property
    def timestamp(self) -> str:
        return format_timestamp(self.timestamp_ms)

    def as_dict(self) -> dict[str, Any]:
        """The parkchat API message object (MISSION section A)."""
        return {
            "id": self.id,
            "chat_room": self.room,
            "nickname": self.nickname,
            "content": self.content,
            "timestamp": self.timestamp,
            "type": self.type,
        }

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
            encoded = self._json = (
                f'{{"id":{int(self.id)},"chat_room":{q(self.room)},'
                f'"nickname":{q(self.nickname)},"content":{q(self.content)},'
                f'"timestamp":{q(self.timestamp)},"type":{q(self.type)}}}'
            ).encode()
        return encoded

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Message):
            return NotImplemented
        return (
            self.as_dict() == other.as_dict()
            and self.seq == other.seq
            and self.user_id == other.user_id
        )

    def __hash__(self) -> int:
        return hash((self.id, self.room, self.timestamp_ms, self.content))

    def __repr__(self) -> str:
        return (
            f"Message(id={self.id}, seq={self.seq}, room={self.room!r}, "
            f"nickname={self.nickname!r}, "
            f"type={self.type!r}, content={self.content!r})"
        )


def system_message(room: str, nickname: str, event: str, timestamp_ms: int) -> Message:
    """The join/leave notice of the seed API."""
    verb = "joined" if event == JOINED else "left"
    return Message(
        room=room,
        nickname=nickname,
        content=f"{nickname} has {verb} the room",
        timestamp_ms=timestamp_ms,
        type=SYSTEM,
        event=event,
    )


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
