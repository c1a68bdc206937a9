"""Direct messages in SQL: the ``direct_messages`` and
``conversation_sequences`` tables behind ``IDirectMessageStore``.

A direct message's ``seq`` is its position in the conversation of its two
accounts (the pair, lower id first). Storing one bumps the conversation's
counter and inserts the row in one transaction; on PostgreSQL the counter's
row lock, held until commit, orders the conversation's messages as
``room_sequences`` orders a room's (``messages.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from twisted.internet.defer import Deferred
from zope.interface import implementer

from parkchat.interfaces import IDirectMessageStore
from parkchat.model import DirectMessage
from parkchat.store.sql.engine import Cursor, Dialect, SQLStoreBase


def insert_direct_txn(
    txn: Cursor,
    dialect: Dialect,
    from_user_id: int,
    to_user_id: int,
    content: str,
    created_ms: int,
    delivered: bool,
) -> tuple[int, int]:
    low, high = sorted((from_user_id, to_user_id))
    txn.execute(
        dialect.sql(
            "INSERT INTO conversation_sequences (low_user_id, high_user_id, last_seq) "
            "VALUES (?, ?, 1) ON CONFLICT (low_user_id, high_user_id) DO UPDATE "
            "SET last_seq = conversation_sequences.last_seq + 1 RETURNING last_seq"
        ),
        (low, high),
    )
    seq = int(txn.fetchone()[0])
    [message_id] = dialect.insert_returning_ids(
        txn,
        "direct_messages",
        ("from_user_id", "to_user_id", "content", "created_ms", "delivered", "seq"),
        [(from_user_id, to_user_id, content, created_ms, int(delivered), seq)],
    )
    return message_id, seq


def _direct_query(source: str) -> str:
    """The SELECT of ``DirectMessage`` rows (both nicknames joined) from
    ``source``: the ``direct_messages`` table or a subquery of its columns,
    either way named ``d``; the caller adds WHERE / ORDER BY / LIMIT."""
    return (
        "SELECT d.id, d.from_user_id, f.nickname, d.to_user_id, t.nickname, d.content, "
        f"d.created_ms, d.seq FROM {source} d "
        "JOIN users f ON f.id = d.from_user_id JOIN users t ON t.id = d.to_user_id"
    )


def _direct_from_row(r: Sequence[Any]) -> DirectMessage:
    return DirectMessage(
        int(r[0]), int(r[1]), r[2], int(r[3]), r[4], r[5], int(r[6]), seq=int(r[7])
    )


def pending_direct_txn(
    txn: Cursor, dialect: Dialect, to_user_id: int, limit: int
) -> list[DirectMessage]:
    txn.execute(
        dialect.sql(
            _direct_query("direct_messages")
            + " WHERE d.to_user_id = ? AND d.delivered = 0 ORDER BY d.id LIMIT ?"
        ),
        (to_user_id, limit),
    )
    return [_direct_from_row(r) for r in txn.fetchall()]


def conversation_page_txn(
    txn: Cursor,
    dialect: Dialect,
    user_id: int,
    other_id: int,
    limit: int,
    column: str,
    bound: int | None,
    newer: bool,
) -> list[DirectMessage]:
    """Up to ``limit`` messages of the conversation of two accounts, oldest
    first, paged by ``column`` (``id`` or ``seq``): with ``newer``, the
    first ``limit`` above ``bound``; else the last ``limit`` below ``bound``
    (the newest without one).

    One search of the (from_user_id, to_user_id, ``column``) index per
    direction, each reading at most ``limit`` rows from ``bound``; the outer
    ORDER BY / LIMIT keeps the ``limit`` nearest of the two. (An OR of both
    directions would read and sort every message of the pair.) SQLite
    allows no ORDER BY / LIMIT on a member of a UNION ALL: each is a
    subquery. Notes-to-self (user_id == other_id) have one direction only.
    """
    if limit <= 0:
        return []
    directions = [(user_id, other_id)]
    if other_id != user_id:
        directions.append((other_id, user_id))
    op, order = (">", "ASC") if newer else ("<", "DESC")
    beyond = "" if bound is None else f" AND {column} {op} ?"
    branches: list[str] = []
    params: list[Any] = []
    for n, (from_id, to_id) in enumerate(directions):
        branches.append(
            "SELECT * FROM (SELECT id, from_user_id, to_user_id, content, created_ms, seq "
            f"FROM direct_messages WHERE from_user_id = ? AND to_user_id = ?{beyond} "
            f"ORDER BY {column} {order} LIMIT ?) AS direction{n}"
        )
        params += [from_id, to_id] + ([] if bound is None else [bound]) + [limit]
    source = "(" + " UNION ALL ".join(branches) + ")"
    txn.execute(
        dialect.sql(_direct_query(source) + f" ORDER BY d.{column} {order} LIMIT ?"),
        (*params, limit),
    )
    rows = txn.fetchall()
    if not newer:
        rows.reverse()
    return [_direct_from_row(r) for r in rows]


def direct_history_txn(
    txn: Cursor, dialect: Dialect, user_id: int, other_id: int, limit: int, before: int | None
) -> list[DirectMessage]:
    return conversation_page_txn(txn, dialect, user_id, other_id, limit, "id", before, False)


def direct_messages_after_txn(
    txn: Cursor, dialect: Dialect, user_id: int, other_id: int, after_seq: int, limit: int
) -> list[DirectMessage]:
    return conversation_page_txn(txn, dialect, user_id, other_id, limit, "seq", after_seq, True)


def direct_messages_before_txn(
    txn: Cursor,
    dialect: Dialect,
    user_id: int,
    other_id: int,
    before_seq: int | None,
    limit: int,
) -> list[DirectMessage]:
    return conversation_page_txn(txn, dialect, user_id, other_id, limit, "seq", before_seq, False)


def conversation_seq_txn(txn: Cursor, dialect: Dialect, user_id: int, other_id: int) -> int:
    low, high = sorted((user_id, other_id))
    txn.execute(
        dialect.sql(
            "SELECT last_seq FROM conversation_sequences WHERE low_user_id = ? AND high_user_id = ?"
        ),
        (low, high),
    )
    row = txn.fetchone()
    return 0 if row is None else int(row[0])


def mark_delivered_txn(txn: Cursor, dialect: Dialect, ids: Sequence[int]) -> None:
    txn.executemany(
        dialect.sql("UPDATE direct_messages SET delivered = 1 WHERE id = ?"),
        [(i,) for i in ids],
    )


@implementer(IDirectMessageStore)
class DirectMessageStore(SQLStoreBase):
    """One-to-one messages, kept until read and afterwards as history."""

    def insert_direct(
        self, from_user_id: int, to_user_id: int, content: str, created_ms: int, delivered: bool
    ) -> Deferred[tuple[int, int]]:
        return self._write(
            insert_direct_txn, from_user_id, to_user_id, content, created_ms, delivered
        )

    def pending_direct(self, to_user_id: int, limit: int) -> Deferred[list[DirectMessage]]:
        return self._read(pending_direct_txn, to_user_id, limit)

    def direct_history(
        self, user_id: int, other_id: int, limit: int, before: int | None = None
    ) -> Deferred[list[DirectMessage]]:
        return self._read(direct_history_txn, user_id, other_id, limit, before)

    def direct_messages_after(
        self, user_id: int, other_id: int, after_seq: int, limit: int
    ) -> Deferred[list[DirectMessage]]:
        return self._read(direct_messages_after_txn, user_id, other_id, after_seq, limit)

    def direct_messages_before(
        self, user_id: int, other_id: int, before_seq: int | None, limit: int
    ) -> Deferred[list[DirectMessage]]:
        return self._read(direct_messages_before_txn, user_id, other_id, before_seq, limit)

    def conversation_seq(self, user_id: int, other_id: int) -> Deferred[int]:
        return self._read(conversation_seq_txn, user_id, other_id)

    def mark_delivered(self, ids: Sequence[int]) -> Deferred[None]:
        return self._write(mark_delivered_txn, list(ids))
