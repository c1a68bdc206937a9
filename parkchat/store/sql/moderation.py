"""Bans in SQL: the ``bans`` table behind ``IModerationStore``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from twisted.internet.defer import Deferred
from zope.interface import implementer

from parkchat.interfaces import IModerationStore
from parkchat.model import Ban
from parkchat.store.sql.engine import Cursor, Dialect, SQLStoreBase

_BAN_QUERY = (
    "SELECT b.user_id, u.nickname, b.reason, b.created_ms, b.expires_ms "
    "FROM bans b JOIN users u ON u.id = b.user_id"
)


def _ban_from_row(r: Sequence[Any]) -> Ban:
    return Ban(int(r[0]), r[1], r[2], int(r[3]), None if r[4] is None else int(r[4]))


def set_ban_txn(
    txn: Cursor,
    dialect: Dialect,
    user_id: int,
    reason: str,
    created_ms: int,
    expires_ms: int | None,
) -> None:
    txn.execute(dialect.sql("DELETE FROM bans WHERE user_id = ?"), (user_id,))
    txn.execute(
        dialect.sql(
            "INSERT INTO bans (user_id, reason, created_ms, expires_ms) VALUES (?, ?, ?, ?)"
        ),
        (user_id, reason, created_ms, expires_ms),
    )


def remove_ban_txn(txn: Cursor, dialect: Dialect, user_id: int) -> bool:
    txn.execute(dialect.sql("DELETE FROM bans WHERE user_id = ?"), (user_id,))
    return bool(txn.rowcount)


def get_ban_txn(txn: Cursor, dialect: Dialect, user_id: int) -> Ban | None:
    txn.execute(dialect.sql(_BAN_QUERY + " WHERE b.user_id = ?"), (user_id,))
    row = txn.fetchone()
    return None if row is None else _ban_from_row(row)


def list_bans_txn(txn: Cursor, dialect: Dialect) -> list[Ban]:
    txn.execute(dialect.sql(_BAN_QUERY + " ORDER BY b.user_id"))
    return [_ban_from_row(r) for r in txn.fetchall()]


@implementer(IModerationStore)
class ModerationStore(SQLStoreBase):
    """Account bans, one per account (a new ban replaces the old)."""

    def set_ban(
        self, user_id: int, reason: str, created_ms: int, expires_ms: int | None
    ) -> Deferred[None]:
        return self._write(set_ban_txn, user_id, reason, created_ms, expires_ms)

    def remove_ban(self, user_id: int) -> Deferred[bool]:
        return self._write(remove_ban_txn, user_id)

    def get_ban(self, user_id: int) -> Deferred[Ban | None]:
        return self._read(get_ban_txn, user_id)

    def list_bans(self) -> Deferred[list[Ban]]:
        return self._read(list_bans_txn)
