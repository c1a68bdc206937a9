"""An in-memory IMessageStore: for unit tests and ``--db :memory:`` runs.

It answers synchronously (already-fired Deferreds), which keeps tests free of
threads and real time while going through the same interfaces as the SQL
store: every area interface (``IRoomMessageStore``, ``IAccountStore``, ...),
its methods grouped by area as the SQL store's modules are.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass

from twisted.internet.defer import Deferred, fail, succeed
from zope.interface import implementer

from parkchat.errors import AccountExists
from parkchat.interfaces import IMessageStore
from parkchat.mentions import HERE, ROOM, resolve
from parkchat.model import (
    CHAT,
    COUNT_CAP,
    Ban,
    DirectMessage,
    DirectState,
    Message,
    MessageEdit,
    RoomState,
    RoomTopic,
    SearchHit,
    StoredUser,
    User,
    name_skeleton,
    nickname_key,
    search_matches,
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
        self._edits: dict[int, list[MessageEdit]] = {}
        self._topics: dict[str, RoomTopic] = {}
        # (room, seq) -> [(user_id or None, name)] of a message's mentions.
        self._mentions: dict[tuple[str, int], list[tuple[int | None, str]]] = {}
        # (user_id, room) -> [read_seq, muted]
        self._account_rooms: dict[tuple[int, str], list[int]] = {}
        # (user_id, other_id) -> (read_seq, opened, closed_seq)
        self._account_directs: dict[tuple[int, int], tuple[int, bool, int | None]] = {}
        self._refresh: dict[str, _RefreshToken] = {}
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
            if message.mentions:
                self._store_mentions(message, seq)
            self._rooms.setdefault(message.room, []).append(message.with_ids(self._last_id, seq))
            stored.append((self._last_id, seq))
        return succeed(stored)

    def _store_mentions(self, message: Message, seq: int) -> None:
        """As the SQL store does: resolve candidates against the accounts,
        keep the rows, leave the names in the (unpublished) message."""
        accounts = {key: (u.id, u.nickname) for key, u in self._users.items()}
        resolved = resolve(message.mentions, accounts)
        message.mentions = tuple(name for _, name in resolved)
        if resolved:
            self._mentions[(message.room, seq)] = resolved

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
                    self._mentions.pop((room, message.seq), None)
                    return succeed((room, message.seq))
        return succeed(None)

    # -- edits ---------------------------------------------------------------

    def room_message(self, room: str, seq: int) -> Deferred[Message | None]:
        messages = self._rooms.get(room, [])
        index = bisect.bisect_left(messages, seq, key=_seq)
        if index < len(messages) and messages[index].seq == seq:
            return succeed(messages[index])
        return succeed(None)

    def edit_message(
        self, message_id: int, content: str, editor_id: int | None, editor: str, edited_ms: int
    ) -> Deferred[Message | None]:
        if self.fail_writes is not None:
            return fail(self.fail_writes)
        for messages in self._rooms.values():
            index = bisect.bisect_left(messages, message_id, key=_id)
            if index < len(messages) and messages[index].id == message_id:
                old = messages[index]
                if old.edited_ms is not None and edited_ms <= old.edited_ms:
                    edited_ms = old.edited_ms + 1
                self._edits.setdefault(message_id, []).append(
                    MessageEdit(message_id, old.content, editor, editor_id, edited_ms)
                )
                new = messages[index] = old.edited(content, edited_ms)
                return succeed(new)
        return succeed(None)

    def message_edits(self, message_id: int) -> Deferred[list[MessageEdit]]:
        return succeed(list(self._edits.get(message_id, [])))

    # -- search --------------------------------------------------------------

    def search_messages(
        self,
        terms: Sequence[str],
        user_id: int,
        *,
        rooms: Sequence[str] | None,
        room: str | None,
        with_user_id: int | None,
        include_rooms: bool,
        include_direct: bool,
        before: tuple[int, int, int] | None,
        limit: int,
    ) -> Deferred[list[SearchHit]]:
        if not terms or limit <= 0:
            return succeed([])
        found: list[tuple[tuple[int, int, int], SearchHit]] = []
        if include_rooms:
            wanted = {room} if room is not None else None if rooms is None else set(rooms)
            for name, messages in self._rooms.items():
                if wanted is not None and name not in wanted:
                    continue
                for m in messages:
                    if m.type == CHAT and search_matches(m.content, terms):
                        hit = SearchHit(
                            id=m.id,
                            seq=m.seq,
                            nickname=m.nickname,
                            content=m.content,
                            timestamp_ms=m.timestamp_ms,
                            room=name,
                            edited_ms=m.edited_ms,
                        )
                        found.append(((m.timestamp_ms, 1, m.id), hit))
        if include_direct:
            for row in self._direct:
                message_id, from_id, to_id, content, created_ms, _delivered, seq = row
                if user_id not in (from_id, to_id):
                    continue
                if with_user_id is not None and _conversation(from_id, to_id) != _conversation(
                    user_id, with_user_id
                ):
                    continue
                if not search_matches(content, terms):
                    continue
                message = self._direct_message(row)
                hit = SearchHit(
                    id=message_id,
                    seq=seq,
                    nickname=message.from_nickname,
                    content=content,
                    timestamp_ms=created_ms,
                    with_nickname=(
                        message.to_nickname if from_id == user_id else message.from_nickname
                    ),
                )
                found.append(((created_ms, 0, message_id), hit))
        found = [pair for pair in found if before is None or pair[0] < before]
        found.sort(key=lambda pair: pair[0], reverse=True)
        return succeed([hit for _, hit in found[:limit]])

    # -- topics --------------------------------------------------------------

    def room_topic(self, room: str) -> Deferred[RoomTopic | None]:
        return succeed(self._topics.get(room))

    def set_room_topic(self, room: str, topic: RoomTopic) -> Deferred[None]:
        if self.fail_writes is not None:
            return fail(self.fail_writes)
        if topic.text:
            self._topics[room] = topic
        else:
            self._topics.pop(room, None)
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

    # -- account state -------------------------------------------------------

    def _room_state(self, user_id: int, room: str) -> RoomState | None:
        mark = self._account_rooms.get((user_id, room))
        if mark is None:
            return None
        read_seq, muted = mark
        others = [
            m
            for m in self._rooms.get(room, [])
            if m.seq > read_seq and (m.user_id is None or m.user_id != user_id)
        ]
        mentioned = [
            m
            for m in others
            if any(
                uid == user_id or name in (ROOM, HERE)
                for uid, name in self._mentions.get((room, m.seq), ())
            )
        ]
        return RoomState(
            room,
            seq=self._room_seqs.get(room, 0),
            read_seq=read_seq,
            unread=min(len(others), COUNT_CAP),
            mentions=min(len(mentioned), COUNT_CAP),
            muted=bool(muted),
        )

    def add_account_room(
        self, user_id: int, room: str, joined_ms: int
    ) -> Deferred[RoomState | None]:
        if (user_id, room) in self._account_rooms:
            return succeed(None)
        if self._user_by_id(user_id) is None:
            return fail(KeyError(f"no account with id {user_id}"))
        seq = self._room_seqs.get(room, 0)
        self._account_rooms[(user_id, room)] = [seq, 0]
        return succeed(RoomState(room, seq=seq, read_seq=seq))

    def remove_account_room(self, user_id: int, room: str) -> Deferred[bool]:
        return succeed(self._account_rooms.pop((user_id, room), None) is not None)

    def account_rooms(self, user_id: int) -> Deferred[list[RoomState]]:
        rooms = sorted(room for uid, room in self._account_rooms if uid == user_id)
        states = [self._room_state(user_id, room) for room in rooms]
        return succeed([s for s in states if s is not None])

    def account_room_names(self, user_id: int) -> Deferred[list[str]]:
        return succeed(sorted(room for uid, room in self._account_rooms if uid == user_id))

    def mark_room_read(self, user_id: int, room: str, seq: int) -> Deferred[RoomState | None]:
        mark = self._account_rooms.get((user_id, room))
        read_seq = min(seq, self._room_seqs.get(room, 0))
        if mark is None or read_seq <= mark[0]:
            return succeed(None)
        mark[0] = read_seq
        return succeed(self._room_state(user_id, room))

    def set_room_muted(self, user_id: int, room: str, muted: bool) -> Deferred[RoomState | None]:
        mark = self._account_rooms.get((user_id, room))
        if mark is None:
            return succeed(None)
        mark[1] = int(muted)
        return succeed(self._room_state(user_id, room))

    def _direct_state(self, user_id: int, other_id: int) -> DirectState | None:
        other = self._user_by_id(other_id)
        if other is None:
            return None
        seq = self._conversation_seqs.get(_conversation(user_id, other_id), 0)
        read_seq, opened, closed_seq = self._account_directs.get(
            (user_id, other_id), (0, False, None)
        )
        unread = 0
        if user_id != other_id:
            unread = sum(
                1
                for row in self._direct
                if row[1] == other_id and row[2] == user_id and row[6] > read_seq
            )
        return DirectState(
            other.nickname,
            other_id,
            seq=seq,
            read_seq=read_seq,
            unread=min(unread, COUNT_CAP),
            open=(seq > 0 or opened) and (closed_seq is None or seq > closed_seq),
        )

    def account_directs(self, user_id: int) -> Deferred[list[DirectState]]:
        others = {
            high if low == user_id else low
            for low, high in self._conversation_seqs
            if user_id in (low, high)
        }
        others |= {o for uid, o in self._account_directs if uid == user_id}
        states = [self._direct_state(user_id, o) for o in others]
        shown = [s for s in states if s is not None and s.open]
        shown.sort(key=lambda s: (nickname_key(s.with_nickname), s.with_user_id))
        return succeed(shown)

    def direct_state(self, user_id: int, other_id: int) -> Deferred[DirectState | None]:
        return succeed(self._direct_state(user_id, other_id))

    def mark_direct_read(
        self, user_id: int, other_id: int, seq: int
    ) -> Deferred[DirectState | None]:
        read_seq = min(seq, self._conversation_seqs.get(_conversation(user_id, other_id), 0))
        current, opened, closed_seq = self._account_directs.get(
            (user_id, other_id), (0, False, None)
        )
        if read_seq <= current:
            return succeed(None)
        self._account_directs[(user_id, other_id)] = (read_seq, opened, closed_seq)
        return succeed(self._direct_state(user_id, other_id))

    def set_direct_open(
        self, user_id: int, other_id: int, opened: bool
    ) -> Deferred[DirectState | None]:
        if self._user_by_id(other_id) is None:
            return succeed(None)
        read_seq = self._account_directs.get((user_id, other_id), (0, False, None))[0]
        closed_seq = (
            None if opened else self._conversation_seqs.get(_conversation(user_id, other_id), 0)
        )
        self._account_directs[(user_id, other_id)] = (read_seq, opened, closed_seq)
        return succeed(self._direct_state(user_id, other_id))

    # -- refresh tokens ------------------------------------------------------

    def add_refresh_token(
        self, token_hash: str, user_id: int, family: str, created_ms: int, expires_ms: int
    ) -> Deferred[None]:
        self._refresh[token_hash] = _RefreshToken(user_id, family, expires_ms)
        return succeed(None)

    def _revoke_family(self, family: str) -> None:
        for token in self._refresh.values():
            if token.family == family:
                token.revoked = True

    def spend_refresh_token(self, token_hash: str, now_ms: int) -> Deferred[tuple[str, int, str]]:
        token = self._refresh.get(token_hash)
        if token is None or token.revoked or token.expires_ms <= now_ms:
            return succeed(("invalid", 0, ""))
        if token.spent_ms is not None:
            self._revoke_family(token.family)
            return succeed(("reused", token.user_id, token.family))
        token.spent_ms = now_ms
        return succeed(("ok", token.user_id, token.family))

    def revoke_refresh_token(self, token_hash: str) -> Deferred[int | None]:
        token = self._refresh.get(token_hash)
        if token is None:
            return succeed(None)
        self._revoke_family(token.family)
        return succeed(token.user_id)

    def revoke_refresh_tokens(self, user_id: int) -> Deferred[int]:
        live = 0
        for token in self._refresh.values():
            if token.user_id == user_id and not token.revoked:
                live += token.spent_ms is None
                token.revoked = True
        return succeed(live)

    def prune_refresh_tokens(self, now_ms: int) -> Deferred[int]:
        expired = [h for h, token in self._refresh.items() if token.expires_ms <= now_ms]
        for token_hash in expired:
            del self._refresh[token_hash]
        return succeed(len(expired))

    # -- lifecycle -----------------------------------------------------------

    def ping(self) -> Deferred[None]:
        return succeed(None)

    def check_writable(self) -> Deferred[None]:
        return succeed(None)

    def close(self) -> Deferred[None]:
        return succeed(None)


@dataclass(slots=True)
class _RefreshToken:
    """A refresh token's row (by its hash)."""

    user_id: int
    family: str
    expires_ms: int
    spent_ms: int | None = None
    revoked: bool = False


def _id(message: Message) -> int:
    return message.id


def _seq(message: Message) -> int:
    return message.seq


def _conversation(user_id: int, other_id: int) -> tuple[int, int]:
    """The key of a conversation: the pair of accounts, lower id first."""
    return (user_id, other_id) if user_id <= other_id else (other_id, user_id)
