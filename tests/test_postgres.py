"""What is particular to the PostgreSQL store: its schema scripts and
migrations, instances starting at once, connections the server drops, group
commit with server-assigned ids, the shared settings, and ``tap`` choosing
it by URL.

The common store behaviour runs against PostgreSQL in ``test_store`` and
the per-area ``test_store_*`` modules. Everything here needs
``PARKCHAT_TEST_POSTGRES`` (see ``tests/postgres_support.py``) except
``ShippedScriptsTests``.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import gatherResults
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from parkchat.config import Settings
from parkchat.errors import AccountExists
from parkchat.model import Message, StoredUser, nickname_key
from parkchat.store import is_postgres_url
from parkchat.store.schema import SCHEMA_DIR, SCHEMA_LOCK_KEY, SchemaError, latest_version
from parkchat.store.sql import SQLStore
from parkchat.store.writer import GroupCommitWriter
from tests import postgres_support
from tests.postgres_support import query

# The upgrade scripts of test_schema's notes schema are engine-neutral.
from tests.test_schema import BROKEN_UPGRADE_TO_V2, NOTES_UPGRADE_TO_V2

T0 = 1_700_000_000_000

# The notes schema of test_schema, in SQL both engines accept.
NOTES_V1 = """
CREATE TABLE schema_version (version INTEGER NOT NULL);
CREATE TABLE notes (id BIGSERIAL PRIMARY KEY, body TEXT NOT NULL);
INSERT INTO notes (body) VALUES ('seed');
"""

NOTES_V2 = """
CREATE TABLE schema_version (version INTEGER NOT NULL);
CREATE TABLE notes (
    id BIGSERIAL PRIMARY KEY,
    body TEXT NOT NULL,
    author TEXT NOT NULL DEFAULT 'unknown'
);
CREATE INDEX notes_author ON notes (author);
INSERT INTO notes (body) VALUES ('seed');
"""


def chat(room: str, content: str, user_id: int | None = None) -> Message:
    return Message(room=room, nickname="alice", content=content, timestamp_ms=T0, user_id=user_id)


def insert_old_message(dsn: str, room: str, content: str, user_id: int | None = None) -> int:
    """A room message as schemas before v4 stored it (no seq); its id.
    This parkchat's store methods no longer fit an older schema."""
    [(message_id,)] = query(
        dsn,
        "INSERT INTO messages (room, user_id, nickname, content, created_ms) "
        "VALUES (%s, %s, 'alice', %s, %s) RETURNING id",
        (room, user_id, content, T0),
    )
    return int(message_id)


def insert_old_user(dsn: str, nickname: str, password_hash: bytes) -> StoredUser:
    """An account as schemas before v5 stored it (no name skeleton)."""
    [(user_id,)] = query(
        dsn,
        "INSERT INTO users (nickname, nickname_key, password_hash, created_ms, "
        "password_changed_ms) VALUES (%s, %s, %s, %s, %s) RETURNING id",
        (nickname, nickname_key(nickname), password_hash.decode("ascii"), T0, T0),
    )
    return StoredUser(int(user_id), nickname, password_hash)


def insert_old_direct(dsn: str, from_user_id: int, to_user_id: int, content: str) -> int:
    """An undelivered direct message as schemas v2 and v3 stored it; its id."""
    [(message_id,)] = query(
        dsn,
        "INSERT INTO direct_messages (from_user_id, to_user_id, content, created_ms) "
        "VALUES (%s, %s, %s, %s) RETURNING id",
        (from_user_id, to_user_id, content, T0),
    )
    return int(message_id)


def version_of(dsn: str) -> int:
    [(version,)] = query(dsn, "SELECT version FROM schema_version")
    return int(version)


def catalog(dsn: str) -> dict[str, list[tuple[Any, ...]]]:
    """Tables, columns (type, nullability, default), indexes and constraints
    of the public schema: what makes two databases the same database."""
    return {
        "columns": query(
            dsn,
            "SELECT table_name, column_name, data_type, is_nullable, column_default "
            "FROM information_schema.columns WHERE table_schema = 'public' "
            "ORDER BY table_name, column_name",
        ),
        "indexes": query(
            dsn,
            "SELECT tablename, indexname, indexdef FROM pg_indexes "
            "WHERE schemaname = 'public' ORDER BY indexname",
        ),
        "constraints": query(
            dsn,
            "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) "
            "FROM pg_constraint WHERE connamespace = 'public'::regnamespace "
            "ORDER BY conname",
        ),
    }


class PostgresPlans:
    """Stands in for the transaction a store's ``*_txn`` function gets, on a
    real connection: each query runs, and its plan (EXPLAIN's text) is kept
    in ``plans``."""

    def __init__(self, dsn: str) -> None:
        self.conn = postgres_support.psycopg2.connect(dsn)
        self.cursor = self.conn.cursor()
        self.plans: list[str] = []

    def execute(self, sql: str, params: Any = ()) -> None:
        self.cursor.execute("EXPLAIN " + sql, params)
        self.plans.append("\n".join(row[0] for row in self.cursor.fetchall()))
        self.cursor.execute(sql, params)

    def fetchone(self) -> Any:
        return self.cursor.fetchone()

    def fetchall(self) -> list[Any]:
        return self.cursor.fetchall()

    def close(self) -> None:
        self.conn.close()


class ShippedScriptsTests(TestCase):
    """The PostgreSQL variants shipped beside the SQLite scripts (no server
    needed)."""

    def test_every_script_has_a_postgres_variant(self) -> None:
        """Every shipped ``*.sql`` has a ``*.postgres.sql`` beside it, and no
        PostgreSQL script uses SQLite-only syntax: ``read_script`` would fall
        back to the SQLite text otherwise."""
        generic = sorted(
            p.name for p in SCHEMA_DIR.glob("*.sql") if not p.name.endswith(".postgres.sql")
        )
        self.assertIn("v1.sql", generic)
        for name in generic:
            variant = SCHEMA_DIR / name.replace(".sql", ".postgres.sql")
            self.assertTrue(variant.exists(), f"{variant.name} is missing")
            text = variant.read_text(encoding="utf-8").upper()
            self.assertNotIn("AUTOINCREMENT", text)
            self.assertNotIn("PRAGMA", text)

    def test_is_postgres_url(self) -> None:
        """``postgresql://`` and ``postgres://`` URLs choose PostgreSQL; file
        names and ``:memory:`` do not."""
        self.assertTrue(is_postgres_url("postgresql://u@127.0.0.1:5432/chat"))
        self.assertTrue(is_postgres_url("postgres://u@db/chat"))
        for db in ("chat.db", ":memory:", "/var/lib/parkchat/postgresql.db"):
            self.assertFalse(is_postgres_url(db), db)


class PostgresTestCase(TestCase):
    """A new database per test."""

    skip = postgres_support.SKIP_REASON

    def setUp(self) -> None:
        self.dsn = postgres_support.create_database(self.addCleanup)

    def open_store(self, dsn: str | None = None, **kwargs: Any) -> SQLStore:
        from parkchat.store.postgres import open_postgres

        store = open_postgres(dsn or self.dsn, **kwargs)
        self.addCleanup(store.close)
        return store

    def prepare(self, schema_dir: Path = SCHEMA_DIR) -> tuple[int | None, int]:
        from parkchat.store.postgres import prepare_postgres

        return prepare_postgres(self.dsn, schema_dir)

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

    def shipped_up_to(self, version: int) -> Path:
        """A schema directory holding the shipped scripts (both engines) up
        to ``version``: what a parkchat of that version ships."""
        directory = Path(self.mktemp())
        directory.mkdir()
        names = ["v1"] + [f"upgrade-to-v{n}" for n in range(2, version + 1)] + [f"v{version}"]
        for name in dict.fromkeys(names):
            for suffix in (".sql", ".postgres.sql"):
                shutil.copy(SCHEMA_DIR / f"{name}{suffix}", directory / f"{name}{suffix}")
        return directory

    def shipped_v1_only(self) -> Path:
        """A schema directory holding the shipped v1 scripts only."""
        return self.shipped_up_to(1)


class PostgresSchemaTests(PostgresTestCase):
    """Schema creation and upgrades on PostgreSQL."""

    def test_new_database_gets_latest_version(self) -> None:
        """A new database is built from the latest ``vN.postgres.sql``: one
        version row, every table, 64-bit ids and times; starting again
        changes nothing."""
        self.assertEqual(self.prepare(), (None, latest_version()))
        self.assertEqual(version_of(self.dsn), latest_version())
        self.assertEqual(query(self.dsn, "SELECT count(*) FROM schema_version"), [(1,)])
        tables = {t for (t,) in query(self.dsn, "SELECT tablename FROM pg_tables")}
        self.assertTrue(
            {
                "users",
                "messages",
                "direct_messages",
                "bans",
                "server_settings",
                "revoked_tokens",
                "token_cutoffs",
                "room_sequences",
                "conversation_sequences",
                "session_counters",
            }
            <= tables,
            tables,
        )
        types = dict(
            ((table, column), kind) for table, column, kind, _, _ in catalog(self.dsn)["columns"]
        )
        for key in [
            ("messages", "id"),
            ("messages", "user_id"),
            ("messages", "created_ms"),
            ("users", "id"),
            ("direct_messages", "to_user_id"),
            ("bans", "expires_ms"),
            ("revoked_tokens", "expires_s"),
            ("token_cutoffs", "user_id"),
            ("token_cutoffs", "before_ms"),
            ("messages", "seq"),
            ("room_sequences", "last_seq"),
            ("direct_messages", "seq"),
            ("conversation_sequences", "last_seq"),
            ("session_counters", "last_session"),
        ]:
            self.assertEqual(types[key], "bigint", key)
        self.assertEqual(self.prepare(), (latest_version(), latest_version()))
        self.assertEqual(query(self.dsn, "SELECT count(*) FROM schema_version"), [(1,)])

    def test_full_script_matches_upgrade(self) -> None:
        """The latest ``vN.postgres.sql`` builds exactly the database
        (columns, types, defaults, indexes, constraints) that
        ``v1.postgres.sql`` plus every ``upgrade-to-vN.postgres.sql`` build."""
        self.assertEqual(self.prepare(self.shipped_v1_only()), (None, 1))
        self.assertEqual(self.prepare(), (1, latest_version()))
        fresh = postgres_support.create_database(self.addCleanup)
        from parkchat.store.postgres import prepare_postgres

        prepare_postgres(fresh)
        self.assertEqual(catalog(self.dsn), catalog(fresh))

    async def test_upgrade_v1_to_v2_keeps_data(self) -> None:
        """A database made by a v1 parkchat is upgraded in place: accounts,
        messages and ids are kept, and the version-2 tables work."""
        old = self.open_store(schema_dir=self.shipped_v1_only())
        await old.close()
        alice = insert_old_user(self.dsn, "Alice", b"hash-a")
        bob = insert_old_user(self.dsn, "bob", b"hash-b")
        message_id = insert_old_message(self.dsn, "lobby", "from v1", alice.id)
        self.assertEqual(version_of(self.dsn), 1)

        store = self.open_store()
        self.assertEqual(version_of(self.dsn), latest_version())
        self.assertEqual(await store.get_user("alice"), StoredUser(alice.id, "Alice", b"hash-a"))
        [kept] = await store.recent_messages("lobby", 10)
        self.assertEqual((kept.id, kept.content, kept.user_id), (message_id, "from v1", alice.id))
        [(later, _)] = await store.insert_messages([chat("lobby", "from v2")])
        self.assertGreater(later, message_id)
        await store.insert_direct(alice.id, bob.id, "new in v2", T0, False)
        self.assertEqual([m.content for m in await store.pending_direct(bob.id, 5)], ["new in v2"])
        await store.set_ban(bob.id, "", T0, None)
        self.assertEqual([b.user_id for b in await store.list_bans()], [bob.id])

    async def test_upgrade_v2_to_v3_keeps_data(self) -> None:
        """A database made by a v2 parkchat is upgraded in place: accounts,
        messages, direct messages and bans are kept, the version-3 tables
        work, and the result matches a database created at the latest
        version."""
        old = self.open_store(schema_dir=self.shipped_up_to(2))
        alice = insert_old_user(self.dsn, "Alice", b"hash-a")
        bob = insert_old_user(self.dsn, "bob", b"hash-b")
        await old.set_ban(bob.id, "spam", T0, None)
        await old.close()
        message_id = insert_old_message(self.dsn, "lobby", "from v2", alice.id)
        insert_old_direct(self.dsn, alice.id, bob.id, "dm from v2")
        self.assertEqual(version_of(self.dsn), 2)

        store = self.open_store()
        self.assertEqual(version_of(self.dsn), latest_version())
        self.assertEqual(await store.get_user("alice"), StoredUser(alice.id, "Alice", b"hash-a"))
        [kept] = await store.recent_messages("lobby", 10)
        self.assertEqual((kept.id, kept.content, kept.user_id), (message_id, "from v2", alice.id))
        self.assertEqual([m.content for m in await store.pending_direct(bob.id, 5)], ["dm from v2"])
        self.assertEqual(
            [m.content for m in await store.direct_history(bob.id, alice.id, 5)], ["dm from v2"]
        )
        self.assertEqual(
            [(b.user_id, b.reason) for b in await store.list_bans()], [(bob.id, "spam")]
        )
        await store.revoke_token("jti-1", T0 // 1000 + 60)
        self.assertEqual(await store.list_revoked_tokens(T0 // 1000), [("jti-1", T0 // 1000 + 60)])
        await store.set_token_cutoff(alice.id, T0 + 1)
        self.assertEqual(await store.list_token_cutoffs(), [(alice.id, T0 + 1)])

        fresh = postgres_support.create_database(self.addCleanup)
        from parkchat.store.postgres import prepare_postgres

        prepare_postgres(fresh)
        self.assertEqual(catalog(self.dsn), catalog(fresh))

    async def test_upgrade_v4_to_v5_backfills_name_skeletons(self) -> None:
        """A v4 database with two accounts that look alike (a Cyrillic a,
        U+0430) is upgraded: both are kept, the older holds the skeleton,
        and no third look-alike can be created (issue 15)."""
        old = self.open_store(schema_dir=self.shipped_up_to(4))
        await old.close()
        insert_old_user(self.dsn, "alice", b"hash-a")
        insert_old_user(self.dsn, "\u0430lice", b"hash-b")
        insert_old_user(self.dsn, "bob", b"hash-c")

        store = self.open_store()
        self.assertEqual(version_of(self.dsn), latest_version())
        self.assertEqual(
            query(self.dsn, "SELECT nickname, name_skeleton FROM users ORDER BY id"),
            [("alice", "alice"), ("\u0430lice", None), ("bob", "bob")],
        )
        with self.assertRaises(AccountExists):
            await store.create_user("a1ice", b"hash-d", T0)
        self.assertEqual((await store.get_user("\u0430lice")).nickname, "\u0430lice")

    async def test_upgrade_v3_to_v4_numbers_messages(self) -> None:
        """A database made by a v3 parkchat, with messages in several rooms
        (ids interleaved, one deleted) and direct messages in several
        conversations, is upgraded in place: each room's messages are
        numbered 1, 2, 3, ... in id order, each conversation's too (both
        directions together, notes to self apart), the counters hold the
        last numbers, new messages go on after them, and the result
        matches a database created at the latest version."""
        old = self.open_store(schema_dir=self.shipped_up_to(3))
        await old.close()
        alice = insert_old_user(self.dsn, "alice", b"hash-a")
        bob = insert_old_user(self.dsn, "bob", b"hash-b")
        carol = insert_old_user(self.dsn, "carol", b"hash-c")
        rooms = ["lobby", "garden", "lobby", "attic", "garden", "lobby", "lobby"]
        ids = [insert_old_message(self.dsn, room, f"m{i}") for i, room in enumerate(rooms)]
        query(self.dsn, "DELETE FROM messages WHERE id = %s", (ids[2],))
        pairs = [(alice, bob), (bob, alice), (alice, alice), (carol, bob), (alice, bob)]
        dm_ids = [
            insert_old_direct(self.dsn, f.id, t.id, f"d{i}") for i, (f, t) in enumerate(pairs)
        ]
        self.assertEqual(version_of(self.dsn), 3)

        store = self.open_store()
        self.assertEqual(version_of(self.dsn), latest_version())
        lobby = await store.room_messages_after("lobby", 0, 10)
        self.assertEqual([(m.id, m.seq) for m in lobby], [(ids[0], 1), (ids[5], 2), (ids[6], 3)])
        garden = await store.room_messages_before("garden", None, 10)
        self.assertEqual([(m.id, m.seq) for m in garden], [(ids[1], 1), (ids[4], 2)])
        self.assertEqual(
            await store.room_positions(["lobby", "garden", "attic", "nowhere"]),
            {"lobby": 3, "garden": 2, "attic": 1},
        )
        positions = await store.insert_messages([chat("lobby", "new"), chat("attic", "new")])
        self.assertEqual([seq for _, seq in positions], [4, 2])
        self.assertGreater(positions[0][0], ids[-1])

        history = await store.direct_history(bob.id, alice.id, 10)
        self.assertEqual(
            [(m.id, m.seq) for m in history], [(dm_ids[0], 1), (dm_ids[1], 2), (dm_ids[4], 3)]
        )
        self.assertEqual(await store.conversation_seq(alice.id, alice.id), 1)
        self.assertEqual(await store.conversation_seq(bob.id, carol.id), 1)
        [(_, dm_seq)] = [await store.insert_direct(alice.id, bob.id, "new", T0, False)]
        self.assertEqual(dm_seq, 4)
        self.assertEqual(await store.next_session(bob.id), 1)

        fresh = postgres_support.create_database(self.addCleanup)
        from parkchat.store.postgres import prepare_postgres

        prepare_postgres(fresh)
        self.assertEqual(catalog(self.dsn), catalog(fresh))

    def test_room_reads_by_seq_use_the_index(self) -> None:
        """On a populated, analysed table a room's range by seq (after,
        before, newest) is read through the (room, seq) index in seq order,
        and positions through room_sequences' key: no sequential scan."""
        from parkchat.store.postgres import POSTGRES
        from parkchat.store.sql.messages import (
            current_seq_txn,
            room_messages_after_txn,
            room_messages_before_txn,
            room_positions_txn,
        )

        self.prepare()
        query(
            self.dsn,
            "INSERT INTO messages (room, nickname, content, created_ms, seq) "
            "SELECT 'room' || mod(g, 50), 'u', 'hi', 0, g / 50 + 1 "
            "FROM generate_series(0, 49999) g",
        )
        # Counters of many more rooms than have messages here: enough rows
        # that reading them all would cost more than a search.
        query(
            self.dsn,
            "INSERT INTO room_sequences (room, last_seq) "
            "SELECT 'room' || g, 1000 FROM generate_series(0, 19999) g",
        )
        # Mentions (schema v6) of every third message: each page reads its own.
        query(
            self.dsn,
            "INSERT INTO mentions (room, seq, name) "
            "SELECT 'room' || mod(g, 50), g / 50 + 1, '@room' "
            "FROM generate_series(0, 49999, 3) g",
        )
        query(self.dsn, "ANALYZE")
        txn = PostgresPlans(self.dsn)
        self.addCleanup(txn.close)
        pages = [
            room_messages_after_txn(txn, POSTGRES, "room7", 400, 20),
            room_messages_before_txn(txn, POSTGRES, "room7", 600, 20),
            room_messages_before_txn(txn, POSTGRES, "room7", None, 20),
        ]
        self.assertEqual([m.seq for m in pages[0]], list(range(401, 421)))
        self.assertEqual([m.seq for m in pages[1]], list(range(580, 600)))
        self.assertEqual([m.seq for m in pages[2]], list(range(981, 1001)))
        self.assertTrue(all(m.mentions in ((), ("@room",)) for page in pages for m in page))
        for plan in txn.plans:
            self.assertNotIn("Seq Scan", plan)
            if " on mentions" in plan:
                self.assertIn("mentions_pkey", plan)
                continue
            self.assertIn("Index Scan", plan)
            self.assertIn("using messages_room_seq on messages", plan)
            self.assertNotIn("Sort", plan)
            self.assertNotIn("Seq Scan", plan)
        del txn.plans[:]
        self.assertEqual(current_seq_txn(txn, POSTGRES, "room3"), 1000)
        self.assertEqual(
            room_positions_txn(txn, POSTGRES, ["room1", "room2", "none"]),
            {"room1": 1000, "room2": 1000},
        )
        for plan in txn.plans:
            self.assertIn("room_sequences_pkey", plan)

    def test_account_counts_use_the_indexes(self) -> None:
        """Unread and mention counts (schema v6) read index ranges of
        messages and mentions: no sequential scan of either, however many
        messages the rooms hold."""
        from parkchat.store.postgres import POSTGRES
        from parkchat.store.sql.state import room_counts_txn

        self.prepare()
        query(
            self.dsn,
            "INSERT INTO users (nickname, nickname_key, password_hash, created_ms, "
            "password_changed_ms) SELECT 'u' || g, 'u' || g, 'x', 0, 0 "
            "FROM generate_series(1, 20) g",
        )
        query(
            self.dsn,
            "INSERT INTO messages (room, user_id, nickname, content, created_ms, seq) "
            "SELECT 'room' || mod(g, 50), 1 + mod(g, 20), 'u', 'hi', 0, g / 50 + 1 "
            "FROM generate_series(0, 49999) g",
        )
        query(
            self.dsn,
            "INSERT INTO mentions (room, seq, user_id, name) "
            "SELECT 'room' || mod(g, 50), g / 50 + 1, 1 + mod(g, 7), 'u' || (1 + mod(g, 7)) "
            "FROM generate_series(0, 49999, 3) g",
        )
        query(self.dsn, "ANALYZE")
        txn = PostgresPlans(self.dsn)
        self.addCleanup(txn.close)
        unread, mentions = room_counts_txn(txn, POSTGRES, 2, "room7", 950)
        self.assertEqual(unread, 50)
        self.assertGreater(mentions, 0)
        for plan in txn.plans:
            self.assertNotIn("Seq Scan", plan)

    def test_failing_upgrade_is_atomic(self) -> None:
        """An upgrade step that fails half-way raises SchemaError naming the
        version and leaves the database at v1 (DDL included: PostgreSQL rolls
        back the added column); fixed, the next start upgrades."""
        directory = self.schema_dir(v1=NOTES_V1)
        self.assertEqual(self.prepare(directory), (None, 1))
        self.write_scripts(directory, v2=NOTES_V2, upgrade_to_v2=BROKEN_UPGRADE_TO_V2)

        error = self.assertRaises(SchemaError, self.prepare, directory)

        self.assertIn("version 2", str(error))
        self.assertIn("no_such_table", str(error))
        self.assertEqual(version_of(self.dsn), 1)
        self.assertEqual(
            query(
                self.dsn,
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_name = 'notes' ORDER BY ordinal_position",
            ),
            [("id",), ("body",)],
        )
        self.write_scripts(directory, upgrade_to_v2=NOTES_UPGRADE_TO_V2)
        self.assertEqual(self.prepare(directory), (1, 2))
        self.assertEqual(query(self.dsn, "SELECT body, author FROM notes"), [("seed", "unknown")])

    def test_newer_database_refused(self) -> None:
        """A database written by a newer parkchat is refused, untouched."""
        self.prepare()
        newer = latest_version() + 3
        query(self.dsn, "UPDATE schema_version SET version = %s", (newer,))
        error = self.assertRaises(SchemaError, self.prepare)
        self.assertIn(f"version {newer}", str(error))
        self.assertIn("upgrade parkchat", str(error))
        self.assertEqual(version_of(self.dsn), newer)

    def run_concurrently(self, prepares: list[Callable[[], Any]]) -> list[Any]:
        """Run ``prepares`` in threads that all reach the schema lock while a
        third connection holds it, then let them go at once; return what
        each returned (or raised)."""
        holder = postgres_support.psycopg2.connect(self.dsn)
        holder.autocommit = True
        self.addCleanup(holder.close)
        with holder.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s)", (SCHEMA_LOCK_KEY,))
        results: list[Any] = [None] * len(prepares)

        def run(i: int) -> None:
            try:
                results[i] = prepares[i]()
            except Exception as e:
                results[i] = e

        threads = [threading.Thread(target=run, args=(i,)) for i in range(len(prepares))]
        for t in threads:
            t.start()
        try:
            # Polls the server's lock table, not the clock: bounded only so a
            # regression cannot hang the run.
            deadline = time.monotonic() + 20
            while True:
                [(waiting,)] = query(
                    self.dsn,
                    "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
                    "WHERE l.locktype = 'advisory' AND NOT l.granted AND d.datname = "
                    "current_database()",
                )
                if waiting == len(prepares) or time.monotonic() > deadline:
                    break
                time.sleep(0.005)
            self.assertEqual(waiting, len(prepares), "not every start reached the lock")
        finally:
            with holder.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", (SCHEMA_LOCK_KEY,))
            for t in threads:
                t.join(30)
        return results

    def test_concurrent_creation(self) -> None:
        """Three instances starting at once on an empty database: each takes
        the schema lock in turn, one creates the schema and the others find
        it made; all succeed, with one version row."""
        from parkchat.store.postgres import prepare_postgres

        results = self.run_concurrently([lambda: prepare_postgres(self.dsn)] * 3)
        self.assertEqual(results, [(None, latest_version())] * 3)
        self.assertEqual(
            query(self.dsn, "SELECT version FROM schema_version"), [(latest_version(),)]
        )

    def test_concurrent_upgrade(self) -> None:
        """Two instances upgrading one v1 database at once: the step runs
        once (its seed row is not doubled) and both start."""
        directory = self.schema_dir(v1=NOTES_V1)
        self.prepare(directory)
        self.write_scripts(
            directory,
            v2=NOTES_V2,
            upgrade_to_v2=NOTES_UPGRADE_TO_V2 + "INSERT INTO notes (body) VALUES ('once');",
        )
        from parkchat.store.postgres import prepare_postgres

        results = self.run_concurrently([lambda: prepare_postgres(self.dsn, directory)] * 2)
        self.assertEqual(results, [(1, 2), (1, 2)])
        self.assertEqual(version_of(self.dsn), 2)
        self.assertEqual(
            query(self.dsn, "SELECT body FROM notes ORDER BY id"), [("seed",), ("once",)]
        )


class PostgresDirectHistoryTests(PostgresTestCase):
    """``direct_history`` on PostgreSQL: BIGINT ids and the pair index (the
    behaviour common to every store is in ``test_store_direct``)."""

    async def test_ids_past_2_31(self) -> None:
        """Direct messages whose ids pass 2^31 (BIGSERIAL) come back, and
        page with ``before``, like any other."""
        store = self.open_store()
        alice = await store.create_user("alice", b"hash-a", T0)
        bob = await store.create_user("bob", b"hash-b", T0)
        query(self.dsn, "SELECT setval('direct_messages_id_seq', %s)", (2**31 + 10,))
        sent = [
            await store.insert_direct(alice.id, bob.id, "one", T0, False),
            await store.insert_direct(bob.id, alice.id, "two", T0 + 1, False),
            await store.insert_direct(alice.id, bob.id, "three", T0 + 2, False),
        ]
        self.assertEqual(sent, [(2**31 + 11, 1), (2**31 + 12, 2), (2**31 + 13, 3)])
        ids = [message_id for message_id, _ in sent]
        history = await store.direct_history(bob.id, alice.id, 10)
        self.assertEqual(
            [(m.id, m.content) for m in history],
            list(zip(ids, ["one", "two", "three"], strict=True)),
        )
        self.assertEqual(
            [m.id for m in await store.direct_history(alice.id, bob.id, 1, ids[2])], ids[1:2]
        )

    def test_queries_use_pair_indexes(self) -> None:
        """On a populated, analysed table the planner reads each direction
        of a conversation through the (from_user_id, to_user_id, id) index
        when paging by id and the (from_user_id, to_user_id, seq) one when
        reading by seq, never by a sequential scan of direct_messages."""
        from parkchat.store.postgres import POSTGRES, prepare_postgres
        from parkchat.store.sql.direct import (
            direct_history_txn,
            direct_messages_after_txn,
            direct_messages_before_txn,
        )

        prepare_postgres(self.dsn)
        query(
            self.dsn,
            "INSERT INTO users (nickname, nickname_key, password_hash, created_ms, "
            "password_changed_ms) SELECT 'u' || g, 'u' || g, 'x', 0, 0 "
            "FROM generate_series(1, 8) g",
        )
        # ~300 messages per direction of each pair: enough that reading a
        # page in index order beats sorting the pair's rows.
        query(
            self.dsn,
            "INSERT INTO direct_messages (from_user_id, to_user_id, content, created_ms, seq) "
            "SELECT 1 + mod(g, 8), 1 + mod(g / 8, 8), 'hi', g, g + 1 "
            "FROM generate_series(0, 19999) g",
        )
        query(self.dsn, "ANALYZE")
        txn = PostgresPlans(self.dsn)
        self.addCleanup(txn.close)
        found = [
            direct_history_txn(txn, POSTGRES, user_id, other_id, 50, before)
            for user_id, other_id, before in [(3, 5, None), (3, 5, 1500), (4, 4, 1500)]
        ] + [
            direct_messages_after_txn(txn, POSTGRES, 3, 5, 100, 50),
            direct_messages_before_txn(txn, POSTGRES, 3, 5, None, 50),
            direct_messages_before_txn(txn, POSTGRES, 4, 4, 9000, 50),
        ]
        self.assertTrue(all(found), found)
        expected = [("direct_messages_pair", 2), ("direct_messages_pair", 2)]
        expected += [("direct_messages_pair", 1), ("direct_messages_seq", 2)]
        expected += [("direct_messages_seq", 2), ("direct_messages_seq", 1)]
        for plan, (index, directions) in zip(txn.plans, expected, strict=True):
            self.assertEqual(plan.count(index), directions, plan)
            self.assertNotIn("Seq Scan on direct_messages", plan)


class PostgresPoolTests(PostgresTestCase):
    """The psycopg2 pool: settings, dropped connections, several instances."""

    def test_pool_settings(self) -> None:
        """The pool uses psycopg2 with the requested number of connections
        and reconnects after a connection is lost."""
        from parkchat.store.postgres import POSTGRES

        store = self.open_store(pool_size=3)
        self.assertIs(store.dialect, POSTGRES)
        self.assertEqual(store.pool.dbapiName, "psycopg2")
        self.assertEqual((store.pool.min, store.pool.max), (1, 3))
        self.assertTrue(store.pool.reconnect)

    async def backend_pids(self) -> list[int]:
        [(pids,)] = query(
            self.dsn,
            "SELECT coalesce(array_agg(pid), '{}') FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        return list(pids)

    def terminate(self, pids: list[int]) -> None:
        for pid in pids:
            query(self.dsn, "SELECT pg_terminate_backend(%s)", (pid,))

    async def test_read_survives_dropped_connection(self) -> None:
        """After the server terminates the pool's backend, the next read
        still answers: it fails on the dead connection, which is discarded,
        and runs again on a new one."""
        store = self.open_store(pool_size=1)
        await store.create_user("alice", b"h", T0)
        [pid] = await self.backend_pids()
        self.terminate([pid])

        found = await store.get_user("alice")

        self.assertEqual(found.nickname if found else None, "alice")
        [new_pid] = await self.backend_pids()
        self.assertNotEqual(new_pid, pid)
        # adbapi logs the failed rollback on the dead connection.
        self.flushLoggedErrors()

    async def test_reads_survive_every_connection_dropped(self) -> None:
        """With several pooled connections all terminated (a server restart),
        reads still answer: a read tries once per pooled connection more."""
        store = self.open_store(pool_size=3)
        [user] = [await store.create_user("alice", b"h", T0)]
        await gatherResults([store.get_user_by_id(user.id) for _ in range(12)])
        pids = await self.backend_pids()
        self.assertGreaterEqual(len(pids), 1)
        self.terminate(pids)

        found = await gatherResults([store.get_user_by_id(user.id) for _ in range(6)])

        self.assertEqual({u.nickname for u in found}, {"alice"})
        self.flushLoggedErrors()

    async def test_write_lost_before_commit_runs_again(self) -> None:
        """A write whose connection turns out dropped at its first statement
        (no COMMIT was sent, the server rolled it back) runs again on a new
        connection: the batch is stored once, in order, and nothing fails."""
        store = self.open_store(pool_size=1)
        await store.insert_messages([chat("lobby", "before")])
        [pid] = await self.backend_pids()
        self.terminate([pid])

        positions = await store.insert_messages([chat("lobby", "again"), chat("lobby", "too")])
        await store.insert_messages([chat("lobby", "after")])

        history = await store.recent_messages("lobby", 10)
        self.assertEqual([m.content for m in history], ["before", "again", "too", "after"])
        self.assertEqual([seq for _, seq in positions], [2, 3])
        self.assertEqual([m.seq for m in history], [1, 2, 3, 4])
        [new_pid] = await self.backend_pids()
        self.assertNotEqual(new_pid, pid)
        self.flushLoggedErrors()

    async def test_writes_survive_every_connection_dropped(self) -> None:
        """Every pooled connection terminated at once (a restart, a failover):
        concurrent batches and a registration are still stored, each once."""
        store = self.open_store(pool_size=3)
        await gatherResults([store.insert_messages([chat("lobby", f"w{i}")]) for i in range(6)])
        self.terminate(await self.backend_pids())

        await gatherResults(
            [store.insert_messages([chat("lobby", f"x{i}")]) for i in range(6)]
            + [store.create_user("zoe", b"h", T0)]
        )

        history = await store.recent_messages("lobby", 50)
        self.assertEqual(
            sorted(m.content for m in history if m.content.startswith("x")),
            [f"x{i}" for i in range(6)],
        )
        self.assertEqual([m.seq for m in history], list(range(1, 13)))
        self.assertIsNotNone(await store.get_user("zoe"))
        self.flushLoggedErrors()

    async def test_failed_batch_stores_nothing(self) -> None:
        """A batch holding a message that names a missing account is refused
        as a whole (one statement, one transaction)."""
        from psycopg2 import IntegrityError

        store = self.open_store()
        with self.assertRaises(IntegrityError):
            await store.insert_messages([chat("lobby", "fine"), chat("lobby", "bad", 999)])
        self.assertEqual(await store.recent_messages("lobby", 10), [])

    async def test_two_instances_share_one_database(self) -> None:
        """Two stores on one database (two parkchat instances) see each
        other's accounts and messages, never reuse an id, and refuse a
        nickname the other registered."""
        from parkchat.errors import AccountExists

        one, two = self.open_store(), self.open_store()
        alice = await one.create_user("Alice", b"h", T0)
        self.assertEqual(await two.get_user("alice"), alice)
        with self.assertRaises(AccountExists):
            await two.create_user("ALICE", b"x", T0)
        ids = await gatherResults(
            [one.insert_messages([chat("lobby", f"1-{i}")]) for i in range(20)]
            + [two.insert_messages([chat("lobby", f"2-{i}")]) for i in range(20)]
        )
        flat = [i for batch in ids for i, _ in batch]
        self.assertEqual(len(set(flat)), 40)
        self.assertEqual(sorted(seq for batch in ids for _, seq in batch), list(range(1, 41)))
        self.assertEqual(len(await one.recent_messages("lobby", 100)), 40)


class RoomSequenceTests(PostgresTestCase):
    """Seqs across connections (and so across instances): batches of one room
    take turns on the room's counter row and a room's seqs become visible in
    order; batches of different rooms never wait for each other (no lock
    common to the whole deployment); rooms are locked in one order, so
    batches cannot deadlock. Numbers of sessions likewise."""

    def connection(self) -> Any:
        """A connection of its own (another instance), closed at cleanup;
        a lock wait on it fails after 5 s instead of hanging the test."""
        conn = postgres_support.psycopg2.connect(self.dsn)
        self.addCleanup(conn.close)
        with conn.cursor() as cursor:
            cursor.execute("SET lock_timeout = '5s'")
        conn.commit()
        return conn

    async def lock_waiters(self, count: int) -> None:
        """Return once ``count`` backends of the test database wait for a
        lock. Polls the server, bounded so a regression cannot hang."""
        deadline = time.monotonic() + 20
        while True:
            [(waiting,)] = query(
                self.dsn,
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'",
            )
            if waiting >= count:
                return
            if time.monotonic() > deadline:
                self.fail(f"{waiting} backends wait for a lock, not {count}")
            await deferLater(reactor, 0.01, lambda: None)

    async def test_same_room_waits_for_the_earlier_batch(self) -> None:
        """A batch of a room whose earlier batch (another instance's) is still
        open waits for it, then takes the next seq: nothing of the room is
        visible meanwhile, so a reader can never see seq 2 before seq 1."""
        from parkchat.store.postgres import POSTGRES
        from parkchat.store.sql.messages import insert_messages_txn

        store = self.open_store()
        await store.ping()  # the schema exists
        other = self.connection()
        [(first_id, first_seq)] = insert_messages_txn(
            other.cursor(), POSTGRES, [chat("lobby", "first")]
        )
        second = store.insert_messages([chat("lobby", "second")])
        await self.lock_waiters(1)
        self.assertNoResult(second)
        self.assertEqual(await store.room_messages_after("lobby", 0, 10), [])
        self.assertEqual(await store.current_seq("lobby"), 0)
        other.commit()
        [(second_id, second_seq)] = await second
        self.assertEqual((first_seq, second_seq), (1, 2))
        self.assertGreater(second_id, first_id)
        stored = await store.room_messages_after("lobby", 0, 10)
        self.assertEqual([(m.seq, m.content) for m in stored], [(1, "first"), (2, "second")])

    async def test_rolled_back_batch_leaves_no_hole(self) -> None:
        """If the earlier batch rolls back, the waiting one takes its seqs:
        a failed batch leaves no gap in the room."""
        from parkchat.store.postgres import POSTGRES
        from parkchat.store.sql.messages import insert_messages_txn

        store = self.open_store()
        await store.insert_messages([chat("lobby", "one")])
        other = self.connection()
        insert_messages_txn(other.cursor(), POSTGRES, [chat("lobby", "lost")] * 3)
        waiting = store.insert_messages([chat("lobby", "two")])
        await self.lock_waiters(1)
        other.rollback()
        [(_, seq)] = await waiting
        self.assertEqual(seq, 2)
        self.assertEqual(await store.current_seq("lobby"), 2)

    async def test_different_rooms_commit_in_parallel(self) -> None:
        """Batches of different rooms from two connections are both open at
        once, and the later one commits while the earlier is still open:
        nothing serialises writes of the whole deployment. (With a global
        lock the second batch would wait for the first and fail on the
        lock timeout.) A third batch of other rooms, through a store, is
        stored meanwhile too."""
        from parkchat.store.postgres import POSTGRES
        from parkchat.store.sql.messages import insert_messages_txn

        store = self.open_store()
        await store.ping()
        one, two = self.connection(), self.connection()
        [(_, seq_a)] = insert_messages_txn(one.cursor(), POSTGRES, [chat("a", "from one")])
        [(_, seq_b)] = insert_messages_txn(two.cursor(), POSTGRES, [chat("b", "from two")])
        third = store.insert_messages([chat("d", "x"), chat("c", "y")])
        third.addTimeout(10, reactor)
        self.assertEqual([seq for _, seq in await third], [1, 1])
        two.commit()
        self.assertEqual(await store.room_positions(["a", "b", "c", "d"]), {"b": 1, "c": 1, "d": 1})
        one.commit()
        self.assertEqual((seq_a, seq_b), (1, 1))
        self.assertEqual(await store.current_seq("a"), 1)

    async def test_rooms_in_any_order_cannot_deadlock(self) -> None:
        """Batches naming the same rooms in different orders from two
        connections both commit, one after the other in every room: rooms
        are locked in sorted order. The first batch (b, m, a) is held up at
        room m by a third connection; the second (a, b) comes meanwhile.
        Locked in batch order, the first would hold b and the second a,
        each then waiting for the other's room once m is free: a deadlock."""
        store = self.open_store(pool_size=3)
        await store.insert_messages([chat("a", "0"), chat("b", "0"), chat("m", "0")])
        holder = self.connection()
        holder.cursor().execute("SELECT room FROM room_sequences WHERE room = 'm' FOR UPDATE")
        first = store.insert_messages([chat("b", "first"), chat("m", "first"), chat("a", "first")])
        await self.lock_waiters(1)
        second = store.insert_messages([chat("a", "second"), chat("b", "second")])
        await self.lock_waiters(2)
        holder.commit()
        done = gatherResults([first, second], consumeErrors=True)
        done.addTimeout(20, reactor)
        [first_seqs, second_seqs] = await done
        self.assertEqual([seq for _, seq in first_seqs], [2, 2, 2])
        self.assertEqual([seq for _, seq in second_seqs], [3, 3])

    async def test_concurrent_batches_number_rooms_without_gaps(self) -> None:
        """Many batches over a few rooms from two instances at once: every
        room's stored seqs are 1..n, each message has the seq its batch was
        told, and within a room id order is seq order."""
        one, two = self.open_store(), self.open_store()
        batches = [
            [chat("abcd"[(i * 7 + j) % 4], f"{i}-{j}") for j in range(1 + i % 5)] for i in range(40)
        ]
        results = await gatherResults(
            [(one if i % 2 else two).insert_messages(batch) for i, batch in enumerate(batches)]
        )
        told = {
            (message.content, message_id, seq)
            for batch, positions in zip(batches, results, strict=True)
            for message, (message_id, seq) in zip(batch, positions, strict=True)
        }
        stored = set()
        for room in "abcd":
            messages = await one.room_messages_after(room, 0, 1000)
            self.assertEqual([m.seq for m in messages], list(range(1, len(messages) + 1)))
            self.assertEqual([m.id for m in messages], sorted(m.id for m in messages))
            stored |= {(m.content, m.id, m.seq) for m in messages}
        self.assertEqual(stored, told)

    async def test_session_numbers_across_instances(self) -> None:
        """Sessions of one account counted by two instances at once get the
        numbers 1..n, each once."""
        one, two = self.open_store(), self.open_store()
        alice = await one.create_user("alice", b"h", T0)
        numbers = await gatherResults([store.next_session(alice.id) for store in [one, two] * 15])
        self.assertEqual(sorted(numbers), list(range(1, 31)))


class GroupCommitPostgresTests(PostgresTestCase):
    """GroupCommitWriter over the real PostgreSQL pool."""

    async def test_one_turn_one_batch(self) -> None:
        """Messages submitted in one reactor turn are one INSERT ... RETURNING
        batch; each submitter gets its own id, in submission order, and the
        database holds each content under the id its submitter was given."""
        store = self.open_store()
        writer = GroupCommitWriter(store.insert_messages, reactor)
        messages = [chat("ab"[i % 2], f"m{i}") for i in range(1500)]
        results = await gatherResults([writer.submit(m) for m in messages])

        self.assertEqual(writer.batches, 1)
        self.assertEqual(writer.last_batch_size, 1500)
        ids = [m.id for m in results]
        self.assertEqual(ids, list(range(ids[0], ids[0] + 1500)))
        self.assertEqual([m.seq for m in results[0::2]], list(range(1, 751)))
        self.assertEqual([m.seq for m in results[1::2]], list(range(1, 751)))
        self.assertEqual([m.content for m in results], [m.content for m in messages])
        self.assertEqual(await store.recent_messages("a", 2000), results[0::2])
        self.assertEqual(await store.recent_messages("b", 2000), results[1::2])
        await writer.flush()

    async def test_batches_bounded(self) -> None:
        """A backlog larger than ``max_batch`` goes in consecutive batches,
        ids increasing across them in submission order."""
        store = self.open_store()
        writer = GroupCommitWriter(store.insert_messages, reactor, max_batch=100)
        messages = [chat("lobby", f"m{i}") for i in range(250)]
        results = await gatherResults([writer.submit(m) for m in messages])

        self.assertEqual(writer.batches, 3)
        ids = [m.id for m in results]
        self.assertEqual(ids, sorted(set(ids)))
        self.assertEqual(await store.recent_messages("lobby", 1000), results)


class PostgresSettingsTests(PostgresTestCase):
    """Server settings and ``tap`` with a PostgreSQL URL."""

    def test_load_or_create_setting_shared(self) -> None:
        """The first value stored wins, for every later caller and for
        callers racing from several connections (instances)."""
        from parkchat.store.postgres import load_or_create_setting

        self.prepare()

        def make(value: str) -> Callable[[], str]:
            return lambda: value

        self.assertEqual(load_or_create_setting(self.dsn, "token_secret", make("a")), "a")
        self.assertEqual(load_or_create_setting(self.dsn, "token_secret", make("b")), "a")
        results: list[str] = []
        threads = [
            threading.Thread(
                target=lambda i=i: results.append(
                    load_or_create_setting(self.dsn, "other", make(f"v{i}"))
                )
            )
            for i in range(4)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        self.assertEqual(len(results), 4)
        self.assertEqual(len(set(results)), 1, results)

    def test_tap_opens_postgres_by_url(self) -> None:
        """``open_store`` with a postgresql:// URL gives the PostgreSQL store
        with the configured pool size; ``token_secret`` stores one secret in
        that database, the same for every instance."""
        from parkchat.store.postgres import POSTGRES
        from parkchat.tap import open_store, token_secret

        store = open_store(self.dsn, reactor, 2)
        assert isinstance(store, SQLStore)
        self.addCleanup(store.close)
        self.assertIs(store.dialect, POSTGRES)
        self.assertEqual(store.pool.max, 2)
        settings = Settings(db=self.dsn)
        secret = token_secret(settings)
        self.assertGreaterEqual(len(secret), 32)
        self.assertEqual(token_secret(settings), secret)
        self.assertEqual(
            query(self.dsn, "SELECT value FROM server_settings WHERE name = 'token_secret'"),
            [(secret,)],
        )

    def test_tap_unreachable_database(self) -> None:
        """An unreachable server stops the start with one line naming the
        database, the password replaced by ``***``."""
        from parkchat.tap import open_store

        url = "postgresql://parkchat:s3cret@127.0.0.1:1/chat"
        error = self.assertRaises(SystemExit, open_store, url, reactor)
        self.assertIn("cannot open database postgresql://parkchat:***@127.0.0.1:1/chat", str(error))
        self.assertNotIn("s3cret", str(error))
