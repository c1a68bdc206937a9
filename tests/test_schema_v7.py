"""The shipped version-6 schema (account state, mentions, refresh tokens)
on SQLite: the full script and the upgrades build the same database, an
upgraded v6 database keeps its data and takes account state, and the
counts search their indexes. The PostgreSQL side is in ``test_postgres``
(every shipped version there); the store methods are held to their
contracts in ``test_store_state``."""

from __future__ import annotations

import re
import shutil
import sqlite3
from pathlib import Path

from twisted.trial.unittest import TestCase

from parkchat.model import Message
from parkchat.store.schema import SCHEMA_DIR, latest_version
from parkchat.store.sql.state import room_counts_txn
from parkchat.store.sqlite import SQLITE, open_sqlite, prepare_sqlite
from tests.store_support import T0, SQLitePlans
from tests.test_schema_v2 import query, run_scripts, schema_objects


class SchemaV5Tests(TestCase):
    """The shipped version-6 scripts."""

    def db_path(self) -> str:
        directory = Path(self.mktemp())
        directory.mkdir()
        return str(directory / "chat.db")

    def v6_only(self) -> Path:
        """A schema directory holding the shipped scripts up to version 6."""
        directory = Path(self.mktemp())
        directory.mkdir()
        for path in SCHEMA_DIR.glob("*.sql"):
            found = re.search(r"v(\d+)", path.name)
            if found is not None and int(found.group(1)) <= 6:
                shutil.copy(path, directory / path.name)
        return directory

    def test_shipped(self) -> None:
        """Version 7 is shipped (full script and upgrade, both engines)."""
        self.assertGreaterEqual(latest_version(), 7)
        for name in ("v7", "upgrade-to-v7"):
            self.assertTrue((SCHEMA_DIR / f"{name}.sql").exists(), name)
            self.assertTrue((SCHEMA_DIR / f"{name}.postgres.sql").exists(), name)

    def test_full_script_matches_upgrade(self) -> None:
        """v7.sql creates exactly the objects v6.sql followed by
        upgrade-to-v7.sql create, and v1.sql followed by every upgrade."""
        fresh, from_v6, from_v1 = self.db_path(), self.db_path(), self.db_path()
        run_scripts(fresh, "v7")
        run_scripts(from_v6, "v6", "upgrade-to-v7")
        run_scripts(
            from_v1,
            "v1",
            "upgrade-to-v2",
            "upgrade-to-v3",
            "upgrade-to-v4",
            "upgrade-to-v5",
            "upgrade-to-v6",
            "upgrade-to-v7",
        )
        objects = schema_objects(fresh)
        self.assertEqual(objects, schema_objects(from_v6))
        self.assertEqual(objects, schema_objects(from_v1))
        names = {name for _, name, _, _ in objects}
        self.assertTrue(
            {"account_rooms", "account_directs", "mentions", "refresh_tokens"} <= names, names
        )

    async def test_upgrade_keeps_data(self) -> None:
        """A v6 database with accounts and messages, opened by this
        parkchat, is upgraded in place (backup kept); its messages read as
        before (no mentions), and account state starts empty and works."""
        path = self.db_path()
        old = open_sqlite(path, schema_dir=self.v6_only())
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
        await old.insert_messages(
            [
                Message(
                    room="garden", nickname="bob", content=f"m{i}", timestamp_ms=T0, user_id=bob_id
                )
                for i in range(3)
            ]
        )
        await old.close()
        self.assertEqual(query(path, "SELECT version FROM schema_version"), [(6,)])

        store = open_sqlite(path)
        self.addCleanup(store.close)
        self.assertEqual(query(path, "SELECT version FROM schema_version"), [(latest_version(),)])
        self.assertTrue(Path(f"{path}.v6.bak").exists())
        messages = await store.room_messages_after("garden", 0, 10)
        self.assertEqual([(m.seq, m.mentions) for m in messages], [(1, ()), (2, ()), (3, ())])
        self.assertEqual(await store.account_rooms(alice_id), [])
        state = await store.add_account_room(alice_id, "garden", T0)
        self.assertEqual((state.seq, state.read_seq), (3, 3))
        fresh = self.db_path()
        prepare_sqlite(fresh)
        self.assertEqual(schema_objects(path), schema_objects(fresh))

    def test_counts_search_the_indexes(self) -> None:
        """Unread and mention counts read index ranges: messages by (room,
        seq), mentions by (room, seq) too; no table is scanned."""
        path = self.db_path()
        prepare_sqlite(path)
        conn = sqlite3.connect(path)
        self.addCleanup(conn.close)
        conn.executemany(
            "INSERT INTO users (nickname, nickname_key, password_hash, created_ms, "
            "password_changed_ms) VALUES (?, ?, 'x', 0, 0)",
            [(f"u{i}", f"u{i}") for i in range(1, 21)],
        )
        conn.executemany(
            "INSERT INTO messages (room, user_id, nickname, content, created_ms, seq) "
            "VALUES (?, ?, 'u', 'hi', 0, ?)",
            [(f"room{i % 50}", 1 + i % 20, i // 50 + 1) for i in range(5000)],
        )
        conn.executemany(
            "INSERT INTO mentions (room, seq, user_id, name) VALUES (?, ?, ?, ?)",
            [(f"room{i % 50}", i // 50 + 1, 1 + i % 7, f"u{1 + i % 7}") for i in range(0, 5000, 3)],
        )
        conn.execute("ANALYZE")
        conn.commit()
        txn = SQLitePlans(conn)
        unread, mentions = room_counts_txn(txn, SQLITE, 2, "room7", 40)
        self.assertEqual(unread, 60)
        self.assertGreater(mentions, 0)
        for plan in txn.plans:
            text = " / ".join(plan)
            self.assertNotIn("SCAN messages", text)
            self.assertNotIn("SCAN mentions", text)
