"""The store methods of schema version 3 (token revocation: revoked tokens and
per-account cutoffs; the direct-message history of two accounts), held to one
contract for the in-memory store, SQLite on a real file and PostgreSQL (when
``PARKCHAT_TEST_POSTGRES`` is set); and the shipped v3 schema itself: the
full script and the upgrade from v2 build the same database, and an upgrade
keeps the data.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

from twisted.trial.unittest import TestCase

from parkchat.model import Ban, DirectMessage, Message, StoredUser
from parkchat.store.schema import SCHEMA_DIR, latest_version
from parkchat.store.sql.tokens import list_revoked_tokens_txn, prune_revoked_tokens_txn
from parkchat.store.sqlite import SQLITE, open_sqlite, prepare_sqlite
from tests.store_support import T0, OnMemory, OnPostgreSQL, OnSQLite, SQLitePlans, StoreSuite
from tests.test_store_v2 import query, run_scripts, schema_objects

#: A time in seconds since the epoch (token expiries are in seconds).
S0 = T0 // 1000


class StoreV3TestsMixin(StoreSuite):
    """The version-3 part of the IMessageStore contract."""

    # -- revoked tokens --------------------------------------------------------

    async def test_revoke_token_idempotent(self) -> None:
        """Revoking a token again is no error and leaves one entry."""
        store = self.make_store()
        self.assertIsNone(await store.revoke_token("jti-a", S0 + 60))
        self.assertIsNone(await store.revoke_token("jti-a", S0 + 60))
        self.assertEqual(await store.list_revoked_tokens(S0), [("jti-a", S0 + 60)])

    async def test_list_revoked_tokens_only_unexpired(self) -> None:
        """``list_revoked_tokens`` gives ``(jti, expires_s)`` of the tokens
        expiring after ``now_s``; one expiring at ``now_s`` is left out."""
        store = self.make_store()
        self.assertEqual(await store.list_revoked_tokens(S0), [])
        await store.revoke_token("past", S0 - 1)
        await store.revoke_token("now", S0)
        await store.revoke_token("soon", S0 + 1)
        await store.revoke_token("later", S0 + 3600)
        self.assertEqual(
            sorted(await store.list_revoked_tokens(S0)), [("later", S0 + 3600), ("soon", S0 + 1)]
        )
        self.assertEqual(await store.list_revoked_tokens(S0 + 1), [("later", S0 + 3600)])
        self.assertEqual(len(await store.list_revoked_tokens(0)), 4)
        self.assertEqual(await store.list_revoked_tokens(S0 + 3600), [])

    async def test_prune_revoked_tokens(self) -> None:
        """``prune_revoked_tokens`` deletes the tokens expired by ``now_s``
        (``expires_s <= now_s``), only those, and fires with their count."""
        store = self.make_store()
        self.assertEqual(await store.prune_revoked_tokens(S0), 0)
        await store.revoke_token("past", S0 - 10)
        await store.revoke_token("now", S0)
        await store.revoke_token("later", S0 + 10)
        self.assertEqual(await store.prune_revoked_tokens(S0), 2)
        self.assertEqual(await store.list_revoked_tokens(0), [("later", S0 + 10)])
        self.assertEqual(await store.prune_revoked_tokens(S0), 0)
        self.assertEqual(await store.prune_revoked_tokens(S0 + 10), 1)
        self.assertEqual(await store.list_revoked_tokens(0), [])

    async def test_revoked_token_values_round_trip(self) -> None:
        """Token ids come back exactly; expiries past 2^31 (BIGINT) too."""
        store = self.make_store()
        jti = "Zm9v-YmFy_" + "x" * 40
        await store.revoke_token(jti, 2**40)
        self.assertEqual(await store.list_revoked_tokens(S0), [(jti, 2**40)])

    # -- token cutoffs ---------------------------------------------------------

    async def test_set_token_cutoff_keeps_larger(self) -> None:
        """A cutoff is stored per account; setting it again moves it forward
        but never backwards."""
        store = self.make_store()
        [bob] = await self.users(store, "bob")
        self.assertEqual(await store.list_token_cutoffs(), [])
        self.assertIsNone(await store.set_token_cutoff(bob.id, T0))
        self.assertEqual(await store.list_token_cutoffs(), [(bob.id, T0)])
        await store.set_token_cutoff(bob.id, T0 + 500)
        self.assertEqual(await store.list_token_cutoffs(), [(bob.id, T0 + 500)])
        await store.set_token_cutoff(bob.id, T0 + 100)
        self.assertEqual(await store.list_token_cutoffs(), [(bob.id, T0 + 500)])
        await store.set_token_cutoff(bob.id, T0 + 500)
        self.assertEqual(await store.list_token_cutoffs(), [(bob.id, T0 + 500)])

    async def test_list_token_cutoffs_by_user_id(self) -> None:
        """``list_token_cutoffs`` gives every account with a cutoff, ordered
        by user id whatever order they were set in; others are not listed."""
        store = self.make_store()
        alice, _bob, carol, dave = await self.users(store, "alice", "bob", "carol", "dave")
        await store.set_token_cutoff(dave.id, T0 + 3)
        await store.set_token_cutoff(alice.id, T0 + 1)
        await store.set_token_cutoff(carol.id, T0 + 2)
        self.assertEqual(
            await store.list_token_cutoffs(),
            [(alice.id, T0 + 1), (carol.id, T0 + 2), (dave.id, T0 + 3)],
        )

    async def test_revocation_tables_independent(self) -> None:
        """Cutoffs and revoked tokens do not affect each other."""
        store = self.make_store()
        [alice] = await self.users(store, "alice")
        await store.revoke_token("t1", S0 + 60)
        await store.set_token_cutoff(alice.id, T0)
        self.assertEqual(await store.prune_revoked_tokens(S0 + 60), 1)
        self.assertEqual(await store.list_token_cutoffs(), [(alice.id, T0)])
        self.assertEqual(await store.list_revoked_tokens(0), [])

    # -- direct-message history ------------------------------------------------

    async def test_direct_history_both_directions(self) -> None:
        """``direct_history`` gives the messages of the pair in both
        directions, delivered or not, oldest first, with both nicknames;
        the same history whichever account asks. Other pairs' messages
        (either account with a third one) are not included."""
        store = self.make_store()
        alice, bob, carol = await self.users(store, "Alice", "bob", "carol")
        one = await store.insert_direct(alice.id, bob.id, "one", T0, True)
        await store.insert_direct(alice.id, carol.id, "alice to carol", T0 + 1, False)
        two = await store.insert_direct(bob.id, alice.id, "two", T0 + 2, False)
        await store.insert_direct(carol.id, bob.id, "carol to bob", T0 + 3, False)
        await store.insert_direct(bob.id, bob.id, "bob's note", T0 + 4, False)
        three = await store.insert_direct(alice.id, bob.id, "three", T0 + 5, False)
        expected = [
            DirectMessage(one, alice.id, "Alice", bob.id, "bob", "one", T0),
            DirectMessage(two, bob.id, "bob", alice.id, "Alice", "two", T0 + 2),
            DirectMessage(three, alice.id, "Alice", bob.id, "bob", "three", T0 + 5),
        ]
        self.assertEqual(await store.direct_history(alice.id, bob.id, 10), expected)
        self.assertEqual(await store.direct_history(bob.id, alice.id, 10), expected)
        self.assertEqual(
            [m.content for m in await store.direct_history(carol.id, alice.id, 10)],
            ["alice to carol"],
        )

    async def test_direct_history_limit_keeps_newest(self) -> None:
        """With more messages than ``limit``, the newest ``limit`` come back,
        still oldest first, whichever direction each went."""
        store = self.make_store()
        alice, bob = await self.users(store, "alice", "bob")
        ids = []
        for i in range(7):
            sender, recipient = (alice, bob) if i % 3 else (bob, alice)
            ids.append(await store.insert_direct(sender.id, recipient.id, f"m{i}", T0 + i, False))
        history = await store.direct_history(alice.id, bob.id, 4)
        self.assertEqual([m.id for m in history], ids[3:])
        self.assertEqual([m.content for m in history], ["m3", "m4", "m5", "m6"])
        self.assertEqual([m.id for m in await store.direct_history(bob.id, alice.id, 1)], ids[6:])
        self.assertEqual([m.id for m in await store.direct_history(alice.id, bob.id, 100)], ids)
        self.assertEqual(await store.direct_history(alice.id, bob.id, 0), [])

    async def test_direct_history_before_pages_back(self) -> None:
        """``before`` gives the messages with a smaller id: paging with the
        oldest id of each page walks the whole history back, without gaps or
        repeats, and ends with an empty page."""
        store = self.make_store()
        alice, bob, carol = await self.users(store, "alice", "bob", "carol")
        ids = []
        for i in range(8):
            sender, recipient = (alice, bob) if i % 2 else (bob, alice)
            ids.append(await store.insert_direct(sender.id, recipient.id, f"m{i}", T0 + i, False))
            # Other pairs' messages between them: never on a page.
            await store.insert_direct(carol.id, alice.id, f"c{i}", T0 + i, False)
        pages = []
        before = None
        while page := await store.direct_history(alice.id, bob.id, 3, before):
            pages.append([m.id for m in page])
            before = page[0].id
        self.assertEqual(pages, [ids[5:], ids[2:5], ids[:2]])
        self.assertEqual(
            [m.id for m in await store.direct_history(bob.id, alice.id, 10, ids[4])], ids[:4]
        )
        self.assertEqual(await store.direct_history(alice.id, bob.id, 10, ids[0]), [])
        # A ``before`` past 2^31 (BIGINT on PostgreSQL) is no error.
        self.assertEqual(
            [m.id for m in await store.direct_history(alice.id, bob.id, 2, 2**40)], ids[6:]
        )

    async def test_direct_history_empty_pair(self) -> None:
        """A pair that never exchanged a message has an empty history, even
        when both have messages with others."""
        store = self.make_store()
        alice, bob, carol = await self.users(store, "alice", "bob", "carol")
        self.assertEqual(await store.direct_history(alice.id, bob.id, 10), [])
        await store.insert_direct(alice.id, carol.id, "hi carol", T0, False)
        await store.insert_direct(carol.id, bob.id, "hi bob", T0 + 1, False)
        self.assertEqual(await store.direct_history(alice.id, bob.id, 10), [])
        self.assertEqual(await store.direct_history(bob.id, alice.id, 10, 2**40), [])
        self.assertEqual(await store.direct_history(alice.id, alice.id, 10), [])

    async def test_direct_history_notes_to_self(self) -> None:
        """With ``user_id == other_id``: the account's messages to itself,
        each once, oldest first; its messages with others are not included;
        ``limit`` and ``before`` work as for a pair."""
        store = self.make_store()
        alice, bob = await self.users(store, "alice", "bob")
        first = await store.insert_direct(alice.id, alice.id, "note 1", T0, False)
        await store.insert_direct(alice.id, bob.id, "to bob", T0 + 1, False)
        await store.insert_direct(bob.id, alice.id, "to alice", T0 + 2, False)
        second = await store.insert_direct(alice.id, alice.id, "note 2", T0 + 3, True)
        third = await store.insert_direct(alice.id, alice.id, "note 3", T0 + 4, False)
        notes = await store.direct_history(alice.id, alice.id, 10)
        self.assertEqual(
            notes,
            [
                DirectMessage(first, alice.id, "alice", alice.id, "alice", "note 1", T0),
                DirectMessage(second, alice.id, "alice", alice.id, "alice", "note 2", T0 + 3),
                DirectMessage(third, alice.id, "alice", alice.id, "alice", "note 3", T0 + 4),
            ],
        )
        self.assertEqual(await store.direct_history(alice.id, alice.id, 2), notes[1:])
        self.assertEqual(await store.direct_history(alice.id, alice.id, 10, third), notes[:2])
        self.assertEqual(await store.direct_history(bob.id, bob.id, 10), [])
        self.assertEqual(
            [m.content for m in await store.direct_history(alice.id, bob.id, 10)],
            ["to bob", "to alice"],
        )


class MemoryStoreV3Tests(OnMemory, StoreV3TestsMixin, TestCase):
    """The version-3 contract, for the in-memory store."""


class SQLiteStoreV3Tests(OnSQLite, StoreV3TestsMixin, TestCase):
    """The version-3 contract, for SQLite on a real file."""


class PostgreSQLStoreV3Tests(OnPostgreSQL, StoreV3TestsMixin, TestCase):
    """The version-3 contract, for PostgreSQL on a new database per test."""


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
        alice = await old.create_user("Alice", b"hash-a", T0)
        bob = await old.create_user("bob", b"hash-b", T0)
        message = Message(room="lobby", nickname="Alice", content="from v2", timestamp_ms=T0)
        [message_id] = await old.insert_messages([message])
        await old.insert_direct(alice.id, bob.id, "dm from v2", T0, False)
        await old.set_ban(bob.id, "spam", T0, None)
        await old.close()
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
