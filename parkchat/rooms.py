"""Rooms: membership and fan-out, no I/O of their own."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import Any

from twisted.logger import Logger

from parkchat.interfaces import IEncoder, IParticipant

_log = Logger()


class Room:
    """The local members of one room, grouped by how they encode messages.

    Grouping by encoder is what makes a broadcast cost one encoding per kind of
    connection (WebSocket, TCP, ...) plus one ``send`` per member.
    """

    __slots__ = (
        "_groups",
        "_names",
        "checked",
        "cursor",
        "filling",
        "joining",
        "last_delivered",
        "name",
        "pending",
        "target",
        "topic",
        "waiters",
        "waiting",
    )

    def __init__(self, name: str) -> None:
        self.name = name
        self._groups: dict[IEncoder, dict[IParticipant, None]] = {}
        # nickname -> connections: distinct people without walking the room
        # (totalUsers goes out with every /ws room event).
        self._names: dict[str, int] = {}
        #: Members the last ``broadcast`` handed the message to (for metrics).
        self.last_delivered = 0
        # Delivery in sequence order (parkchat.handlers.delivery), kept here
        # so that the hot path reads them off the room it already holds:
        #: The seq of the last room message delivered here; -1 until read
        #: from the store when the room was made here.
        self.cursor = -1
        #: Events held, in arrival order, while the cursor is unknown or a
        #: fill runs; None when nothing is held (the common case).
        self.pending: deque[Any] | None = deque()
        #: A fill from the store runs (one at a time per room).
        self.filling = False
        #: A seq known to be stored (so every seq below it is visible too):
        #: a fill reads up to it.
        self.target = 0
        #: The store's position at the last periodic check (-1: none yet).
        self.checked = -1
        #: Joins reading a resume: the room stays while any runs.
        self.joining = 0
        #: Called once the cursor is known.
        self.waiters: list[Any] = []
        #: While a gap the bus revealed is given a moment to close by
        #: itself (the timer that starts a fill otherwise).
        self.waiting: Any = None
        #: The room's topic (a ``parkchat.model.RoomTopic``, None: none),
        #: read with the cursor and then kept by the topic events delivered
        #: here, so that it is always the one the members' events lead to.
        self.topic: Any = None

    def __len__(self) -> int:
        return sum(len(members) for members in self._groups.values())

    def __contains__(self, participant: object) -> bool:
        encoder = getattr(participant, "encoder", None)
        group = self._groups.get(encoder) if encoder is not None else None
        return group is not None and participant in group

    def __iter__(self) -> Iterator[IParticipant]:
        for members in self._groups.values():
            yield from members

    def add(self, participant: IParticipant) -> None:
        group = self._groups.setdefault(participant.encoder, {})
        if participant not in group:
            group[participant] = None
            self._names[participant.nickname] = self._names.get(participant.nickname, 0) + 1

    def remove(self, participant: IParticipant) -> bool:
        """Remove ``participant``; return whether it was a member."""
        group = self._groups.get(participant.encoder)
        if group is None or participant not in group:
            return False
        del group[participant]
        if not group:
            del self._groups[participant.encoder]
        left = self._names.get(participant.nickname, 1) - 1
        if left:
            self._names[participant.nickname] = left
        else:
            self._names.pop(participant.nickname, None)
        return True

    def distinct_count(self) -> int:
        """How many different nicknames are here (O(1))."""
        return len(self._names)

    def nicknames(self) -> list[str]:
        """Who is here, each name once, in order of arrival per kind."""
        return list(dict.fromkeys(p.nickname for p in self))

    def broadcast(self, message: Any) -> list[IParticipant]:
        """Deliver ``message`` to every member; return the members whose
        delivery raised, so that the caller can drop them. One bad connection
        never stops delivery to the others."""
        failed: list[IParticipant] = []
        delivered = 0
        for encoder, members in list(self._groups.items()):
            try:
                payload = encoder.encode(message)
            except Exception:
                _log.failure("encoding a message for {room} failed", room=self.name)
                continue
            if payload is None:
                continue  # this kind of connection does not show such events
            delivered += len(members)
            for member in tuple(members):
                try:
                    member.send(payload)
                except Exception:
                    _log.failure("delivery to {nickname} failed", nickname=member.nickname)
                    failed.append(member)
        self.last_delivered = delivered - len(failed)
        return failed
