"""The ``ISearchStore`` contract (full-text search): one behaviour suite for
the in-memory store, SQLite on a real file (FTS5) and PostgreSQL (tsvector +
GIN, when ``PARKCHAT_TEST_POSTGRES`` is set)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from twisted.trial.unittest import TestCase

from parkchat.interfaces import IMessageStore
from parkchat.model import SearchHit
from parkchat.store.sqlite import open_sqlite
from tests.store_support import T0, OnMemory, OnPostgreSQL, OnSQLite, StoreSuite, chat


class SearchStoreTestsMixin(StoreSuite):
    """The ISearchStore contract."""

    #: Whether accents are folded (SQLite's FTS5 and the memory store; not
    #: PostgreSQL's 'simple' configuration).
    folds_accents = True

    async def find(
        self,
        store: IMessageStore,
        terms: Sequence[str],
        user_id: int = 1,
        **options: Any,
    ) -> list[SearchHit]:
        settings: dict[str, Any] = {
            "rooms": None,
            "room": None,
            "with_user_id": None,
            "include_rooms": True,
            "include_direct": True,
            "before": None,
            "limit": 50,
        }
        settings.update(options)
        return await store.search_messages(terms, user_id, **settings)

    async def test_words_rooms_and_order(self) -> None:
        """Every term begins a word of the message; newest first; the
        ``room`` and ``rooms`` filters keep to those rooms."""
        store = self.make_store()
        await self.users(store, "alice")
        await store.insert_messages(
            [
                chat("lobby", "Planning the garden party", timestamp_ms=T0 + 1),
                chat("kitchen", "party food", timestamp_ms=T0 + 2),
                chat("lobby", "no match", timestamp_ms=T0 + 3),
                chat("lobby", "PARTYING all night, planned", timestamp_ms=T0 + 4),
            ]
        )
        hits = await self.find(store, ["part"])
        self.assertEqual(
            [(h.room, h.content) for h in hits],
            [
                ("lobby", "PARTYING all night, planned"),
                ("kitchen", "party food"),
                ("lobby", "Planning the garden party"),
            ],
        )
        self.assertEqual([h.seq for h in hits], [3, 1, 1])
        self.assertEqual(
            [h.content for h in await self.find(store, ["plan", "party"])],
            ["PARTYING all night, planned", "Planning the garden party"],
        )
        self.assertEqual(len(await self.find(store, ["party"], room="kitchen")), 1)
        self.assertEqual(len(await self.find(store, ["party"], rooms=["lobby"])), 2)
        self.assertEqual(await self.find(store, ["party"], rooms=[]), [])
        self.assertEqual(await self.find(store, ["nothing"]), [])
        self.assertEqual(await self.find(store, ["party"], include_rooms=False), [])

    async def test_pages(self) -> None:
        """``limit`` newest, then below the key ``before``; equal times are
        ordered room messages first, then by id, both newest first."""
        store = self.make_store()
        alice, bob = await self.users(store, "alice", "bob")
        await store.insert_messages([chat("lobby", f"note {i}", timestamp_ms=T0) for i in range(3)])
        await store.insert_direct(alice.id, bob.id, "note direct", T0, False)
        hits = await self.find(store, ["note"], alice.id, limit=2)
        self.assertEqual([h.content for h in hits], ["note 2", "note 1"])
        last = hits[-1]
        rest = await self.find(store, ["note"], alice.id, before=(T0, 1, last.id))
        self.assertEqual([h.content for h in rest], ["note 0", "note direct"])
        direct = rest[-1]
        self.assertEqual(await self.find(store, ["note"], alice.id, before=(T0, 0, direct.id)), [])

    async def test_own_direct_messages_only(self) -> None:
        """Direct messages sent or received by the account, named by the
        other account (``with``); ``with_user_id`` keeps to one conversation."""
        store = self.make_store()
        alice, bob, carol = await self.users(store, "alice", "bob", "carol")
        await store.insert_direct(alice.id, bob.id, "lunch with bob?", T0, False)
        await store.insert_direct(carol.id, alice.id, "lunch at noon", T0 + 1, False)
        await store.insert_direct(bob.id, carol.id, "secret lunch", T0 + 2, False)
        hits = await self.find(store, ["lunch"], alice.id)
        self.assertEqual(
            [(h.with_nickname, h.nickname, h.content, h.room) for h in hits],
            [("carol", "carol", "lunch at noon", None), ("bob", "alice", "lunch with bob?", None)],
        )
        only = await self.find(store, ["lunch"], alice.id, with_user_id=bob.id)
        self.assertEqual([h.content for h in only], ["lunch with bob?"])
        self.assertEqual(await self.find(store, ["lunch"], alice.id, include_direct=False), [])

    async def test_follows_edits_and_deletes(self) -> None:
        """The index follows edits (new text found, old not) and deletions."""
        store = self.make_store()
        [(one, _), (two, _)] = await store.insert_messages(
            [chat("lobby", "meeting on tuesday"), chat("lobby", "tuesday again")]
        )
        await store.edit_message(one, "meeting on wednesday", None, "alice", T0 + 1)
        self.assertEqual([h.id for h in await self.find(store, ["tuesday"])], [two])
        [hit] = await self.find(store, ["wednesday"])
        self.assertEqual(
            (hit.id, hit.content, hit.edited_ms), (one, "meeting on wednesday", T0 + 1)
        )
        await store.delete_message(one)
        self.assertEqual(await self.find(store, ["wednesday"]), [])

    async def test_accents_and_case(self) -> None:
        """Case never matters; accents do not where the engine folds them."""
        store = self.make_store()
        await store.insert_messages([chat("lobby", "Crème brûlée at the Café")])
        self.assertEqual(len(await self.find(store, ["café"])), 1)
        self.assertEqual(len(await self.find(store, ["crème", "brûlée"])), 1)
        if self.folds_accents:
            self.assertEqual(len(await self.find(store, ["cafe", "creme"])), 1)


class MemorySearchTests(OnMemory, SearchStoreTestsMixin, TestCase):
    """The search contract, for the in-memory store."""


class SQLiteSearchTests(OnSQLite, SearchStoreTestsMixin, TestCase):
    """The search contract, for SQLite on a real file (FTS5)."""


class PostgreSQLSearchTests(OnPostgreSQL, SearchStoreTestsMixin, TestCase):
    """The search contract, for PostgreSQL (tsvector + GIN)."""

    folds_accents = False


class SQLiteSearchIndexTests(TestCase):
    """The FTS5 index is there and used."""

    async def test_search_uses_the_index(self) -> None:
        """A search is answered from the FTS5 index, not a scan of messages."""
        store = open_sqlite(self.mktemp())
        self.addCleanup(store.close)
        await store.insert_messages([chat("lobby", "indexed words")])

        def plan(txn: Any) -> list[str]:
            txn.execute(
                "EXPLAIN QUERY PLAN SELECT m.id FROM messages_fts"
                " JOIN messages m ON m.id = messages_fts.rowid WHERE messages_fts MATCH ?",
                ('"index"*',),
            )
            return [row[-1] for row in txn.fetchall()]

        details = await store.pool.runInteraction(plan)
        self.assertTrue(any("VIRTUAL TABLE INDEX" in d for d in details), details)
        self.assertFalse(any(d == "SCAN m" or d.startswith("SCAN m ") for d in details), details)
