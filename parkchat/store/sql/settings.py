"""Server settings in SQL: the ``server_settings`` table, read once at
start-up (before the reactor runs) by the engine modules'
``load_or_create_setting``; no store method uses it."""

from __future__ import annotations

from collections.abc import Callable

from parkchat.store.sql.engine import Cursor, Dialect


def load_or_create_setting_txn(
    txn: Cursor, dialect: Dialect, name: str, make: Callable[[], str]
) -> str:
    txn.execute(
        dialect.sql(
            "INSERT INTO server_settings (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING"
        ),
        (name, make()),
    )
    txn.execute(dialect.sql("SELECT value FROM server_settings WHERE name = ?"), (name,))
    return str(txn.fetchone()[0])
