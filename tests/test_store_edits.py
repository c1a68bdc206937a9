"""The ``IMessageEditStore`` and ``IRoomTopicStore`` contracts (edits of
room messages and their record; room topics): one behaviour suite for the
in-memory store, SQLite on a real file and PostgreSQL (when
``PARKCHAT_TEST_POSTGRES`` is set; see ``tests/store_support.py``)."""

from __future__ import annotations

from twisted.trial.unittest import TestCase

from parkchat.model import MessageEdit, RoomTopic
from tests.store_support import T0, OnMemory, OnPostgreSQL, OnSQLite, StoreSuite, chat


class EditStoreTestsMixin(StoreSuite):
    """The IMessageEditStore contract."""

    async def test_edit_and_record(self) -> None:
        """An edit replaces the text and sets ``edited_ms``; every read of
        the room shows it; the old text is recorded with the editor."""
        store = self.make_store()
        [alice] = await self.users(store, "alice")
        [(one, seq)] = await store.insert_messages([chat("lobby", "helo")])
        found = await store.room_message("lobby", seq)
        assert found is not None
        self.assertEqual((found.id, found.content, found.edited_ms), (one, "helo", None))
        edited = await store.edit_message(one, "hello", alice.id, "alice", T0 + 5)
        assert edited is not None
        self.assertEqual((edited.id, edited.seq, edited.content), (one, seq, "hello"))
        self.assertEqual(edited.edited_ms, T0 + 5)
        for read in (
            await store.recent_messages("lobby", 10),
            await store.room_messages_after("lobby", 0, 10),
            await store.room_messages_before("lobby", None, 10),
        ):
            self.assertEqual([(m.content, m.edited_ms) for m in read], [("hello", T0 + 5)])
        self.assertEqual(
            await store.message_edits(one), [MessageEdit(one, "helo", "alice", alice.id, T0 + 5)]
        )

    async def test_edit_times_only_grow(self) -> None:
        """An edit at or before the previous edit's time is stored 1 ms
        after it; the record keeps every replaced text, oldest first."""
        store = self.make_store()
        [(one, _)] = await store.insert_messages([chat("lobby", "v0")])
        await store.edit_message(one, "v1", None, "guest", T0 + 10)
        second = await store.edit_message(one, "v2", None, "mod", T0 + 3)
        assert second is not None
        self.assertEqual(second.edited_ms, T0 + 11)
        edits = await store.message_edits(one)
        self.assertEqual(
            [(e.old_content, e.editor, e.editor_id, e.edited_ms) for e in edits],
            [("v0", "guest", None, T0 + 10), ("v1", "mod", None, T0 + 11)],
        )

    async def test_missing(self) -> None:
        """No message: None; the record of a deleted message stays."""
        store = self.make_store()
        self.assertIsNone(await store.room_message("lobby", 1))
        self.assertIsNone(await store.edit_message(99, "x", None, "a", T0))
        [(one, seq)] = await store.insert_messages([chat("lobby", "a")])
        await store.edit_message(one, "b", None, "a", T0)
        self.assertIsNone(await store.room_message("other", seq))
        await store.delete_message(one)
        self.assertIsNone(await store.room_message("lobby", seq))
        self.assertIsNone(await store.edit_message(one, "c", None, "a", T0))
        self.assertEqual([e.old_content for e in await store.message_edits(one)], ["a"])
        self.assertEqual(await store.message_edits(12345), [])

    async def test_topics(self) -> None:
        """A topic is stored per room, replaced, and cleared by an empty text."""
        store = self.make_store()
        self.assertIsNone(await store.room_topic("lobby"))
        await store.set_room_topic("lobby", RoomTopic("first", "alice", T0))
        await store.set_room_topic("lobby", RoomTopic("second ☕", "bob", T0 + 1))
        await store.set_room_topic("other", RoomTopic("elsewhere", "carol", T0 + 2))
        self.assertEqual(await store.room_topic("lobby"), RoomTopic("second ☕", "bob", T0 + 1))
        await store.set_room_topic("lobby", RoomTopic("", "dora", T0 + 3))
        self.assertIsNone(await store.room_topic("lobby"))
        self.assertEqual((await store.room_topic("other")), RoomTopic("elsewhere", "carol", T0 + 2))


class MemoryEditTests(OnMemory, EditStoreTestsMixin, TestCase):
    """The edit and topic contracts, for the in-memory store."""


class SQLiteEditTests(OnSQLite, EditStoreTestsMixin, TestCase):
    """The edit and topic contracts, for SQLite on a real file."""


class PostgreSQLEditTests(OnPostgreSQL, EditStoreTestsMixin, TestCase):
    """The edit and topic contracts, for PostgreSQL on a new database per test."""
