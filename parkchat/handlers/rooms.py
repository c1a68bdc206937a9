"""Rooms and presence: who is in which room, here and on the other
instances, and the local delivery of room events."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from parkchat.errors import InvalidRequest, InvalidRoom, NotInRoom
from parkchat.handlers.connections import ConnectionHandler
from parkchat.handlers.delivery import RESUME_MAX, RoomDelivery
from parkchat.interfaces import IBus, IParticipant, IRoomMessageStore, IRoomTopicStore
from parkchat.limits import TokenBucketLimiter
from parkchat.metrics import ServiceMetrics
from parkchat.model import (
    CONNECTION_CLOSED,
    JOINED,
    KICK,
    LEFT,
    MAX_ID,
    PART,
    QUIT,
    QUIT_REASONS,
    Departure,
    DisconnectReason,
    JoinResult,
    Message,
    clean_reason,
    name_skeleton,
    nickname_key,
    room_skeleton,
    system_message,
    validate_room,
)
from parkchat.rooms import Room

_log = Logger()


def _run_now(callback: Callable[[], object]) -> None:
    callback()


class RoomHandler:
    """The rooms of this instance and their members.

    Rooms are made on their first join here and dropped when their last
    member here leaves (and no resume is being read for them); the bus is
    subscribed to a room exactly while it exists. Since leaving every room
    is part of a connection going away, this is also where a connection is
    taken away (``disconnect``, ``force_out``).

    Room events reach the members through ``RoomDelivery``
    (parkchat.handlers.delivery): in sequence order, exactly once, gaps
    filled from ``store``. A member's leave is announced through
    ``after_queued`` (the group-commit writer's), so that it follows every
    message the member sent before leaving.
    """

    #: IBusHandler.deliver: ``RoomDelivery.deliver``, the hot path.
    deliver: Callable[[str, Message], None]

    def __init__(
        self,
        connections: ConnectionHandler,
        bus: IBus,
        clock: IReactorTime,
        metrics: ServiceMetrics,
        rate: TokenBucketLimiter,
        store: IRoomMessageStore,
        *,
        after_queued: Callable[[Callable[[], object]], None] = _run_now,
        resume_max: int = RESUME_MAX,
        topics: IRoomTopicStore | None = None,
    ) -> None:
        self._connections = connections
        self._bus = bus
        self._clock = clock
        self._metrics = metrics
        self._rate = rate
        self._after_queued = after_queued
        self._rooms: dict[str, Room] = {}
        # room_skeleton -> the open room of that look (no two look alike).
        self._room_skeletons: dict[str, str] = {}
        # Rooms each connection is in (only connections that joined one).
        self._joined: dict[IParticipant, set[str]] = {}
        self._stopping = False
        self._delivery = RoomDelivery(
            self._rooms,
            store,
            clock,
            metrics,
            lambda member: self.force_out(member, DisconnectReason.DELIVERY_FAILED),
            resume_max=resume_max,
            topics=topics,
        )
        self.deliver = self._delivery.deliver

    @property
    def by_name(self) -> Mapping[str, Room]:
        """The rooms by name, read-only: the posting path checks membership
        here without a call per message."""
        return self._rooms

    def start(self) -> None:
        self._stopping = False
        self._delivery.start()

    def stop(self) -> None:
        """The instance is shutting down: leaves are no longer announced (the
        members on other instances see the presence go instead), no fill
        goes on."""
        self._stopping = True
        self._delivery.stop()

    # -- membership ------------------------------------------------------------

    def join(
        self, participant: IParticipant, room_name: str, since: int | None = None
    ) -> Deferred[JoinResult]:
        """Put ``participant`` in the room (made on first join) and tell every
        member, the joiner included; fires with the room's position at the
        join (``JoinResult``).

        Without ``since`` the member is in the room at once (its posts are
        accepted) and gets every event from then on. With ``since`` (a room
        seq the client has seen up to), the messages after it are read
        first and the member is attached in the same callback as the last
        read: the result's ``replay`` is exactly what it missed up to
        ``seq``, and everything after ``seq`` comes live; the surface writes
        the replay before anything else can reach the member.
        """
        room_name = validate_room(room_name)
        if since is not None and (
            isinstance(since, bool) or not isinstance(since, int) or not 0 <= since <= MAX_ID
        ):
            raise InvalidRequest("since must be a room position (a seq, 0 or more)")
        if self._connections.connection_id(participant) is None:
            raise InvalidRequest("connection is not registered")
        room = self._rooms.get(room_name)
        if room is None:
            self._refuse_look_alike(room_name)
            room = self._rooms[room_name] = Room(room_name)
            self._room_skeletons[room_skeleton(room_name)] = room_name
            self._bus.subscribe(room_name)
            self._delivery.open(room)
        if since is None or participant in room:
            self._attach(room, participant)
            resumed = since is not None
            return self._delivery.when_known(room).addCallback(
                lambda _: JoinResult(room.cursor, [], resumed=resumed, topic=room.topic)
            )

        def attach() -> bool:
            if self._connections.connection_id(participant) is None:
                return False  # it went away while the replay was read
            self._attach(room, participant, announce_later=True)
            return True

        def done(result: Any) -> Any:
            room.joining -= 1
            if not len(room) and not room.joining:
                self._drop(room)
            return result

        room.joining += 1
        d = Deferred.fromCoroutine(self._delivery.replay(room, since, attach))
        return d.addBoth(done)

    def _attach(
        self, room: Room, participant: IParticipant, *, announce_later: bool = False
    ) -> None:
        if participant in room:
            return
        room.add(participant)
        self._joined.setdefault(participant, set()).add(room.name)
        self._bus.presence_changed()
        notice = system_message(
            room.name,
            participant.nickname,
            JOINED,
            self._now_ms(),
            guest=participant.user_id is None,
        )
        if announce_later:
            # After the surface has written the replay (in this callback):
            # the joiner sees its own join after what it missed.
            self._clock.callLater(0, self._announce_join, room.name, participant, notice)
        else:
            self._bus.publish(room.name, notice)

    def _announce_join(self, room_name: str, participant: IParticipant, notice: Message) -> None:
        if room_name in self._joined.get(participant, ()):
            self._bus.publish(room_name, notice)

    def _refuse_look_alike(self, room_name: str) -> None:
        """InvalidRoom if an open room (here, or with members on another
        instance) has a name that looks like ``room_name`` without being it
        (``room_skeleton``: ``lobby``, and ``lobby`` spelt with a Cyrillic
        o, U+043E).
        Only rooms with members are compared: a room is a name, and one
        nobody is in holds nothing to pass for."""
        key = room_skeleton(room_name)
        other = self._room_skeletons.get(key)
        if other is None:
            remote = self._bus.remote_presence()["rooms"]
            other = next(
                (n for n, people in remote.items() if people and room_skeleton(n) == key), None
            )
        if other is not None and other != room_name:
            raise InvalidRoom(f"room name looks like the open room {other!r}: choose another")

    def _drop(self, room: Room) -> None:
        if self._rooms.get(room.name) is room:
            del self._rooms[room.name]
            key = room_skeleton(room.name)
            if self._room_skeletons.get(key) == room.name:
                del self._room_skeletons[key]
            self._bus.unsubscribe(room.name)

    def leave(self, participant: IParticipant, room_name: str, reason: str = "") -> None:
        """Take ``participant`` out of the room and tell the others (with
        ``reason``, the member's own words, where its surface has them)."""
        if room_name not in self._joined.get(participant, ()):
            raise NotInRoom(f"not in room {room_name!r}")
        self._leave(participant, room_name, Departure(PART, clean_reason(reason)))

    def _leave(
        self,
        participant: IParticipant,
        room_name: str,
        departure: Departure,
        now_ms: int | None = None,
    ) -> None:
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
            # members on other instances must hear of the leave. After the
            # member's messages still being stored: the leave follows them.
            when = self._now_ms() if now_ms is None else now_ms
            notice = system_message(
                room_name,
                participant.nickname,
                LEFT,
                when,
                departure,
                guest=participant.user_id is None,
            )
            publish = self._bus.publish
            self._after_queued(lambda: publish(room_name, notice))
        if not len(room) and not room.joining:
            self._drop(room)

    def disconnect(self, participant: IParticipant, reason: str = CONNECTION_CLOSED) -> None:
        """Forget a closed connection: it leaves all its rooms. The others
        are told it quit, with ``reason`` (``QUIT_REASONS``), unless the
        account is still online on another connection: then it only left
        these rooms (a quit would take it out of every room on IRC)."""
        if not self._connections.unregister(participant):
            return
        rooms = list(self._joined.get(participant, ()))
        if not rooms:
            return
        kind = PART if self._connections.is_online(participant.nickname) else QUIT
        departure = Departure(kind, clean_reason(reason))
        # One time for every room: surfaces that show one quit for all of
        # them (IRC) recognise it by the name and the time.
        now_ms = self._now_ms()
        for name in rooms:
            self._leave(participant, name, departure, now_ms)

    def force_out(self, participant: IParticipant, reason: DisconnectReason) -> None:
        """Close a connection the server wants gone (ban, replaced session,
        failed delivery) and forget it now, whatever its transport does next."""
        try:
            participant.disconnect(reason)
        except Exception:
            _log.failure("closing {nickname} failed", nickname=participant.nickname)
        self.disconnect(participant, QUIT_REASONS[reason])

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
                departure = Departure(KICK, clean_reason(reason or "kicked by a moderator"))
                self._leave(participant, room_name, departure)
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
        """Whether someone whose name is ``nickname`` or looks like it (the
        same ``name_skeleton``: case, width and confusables folded) is in
        the room."""
        room = self._rooms.get(room_name)
        if room is None:
            return False
        key = name_skeleton(nickname)
        return any(name_skeleton(p.nickname) == key for p in room)

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

    def check_positions(self, *, grace: bool) -> Deferred[None]:
        """Fill the rooms whose store position is ahead of what was
        delivered here (``RoomDelivery.check_positions``)."""
        return Deferred.fromCoroutine(self._delivery.check_positions(grace=grace))

    def refresh_topics(self) -> Deferred[None]:
        """Take the stored topic of every room whose topic changed unseen
        (``RoomDelivery.refresh_topics``)."""
        return Deferred.fromCoroutine(self._delivery.refresh_topics())

    def settle(self) -> Deferred[None]:
        """Fires once every room delivered what the store holds now."""
        return Deferred.fromCoroutine(self._delivery.settle())

    def position(self, room_name: str) -> int | None:
        """The seq of the last message of the room delivered here (None:
        no such room here, or not known yet)."""
        room = self._rooms.get(room_name)
        return room.cursor if room is not None and room.cursor >= 0 else None

    def _now_ms(self) -> int:
        return int(self._clock.seconds() * 1000)
