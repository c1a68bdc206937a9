"""The shipped version-4 schema (per-room and per-conversation positions,
session numbers) on SQLite: the full script and the upgrades build the same
database, an upgrade numbers the existing messages in id order and later
messages go on from there, and the reads by position search their indexes.
The PostgreSQL side is in ``test_postgres``; the store methods are held to
their contracts in the ``test_store_*`` modules."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

from twisted.trial.unittest import TestCase

from parkchat.model import Message
from parkchat.store.schema import SCHEMA_DIR, SchemaError, latest_version
from parkchat.store.sql.direct import direct_messages_after_txn, direct_messages_before_txn
from parkchat.store.sql.messages import (
    current_seq_txn,
    room_messages_after_txn,
    room_messages_before_txn,
    room_positions_txn,
)
from parkchat.store.sqlite import SQLITE, open_sqlite, prepare_sqlite
from tests.store_support import T0, SQLitePlans
from tests.test_schema_v2 import (
    insert_old_direct,
    insert_old_message,
    insert_old_user,
    insert_row,
    query,
    run_scripts,
    schema_objects,
)


def chat(room: str, content: str) -> Message:
    return Message(room=room, nickname="alice", content=content, timestamp_ms=T0)


class SchemaV4Tests(TestCase):
    """The shipped version-4 scripts."""

    def db_path(self) -> str:
        directory = Path(self.mktemp())
        directory.mkdir()
        return str(directory / "chat.db")

    def v3_only(self) -> Path:
        """A schema directory holding the shipped scripts up to version 3."""
        directory = Path(self.mktemp())
        directory.mkdir()
        for name in ("v1.sql", "upgrade-to-v2.sql", "upgrade-to-v3.sql", "v3.sql"):
            shutil.copy(SCHEMA_DIR / name, directory / name)
        return directory

    def test_latest_is_at_least_four(self) -> None:
        """Version 4 is shipped (full scripts and upgrades, both engines)."""
        self.assertGreaterEqual(latest_version(), 4)
        for name in ("v4", "upgrade-to-v4"):
            self.assertTrue((SCHEMA_DIR / f"{name}.sql").exists(), name)
            self.assertTrue((SCHEMA_DIR / f"{name}.postgres.sql").exists(), name)

    def test_full_script_matches_upgrade(self) -> None:
        """v4.sql creates exactly the objects (type, name, table and SQL) that
        v3.sql followed by upgrade-to-v4.sql create (and v1.sql followed by
        every upgrade): the rebuilt tables come out as v4.sql writes them,
        and nothing of the tables they replace is left."""
        fresh, from_v3, from_v1 = self.db_path(), self.db_path(), self.db_path()
        run_scripts(fresh, "v4")
        run_scripts(from_v3, "v3", "upgrade-to-v4")
        run_scripts(from_v1, "v1", "upgrade-to-v2", "upgrade-to-v3", "upgrade-to-v4")
        objects = schema_objects(fresh)
        self.assertEqual(objects, schema_objects(from_v3))
        self.assertEqual(objects, schema_objects(from_v1))
        names = {name for _, name, _, _ in objects}
        self.assertTrue(
            {
                "messages_room_seq",
                "room_sequences",
                "direct_messages_seq",
                "conversation_sequences",
                "session_counters",
            }
            <= names,
            names,
        )
        self.assertFalse({n for n in names if n.endswith("_v3")}, names)

    async def test_upgrade_numbers_existing_messages(self) -> None:
        """A real v3 database with messages in several rooms (ids
        interleaved, some deleted) and direct messages in several
        conversations, opened by this parkchat, is upgraded in place (backup
        kept): each room's messages are numbered 1, 2, 3, ... in id order,
        each conversation's too (both directions together, notes to self
        apart), the counters hold the last numbers, and new messages go on
        after them with ids above every id ever given (also a deleted one)."""
        path = self.db_path()
        prepare_sqlite(path, self.v3_only())
        old = open_sqlite(path, schema_dir=self.v3_only())
        await old.close()
        alice = insert_old_user(path, "alice", b"hash-a")
        bob = insert_old_user(path, "bob", b"hash-b")
        carol = insert_old_user(path, "carol", b"hash-c")
        rooms = ["lobby", "garden", "lobby", "attic", "garden", "lobby", "lobby", "garden"]
        ids = [insert_old_message(path, room, "alice", f"m{i}") for i, room in enumerate(rooms)]
        # One deleted from the middle of lobby, and the newest message of all.
        insert_row(path, "DELETE FROM messages WHERE id IN (?, ?)", (ids[2], ids[7]))
        pairs = [
            (alice, bob),
            (bob, alice),
            (alice, alice),
            (carol, bob),
            (alice, bob),
            (alice, alice),
        ]
        dm_ids = [insert_old_direct(path, f.id, t.id, f"d{i}") for i, (f, t) in enumerate(pairs)]
        self.assertEqual(query(path, "SELECT version FROM schema_version"), [(3,)])

        store = open_sqlite(path)
        self.addCleanup(store.close)
        self.assertEqual(query(path, "SELECT version FROM schema_version"), [(latest_version(),)])
        self.assertTrue(Path(f"{path}.v3.bak").exists())

        lobby = await store.room_messages_after("lobby", 0, 10)
        self.assertEqual(
            [(m.id, m.seq, m.content) for m in lobby],
            [(ids[0], 1, "m0"), (ids[5], 2, "m5"), (ids[6], 3, "m6")],
        )
        garden = await store.room_messages_after("garden", 0, 10)
        self.assertEqual([(m.id, m.seq) for m in garden], [(ids[1], 1), (ids[4], 2)])
        self.assertEqual(
            await store.room_positions(["lobby", "garden", "attic", "nowhere"]),
            {"lobby": 3, "garden": 2, "attic": 1},
        )
        self.assertEqual(await store.recent_messages("lobby", 10), lobby)

        positions = await store.insert_messages(
            [chat("garden", "new"), chat("lobby", "new"), chat("cellar", "new")]
        )
        self.assertEqual([seq for _, seq in positions], [3, 4, 1])
        self.assertGreater(positions[0][0], ids[7])

        history = await store.direct_history(alice.id, bob.id, 10)
        self.assertEqual(
            [(m.id, m.seq) for m in history],
            [(dm_ids[0], 1), (dm_ids[1], 2), (dm_ids[4], 3)],
        )
        notes = await store.direct_messages_after(alice.id, alice.id, 0, 10)
        self.assertEqual([(m.id, m.seq) for m in notes], [(dm_ids[2], 1), (dm_ids[5], 2)])
        self.assertEqual([m.seq for m in await store.pending_direct(bob.id, 10)], [1, 1, 3])
        self.assertEqual(await store.conversation_seq(bob.id, carol.id), 1)
        [dm_id, dm_seq] = await store.insert_direct(bob.id, alice.id, "new", T0, False)
        self.assertEqual(dm_seq, 4)
        self.assertGreater(dm_id, dm_ids[-1])
        self.assertEqual(await store.next_session(alice.id), 1)

        fresh = self.db_path()
        prepare_sqlite(fresh)
        self.assertEqual(schema_objects(path), schema_objects(fresh))

    async def test_upgrade_without_messages(self) -> None:
        """A v3 database that never stored a message upgrades with no
        counters; the first message of a room is number 1."""
        path = self.db_path()
        prepare_sqlite(path, self.v3_only())
        store = open_sqlite(path)
        self.addCleanup(store.close)
        self.assertEqual(query(path, "SELECT count(*) FROM room_sequences"), [(0,)])
        self.assertEqual(await store.insert_messages([chat("lobby", "first")]), [(1, 1)])

    def test_old_sqlite_library_refused(self) -> None:
        """With a SQLite library older than 3.35 (no RETURNING), opening a
        database fails at once with a SchemaError naming both versions,
        before the file is touched."""
        self.patch(sqlite3, "sqlite_version_info", (3, 34, 1))
        self.patch(sqlite3, "sqlite_version", "3.34.1")
        path = self.db_path()
        for attempt in (lambda: open_sqlite(path), lambda: prepare_sqlite(path)):
            error = self.assertRaises(SchemaError, attempt)
            self.assertIn("SQLite 3.34.1 is too old", str(error))
            self.assertIn("3.35.0 or newer", str(error))
        self.assertFalse(Path(path).exists())

    def plans(self) -> SQLitePlans:
        """A plan recorder on a new database with messages in many rooms and
        direct messages between many pairs, with fresh statistics."""
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
            "INSERT INTO messages (room, nickname, content, created_ms, seq) "
            "VALUES (?, 'u', 'hi', 0, ?)",
            [(f"room{i % 50}", i // 50 + 1) for i in range(5000)],
        )
        conn.executemany(
            "INSERT INTO room_sequences (room, last_seq) VALUES (?, 100)",
            [(f"room{i}",) for i in range(50)],
        )
        conn.executemany(
            "INSERT INTO direct_messages (from_user_id, to_user_id, content, created_ms, seq) "
            "VALUES (?, ?, 'hi', 0, ?)",
            [(1 + i % 20, 1 + i // 20 % 20, i + 1) for i in range(4000)],
        )
        conn.execute("ANALYZE")
        conn.commit()
        return SQLitePlans(conn)

    def test_room_reads_by_seq_search_the_index(self) -> None:
        """Reading a room's range by seq (after; before; newest) is one
        search of the (room, seq) index, already in seq order: no scan, no
        sort, however many rooms and messages there are; a room's position
        and many rooms' positions are searches of room_sequences' key."""
        txn = self.plans()
        found = [
            room_messages_after_txn(txn, SQLITE, "room7", 40, 20),
            room_messages_before_txn(txn, SQLITE, "room7", 60, 20),
            room_messages_before_txn(txn, SQLITE, "room7", None, 20),
        ]
        self.assertTrue(all(len(page) == 20 for page in found), found)
        self.assertEqual([m.seq for m in found[0]], list(range(41, 61)))
        for plan in txn.plans:
            text = " / ".join(plan)
            self.assertEqual(len(plan), 1, text)
            if text.startswith("SEARCH mentions"):
                # Each page's mentions (schema v6): one search of its key.
                self.assertIn("(room=? AND seq>? AND seq<?)", text)
                continue
            self.assertTrue(
                text.startswith("SEARCH messages USING INDEX messages_room_seq (room=?"), text
            )
        txn.plans.clear()
        self.assertEqual(current_seq_txn(txn, SQLITE, "room7"), 100)
        self.assertEqual(
            room_positions_txn(txn, SQLITE, ["room1", "room2", "none"]),
            {"room1": 100, "room2": 100},
        )
        for plan in txn.plans:
            text = " / ".join(plan)
            self.assertTrue(text.startswith("SEARCH room_sequences USING INDEX"), text)
            self.assertIn("(room=?)", text)

    def test_conversation_reads_by_seq_search_the_index(self) -> None:
        """Reading a conversation by seq searches the (from_user_id,
        to_user_id, seq) index once per direction (a pair: two; notes to
        self: one); direct_messages is never scanned."""
        txn = self.plans()
        results = [
            direct_messages_after_txn(txn, SQLITE, 3, 5, 100, 50),
            direct_messages_before_txn(txn, SQLITE, 3, 5, 3000, 50),
            direct_messages_before_txn(txn, SQLITE, 4, 4, None, 50),
        ]
        self.assertTrue(all(results), results)
        for plan, directions in zip(txn.plans, [2, 2, 1], strict=True):
            text = " / ".join(plan)
            searches = [line for line in plan if "direct_messages" in line]
            self.assertEqual(len(searches), directions, text)
            for line in searches:
                self.assertTrue(
                    line.startswith("SEARCH direct_messages USING INDEX direct_messages_seq "),
                    text,
                )
            self.assertNotIn("SCAN direct_messages", text)
