"""The SQL store over ``twisted.enterprise.adbapi``; SQLite by default.

All SQL parkchat runs is here. Every public method runs one named ``*_txn``
function through ``ConnectionPool.runInteraction`` on the pool's thread. The
SQL is written with ``?`` placeholders; ``Dialect`` holds the few things that
differ between engines (placeholders, errors, how inserted ids come back), so
the PostgreSQL store (``postgres.py``) is this same ``SQLStore`` and these same
``*_txn`` functions with another dialect and pool.

SQLite gets one connection (``cp_min = cp_max = 1``): it has a single writer,
and more connections only trade throughput for "database is locked" errors.
WAL journaling lets that writer commit without blocking readers, and
``synchronous=NORMAL`` keeps every committed transaction across a crash of the
process (SIGKILL); only a power cut may lose the last commits.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twisted.enterprise import adbapi
from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from parkchat.errors import AccountExists
from parkchat.interfaces import IMessageStore
from parkchat.model import Ban, DirectMessage, Message, StoredUser, User, nickname_key
from parkchat.store.schema import SCHEMA_DIR, upgrade_sqlite

BUSY_TIMEOUT_MS = 5000

_log = Logger()


@dataclass(frozen=True)
class Dialect:
    """What differs between SQL engines, kept in one place.

    The methods implement SQLite's way; an engine that differs overrides
    them in a subclass (see ``postgres.PostgresDialect``).
    """

    name: str
    integrity_error: type[Exception]
    placeholder: str = "?"
    #: Errors meaning the connection was lost (server restart, a terminated
    #: backend): a read that fails with one is retried on a new connection.
    #: SQLite is a file, never "disconnected": none.
    connection_errors: tuple[type[Exception], ...] = ()

    def sql(self, query: str) -> str:
        return query if self.placeholder == "?" else query.replace("?", self.placeholder)

    def order_message_ids(self, txn: Any) -> None:
        """Make message ids become visible in id order, whoever commits them
        (a client that saw id N and asks ``after=N`` must not miss a lower id
        committed later). SQLite allocates ids inside its one write
        transaction at a time: nothing to do."""

    def insert_returning_ids(
        self, txn: Any, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]
    ) -> list[int]:
        """Insert ``rows`` into ``table`` and return their new ``id`` values,
        in the order of ``rows``."""
        query = self.sql(
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})"
        )
        if not rows:
            return []
        txn.execute(query, tuple(rows[0]))
        first = int(txn.lastrowid)
        if len(rows) == 1:
            return [first]
        # The first INSERT took SQLite's write lock for this transaction, so
        # no other connection can insert before it commits, and ``first`` is
        # the table's highest id: the next ids are free. Giving them
        # explicitly lets executemany insert the rest in one C loop instead
        # of one Python round trip per row (AUTOINCREMENT's sequence follows).
        explicit = self.sql(
            f"INSERT INTO {table} (id, {', '.join(columns)}) "
            f"VALUES (?, {', '.join('?' for _ in columns)})"
        )
        txn.executemany(explicit, [(first + i, *row) for i, row in enumerate(rows[1:], start=1)])
        return list(range(first, first + len(rows)))


SQLITE = Dialect("sqlite", sqlite3.IntegrityError)

_MESSAGE_COLUMNS = "id, room, user_id, nickname, content, created_ms, type"


def _message_from_row(row: Sequence[Any]) -> Message:
    id_, room, user_id, nickname, content, created_ms, type_ = row
    return Message(
        id=id_,
        room=room,
        user_id=user_id,
        nickname=nickname,
        content=content,
        timestamp_ms=created_ms,
        type=type_,
    )


def insert_messages_txn(txn: Any, dialect: Dialect, messages: Sequence[Message]) -> list[int]:
    if not messages:
        return []
    dialect.order_message_ids(txn)
    return dialect.insert_returning_ids(
        txn,
        "messages",
        ("room", "user_id", "nickname", "content", "created_ms", "type"),
        [(m.room, m.user_id, m.nickname, m.content, m.timestamp_ms, m.type) for m in messages],
    )


def delete_message_txn(txn: Any, dialect: Dialect, message_id: int) -> str | None:
    txn.execute(dialect.sql("SELECT room FROM messages WHERE id = ?"), (message_id,))
    row = txn.fetchone()
    if row is None:
        return None
    txn.execute(dialect.sql("DELETE FROM messages WHERE id = ?"), (message_id,))
    return str(row[0])


def recent_messages_txn(
    txn: Any,
    dialect: Dialect,
    room: str,
    limit: int,
    before: int | None,
    after: int | None,
) -> list[Message]:
    if after is not None:
        txn.execute(
            dialect.sql(
                f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE room = ? AND id > ? "
                "ORDER BY id ASC LIMIT ?"
            ),
            (room, after, limit),
        )
        return [_message_from_row(r) for r in txn.fetchall()]
    if before is not None:
        txn.execute(
            dialect.sql(
                f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE room = ? AND id < ? "
                "ORDER BY id DESC LIMIT ?"
            ),
            (room, before, limit),
        )
    else:
        txn.execute(
            dialect.sql(
                f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE room = ? ORDER BY id DESC LIMIT ?"
            ),
            (room, limit),
        )
    rows = txn.fetchall()
    rows.reverse()
    return [_message_from_row(r) for r in rows]


def create_user_txn(
    txn: Any, dialect: Dialect, nickname: str, password_hash: bytes, created_ms: int
) -> StoredUser:
    try:
        [user_id] = dialect.insert_returning_ids(
            txn,
            "users",
            ("nickname", "nickname_key", "password_hash", "created_ms", "password_changed_ms"),
            [
                (
                    nickname,
                    nickname_key(nickname),
                    password_hash.decode("ascii"),
                    created_ms,
                    created_ms,
                )
            ],
        )
    except dialect.integrity_error as e:
        raise AccountExists() from e
    return StoredUser(user_id, nickname, password_hash)


def get_user_txn(txn: Any, dialect: Dialect, nickname: str) -> StoredUser | None:
    txn.execute(
        dialect.sql("SELECT id, nickname, password_hash FROM users WHERE nickname_key = ?"),
        (nickname_key(nickname),),
    )
    row = txn.fetchone()
    if row is None:
        return None
    return StoredUser(int(row[0]), row[1], row[2].encode("ascii"))


def set_password_hash_txn(txn: Any, dialect: Dialect, user_id: int, password_hash: bytes) -> None:
    txn.execute(
        dialect.sql("UPDATE users SET password_hash = ? WHERE id = ?"),
        (password_hash.decode("ascii"), user_id),
    )


def get_user_by_id_txn(txn: Any, dialect: Dialect, user_id: int) -> StoredUser | None:
    txn.execute(
        dialect.sql("SELECT id, nickname, password_hash FROM users WHERE id = ?"), (user_id,)
    )
    row = txn.fetchone()
    if row is None:
        return None
    return StoredUser(int(row[0]), row[1], row[2].encode("ascii"))


def list_users_txn(txn: Any, dialect: Dialect, limit: int, after_id: int) -> list[User]:
    txn.execute(
        dialect.sql("SELECT id, nickname FROM users WHERE id > ? ORDER BY id LIMIT ?"),
        (after_id, limit),
    )
    return [User(int(r[0]), r[1]) for r in txn.fetchall()]


def insert_direct_txn(
    txn: Any,
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
    txn: Any, dialect: Dialect, to_user_id: int, limit: int
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
    txn: Any, dialect: Dialect, user_id: int, other_id: int, limit: int, before: int | None
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


def mark_delivered_txn(txn: Any, dialect: Dialect, ids: Sequence[int]) -> None:
    txn.executemany(
        dialect.sql("UPDATE direct_messages SET delivered = 1 WHERE id = ?"),
        [(i,) for i in ids],
    )


def set_ban_txn(
    txn: Any, dialect: Dialect, user_id: int, reason: str, created_ms: int, expires_ms: int | None
) -> None:
    txn.execute(dialect.sql("DELETE FROM bans WHERE user_id = ?"), (user_id,))
    txn.execute(
        dialect.sql(
            "INSERT INTO bans (user_id, reason, created_ms, expires_ms) VALUES (?, ?, ?, ?)"
        ),
        (user_id, reason, created_ms, expires_ms),
    )


def remove_ban_txn(txn: Any, dialect: Dialect, user_id: int) -> bool:
    txn.execute(dialect.sql("DELETE FROM bans WHERE user_id = ?"), (user_id,))
    return bool(txn.rowcount)


_BAN_QUERY = (
    "SELECT b.user_id, u.nickname, b.reason, b.created_ms, b.expires_ms "
    "FROM bans b JOIN users u ON u.id = b.user_id"
)


def _ban_from_row(r: Sequence[Any]) -> Ban:
    return Ban(int(r[0]), r[1], r[2], int(r[3]), None if r[4] is None else int(r[4]))


def get_ban_txn(txn: Any, dialect: Dialect, user_id: int) -> Ban | None:
    txn.execute(dialect.sql(_BAN_QUERY + " WHERE b.user_id = ?"), (user_id,))
    row = txn.fetchone()
    return None if row is None else _ban_from_row(row)


def list_bans_txn(txn: Any, dialect: Dialect) -> list[Ban]:
    txn.execute(dialect.sql(_BAN_QUERY + " ORDER BY b.user_id"))
    return [_ban_from_row(r) for r in txn.fetchall()]


def revoke_token_txn(txn: Any, dialect: Dialect, jti: str, expires_s: int) -> None:
    txn.execute(
        dialect.sql(
            "INSERT INTO revoked_tokens (jti, expires_s) VALUES (?, ?) ON CONFLICT (jti) DO NOTHING"
        ),
        (jti, expires_s),
    )


def list_revoked_tokens_txn(txn: Any, dialect: Dialect, now_s: int) -> list[tuple[str, int]]:
    txn.execute(
        dialect.sql("SELECT jti, expires_s FROM revoked_tokens WHERE expires_s > ?"), (now_s,)
    )
    return [(str(r[0]), int(r[1])) for r in txn.fetchall()]


def prune_revoked_tokens_txn(txn: Any, dialect: Dialect, now_s: int) -> int:
    txn.execute(dialect.sql("DELETE FROM revoked_tokens WHERE expires_s <= ?"), (now_s,))
    return int(txn.rowcount)


def set_token_cutoff_txn(txn: Any, dialect: Dialect, user_id: int, before_ms: int) -> None:
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


def list_token_cutoffs_txn(txn: Any, dialect: Dialect) -> list[tuple[int, int]]:
    txn.execute(dialect.sql("SELECT user_id, before_ms FROM token_cutoffs ORDER BY user_id"))
    return [(int(r[0]), int(r[1])) for r in txn.fetchall()]


def ping_txn(txn: Any, dialect: Dialect) -> None:
    txn.execute("SELECT 1")
    txn.fetchall()


def load_or_create_setting_txn(
    txn: Any, dialect: Dialect, name: str, make: Callable[[], str]
) -> str:
    txn.execute(
        dialect.sql(
            "INSERT INTO server_settings (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING"
        ),
        (name, make()),
    )
    txn.execute(dialect.sql("SELECT value FROM server_settings WHERE name = ?"), (name,))
    return str(txn.fetchone()[0])


@implementer(IMessageStore)
class SQLStore:
    """An IMessageStore over an adbapi pool (engine given by ``dialect``)."""

    def __init__(self, pool: adbapi.ConnectionPool, dialect: Dialect) -> None:
        self.pool = pool
        self.dialect = dialect

    def _read(self, interaction: Callable[..., Any], *args: Any) -> Deferred[Any]:
        """Run a read-only ``interaction``, again if its connection turns out
        to have been dropped (``Dialect.connection_errors``).

        adbapi's ``cp_reconnect`` discards a broken connection only after a
        query on it has failed, so the first query after a server restart or
        a terminated backend fails even though the database is back. A read
        can simply run again; each failure discards one dead connection, so
        one attempt per pooled connection more is enough to reach a live one.
        Writes are not retried: a lost COMMIT reply leaves unknown whether
        they happened.
        """
        d = self.pool.runInteraction(interaction, self.dialect, *args)
        if self.dialect.connection_errors:
            d.addErrback(self._retry_read, interaction, args, self.pool.max)
        return d

    def _retry_read(
        self,
        failure: Failure,
        interaction: Callable[..., Any],
        args: tuple[Any, ...],
        retries: int,
    ) -> Deferred[Any] | Failure:
        failure.trap(*self.dialect.connection_errors)
        if retries <= 0:
            return failure
        _log.warn(
            "database connection lost ({error}); retrying {interaction}",
            error=failure.getErrorMessage().strip(),
            interaction=interaction.__name__,
        )
        d = self.pool.runInteraction(interaction, self.dialect, *args)
        d.addErrback(self._retry_read, interaction, args, retries - 1)
        return d

    def insert_messages(self, messages: Sequence[Message]) -> Deferred[list[int]]:
        return self.pool.runInteraction(insert_messages_txn, self.dialect, list(messages))

    def recent_messages(
        self, room: str, limit: int, before: int | None = None, after: int | None = None
    ) -> Deferred[list[Message]]:
        return self._read(recent_messages_txn, room, limit, before, after)

    def create_user(
        self, nickname: str, password_hash: bytes, created_ms: int
    ) -> Deferred[StoredUser]:
        return self.pool.runInteraction(
            create_user_txn, self.dialect, nickname, password_hash, created_ms
        )

    def get_user(self, nickname: str) -> Deferred[StoredUser | None]:
        return self._read(get_user_txn, nickname)

    def set_password_hash(self, user_id: int, password_hash: bytes) -> Deferred[None]:
        return self.pool.runInteraction(set_password_hash_txn, self.dialect, user_id, password_hash)

    def get_user_by_id(self, user_id: int) -> Deferred[StoredUser | None]:
        return self._read(get_user_by_id_txn, user_id)

    def list_users(self, limit: int, after_id: int = 0) -> Deferred[list[User]]:
        return self._read(list_users_txn, limit, after_id)

    def insert_direct(
        self, from_user_id: int, to_user_id: int, content: str, created_ms: int, delivered: bool
    ) -> Deferred[int]:
        return self.pool.runInteraction(
            insert_direct_txn,
            self.dialect,
            from_user_id,
            to_user_id,
            content,
            created_ms,
            delivered,
        )

    def pending_direct(self, to_user_id: int, limit: int) -> Deferred[list[DirectMessage]]:
        return self._read(pending_direct_txn, to_user_id, limit)

    def direct_history(
        self, user_id: int, other_id: int, limit: int, before: int | None = None
    ) -> Deferred[list[DirectMessage]]:
        return self._read(direct_history_txn, user_id, other_id, limit, before)

    def mark_delivered(self, ids: Sequence[int]) -> Deferred[None]:
        return self.pool.runInteraction(mark_delivered_txn, self.dialect, list(ids))

    def set_ban(
        self, user_id: int, reason: str, created_ms: int, expires_ms: int | None
    ) -> Deferred[None]:
        return self.pool.runInteraction(
            set_ban_txn, self.dialect, user_id, reason, created_ms, expires_ms
        )

    def remove_ban(self, user_id: int) -> Deferred[bool]:
        return self.pool.runInteraction(remove_ban_txn, self.dialect, user_id)

    def delete_message(self, message_id: int) -> Deferred[str | None]:
        return self.pool.runInteraction(delete_message_txn, self.dialect, message_id)

    def get_ban(self, user_id: int) -> Deferred[Ban | None]:
        return self._read(get_ban_txn, user_id)

    def list_bans(self) -> Deferred[list[Ban]]:
        return self._read(list_bans_txn)

    def revoke_token(self, jti: str, expires_s: int) -> Deferred[None]:
        return self.pool.runInteraction(revoke_token_txn, self.dialect, jti, expires_s)

    def list_revoked_tokens(self, now_s: int) -> Deferred[list[tuple[str, int]]]:
        return self._read(list_revoked_tokens_txn, now_s)

    def prune_revoked_tokens(self, now_s: int) -> Deferred[int]:
        return self.pool.runInteraction(prune_revoked_tokens_txn, self.dialect, now_s)

    def set_token_cutoff(self, user_id: int, before_ms: int) -> Deferred[None]:
        return self.pool.runInteraction(set_token_cutoff_txn, self.dialect, user_id, before_ms)

    def list_token_cutoffs(self) -> Deferred[list[tuple[int, int]]]:
        return self._read(list_token_cutoffs_txn)

    def ping(self) -> Deferred[None]:
        return self._read(ping_txn)

    def close(self) -> Deferred[None]:
        # ConnectionPool.close joins its thread, which finishes the running
        # interaction first; queued work has been flushed by the service.
        if self.pool.running:
            self.pool.close()
        return succeed(None)


class SQLiteFileStore(SQLStore):
    """SQLStore on a SQLite file, with WAL checkpoints off the commit path.

    SQLite's automatic checkpoint runs inside whichever commit crosses the
    threshold, copying the WAL into the database and syncing it: that commit
    (and every message waiting on it) stalls for the sync. Here the writer
    connection never checkpoints; a second connection on its own thread runs
    a PASSIVE checkpoint every ``checkpoint_every`` message batches, which
    WAL mode lets run alongside the writer without blocking it. Once a
    checkpoint has caught up, the next commit starts the WAL from its
    beginning again, so the file stays bounded.
    """

    def __init__(
        self,
        pool: adbapi.ConnectionPool,
        checkpoints: adbapi.ConnectionPool,
        checkpoint_every: int = 200,
    ) -> None:
        super().__init__(pool, SQLITE)
        self.checkpoints = checkpoints
        self.checkpoint_every = checkpoint_every
        self._batches = 0
        self._checkpointing = False

    def insert_messages(self, messages: Sequence[Message]) -> Deferred[list[int]]:
        d = super().insert_messages(messages)
        self._batches += 1
        if self._batches >= self.checkpoint_every and not self._checkpointing:
            d.addBoth(self._checkpoint)
        return d

    def _checkpoint(self, result: Any) -> Any:
        if self._checkpointing or not self.checkpoints.running:
            return result
        self._batches = 0
        self._checkpointing = True

        def done(outcome: Any) -> None:
            self._checkpointing = False
            if isinstance(outcome, Failure):
                _log.failure("WAL checkpoint failed", outcome)

        self.checkpoints.runOperation("PRAGMA wal_checkpoint(PASSIVE)").addBoth(done)
        return result

    def close(self) -> Deferred[None]:
        if self.checkpoints.running:
            self.checkpoints.close()
        return super().close()


def _configure_sqlite(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA journal_mode=WAL")
    # Checkpoints run on a connection of their own (SQLiteFileStore), never
    # inside a commit.
    conn.execute("PRAGMA wal_autocheckpoint=0")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA foreign_keys=ON")


def prepare_sqlite(path: str, schema_dir: Path = SCHEMA_DIR) -> tuple[int | None, int]:
    """Create or upgrade the database file at ``path``; blocking, run at start-up.

    Before upgrading an existing file, a copy is kept as ``<path>.v<N>.bak``.
    """

    def backup(version: int) -> None:
        target = f"{path}.v{version}.bak"
        with sqlite3.connect(target) as dst:
            conn.backup(dst)

    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000)
    try:
        _configure_sqlite(conn)
        return upgrade_sqlite(conn, schema_dir, backup)
    finally:
        conn.close()


def open_sqlite(path: str, reactor: Any = None, schema_dir: Path = SCHEMA_DIR) -> SQLStore:
    """Prepare the file at ``path`` and return a store over a one-connection pool."""
    openfun: Callable[[sqlite3.Connection], None] = _configure_sqlite
    if path == ":memory:":
        # Every connection to ":memory:" is a database of its own: build the
        # schema on the pool's connection, not on a throw-away one.
        def openfun(conn: sqlite3.Connection) -> None:
            _configure_sqlite(conn)
            upgrade_sqlite(conn, schema_dir)

    else:
        parent = Path(path).parent
        if not parent.exists():
            raise FileNotFoundError(f"directory {parent} does not exist")
        prepare_sqlite(path, schema_dir)

    def one_connection(init: Callable[[sqlite3.Connection], None]) -> adbapi.ConnectionPool:
        kwargs: dict[str, Any] = {} if reactor is None else {"cp_reactor": reactor}
        return adbapi.ConnectionPool(
            "sqlite3",
            path,
            timeout=BUSY_TIMEOUT_MS / 1000,
            check_same_thread=False,
            cp_min=1,
            cp_max=1,
            cp_openfun=init,
            cp_noisy=False,
            **kwargs,
        )

    if path == ":memory:":
        return SQLStore(one_connection(openfun), SQLITE)
    # The writer's connection, and one for WAL checkpoints beside it.
    return SQLiteFileStore(one_connection(openfun), one_connection(_configure_sqlite))


def load_or_create_setting(path: str, name: str, make: Callable[[], str]) -> str:
    """Read a server setting from the database file, creating it with
    ``make()`` if absent; blocking, run at start-up (e.g. the token secret,
    generated once and then shared by every start and every instance)."""
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000)
    try:
        with conn:
            return load_or_create_setting_txn(conn.cursor(), SQLITE, name, make)
    finally:
        conn.close()
