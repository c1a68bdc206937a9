"""What crosses the bus between instances, typed, and the one codec for it.

Every instance-wide event is a frozen dataclass with a ``KIND``, the name it
carries on the wire; ``CONTROL_EVENTS`` maps the names back to the classes
(the registry, as Synapse's ``replication/tcp/commands.py`` has
``COMMAND_MAP``). This module is the only place where events and room
messages become dicts and bytes, or are read back from them: the local bus
passes the objects through untouched, the Redis bus sends what
``event_frame``, ``room_frame`` and ``announcement_frame`` make and reads
with ``read_control_frame`` and ``read_room_frame``.

The wire format is a contract between versions (during a rolling upgrade old
and new instances share one Redis): a control event is a JSON object
``{"kind": ..., <fields>, "instance": ...}``; field names are the dataclass's
unless a field says otherwise (``"from"``/``"to"`` of a direct message).
Readers ignore keys they do not know, and fields with a default may be
missing (older senders did not write them). Whatever cannot be read -- an
unknown kind, a missing or mistyped field -- is logged once as a warning
naming its kind and dropped.

Frames on Redis (``i`` is the publishing instance)::

    <prefix>:room:<room>   {"i": ..., "m": <message>}   (a stored message's "m" carries
                                                      its room position, "seq"; absent
                                                      from older senders: 0; a leave's
                                                      "departure" is [kind, reason] or
                                                      null; "edited", when its text was
                                                      last edited, only if it was)
    <prefix>:ctl           {"k": "event", "i": ..., "e": <control event>}
                           {"k": "presence", "i": ..., "p": <presence snapshot>}
                           {"k": "bye", "i": ...}
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final

from twisted.logger import Logger

from parkchat.model import Ban, Departure, DirectMessage, DirectState, Message, RoomState

_log = Logger()


# -- control events ----------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ControlEvent:
    """An instance-wide event; ``instance`` names the instance that made it."""

    KIND: ClassVar[str] = ""
    #: Already applied where it was made: the instance that published it
    #: ignores its own copy coming back over the bus.
    APPLIED_AT_ORIGIN: ClassVar[bool] = True

    instance: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class DirectMessageEvent(ControlEvent):
    """A stored direct message, for whichever instance holds a connection of
    the recipient (the sender's own instance included)."""

    KIND: ClassVar[str] = "dm"
    APPLIED_AT_ORIGIN: ClassVar[bool] = False

    id: int
    from_user_id: int
    from_nickname: str = field(metadata={"wire": "from"})
    to_user_id: int
    to_nickname: str = field(metadata={"wire": "to"})
    content: str
    timestamp_ms: int
    #: The message's position in its conversation; an instance of an older
    #: parkchat sends none (0).
    seq: int = 0

    @classmethod
    def of(cls, message: DirectMessage, instance: str) -> DirectMessageEvent:
        return cls(
            id=message.id,
            from_user_id=message.from_user_id,
            from_nickname=message.from_nickname,
            to_user_id=message.to_user_id,
            to_nickname=message.to_nickname,
            content=message.content,
            timestamp_ms=message.timestamp_ms,
            seq=message.seq,
            instance=instance,
        )

    @property
    def message(self) -> DirectMessage:
        return DirectMessage(
            self.id,
            self.from_user_id,
            self.from_nickname,
            self.to_user_id,
            self.to_nickname,
            self.content,
            self.timestamp_ms,
            seq=self.seq,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class KickEvent(ControlEvent):
    """Take a nickname out of a room on every instance."""

    KIND: ClassVar[str] = "kick"

    nickname: str
    room: str
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class BanEvent(ControlEvent):
    """An account was banned: close its connections, refuse it."""

    KIND: ClassVar[str] = "ban"

    user_id: int
    nickname: str
    reason: str
    created_ms: int
    expires_ms: int | None

    @classmethod
    def of(cls, ban: Ban, instance: str) -> BanEvent:
        return cls(
            user_id=ban.user_id,
            nickname=ban.nickname,
            reason=ban.reason,
            created_ms=ban.created_ms,
            expires_ms=ban.expires_ms,
            instance=instance,
        )

    @property
    def ban(self) -> Ban:
        return Ban(self.user_id, self.nickname, self.reason, self.created_ms, self.expires_ms)


@dataclass(frozen=True, slots=True, kw_only=True)
class UnbanEvent(ControlEvent):
    """An account's ban was lifted."""

    KIND: ClassVar[str] = "unban"

    user_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RevokeEvent(ControlEvent):
    """One login token was revoked (logout): refuse it, close what used it."""

    KIND: ClassVar[str] = "revoke"

    token_id: str
    expires_s: int
    user_id: int
    nickname: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CutoffEvent(ControlEvent):
    """Every token of an account issued until ``before_ms`` is revoked (log
    out everywhere, or a new password); with ``close``, its connections close."""

    KIND: ClassVar[str] = "cutoff"

    user_id: int
    nickname: str
    before_ms: int
    close: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionEvent(ControlEvent):
    """Single session: the account (``user_key``, its folded nickname)
    connected as ``keep``, its session number ``number`` (from the store's
    per-account counter: later logins have greater numbers, on every
    instance); its connections with lower numbers close. ``number`` 0 comes
    from older senders (or a store that could not count): every other
    connection of the account closes, as before numbers existed."""

    KIND: ClassVar[str] = "session"

    user_key: str
    keep: str
    number: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class ResyncEvent(ControlEvent):
    """The sender's bus came back from an outage: catch up on what it stored
    meanwhile."""

    KIND: ClassVar[str] = "resync"


@dataclass(frozen=True, slots=True, kw_only=True)
class RoomStateEvent(ControlEvent):
    """An account's state in a room changed (joined, left, read, muted):
    every instance shows it to the account's connections there (the
    maker's included: it is applied when it comes back)."""

    KIND: ClassVar[str] = "room_state"
    APPLIED_AT_ORIGIN: ClassVar[bool] = False

    user_id: int
    user_key: str
    room: str
    seq: int
    read_seq: int
    unread: int
    mentions: int
    muted: bool
    topic: str | None = None
    joined: bool = True
    #: The connection (id) not to show it to: the one that joined or left,
    #: which has its ``joined``/``left`` answer.
    skip: str = ""

    @classmethod
    def of(
        cls, user_id: int, user_key: str, state: RoomState, instance: str, skip: str = ""
    ) -> RoomStateEvent:
        return cls(
            user_id=user_id,
            user_key=user_key,
            room=state.room,
            seq=state.seq,
            read_seq=state.read_seq,
            unread=state.unread,
            mentions=state.mentions,
            muted=state.muted,
            topic=state.topic,
            joined=state.joined,
            skip=skip,
            instance=instance,
        )

    @property
    def state(self) -> RoomState:
        return RoomState(
            self.room,
            seq=self.seq,
            read_seq=self.read_seq,
            unread=self.unread,
            mentions=self.mentions,
            muted=self.muted,
            topic=self.topic,
            joined=self.joined,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class DirectStateEvent(ControlEvent):
    """An account's state in a conversation changed (read, opened, closed),
    for the account's connections on every instance."""

    KIND: ClassVar[str] = "direct_state"
    APPLIED_AT_ORIGIN: ClassVar[bool] = False

    user_id: int
    user_key: str
    with_nickname: str = field(metadata={"wire": "with"})
    with_user_id: int
    seq: int
    read_seq: int
    unread: int
    open: bool = True

    @classmethod
    def of(cls, user_id: int, user_key: str, state: DirectState, instance: str) -> DirectStateEvent:
        return cls(
            user_id=user_id,
            user_key=user_key,
            with_nickname=state.with_nickname,
            with_user_id=state.with_user_id,
            seq=state.seq,
            read_seq=state.read_seq,
            unread=state.unread,
            open=state.open,
            instance=instance,
        )

    @property
    def state(self) -> DirectState:
        return DirectState(
            self.with_nickname,
            self.with_user_id,
            seq=self.seq,
            read_seq=self.read_seq,
            unread=self.unread,
            open=self.open,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class NameClaimedEvent(ControlEvent):
    """An account was registered as ``nickname``: every instance closes its
    guests (and external-token users) whose names look like it (the same
    ``model.name_skeleton``, ``skeleton``), telling them why, so that none
    of them can go on speaking under the account's name."""

    KIND: ClassVar[str] = "name_claimed"

    nickname: str
    skeleton: str


#: Every control event by its wire name.
CONTROL_EVENTS: Final[dict[str, type[ControlEvent]]] = {
    cls.KIND: cls
    for cls in (
        DirectMessageEvent,
        KickEvent,
        BanEvent,
        UnbanEvent,
        RevokeEvent,
        CutoffEvent,
        SessionEvent,
        ResyncEvent,
        RoomStateEvent,
        DirectStateEvent,
        NameClaimedEvent,
    )
}


# -- the Redis bus's own announcements ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class PresenceAnnouncement:
    """An instance's presence snapshot (see ``IBusHandler.presence_snapshot``)."""

    KIND: ClassVar[str] = "presence"

    instance: str
    snapshot: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Goodbye:
    """An instance stops: forget its presence now."""

    KIND: ClassVar[str] = "bye"

    instance: str


#: What can come over the control channel.
ControlFrame = ControlEvent | PresenceAnnouncement | Goodbye


# -- the codec ---------------------------------------------------------------------------


#: Marks a field without a default: it must be on the wire.
_REQUIRED: Final = object()


def _accepts(hint: Any) -> tuple[type, ...]:
    """The JSON value types a field annotated ``hint`` accepts (only the
    annotations control events use: str, int, bool, ``X | None``)."""
    if isinstance(hint, types.UnionType):
        return typing.get_args(hint)
    return (hint,)


def _field_table(cls: type) -> tuple[tuple[str, str, tuple[type, ...], Any], ...]:
    """``(attribute, wire key, accepted types, default)`` per field: the
    event's own fields first and ``instance`` last, in wire order."""
    hints = typing.get_type_hints(cls)
    rows = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else _REQUIRED
        rows.append((f.name, f.metadata.get("wire", f.name), _accepts(hints[f.name]), default))
    rows.sort(key=lambda row: row[0] == "instance")  # stable: the rest keep their order
    return tuple(rows)


_FIELDS: Final = {cls: _field_table(cls) for cls in CONTROL_EVENTS.values()}


def _valid(value: object, accepted: tuple[type, ...]) -> bool:
    if isinstance(value, bool):
        return bool in accepted  # JSON true is not an int here
    return isinstance(value, accepted)


def encode_event(event: ControlEvent) -> dict[str, Any]:
    """The JSON object of a control event (the ``"e"`` of a frame)."""
    data: dict[str, Any] = {"kind": event.KIND}
    for attribute, key, _, _ in _FIELDS[type(event)]:
        data[key] = getattr(event, attribute)
    return data


def decode_event(data: object) -> ControlEvent | None:
    """A control event from its JSON object, or None (logged) if it cannot be read."""
    kind = data.get("kind") if isinstance(data, dict) else None
    cls = CONTROL_EVENTS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        _log.warn("dropped a control event of unknown kind {kind!r}", kind=kind)
        return None
    assert isinstance(data, dict)
    values: dict[str, Any] = {}
    for attribute, key, accepted, default in _FIELDS[cls]:
        if key not in data:
            if default is _REQUIRED:
                _log.warn("dropped a malformed {kind!r} event: no {key!r}", kind=kind, key=key)
                return None
            continue
        value = data[key]
        if not _valid(value, accepted):
            _log.warn(
                "dropped a malformed {kind!r} event: bad {key!r} ({value!r})",
                kind=kind,
                key=key,
                value=value,
            )
            return None
        values[attribute] = value
    return cls(**values)


def message_to_wire(message: Message) -> dict[str, Any]:
    """The JSON object of a room event (``"m"`` of a room frame): a chat
    message, a join or leave, typing, or one of the events about a stored
    message (``"deleted"``, ``"edited"``: its id and seq, and for an edit
    the new text and ``"edited"``, its time) or about the room
    (``"topic"``: the text, who set it, when). Instances older than these
    events show an edit or a topic to /ws members as a new message during a
    rolling upgrade (docs/deployment.md, "Upgrades and schema migrations").
    ``"mentions"`` only when there are any (older readers ignore it)."""
    wire: dict[str, Any] = {
        "id": message.id,
        "seq": message.seq,
        "room": message.room,
        "nickname": message.nickname,
        "content": message.content,
        "ts": message.timestamp_ms,
        "type": message.type,
        "user_id": message.user_id,
        "event": message.event,
        "origin": message.origin,
        "departure": _departure_to_wire(message.departure),
        "guest": message.guest,
    }
    if message.edited_ms is not None:
        wire["edited"] = message.edited_ms
    if message.mentions:
        wire["mentions"] = list(message.mentions)
    return wire


def _departure_to_wire(departure: Departure | None) -> list[str] | None:
    return None if departure is None else [departure.kind, departure.reason]


def _departure_from_wire(value: object) -> Departure | None:
    """``[kind, reason]``; None when absent (an instance of an earlier
    version) or unreadable (the leave is still delivered, as a plain one)."""
    if not isinstance(value, list) or len(value) != 2:
        return None
    kind, reason = value
    if not isinstance(kind, str) or not isinstance(reason, str):
        return None
    return Departure(kind, reason)


def message_from_wire(data: dict[str, Any]) -> Message:
    """A room event from its JSON object; raises KeyError, TypeError or
    ValueError if it is malformed."""
    return Message(
        id=int(data["id"]),
        seq=int(data.get("seq", 0)),
        room=str(data["room"]),
        nickname=str(data["nickname"]),
        content=str(data["content"]),
        timestamp_ms=int(data["ts"]),
        type=str(data["type"]),
        user_id=data.get("user_id"),
        event=data.get("event"),
        origin=data.get("origin"),
        mentions=_mentions_from_wire(data.get("mentions")),
        departure=_departure_from_wire(data.get("departure")),
        edited_ms=None if data.get("edited") is None else int(data["edited"]),
        # Older senders: none (a chat message's is then user_id is None).
        guest=data["guest"] if isinstance(data.get("guest"), bool) else None,
    )


def _mentions_from_wire(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(name, str) for name in value):
        raise TypeError("mentions must be a list of names")
    return tuple(value)


def room_frame(instance: str, message: Message) -> str:
    """What a room channel carries for ``message`` published by ``instance``."""
    return json.dumps({"i": instance, "m": message_to_wire(message)})


def read_room_frame(raw: bytes | str) -> tuple[str, Message] | None:
    """``(publishing instance, message)`` of a room frame, or None (logged)."""
    try:
        data = json.loads(raw)
        wire = data["m"]
    except (ValueError, KeyError, TypeError):
        _log.warn("dropped a room frame that is not one: {raw!r}", raw=raw[:200])
        return None
    try:
        message = message_from_wire(wire)
    except (KeyError, TypeError, ValueError, AttributeError):
        kind = wire.get("type") if isinstance(wire, dict) else None
        _log.warn("dropped a malformed room event of type {kind!r}", kind=kind)
        return None
    return str(data.get("i")), message


def event_frame(instance: str, event: ControlEvent) -> str:
    """What the control channel carries for ``event`` published by ``instance``."""
    return json.dumps({"k": "event", "i": instance, "e": encode_event(event)})


def announcement_frame(announcement: PresenceAnnouncement | Goodbye) -> str:
    """What the control channel carries for the Redis bus's own announcements."""
    if isinstance(announcement, PresenceAnnouncement):
        return json.dumps({"k": "presence", "i": announcement.instance, "p": announcement.snapshot})
    return json.dumps({"k": "bye", "i": announcement.instance})


def read_control_frame(raw: bytes | str) -> ControlFrame | None:
    """The event or announcement of a control-channel frame, or None (logged)."""
    try:
        data = json.loads(raw)
    except ValueError:
        _log.warn("dropped a control frame that is not JSON: {raw!r}", raw=raw[:200])
        return None
    kind = data.get("k") if isinstance(data, dict) else None
    if kind == "event":
        return decode_event(data.get("e"))
    instance = data.get("i") if isinstance(data, dict) else None
    if not isinstance(instance, str):
        _log.warn("dropped a malformed {kind!r} frame: no instance", kind=kind)
        return None
    if kind == "presence":
        snapshot = data.get("p")
        if not isinstance(snapshot, dict):
            _log.warn("dropped a malformed 'presence' frame from {instance}", instance=instance)
            return None
        return PresenceAnnouncement(instance, snapshot)
    if kind == "bye":
        return Goodbye(instance)
    _log.warn("dropped a control frame of unknown kind {kind!r}", kind=kind)
    return None


def presence_record(snapshot: dict[str, Any]) -> str:
    """The value of an instance's presence key."""
    return json.dumps(snapshot)


def read_presence_record(raw: bytes | str) -> dict[str, Any] | None:
    """A presence key's snapshot, or None (logged) if it is not one."""
    try:
        snapshot = json.loads(raw)
    except ValueError:
        snapshot = None
    if not isinstance(snapshot, dict):
        _log.warn("ignored a presence record that is not one: {raw!r}", raw=raw[:200])
        return None
    return snapshot
