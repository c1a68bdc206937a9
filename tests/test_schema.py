"""SQLite schema management, pool settings, persistence and group commit
against a real database file."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from parkchat.model import Message
from parkchat.store.schema import SCHEMA_DIR, SchemaError, latest_version
from parkchat.store.sql import SQLStore
from parkchat.store.sql.direct import direct_history_txn
from parkchat.store.sql.messages import recent_messages_txn
from parkchat.store.sqlite import SQLITE, open_sqlite, prepare_sqlite
from parkchat.store.writer import GroupCommitWriter
from tests.store_support import SQLitePlans

T0 = 1_700_000_000_000

NOTES_V1 = """
CREATE TABLE schema_version (version INTEGER NOT NULL);
CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL);
-- a row the v1 script adds by itself: re-running it would add another
INSERT INTO notes (body) VALUES ('seed');
"""

NOTES_V2 = """
CREATE TABLE schema_version (version INTEGER NOT NULL);
CREATE TABLE notes (
    id INTEGER PRIMARY KEY,
    body TEXT NOT NULL,
    author TEXT NOT NULL DEFAULT 'unknown'
);
CREATE INDEX notes_author ON notes (author);
INSERT INTO notes (body) VALUES ('seed');
"""

NOTES_UPGRADE_TO_V2 = """
ALTER TABLE notes ADD COLUMN author TEXT NOT NULL DEFAULT 'unknown';
CREATE INDEX notes_author ON notes (author);
"""

#: Fails half-way: the column is added before the bad statement.
BROKEN_UPGRADE_TO_V2 = """
ALTER TABLE notes ADD COLUMN author TEXT NOT NULL DEFAULT 'unknown';
INSERT INTO no_such_table VALUES (1);
"""


def query(path: str, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Run one statement on a fresh connection to the file at ``path``."""
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def execute(path: str, sql: str, params: Sequence[Any] = ()) -> None:
    """Run one statement on a fresh connection to ``path`` and commit it."""
    conn = sqlite3.connect(path)
    try:
        conn.execute(sql, params)
        conn.commit()
    finally:
        conn.close()


def version_of(path: str) -> int:
    [(version,)] = query(path, "SELECT version FROM schema_version")
    return int(version)


def columns(path: str, table: str) -> list[str]:
    return [row[1] for row in query(path, f"PRAGMA table_info({table})")]


def chat(room: str, content: str) -> Message:
    return Message(room=room, nickname="alice", content=content, timestamp_ms=T0)


class SchemaTestCase(TestCase):
    """Helpers: database paths and schema directories under ``mktemp()``."""

    def db_path(self) -> str:
        path = Path(self.mktemp())
        path.mkdir()
        return str(path / "chat.db")

    def schema_dir(self, **scripts: str) -> Path:
        """A schema directory holding ``name.sql`` for each keyword
        (``upgrade_to_v2`` is written as ``upgrade-to-v2.sql``)."""
        directory = Path(self.mktemp())
        directory.mkdir()
        self.write_scripts(directory, **scripts)
        return directory

    def write_scripts(self, directory: Path, **scripts: str) -> None:
        for name, text in scripts.items():
            (directory / f"{name.replace('_', '-')}.sql").write_text(text, encoding="utf-8")

    def open_store(self, path: str) -> SQLStore:
        store = open_sqlite(path)
        self.addCleanup(store.close)
        return store


class NewDatabaseTests(SchemaTestCase):
    """A database file that does not exist yet."""

    def test_new_file_gets_latest_version(self) -> None:
        """A new file is created at the latest version of the shipped schema,
        with the users and messages tables and the history index (by room
        position; the (room, id) index is gone since v5)."""
        path = self.db_path()
        self.assertEqual(prepare_sqlite(path), (None, latest_version()))
        self.assertEqual(version_of(path), latest_version())
        objects = set(query(path, "SELECT type, name FROM sqlite_master"))
        for expected in [
            ("table", "schema_version"),
            ("table", "users"),
            ("table", "messages"),
            ("index", "messages_room_seq"),
            ("table", "room_sequences"),
        ]:
            self.assertIn(expected, objects)
        self.assertEqual(
            columns(path, "messages"),
            ["id", "room", "user_id", "nickname", "content", "created_ms", "type", "seq"],
        )
        self.assertEqual(query(path, "SELECT count(*) FROM schema_version"), [(1,)])

    def test_latest_version_counts_full_scripts_only(self) -> None:
        """The latest version is that of the highest ``vN.sql``; upgrade
        scripts and other files do not count."""
        directory = self.schema_dir(v1=NOTES_V1, v2=NOTES_V2, upgrade_to_v3="SELECT 1;")
        (directory / "README").write_text("not a schema", encoding="utf-8")
        self.assertEqual(latest_version(directory), 2)
        self.assertEqual(latest_version(SCHEMA_DIR), latest_version())

    def test_new_file_uses_full_script(self) -> None:
        """A new database is built from the latest complete ``vN.sql``, not
        from v1 plus upgrades; no backup is written."""
        directory = self.schema_dir(
            v1=NOTES_V1, v2=NOTES_V2, upgrade_to_v2="INSERT INTO no_such_table VALUES (1);"
        )
        path = self.db_path()
        self.assertEqual(prepare_sqlite(path, directory), (None, 2))
        self.assertEqual(version_of(path), 2)
        self.assertEqual(columns(path, "notes"), ["id", "body", "author"])
        self.assertFalse(Path(f"{path}.v1.bak").exists())

    def test_empty_schema_dir(self) -> None:
        """A schema directory without any ``vN.sql`` is a SchemaError naming
        the directory."""
        directory = self.schema_dir()
        path = self.db_path()
        error = self.assertRaises(SchemaError, prepare_sqlite, path, directory)
        self.assertIn("no schema files", str(error))
        self.assertIn(str(directory), str(error))

    def test_failing_creation_is_atomic(self) -> None:
        """If the creation script fails, no table of it is left behind and no
        version is recorded: the next start tries again from scratch."""
        directory = self.schema_dir(v1=NOTES_V1 + "\nINSERT INTO no_such_table VALUES (1);\n")
        path = self.db_path()
        self.assertRaises(SchemaError, prepare_sqlite, path, directory)
        self.assertEqual(query(path, "SELECT name FROM sqlite_master"), [])
        self.write_scripts(directory, v1=NOTES_V1)
        self.assertEqual(prepare_sqlite(path, directory), (None, 1))

    def test_history_query_uses_room_index(self) -> None:
        """Every form of the history query (latest, before, after) is a search
        on the (room, seq) index, already in order, after at most a
        primary-key lookup of the id bound and, for an id that is not one of
        the room's, a walk down the same index: no table scan and no sort,
        however large the table grows."""
        path = self.db_path()
        prepare_sqlite(path)
        conn = sqlite3.connect(path)
        self.addCleanup(conn.close)
        self.assertEqual(
            query(path, "SELECT name FROM sqlite_master WHERE name = 'messages_room_id'"), []
        )
        txn = SQLitePlans(conn)
        for before, after in [(None, None), (100, None), (None, 5)]:
            recent_messages_txn(txn, SQLITE, "lobby", 50, before, after)
        plans = [" / ".join(plan) for plan in txn.plans]
        # latest: 1; before and after: the id lookup, the walk (no such
        # message here), the page.
        self.assertEqual(len(plans), 7)
        for plan in plans:
            self.assertTrue(plan.startswith("SEARCH"), plan)
            self.assertTrue("messages_room_seq" in plan or "PRIMARY KEY" in plan, plan)
            self.assertNotIn("SCAN", plan)
            self.assertNotIn("TEMP B-TREE", plan)

    def test_direct_history_query_uses_pair_index(self) -> None:
        """The direct-message history of two accounts (latest, and paging
        with ``before``; a pair, and notes-to-self) searches the
        (from_user_id, to_user_id, id) index once per direction, already in
        id order: no scan and no sort of direct_messages, only of the at
        most ``limit`` rows each search keeps. The plans are taken on a
        populated table with fresh statistics, as a real database has."""
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
            "INSERT INTO direct_messages (from_user_id, to_user_id, content, created_ms, "
            "delivered, seq) VALUES (?, ?, 'hi', ?, ?, ?)",
            [(1 + i % 20, 1 + i // 20 % 20, T0 + i, i % 2, i + 1) for i in range(4000)],
        )
        conn.execute("ANALYZE")
        conn.commit()
        txn = SQLitePlans(conn)
        results = {}
        for user_id, other_id in [(3, 5), (4, 4)]:
            for before in [None, 1500]:
                results[user_id, other_id, before] = direct_history_txn(
                    txn, SQLITE, user_id, other_id, 50, before
                )
        self.assertEqual(len(txn.plans), 4)
        for plan, directions in zip(txn.plans, [2, 2, 1, 1], strict=True):
            text = " / ".join(plan)
            searches = [line for line in plan if "direct_messages" in line]
            self.assertEqual(len(searches), directions, text)
            for line in searches:
                self.assertTrue(
                    line.startswith("SEARCH direct_messages USING ")
                    and "INDEX direct_messages_pair (from_user_id=? AND to_user_id=?" in line,
                    text,
                )
            self.assertNotIn("SCAN direct_messages", text)
        # The queries the plans are for did run, and found the pairs' rows.
        self.assertTrue(all(results.values()), results)

    async def test_memory_database_has_schema(self) -> None:
        """``open_sqlite(":memory:")`` gives a working store: the schema is
        built on the pool's own connection (every connection to :memory: is
        a separate, empty database)."""
        store = open_sqlite(":memory:")
        self.addCleanup(store.close)
        [(message_id, seq)] = await store.insert_messages([chat("lobby", "hi")])
        [message] = await store.recent_messages("lobby", 10)
        self.assertEqual((message.id, message.seq, message.content), (message_id, seq, "hi"))

    def test_missing_directory(self) -> None:
        """open_sqlite refuses a path in a directory that does not exist,
        naming the directory, instead of failing later inside sqlite."""
        missing = Path(self.mktemp()) / "nope"
        error = self.assertRaises(FileNotFoundError, open_sqlite, str(missing / "chat.db"))
        self.assertIn(str(missing), str(error))


class ExistingDatabaseTests(SchemaTestCase):
    """Opening a database that already has a schema."""

    def test_reopen_does_not_rerun(self) -> None:
        """Re-opening a database at the latest version runs no script (the
        seed row is not added twice), keeps the data and writes no backup."""
        directory = self.schema_dir(v1=NOTES_V1)
        path = self.db_path()
        self.assertEqual(prepare_sqlite(path, directory), (None, 1))
        execute(path, "INSERT INTO notes (body) VALUES ('kept')")
        self.assertEqual(prepare_sqlite(path, directory), (1, 1))
        self.assertEqual(prepare_sqlite(path, directory), (1, 1))
        self.assertEqual(
            query(path, "SELECT body FROM notes ORDER BY id"),
            [("seed",), ("kept",)],
        )
        self.assertEqual(version_of(path), 1)
        self.assertEqual(list(Path(path).parent.glob("*.bak")), [])

    def test_reopen_real_schema(self) -> None:
        """The shipped schema re-opens cleanly at the same version."""
        path = self.db_path()
        prepare_sqlite(path)
        self.assertEqual(prepare_sqlite(path), (latest_version(), latest_version()))

    def test_upgrade(self) -> None:
        """A v1 database meets code with a v2 schema: the upgrade script runs,
        rows are kept, version 2 is recorded, and a copy of the v1 database is
        kept as ``<path>.v1.bak``."""
        directory = self.schema_dir(v1=NOTES_V1)
        path = self.db_path()
        prepare_sqlite(path, directory)
        execute(path, "INSERT INTO notes (body) VALUES ('before upgrade')")

        self.write_scripts(directory, v2=NOTES_V2, upgrade_to_v2=NOTES_UPGRADE_TO_V2)
        self.assertEqual(prepare_sqlite(path, directory), (1, 2))

        self.assertEqual(version_of(path), 2)
        self.assertEqual(query(path, "SELECT count(*) FROM schema_version"), [(1,)])
        self.assertEqual(
            query(path, "SELECT body, author FROM notes ORDER BY id"),
            [("seed", "unknown"), ("before upgrade", "unknown")],
        )
        self.assertIn(
            ("index", "notes_author"), query(path, "SELECT type, name FROM sqlite_master")
        )

        backup = f"{path}.v1.bak"
        self.assertTrue(Path(backup).exists())
        self.assertEqual(version_of(backup), 1)
        self.assertEqual(columns(backup, "notes"), ["id", "body"])
        self.assertEqual(
            query(backup, "SELECT body FROM notes ORDER BY id"),
            [("seed",), ("before upgrade",)],
        )
        # Now current: the next start does nothing more.
        self.assertEqual(prepare_sqlite(path, directory), (2, 2))

    def test_upgrade_several_steps(self) -> None:
        """Upgrades from v1 to v3 run every step in order, and one backup (of
        the version found) is written."""
        directory = self.schema_dir(v1=NOTES_V1)
        path = self.db_path()
        prepare_sqlite(path, directory)
        self.write_scripts(
            directory,
            v2=NOTES_V2,
            upgrade_to_v2=NOTES_UPGRADE_TO_V2,
            v3=NOTES_V2 + "CREATE TABLE tags (note INTEGER, tag TEXT);",
            # Depends on step 2 having run first.
            upgrade_to_v3="CREATE TABLE tags (note INTEGER, tag TEXT);\n"
            "INSERT INTO tags SELECT id, author FROM notes;",
        )
        self.assertEqual(prepare_sqlite(path, directory), (1, 3))
        self.assertEqual(version_of(path), 3)
        self.assertEqual(query(path, "SELECT note, tag FROM tags"), [(1, "unknown")])
        self.assertEqual(
            sorted(p.name for p in Path(path).parent.glob("*.bak")), ["chat.db.v1.bak"]
        )

    def test_failing_upgrade_is_atomic(self) -> None:
        """An upgrade script that fails half-way raises SchemaError naming the
        version, and leaves the database exactly at v1: the statements before
        the failure are rolled back and the data is intact."""
        directory = self.schema_dir(v1=NOTES_V1)
        path = self.db_path()
        prepare_sqlite(path, directory)
        self.write_scripts(directory, v2=NOTES_V2, upgrade_to_v2=BROKEN_UPGRADE_TO_V2)

        error = self.assertRaises(SchemaError, prepare_sqlite, path, directory)

        self.assertIn("version 2", str(error))
        self.assertIn("no_such_table", str(error))
        self.assertEqual(version_of(path), 1)
        self.assertEqual(columns(path, "notes"), ["id", "body"])
        self.assertEqual(query(path, "SELECT body FROM notes"), [("seed",)])
        # Once the script is fixed, the next start upgrades.
        self.write_scripts(directory, upgrade_to_v2=NOTES_UPGRADE_TO_V2)
        self.assertEqual(prepare_sqlite(path, directory), (1, 2))
        self.assertEqual(columns(path, "notes"), ["id", "body", "author"])

    def test_missing_upgrade_script(self) -> None:
        """A newer full schema without the upgrade script to reach it is a
        SchemaError naming the missing script; the database stays at v1."""
        directory = self.schema_dir(v1=NOTES_V1)
        path = self.db_path()
        prepare_sqlite(path, directory)
        self.write_scripts(directory, v2=NOTES_V2)
        error = self.assertRaises(SchemaError, prepare_sqlite, path, directory)
        self.assertIn("upgrade-to-v2.sql", str(error))
        self.assertEqual(version_of(path), 1)

    def test_newer_database_refused(self) -> None:
        """A database written by a newer parkchat is refused with a message
        giving both versions and what to do, and is left untouched."""
        path = self.db_path()
        prepare_sqlite(path)
        newer = latest_version() + 7
        execute(path, "UPDATE schema_version SET version = ?", (newer,))

        error = self.assertRaises(SchemaError, open_sqlite, path)

        message = str(error)
        self.assertIn(f"version {newer}", message)
        self.assertIn(f"({latest_version()})", message)
        self.assertIn("newer", message)
        self.assertIn("upgrade parkchat", message)
        self.assertEqual(version_of(path), newer)
        self.assertEqual(list(Path(path).parent.glob("*.bak")), [])

    def test_empty_version_table(self) -> None:
        """A version table without a row is a SchemaError, not a guess."""
        path = self.db_path()
        prepare_sqlite(path)
        execute(path, "DELETE FROM schema_version")
        error = self.assertRaises(SchemaError, prepare_sqlite, path)
        self.assertIn("schema_version", str(error))


class PoolTests(SchemaTestCase):
    """The adbapi pool's connection and what survives a restart."""

    async def test_pool_pragmas(self) -> None:
        """The pool's connection runs in WAL mode with synchronous=NORMAL,
        foreign keys enforced and a busy timeout."""

        def pragmas(txn: Any) -> dict[str, Any]:
            found = {}
            for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout"):
                txn.execute(f"PRAGMA {name}")
                found[name] = txn.fetchone()[0]
            return found

        store = self.open_store(self.db_path())
        found = await store.pool.runInteraction(pragmas)
        self.assertEqual(found["journal_mode"], "wal")
        self.assertEqual(found["synchronous"], 1)  # NORMAL
        self.assertEqual(found["foreign_keys"], 1)
        self.assertGreaterEqual(found["busy_timeout"], 1000)

    async def test_foreign_keys_enforced(self) -> None:
        """A message naming an account that does not exist is refused by the
        database (foreign keys are on), and nothing of its batch is stored."""
        store = self.open_store(self.db_path())
        bad = Message(room="lobby", nickname="ghost", content="x", timestamp_ms=T0, user_id=999)
        with self.assertRaises(sqlite3.IntegrityError):
            await store.insert_messages([chat("lobby", "fine"), bad])
        self.assertEqual(await store.recent_messages("lobby", 10), [])

    async def test_messages_survive_reopen(self) -> None:
        """Messages and accounts written through one store are read back by a
        new store on the same file after the first one is closed, and new
        ids keep increasing."""
        path = self.db_path()
        first = open_sqlite(path)
        positions = await first.insert_messages([chat("lobby", f"m{i}") for i in range(5)])
        user = await first.create_user("Alice", b"$2b$04$x", T0)
        await first.close()
        self.assertFalse(first.pool.running)

        second = self.open_store(path)
        history = await second.recent_messages("lobby", 50)
        self.assertEqual([(m.id, m.seq) for m in history], positions)
        self.assertEqual([m.content for m in history], [f"m{i}" for i in range(5)])
        self.assertEqual(await second.get_user("alice"), user)
        [(later, seq)] = await second.insert_messages([chat("lobby", "after restart")])
        self.assertGreater(later, positions[-1][0])
        self.assertEqual(seq, 6)


class GroupCommitSQLiteTests(SchemaTestCase):
    """GroupCommitWriter over the real SQLite pool."""

    async def test_one_turn_one_batch(self) -> None:
        """Many messages submitted in one reactor turn are committed in one
        transaction; each submitter gets its message back with its id, in
        submission order, and the database holds them in that order."""
        store = self.open_store(self.db_path())
        writer = GroupCommitWriter(store.insert_messages, reactor)
        messages = [chat("ab"[i % 2], f"m{i}") for i in range(500)]
        results = await gatherResults([writer.submit(m) for m in messages])

        self.assertEqual(writer.batches, 1)
        self.assertEqual(writer.last_batch_size, 500)
        ids = [m.id for m in results]
        self.assertEqual(ids, list(range(ids[0], ids[0] + 500)))
        self.assertEqual([m.seq for m in results[0::2]], list(range(1, 251)))
        self.assertEqual([m.seq for m in results[1::2]], list(range(1, 251)))
        self.assertEqual([m.content for m in results], [m.content for m in messages])
        self.assertEqual(await store.recent_messages("a", 1000), results[0::2])
        self.assertEqual(await store.recent_messages("b", 1000), results[1::2])
        await writer.flush()

    async def test_batches_bounded(self) -> None:
        """A backlog larger than ``max_batch`` is written in consecutive
        batches of at most ``max_batch``, keeping submission order."""
        store = self.open_store(self.db_path())
        writer = GroupCommitWriter(store.insert_messages, reactor, max_batch=100)
        messages = [chat("lobby", f"m{i}") for i in range(250)]
        results = await gatherResults([writer.submit(m) for m in messages])

        self.assertEqual(writer.batches, 3)
        self.assertEqual(writer.last_batch_size, 50)
        ids = [m.id for m in results]
        self.assertEqual(ids, sorted(ids))
        self.assertEqual(len(set(ids)), 250)
        self.assertEqual(await store.recent_messages("lobby", 1000), results)

    async def test_submissions_during_commit_form_next_batch(self) -> None:
        """Messages submitted while a batch is being committed wait, then go
        into the next batch together; flush fires once all are stored."""
        store = self.open_store(self.db_path())
        later: list[Deferred[Message]] = []

        def insert(messages: Sequence[Message]) -> Deferred[list[tuple[int, int]]]:
            d = store.insert_messages(messages)
            if not later:
                # The first transaction is now on the database thread.
                later.extend(writer.submit(chat("lobby", f"b{i}")) for i in range(10))
            return d

        writer = GroupCommitWriter(insert, reactor)
        first = [writer.submit(chat("lobby", f"a{i}")) for i in range(10)]
        await writer.flush()

        self.assertEqual(writer.batches, 2)
        self.assertEqual(writer.last_batch_size, 10)
        self.assertEqual(writer.pending, 0)
        stored = await gatherResults(first + later)
        self.assertEqual([m.content for m in stored][:3], ["a0", "a1", "a2"])
        self.assertEqual(await store.recent_messages("lobby", 100), stored)


class ConcurrentStartTests(TestCase):
    """Several processes opening one new SQLite file at once."""

    def test_step_applied_by_another_process_is_skipped(self) -> None:
        """A process that read "no schema" and then lost the race for the
        write lock finds the schema in place and applies nothing."""
        from parkchat.store.schema import SQLiteSchema, read_script

        path = self.mktemp()
        late, early = sqlite3.connect(path), sqlite3.connect(path)
        self.addCleanup(late.close)
        self.addCleanup(early.close)
        self.assertIsNone(SQLiteSchema(late).current_version())
        latest = latest_version()
        script = read_script(SCHEMA_DIR, f"v{latest}", "sqlite")
        self.assertEqual(SQLiteSchema(early).apply(script, latest, None), latest)
        # the late one would fail with "table already exists" if it ran the script
        self.assertEqual(SQLiteSchema(late).apply(script, latest, None), latest)
        self.assertEqual(late.execute("SELECT count(*) FROM schema_version").fetchone(), (1,))

    def test_statements_split_on_sql_boundaries(self) -> None:
        """Semicolons inside strings and comments do not split statements."""
        from parkchat.store.schema import _statements

        script = (
            "CREATE TABLE t (x TEXT DEFAULT ';');\n"
            "-- a comment; here\n"
            "INSERT INTO t VALUES ('a;b');\n"
        )
        self.assertEqual(len(_statements(script)), 2)


class CheckpointTests(SchemaTestCase):
    """WAL checkpoints run on their own connection, not inside commits."""

    def in_main_file(self, path: str) -> int:
        """Messages in the database file itself, ignoring the WAL."""
        conn = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
        try:
            (count,) = conn.execute("SELECT count(*) FROM messages").fetchone()
        finally:
            conn.close()
        return int(count)

    async def insert_three(self, every: int) -> tuple[str, Any]:
        from parkchat.store.sqlite import SQLiteFileStore

        path = self.db_path()
        store = open_sqlite(path)
        self.addCleanup(store.close)
        assert isinstance(store, SQLiteFileStore)
        store.checkpoint_every = every
        self.assertEqual(await store.pool.runQuery("PRAGMA wal_autocheckpoint"), [(0,)])
        for i in range(3):
            await store.insert_messages([chat("lobby", f"m{i}")])
        for _ in range(200):  # bounded wait for a checkpoint in flight
            if not store._checkpointing:
                break
            await deferLater(reactor, 0.01, lambda: None)
        return path, store

    def test_checkpointer_moves_the_wal(self) -> Deferred[None]:
        """After ``checkpoint_every`` batches the second connection copies
        the WAL into the database file."""

        async def run() -> None:
            path, store = await self.insert_three(every=3)
            self.assertFalse(store._checkpointing)
            self.assertEqual(self.in_main_file(path), 3)

        return Deferred.fromCoroutine(run())

    def test_commits_never_checkpoint(self) -> Deferred[None]:
        """Below the threshold, committed messages stay in the WAL: no
        commit pays for a checkpoint."""

        async def run() -> None:
            path, _ = await self.insert_three(every=1000)
            self.assertEqual(self.in_main_file(path), 0)

        return Deferred.fromCoroutine(run())
