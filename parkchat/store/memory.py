"""An in-memory IMessageStore: for unit tests and ``--db :memory:`` runs.

It answers synchronously (already-fired Deferreds), which keeps tests free of
threads and real time while going through the same interface as the SQL store.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

from twisted.internet.defer import Deferred, fail, succeed
from zope.interface import implementer

from parkchat.errors import AccountExists
from parkchat.interfaces import IMessageStore
from parkchat.model import Message, StoredUser, nickname_key


@implementer(IMessageStore)
class MemoryStore:
    """Keeps everything in dicts; nothing survives the process."""

    def __init__(self) -> None:
        self._users: dict[str, StoredUser] = {}
        self._rooms: dict[str, list[Message]] = {}
        self._last_id = 0
        self.fail_writes: Exception | None = None

    def insert_messages(self, messages: Sequence[Message]) -> Deferred[list[int]]:
        if self.fail_writes is not None:
            return fail(self.fail_writes)
        ids = []
        for message in messages:
            self._last_id += 1
            self._rooms.setdefault(message.room, []).append(message.with_id(self._last_id))
            ids.append(self._last_id)
        return succeed(ids)

    def recent_messages(
        self, room: str, limit: int, before: int | None = None, after: int | None = None
    ) -> Deferred[list[Message]]:
        messages = self._rooms.get(room, [])
        ids = [m.id for m in messages]
        if after is not None:
            start = bisect.bisect_right(ids, after)
            return succeed(messages[start : start + limit])
        end = bisect.bisect_left(ids, before) if before is not None else len(messages)
        return succeed(messages[max(0, end - limit) : end])

    def create_user(
        self, nickname: str, password_hash: bytes, created_ms: int
    ) -> Deferred[StoredUser]:
        key = nickname_key(nickname)
        if key in self._users:
            return fail(AccountExists())
        user = StoredUser(len(self._users) + 1, nickname, password_hash)
        self._users[key] = user
        return succeed(user)

    def get_user(self, nickname: str) -> Deferred[StoredUser | None]:
        return succeed(self._users.get(nickname_key(nickname)))

    def set_password_hash(self, user_id: int, password_hash: bytes) -> Deferred[None]:
        for key, user in self._users.items():
            if user.id == user_id:
                self._users[key] = StoredUser(user.id, user.nickname, password_hash)
        return succeed(None)

    def close(self) -> Deferred[None]:
        return succeed(None)
