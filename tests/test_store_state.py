"""The account-state contract (``IAccountStateStore``: joined rooms,
conversations, read markers, mutes, counts), mentions stored with room
messages (``IRoomMessageStore.insert_messages``), and refresh tokens
(``IRefreshTokenStore``): one behaviour suite for the in-memory store,
SQLite on a real file and PostgreSQL (when ``PARKCHAT_TEST_POSTGRES`` is
set; see ``tests/store_support.py``)."""

from __future__ import annotations

from twisted.trial.unittest import TestCase

from parkchat.interfaces import IMessageStore
from parkchat.mentions import UNRESOLVED
from parkchat.model import COUNT_CAP, DirectState, Message, RoomState, StoredUser
from tests.store_support import T0, OnMemory, OnPostgreSQL, OnSQLite, StoreSuite


def said(room: str, user: StoredUser | None, content: str, *mentions: str) -> Message:
    """An unsaved message of ``user`` (a guest "guest" if None)."""
    return Message(
        room=room,
        nickname=user.nickname if user is not None else "guest",
        content=content,
        timestamp_ms=T0,
        user_id=user.id if user is not None else None,
        mentions=tuple(mentions),
    )


class AccountStateStoreTestsMixin(StoreSuite):
    """IAccountStateStore and mentions; mixed into a TestCase per implementation."""

    async def post(self, store: IMessageStore, *messages: Message) -> list[tuple[int, int]]:
        return await store.insert_messages(list(messages))

    # -- rooms -------------------------------------------------------------------

    async def test_add_room_starts_read_at_current_seq(self) -> None:
        """A room recorded for an account starts read up to the room's seq
        then (older messages are not unread); recording it again changes
        nothing and fires None."""
        store = self.make_store()
        alice, bob = await self.users(store, "alice", "bob")
        await self.post(store, said("garden", bob, "one"), said("garden", bob, "two"))
        state = await store.add_account_room(alice.id, "garden", T0)
        self.assertEqual(state, RoomState("garden", seq=2, read_seq=2))
        self.assertIsNone(await store.add_account_room(alice.id, "garden", T0 + 1))
        self.assertEqual(await store.account_rooms(alice.id), [state])
        self.assertEqual(await store.account_rooms(bob.id), [])

    async def test_rooms_by_name_and_removed(self) -> None:
        """``account_rooms`` lists the account's rooms by name; a removed
        one is gone, and removing it again says it was not there."""
        store = self.make_store()
        [alice] = await self.users(store, "alice")
        for room in ("zoo", "attic", "garden"):
            await store.add_account_room(alice.id, room, T0)
        self.assertEqual(
            [s.room for s in await store.account_rooms(alice.id)], ["attic", "garden", "zoo"]
        )
        self.assertEqual(await store.account_room_names(alice.id), ["attic", "garden", "zoo"])
        self.assertTrue(await store.remove_account_room(alice.id, "garden"))
        self.assertFalse(await store.remove_account_room(alice.id, "garden"))
        self.assertEqual(await store.account_room_names(alice.id), ["attic", "zoo"])
        self.assertEqual([s.room for s in await store.account_rooms(alice.id)], ["attic", "zoo"])

    async def test_unread_counts_others_messages_after_marker(self) -> None:
        """Unread counts the others' messages (guests' too) after the read
        marker, not the account's own."""
        store = self.make_store()
        alice, bob = await self.users(store, "alice", "bob")
        await store.add_account_room(alice.id, "garden", T0)
        await self.post(
            store,
            said("garden", bob, "1"),
            said("garden", alice, "2"),
            said("garden", None, "3"),
            said("other", bob, "elsewhere"),
        )
        [state] = await store.account_rooms(alice.id)
        self.assertEqual((state.seq, state.read_seq, state.unread), (3, 0, 2))

    async def test_mark_read_forward_only_and_clamped(self) -> None:
        """The marker moves forward only; a seq above the room's is clamped;
        an unchanged marker fires None (nothing to tell)."""
        store = self.make_store()
        alice, bob = await self.users(store, "alice", "bob")
        await store.add_account_room(alice.id, "garden", T0)
        await self.post(store, *[said("garden", bob, str(n)) for n in range(5)])
        state = await store.mark_room_read(alice.id, "garden", 3)
        self.assertEqual((state.read_seq, state.unread, state.seq), (3, 2, 5))
        self.assertIsNone(await store.mark_room_read(alice.id, "garden", 2))
        self.assertIsNone(await store.mark_room_read(alice.id, "garden", 3))
        clamped = await store.mark_room_read(alice.id, "garden", 99)
        self.assertEqual((clamped.read_seq, clamped.unread), (5, 0))
        self.assertIsNone(await store.mark_room_read(alice.id, "garden", 100))
        self.assertIsNone(await store.mark_room_read(bob.id, "garden", 1))  # not bob's room

    async def test_mute(self) -> None:
        """Mute is kept per account and room; a room not the account's: None."""
        store = self.make_store()
        alice, bob = await self.users(store, "alice", "bob")
        await store.add_account_room(alice.id, "garden", T0)
        self.assertTrue((await store.set_room_muted(alice.id, "garden", True)).muted)
        [state] = await store.account_rooms(alice.id)
        self.assertTrue(state.muted)
        self.assertFalse((await store.set_room_muted(alice.id, "garden", False)).muted)
        self.assertIsNone(await store.set_room_muted(bob.id, "garden", True))

    async def test_counts_stop_at_cap(self) -> None:
        """Unread counts stop at COUNT_CAP."""
        store = self.make_store()
        alice, bob = await self.users(store, "alice", "bob")
        await store.add_account_room(alice.id, "garden", T0)
        await self.post(store, *[said("garden", bob, "x") for _ in range(COUNT_CAP + 5)])
        [state] = await store.account_rooms(alice.id)
        self.assertEqual((state.unread, state.seq), (COUNT_CAP, COUNT_CAP + 5))

    # -- mentions ----------------------------------------------------------------

    async def test_mentions_resolved_stored_and_read_back(self) -> None:
        """Candidates are resolved against the accounts (folded; the
        account's own spelling kept), a guest member's name and
        ``@room`` are kept, unknown candidates dropped; the message holds
        the names, sorted, and reads give them back."""
        store = self.make_store()
        alice, _bob = await self.users(store, "alice", "Bob")
        message = said(
            "garden",
            alice,
            "@bob @nobody @room @guest1",
            UNRESOLVED + "bob",
            "?nobody",
            "@room",
            "guest1",
        )
        [(message_id, seq), _] = await self.post(store, message, said("garden", alice, "plain"))
        self.assertEqual(message.mentions, ("@room", "Bob", "guest1"))
        read = await store.room_messages_after("garden", 0, 10)
        self.assertEqual([m.mentions for m in read], [("@room", "Bob", "guest1"), ()])
        self.assertEqual(
            [m.mentions for m in await store.recent_messages("garden", 10)],
            [("@room", "Bob", "guest1"), ()],
        )
        before = await store.room_messages_before("garden", None, 10)
        self.assertEqual(before[0].mentions, ("@room", "Bob", "guest1"))
        self.assertEqual(seq, 1)
        self.assertEqual(message_id, read[0].id)

    async def test_mention_counts(self) -> None:
        """Mentions count the others' unread messages that name the account,
        ``@room`` or ``@here`` (once per message); the account's own and
        read ones do not count; a deleted message no longer counts."""
        store = self.make_store()
        alice, bob, carol = await self.users(store, "alice", "bob", "carol")
        await store.add_account_room(alice.id, "garden", T0)
        stored = await self.post(
            store,
            said("garden", bob, "@alice @room", "?alice", "@room"),
            said("garden", bob, "@carol", "?carol"),
            said("garden", carol, "@here", "@here"),
            said("garden", alice, "@alice me", "?alice"),
            said("garden", bob, "@alice again", "?alice"),
        )
        [state] = await store.account_rooms(alice.id)
        self.assertEqual((state.unread, state.mentions), (4, 3))
        state = await store.mark_room_read(alice.id, "garden", 1)
        self.assertEqual((state.unread, state.mentions), (3, 2))
        await store.delete_message(stored[4][0])
        [state] = await store.account_rooms(alice.id)
        self.assertEqual((state.unread, state.mentions), (2, 1))

    # -- conversations -------------------------------------------------------------

    async def test_directs_listed_with_unread(self) -> None:
        """Conversations with messages are listed by the other's name, with
        the other's messages after the marker as unread."""
        store = self.make_store()
        alice, bob, carol = await self.users(store, "alice", "bob", "carol")
        await store.insert_direct(bob.id, alice.id, "hi", T0, False)
        await store.insert_direct(alice.id, bob.id, "hello", T0, False)
        await store.insert_direct(bob.id, alice.id, "?", T0, False)
        await store.insert_direct(carol.id, bob.id, "not alice's", T0, False)
        self.assertEqual(
            await store.account_directs(alice.id),
            [DirectState("bob", bob.id, seq=3, read_seq=0, unread=2)],
        )
        self.assertEqual(
            [(d.with_nickname, d.unread) for d in await store.account_directs(bob.id)],
            [("alice", 1), ("carol", 1)],
        )
        state = await store.mark_direct_read(alice.id, bob.id, 9)
        self.assertEqual((state.read_seq, state.unread, state.seq), (3, 0, 3))
        self.assertIsNone(await store.mark_direct_read(alice.id, bob.id, 1))

    async def test_open_and_close(self) -> None:
        """An opened conversation is listed without messages; a closed one
        is hidden until its next message."""
        store = self.make_store()
        alice, bob, carol = await self.users(store, "alice", "bob", "carol")
        opened = await store.set_direct_open(alice.id, carol.id, True)
        self.assertEqual(opened, DirectState("carol", carol.id, seq=0, read_seq=0))
        await store.insert_direct(bob.id, alice.id, "hi", T0, False)
        self.assertEqual(
            [d.with_nickname for d in await store.account_directs(alice.id)], ["bob", "carol"]
        )
        closed = await store.set_direct_open(alice.id, bob.id, False)
        self.assertFalse(closed.open)
        await store.set_direct_open(alice.id, carol.id, False)
        self.assertEqual(await store.account_directs(alice.id), [])
        await store.insert_direct(bob.id, alice.id, "again", T0, False)
        self.assertEqual(
            [(d.with_nickname, d.seq, d.unread) for d in await store.account_directs(alice.id)],
            [("bob", 2, 2)],
        )
        self.assertIsNone(await store.set_direct_open(alice.id, 9999, True))
        self.assertIsNone(await store.direct_state(alice.id, 9999))
        self.assertEqual((await store.direct_state(alice.id, bob.id)).seq, 2)

    # -- refresh tokens ------------------------------------------------------------

    async def test_refresh_token_spent_once(self) -> None:
        """A token is spent once; presented again it revokes its family
        (the family's other tokens stop working), not other families."""
        store = self.make_store()
        [alice] = await self.users(store, "alice")
        await store.add_refresh_token("h1", alice.id, "fam", T0, T0 + 1000)
        await store.add_refresh_token("other", alice.id, "fam2", T0, T0 + 1000)
        self.assertEqual(await store.spend_refresh_token("h1", T0 + 1), ("ok", alice.id, "fam"))
        await store.add_refresh_token("h2", alice.id, "fam", T0 + 1, T0 + 1000)
        self.assertEqual(await store.spend_refresh_token("h1", T0 + 2), ("reused", alice.id, "fam"))
        self.assertEqual(await store.spend_refresh_token("h2", T0 + 3), ("invalid", 0, ""))
        self.assertEqual(await store.spend_refresh_token("other", T0 + 3), ("ok", alice.id, "fam2"))
        self.assertEqual(await store.spend_refresh_token("unknown", T0), ("invalid", 0, ""))

    async def test_refresh_token_expiry_and_prune(self) -> None:
        """An expired token is invalid; pruning forgets expired ones."""
        store = self.make_store()
        [alice] = await self.users(store, "alice")
        await store.add_refresh_token("old", alice.id, "f1", T0, T0 + 10)
        await store.add_refresh_token("new", alice.id, "f2", T0, T0 + 100)
        self.assertEqual(await store.spend_refresh_token("old", T0 + 10), ("invalid", 0, ""))
        self.assertEqual(await store.prune_refresh_tokens(T0 + 50), 1)
        self.assertEqual(await store.spend_refresh_token("new", T0 + 50), ("ok", alice.id, "f2"))

    async def test_revoke_refresh_tokens(self) -> None:
        """Revoking one token revokes its family; revoking an account's
        revokes all of them and counts the live ones."""
        store = self.make_store()
        alice, bob = await self.users(store, "alice", "bob")
        await store.add_refresh_token("a1", alice.id, "fa", T0, T0 + 100)
        await store.add_refresh_token("a2", alice.id, "fb", T0, T0 + 100)
        await store.add_refresh_token("a3", alice.id, "fc", T0, T0 + 100)
        await store.add_refresh_token("b1", bob.id, "fd", T0, T0 + 100)
        self.assertEqual(await store.revoke_refresh_token("a1"), alice.id)
        self.assertIsNone(await store.revoke_refresh_token("nope"))
        self.assertEqual(await store.spend_refresh_token("a1", T0), ("invalid", 0, ""))
        self.assertEqual(await store.revoke_refresh_tokens(alice.id), 2)
        self.assertEqual(await store.spend_refresh_token("a2", T0), ("invalid", 0, ""))
        self.assertEqual(await store.spend_refresh_token("b1", T0), ("ok", bob.id, "fd"))


class MemoryAccountStateTests(OnMemory, AccountStateStoreTestsMixin, TestCase):
    """The account-state contract, for the in-memory store."""


class SQLiteAccountStateTests(OnSQLite, AccountStateStoreTestsMixin, TestCase):
    """The account-state contract, for SQLite on a real file."""


class PostgreSQLAccountStateTests(OnPostgreSQL, AccountStateStoreTestsMixin, TestCase):
    """The account-state contract, for PostgreSQL on a new database per test."""
