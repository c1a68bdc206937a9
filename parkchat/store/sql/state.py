"""Account state in SQL: the ``account_rooms`` and ``account_directs``
tables behind ``IAccountStateStore``, with unread and mention counts read
from ``messages``, ``direct_messages`` and ``mentions``.

Counts are of the others' messages after the read marker, each one index
range (``messages_room_seq``, ``direct_messages_seq``, ``mentions_user``)
read at most ``COUNT_CAP`` rows far: a room never read costs no more than
one read a thousand messages ago.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from twisted.internet.defer import Deferred
from zope.interface import implementer

from parkchat.interfaces import IAccountStateStore
from parkchat.mentions import HERE, ROOM
from parkchat.model import COUNT_CAP, DirectState, RoomState, nickname_key
from parkchat.store.sql.engine import Cursor, Dialect, SQLStoreBase

# -- rooms ---------------------------------------------------------------------------


def _room_seq(txn: Cursor, dialect: Dialect, room: str) -> int:
    txn.execute(dialect.sql("SELECT last_seq FROM room_sequences WHERE room = ?"), (room,))
    row = txn.fetchone()
    return 0 if row is None else int(row[0])


def _count(txn: Cursor, dialect: Dialect, query: str, params: Sequence[Any]) -> int:
    """``SELECT COUNT(*)`` of the rows ``query`` selects, at most COUNT_CAP of them."""
    txn.execute(
        dialect.sql(f"SELECT COUNT(*) FROM ({query} LIMIT ?) AS capped"), (*params, COUNT_CAP)
    )
    return int(txn.fetchone()[0])


def room_counts_txn(
    txn: Cursor, dialect: Dialect, user_id: int, room: str, read_seq: int
) -> tuple[int, int]:
    """``(unread, mentions)``: the others' messages in ``room`` after
    ``read_seq``, and those of them mentioning the account, ``@room`` or
    ``@here``."""
    unread = _count(
        txn,
        dialect,
        "SELECT 1 FROM messages WHERE room = ? AND seq > ? AND (user_id IS NULL OR user_id <> ?)",
        (room, read_seq, user_id),
    )
    if not unread:
        return 0, 0
    mentions = _count(
        txn,
        dialect,
        "SELECT DISTINCT n.seq FROM mentions n JOIN messages m ON m.room = n.room AND m.seq = n.seq"
        " WHERE n.room = ? AND n.seq > ? AND (n.user_id = ? OR n.name IN (?, ?))"
        " AND (m.user_id IS NULL OR m.user_id <> ?)",
        (room, read_seq, user_id, ROOM, HERE, user_id),
    )
    return unread, mentions


def _room_state(
    txn: Cursor, dialect: Dialect, user_id: int, room: str, read_seq: int, muted: Any
) -> RoomState:
    unread, mentions = room_counts_txn(txn, dialect, user_id, room, read_seq)
    return RoomState(
        room,
        seq=_room_seq(txn, dialect, room),
        read_seq=read_seq,
        unread=unread,
        mentions=mentions,
        muted=bool(muted),
    )


def room_state_txn(txn: Cursor, dialect: Dialect, user_id: int, room: str) -> RoomState | None:
    txn.execute(
        dialect.sql("SELECT read_seq, muted FROM account_rooms WHERE user_id = ? AND room = ?"),
        (user_id, room),
    )
    row = txn.fetchone()
    if row is None:
        return None
    return _room_state(txn, dialect, user_id, room, int(row[0]), row[1])


def add_account_room_txn(
    txn: Cursor, dialect: Dialect, user_id: int, room: str, joined_ms: int
) -> RoomState | None:
    seq = _room_seq(txn, dialect, room)
    txn.execute(
        dialect.sql(
            "INSERT INTO account_rooms (user_id, room, joined_ms, read_seq, muted) "
            "VALUES (?, ?, ?, ?, 0) ON CONFLICT (user_id, room) DO NOTHING"
        ),
        (user_id, room, joined_ms, seq),
    )
    if txn.rowcount <= 0:
        return None
    return RoomState(room, seq=seq, read_seq=seq)


def remove_account_room_txn(txn: Cursor, dialect: Dialect, user_id: int, room: str) -> bool:
    txn.execute(
        dialect.sql("DELETE FROM account_rooms WHERE user_id = ? AND room = ?"), (user_id, room)
    )
    return txn.rowcount > 0


def account_rooms_txn(txn: Cursor, dialect: Dialect, user_id: int) -> list[RoomState]:
    txn.execute(
        dialect.sql("SELECT room, read_seq, muted FROM account_rooms WHERE user_id = ?"),
        (user_id,),
    )
    rows = sorted(txn.fetchall(), key=lambda r: str(r[0]))
    return [_room_state(txn, dialect, user_id, str(r[0]), int(r[1]), r[2]) for r in rows]


def account_room_names_txn(txn: Cursor, dialect: Dialect, user_id: int) -> list[str]:
    txn.execute(
        dialect.sql("SELECT room FROM account_rooms WHERE user_id = ? ORDER BY room"), (user_id,)
    )
    return [str(r[0]) for r in txn.fetchall()]


def mark_room_read_txn(
    txn: Cursor, dialect: Dialect, user_id: int, room: str, seq: int
) -> RoomState | None:
    txn.execute(
        dialect.sql("SELECT read_seq, muted FROM account_rooms WHERE user_id = ? AND room = ?"),
        (user_id, room),
    )
    row = txn.fetchone()
    if row is None:
        return None
    read_seq = min(seq, _room_seq(txn, dialect, room))
    if read_seq <= int(row[0]):
        return None
    # The WHERE keeps the marker from going back if another instance moved
    # it further meanwhile.
    txn.execute(
        dialect.sql(
            "UPDATE account_rooms SET read_seq = ? WHERE user_id = ? AND room = ? AND read_seq < ?"
        ),
        (read_seq, user_id, room, read_seq),
    )
    if txn.rowcount <= 0:
        return None
    return _room_state(txn, dialect, user_id, room, read_seq, row[1])


def set_room_muted_txn(
    txn: Cursor, dialect: Dialect, user_id: int, room: str, muted: bool
) -> RoomState | None:
    txn.execute(
        dialect.sql("UPDATE account_rooms SET muted = ? WHERE user_id = ? AND room = ?"),
        (int(muted), user_id, room),
    )
    if txn.rowcount <= 0:
        return None
    return room_state_txn(txn, dialect, user_id, room)


# -- conversations -------------------------------------------------------------------


def _conversation_seq(txn: Cursor, dialect: Dialect, user_id: int, other_id: int) -> int:
    low, high = sorted((user_id, other_id))
    txn.execute(
        dialect.sql(
            "SELECT last_seq FROM conversation_sequences WHERE low_user_id = ? AND high_user_id = ?"
        ),
        (low, high),
    )
    row = txn.fetchone()
    return 0 if row is None else int(row[0])


def _direct_unread(
    txn: Cursor, dialect: Dialect, user_id: int, other_id: int, read_seq: int
) -> int:
    if user_id == other_id:
        return 0  # notes to self: all the account's own
    return _count(
        txn,
        dialect,
        "SELECT 1 FROM direct_messages WHERE from_user_id = ? AND to_user_id = ? AND seq > ?",
        (other_id, user_id, read_seq),
    )


def _visible(seq: int, opened: bool, closed_seq: int | None) -> bool:
    """Whether a conversation is in the account's list: it has messages or
    was opened, and was not closed since its last message."""
    return (seq > 0 or opened) and (closed_seq is None or seq > closed_seq)


def _account_direct_row(
    txn: Cursor, dialect: Dialect, user_id: int, other_id: int
) -> tuple[int, bool, int | None]:
    txn.execute(
        dialect.sql(
            "SELECT read_seq, opened, closed_seq FROM account_directs "
            "WHERE user_id = ? AND other_id = ?"
        ),
        (user_id, other_id),
    )
    row = txn.fetchone()
    if row is None:
        return 0, False, None
    return int(row[0]), bool(row[1]), None if row[2] is None else int(row[2])


def direct_state_txn(
    txn: Cursor, dialect: Dialect, user_id: int, other_id: int
) -> DirectState | None:
    txn.execute(dialect.sql("SELECT nickname FROM users WHERE id = ?"), (other_id,))
    row = txn.fetchone()
    if row is None:
        return None
    seq = _conversation_seq(txn, dialect, user_id, other_id)
    read_seq, opened, closed_seq = _account_direct_row(txn, dialect, user_id, other_id)
    return DirectState(
        str(row[0]),
        other_id,
        seq=seq,
        read_seq=read_seq,
        unread=_direct_unread(txn, dialect, user_id, other_id, read_seq),
        open=_visible(seq, opened, closed_seq),
    )


def account_directs_txn(txn: Cursor, dialect: Dialect, user_id: int) -> list[DirectState]:
    txn.execute(
        dialect.sql(
            "SELECT high_user_id, last_seq FROM conversation_sequences WHERE low_user_id = ? "
            "UNION ALL "
            "SELECT low_user_id, last_seq FROM conversation_sequences WHERE high_user_id = ?"
        ),
        (user_id, user_id),
    )
    seqs = {int(other): int(seq) for other, seq in txn.fetchall()}
    txn.execute(
        dialect.sql(
            "SELECT other_id, read_seq, opened, closed_seq FROM account_directs WHERE user_id = ?"
        ),
        (user_id,),
    )
    marks = {
        int(r[0]): (int(r[1]), bool(r[2]), None if r[3] is None else int(r[3]))
        for r in txn.fetchall()
    }
    shown = []
    for other in seqs.keys() | marks.keys():
        seq = seqs.get(other, 0)
        read_seq, opened, closed_seq = marks.get(other, (0, False, None))
        if _visible(seq, opened, closed_seq):
            shown.append((other, seq, read_seq))
    names: dict[int, str] = {}
    for start in range(0, len(shown), 500):
        chunk = [other for other, _, _ in shown[start : start + 500]]
        txn.execute(
            dialect.sql(
                "SELECT id, nickname FROM users WHERE id IN (" + ", ".join(["?"] * len(chunk)) + ")"
            ),
            tuple(chunk),
        )
        names.update((int(i), str(n)) for i, n in txn.fetchall())
    states = [
        DirectState(
            names[other],
            other,
            seq=seq,
            read_seq=read_seq,
            unread=_direct_unread(txn, dialect, user_id, other, read_seq),
        )
        for other, seq, read_seq in shown
        if other in names
    ]
    states.sort(key=lambda s: (nickname_key(s.with_nickname), s.with_user_id))
    return states


def mark_direct_read_txn(
    txn: Cursor, dialect: Dialect, user_id: int, other_id: int, seq: int
) -> DirectState | None:
    read_seq = min(seq, _conversation_seq(txn, dialect, user_id, other_id))
    current, _, _ = _account_direct_row(txn, dialect, user_id, other_id)
    if read_seq <= current:
        return None
    txn.execute(
        dialect.sql(
            "INSERT INTO account_directs (user_id, other_id, read_seq) VALUES (?, ?, ?) "
            "ON CONFLICT (user_id, other_id) DO UPDATE SET read_seq = excluded.read_seq "
            "WHERE excluded.read_seq > account_directs.read_seq"
        ),
        (user_id, other_id, read_seq),
    )
    return direct_state_txn(txn, dialect, user_id, other_id)


def set_direct_open_txn(
    txn: Cursor, dialect: Dialect, user_id: int, other_id: int, opened: bool
) -> DirectState | None:
    txn.execute(dialect.sql("SELECT 1 FROM users WHERE id = ?"), (other_id,))
    if txn.fetchone() is None:
        return None
    closed_seq = None if opened else _conversation_seq(txn, dialect, user_id, other_id)
    txn.execute(
        dialect.sql(
            "INSERT INTO account_directs (user_id, other_id, opened, closed_seq) "
            "VALUES (?, ?, ?, ?) ON CONFLICT (user_id, other_id) DO UPDATE "
            "SET opened = excluded.opened, closed_seq = excluded.closed_seq"
        ),
        (user_id, other_id, int(opened), closed_seq),
    )
    return direct_state_txn(txn, dialect, user_id, other_id)


@implementer(IAccountStateStore)
class AccountStateStore(SQLStoreBase):
    """Joined rooms, conversations, read markers and mutes per account."""

    def add_account_room(
        self, user_id: int, room: str, joined_ms: int
    ) -> Deferred[RoomState | None]:
        return self._write(add_account_room_txn, user_id, room, joined_ms)

    def remove_account_room(self, user_id: int, room: str) -> Deferred[bool]:
        return self._write(remove_account_room_txn, user_id, room)

    def account_rooms(self, user_id: int) -> Deferred[list[RoomState]]:
        return self._read(account_rooms_txn, user_id)

    def account_room_names(self, user_id: int) -> Deferred[list[str]]:
        return self._read(account_room_names_txn, user_id)

    def mark_room_read(self, user_id: int, room: str, seq: int) -> Deferred[RoomState | None]:
        return self._write(mark_room_read_txn, user_id, room, seq)

    def set_room_muted(self, user_id: int, room: str, muted: bool) -> Deferred[RoomState | None]:
        return self._write(set_room_muted_txn, user_id, room, muted)

    def account_directs(self, user_id: int) -> Deferred[list[DirectState]]:
        return self._read(account_directs_txn, user_id)

    def direct_state(self, user_id: int, other_id: int) -> Deferred[DirectState | None]:
        return self._read(direct_state_txn, user_id, other_id)

    def mark_direct_read(
        self, user_id: int, other_id: int, seq: int
    ) -> Deferred[DirectState | None]:
        return self._write(mark_direct_read_txn, user_id, other_id, seq)

    def set_direct_open(
        self, user_id: int, other_id: int, opened: bool
    ) -> Deferred[DirectState | None]:
        return self._write(set_direct_open_txn, user_id, other_id, opened)
