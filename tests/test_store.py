"""What every store is, whatever its engine: it provides each area interface
(``IRoomMessageStore``, ``IAccountStore``, ``ISessionStore``,
``IDirectMessageStore``, ``IModerationStore``, ``ITokenStore``,
``IAccountStateStore``, ``IRefreshTokenStore``, ``IStoreLifecycle``) and so
the composite ``IMessageStore``; and it answers
``ping`` and ``close``.

Each area's behaviour is a suite of its own, run against every store:
``test_store_messages``, ``test_store_accounts``, ``test_store_sessions``,
``test_store_direct``, ``test_store_moderation``, ``test_store_tokens``,
``test_store_state`` (backends in ``tests/store_support.py``).
"""

from __future__ import annotations

from twisted.trial.unittest import TestCase
from zope.interface.verify import verifyObject

from parkchat.interfaces import (
    IAccountStateStore,
    IAccountStore,
    IDirectMessageStore,
    IMessageEditStore,
    IMessageStore,
    IModerationStore,
    IRefreshTokenStore,
    IRoomMessageStore,
    IRoomTopicStore,
    ISearchStore,
    ISessionStore,
    IStoreLifecycle,
    ITokenStore,
)
from tests.store_support import OnMemory, OnPostgreSQL, OnSQLite, OnSQLiteMemory, StoreSuite

AREAS = (
    IRoomMessageStore,
    IMessageEditStore,
    ISearchStore,
    IRoomTopicStore,
    IAccountStore,
    ISessionStore,
    IDirectMessageStore,
    IModerationStore,
    ITokenStore,
    IAccountStateStore,
    IRefreshTokenStore,
    IStoreLifecycle,
)


class StoreInterfaceTests(TestCase):
    """The composite store interface and its areas."""

    def test_composite_is_exactly_the_areas(self) -> None:
        """Every method of IMessageStore belongs to exactly one area
        interface, and IMessageStore adds none of its own: a store method
        cannot be added without saying which area it is part of."""
        names = [name for area in AREAS for name in area.names()]
        self.assertEqual(len(names), len(set(names)), names)
        self.assertEqual(set(IMessageStore.names(all=True)), set(names))
        self.assertEqual(list(IMessageStore.names()), [])
        for area in AREAS:
            self.assertTrue(IMessageStore.extends(area), area)


class StoreTestsMixin(StoreSuite):
    """What every store provides; mixed into a TestCase per implementation."""

    def test_provides_each_area(self) -> None:
        """The store fully provides each area interface (methods and
        signatures), and the composite IMessageStore."""
        store = self.make_store()
        for area in (*AREAS, IMessageStore):
            self.assertTrue(verifyObject(area, store), area)

    async def test_ping(self) -> None:
        """ping() runs a trivial query and fires with None (readiness)."""
        self.assertIsNone(await self.make_store().ping())

    async def test_close_twice(self) -> None:
        """close() fires with None, and again when called a second time (the
        service and a test's cleanup may both close a store)."""
        store = self.make_store()
        self.assertIsNone(await store.close())
        self.assertIsNone(await store.close())


class MemoryStoreTests(OnMemory, StoreTestsMixin, TestCase):
    """The in-memory store."""


class SQLiteStoreTests(OnSQLite, StoreTestsMixin, TestCase):
    """SQLStore on a SQLite file (``SQLiteFileStore``)."""


class SQLiteMemoryStoreTests(OnSQLiteMemory, StoreTestsMixin, TestCase):
    """SQLStore on a SQLite ``:memory:`` database."""


class PostgreSQLStoreTests(OnPostgreSQL, StoreTestsMixin, TestCase):
    """SQLStore on PostgreSQL, a new database per test."""
