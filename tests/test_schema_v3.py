"""The shipped version-3 schema (token revocation, the direct-message pair
index): the full script and the upgrade from v2 build the same database, an
upgrade keeps the data, and token expiry queries use their index. The store
methods are held to their contracts in the ``test_store_*`` modules, one per
area."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

from twisted.trial.unittest import TestCase

from parkchat.model import Ban, StoredUser
from parkchat.store.schema import SCHEMA_DIR, latest_version
from parkchat.store.sql.tokens import list_revoked_tokens_txn, prune_revoked_tokens_txn
from parkchat.store.sqlite import SQLITE, open_sqlite, prepare_sqlite
from tests.store_support import S0, T0, SQLitePlans
from tests.test_schema_v2 import (
    insert_old_direct,
    insert_old_message,
    insert_old_user,
    query,
    run_scripts,
    schema_objects,
)


class SchemaV3Tests(TestCase):
    """The shipped version-3 scripts."""

    def db_path(self) -> str:
        directory = Path(self.mktemp())
        directory.mkdir()
        return str(directory / "chat.db")

    def v2_only(self) -> Path:
        """A schema directory holding the shipped scripts up to version 2."""
        directory = Path(self.mktemp())
        directory.mkdir()
        for name in ("v1.sql", "upgrade-to-v2.sql", "v2.sql"):
            shutil.copy(SCHEMA_DIR / name, directory / name)
        return directory

    def test_latest_is_at_least_three(self) -> None:
        """Version 3 is shipped (full scripts and upgrades, both engines)."""
        self.assertGreaterEqual(latest_version(), 3)
        for name in ("v3", "upgrade-to-v3"):
            self.assertTrue((SCHEMA_DIR / f"{name}.sql").exists(), name)
            self.assertTrue((SCHEMA_DIR / f"{name}.postgres.sql").exists(), name)

    def test_full_script_matches_upgrade(self) -> None:
        """v3.sql creates exactly the objects (type, name, table and SQL) that
        v2.sql followed by upgrade-to-v3.sql create (and v1.sql followed by
        both upgrades), so new and upgraded databases are the same database."""
        fresh, from_v2, from_v1 = self.db_path(), self.db_path(), self.db_path()
        run_scripts(fresh, "v3")
        run_scripts(from_v2, "v2", "upgrade-to-v3")
        run_scripts(from_v1, "v1", "upgrade-to-v2", "upgrade-to-v3")
        objects = schema_objects(fresh)
        self.assertEqual(objects, schema_objects(from_v2))
        self.assertEqual(objects, schema_objects(from_v1))
        names = {name for _, name, _, _ in objects}
        self.assertTrue(
            {
                "revoked_tokens",
                "revoked_tokens_expires",
                "token_cutoffs",
                "bans",
                "direct_messages_pair",
            }
            <= names,
            names,
        )

    async def test_upgrade_in_place_keeps_data(self) -> None:
        """A real v2 database, opened by this parkchat, is upgraded to v3 in
        place (backup kept): its accounts, messages, direct messages and bans
        are still there, the new tables work, and it matches a database
        created at v3."""
        path = self.db_path()
        old = open_sqlite(path, schema_dir=self.v2_only())
        alice = insert_old_user(path, "Alice", b"hash-a")
        bob = insert_old_user(path, "bob", b"hash-b")
        await old.set_ban(bob.id, "spam", T0, None)
        await old.close()
        message_id = insert_old_message(path, "lobby", "Alice", "from v2")
        insert_old_direct(path, alice.id, bob.id, "dm from v2")
        self.assertEqual(query(path, "SELECT version FROM schema_version"), [(2,)])

        store = open_sqlite(path)
        self.addCleanup(store.close)
        self.assertEqual(query(path, "SELECT version FROM schema_version"), [(latest_version(),)])
        self.assertTrue(Path(f"{path}.v2.bak").exists())
        self.assertEqual(await store.get_user("alice"), StoredUser(alice.id, "Alice", b"hash-a"))
        [kept] = await store.recent_messages("lobby", 10)
        self.assertEqual((kept.id, kept.content), (message_id, "from v2"))
        self.assertEqual([m.content for m in await store.pending_direct(bob.id, 5)], ["dm from v2"])
        self.assertEqual(
            [m.content for m in await store.direct_history(bob.id, alice.id, 5)], ["dm from v2"]
        )
        self.assertEqual(await store.list_bans(), [Ban(bob.id, "bob", "spam", T0, None)])

        await store.revoke_token("jti-1", S0 + 60)
        self.assertEqual(await store.list_revoked_tokens(S0), [("jti-1", S0 + 60)])
        await store.set_token_cutoff(alice.id, T0 + 1)
        self.assertEqual(await store.list_token_cutoffs(), [(alice.id, T0 + 1)])

        fresh = self.db_path()
        prepare_sqlite(fresh)
        self.assertEqual(schema_objects(path), schema_objects(fresh))

    def test_revoked_tokens_by_expiry_use_index(self) -> None:
        """Listing unexpired and pruning expired tokens search the expires_s
        index instead of scanning the table."""
        path = self.db_path()
        prepare_sqlite(path)
        conn = sqlite3.connect(path)
        self.addCleanup(conn.close)
        txn = SQLitePlans(conn)
        list_revoked_tokens_txn(txn, SQLITE, S0)
        prune_revoked_tokens_txn(txn, SQLITE, S0)
        self.assertEqual(len(txn.plans), 2)
        for plan in txn.plans:
            self.assertIn("revoked_tokens_expires", " / ".join(plan))
