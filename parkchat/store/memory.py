"""An in-memory IMessageStore: for unit tests and ``--db :memory:`` runs.

It answers synchronously (already-fired Deferreds), which keeps tests free of
threads and real time while going through the same interfaces as the SQL
store: every area interface (``IRoomMessageStore``, ``IAccountStore``, ...),
its methods grouped by area as the SQL store's modules are.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

from twisted.internet.defer import Deferred, fail, succeed
from zope.interface import implementer

from parkchat.errors import AccountExists
from parkchat.interfaces import IMessageStore
from parkchat.model import (
    Ban,
    DirectMessage,
    Message,
    StoredUser,
    User,
    name_skeleton,
    nickname_key,
)


@implementer(IMessageStore)
class MemoryStore:
    """Keeps everything in dicts; nothing survives the process."""

    def __init__(self) -> None:
        self._users: dict[str, StoredUser] = {}
        # name_skeleton -> nickname_key: no two accounts look alike.
        self._skeletons: dict[str, str] = {}
        self._sessions: dict[int, int] = {}
        # Each room's messages in id (and so seq) order.
        self._rooms: dict[str, list[Message]] = {}
        self._room_seqs: dict[str, int] = {}
        self._last_id = 0
        # (id, from, to, content, created_ms, delivered, seq), in id order.
        self._direct: list[tuple[int, int, int, str, int, bool, int]] = []
        self._conversation_seqs: dict[tuple[int, int], int] = {}
        self._bans: dict[int, Ban] = {}
        self._revoked_tokens: dict[str, int] = {}
        self._token_cutoffs: dict[int, int] = {}
        self.settings: dict[str, str] = {}
        self.fail_writes: Exception | None = None

    # -- room messages -------------------------------------------------------

    def insert_messages(self, messages: Sequence[Message]) -> Deferred[list[tuple[int, int]]]:
        if self.fail_writes is not None:
            return fail(self.fail_writes)
        stored = []
        for message in messages:
            self._last_id += 1
            seq = self._room_seqs[message.room] = self._room_seqs.get(message.room, 0) + 1
            self._rooms.setdefault(message.room, []).append(message.with_ids(self._last_id, seq))
            stored.append((self._last_id, seq))
        return succeed(stored)

    def recent_messages(
        self, room: str, limit: int, before: int | None = None, after: int | None = None
    ) -> Deferred[list[Message]]:
        messages = self._rooms.get(room, [])
        if after is not None:
            start = bisect.bisect_right(messages, after, key=_id)
            return succeed(messages[start : start + limit])
        end = bisect.bisect_left(messages, before, key=_id) if before is not None else len(messages)
        return succeed(messages[max(0, end - limit) : end])

    def room_messages_after(self, room: str, after_seq: int, limit: int) -> Deferred[list[Message]]:
        messages = self._rooms.get(room, [])
        start = bisect.bisect_right(messages, after_seq, key=_seq)
        return succeed(messages[start : start + max(0, limit)])

    def room_messages_before(
        self, room: str, before_seq: int | None, limit: int
    ) -> Deferred[list[Message]]:
        messages = self._rooms.get(room, [])
        end = (
            len(messages)
            if before_seq is None
            else bisect.bisect_left(messages, before_seq, key=_seq)
        )
        return succeed(messages[max(0, end - max(0, limit)) : end])

    def current_seq(self, room: str) -> Deferred[int]:
        return succeed(self._room_seqs.get(room, 0))

    def room_positions(self, rooms: Sequence[str]) -> Deferred[dict[str, int]]:
        return succeed({r: self._room_seqs[r] for r in rooms if r in self._room_seqs})

    def delete_message(self, message_id: int) -> Deferred[tuple[str, int] | None]:
        for room, messages in self._rooms.items():
            for index, message in enumerate(messages):
                if message.id == message_id:
                    del messages[index]
                    return succeed((room, message.seq))
        return succeed(None)

    # -- accounts ------------------------------------------------------------

    def create_user(
        self, nickname: str, password_hash: bytes, created_ms: int
    ) -> Deferred[StoredUser]:
        key = nickname_key(nickname)
        if key in self._users or name_skeleton(nickname) in self._skeletons:
            return fail(AccountExists())
        user = StoredUser(len(self._users) + 1, nickname, password_hash)
        self._users[key] = user
        self._skeletons[name_skeleton(nickname)] = key
        return succeed(user)

    def get_user(self, nickname: str) -> Deferred[StoredUser | None]:
        return succeed(self._users.get(nickname_key(nickname)))

    def get_user_like(self, nickname: str) -> Deferred[StoredUser | None]:
        key = self._skeletons.get(name_skeleton(nickname), nickname_key(nickname))
        return succeed(self._users.get(key))

    def _user_by_id(self, user_id: int) -> StoredUser | None:
        return next((u for u in self._users.values() if u.id == user_id), None)

    def get_user_by_id(self, user_id: int) -> Deferred[StoredUser | None]:
        return succeed(self._user_by_id(user_id))

    def list_users(self, limit: int, after_id: int = 0) -> Deferred[list[User]]:
        users = sorted((u for u in self._users.values() if u.id > after_id), key=lambda u: u.id)
        return succeed([u.public() for u in users[:limit]])

    def set_password_hash(self, user_id: int, password_hash: bytes) -> Deferred[None]:
        for key, user in self._users.items():
            if user.id == user_id:
                self._users[key] = StoredUser(user.id, user.nickname, password_hash)
        return succeed(None)

    # -- sessions ------------------------------------------------------------

    def next_session(self, user_id: int) -> Deferred[int]:
        if self._user_by_id(user_id) is None:
            # As the SQL stores' foreign key refuses it.
            return fail(KeyError(f"no account with id {user_id}"))
        number = self._sessions[user_id] = self._sessions.get(user_id, 0) + 1
        return succeed(number)

    # -- direct messages -----------------------------------------------------

    def insert_direct(
        self, from_user_id: int, to_user_id: int, content: str, created_ms: int, delivered: bool
    ) -> Deferred[tuple[int, int]]:
        if self.fail_writes is not None:
            return fail(self.fail_writes)
        message_id = len(self._direct) + 1
        pair = _conversation(from_user_id, to_user_id)
        seq = self._conversation_seqs[pair] = self._conversation_seqs.get(pair, 0) + 1
        self._direct.append(
            (message_id, from_user_id, to_user_id, content, created_ms, delivered, seq)
        )
        return succeed((message_id, seq))

    def _direct_message(self, row: tuple[int, int, int, str, int, bool, int]) -> DirectMessage:
        """A stored row as a ``DirectMessage``, both nicknames looked up."""
        message_id, from_id, to_id, content, created_ms, _delivered, seq = row
        sender, recipient = self._user_by_id(from_id), self._user_by_id(to_id)
        assert sender is not None and recipient is not None
        return DirectMessage(
            message_id,
            from_id,
            sender.nickname,
            to_id,
            recipient.nickname,
            content,
            created_ms,
            seq=seq,
        )

    def _conversation_rows(
        self, user_id: int, other_id: int
    ) -> list[tuple[int, int, int, str, int, bool, int]]:
        """The conversation's rows, in id (and so seq) order."""
        pair = _conversation(user_id, other_id)
        return [row for row in self._direct if _conversation(row[1], row[2]) == pair]

    def pending_direct(self, to_user_id: int, limit: int) -> Deferred[list[DirectMessage]]:
        pending = [row for row in self._direct if row[2] == to_user_id and not row[5]]
        return succeed([self._direct_message(row) for row in pending[: max(0, limit)]])

    def direct_history(
        self, user_id: int, other_id: int, limit: int, before: int | None = None
    ) -> Deferred[list[DirectMessage]]:
        found = [
            row
            for row in self._conversation_rows(user_id, other_id)
            if before is None or row[0] < before
        ]
        return succeed([self._direct_message(row) for row in found[max(0, len(found) - limit) :]])

    def direct_messages_after(
        self, user_id: int, other_id: int, after_seq: int, limit: int
    ) -> Deferred[list[DirectMessage]]:
        found = [row for row in self._conversation_rows(user_id, other_id) if row[6] > after_seq]
        return succeed([self._direct_message(row) for row in found[: max(0, limit)]])

    def direct_messages_before(
        self, user_id: int, other_id: int, before_seq: int | None, limit: int
    ) -> Deferred[list[DirectMessage]]:
        found = [
            row
            for row in self._conversation_rows(user_id, other_id)
            if before_seq is None or row[6] < before_seq
        ]
        if limit <= 0:
            return succeed([])
        return succeed([self._direct_message(row) for row in found[-limit:]])

    def conversation_seq(self, user_id: int, other_id: int) -> Deferred[int]:
        return succeed(self._conversation_seqs.get(_conversation(user_id, other_id), 0))

    def mark_delivered(self, ids: Sequence[int]) -> Deferred[None]:
        wanted = set(ids)
        self._direct = [
            (i, f, t, c, ms, delivered or i in wanted, seq)
            for i, f, t, c, ms, delivered, seq in self._direct
        ]
        return succeed(None)

    # -- moderation ----------------------------------------------------------

    def set_ban(
        self, user_id: int, reason: str, created_ms: int, expires_ms: int | None
    ) -> Deferred[None]:
        user = self._user_by_id(user_id)
        assert user is not None
        self._bans[user_id] = Ban(user_id, user.nickname, reason, created_ms, expires_ms)
        return succeed(None)

    def remove_ban(self, user_id: int) -> Deferred[bool]:
        return succeed(self._bans.pop(user_id, None) is not None)

    def get_ban(self, user_id: int) -> Deferred[Ban | None]:
        return succeed(self._bans.get(user_id))

    def list_bans(self) -> Deferred[list[Ban]]:
        return succeed([self._bans[k] for k in sorted(self._bans)])

    # -- tokens --------------------------------------------------------------

    def revoke_token(self, jti: str, expires_s: int) -> Deferred[None]:
        self._revoked_tokens.setdefault(jti, expires_s)
        return succeed(None)

    def list_revoked_tokens(self, now_s: int) -> Deferred[list[tuple[str, int]]]:
        return succeed([(j, e) for j, e in self._revoked_tokens.items() if e > now_s])

    def prune_revoked_tokens(self, now_s: int) -> Deferred[int]:
        expired = [j for j, e in self._revoked_tokens.items() if e <= now_s]
        for jti in expired:
            del self._revoked_tokens[jti]
        return succeed(len(expired))

    def set_token_cutoff(self, user_id: int, before_ms: int) -> Deferred[None]:
        if self._user_by_id(user_id) is None:
            # As the SQL stores' foreign key refuses it (with their own
            # IntegrityError).
            return fail(KeyError(f"no account with id {user_id}"))
        self._token_cutoffs[user_id] = max(before_ms, self._token_cutoffs.get(user_id, before_ms))
        return succeed(None)

    def list_token_cutoffs(self) -> Deferred[list[tuple[int, int]]]:
        return succeed(sorted(self._token_cutoffs.items()))

    # -- lifecycle -----------------------------------------------------------

    def ping(self) -> Deferred[None]:
        return succeed(None)

    def check_writable(self) -> Deferred[None]:
        return succeed(None)

    def close(self) -> Deferred[None]:
        return succeed(None)


def _id(message: Message) -> int:
    return message.id


def _seq(message: Message) -> int:
    return message.seq


def _conversation(user_id: int, other_id: int) -> tuple[int, int]:
    """The key of a conversation: the pair of accounts, lower id first."""
    return (user_id, other_id) if user_id <= other_id else (other_id, user_id)
