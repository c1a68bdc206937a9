"""Versioned schema: complete ``vN.sql`` files for new databases, forward-only
``upgrade-to-vN.sql`` scripts for existing ones, and a one-row version table.

Applied at start-up, before the server takes connections. Each step runs in one
transaction, so a failed upgrade leaves the database at the previous version;
SQLite files are also copied aside before the first upgrade step.

The decisions (which script, in which order, refusing a newer database) are
made once, in :func:`upgrade`, for every engine; an engine only says how to
read the recorded version and how to apply one step (``SQLiteSchema``,
``PostgresSchema``). A script ``name.<engine>.sql`` replaces ``name.sql`` for
that engine, where the engines' SQL differs.
"""

from __future__ import annotations

import re
import sqlite3
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

SCHEMA_DIR = Path(__file__).parent / "schema"

_VERSION_FILE = re.compile(r"v(\d+)\.sql\Z")

#: The PostgreSQL advisory lock key serialising schema changes between
#: instances starting at once (a fixed number; another application sharing
#: the database must not use it for its own advisory locks).
SCHEMA_LOCK_KEY = zlib.crc32(b"parkchat schema")


class SchemaError(Exception):
    """The database cannot be brought to this version's schema."""


def latest_version(schema_dir: Path = SCHEMA_DIR) -> int:
    versions = [int(m.group(1)) for p in schema_dir.iterdir() if (m := _VERSION_FILE.match(p.name))]
    if not versions:
        raise SchemaError(f"no schema files in {schema_dir}")
    return max(versions)


def read_script(schema_dir: Path, name: str, engine: str) -> str:
    """The script ``name`` (e.g. ``v1``), preferring an engine-specific
    variant ``v1.<engine>.sql`` where one exists."""
    for candidate in (schema_dir / f"{name}.{engine}.sql", schema_dir / f"{name}.sql"):
        if candidate.exists():
            return candidate.read_text(encoding="utf-8")
    raise SchemaError(f"missing schema script {name}.sql in {schema_dir}")


class SchemaTarget(Protocol):
    """One database as :func:`upgrade` sees it."""

    #: Selects engine-specific script variants (``v1.<engine>.sql``).
    engine: str

    def current_version(self) -> int | None:
        """The recorded version, or None for a database without the schema."""

    def apply(self, script: str, version: int, expected: int | None) -> int | None:
        """Run ``script`` and record ``version``, in one transaction, if the
        database is still at ``expected``; return the version it is at now
        (another instance may have moved it meanwhile)."""


def upgrade(
    target: SchemaTarget,
    schema_dir: Path = SCHEMA_DIR,
    backup: Callable[[int], None] | None = None,
) -> tuple[int | None, int]:
    """Bring ``target`` to the latest version of the schema in ``schema_dir``.

    Returns ``(version_found, version_now)``; ``version_found`` is None for a
    new database. ``backup(version)`` is called once before the first upgrade
    step of an existing database. A new database is built from the latest
    complete ``vN.sql``; an older one goes through every ``upgrade-to-vN.sql``
    in order, one transaction each.
    """
    latest = latest_version(schema_dir)
    found = target.current_version()
    now = found
    backed_up = False
    while now != latest:
        if now is None:
            name, version = f"v{latest}", latest
        elif now > latest:
            raise SchemaError(
                f"database schema is version {now}, newer than this parkchat ({latest}): "
                "upgrade parkchat or restore a backup"
            )
        else:
            if backup is not None and not backed_up:
                backup(now)
                backed_up = True
            name, version = f"upgrade-to-v{now + 1}", now + 1
        now = target.apply(read_script(schema_dir, name, target.engine), version, now)
    return found, latest


def _record_version(version: int, new: bool) -> str:
    if new:
        return f"INSERT INTO schema_version (version) VALUES ({version});"
    return f"UPDATE schema_version SET version = {version};"


class SQLiteSchema:
    """A SQLite connection as a :class:`SchemaTarget`.

    Several processes may open one file at once (``parkchat-workers``, two
    units starting together): each step takes SQLite's write lock first
    (``BEGIN IMMEDIATE``, waiting up to the busy timeout) and re-reads the
    version under it, so only one of them applies it.
    """

    engine = "sqlite"

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def current_version(self) -> int | None:
        return current_version_sqlite(self.conn)

    def apply(self, script: str, version: int, expected: int | None) -> int | None:
        conn = self.conn
        record = _record_version(version, new=expected is None)
        if conn.in_transaction:
            conn.commit()
        try:
            conn.execute("BEGIN IMMEDIATE")
            now = current_version_sqlite(conn)
            if now != expected:
                conn.rollback()
                return now
            for statement in _statements(f"{script}\n;{record}"):
                conn.execute(statement)
            conn.commit()
        except Exception as e:
            if conn.in_transaction:
                conn.rollback()
            raise SchemaError(f"applying schema version {version} failed: {e}") from e
        return version


def _statements(script: str) -> list[str]:
    """Split an SQL script into statements (sqlite3.complete_statement decides
    where one ends, so semicolons in strings and comments are safe)."""
    statements: list[str] = []
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            if buffer.strip().strip(";").strip():
                statements.append(buffer)
            buffer = ""
    if buffer.strip().strip(";").strip():
        statements.append(buffer)
    return statements


def current_version_sqlite(conn: Any) -> int | None:
    """The version recorded in a SQLite database, or None if it is new."""
    row = conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
    ).fetchone()
    if row is None:
        return None
    row = conn.execute("SELECT version FROM schema_version").fetchone()
    if row is None:
        raise SchemaError("schema_version table is empty")
    return int(row[0])


def upgrade_sqlite(
    conn: Any,
    schema_dir: Path = SCHEMA_DIR,
    backup: Callable[[int], None] | None = None,
) -> tuple[int | None, int]:
    """Bring the SQLite database on ``conn`` to the latest version (see
    :func:`upgrade`)."""
    return upgrade(SQLiteSchema(conn), schema_dir, backup)


class PostgresSchema:
    """A PostgreSQL (DB-API, psycopg2) connection as a :class:`SchemaTarget`.

    Several instances may start at once against one database. Each step
    takes the advisory lock ``SCHEMA_LOCK_KEY`` first, then opens its
    transaction, re-reads the version and applies the step only if it is
    still due; so one instance runs a given step and the others find it
    done. The lock is the session-level ``pg_advisory_lock``, taken before
    the step's transaction begins, not ``pg_advisory_xact_lock`` inside it:
    a transaction that waited for the lock still resolves names through the
    catalog caches of its start and does not see a ``schema_version`` table
    another instance created meanwhile (``to_regclass`` said "no table",
    then ``CREATE TABLE`` said "already exists"). DDL is transactional in
    PostgreSQL, so a failed step leaves nothing behind.
    """

    engine = "postgres"

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def current_version(self) -> int | None:
        try:
            with self.conn.cursor() as cursor:
                return self._read_version(cursor)
        finally:
            self.conn.rollback()

    def apply(self, script: str, version: int, expected: int | None) -> int | None:
        conn = self.conn
        with conn.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s)", (SCHEMA_LOCK_KEY,))
            # The lock belongs to the session: end this transaction so the
            # step's own starts now, after every step taken before the lock.
            conn.commit()
            try:
                now = self._read_version(cursor)
                if now != expected:
                    # Another instance took this step (or more) first.
                    conn.rollback()
                    return now
                # No parameters: the script goes to the server as it is,
                # several statements in one simple query.
                cursor.execute(script)
                cursor.execute(_record_version(version, new=expected is None))
                conn.commit()
            except SchemaError:
                conn.rollback()
                raise
            except Exception as e:
                conn.rollback()
                raise SchemaError(f"applying schema version {version} failed: {e}") from e
            finally:
                if not conn.closed:
                    cursor.execute("SELECT pg_advisory_unlock(%s)", (SCHEMA_LOCK_KEY,))
                    conn.commit()
        return version

    @staticmethod
    def _read_version(cursor: Any) -> int | None:
        # to_regclass follows search_path, as the scripts' CREATE TABLE does.
        cursor.execute("SELECT to_regclass('schema_version') IS NOT NULL")
        if not cursor.fetchone()[0]:
            return None
        cursor.execute("SELECT version FROM schema_version")
        row = cursor.fetchone()
        if row is None:
            raise SchemaError("schema_version table is empty")
        return int(row[0])
