"""The ``IAccountStore`` contract: one behaviour suite for the in-memory
store, SQLite on a real file and PostgreSQL (when ``PARKCHAT_TEST_POSTGRES``
is set; see ``tests/store_support.py``)."""

from __future__ import annotations

from twisted.trial.unittest import TestCase

from parkchat.errors import AccountExists
from parkchat.model import StoredUser, User
from tests.store_support import T0, OnMemory, OnPostgreSQL, OnSQLite, StoreSuite


class AccountStoreTestsMixin(StoreSuite):
    """The IAccountStore contract; mixed into a TestCase per implementation."""

    async def test_create_and_get_user(self) -> None:
        """create_user fires with the new account (positive id, nickname as
        given, hash); get_user finds it by any casing of the nickname."""
        store = self.make_store()
        created = await store.create_user("Alice", b"$2b$04$alice", T0)
        self.assertTrue(created.id > 0)
        self.assertEqual(created.nickname, "Alice")
        self.assertEqual(created.password_hash, b"$2b$04$alice")
        for spelling in ("Alice", "alice", "ALICE"):
            self.assertEqual(await store.get_user(spelling), created)

    async def test_look_alike_names(self) -> None:
        """No two accounts look alike (issue 15): a name with the skeleton
        of an account's (Greek omicron for o) is refused, and get_user_like
        finds the account it looks like; get_user stays exact."""
        store = self.make_store()
        bob = await store.create_user("bob", b"$2b$04$bob", T0)
        with self.assertRaises(AccountExists):
            await store.create_user("b\u03bfb", b"$2b$04$other", T0)
        self.assertEqual(await store.get_user_like("b\u03bfb"), bob)
        self.assertEqual(await store.get_user_like("BOB"), bob)
        self.assertIsNone(await store.get_user("b\u03bfb"))
        self.assertIsNone(await store.get_user_like("carol"))

    async def test_get_unknown_user(self) -> None:
        """get_user fires with None for a nickname with no account."""
        store = self.make_store()
        await store.create_user("alice", b"h", T0)
        self.assertIsNone(await store.get_user("bob"))

    async def test_users_get_distinct_ids(self) -> None:
        """Two accounts get different ids and keep their own hashes."""
        store = self.make_store()
        alice = await store.create_user("alice", b"ha", T0)
        bob = await store.create_user("bob", b"hb", T0)
        self.assertTrue(alice.id != bob.id)
        self.assertEqual((await store.get_user("bob")).password_hash, b"hb")

    async def test_duplicate_user(self) -> None:
        """Registering a taken nickname fails with AccountExists and leaves the
        existing account untouched."""
        store = self.make_store()
        alice = await store.create_user("alice", b"first", T0)
        with self.assertRaises(AccountExists):
            await store.create_user("alice", b"second", T0 + 1)
        self.assertEqual(await store.get_user("alice"), alice)

    async def test_duplicate_user_case_insensitive(self) -> None:
        """'alice' is taken once 'Alice' exists: nicknames clash regardless
        of case, and the first spelling is kept."""
        store = self.make_store()
        await store.create_user("Alice", b"first", T0)
        with self.assertRaises(AccountExists):
            await store.create_user("alice", b"second", T0)
        with self.assertRaises(AccountExists):
            await store.create_user("ALICE", b"third", T0)
        found = await store.get_user("alice")
        self.assertEqual((found.nickname, found.password_hash), ("Alice", b"first"))

    async def test_set_password_hash(self) -> None:
        """set_password_hash replaces one account's hash and no other's."""
        store = self.make_store()
        alice = await store.create_user("Alice", b"old", T0)
        await store.create_user("bob", b"bobs", T0)
        await store.set_password_hash(alice.id, b"new")
        found = await store.get_user("alice")
        self.assertEqual(
            (found.id, found.nickname, found.password_hash), (alice.id, "Alice", b"new")
        )
        self.assertEqual((await store.get_user("bob")).password_hash, b"bobs")

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


class MemoryAccountTests(OnMemory, AccountStoreTestsMixin, TestCase):
    """The account contract, for the in-memory store."""


class SQLiteAccountTests(OnSQLite, AccountStoreTestsMixin, TestCase):
    """The account contract, for SQLite on a real file."""


class PostgreSQLAccountTests(OnPostgreSQL, AccountStoreTestsMixin, TestCase):
    """The account contract, for PostgreSQL on a new database per test."""
