"""The PostgreSQL engine: ``SQLStore`` and the ``*_txn`` functions of
``store/sql/`` over a ``psycopg2`` adbapi pool, with a ``PostgresDialect``.

Selected by ``--db postgresql://user@host:port/dbname`` (any libpq URL or
key/value connection string works here; ``tap`` picks this module by the
``postgresql://`` / ``postgres://`` prefix, see ``store.is_postgres_url``).
Unlike SQLite, PostgreSQL runs transactions of several connections at once,
so the pool holds a few
(``--db-pool-size``); every parkchat instance of a deployment opens its own
pool against the same database.

What differs from SQLite is all in ``PostgresDialect``: ``%s`` placeholders,
``psycopg2.IntegrityError``, ids from ``INSERT ... RETURNING id`` (a batch of
messages is one statement via ``execute_values``), and the errors that mean
a dropped connection, after which ``SQLStore`` retries reads, and writes
that had not reached their COMMIT.

Instances write in parallel, and nothing locks the whole deployment: a
batch locks the counter rows of its rooms (``room_sequences``) until it
commits, so batches of one room take turns and the room's seqs become
visible in order, while batches of other rooms commit alongside
(``store/sql/messages.py``).

Requires the ``postgres`` extra: ``pip install 'parkchat[postgres]'``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twisted.enterprise import adbapi

import psycopg2
import psycopg2.extras

from parkchat.store.schema import SCHEMA_DIR, SCHEMA_LOCK_KEY, PostgresSchema, upgrade
from parkchat.store.sql import Cursor, Dialect, SQLStore, load_or_create_setting_txn
from parkchat.store.sql.accounts import backfill_name_skeletons

#: Connections per instance unless told otherwise.
DEFAULT_POOL_SIZE = 4

#: Rows per INSERT statement of a message batch (the group-commit writer's
#: batches are at most 2000 messages by default: one or two statements).
INSERT_PAGE_SIZE = 1000


@dataclass(frozen=True)
class PostgresDialect(Dialect):
    """PostgreSQL's side of the ``Dialect``: no ``lastrowid``; ``RETURNING``."""

    def probe_write(self, txn: Cursor) -> None:
        """Ask for a transaction id: refused in a read-only transaction (a
        standby, ``default_transaction_read_only``), where every commit of
        messages would fail too."""
        txn.execute("SELECT txid_current()")
        txn.fetchall()

    def insert_returning_ids(
        self, txn: Cursor, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]
    ) -> list[int]:
        head = f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
        if len(rows) == 1:
            txn.execute(head + f"({', '.join('%s' for _ in columns)}) RETURNING id", tuple(rows[0]))
            return [int(txn.fetchone()[0])]
        # One multi-row VALUES statement per page. PostgreSQL evaluates a
        # VALUES list in order, so the serial ids are drawn, and RETURNING
        # gives them back, in the order of ``rows``; pages run in order too.
        returned = psycopg2.extras.execute_values(
            txn,
            head + "%s RETURNING id",
            [tuple(row) for row in rows],
            page_size=INSERT_PAGE_SIZE,
            fetch=True,
        )
        return [int(r[0]) for r in returned]


POSTGRES = PostgresDialect(
    "postgres",
    psycopg2.IntegrityError,
    placeholder="%s",
    connection_errors=(psycopg2.OperationalError, psycopg2.InterfaceError),
)


def prepare_postgres(dsn: str, schema_dir: Path = SCHEMA_DIR) -> tuple[int | None, int]:
    """Create or upgrade the schema of the database at ``dsn``; blocking, run
    at start-up before the reactor. Safe when several instances start at
    once (see ``schema.PostgresSchema``). No backup is taken: run
    ``pg_dump`` before upgrading parkchat (docs/operations.md)."""
    conn = psycopg2.connect(dsn)
    try:
        versions = upgrade(PostgresSchema(conn), schema_dir)
        _backfill(conn)
        return versions
    finally:
        conn.close()


def _backfill(conn: Any) -> None:
    """Data an upgrade leaves to Python (the accounts' name skeletons), under
    the schema lock so that instances starting at once do it once."""
    with conn.cursor() as cursor:
        cursor.execute(
            "SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema() "
            "AND table_name = 'users' AND column_name = 'name_skeleton'"
        )
        present = cursor.fetchone() is not None
        conn.rollback()
        if not present:
            return  # a schema before version 5 (tests upgrade step by step)
        cursor.execute("SELECT pg_advisory_lock(%s)", (SCHEMA_LOCK_KEY,))
        conn.commit()
        try:
            backfill_name_skeletons(conn, POSTGRES)
        finally:
            if not conn.closed:
                cursor.execute("SELECT pg_advisory_unlock(%s)", (SCHEMA_LOCK_KEY,))
                conn.commit()


def open_postgres(
    dsn: str,
    reactor: Any = None,
    pool_size: int = DEFAULT_POOL_SIZE,
    schema_dir: Path = SCHEMA_DIR,
) -> SQLStore:
    """Prepare the schema at ``dsn`` and return a store over a pool of up to
    ``pool_size`` connections (opened as the pool's threads need them)."""
    prepare_postgres(dsn, schema_dir)
    kwargs: dict[str, Any] = {}
    if reactor is not None:
        kwargs["cp_reactor"] = reactor
    pool = adbapi.ConnectionPool(
        "psycopg2",
        dsn,
        cp_min=1,
        cp_max=pool_size,
        # Drop a connection whose rollback fails (the server went away)
        # instead of handing it out again; SQLStore retries the read.
        cp_reconnect=True,
        cp_noisy=False,
        **kwargs,
    )
    return SQLStore(pool, POSTGRES)


def load_or_create_setting(dsn: str, name: str, make: Callable[[], str]) -> str:
    """Read a server setting from the database, creating it with ``make()``
    if absent; blocking, run at start-up. Every instance sharing the
    database gets the same value (the first one to commit wins), e.g. the
    token secret, so a token from one instance is good on all of them."""
    conn = psycopg2.connect(dsn)
    try:
        with conn:
            with conn.cursor() as cursor:
                return load_or_create_setting_txn(cursor, POSTGRES, name, make)
    finally:
        conn.close()
