"""Names and guests (issue 15, items 1, 2, 5 and 9), below the surfaces:
look-alike skeletons, invisible and bidi characters in names and messages,
a registered name ending the guests that held it (here and from the bus),
guest budgets per address, and the guest mark on room events.

The same cases against a real server are in tests/test_names_end_to_end.py.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from twisted.trial.unittest import TestCase

from parkchat.errors import (
    AccountExists,
    InvalidContent,
    InvalidName,
    InvalidRoom,
    NameRegistered,
    RateLimited,
    TooManyConnections,
)
from parkchat.events import NameClaimedEvent
from parkchat.limits import Limits
from parkchat.model import (
    JOINED,
    DisconnectReason,
    Message,
    name_skeleton,
    neutralise_bidi,
    room_skeleton,
    system_message,
    validate_content,
    validate_nickname,
    validate_room,
)
from parkchat.protocols.ircwire import IrcEncoder, user_prefix
from parkchat.protocols.stream import render_lines
from parkchat.protocols.unified import event_dict
from parkchat.proxies import TrustedProxies
from parkchat.skeleton import skeleton
from parkchat.store.memory import MemoryStore
from parkchat.store.schema import SCHEMA_DIR
from parkchat.store.sqlite import open_sqlite, prepare_sqlite
from tests.helpers import FakeParticipant, make_service

#: Look-alikes of Latin names: Cyrillic a (U+0430), Greek omicron (U+03BF),
#: Cyrillic o (U+043E).
CYRILLIC_ALICE = "\u0430lice"
GREEK_BOB = "b\u03bfb"
CYRILLIC_LOBBY = "l\u043ebby"

INVISIBLE = [
    "\u202a",
    "\u202b",
    "\u202c",
    "\u202d",
    "\u202e",
    "\u2066",
    "\u2067",
    "\u2068",
    "\u2069",
    "\u200e",
    "\u200f",
    "\u061c",
    "\u200b",
    "\u200c",
    "\u200d",
    "\u2060",
    "\ufeff",
]


class SkeletonTests(TestCase):
    """UTS #39 skeletons from Unicode's confusables data."""

    def test_look_alikes_share_a_skeleton(self) -> None:
        for a, b in [
            ("alice", CYRILLIC_ALICE),
            ("bob", GREEK_BOB),
            ("m", "rn"),
            ("paypal", "p\u0430yp\u0430l"),
            ("alice", "ALICE"),
            ("alice", "a1ice"),
            ("alice", "AL\u0406CE"),  # Cyrillic capital I (U+0406)
            ("bob", "B0B"),
            ("zed", "\uff5a\uff45\uff44"),  # fullwidth
        ]:
            with self.subTest(a=a, b=b):
                self.assertEqual(name_skeleton(a), name_skeleton(b))

    def test_different_names_differ(self) -> None:
        for a, b in [("alice", "bob"), ("h\u00e9llo", "hello"), ("a.b", "a-b"), ("ann", "anne")]:
            with self.subTest(a=a, b=b):
                self.assertNotEqual(name_skeleton(a), name_skeleton(b))

    def test_skeleton_drops_format_characters(self) -> None:
        self.assertEqual(skeleton("a\u200bb\u202ec"), skeleton("abc"))

    def test_room_skeleton_keeps_case(self) -> None:
        self.assertEqual(room_skeleton("lobby"), room_skeleton(CYRILLIC_LOBBY))
        self.assertNotEqual(room_skeleton("lobby"), room_skeleton("Lobby"))


class InvisibleCharacterTests(TestCase):
    """Item 9: names refuse bidi controls and zero-width characters."""

    def test_nicknames_refuse_each(self) -> None:
        for char in INVISIBLE:
            for name in (f"zed{char}", f"z{char}ed"):
                with self.subTest(char=hex(ord(char)), name=name):
                    error = self.assertRaises(InvalidName, validate_nickname, name)
                    self.assertIn("invisible or direction-changing", error.message)

    def test_rooms_refuse_each(self) -> None:
        for char in INVISIBLE:
            with self.subTest(char=hex(ord(char))):
                error = self.assertRaises(InvalidRoom, validate_room, f"lob{char}by")
                self.assertIn("invisible or direction-changing", error.message)

    def test_right_to_left_names_are_fine(self) -> None:
        self.assertEqual(validate_nickname("\u05d3\u05e0\u05d4"), "\u05d3\u05e0\u05d4")
        self.assertEqual(validate_room("\u0645\u062c\u0644\u0633"), "\u0645\u062c\u0644\u0633")


class NeutraliseBidiTests(TestCase):
    """Item 9: in messages, no bidi scope reaches past its own line."""

    def test_plain_text_is_untouched(self) -> None:
        text = "hello \u05e9\u05dc\u05d5\u05dd\nzero\u200dwidth joiners stay"
        self.assertIs(neutralise_bidi(text), text)

    def test_open_override_is_closed(self) -> None:
        self.assertEqual(neutralise_bidi("\u202eevil"), "\u202eevil\u202c")

    def test_closed_on_each_line(self) -> None:
        self.assertEqual(neutralise_bidi("a\u202eb\nc\u2067d"), "a\u202eb\u202c\nc\u2067d\u2069")

    def test_nested_scopes_close_innermost_first(self) -> None:
        self.assertEqual(neutralise_bidi("\u2066a\u202bb"), "\u2066a\u202bb\u202c\u2069")

    def test_stray_closers_are_dropped(self) -> None:
        self.assertEqual(neutralise_bidi("a\u202cb\u2069c"), "abc")
        # A PDF never closes across an isolate.
        self.assertEqual(neutralise_bidi("\u202ex\u2066y\u202cz"), "\u202ex\u2066yz\u2069\u202c")

    def test_pdi_closes_embeddings_inside_its_isolate(self) -> None:
        self.assertEqual(neutralise_bidi("\u2067a\u202eb\u2069c"), "\u2067a\u202eb\u2069c")

    def test_balanced_text_is_kept(self) -> None:
        text = "see \u2067\u05e9\u05dc\u05d5\u05dd\u2069 and \u202bx\u202c"
        self.assertEqual(neutralise_bidi(text), text)

    def test_content_is_neutralised(self) -> None:
        self.assertEqual(validate_content("\u202eevil", 100), "\u202eevil\u202c")
        self.assertRaises(InvalidContent, validate_content, "\x1b[2J", 100)


class LookAlikeAccountTests(TestCase):
    """Item 2: an account whose skeleton is taken cannot be registered."""

    def setUp(self) -> None:
        self.service, self.store, self.clock = make_service()
        self.successResultOf(self.service.register("alice", "alice-secret"))

    def test_register_refuses_look_alikes(self) -> None:
        for name in (CYRILLIC_ALICE, "ALICE", "a1ice", "\uff41lice"):
            with self.subTest(name=name):
                error = self.failureResultOf(self.service.register(name, "x-secret")).value
                self.assertIsInstance(error, AccountExists)
                self.assertEqual(error.http_status, 409)
        error = self.failureResultOf(self.service.register(CYRILLIC_ALICE, "x-secret")).value
        self.assertIn("looks like the registered account 'alice'", error.message)

    def test_account_exists_for_look_alikes(self) -> None:
        """Guests and external-token names are refused by account_exists."""
        self.assertTrue(self.successResultOf(self.service.account_exists(CYRILLIC_ALICE)))
        self.assertFalse(self.successResultOf(self.service.account_exists("bob")))

    def test_memory_store_refuses_a_look_alike_race(self) -> None:
        """The store's own uniqueness decides a race past the first check."""
        store = MemoryStore()
        self.successResultOf(store.create_user("bob", b"h", 1))
        self.failureResultOf(store.create_user(GREEK_BOB, b"h", 2), AccountExists)
        found = self.successResultOf(store.get_user_like(GREEK_BOB))
        assert found is not None
        self.assertEqual(found.nickname, "bob")


class SQLiteLookAlikeTests(TestCase):
    """Schema version 5 on an existing SQLite database: the backfill (the
    store contract itself is in tests/test_store_accounts.py)."""

    async def test_upgrade_backfills_and_keeps_look_alikes(self) -> None:
        """A version 4 database with two accounts that look alike upgrades:
        both are kept, the older holds the skeleton, and no third look-alike
        can be created afterwards."""
        path = self.mktemp()
        conn = sqlite3.connect(path)
        conn.executescript((SCHEMA_DIR / "v4.sql").read_text(encoding="utf-8"))
        conn.execute("INSERT INTO schema_version (version) VALUES (4)")
        for name in ("alice", CYRILLIC_ALICE, "bob"):
            conn.execute(
                "INSERT INTO users (nickname, nickname_key, password_hash, created_ms, "
                "password_changed_ms) VALUES (?, ?, 'x', 1, 1)",
                (name, name),
            )
        conn.commit()
        conn.close()

        self.assertEqual(prepare_sqlite(path)[0], 4)
        conn = sqlite3.connect(path)
        rows = conn.execute("SELECT nickname, name_skeleton FROM users ORDER BY id").fetchall()
        conn.close()
        self.assertEqual(rows, [("alice", "alice"), (CYRILLIC_ALICE, None), ("bob", "bob")])
        # A second start finds nothing more to do and changes nothing.
        prepare_sqlite(path)

        store = open_sqlite(path)
        try:
            with self.assertRaises(AccountExists):
                await store.create_user("a1ice", b"$2b$hash", 2)
            # The younger look-alike is still found by its own name; a
            # look-alike lookup finds the older account.
            found = await store.get_user(CYRILLIC_ALICE)
            assert found is not None
            self.assertEqual(found.nickname, CYRILLIC_ALICE)
            alike = await store.get_user_like(CYRILLIC_ALICE)
            assert alike is not None
            self.assertEqual(alike.nickname, "alice")
        finally:
            await store.close()


class GuestTakeoverTests(TestCase):
    """Item 1: a registered name ends the guests holding it."""

    def setUp(self) -> None:
        self.service, self.store, self.clock = make_service(instance_id="here")

    def guest(self, name: str, room: str = "lobby", **kwargs: Any) -> FakeParticipant:
        participant = FakeParticipant(name, **kwargs)
        self.service.connect(participant)
        self.service.join(participant, room)
        return participant

    def test_register_closes_the_guest_first(self) -> None:
        zed = self.guest("zed")
        look_alike = self.guest("ZED", room="other")
        bystander = self.guest("mina")
        self.successResultOf(self.service.register("zed", "zed-secret"))
        self.assertEqual(zed.disconnected, [DisconnectReason.NAME_REGISTERED])
        self.assertEqual(look_alike.disconnected, [DisconnectReason.NAME_REGISTERED])
        self.assertEqual(bystander.disconnected, [])
        self.assertIsNone(self.service.connection_id(zed))
        self.assertNotIn("zed", self.service.members("lobby"))

    def test_confusable_guest_is_closed(self) -> None:
        guest = self.guest(CYRILLIC_ALICE)
        self.successResultOf(self.service.register("alice", "alice-secret"))
        self.assertEqual(guest.disconnected, [DisconnectReason.NAME_REGISTERED])

    def test_accounts_are_not_closed(self) -> None:
        """Only connections without an account go: an account of another
        name is untouched (and cannot share the skeleton anyway)."""
        bob = self.successResultOf(self.service.register("bob", "bob-secret"))
        account = self.guest("bob", user_id=bob.id)
        self.successResultOf(self.service.register("carol", "carol-secret"))
        self.assertEqual(account.disconnected, [])

    def test_other_instances_hear_of_it(self) -> None:
        """The registering instance announces the name; an instance that
        hears it closes its own guests of that look."""
        sent: list[Any] = []
        self.patch(self.service.bus, "publish_control", sent.append)
        self.successResultOf(self.service.register("zed", "zed-secret"))
        self.assertEqual(sent, [NameClaimedEvent(nickname="zed", skeleton="zed", instance="here")])
        guest = self.guest("Zed")
        self.service.control(NameClaimedEvent(nickname="zed", skeleton="zed", instance="there"))
        self.assertEqual(guest.disconnected, [DisconnectReason.NAME_REGISTERED])
        # Its own event coming back was applied already.
        other = self.guest("zed")
        self.service.control(sent[0])
        self.assertEqual(other.disconnected, [])

    def test_guests_cannot_take_the_name_afterwards(self) -> None:
        self.successResultOf(self.service.register("zed", "zed-secret"))
        self.assertTrue(self.successResultOf(self.service.account_exists("zed")))

    def test_the_error_told_is_name_registered(self) -> None:
        self.assertEqual(NameRegistered().code, "name_registered")
        self.assertIn("registered account", NameRegistered().message)


class GuestBudgetTests(TestCase):
    """Item 5: guests' connections and messages are budgeted per address."""

    limits = Limits(
        rate_limit=100,
        rate_burst=100,
        max_guests_per_ip=2,
        guest_rate_per_ip=1,
        guest_burst_per_ip=3,
        trusted_proxies=TrustedProxies(("10.9.9.9",)),
    )

    def setUp(self) -> None:
        self.service, self.store, self.clock = make_service(limits=self.limits)

    def joined(self, name: str, host: str = "10.0.0.1", **kwargs: Any) -> FakeParticipant:
        participant = FakeParticipant(name, peer_host=host, **kwargs)
        self.service.connect(participant)
        self.service.join(participant, "lobby")
        return participant

    def test_guest_connections_per_address(self) -> None:
        self.joined("g1")
        self.joined("g2")
        error = self.assertRaises(TooManyConnections, self.joined, "g3")
        self.assertIn("guest connections from this address", error.message)
        # Another address, an account, or a trusted proxy's own address: fine.
        self.joined("g3", host="10.0.0.2")
        bob = self.successResultOf(self.service.register("bob", "bob-secret"))
        self.joined("bob", user_id=bob.id)
        for n in range(3):
            self.joined(f"p{n}", host="10.9.9.9")

    def test_a_closed_guest_frees_its_slot(self) -> None:
        g1 = self.joined("g1")
        self.joined("g2")
        self.service.disconnect(g1)
        self.joined("g3")

    def test_guests_of_one_address_share_a_rate(self) -> None:
        """Two guest names from one address share one bucket (burst 3):
        the fourth message between them is refused; a guest elsewhere and
        an account on the same address are not."""
        a, b = self.joined("g1"), self.joined("g2")
        for sender in (a, b, a):
            self.service.post(sender, "lobby", "hi")
        self.assertRaises(RateLimited, self.service.post, b, "lobby", "hi")
        self.service.post(self.joined("far", host="10.0.0.2"), "lobby", "hi")
        bob = self.successResultOf(self.service.register("bob", "bob-secret"))
        account = self.joined("bob", user_id=bob.id)
        for _ in range(5):
            self.service.post(account, "lobby", "hi")
        self.clock.advance(1)
        self.service.post(b, "lobby", "again")


class GuestMarkTests(TestCase):
    """Guests are marked where names are shown."""

    def guest_message(self) -> Message:
        return Message(room="lobby", nickname="zed", content="hi\nthere", timestamp_ms=1)

    def test_message_guest_follows_the_account(self) -> None:
        self.assertTrue(self.guest_message().guest)
        account = Message(room="lobby", nickname="zed", content="x", timestamp_ms=1, user_id=1)
        self.assertFalse(account.guest)
        self.assertTrue(self.guest_message().with_ids(3, 4).guest)

    def test_api_object(self) -> None:
        message = self.guest_message()
        self.assertTrue(message.as_dict()["guest"])
        self.assertIn(b',"guest":true}', message.json())
        account = Message(room="lobby", nickname="zed", content="x", timestamp_ms=1, user_id=1)
        self.assertNotIn("guest", account.as_dict())
        self.assertNotIn(b"guest", account.json())

    def test_ws_frames(self) -> None:
        self.assertTrue(event_dict(self.guest_message())["guest"])
        join = system_message("lobby", "zed", JOINED, 1, guest=True)
        self.assertTrue(event_dict(join)["guest"])
        self.assertNotIn("guest", event_dict(system_message("lobby", "zed", JOINED, 1)))

    def test_line_protocol(self) -> None:
        self.assertEqual(render_lines(self.guest_message()), b"~zed:hi\n~zed:there\n")
        join = system_message("lobby", "zed", JOINED, 1, guest=True)
        self.assertEqual(render_lines(join), b"*** ~zed has joined the room\n")

    def test_irc(self) -> None:
        self.assertEqual(user_prefix("zed", "irc.x", guest=True), "zed!~zed@irc.x")
        self.assertEqual(user_prefix("zed", "irc.x"), "zed!zed@irc.x")
        event = IrcEncoder("irc.x").encode(self.guest_message())
        assert event is not None
        self.assertTrue(event.data(0).startswith(b":zed!~zed@irc.x PRIVMSG #lobby :hi\r\n"))

    def test_joins_are_marked_by_the_service(self) -> None:
        service, _, _ = make_service()
        watcher = FakeParticipant("mina")
        service.connect(watcher)
        service.join(watcher, "lobby")
        zed = FakeParticipant("zed")
        service.connect(zed)
        service.join(zed, "lobby")
        self.assertTrue(watcher.received[-1].guest)


class LookAlikeRoomTests(TestCase):
    def test_an_open_room_has_no_look_alike(self) -> None:
        service, _, _ = make_service()
        a, b = FakeParticipant("a"), FakeParticipant("b")
        service.connect(a)
        service.connect(b)
        service.join(a, "lobby")
        error = self.assertRaises(InvalidRoom, service.join, b, CYRILLIC_LOBBY)
        self.assertIn("looks like the open room 'lobby'", error.message)
        service.join(b, "Lobby")  # case is not a look-alike for rooms
        service.leave(a, "lobby")
        service.join(b, CYRILLIC_LOBBY)  # once nobody is in it
