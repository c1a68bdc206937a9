"""The SQLite engine: its ``Dialect``, the file store with its WAL
checkpoints, and opening (creating or upgrading) a database file.

The SQL itself is engine-neutral and lives in ``store/sql/``; this module
adds what is SQLite's own. SQLite gets one connection (``cp_min = cp_max =
1``): it has a single writer, and more connections only trade throughput for
"database is locked" errors. WAL journaling lets that writer commit without
blocking readers, and ``synchronous=NORMAL`` keeps every committed
transaction across a crash of the process (SIGKILL); only a power cut may
lose the last commits.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twisted.enterprise import adbapi
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from parkchat.model import Message
from parkchat.store.schema import SCHEMA_DIR, SchemaError, upgrade_sqlite
from parkchat.store.sql import Cursor, Dialect, SQLStore, load_or_create_setting_txn
from parkchat.store.sql.accounts import backfill_name_skeletons

BUSY_TIMEOUT_MS = 5000

#: The oldest SQLite library the store works with: ``INSERT ... RETURNING``
#: (3.35) draws a room's positions; window functions (3.25) number the
#: messages of an older database when it is upgraded.
MIN_SQLITE_VERSION = (3, 35, 0)

_log = Logger()


@dataclass(frozen=True)
class SQLiteDialect(Dialect):
    """SQLite's side of the ``Dialect``: one writer at a time, ``lastrowid``."""

    def probe_write(self, txn: Cursor) -> None:
        """Take the write lock and give it back: another process holding the
        file (an exclusive lock, a long write) makes this fail after the
        busy timeout, as every commit would."""
        txn.execute("BEGIN IMMEDIATE")
        txn.execute("ROLLBACK")

    def insert_returning_ids(
        self, txn: Cursor, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]
    ) -> list[int]:
        query = self.sql(
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})"
        )
        if not rows:
            return []
        txn.execute(query, tuple(rows[0]))
        first = int(txn.lastrowid)
        if len(rows) == 1:
            return [first]
        # This transaction holds SQLite's write lock (since its first write),
        # so no other connection can insert before it commits, and ``first``
        # is the table's highest id: the next ids are free. Giving them
        # explicitly lets executemany insert the rest in one C loop instead
        # of one Python round trip per row (AUTOINCREMENT's sequence follows).
        explicit = self.sql(
            f"INSERT INTO {table} (id, {', '.join(columns)}) "
            f"VALUES (?, {', '.join('?' for _ in columns)})"
        )
        txn.executemany(explicit, [(first + i, *row) for i, row in enumerate(rows[1:], start=1)])
        return list(range(first, first + len(rows)))


SQLITE = SQLiteDialect("sqlite", sqlite3.IntegrityError)


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

    def insert_messages(self, messages: Sequence[Message]) -> Deferred[list[tuple[int, int]]]:
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


def check_sqlite_version() -> None:
    """Refuse, with a SchemaError saying what to do, a SQLite library too
    old for the store's SQL (it would fail only at the first message)."""
    if sqlite3.sqlite_version_info < MIN_SQLITE_VERSION:
        wanted = ".".join(map(str, MIN_SQLITE_VERSION))
        raise SchemaError(
            f"SQLite {sqlite3.sqlite_version} is too old: parkchat needs {wanted} or newer "
            "(the library Python's sqlite3 module is linked with)"
        )


def prepare_sqlite(path: str, schema_dir: Path = SCHEMA_DIR) -> tuple[int | None, int]:
    """Create or upgrade the database file at ``path``; blocking, run at start-up.

    Before upgrading an existing file, a copy is kept as ``<path>.v<N>.bak``.
    """
    check_sqlite_version()

    def backup(version: int) -> None:
        target = f"{path}.v{version}.bak"
        with sqlite3.connect(target) as dst:
            conn.backup(dst)

    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000)
    try:
        _configure_sqlite(conn)
        versions = upgrade_sqlite(conn, schema_dir, backup)
        _backfill(conn)
        return versions
    finally:
        conn.close()


def _backfill(conn: sqlite3.Connection) -> None:
    """Data an upgrade leaves to Python (the accounts' name skeletons),
    under SQLite's write lock so that two processes do it once."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(users)")}
    if "name_skeleton" not in columns:
        return  # a schema before version 5 (tests upgrade step by step)
    if conn.in_transaction:
        conn.commit()
    conn.execute("BEGIN IMMEDIATE")
    backfill_name_skeletons(conn, SQLITE)


def open_sqlite(path: str, reactor: Any = None, schema_dir: Path = SCHEMA_DIR) -> SQLStore:
    """Prepare the file at ``path`` and return a store over a one-connection pool."""
    openfun: Callable[[sqlite3.Connection], None] = _configure_sqlite
    check_sqlite_version()
    if path == ":memory:":
        # Every connection to ":memory:" is a database of its own: build the
        # schema on the pool's connection, not on a throw-away one.
        def openfun(conn: sqlite3.Connection) -> None:
            _configure_sqlite(conn)
            upgrade_sqlite(conn, schema_dir)
            _backfill(conn)

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
