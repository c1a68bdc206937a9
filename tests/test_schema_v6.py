"""The schema step of issue #16's messages part (edits, full-text search,
room topics) on SQLite and PostgreSQL: the full script and the upgrade
build the same database, and an upgrade of a database with messages makes
them searchable at once. ``VERSION`` is the step's number (renumbered when
another step lands first)."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

from twisted.trial.unittest import TestCase

from parkchat.store.schema import SCHEMA_DIR, latest_version
from parkchat.store.sqlite import open_sqlite, prepare_sqlite
from tests.store_support import T0, chat
from tests.test_postgres import PostgresTestCase, catalog
from tests.test_schema_v2 import query, run_scripts, schema_objects

#: The version this step brings the schema to.
VERSION = 6


def shipped_up_to(directory: Path, version: int) -> Path:
    """The shipped scripts (both engines) up to ``version`` in ``directory``."""
    directory.mkdir()
    names = ["v1"] + [f"upgrade-to-v{n}" for n in range(2, version + 1)] + [f"v{version}"]
    for name in dict.fromkeys(names):
        for suffix in (".sql", ".postgres.sql"):
            shutil.copy(SCHEMA_DIR / f"{name}{suffix}", directory / f"{name}{suffix}")
    return directory


async def search(store: object, *terms: str, user_id: int = 1) -> list[str]:
    hits = await store.search_messages(  # type: ignore[attr-defined]
        list(terms),
        user_id,
        rooms=None,
        room=None,
        with_user_id=None,
        include_rooms=True,
        include_direct=True,
        before=None,
        limit=10,
    )
    return [hit.content for hit in hits]


class SQLiteStepTests(TestCase):
    def db_path(self) -> str:
        directory = Path(self.mktemp())
        directory.mkdir()
        return str(directory / "chat.db")

    def test_full_script_matches_upgrade(self) -> None:
        """The full script creates exactly the objects (tables, FTS5 tables
        and their shadow tables, triggers, indexes) that the previous full
        script and this step's upgrade create."""
        fresh, upgraded = self.db_path(), self.db_path()
        run_scripts(fresh, f"v{VERSION}")
        run_scripts(upgraded, f"v{VERSION - 1}", f"upgrade-to-v{VERSION}")
        objects = schema_objects(fresh)
        self.assertEqual(objects, schema_objects(upgraded))
        names = {name for _, name, _, _ in objects}
        self.assertTrue(
            {
                "message_edits",
                "messages_fts",
                "direct_messages_fts",
                "room_topics",
                "messages_fts_update",
            }
            <= names,
            names,
        )

    async def test_upgrade_indexes_existing_messages(self) -> None:
        """A database of the previous version with room and direct messages
        is upgraded in place: every old message is found by search, none is
        edited, and edits and topics work."""
        path = self.db_path()
        previous = shipped_up_to(Path(self.mktemp()), VERSION - 1)
        prepare_sqlite(path, previous)
        # Accounts by SQL: today's store writes columns of later versions.
        conn = sqlite3.connect(path)
        conn.executemany(
            "INSERT INTO users (nickname, nickname_key, password_hash, created_ms, "
            "password_changed_ms) VALUES (?, ?, 'x', 0, 0)",
            [("alice", "alice"), ("bob", "bob")],
        )
        conn.commit()
        conn.close()
        alice_id, bob_id = 1, 2
        old = open_sqlite(path, schema_dir=previous)
        [(first, _), _] = await old.insert_messages(
            [chat("lobby", "older planning notes"), chat("garden", "flowers")]
        )
        await old.insert_direct(alice_id, bob_id, "planning lunch", T0, False)
        await old.close()

        store = open_sqlite(path)
        self.addCleanup(store.close)
        self.assertEqual(query(path, "SELECT version FROM schema_version"), [(latest_version(),)])
        self.assertEqual(
            sorted(await search(store, "plan", user_id=alice_id)),
            ["older planning notes", "planning lunch"],
        )
        self.assertEqual(
            query(path, "SELECT count(*) FROM messages WHERE edited_ms IS NULL"), [(2,)]
        )
        await store.edit_message(first, "newer notes", alice_id, "alice", T0 + 1)
        self.assertEqual(await search(store, "older"), [])
        self.assertEqual(await search(store, "newer"), ["newer notes"])


class PostgresStepTests(PostgresTestCase):
    def test_full_script_matches_upgrade(self) -> None:
        """The full PostgreSQL script builds the database (columns, the
        generated tsvector columns, GIN indexes) that the previous one and
        this step's upgrade build."""
        self.prepare(shipped_up_to(Path(self.mktemp()), VERSION - 1))
        self.assertEqual(self.prepare(), (VERSION - 1, latest_version()))
        from tests import postgres_support

        fresh = postgres_support.create_database(self.addCleanup)
        from parkchat.store.postgres import prepare_postgres

        prepare_postgres(fresh)
        self.assertEqual(catalog(self.dsn), catalog(fresh))

    async def test_upgrade_indexes_existing_messages(self) -> None:
        """Old messages are searchable right after the upgrade (the
        generated column is computed for every existing row)."""
        previous = shipped_up_to(Path(self.mktemp()), VERSION - 1)
        old = self.open_store(schema_dir=previous)
        # Accounts by SQL: today's store writes columns of later versions.
        import psycopg2

        conn = psycopg2.connect(self.dsn)
        with conn, conn.cursor() as cursor:
            cursor.execute(
                "INSERT INTO users (nickname, nickname_key, password_hash, created_ms, "
                "password_changed_ms) VALUES ('alice', 'alice', 'x', 0, 0), "
                "('bob', 'bob', 'x', 0, 0) RETURNING id"
            )
            alice_id, bob_id = (row[0] for row in cursor.fetchall())
        conn.close()
        await old.insert_messages([chat("lobby", "older planning notes")])
        await old.insert_direct(bob_id, alice_id, "planning lunch", T0 + 1, False)
        await old.close()

        store = self.open_store()
        self.assertEqual(
            await search(store, "plan", user_id=alice_id),
            ["planning lunch", "older planning notes"],
        )
