"""Direct messages in SQL: the ``direct_messages`` table behind
``IDirectMessageStore``."""

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
) -> int:
    [message_id] = dialect.insert_returning_ids(
        txn,
        "direct_messages",
        ("from_user_id", "to_user_id", "content", "created_ms", "delivered"),
        [(from_user_id, to_user_id, content, created_ms, int(delivered))],
    )
    return message_id


def _direct_query(source: str) -> str:
    """The SELECT of ``DirectMessage`` rows (both nicknames joined) from
    ``source``: the ``direct_messages`` table or a subquery of its columns,
    either way named ``d``; the caller adds WHERE / ORDER BY / LIMIT."""
    return (
        "SELECT d.id, d.from_user_id, f.nickname, d.to_user_id, t.nickname, d.content, "
        f"d.created_ms FROM {source} d "
        "JOIN users f ON f.id = d.from_user_id JOIN users t ON t.id = d.to_user_id"
    )


def _direct_from_row(r: Sequence[Any]) -> DirectMessage:
    return DirectMessage(int(r[0]), int(r[1]), r[2], int(r[3]), r[4], r[5], int(r[6]))


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


def direct_history_txn(
    txn: Cursor, dialect: Dialect, user_id: int, other_id: int, limit: int, before: int | None
) -> list[DirectMessage]:
    # One search of the (from_user_id, to_user_id, id) index per direction,
    # each reading at most ``limit`` rows backwards from ``before``; the outer
    # ORDER BY / LIMIT keeps the newest ``limit`` of the two. (An OR of both
    # directions would read and sort every message of the pair.) SQLite allows
    # no ORDER BY / LIMIT on a member of a UNION ALL: each is a subquery.
    # Notes-to-self (user_id == other_id) have one direction only.
    directions = [(user_id, other_id)]
    if other_id != user_id:
        directions.append((other_id, user_id))
    below = "" if before is None else " AND id < ?"
    branches: list[str] = []
    params: list[Any] = []
    for n, (from_id, to_id) in enumerate(directions):
        branches.append(
            "SELECT * FROM (SELECT id, from_user_id, to_user_id, content, created_ms "
            f"FROM direct_messages WHERE from_user_id = ? AND to_user_id = ?{below} "
            f"ORDER BY id DESC LIMIT ?) AS direction{n}"
        )
        params += [from_id, to_id] + ([] if before is None else [before]) + [limit]
    source = "(" + " UNION ALL ".join(branches) + ")"
    txn.execute(
        dialect.sql(_direct_query(source) + " ORDER BY d.id DESC LIMIT ?"), (*params, limit)
    )
    rows = txn.fetchall()
    rows.reverse()
    return [_direct_from_row(r) for r in rows]


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
    ) -> Deferred[int]:
        return self._write(
            insert_direct_txn, from_user_id, to_user_id, content, created_ms, delivered
        )

    def pending_direct(self, to_user_id: int, limit: int) -> Deferred[list[DirectMessage]]:
        return self._read(pending_direct_txn, to_user_id, limit)

    def direct_history(
        self, user_id: int, other_id: int, limit: int, before: int | None = None
    ) -> Deferred[list[DirectMessage]]:
        return self._read(direct_history_txn, user_id, other_id, limit, before)

    def mark_delivered(self, ids: Sequence[int]) -> Deferred[None]:
        return self._write(mark_delivered_txn, list(ids))
