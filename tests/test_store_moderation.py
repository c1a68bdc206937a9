"""The ``IModerationStore`` contract (bans): one behaviour suite for the
in-memory store, SQLite on a real file and PostgreSQL (when
``PARKCHAT_TEST_POSTGRES`` is set; see ``tests/store_support.py``)."""

from __future__ import annotations

from twisted.trial.unittest import TestCase

from parkchat.model import Ban
from tests.store_support import T0, OnMemory, OnPostgreSQL, OnSQLite, StoreSuite


class ModerationStoreTestsMixin(StoreSuite):
    """The IModerationStore contract; mixed into a TestCase per implementation."""

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


class MemoryModerationTests(OnMemory, ModerationStoreTestsMixin, TestCase):
    """The moderation contract, for the in-memory store."""


class SQLiteModerationTests(OnSQLite, ModerationStoreTestsMixin, TestCase):
    """The moderation contract, for SQLite on a real file."""


class PostgreSQLModerationTests(OnPostgreSQL, ModerationStoreTestsMixin, TestCase):
    """The moderation contract, for PostgreSQL on a new database per test."""
