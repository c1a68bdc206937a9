"""The ``IDirectMessageStore`` contract: one behaviour suite for the
in-memory store, SQLite on a real file and PostgreSQL (when
``PARKCHAT_TEST_POSTGRES`` is set; see ``tests/store_support.py``)."""

from __future__ import annotations

from twisted.trial.unittest import TestCase

from parkchat.interfaces import IDirectMessageStore
from parkchat.model import DirectMessage
from tests.store_support import T0, OnMemory, OnPostgreSQL, OnSQLite, StoreSuite


class DirectMessageStoreTestsMixin(StoreSuite):
    """The IDirectMessageStore contract; mixed into a TestCase per implementation."""

    async def send(
        self, store: IDirectMessageStore, sender: int, recipient: int, content: str, ms: int = T0
    ) -> int:
        """Store an undelivered direct message and return its id."""
        message_id, _seq = await store.insert_direct(sender, recipient, content, ms, False)
        return message_id

    # -- pending and delivered -------------------------------------------------

    async def test_pending_direct(self) -> None:
        """Undelivered DMs to an account come oldest first, with both
        nicknames, ``limit`` at most; other recipients' DMs and those stored
        as delivered are not included."""
        store = self.make_store()
        alice, bob, carol = await self.users(store, "alice", "Bob", "carol")
        first = await self.send(store, alice.id, bob.id, "one", T0)
        await self.send(store, alice.id, carol.id, "for carol", T0 + 1)
        await store.insert_direct(alice.id, bob.id, "seen live", T0 + 2, True)
        third = await self.send(store, carol.id, bob.id, "three", T0 + 3)
        self.assertLess(first, third)
        pending = await store.pending_direct(bob.id, 10)
        self.assertEqual(
            pending,
            [
                DirectMessage(first, alice.id, "alice", bob.id, "Bob", "one", T0, seq=1),
                DirectMessage(third, carol.id, "carol", bob.id, "Bob", "three", T0 + 3, seq=1),
            ],
        )
        self.assertEqual(await store.pending_direct(bob.id, 1), pending[:1])
        self.assertEqual(await store.pending_direct(alice.id, 10), [])

    async def test_mark_delivered(self) -> None:
        """Marked DMs are no longer pending; the others still are, in order."""
        store = self.make_store()
        alice, bob = await self.users(store, "alice", "bob")
        ids = [await self.send(store, alice.id, bob.id, f"m{i}", T0 + i) for i in range(4)]
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
        await self.send(store, alice.id, bob.id, "héllo\n✓ 'quoted'")
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
        one, _ = await store.insert_direct(alice.id, bob.id, "one", T0, True)
        await self.send(store, alice.id, carol.id, "alice to carol", T0 + 1)
        two = await self.send(store, bob.id, alice.id, "two", T0 + 2)
        await self.send(store, carol.id, bob.id, "carol to bob", T0 + 3)
        await self.send(store, bob.id, bob.id, "bob's note", T0 + 4)
        three = await self.send(store, alice.id, bob.id, "three", T0 + 5)
        expected = [
            DirectMessage(one, alice.id, "Alice", bob.id, "bob", "one", T0, seq=1),
            DirectMessage(two, bob.id, "bob", alice.id, "Alice", "two", T0 + 2, seq=2),
            DirectMessage(three, alice.id, "Alice", bob.id, "bob", "three", T0 + 5, seq=3),
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
            ids.append(await self.send(store, sender.id, recipient.id, f"m{i}", T0 + i))
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
            ids.append(await self.send(store, sender.id, recipient.id, f"m{i}", T0 + i))
            # Other pairs' messages between them: never on a page.
            await self.send(store, carol.id, alice.id, f"c{i}", T0 + i)
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
        await self.send(store, alice.id, carol.id, "hi carol", T0)
        await self.send(store, carol.id, bob.id, "hi bob", T0 + 1)
        self.assertEqual(await store.direct_history(alice.id, bob.id, 10), [])
        self.assertEqual(await store.direct_history(bob.id, alice.id, 10, 2**40), [])
        self.assertEqual(await store.direct_history(alice.id, alice.id, 10), [])

    async def test_direct_history_notes_to_self(self) -> None:
        """With ``user_id == other_id``: the account's messages to itself,
        each once, oldest first; its messages with others are not included;
        ``limit`` and ``before`` work as for a pair."""
        store = self.make_store()
        alice, bob = await self.users(store, "alice", "bob")
        first = await self.send(store, alice.id, alice.id, "note 1", T0)
        await self.send(store, alice.id, bob.id, "to bob", T0 + 1)
        await self.send(store, bob.id, alice.id, "to alice", T0 + 2)
        second, _ = await store.insert_direct(alice.id, alice.id, "note 2", T0 + 3, True)
        third = await self.send(store, alice.id, alice.id, "note 3", T0 + 4)
        notes = await store.direct_history(alice.id, alice.id, 10)
        self.assertEqual(
            notes,
            [
                DirectMessage(first, alice.id, "alice", alice.id, "alice", "note 1", T0, seq=1),
                DirectMessage(
                    second, alice.id, "alice", alice.id, "alice", "note 2", T0 + 3, seq=2
                ),
                DirectMessage(third, alice.id, "alice", alice.id, "alice", "note 3", T0 + 4, seq=3),
            ],
        )
        self.assertEqual(await store.direct_history(alice.id, alice.id, 2), notes[1:])
        self.assertEqual(await store.direct_history(alice.id, alice.id, 10, third), notes[:2])
        self.assertEqual(await store.direct_history(bob.id, bob.id, 10), [])
        self.assertEqual(
            [m.content for m in await store.direct_history(alice.id, bob.id, 10)],
            ["to bob", "to alice"],
        )

    # -- positions in a conversation -----------------------------------------------

    async def test_insert_direct_numbers_each_conversation(self) -> None:
        """``insert_direct`` fires with ``(id, seq)``: ids increase over all
        direct messages; seqs count per conversation, both directions
        together, notes to self on their own, from 1."""
        store = self.make_store()
        alice, bob, carol = await self.users(store, "alice", "bob", "carol")
        sent = [
            await store.insert_direct(f.id, t.id, "x", T0, False)
            for f, t in [
                (alice, bob),
                (bob, alice),
                (alice, carol),
                (alice, alice),
                (bob, alice),
                (carol, alice),
                (alice, alice),
            ]
        ]
        ids = [i for i, _ in sent]
        self.assertEqual(ids, sorted(set(ids)))
        self.assertEqual([seq for _, seq in sent], [1, 2, 1, 1, 3, 2, 2])
        self.assertEqual(await store.conversation_seq(alice.id, bob.id), 3)
        self.assertEqual(await store.conversation_seq(bob.id, alice.id), 3)
        self.assertEqual(await store.conversation_seq(carol.id, alice.id), 2)
        self.assertEqual(await store.conversation_seq(alice.id, alice.id), 2)
        self.assertEqual(await store.conversation_seq(bob.id, carol.id), 0)
        self.assertEqual(await store.conversation_seq(bob.id, bob.id), 0)
        history = await store.direct_history(bob.id, alice.id, 10)
        self.assertEqual([(m.id, m.seq) for m in history], [sent[0], sent[1], sent[4]])

    async def conversation(self, store: IDirectMessageStore) -> tuple[int, int, list[int]]:
        """Alice and bob with 7 messages both ways (seqs 1..7, their ids
        returned), a third account's messages between them."""
        alice, bob, carol = await self.users(store, "alice", "bob", "carol")
        ids = []
        for i in range(7):
            sender, recipient = (alice, bob) if i % 3 else (bob, alice)
            ids.append(await self.send(store, sender.id, recipient.id, f"m{i}", T0 + i))
            await self.send(store, carol.id, bob.id, f"c{i}", T0 + i)
        await self.send(store, alice.id, alice.id, "note")
        return alice.id, bob.id, ids

    async def test_direct_messages_after(self) -> None:
        """``direct_messages_after`` gives the first ``limit`` messages of
        the conversation above a seq, by seq, whichever account asks; pages
        from the last seq of each cover the conversation once."""
        store = self.make_store()
        alice, bob, ids = await self.conversation(store)
        first = await store.direct_messages_after(alice, bob, 0, 3)
        self.assertEqual([(m.id, m.seq) for m in first], list(zip(ids[:3], [1, 2, 3], strict=True)))
        self.assertEqual([m.content for m in first], ["m0", "m1", "m2"])
        self.assertEqual(await store.direct_messages_after(bob, alice, 0, 3), first)
        self.assertEqual(
            [m.id for m in await store.direct_messages_after(bob, alice, 5, 9)], ids[5:]
        )
        self.assertEqual(await store.direct_messages_after(alice, bob, 7, 9), [])
        self.assertEqual(await store.direct_messages_after(alice, bob, 0, 0), [])
        walked: list[int] = []
        after = 0
        while page := await store.direct_messages_after(alice, bob, after, 2):
            walked += [m.id for m in page]
            after = page[-1].seq
        self.assertEqual(walked, ids)
        [note] = await store.direct_messages_after(alice, alice, 0, 9)
        self.assertEqual((note.content, note.seq), ("note", 1))

    async def test_direct_messages_before(self) -> None:
        """``direct_messages_before`` gives the last ``limit`` messages below
        a seq (the newest with None), oldest first."""
        store = self.make_store()
        alice, bob, ids = await self.conversation(store)
        newest = await store.direct_messages_before(alice, bob, None, 3)
        self.assertEqual(
            [(m.id, m.seq) for m in newest], list(zip(ids[4:], [5, 6, 7], strict=True))
        )
        self.assertEqual(await store.direct_messages_before(bob, alice, None, 3), newest)
        self.assertEqual(
            [m.id for m in await store.direct_messages_before(alice, bob, 5, 2)], ids[2:4]
        )
        self.assertEqual(
            [m.id for m in await store.direct_messages_before(bob, alice, 3, 9)], ids[:2]
        )
        self.assertEqual(await store.direct_messages_before(alice, bob, 1, 9), [])
        self.assertEqual(await store.direct_messages_before(alice, bob, None, 0), [])
        self.assertEqual(await store.direct_messages_before(bob, bob, None, 9), [])


class MemoryDirectMessageTests(OnMemory, DirectMessageStoreTestsMixin, TestCase):
    """The direct-message contract, for the in-memory store."""


class SQLiteDirectMessageTests(OnSQLite, DirectMessageStoreTestsMixin, TestCase):
    """The direct-message contract, for SQLite on a real file."""


class PostgreSQLDirectMessageTests(OnPostgreSQL, DirectMessageStoreTestsMixin, TestCase):
    """The direct-message contract, for PostgreSQL on a new database per test."""
