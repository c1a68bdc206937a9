"""A throw-away PostgreSQL database per test, when ``PARKCHAT_TEST_POSTGRES``
names a server.

``PARKCHAT_TEST_POSTGRES`` is a libpq URL of a database the tests may connect
to as a user allowed to ``CREATE DATABASE`` (``.ci/run`` sets
``postgresql://postgres@127.0.0.1:5432/postgres``). Each test gets a new
database ``parkchat_test_<random>``, dropped in its cleanup, so tests and
concurrent runs never see each other's rows. Unset, every PostgreSQL test is
skipped with ``SKIP_REASON``.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

ENV = "PARKCHAT_TEST_POSTGRES"

ADMIN_DSN = os.environ.get(ENV, "")

try:
    import psycopg2
except ImportError:  # the postgres extra is not installed
    psycopg2 = None

SKIP_REASON: str | None
if not ADMIN_DSN:
    SKIP_REASON = (
        f"{ENV} is not set: set it to a PostgreSQL URL whose user may create "
        f"databases (e.g. {ENV}=postgresql://postgres@127.0.0.1:5432/postgres) "
        "to run the store tests against PostgreSQL"
    )
elif psycopg2 is None:
    SKIP_REASON = f"{ENV} is set but psycopg2 is missing: pip install '.[postgres]'"
else:
    SKIP_REASON = None


def admin_connection(dsn: str = ADMIN_DSN) -> Any:
    """An autocommit connection to ``dsn`` (``PARKCHAT_TEST_POSTGRES``)."""
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    return conn


def with_database(url: str, name: str) -> str:
    """``url`` with its database name replaced by ``name``."""
    return urlsplit(url)._replace(path="/" + name).geturl()


def create_database(
    add_cleanup: Callable[..., Any], dsn: str = ADMIN_DSN, prefix: str = "parkchat_test"
) -> str:
    """Create an empty database on the server of ``dsn``, drop it (closing
    any connection left to it) at cleanup, and return its URL."""
    name = f"{prefix}_{secrets.token_hex(6)}"
    conn = admin_connection(dsn)
    try:
        with conn.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE {name}")
    finally:
        conn.close()

    def drop() -> None:
        conn = admin_connection(dsn)
        try:
            with conn.cursor() as cursor:
                cursor.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        finally:
            conn.close()

    add_cleanup(drop)
    return with_database(dsn, name)


def query(dsn: str, sql: str, params: Any = ()) -> list[tuple[Any, ...]]:
    """Run one statement on a new connection, commit, and return its rows."""
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall() if cursor.description else []
    finally:
        conn.close()
