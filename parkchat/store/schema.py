"""Versioned schema: complete ``vN.sql`` files for new databases, forward-only
``upgrade-to-vN.sql`` scripts for existing ones, and a one-row version table.

Applied at start-up, before the server takes connections. Each step runs in one
transaction, so a failed upgrade leaves the database at the previous version;
SQLite files are also copied aside before the first upgrade step.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

SCHEMA_DIR = Path(__file__).parent / "schema"

_VERSION_FILE = re.compile(r"v(\d+)\.sql\Z")


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
    """Bring the SQLite database on ``conn`` to the latest version.

    Returns ``(version_found, version_now)``; ``version_found`` is None for a
    new database. ``backup(version)`` is called once before the first upgrade
    step of an existing database.
    """
    latest = latest_version(schema_dir)
    found = current_version_sqlite(conn)
    if found is None:
        _run_sqlite_step(conn, read_script(schema_dir, f"v{latest}", "sqlite"), latest, new=True)
        return None, latest
    if found > latest:
        raise SchemaError(
            f"database schema is version {found}, newer than this parkchat ({latest}): "
            "upgrade parkchat or restore a backup"
        )
    if found < latest and backup is not None:
        backup(found)
    for version in range(found + 1, latest + 1):
        script = read_script(schema_dir, f"upgrade-to-v{version}", "sqlite")
        _run_sqlite_step(conn, script, version, new=False)
    return found, latest


def _run_sqlite_step(conn: Any, script: str, version: int, *, new: bool) -> None:
    record = (
        f"INSERT INTO schema_version (version) VALUES ({version});"
        if new
        else f"UPDATE schema_version SET version = {version};"
    )
    try:
        # executescript commits any open transaction first, then runs the text
        # as is: the explicit BEGIN/COMMIT makes the step atomic.
        conn.executescript(f"BEGIN;\n{script}\n;{record}\nCOMMIT;")
    except Exception as e:
        if conn.in_transaction:
            conn.rollback()
        raise SchemaError(f"applying schema version {version} failed: {e}") from e
