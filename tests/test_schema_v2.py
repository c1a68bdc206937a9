"""The shipped version-2 schema (direct messages, bans, server settings):
the full script and the upgrade from v1 build the same database, an upgrade
keeps the data, and server settings are created once. The store methods are
held to their contracts in the ``test_store_*`` modules, one per area."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.trial.unittest import TestCase

from parkchat.model import StoredUser, nickname_key
from parkchat.store.schema import SCHEMA_DIR, latest_version
from parkchat.store.sqlite import load_or_create_setting, open_sqlite, prepare_sqlite
from tests.store_support import T0


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


def insert_row(path: str, sql: str, params: tuple[Any, ...] = ()) -> int:
    """Run one INSERT on the file at ``path``, commit, and return the new
    row's id: how tests write rows into a database of an older schema,
    which this parkchat's store methods no longer fit."""
    conn = sqlite3.connect(path)
    try:
        with conn:
            return int(conn.execute(sql, params).lastrowid or 0)
    finally:
        conn.close()


def insert_old_message(path: str, room: str, nickname: str, content: str) -> int:
    """A room message as schemas before v4 stored it (no seq); its id."""
    return insert_row(
        path,
        "INSERT INTO messages (room, nickname, content, created_ms) VALUES (?, ?, ?, ?)",
        (room, nickname, content, T0),
    )


def insert_old_user(path: str, nickname: str, password_hash: bytes) -> StoredUser:
    """An account as schemas before v5 stored it (no name skeleton): this
    parkchat's store methods no longer fit an older schema."""
    user_id = insert_row(
        path,
        "INSERT INTO users (nickname, nickname_key, password_hash, created_ms, "
        "password_changed_ms) VALUES (?, ?, ?, ?, ?)",
        (nickname, nickname_key(nickname), password_hash.decode("ascii"), T0, T0),
    )
    return StoredUser(user_id, nickname, password_hash)


def insert_old_direct(path: str, from_user_id: int, to_user_id: int, content: str) -> int:
    """An undelivered direct message as schemas v2 and v3 stored it; its id."""
    return insert_row(
        path,
        "INSERT INTO direct_messages (from_user_id, to_user_id, content, created_ms) "
        "VALUES (?, ?, ?, ?)",
        (from_user_id, to_user_id, content, T0),
    )


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
        await old.close()
        alice = insert_old_user(path, "Alice", b"hash-a")
        bob = insert_old_user(path, "bob", b"hash-b")
        message_id = insert_old_message(path, "lobby", "Alice", "from v1")
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
