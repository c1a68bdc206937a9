"""Token revocation in SQL: the ``revoked_tokens`` and ``token_cutoffs``
tables behind ``ITokenStore``."""

from __future__ import annotations

from twisted.internet.defer import Deferred
from zope.interface import implementer

from parkchat.interfaces import ITokenStore
from parkchat.store.sql.engine import Cursor, Dialect, SQLStoreBase


def revoke_token_txn(txn: Cursor, dialect: Dialect, jti: str, expires_s: int) -> None:
    txn.execute(
        dialect.sql(
            "INSERT INTO revoked_tokens (jti, expires_s) VALUES (?, ?) ON CONFLICT (jti) DO NOTHING"
        ),
        (jti, expires_s),
    )


def list_revoked_tokens_txn(txn: Cursor, dialect: Dialect, now_s: int) -> list[tuple[str, int]]:
    txn.execute(
        dialect.sql("SELECT jti, expires_s FROM revoked_tokens WHERE expires_s > ?"), (now_s,)
    )
    return [(str(r[0]), int(r[1])) for r in txn.fetchall()]


def prune_revoked_tokens_txn(txn: Cursor, dialect: Dialect, now_s: int) -> int:
    txn.execute(dialect.sql("DELETE FROM revoked_tokens WHERE expires_s <= ?"), (now_s,))
    return int(txn.rowcount)


def set_token_cutoff_txn(txn: Cursor, dialect: Dialect, user_id: int, before_ms: int) -> None:
    # The WHERE of DO UPDATE keeps the larger cutoff: the same statement on
    # SQLite and PostgreSQL, where max(a, b) / GREATEST(a, b) differ.
    txn.execute(
        dialect.sql(
            "INSERT INTO token_cutoffs (user_id, before_ms) VALUES (?, ?) "
            "ON CONFLICT (user_id) DO UPDATE SET before_ms = excluded.before_ms "
            "WHERE excluded.before_ms > token_cutoffs.before_ms"
        ),
        (user_id, before_ms),
    )


def list_token_cutoffs_txn(txn: Cursor, dialect: Dialect) -> list[tuple[int, int]]:
    txn.execute(dialect.sql("SELECT user_id, before_ms FROM token_cutoffs ORDER BY user_id"))
    return [(int(r[0]), int(r[1])) for r in txn.fetchall()]


@implementer(ITokenStore)
class TokenStore(SQLStoreBase):
    """Revoked tokens (until they expire) and per-account cutoffs."""

    def revoke_token(self, jti: str, expires_s: int) -> Deferred[None]:
        return self._write(revoke_token_txn, jti, expires_s)

    def list_revoked_tokens(self, now_s: int) -> Deferred[list[tuple[str, int]]]:
        return self._read(list_revoked_tokens_txn, now_s)

    def prune_revoked_tokens(self, now_s: int) -> Deferred[int]:
        return self._write(prune_revoked_tokens_txn, now_s)

    def set_token_cutoff(self, user_id: int, before_ms: int) -> Deferred[None]:
        return self._write(set_token_cutoff_txn, user_id, before_ms)

    def list_token_cutoffs(self) -> Deferred[list[tuple[int, int]]]:
        return self._read(list_token_cutoffs_txn)
