"""The store methods of schema version 2 (direct messages, bans, user
listing), held to one contract for the in-memory store, SQLite on a real
file and PostgreSQL (when ``PARKCHAT_TEST_POSTGRES`` is set); and the shipped
v2 schema itself: the full script and the upgrade from
v1 build the same database, an upgrade keeps the data, and server settings
are created once.
"""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.trial.unittest import TestCase

from parkchat.model import Ban, DirectMessage, Message, StoredUser, User
from parkchat.store.schema import SCHEMA_DIR, latest_version
from parkchat.store.sqlite import load_or_create_setting, open_sqlite, prepare_sqlite
from tests.store_support import T0, OnMemory, OnPostgreSQL, OnSQLite, StoreSuite


class StoreV2TestsMixin(StoreSuite):
    """The version-2 part of the IMessageStore contract."""

    # -- users -----------------------------------------------------------------

    async def test_get_user_by_id(self) -> None:
        """An account is found by id, hash included; an unknown id is None."""
        store = self.make_store()
        alice, bob = await self.users(store, "Alice", "bob")
        self.assertEqual(await store.get_user_by_id(bob.id), StoredUser(bob.id, "bob", b"hash-bob"))
        self.assertEqual((await store.get_user_by_id(alice.id)).nickname, "Alice")
        self.assertIsNone(await store.get_user_by_id(bob.id + 100))
        self.assertIsNone(await store.get_user_by_id(0))

    async def test_list_users_paging(self) -> None:
        """``list_users`` pages through accounts by id: public fields only
        (never the hash), ``limit`` at a time, after ``after_id``."""
        store = self.make_store()
        self.assertEqual(await store.list_users(10), [])
        created = await self.users(store, "u1", "u2", "u3", "u4", "u5")
        everyone = [User(u.id, u.nickname) for u in created]
        first = await store.list_users(2)
        self.assertEqual(first, everyone[:2])
        self.assertTrue(all(type(u) is User for u in first), first)
        self.assertEqual(await store.list_users(2, after_id=first[-1].id), everyone[2:4])
        self.assertEqual(await store.list_users(2, after_id=everyone[3].id), everyone[4:])
        self.assertEqual(await store.list_users(2, after_id=everyone[4].id), [])
        self.assertEqual(await store.list_users(100), everyone)

    # -- direct messages -------------------------------------------------------

    async def test_pending_direct(self) -> None:
        """Undelivered DMs to an account come oldest first, with both
        nicknames, ``limit`` at most; other recipients' DMs and those stored
        as delivered are not included."""
        store = self.make_store()
        alice, bob, carol = await self.users(store, "alice", "Bob", "carol")
        first = await store.insert_direct(alice.id, bob.id, "one", T0, False)
        await store.insert_direct(alice.id, carol.id, "for carol", T0 + 1, False)
        await store.insert_direct(alice.id, bob.id, "seen live", T0 + 2, True)
        third = await store.insert_direct(carol.id, bob.id, "three", T0 + 3, False)
        self.assertLess(first, third)
        pending = await store.pending_direct(bob.id, 10)
        self.assertEqual(
            pending,
            [
                DirectMessage(first, alice.id, "alice", bob.id, "Bob", "one", T0),
                DirectMessage(third, carol.id, "carol", bob.id, "Bob", "three", T0 + 3),
            ],
        )
        self.assertEqual(await store.pending_direct(bob.id, 1), pending[:1])
        self.assertEqual(await store.pending_direct(alice.id, 10), [])

    async def test_mark_delivered(self) -> None:
        """Marked DMs are no longer pending; the others still are, in order."""
        store = self.make_store()
        alice, bob = await self.users(store, "alice", "bob")
        ids = [
            await store.insert_direct(alice.id, bob.id, f"m{i}", T0 + i, False) for i in range(4)
        ]
        await store.mark_delivered([ids[0], ids[2]])
        self.assertEqual([m.id for m in await store.pending_direct(bob.id, 10)], [ids[1], ids[3]])
        await store.mark_delivered([])
        await store.mark_delivered([ids[0]])  # again: no change
        self.assertEqual([m.content for m in await store.pending_direct(bob.id, 10)], ["m1", "m3"])
        await store.mark_delivered(ids)
        self.assertEqual(await store.pending_direct(bob.id, 10), [])

    async def test_direct_content_round_trip(self) -> None:
        """DM content comes back exactly, newlines and non-ASCII included."""
        store = self.make_store()
        alice, bob = await self.users(store, "alice", "bob")
        await store.insert_direct(alice.id, bob.id, "héllo\n✓ 'quoted'", T0, False)
        [message] = await store.pending_direct(bob.id, 10)
        self.assertEqual(message.content, "héllo\n✓ 'quoted'")

    # -- bans ------------------------------------------------------------------

    async def test_ban_set_get_remove(self) -> None:
        """A ban is stored with reason and times, read back with the
        account's nickname, and removed once (remove reports whether it was)."""
        store = self.make_store()
        alice, bob = await self.users(store, "alice", "Bob")
        self.assertIsNone(await store.get_ban(bob.id))
        await store.set_ban(bob.id, "spam", T0, T0 + 60_000)
        self.assertEqual(await store.get_ban(bob.id), Ban(bob.id, "Bob", "spam", T0, T0 + 60_000))
        self.assertIsNone(await store.get_ban(alice.id))
        self.assertTrue(await store.remove_ban(bob.id))
        self.assertIsNone(await store.get_ban(bob.id))
        self.assertFalse(await store.remove_ban(bob.id))
        self.assertFalse(await store.remove_ban(alice.id))

    async def test_ban_replace(self) -> None:
        """Banning again replaces the ban: one entry, the new reason and
        expiry (None: until lifted)."""
        store = self.make_store()
        [bob] = await self.users(store, "bob")
        await store.set_ban(bob.id, "first", T0, T0 + 1000)
        await store.set_ban(bob.id, "", T0 + 5, None)
        self.assertEqual(await store.list_bans(), [Ban(bob.id, "bob", "", T0 + 5, None)])
        self.assertEqual(await store.get_ban(bob.id), Ban(bob.id, "bob", "", T0 + 5, None))

    async def test_list_bans(self) -> None:
        """``list_bans`` gives every stored ban ordered by account id, expired
        ones included (the service decides what is active)."""
        store = self.make_store()
        self.assertEqual(await store.list_bans(), [])
        alice, _bob, carol = await self.users(store, "alice", "bob", "carol")
        await store.set_ban(carol.id, "c", T0, None)
        await store.set_ban(alice.id, "a", T0, T0 + 1)
        self.assertEqual(
            await store.list_bans(),
            [Ban(alice.id, "alice", "a", T0, T0 + 1), Ban(carol.id, "carol", "c", T0, None)],
        )


class MemoryStoreV2Tests(OnMemory, StoreV2TestsMixin, TestCase):
    """The version-2 contract, for the in-memory store."""


class SQLiteStoreV2Tests(OnSQLite, StoreV2TestsMixin, TestCase):
    """The version-2 contract, for SQLite on a real file."""


class PostgreSQLStoreV2Tests(OnPostgreSQL, StoreV2TestsMixin, TestCase):
    """The version-2 contract, for PostgreSQL on a new database per test."""


def schema_objects(path: str) -> list[tuple[Any, ...]]:
    """Every object of a SQLite database with the SQL that created it."""
    conn = sqlite3.connect(path)
    try:
        return conn.execute(
            "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name"
        ).fetchall()
    finally:
        conn.close()


def run_scripts(path: str, *names: str) -> None:
    """Run shipped schema scripts, in order, on the file at ``path``."""
    conn = sqlite3.connect(path)
    try:
        for name in names:
            conn.executescript((SCHEMA_DIR / f"{name}.sql").read_text(encoding="utf-8"))
        conn.commit()
    finally:
        conn.close()


def query(path: str, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


class SchemaV2Tests(TestCase):
    """The shipped version-2 scripts."""

    def db_path(self) -> str:
        directory = Path(self.mktemp())
        directory.mkdir()
        return str(directory / "chat.db")

    def v1_only(self) -> Path:
        """A schema directory holding just the shipped v1.sql."""
        directory = Path(self.mktemp())
        directory.mkdir()
        shutil.copy(SCHEMA_DIR / "v1.sql", directory / "v1.sql")
        return directory

    def test_latest_is_at_least_two(self) -> None:
        """Version 2 is shipped (full script and upgrade)."""
        self.assertGreaterEqual(latest_version(), 2)
        self.assertTrue((SCHEMA_DIR / "v2.sql").exists())
        self.assertTrue((SCHEMA_DIR / "upgrade-to-v2.sql").exists())

    def test_full_script_matches_upgrade(self) -> None:
        """v2.sql creates exactly the objects (type, name, table and SQL) that
        v1.sql followed by upgrade-to-v2.sql create, so new and upgraded
        databases are the same database."""
        fresh, upgraded = self.db_path(), self.db_path()
        run_scripts(fresh, "v2")
        run_scripts(upgraded, "v1", "upgrade-to-v2")
        objects = schema_objects(fresh)
        self.assertEqual(objects, schema_objects(upgraded))
        names = {name for _, name, _, _ in objects}
        self.assertTrue(
            {"users", "messages", "direct_messages", "bans", "server_settings"} <= names, names
        )

    async def test_upgrade_in_place_keeps_data(self) -> None:
        """A real v1 database, opened by this parkchat, is upgraded to v2 in
        place (backup kept): its accounts and messages are still there, the
        new tables work, and it matches a database created at v2."""
        path = self.db_path()
        old = open_sqlite(path, schema_dir=self.v1_only())
        alice = await old.create_user("Alice", b"hash-a", T0)
        bob = await old.create_user("bob", b"hash-b", T0)
        message = Message(room="lobby", nickname="Alice", content="from v1", timestamp_ms=T0)
        [message_id] = await old.insert_messages([message])
        await old.close()
        self.assertEqual(query(path, "SELECT version FROM schema_version"), [(1,)])

        store = open_sqlite(path)
        self.addCleanup(store.close)
        self.assertEqual(query(path, "SELECT version FROM schema_version"), [(latest_version(),)])
        self.assertTrue(Path(f"{path}.v1.bak").exists())
        self.assertEqual(await store.get_user("alice"), StoredUser(alice.id, "Alice", b"hash-a"))
        self.assertEqual(await store.get_user_by_id(bob.id), StoredUser(bob.id, "bob", b"hash-b"))
        [kept] = await store.recent_messages("lobby", 10)
        self.assertEqual((kept.id, kept.content, kept.nickname), (message_id, "from v1", "Alice"))
        await store.insert_direct(alice.id, bob.id, "new in v2", T0, False)
        self.assertEqual([m.content for m in await store.pending_direct(bob.id, 5)], ["new in v2"])
        await store.set_ban(bob.id, "", T0, None)
        self.assertEqual([b.user_id for b in await store.list_bans()], [bob.id])

        fresh = self.db_path()
        prepare_sqlite(fresh)
        self.assertEqual(schema_objects(path), schema_objects(fresh))

    def test_load_or_create_setting(self) -> None:
        """A setting is created on the first call and the same value comes
        back on later calls (and to other openers of the file); settings
        are independent by name."""
        path = self.db_path()
        prepare_sqlite(path)

        def make(value: str) -> Callable[[], str]:
            return lambda: value

        self.assertEqual(load_or_create_setting(path, "token_secret", make("first")), "first")
        self.assertEqual(load_or_create_setting(path, "token_secret", make("second")), "first")
        self.assertEqual(load_or_create_setting(path, "other", make("third")), "third")
        self.assertEqual(load_or_create_setting(path, "token_secret", make("fourth")), "first")
        self.assertEqual(
            sorted(query(path, "SELECT name, value FROM server_settings")),
            [("other", "third"), ("token_secret", "first")],
        )
