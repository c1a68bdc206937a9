"""The newest messages of recently read rooms, in memory.

The history query nearly every client makes -- the last N messages of a room,
no paging -- then costs no database round trip. This is only correct while
this process sees every message of a room as it is stored, i.e. with one
instance; with a shared bus the service does not use it.
"""

from __future__ import annotations

from collections import OrderedDict, deque

from parkchat.model import Message


class RecentMessages:
    """Per room, the newest ``depth`` stored messages, for at most
    ``max_rooms`` rooms (least recently read dropped first)."""

    def __init__(self, depth: int = 200, max_rooms: int = 256) -> None:
        self.depth = depth
        self.max_rooms = max_rooms
        self._rooms: OrderedDict[str, deque[Message]] = OrderedDict()
        self._versions: dict[str, int] = {}
        # Rooms being loaded from the store: messages stored meanwhile, and
        # ids deleted meanwhile.
        self._loading: dict[str, list[Message]] = {}
        self._deleted: dict[str, set[int]] = {}
        self._edited: dict[str, dict[int, Message]] = {}

    def __len__(self) -> int:
        return len(self._rooms)

    def get(self, room: str, limit: int) -> list[Message] | None:
        """The last ``limit`` messages, oldest first, or None if not cached."""
        window = self._rooms.get(room)
        if window is None:
            return None
        self._rooms.move_to_end(room)
        if limit >= len(window):
            return list(window)
        return list(window)[-limit:]

    def version(self, room: str) -> int:
        """Changes whenever the room's cached messages change."""
        return self._versions.get(room, 0)

    def loading(self, room: str) -> None:
        """A load of ``room`` from the store starts: remember what is stored
        until it finishes, so that nothing committed in between is missed."""
        self._loading.setdefault(room, [])

    def load_failed(self, room: str) -> None:
        """The load of ``room`` failed: stop collecting what is stored meanwhile."""
        self._loading.pop(room, None)
        self._deleted.pop(room, None)
        self._edited.pop(room, None)

    def fill(self, room: str, stored: list[Message]) -> list[Message]:
        """The load finished with ``stored`` (the newest ``depth`` messages,
        oldest first); merge what arrived meanwhile and cache the window."""
        arrived = self._loading.pop(room, [])
        deleted = self._deleted.pop(room, None)
        if deleted:
            stored = [m for m in stored if m.id not in deleted]
            arrived = [m for m in arrived if m.id not in deleted]
        edited = self._edited.pop(room, None)
        if edited:
            stored = [_newer(m, edited) for m in stored]
            arrived = [_newer(m, edited) for m in arrived]
        last = stored[-1].id if stored else 0
        window = deque(stored, maxlen=self.depth)
        window.extend(m for m in arrived if m.id > last)
        self._rooms[room] = window
        self._rooms.move_to_end(room)
        self._versions[room] = self._versions.get(room, 0) + 1
        while len(self._rooms) > self.max_rooms:
            dropped, _ = self._rooms.popitem(last=False)
            self._versions.pop(dropped, None)
        return list(window)

    def remove(self, room: str, message_id: int) -> None:
        """A stored message of ``room`` was deleted (moderation)."""
        if room in self._loading:
            # The load may have read it before the delete: filter it there too.
            self._deleted.setdefault(room, set()).add(message_id)
        window = self._rooms.get(room)
        if window is not None and any(m.id == message_id for m in window):
            self._rooms.pop(room)  # reloaded from the store on the next read
            self._versions[room] = self._versions.get(room, 0) + 1

    def replace(self, message: Message) -> None:
        """A stored message of ``message.room`` was edited: ``message`` is
        it as stored now (a load running meanwhile may have read the old
        text: it is replaced there too)."""
        room = message.room
        if room in self._loading:
            self._edited.setdefault(room, {})[message.id] = message
        window = self._rooms.get(room)
        if window is None:
            return
        for index, cached in enumerate(window):
            if cached.id == message.id:
                window[index] = _newer(cached, {message.id: message})
                self._versions[room] = self._versions.get(room, 0) + 1
                return

    def add(self, message: Message) -> None:
        """A message of this instance was stored."""
        pending = self._loading.get(message.room)
        if pending is not None:
            pending.append(message)
        window = self._rooms.get(message.room)
        if window is not None:
            window.append(message)
            self._versions[message.room] = self._versions.get(message.room, 0) + 1


def _newer(message: Message, edited: dict[int, Message]) -> Message:
    """``message``, or its edited version if that is newer."""
    new = edited.get(message.id)
    if new is None or (message.edited_ms or 0) >= (new.edited_ms or 0):
        return message
    return new
