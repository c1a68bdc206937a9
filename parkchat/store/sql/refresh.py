"""Refresh tokens in SQL: the ``refresh_tokens`` table behind
``IRefreshTokenStore``.

Spending a token is one conditional UPDATE (``spent_ms IS NULL``): of two
requests presenting the same token at once, on one instance or two, exactly
one changes the row; the other finds it spent, which is what a copied token
looks like, and the family is revoked.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred
from zope.interface import implementer

from parkchat.interfaces import IRefreshTokenStore
from parkchat.store.sql.engine import Cursor, Dialect, SQLStoreBase

#: Outcomes of ``spend_refresh_token``.
SPENT = "ok"
REUSED = "reused"
INVALID = "invalid"


def add_refresh_token_txn(
    txn: Cursor,
    dialect: Dialect,
    token_hash: str,
    user_id: int,
    family: str,
    created_ms: int,
    expires_ms: int,
) -> None:
    txn.execute(
        dialect.sql(
            "INSERT INTO refresh_tokens (token_hash, user_id, family, created_ms, expires_ms) "
            "VALUES (?, ?, ?, ?, ?)"
        ),
        (token_hash, user_id, family, created_ms, expires_ms),
    )


def spend_refresh_token_txn(
    txn: Cursor, dialect: Dialect, token_hash: str, now_ms: int
) -> tuple[str, int, str]:
    txn.execute(
        dialect.sql(
            "UPDATE refresh_tokens SET spent_ms = ? WHERE token_hash = ? AND spent_ms IS NULL "
            "AND revoked = 0 AND expires_ms > ?"
        ),
        (now_ms, token_hash, now_ms),
    )
    spent = txn.rowcount > 0
    txn.execute(
        dialect.sql(
            "SELECT user_id, family, spent_ms, revoked, expires_ms FROM refresh_tokens "
            "WHERE token_hash = ?"
        ),
        (token_hash,),
    )
    row = txn.fetchone()
    if row is None:
        return INVALID, 0, ""
    user_id, family = int(row[0]), str(row[1])
    if spent:
        return SPENT, user_id, family
    if row[2] is not None and not row[3] and int(row[4]) > now_ms:
        # Spent before and presented again: a copy is in someone's hands.
        txn.execute(
            dialect.sql("UPDATE refresh_tokens SET revoked = 1 WHERE family = ?"), (family,)
        )
        return REUSED, user_id, family
    return INVALID, 0, ""


def revoke_refresh_token_txn(txn: Cursor, dialect: Dialect, token_hash: str) -> int | None:
    txn.execute(
        dialect.sql("SELECT user_id, family FROM refresh_tokens WHERE token_hash = ?"),
        (token_hash,),
    )
    row = txn.fetchone()
    if row is None:
        return None
    txn.execute(dialect.sql("UPDATE refresh_tokens SET revoked = 1 WHERE family = ?"), (row[1],))
    return int(row[0])


def revoke_refresh_tokens_txn(txn: Cursor, dialect: Dialect, user_id: int) -> int:
    txn.execute(
        dialect.sql(
            "UPDATE refresh_tokens SET revoked = 1 "
            "WHERE user_id = ? AND revoked = 0 AND spent_ms IS NULL"
        ),
        (user_id,),
    )
    live = int(txn.rowcount)
    txn.execute(
        dialect.sql("UPDATE refresh_tokens SET revoked = 1 WHERE user_id = ? AND revoked = 0"),
        (user_id,),
    )
    return live


def prune_refresh_tokens_txn(txn: Cursor, dialect: Dialect, now_ms: int) -> int:
    txn.execute(dialect.sql("DELETE FROM refresh_tokens WHERE expires_ms <= ?"), (now_ms,))
    return int(txn.rowcount)


@implementer(IRefreshTokenStore)
class RefreshTokenStore(SQLStoreBase):
    """Refresh tokens by hash, in families rotated from one login."""

    def add_refresh_token(
        self, token_hash: str, user_id: int, family: str, created_ms: int, expires_ms: int
    ) -> Deferred[None]:
        return self._write(
            add_refresh_token_txn, token_hash, user_id, family, created_ms, expires_ms
        )

    def spend_refresh_token(self, token_hash: str, now_ms: int) -> Deferred[tuple[str, int, str]]:
        return self._write(spend_refresh_token_txn, token_hash, now_ms)

    def revoke_refresh_token(self, token_hash: str) -> Deferred[int | None]:
        return self._write(revoke_refresh_token_txn, token_hash)

    def revoke_refresh_tokens(self, user_id: int) -> Deferred[int]:
        return self._write(revoke_refresh_tokens_txn, user_id)

    def prune_refresh_tokens(self, now_ms: int) -> Deferred[int]:
        return self._write(prune_refresh_tokens_txn, now_ms)
