"""The ``IRoomMessageStore`` contract: one behaviour suite for the in-memory
store, SQLite on a real file and PostgreSQL (when ``PARKCHAT_TEST_POSTGRES``
is set; see ``tests/store_support.py``)."""

from __future__ import annotations

from twisted.trial.unittest import TestCase

from parkchat.interfaces import IRoomMessageStore
from parkchat.model import Message
from tests.store_support import T0, OnMemory, OnPostgreSQL, OnSQLite, StoreSuite, chat


class RoomMessageStoreTestsMixin(StoreSuite):
    """The IRoomMessageStore contract; mixed into a TestCase per implementation."""

    async def insert(self, store: IRoomMessageStore, messages: list[Message]) -> list[Message]:
        """Store ``messages`` and return them as stored (ids set)."""
        ids = await store.insert_messages(messages)
        return [m.with_id(i) for m, i in zip(messages, ids, strict=True)]

    async def test_insert_returns_increasing_ids_in_order(self) -> None:
        """insert_messages fires with one positive id per message, increasing in
        submission order, and later batches get larger ids."""
        store = self.make_store()
        first = await store.insert_messages([chat("lobby", f"m{i}") for i in range(5)])
        second = await store.insert_messages([chat("other", "x"), chat("lobby", "y")])
        ids = first + second
        self.assertEqual(len(first), 5)
        self.assertEqual(len(second), 2)
        self.assertTrue(all(i > 0 for i in ids), ids)
        self.assertEqual(ids, sorted(set(ids)))

    async def test_delete_message(self) -> None:
        """delete_message removes one message, answers its room, and None
        for an id that is not (or no longer) there."""
        store = self.make_store()
        _, b, c = await self.insert(
            store, [chat("lobby", "keep"), chat("lobby", "spam"), chat("garden", "other")]
        )
        self.assertEqual(await store.delete_message(b.id), "lobby")
        self.assertIsNone(await store.delete_message(b.id))
        self.assertIsNone(await store.delete_message(c.id + 1000))
        self.assertEqual([m.content for m in await store.recent_messages("lobby", 10)], ["keep"])
        self.assertEqual([m.content for m in await store.recent_messages("garden", 10)], ["other"])

    async def test_insert_empty_batch(self) -> None:
        """An empty batch stores nothing and fires with no ids."""
        store = self.make_store()
        self.assertEqual(await store.insert_messages([]), [])
        self.assertEqual(await store.recent_messages("lobby", 10), [])

    async def test_round_trip_keeps_every_field(self) -> None:
        """A stored message comes back with its id, room, nickname, content,
        timestamp, type and account id unchanged."""
        store = self.make_store()
        user = await store.create_user("Alice", b"$2b$04$hash", T0)
        original = Message(
            room="lobby",
            nickname="Alice",
            content="héllo\nwörld ✓",
            timestamp_ms=T0 + 123,
            user_id=user.id,
        )
        [stored] = await self.insert(store, [original])
        [read] = await store.recent_messages("lobby", 10)
        self.assertEqual(read, stored)
        self.assertEqual(read.id, stored.id)
        self.assertEqual(read.user_id, user.id)
        self.assertEqual(read.timestamp_ms, T0 + 123)
        self.assertEqual(read.type, "chat")
        self.assertEqual(read.content, "héllo\nwörld ✓")

    async def test_recent_returns_last_n_oldest_first(self) -> None:
        """Without paging, recent_messages gives the last ``limit`` messages of
        the room, oldest first."""
        store = self.make_store()
        stored = await self.insert(
            store, [chat("lobby", f"m{i}", timestamp_ms=T0 + i) for i in range(10)]
        )
        self.assertEqual(await store.recent_messages("lobby", 3), stored[-3:])
        self.assertEqual(await store.recent_messages("lobby", 50), stored)

    async def test_equal_timestamps_ordered_by_id(self) -> None:
        """Messages with the same timestamp come back in id order, so history
        order never depends on the clock's resolution."""
        store = self.make_store()
        stored: list[Message] = []
        for i in range(6):
            # One message per batch: ids come from separate transactions.
            stored += await self.insert(store, [chat("lobby", f"same-ms-{i}")])
        history = await store.recent_messages("lobby", 4)
        self.assertEqual([m.content for m in history], [f"same-ms-{i}" for i in range(2, 6)])
        self.assertEqual([m.id for m in history], sorted(m.id for m in history))
        self.assertEqual(history, stored[2:])

    async def test_page_before(self) -> None:
        """``before`` gives the last ``limit`` messages with a smaller id,
        oldest first; nothing before the first message."""
        store = self.make_store()
        stored = await self.insert(store, [chat("lobby", f"m{i}") for i in range(10)])
        self.assertEqual(await store.recent_messages("lobby", 3, before=stored[6].id), stored[3:6])
        self.assertEqual(await store.recent_messages("lobby", 50, before=stored[2].id), stored[:2])
        self.assertEqual(await store.recent_messages("lobby", 3, before=stored[0].id), [])

    async def test_page_after(self) -> None:
        """``after`` gives the first ``limit`` messages with a greater id,
        oldest first; nothing after the newest message."""
        store = self.make_store()
        stored = await self.insert(store, [chat("lobby", f"m{i}") for i in range(10)])
        self.assertEqual(await store.recent_messages("lobby", 3, after=stored[1].id), stored[2:5])
        self.assertEqual(await store.recent_messages("lobby", 50, after=stored[7].id), stored[8:])
        self.assertEqual(await store.recent_messages("lobby", 3, after=stored[-1].id), [])
        self.assertEqual(await store.recent_messages("lobby", 3, after=0), stored[:3])

    async def test_paging_walks_whole_history(self) -> None:
        """Following ``before`` from the newest page back reaches every message
        exactly once, even when the room's ids are not contiguous."""
        store = self.make_store()
        lobby: list[Message] = []
        for i in range(11):
            lobby += await self.insert(store, [chat("lobby", f"m{i}"), chat("noise", f"n{i}")])
            lobby = [m for m in lobby if m.room == "lobby"]
        pages: list[list[Message]] = []
        page = await store.recent_messages("lobby", 4)
        while page:
            pages.append(page)
            page = await store.recent_messages("lobby", 4, before=page[0].id)
        self.assertEqual([len(p) for p in pages], [4, 4, 3])
        walked = [m for p in reversed(pages) for m in p]
        self.assertEqual(walked, lobby)

    async def test_rooms_are_isolated(self) -> None:
        """Each room's history holds only its own messages, also when paging
        by ids taken from another room."""
        store = self.make_store()
        stored = await self.insert(
            store,
            [chat("a" if i % 2 else "b", f"m{i}") for i in range(8)],
        )
        in_a = [m for m in stored if m.room == "a"]
        in_b = [m for m in stored if m.room == "b"]
        self.assertEqual(await store.recent_messages("a", 50), in_a)
        self.assertEqual(await store.recent_messages("b", 50), in_b)
        self.assertEqual(await store.recent_messages("a", 50, after=in_b[0].id), in_a)
        self.assertEqual(await store.recent_messages("b", 50, before=in_a[-1].id), in_b)

    async def test_room_names_are_exact(self) -> None:
        """Room names are compared exactly: case and trailing characters make
        different rooms."""
        store = self.make_store()
        await self.insert(store, [chat("Lobby", "upper"), chat("lobby2", "suffix")])
        self.assertEqual(await store.recent_messages("lobby", 50), [])

    async def test_unknown_room_is_empty(self) -> None:
        """A room nobody ever wrote to has an empty history, not an error."""
        store = self.make_store()
        await self.insert(store, [chat("lobby", "hi")])
        self.assertEqual(await store.recent_messages("nowhere", 50), [])
        self.assertEqual(await store.recent_messages("nowhere", 50, before=10), [])
        self.assertEqual(await store.recent_messages("nowhere", 50, after=0), [])


class MemoryRoomMessageTests(OnMemory, RoomMessageStoreTestsMixin, TestCase):
    """The room-message contract, for the in-memory store."""


class SQLiteRoomMessageTests(OnSQLite, RoomMessageStoreTestsMixin, TestCase):
    """The room-message contract, for SQLite on a real file."""


class PostgreSQLRoomMessageTests(OnPostgreSQL, RoomMessageStoreTestsMixin, TestCase):
    """The room-message contract, for PostgreSQL on a new database per test."""
