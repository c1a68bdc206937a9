"""Room messages in SQL: the ``messages`` and ``room_sequences`` tables
behind ``IRoomMessageStore``.

A message's ``seq`` is its position in its room. ``room_sequences`` holds
each room's last seq; a batch bumps the counters of its rooms and inserts its
rows in one transaction. On PostgreSQL the bump locks the room's counter row
until the batch commits, so the room's next batch (from any instance) waits
for it and draws the following seqs: a room's seqs become visible in order,
and batches of different rooms commit in parallel. SQLite has one writer at
a time anyway.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from twisted.internet.defer import Deferred
from zope.interface import implementer

from parkchat.interfaces import IRoomMessageStore
from parkchat.mentions import names_to_look_up, resolve
from parkchat.model import Message
from parkchat.store.sql.engine import Cursor, Dialect, SQLStoreBase

MESSAGE_COLUMNS = "id, room, user_id, nickname, content, created_ms, type, seq, edited_ms"

#: Rooms per statement that bumps or reads room counters: a batch spanning
#: more rooms takes several statements (SQLite allows 32766 parameters per
#: statement; PostgreSQL's planner prefers short lists too).
ROOMS_PER_STATEMENT = 500


def message_from_row(row: Sequence[Any]) -> Message:
    """A ``Message`` from the columns ``MESSAGE_COLUMNS``."""
    id_, room, user_id, nickname, content, created_ms, type_, seq, edited_ms = row
    return Message(
        id=id_,
        seq=seq,
        room=room,
        user_id=user_id,
        nickname=nickname,
        content=content,
        timestamp_ms=created_ms,
        type=type_,
        edited_ms=edited_ms,
    )


def _chunks(items: Sequence[Any]) -> list[Sequence[Any]]:
    return [
        items[start : start + ROOMS_PER_STATEMENT]
        for start in range(0, len(items), ROOMS_PER_STATEMENT)
    ]


def advance_rooms_txn(
    txn: Cursor, dialect: Dialect, counts: Sequence[tuple[str, int]]
) -> dict[str, int]:
    """Add ``n`` to the counter of each ``(room, n)`` (creating it at ``n``)
    and return ``{room: last_seq}`` after the bump: the rooms' new messages
    take seqs ``last_seq - n + 1 .. last_seq``.

    ``counts`` must be sorted by room: PostgreSQL locks the counter rows in
    the order of the VALUES list, and two transactions that lock rows in
    one order cannot deadlock each other.
    """
    last: dict[str, int] = {}
    for chunk in _chunks(counts):
        txn.execute(
            dialect.sql(
                "INSERT INTO room_sequences (room, last_seq) VALUES "
                + ", ".join(["(?, ?)"] * len(chunk))
                + " ON CONFLICT (room) DO UPDATE"
                " SET last_seq = room_sequences.last_seq + excluded.last_seq"
                " RETURNING room, last_seq"
            ),
            [value for pair in chunk for value in pair],
        )
        last.update((room, int(seq)) for room, seq in txn.fetchall())
    return last


def insert_messages_txn(
    txn: Cursor, dialect: Dialect, messages: Sequence[Message]
) -> list[tuple[int, int]]:
    if not messages:
        return []
    counts = Counter(m.room for m in messages)
    last = advance_rooms_txn(txn, dialect, sorted(counts.items()))
    # Per room, the seq given last while the rows are built, in batch order.
    given = {room: last[room] - n for room, n in counts.items()}
    rows = []
    for m in messages:
        seq = given[m.room] = given[m.room] + 1
        rows.append((m.room, m.user_id, m.nickname, m.content, m.timestamp_ms, m.type, seq))
    ids = dialect.insert_returning_ids(
        txn,
        "messages",
        ("room", "user_id", "nickname", "content", "created_ms", "type", "seq"),
        rows,
    )
    mentioning = [(m, row[6]) for m, row in zip(messages, rows, strict=True) if m.mentions]
    if mentioning:
        store_mentions_txn(txn, dialect, mentioning)
    return [(message_id, row[6]) for message_id, row in zip(ids, rows, strict=True)]


def store_mentions_txn(
    txn: Cursor, dialect: Dialect, mentioning: Sequence[tuple[Message, int]]
) -> None:
    """Resolve the mentions of the batch's messages that have any (names
    that are accounts get their ids; candidates that are none are dropped),
    store one row per message and name, and leave the resolved names in
    each message's ``mentions`` (the store's part of parsing: see
    parkchat.mentions). The messages are the writer's, not yet published."""
    keys = sorted({k for m, _ in mentioning for k in names_to_look_up(m.mentions)})
    accounts: dict[str, tuple[int, str]] = {}
    for chunk in _chunks(keys):
        txn.execute(
            dialect.sql(
                "SELECT id, nickname, nickname_key FROM users WHERE nickname_key IN ("
                + ", ".join(["?"] * len(chunk))
                + ")"
            ),
            tuple(chunk),
        )
        accounts.update((str(r[2]), (int(r[0]), str(r[1]))) for r in txn.fetchall())
    rows: list[tuple[str, int, int | None, str]] = []
    for message, seq in mentioning:
        resolved = resolve(message.mentions, accounts)
        message.mentions = tuple(name for _, name in resolved)
        rows.extend((message.room, seq, user_id, name) for user_id, name in resolved)
    if rows:
        txn.executemany(
            dialect.sql("INSERT INTO mentions (room, seq, user_id, name) VALUES (?, ?, ?, ?)"),
            rows,
        )


def attach_mentions_txn(txn: Cursor, dialect: Dialect, messages: list[Message]) -> list[Message]:
    """Give messages read from one room their stored mentions (one query
    for the page); returns ``messages``."""
    if not messages:
        return messages
    low = min(m.seq for m in messages)
    high = max(m.seq for m in messages)
    txn.execute(
        dialect.sql("SELECT seq, name FROM mentions WHERE room = ? AND seq BETWEEN ? AND ?"),
        (messages[0].room, low, high),
    )
    found: dict[int, list[str]] = {}
    for seq, name in txn.fetchall():
        found.setdefault(int(seq), []).append(str(name))
    if found:
        for message in messages:
            names = found.get(message.seq)
            if names:
                message.mentions = tuple(sorted(names))
    return messages


def delete_message_txn(txn: Cursor, dialect: Dialect, message_id: int) -> tuple[str, int] | None:
    txn.execute(dialect.sql("SELECT room, seq FROM messages WHERE id = ?"), (message_id,))
    row = txn.fetchone()
    if row is None:
        return None
    txn.execute(dialect.sql("DELETE FROM messages WHERE id = ?"), (message_id,))
    txn.execute(dialect.sql("DELETE FROM mentions WHERE room = ? AND seq = ?"), (row[0], row[1]))
    return str(row[0]), int(row[1])


def recent_messages_txn(
    txn: Cursor,
    dialect: Dialect,
    room: str,
    limit: int,
    before: int | None,
    after: int | None,
) -> list[Message]:
    """The newest ``limit`` messages of ``room``, or those just after or just
    before the message id ``after``/``before``, oldest first.

    Read by position (the ``(room, seq)`` index), since within a room seq
    order is id order: an id bound becomes a seq bound first
    (``_seq_bound_txn``)."""
    if after is not None:
        bound = _seq_bound_txn(txn, dialect, room, after, including=True)
        txn.execute(
            dialect.sql(
                f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE room = ? AND seq > ? "
                "ORDER BY seq ASC LIMIT ?"
            ),
            (room, bound, limit),
        )
        return attach_mentions_txn(txn, dialect, [message_from_row(r) for r in txn.fetchall()])
    if before is not None:
        bound = _seq_bound_txn(txn, dialect, room, before, including=False)
        txn.execute(
            dialect.sql(
                f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE room = ? AND seq <= ? "
                "ORDER BY seq DESC LIMIT ?"
            ),
            (room, bound, limit),
        )
    else:
        txn.execute(
            dialect.sql(
                f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE room = ? ORDER BY seq DESC LIMIT ?"
            ),
            (room, limit),
        )
    rows = txn.fetchall()
    rows.reverse()
    return attach_mentions_txn(txn, dialect, [message_from_row(r) for r in rows])


def _seq_bound_txn(
    txn: Cursor, dialect: Dialect, room: str, message_id: int, *, including: bool
) -> int:
    """The seq of the last message of ``room`` whose id is at most
    ``message_id`` (below it unless ``including``), 0 if none: those
    messages are exactly the room's seqs up to this bound.

    Usually ``message_id`` is a message of the room (a client pages from a
    message it was shown): one primary-key lookup. Otherwise (deleted, another
    room's, made up) the room is walked from its newest message down to the
    first one below the id, which costs the room's messages newer than it."""
    txn.execute(dialect.sql("SELECT room, seq FROM messages WHERE id = ?"), (message_id,))
    row = txn.fetchone()
    if row is not None and row[0] == room:
        return int(row[1]) if including else int(row[1]) - 1
    txn.execute(
        dialect.sql("SELECT seq FROM messages WHERE room = ? AND id < ? ORDER BY seq DESC LIMIT 1"),
        (room, message_id),
    )
    row = txn.fetchone()
    return int(row[0]) if row is not None else 0


def room_messages_after_txn(
    txn: Cursor, dialect: Dialect, room: str, after_seq: int, limit: int
) -> list[Message]:
    if limit <= 0:
        return []
    txn.execute(
        dialect.sql(
            f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE room = ? AND seq > ? "
            "ORDER BY seq ASC LIMIT ?"
        ),
        (room, after_seq, limit),
    )
    return attach_mentions_txn(txn, dialect, [message_from_row(r) for r in txn.fetchall()])


def room_messages_before_txn(
    txn: Cursor, dialect: Dialect, room: str, before_seq: int | None, limit: int
) -> list[Message]:
    if limit <= 0:
        return []
    if before_seq is None:
        txn.execute(
            dialect.sql(
                f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE room = ? ORDER BY seq DESC LIMIT ?"
            ),
            (room, limit),
        )
    else:
        txn.execute(
            dialect.sql(
                f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE room = ? AND seq < ? "
                "ORDER BY seq DESC LIMIT ?"
            ),
            (room, before_seq, limit),
        )
    rows = txn.fetchall()
    rows.reverse()
    return attach_mentions_txn(txn, dialect, [message_from_row(r) for r in rows])


def current_seq_txn(txn: Cursor, dialect: Dialect, room: str) -> int:
    txn.execute(dialect.sql("SELECT last_seq FROM room_sequences WHERE room = ?"), (room,))
    row = txn.fetchone()
    return 0 if row is None else int(row[0])


def room_positions_txn(txn: Cursor, dialect: Dialect, rooms: Sequence[str]) -> dict[str, int]:
    positions: dict[str, int] = {}
    for chunk in _chunks(list(dict.fromkeys(rooms))):
        txn.execute(
            dialect.sql(
                "SELECT room, last_seq FROM room_sequences WHERE room IN ("
                + ", ".join(["?"] * len(chunk))
                + ")"
            ),
            tuple(chunk),
        )
        positions.update((room, int(seq)) for room, seq in txn.fetchall())
    return positions


@implementer(IRoomMessageStore)
class RoomMessageStore(SQLStoreBase):
    """Chat messages of rooms, written in batches by the group-commit writer."""

    def insert_messages(self, messages: Sequence[Message]) -> Deferred[list[tuple[int, int]]]:
        return self._write(insert_messages_txn, list(messages))

    def recent_messages(
        self, room: str, limit: int, before: int | None = None, after: int | None = None
    ) -> Deferred[list[Message]]:
        return self._read(recent_messages_txn, room, limit, before, after)

    def room_messages_after(self, room: str, after_seq: int, limit: int) -> Deferred[list[Message]]:
        return self._read(room_messages_after_txn, room, after_seq, limit)

    def room_messages_before(
        self, room: str, before_seq: int | None, limit: int
    ) -> Deferred[list[Message]]:
        return self._read(room_messages_before_txn, room, before_seq, limit)

    def current_seq(self, room: str) -> Deferred[int]:
        return self._read(current_seq_txn, room)

    def room_positions(self, rooms: Sequence[str]) -> Deferred[dict[str, int]]:
        return self._read(room_positions_txn, list(rooms))

    def delete_message(self, message_id: int) -> Deferred[tuple[str, int] | None]:
        return self._write(delete_message_txn, message_id)
