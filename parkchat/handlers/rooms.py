"""Rooms and presence: who is in which room, here and on the other
instances, and the local delivery of room events."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from parkchat.errors import InvalidRequest, NotInRoom
from parkchat.handlers.connections import ConnectionHandler
from parkchat.interfaces import IBus, IParticipant
from parkchat.limits import TokenBucketLimiter
from parkchat.metrics import ServiceMetrics
from parkchat.model import (
    CHAT,
    JOINED,
    LEFT,
    DisconnectReason,
    Message,
    nickname_key,
    system_message,
    validate_room,
)
from parkchat.rooms import Room

_log = Logger()

#: How long a message delivered by a resync is ignored if it also comes over
#: the bus (seconds): far longer than a publish takes to cross.
CAUGHT_UP_WINDOW = 60.0


class RoomHandler:
    """The rooms of this instance and their members.

    Rooms are made on their first join here and dropped when their last
    member here leaves; the bus is subscribed to a room exactly while it
    exists. Since leaving every room is part of a connection going away, this
    is also where a connection is taken away (``disconnect``, ``force_out``).

    With a bus that can lose events (``track_seen``), rooms remember the ids
    they delivered so that a resync after an outage delivers only what was
    missed (``seen_floor``, ``deliver_missed``).
    """

    def __init__(
        self,
        connections: ConnectionHandler,
        bus: IBus,
        clock: IReactorTime,
        metrics: ServiceMetrics,
        rate: TokenBucketLimiter,
        *,
        track_seen: bool = False,
    ) -> None:
        self._connections = connections
        self._bus = bus
        self._clock = clock
        self._metrics = metrics
        self._rate = rate
        self._track_seen = track_seen
        self._rooms: dict[str, Room] = {}
        # Rooms each connection is in (only connections that joined one).
        self._joined: dict[IParticipant, set[str]] = {}
        self._stopping = False
        # (room, id) delivered by a resync, for a while: the same message may
        # still come over the bus (stored, then published, after the resync
        # read it) and must not be shown twice.
        self._caught_up: set[tuple[str, int]] = set()
        self._caught_up_expiry: IDelayedCall | None = None

    @property
    def by_name(self) -> Mapping[str, Room]:
        """The rooms by name, read-only: the posting path checks membership
        here without a call per message."""
        return self._rooms

    def start(self) -> None:
        self._stopping = False

    def stop(self) -> None:
        """The instance is shutting down: leaves are no longer announced (the
        members on other instances see the presence go instead)."""
        self._stopping = True
        if self._caught_up_expiry is not None and self._caught_up_expiry.active():
            self._caught_up_expiry.cancel()

    # -- membership ------------------------------------------------------------

    def join(self, participant: IParticipant, room_name: str) -> Room:
        """Put ``participant`` in the room (made on first join) and tell every
        member, the joiner included."""
        room_name = validate_room(room_name)
        if self._connections.connection_id(participant) is None:
            raise InvalidRequest("connection is not registered")
        room = self._rooms.get(room_name)
        if room is None:
            room = self._rooms[room_name] = Room(room_name)
            self._bus.subscribe(room_name)
        elif participant in room:
            return room
        room.add(participant)
        self._joined.setdefault(participant, set()).add(room_name)
        self._bus.presence_changed()
        self._bus.publish(
            room_name, system_message(room_name, participant.nickname, JOINED, self._now_ms())
        )
        return room

    def leave(self, participant: IParticipant, room_name: str) -> None:
        """Take ``participant`` out of the room and tell the others."""
        if room_name not in self._joined.get(participant, ()):
            raise NotInRoom(f"not in room {room_name!r}")
        self._leave(participant, room_name)

    def _leave(self, participant: IParticipant, room_name: str) -> None:
        joined = self._joined.get(participant)
        if joined is not None:
            joined.discard(room_name)
            if not joined:
                del self._joined[participant]
        room = self._rooms.get(room_name)
        if room is None or not room.remove(participant):
            return
        self._bus.presence_changed()
        if not self._stopping:
            # Even when the room is now empty here: with a shared bus, its
            # members on other instances must hear of the leave.
            self._bus.publish(
                room_name, system_message(room_name, participant.nickname, LEFT, self._now_ms())
            )
        if not len(room):
            del self._rooms[room_name]
            self._bus.unsubscribe(room_name)

    def disconnect(self, participant: IParticipant) -> None:
        """Forget a closed connection: it leaves all its rooms."""
        if not self._connections.unregister(participant):
            return
        for name in list(self._joined.get(participant, ())):
            self._leave(participant, name)

    def force_out(self, participant: IParticipant, reason: DisconnectReason) -> None:
        """Close a connection the server wants gone (ban, replaced session,
        failed delivery) and forget it now, whatever its transport does next."""
        try:
            participant.disconnect(reason)
        except Exception:
            _log.failure("closing {nickname} failed", nickname=participant.nickname)
        self.disconnect(participant)

    def close_account(
        self, user_id: int, nickname: str, reason: DisconnectReason, token_id: str | None = None
    ) -> None:
        """Close this instance's connections of an account (ban, log out
        everywhere), or with ``token_id`` only those that authenticated with
        that token (revoked: a copy of it in other hands must not stay
        connected)."""
        for participant in self._connections.of_account(nickname_key(nickname)):
            if participant.user_id != user_id:
                continue  # a guest or external-token user sharing the name
            if token_id is None or getattr(participant, "token_id", None) == token_id:
                self.force_out(participant, reason)

    def kick_here(self, nickname: str, room_name: str, reason: str) -> int:
        """Take this instance's connections of ``nickname`` out of a room,
        telling each (``IParticipant.removed``); how many there were."""
        kicked = 0
        for participant in self._connections.of_account(nickname_key(nickname)):
            if room_name in self._joined.get(participant, ()):
                self._leave(participant, room_name)
                kicked += 1
                try:
                    participant.removed(room_name, reason or "kicked by a moderator")
                except Exception:
                    _log.failure("telling {nickname} of a kick failed", nickname=nickname)
        return kicked

    # -- who is where ----------------------------------------------------------

    def rooms_of(self, participant: IParticipant) -> frozenset[str]:
        return frozenset(self._joined.get(participant, ()))

    def members(self, room_name: str) -> list[str]:
        """Nicknames present in a room, on every instance (others' as last
        shared through the bus)."""
        here = self.local_members(room_name)
        remote = self._bus.remote_presence()["rooms"].get(room_name, ())
        return list(dict.fromkeys([*here, *remote]))

    def local_members(self, room_name: str) -> list[str]:
        """Nicknames present in a room on this instance."""
        room = self._rooms.get(room_name)
        return room.nicknames() if room is not None else []

    def name_in_room(self, room_name: str, nickname: str) -> bool:
        """Whether someone called ``nickname`` (case-insensitively) is in the room."""
        room = self._rooms.get(room_name)
        if room is None:
            return False
        key = nickname_key(nickname)
        return any(nickname_key(p.nickname) == key for p in room)

    def room_names(self) -> list[str]:
        return sorted(self._rooms)

    @property
    def room_count(self) -> int:
        return len(self._rooms)

    def room_sizes(self) -> dict[str, int]:
        """Rooms with members on this instance and how many connections each has."""
        return {name: len(room) for name, room in sorted(self._rooms.items())}

    def active_rooms(self, participant: IParticipant, limit: int = 100) -> list[tuple[str, int]]:
        """Rooms with people in them on any instance and how many distinct
        people each has, busiest first (then by name), at most ``limit``:
        the room directory. Rooms are public by name in parkchat (anyone may
        join any name), so listing them reveals nothing a join would not.
        It walks every room, so it counts against the asker's rate limit."""
        self._rate.consume(nickname_key(participant.nickname))
        remote = self._bus.remote_presence()["rooms"]
        names = set(self._rooms) | {name for name, people in remote.items() if people}
        counted = [(name, self.member_count(name)) for name in names]
        counted.sort(key=lambda item: (-item[1], item[0]))
        return [item for item in counted if item[1] > 0][:limit]

    def member_count(self, room_name: str) -> int:
        """Distinct people in a room (GarinChat's ``totalUsers``). Asked once
        per /ws room event, so the one-instance case costs no walk over the
        members."""
        if not self._bus.remote_presence()["rooms"].get(room_name):
            room = self._rooms.get(room_name)
            return room.distinct_count() if room is not None else 0
        return len(self.members(room_name))

    def presence_snapshot(self) -> dict[str, Any]:
        """What this instance shares of its presence (IBusHandler)."""
        users, connections = self._connections.account_presence()
        rooms = {name: room.nicknames() for name, room in self._rooms.items()}
        return {"users": users, "rooms": rooms, "connections": connections}

    # -- delivery --------------------------------------------------------------

    def deliver(self, room_name: str, message: Message) -> None:
        """The bus hands every event of a room this instance serves to here
        (IBusHandler); members whose delivery fails are forced out."""
        room = self._rooms.get(room_name)
        if room is None:
            return
        if self._track_seen and message.id and message.type == CHAT:
            if self._caught_up and (room_name, message.id) in self._caught_up:
                self._caught_up.discard((room_name, message.id))
                return
            room.saw(message.id)
        failed = room.broadcast(message)
        self._metrics.deliveries += room.last_delivered
        for member in failed:
            self.force_out(member, DisconnectReason.DELIVERY_FAILED)

    def seen_floor(self, room_name: str) -> int | None:
        """The oldest stored id the room remembers delivering here (None: the
        room is gone or delivered nothing yet); see ``rooms.Room.seen_floor``."""
        room = self._rooms.get(room_name)
        return room.seen_floor() if room is not None else None

    def deliver_missed(self, room_name: str, stored: Iterable[Message]) -> int:
        """Deliver those of ``stored`` (above ``seen_floor``, in id order)
        that the room did not deliver, and ignore them if they still come
        over the bus within CAUGHT_UP_WINDOW seconds; how many there were."""
        room = self._rooms.get(room_name)  # it may have emptied meanwhile
        if room is None:
            return 0
        missed = room.unseen(stored)
        for message in missed:
            self.deliver(room_name, message)
            self._caught_up.add((room_name, message.id))
        if missed:
            if self._caught_up_expiry is not None and self._caught_up_expiry.active():
                self._caught_up_expiry.cancel()
            self._caught_up_expiry = self._clock.callLater(CAUGHT_UP_WINDOW, self._caught_up.clear)
        return len(missed)

    def _now_ms(self) -> int:
        return int(self._clock.seconds() * 1000)
