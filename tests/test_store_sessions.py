"""The ``ISessionStore`` contract: one behaviour suite for the in-memory
store, SQLite on a real file and PostgreSQL (when ``PARKCHAT_TEST_POSTGRES``
is set; see ``tests/store_support.py``). Numbers drawn by several
connections at once are in ``test_postgres``."""

from __future__ import annotations

import sqlite3

from twisted.trial.unittest import TestCase

from tests import postgres_support
from tests.store_support import OnMemory, OnPostgreSQL, OnSQLite, StoreSuite

#: How each store refuses an unknown account: the engines' foreign key, the
#: memory store's lookup.
REFUSED: tuple[type[Exception], ...] = (KeyError, sqlite3.IntegrityError)
if postgres_support.psycopg2 is not None:
    REFUSED += (postgres_support.psycopg2.IntegrityError,)


class SessionStoreTestsMixin(StoreSuite):
    """The ISessionStore contract; mixed into a TestCase per implementation."""

    async def test_numbers_count_per_account(self) -> None:
        """``next_session`` numbers an account's sessions 1, 2, 3, ...;
        each account counts on its own."""
        store = self.make_store()
        alice, bob = await self.users(store, "alice", "bob")
        self.assertEqual([await store.next_session(alice.id) for _ in range(3)], [1, 2, 3])
        self.assertEqual(await store.next_session(bob.id), 1)
        self.assertEqual(await store.next_session(alice.id), 4)

    async def test_unknown_account_refused(self) -> None:
        """An id that names no account is refused (no number is handed out
        for it), and accounts' numbers are unaffected."""
        store = self.make_store()
        [alice] = await self.users(store, "alice")
        with self.assertRaises(REFUSED):
            await store.next_session(alice.id + 1000)
        self.assertEqual(await store.next_session(alice.id), 1)


class MemorySessionTests(OnMemory, SessionStoreTestsMixin, TestCase):
    """The session contract, for the in-memory store."""


class SQLiteSessionTests(OnSQLite, SessionStoreTestsMixin, TestCase):
    """The session contract, for SQLite on a real file."""


class PostgreSQLSessionTests(OnPostgreSQL, SessionStoreTestsMixin, TestCase):
    """The session contract, for PostgreSQL on a new database per test."""
