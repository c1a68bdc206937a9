"""Where the store contract suites run: one mixin per backend, each making
a fresh store for a test and closing it afterwards. Put the backend first
in the bases, before the suite (whose ``make_store`` is abstract).

The suites themselves are one module per store area (``test_store_messages``,
``test_store_accounts``, ...), each a ``StoreSuite`` mixin run with
``OnMemory``, ``OnSQLite`` and ``OnPostgreSQL``; ``test_store`` checks that
every backend provides every area interface."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from twisted.trial.unittest import TestCase

from parkchat.interfaces import IMessageStore
from parkchat.model import Message, StoredUser
from parkchat.store.memory import MemoryStore
from parkchat.store.sqlite import open_sqlite
from tests import postgres_support

#: A fixed time for stored rows (ms since the epoch).
T0 = 1_700_000_000_000

#: The same time in seconds since the epoch (token expiries are in seconds).
S0 = T0 // 1000


def chat(room: str, content: str, nickname: str = "alice", timestamp_ms: int = T0) -> Message:
    """An unsaved chat message (id 0)."""
    return Message(room=room, nickname=nickname, content=content, timestamp_ms=timestamp_ms)


if TYPE_CHECKING:
    _Base = TestCase
else:
    # Not a TestCase at run time, or trial would run the abstract suites.
    _Base = object


class StoreSuite(_Base):
    """The base of a store contract suite: a backend mixin supplies
    ``make_store``."""

    def make_store(self) -> IMessageStore:
        """Build a fresh, empty store and arrange for it to be closed."""
        raise NotImplementedError

    async def users(self, store: IMessageStore, *nicknames: str) -> list[StoredUser]:
        return [await store.create_user(n, f"hash-{n}".encode(), T0) for n in nicknames]


class OnMemory:
    """The in-memory store."""

    addCleanup: Any

    def make_store(self) -> IMessageStore:
        store = MemoryStore()
        self.addCleanup(store.close)
        return store


class OnSQLite:
    """SQLite on a real file."""

    addCleanup: Any
    mktemp: Any

    def make_store(self) -> IMessageStore:
        store = open_sqlite(self.mktemp())
        self.addCleanup(store.close)
        return store


class OnSQLiteMemory:
    """SQLite in a ``:memory:`` database (the pool's one connection)."""

    addCleanup: Any

    def make_store(self) -> IMessageStore:
        store = open_sqlite(":memory:")
        self.addCleanup(store.close)
        return store


class OnPostgreSQL:
    """PostgreSQL, a new database per test (skipped without one)."""

    addCleanup: Any
    skip = postgres_support.SKIP_REASON

    def make_store(self) -> IMessageStore:
        from parkchat.store.postgres import open_postgres

        store = open_postgres(postgres_support.create_database(self.addCleanup))
        self.addCleanup(store.close)
        return store


class SQLitePlans:
    """Stands in for the transaction that a store's ``*_txn`` function gets,
    on a real SQLite connection: each query runs, and its plan (the detail
    column of EXPLAIN QUERY PLAN, one string per line) is kept in ``plans``."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.plans: list[list[str]] = []
        self._cursor = conn.cursor()
        self.rowcount = 0

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        rows = self.conn.execute("EXPLAIN QUERY PLAN " + sql, params).fetchall()
        self.plans.append([row[-1] for row in rows])
        self._cursor.execute(sql, params)
        self.rowcount = self._cursor.rowcount

    def fetchone(self) -> Any:
        return self._cursor.fetchone()

    def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()
