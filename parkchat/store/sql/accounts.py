"""Accounts in SQL: the ``users`` table behind ``IAccountStore``."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from zope.interface import implementer

from parkchat.errors import AccountExists
from parkchat.interfaces import IAccountStore
from parkchat.model import StoredUser, User, name_skeleton, nickname_key
from parkchat.store.sql.engine import Cursor, Dialect, SQLStoreBase

_log = Logger()


def create_user_txn(
    txn: Cursor, dialect: Dialect, nickname: str, password_hash: bytes, created_ms: int
) -> StoredUser:
    try:
        [user_id] = dialect.insert_returning_ids(
            txn,
            "users",
            (
                "nickname",
                "nickname_key",
                "name_skeleton",
                "password_hash",
                "created_ms",
                "password_changed_ms",
            ),
            [
                (
                    nickname,
                    nickname_key(nickname),
                    name_skeleton(nickname),
                    password_hash.decode("ascii"),
                    created_ms,
                    created_ms,
                )
            ],
        )
    except dialect.integrity_error as e:
        raise AccountExists() from e
    return StoredUser(user_id, nickname, password_hash)


def get_user_txn(txn: Cursor, dialect: Dialect, nickname: str) -> StoredUser | None:
    txn.execute(
        dialect.sql("SELECT id, nickname, password_hash FROM users WHERE nickname_key = ?"),
        (nickname_key(nickname),),
    )
    row = txn.fetchone()
    if row is None:
        return None
    return StoredUser(int(row[0]), row[1], row[2].encode("ascii"))


def get_user_like_txn(txn: Cursor, dialect: Dialect, nickname: str) -> StoredUser | None:
    txn.execute(
        dialect.sql(
            "SELECT id, nickname, password_hash FROM users WHERE name_skeleton = ? "
            "OR nickname_key = ? ORDER BY id LIMIT 1"
        ),
        (name_skeleton(nickname), nickname_key(nickname)),
    )
    row = txn.fetchone()
    if row is None:
        return None
    return StoredUser(int(row[0]), row[1], row[2].encode("ascii"))


def backfill_name_skeletons(conn: Any, dialect: Dialect) -> tuple[int, list[str]]:
    """Give every account without one its name skeleton (schema version 5
    adds the column empty: the skeleton comes from Unicode's data, in
    Python). Oldest account first; an account whose skeleton an older one
    has keeps none and is kept (logged), so that no account is lost.
    Blocking, on a DB-API connection at start-up, in one transaction (the
    caller serialises instances). Returns (skeletons written, names kept
    without one)."""
    cursor = conn.cursor()
    try:
        cursor.execute("SELECT id, nickname FROM users WHERE name_skeleton IS NULL ORDER BY id")
        missing = cursor.fetchall()
        if not missing:
            conn.rollback()
            return 0, []
        cursor.execute("SELECT name_skeleton FROM users WHERE name_skeleton IS NOT NULL")
        taken = {row[0] for row in cursor.fetchall()}
        written, alike = 0, []
        update = dialect.sql("UPDATE users SET name_skeleton = ? WHERE id = ?")
        for user_id, nickname in missing:
            skeleton = name_skeleton(nickname)
            if skeleton in taken:
                alike.append(nickname)
                continue
            cursor.execute(update, (skeleton, user_id))
            taken.add(skeleton)
            written += 1
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    finally:
        cursor.close()
    if alike:
        _log.warn(
            "{count} accounts have names that look like older accounts' names and were "
            "kept as they are: {names}",
            count=len(alike),
            names=", ".join(alike[:20]),
        )
    return written, alike


def get_user_by_id_txn(txn: Cursor, dialect: Dialect, user_id: int) -> StoredUser | None:
    txn.execute(
        dialect.sql("SELECT id, nickname, password_hash FROM users WHERE id = ?"), (user_id,)
    )
    row = txn.fetchone()
    if row is None:
        return None
    return StoredUser(int(row[0]), row[1], row[2].encode("ascii"))


def list_users_txn(txn: Cursor, dialect: Dialect, limit: int, after_id: int) -> list[User]:
    txn.execute(
        dialect.sql("SELECT id, nickname FROM users WHERE id > ? ORDER BY id LIMIT ?"),
        (after_id, limit),
    )
    return [User(int(r[0]), r[1]) for r in txn.fetchall()]


def set_password_hash_txn(
    txn: Cursor, dialect: Dialect, user_id: int, password_hash: bytes
) -> None:
    txn.execute(
        dialect.sql("UPDATE users SET password_hash = ? WHERE id = ?"),
        (password_hash.decode("ascii"), user_id),
    )


@implementer(IAccountStore)
class AccountStore(SQLStoreBase):
    """Registered accounts; nicknames unique by ``nickname_key`` and by
    ``name_skeleton`` (no two look alike)."""

    def create_user(
        self, nickname: str, password_hash: bytes, created_ms: int
    ) -> Deferred[StoredUser]:
        return self._write(create_user_txn, nickname, password_hash, created_ms)

    def get_user(self, nickname: str) -> Deferred[StoredUser | None]:
        return self._read(get_user_txn, nickname)

    def get_user_like(self, nickname: str) -> Deferred[StoredUser | None]:
        return self._read(get_user_like_txn, nickname)

    def get_user_by_id(self, user_id: int) -> Deferred[StoredUser | None]:
        return self._read(get_user_by_id_txn, user_id)

    def list_users(self, limit: int, after_id: int = 0) -> Deferred[list[User]]:
        return self._read(list_users_txn, limit, after_id)

    def set_password_hash(self, user_id: int, password_hash: bytes) -> Deferred[None]:
        return self._write(set_password_hash_txn, user_id, password_hash)
