"""The ``IRoomMessageStore`` contract: one behaviour suite for the in-memory
store, SQLite on a real file and PostgreSQL (when ``PARKCHAT_TEST_POSTGRES``
is set; see ``tests/store_support.py``)."""

from __future__ import annotations

from twisted.trial.unittest import TestCase

from parkchat.interfaces import IRoomMessageStore
from parkchat.model import Message
from parkchat.store.sql.messages import ROOMS_PER_STATEMENT
from tests.store_support import T0, OnMemory, OnPostgreSQL, OnSQLite, StoreSuite, chat


class RoomMessageStoreTestsMixin(StoreSuite):
    """The IRoomMessageStore contract; mixed into a TestCase per implementation."""

    async def insert(self, store: IRoomMessageStore, messages: list[Message]) -> list[Message]:
        """Store ``messages`` and return them as stored (ids and seqs set)."""
        positions = await store.insert_messages(messages)
        return [m.with_ids(i, seq) for m, (i, seq) in zip(messages, positions, strict=True)]

    async def test_insert_returns_increasing_ids_in_order(self) -> None:
        """insert_messages fires with one positive id per message, increasing in
        submission order, and later batches get larger ids."""
        store = self.make_store()
        first = await store.insert_messages([chat("lobby", f"m{i}") for i in range(5)])
        second = await store.insert_messages([chat("other", "x"), chat("lobby", "y")])
        ids = [i for i, _ in first + second]
        self.assertEqual(len(first), 5)
        self.assertEqual(len(second), 2)
        self.assertTrue(all(i > 0 for i in ids), ids)
        self.assertEqual(ids, sorted(set(ids)))

    async def test_insert_numbers_each_room(self) -> None:
        """Each message gets the next seq of its own room, in batch order,
        however the batch mixes rooms; a room's seqs go on from batch to
        batch without a gap, starting at 1."""
        store = self.make_store()
        first = await store.insert_messages(
            [chat("b", "b1"), chat("a", "a1"), chat("b", "b2"), chat("c", "c1"), chat("b", "b3")]
        )
        second = await store.insert_messages([chat("a", "a2"), chat("b", "b4")])
        third = await store.insert_messages([chat("a", "a3")])
        self.assertEqual([seq for _, seq in first], [1, 1, 2, 1, 3])
        self.assertEqual([seq for _, seq in second], [2, 4])
        self.assertEqual([seq for _, seq in third], [3])

    async def test_seq_order_is_id_order_in_a_room(self) -> None:
        """Within a room, a greater seq always has a greater id, so paging
        by id and reading by seq walk a room in the same order."""
        store = self.make_store()
        stored: list[Message] = []
        for i in range(5):
            stored += await self.insert(
                store, [chat("ab"[(i + j) % 2], f"m{i}-{j}") for j in range(3)]
            )
        for room in "ab":
            mine = [m for m in stored if m.room == room]
            self.assertEqual([m.seq for m in mine], list(range(1, len(mine) + 1)))
            self.assertEqual([m.id for m in mine], sorted(m.id for m in mine))

    async def test_delete_message(self) -> None:
        """delete_message removes one message, answers its room and seq
        (the deleted notice carries it), and None for an id that is not (or
        no longer) there."""
        store = self.make_store()
        _, b, c = await self.insert(
            store, [chat("lobby", "keep"), chat("lobby", "spam"), chat("garden", "other")]
        )
        self.assertEqual(await store.delete_message(b.id), ("lobby", 2))
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

    async def test_page_from_an_id_that_is_not_the_rooms(self) -> None:
        """Paging from a deleted message's id, another room's or one never
        given is paging by id all the same: the messages below or above it."""
        store = self.make_store()
        stored: list[Message] = []
        for i in range(6):
            stored += await self.insert(store, [chat("lobby", f"m{i}"), chat("noise", f"n{i}")])
        lobby = [m for m in stored if m.room == "lobby"]
        noise = [m for m in stored if m.room == "noise"]
        await store.delete_message(lobby[3].id)
        kept = lobby[:3] + lobby[4:]
        gone = lobby[3].id
        self.assertEqual(await store.recent_messages("lobby", 2, before=gone), kept[1:3])
        self.assertEqual(await store.recent_messages("lobby", 2, after=gone), kept[3:5])
        self.assertEqual(await store.recent_messages("lobby", 50, before=noise[2].id), lobby[:3])
        self.assertEqual(await store.recent_messages("lobby", 50, after=noise[2].id), kept[3:])
        beyond = stored[-1].id + 100
        self.assertEqual(await store.recent_messages("lobby", 2, before=beyond), kept[-2:])
        self.assertEqual(await store.recent_messages("lobby", 2, after=beyond), [])

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

    # -- by seq ------------------------------------------------------------------

    async def test_every_read_carries_seq(self) -> None:
        """Messages read back by id or by seq carry the seq they were given."""
        store = self.make_store()
        stored = await self.insert(store, [chat("ab"[i % 2], f"m{i}") for i in range(6)])
        in_a = [m for m in stored if m.room == "a"]
        for read in (
            await store.recent_messages("a", 10),
            await store.recent_messages("a", 10, after=0),
            await store.recent_messages("a", 10, before=stored[-1].id + 1),
            await store.room_messages_after("a", 0, 10),
            await store.room_messages_before("a", None, 10),
        ):
            self.assertEqual([(m.id, m.seq) for m in read], [(m.id, m.seq) for m in in_a])
            self.assertEqual(read, in_a)

    async def test_room_messages_after(self) -> None:
        """``room_messages_after`` gives the first ``limit`` messages with a
        greater seq, by seq: from the start with 0, nothing past the last
        one, nothing with ``limit`` 0; other rooms never."""
        store = self.make_store()
        stored = await self.insert(store, [chat("ab"[i % 3 == 0], f"m{i}") for i in range(15)])
        lobby = [m for m in stored if m.room == "a"]
        self.assertEqual(len(lobby), 10)
        self.assertEqual(await store.room_messages_after("a", 0, 3), lobby[:3])
        self.assertEqual(await store.room_messages_after("a", 4, 3), lobby[4:7])
        self.assertEqual(await store.room_messages_after("a", 8, 50), lobby[8:])
        self.assertEqual(await store.room_messages_after("a", 10, 50), [])
        self.assertEqual(await store.room_messages_after("a", 2**40, 50), [])
        self.assertEqual(await store.room_messages_after("a", 0, 0), [])
        self.assertEqual(await store.room_messages_after("nowhere", 0, 10), [])

    async def test_room_messages_after_pages_cover_the_room(self) -> None:
        """Reading pages from the last seq of each page reaches every message
        of the room once, in order, and ends with an empty page."""
        store = self.make_store()
        lobby: list[Message] = []
        for i in range(7):
            stored = await self.insert(store, [chat("lobby", f"m{i}"), chat("noise", f"n{i}")])
            lobby += [m for m in stored if m.room == "lobby"]
        walked: list[Message] = []
        after = 0
        while page := await store.room_messages_after("lobby", after, 3):
            walked += page
            after = page[-1].seq
        self.assertEqual(walked, lobby)

    async def test_room_messages_before(self) -> None:
        """``room_messages_before`` gives the last ``limit`` messages with a
        smaller seq, oldest first; the newest ones with None; nothing below
        the first, nothing with ``limit`` 0."""
        store = self.make_store()
        stored = await self.insert(store, [chat("lobby", f"m{i}") for i in range(10)])
        await self.insert(store, [chat("other", "x")])
        self.assertEqual(await store.room_messages_before("lobby", None, 3), stored[-3:])
        self.assertEqual(await store.room_messages_before("lobby", None, 50), stored)
        self.assertEqual(await store.room_messages_before("lobby", 7, 3), stored[3:6])
        self.assertEqual(await store.room_messages_before("lobby", 3, 50), stored[:2])
        self.assertEqual(await store.room_messages_before("lobby", 1, 50), [])
        self.assertEqual(await store.room_messages_before("lobby", 2**40, 2), stored[-2:])
        self.assertEqual(await store.room_messages_before("lobby", None, 0), [])
        self.assertEqual(await store.room_messages_before("nowhere", None, 10), [])

    async def test_current_seq(self) -> None:
        """``current_seq`` is 0 for a room never written to, then the seq of
        the room's last message; other rooms' messages do not move it."""
        store = self.make_store()
        self.assertEqual(await store.current_seq("lobby"), 0)
        await store.insert_messages([chat("lobby", "1"), chat("other", "x"), chat("lobby", "2")])
        self.assertEqual(await store.current_seq("lobby"), 2)
        await store.insert_messages([chat("other", "y")])
        self.assertEqual(await store.current_seq("lobby"), 2)
        self.assertEqual(await store.current_seq("other"), 2)
        self.assertEqual(await store.current_seq("Lobby"), 0)

    async def test_deleted_message_leaves_a_hole(self) -> None:
        """Deleting a message leaves its seq unused: ranges skip it, the
        room's current seq stays, and the next message takes the next seq
        (also when the newest message was deleted)."""
        store = self.make_store()
        stored = await self.insert(store, [chat("lobby", f"m{i}") for i in range(4)])
        await store.delete_message(stored[1].id)
        await store.delete_message(stored[3].id)
        self.assertEqual(await store.room_messages_after("lobby", 0, 10), [stored[0], stored[2]])
        self.assertEqual(await store.room_messages_before("lobby", 4, 10), [stored[0], stored[2]])
        self.assertEqual(await store.current_seq("lobby"), 4)
        [(_, seq)] = await store.insert_messages([chat("lobby", "after")])
        self.assertEqual(seq, 5)

    async def test_room_positions(self) -> None:
        """``room_positions`` maps each given room written to onto its
        current seq; rooms never written to are absent, a room named twice
        appears once, and no rooms give an empty map."""
        store = self.make_store()
        await store.insert_messages([chat("a", "1"), chat("b", "1"), chat("a", "2")])
        self.assertEqual(await store.room_positions(["a", "b", "nowhere", "a"]), {"a": 2, "b": 1})
        self.assertEqual(await store.room_positions(["b"]), {"b": 1})
        self.assertEqual(await store.room_positions([]), {})
        self.assertEqual(await store.room_positions(["nowhere"]), {})

    async def test_many_rooms_in_one_batch(self) -> None:
        """A batch spanning more rooms than one statement takes
        (``ROOMS_PER_STATEMENT``) numbers every room, and ``room_positions``
        answers for as many rooms at once."""
        store = self.make_store()
        rooms = [f"room-{i:04d}" for i in range(ROOMS_PER_STATEMENT * 2 + 7)]
        batch = [chat(room, "one") for room in rooms] + [chat(rooms[-1], "two")]
        positions = await store.insert_messages(batch)
        self.assertEqual([seq for _, seq in positions], [1] * len(rooms) + [2])
        expected = {room: 1 for room in rooms} | {rooms[-1]: 2}
        self.assertEqual(await store.room_positions([*reversed(rooms), "nowhere"]), expected)
        [second] = await store.room_messages_after(rooms[-1], 1, 10)
        self.assertEqual((second.seq, second.content), (2, "two"))


class MemoryRoomMessageTests(OnMemory, RoomMessageStoreTestsMixin, TestCase):
    """The room-message contract, for the in-memory store."""


class SQLiteRoomMessageTests(OnSQLite, RoomMessageStoreTestsMixin, TestCase):
    """The room-message contract, for SQLite on a real file."""


class PostgreSQLRoomMessageTests(OnPostgreSQL, RoomMessageStoreTestsMixin, TestCase):
    """The room-message contract, for PostgreSQL on a new database per test."""
