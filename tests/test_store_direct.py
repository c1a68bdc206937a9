"""The ``IDirectMessageStore`` contract: one behaviour suite for the
in-memory store, SQLite on a real file and PostgreSQL (when
``PARKCHAT_TEST_POSTGRES`` is set; see ``tests/store_support.py``)."""

from __future__ import annotations

from twisted.trial.unittest import TestCase

from parkchat.model import DirectMessage
from tests.store_support import T0, OnMemory, OnPostgreSQL, OnSQLite, StoreSuite


class DirectMessageStoreTestsMixin(StoreSuite):
    """The IDirectMessageStore contract; mixed into a TestCase per implementation."""

    # -- pending and delivered -------------------------------------------------

    async def test_pending_direct(self) -> None:
        """Undelivered DMs to an account come oldest first, with both
        nicknames, ``limit`` at most; other recipients' DMs and those stored
        as delivered are not included."""
        store = self.make_store()
        alice, bob, carol = await self.users(store, "alice", "Bob", "carol")
        first = await store.insert_direct(alice.id, bob.id, "one", T0, False)
        await store.insert_direct(alice.id, carol.id, "for carol", T0 + 1, False)
        await store.insert_direct(alice.id, bob.id, "seen live", T0 + 2, True)
        third = await store.insert_direct(carol.id, bob.id, "three", T0 + 3, False)
        self.assertLess(first, third)
        pending = await store.pending_direct(bob.id, 10)
        self.assertEqual(
            pending,
            [
                DirectMessage(first, alice.id, "alice", bob.id, "Bob", "one", T0),
                DirectMessage(third, carol.id, "carol", bob.id, "Bob", "three", T0 + 3),
            ],
        )
        self.assertEqual(await store.pending_direct(bob.id, 1), pending[:1])
        self.assertEqual(await store.pending_direct(alice.id, 10), [])

    async def test_mark_delivered(self) -> None:
        """Marked DMs are no longer pending; the others still are, in order."""
        store = self.make_store()
        alice, bob = await self.users(store, "alice", "bob")
        ids = [
            await store.insert_direct(alice.id, bob.id, f"m{i}", T0 + i, False) for i in range(4)
        ]
        await store.mark_delivered([ids[0], ids[2]])
        self.assertEqual([m.id for m in await store.pending_direct(bob.id, 10)], [ids[1], ids[3]])
        await store.mark_delivered([])
        await store.mark_delivered([ids[0]])  # again: no change
        self.assertEqual([m.content for m in await store.pending_direct(bob.id, 10)], ["m1", "m3"])
        await store.mark_delivered(ids)
        self.assertEqual(await store.pending_direct(bob.id, 10), [])

    async def test_direct_content_round_trip(self) -> None:
        """DM content comes back exactly, newlines and non-ASCII included."""
        store = self.make_store()
        alice, bob = await self.users(store, "alice", "bob")
        await store.insert_direct(alice.id, bob.id, "héllo\n✓ 'quoted'", T0, False)
        [message] = await store.pending_direct(bob.id, 10)
        self.assertEqual(message.content, "héllo\n✓ 'quoted'")

    # -- history of a pair -----------------------------------------------------

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


class MemoryDirectMessageTests(OnMemory, DirectMessageStoreTestsMixin, TestCase):
    """The direct-message contract, for the in-memory store."""


class SQLiteDirectMessageTests(OnSQLite, DirectMessageStoreTestsMixin, TestCase):
    """The direct-message contract, for SQLite on a real file."""


class PostgreSQLDirectMessageTests(OnPostgreSQL, DirectMessageStoreTestsMixin, TestCase):
    """The direct-message contract, for PostgreSQL on a new database per test."""
