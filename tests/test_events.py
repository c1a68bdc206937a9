"""Tests for parkchat.events: the typed bus events and their one codec.

The expected dicts and frames are written out literally: they are the wire
format that instances of different versions exchange during a rolling
upgrade, and must not change by accident.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.trial.unittest import TestCase

from parkchat import events
from parkchat.events import (
    CONTROL_EVENTS,
    BanEvent,
    ControlEvent,
    CutoffEvent,
    DirectMessageEvent,
    DirectStateEvent,
    Goodbye,
    KickEvent,
    NameClaimedEvent,
    PresenceAnnouncement,
    ResyncEvent,
    RevokeEvent,
    RoomStateEvent,
    SessionEvent,
    UnbanEvent,
    announcement_frame,
    decode_event,
    encode_event,
    event_frame,
    presence_record,
    read_control_frame,
    read_presence_record,
    read_room_frame,
    room_frame,
)
from parkchat.model import (
    EDITED,
    LEFT,
    QUIT,
    Ban,
    Departure,
    DirectMessage,
    Message,
    system_message,
)

INSTANCE = "ab12cd34"

#: One of each control event, with the dict the wire carries for it.
SAMPLES: list[tuple[ControlEvent, dict[str, Any]]] = [
    (
        DirectMessageEvent(
            id=7,
            from_user_id=1,
            from_nickname="alice",
            to_user_id=2,
            to_nickname="bob",
            content="hi ☕",
            timestamp_ms=1_757_345_400_123,
            seq=3,
            instance=INSTANCE,
        ),
        {
            "kind": "dm",
            "id": 7,
            "from_user_id": 1,
            "from": "alice",
            "to_user_id": 2,
            "to": "bob",
            "content": "hi ☕",
            "timestamp_ms": 1_757_345_400_123,
            "seq": 3,
            "instance": INSTANCE,
        },
    ),
    (
        KickEvent(nickname="bob", room="lobby", reason="off topic", instance=INSTANCE),
        {
            "kind": "kick",
            "nickname": "bob",
            "room": "lobby",
            "reason": "off topic",
            "instance": INSTANCE,
        },
    ),
    (
        BanEvent(
            user_id=2,
            nickname="bob",
            reason="spam",
            created_ms=5,
            expires_ms=None,
            instance=INSTANCE,
        ),
        {
            "kind": "ban",
            "user_id": 2,
            "nickname": "bob",
            "reason": "spam",
            "created_ms": 5,
            "expires_ms": None,
            "instance": INSTANCE,
        },
    ),
    (
        UnbanEvent(user_id=2, instance=INSTANCE),
        {"kind": "unban", "user_id": 2, "instance": INSTANCE},
    ),
    (
        RevokeEvent(
            token_id="jti-1",
            expires_s=1_757_349_000,
            user_id=1,
            nickname="alice",
            instance=INSTANCE,
        ),
        {
            "kind": "revoke",
            "token_id": "jti-1",
            "expires_s": 1_757_349_000,
            "user_id": 1,
            "nickname": "alice",
            "instance": INSTANCE,
        },
    ),
    (
        CutoffEvent(
            user_id=1, nickname="alice", before_ms=1_757_345_400_000, close=True, instance=INSTANCE
        ),
        {
            "kind": "cutoff",
            "user_id": 1,
            "nickname": "alice",
            "before_ms": 1_757_345_400_000,
            "close": True,
            "instance": INSTANCE,
        },
    ),
    (
        SessionEvent(user_key="alice", keep=f"{INSTANCE}.c3", number=7, instance=INSTANCE),
        {
            "kind": "session",
            "user_key": "alice",
            "keep": f"{INSTANCE}.c3",
            "number": 7,
            "instance": INSTANCE,
        },
    ),
    (
        ResyncEvent(instance=INSTANCE),
        {"kind": "resync", "instance": INSTANCE},
    ),
    (
        RoomStateEvent(
            user_id=1,
            user_key="alice",
            room="garden",
            seq=42,
            read_seq=40,
            unread=2,
            mentions=1,
            muted=False,
            topic=None,
            joined=True,
            skip=f"{INSTANCE}.c3",
            instance=INSTANCE,
        ),
        {
            "kind": "room_state",
            "user_id": 1,
            "user_key": "alice",
            "room": "garden",
            "seq": 42,
            "read_seq": 40,
            "unread": 2,
            "mentions": 1,
            "muted": False,
            "topic": None,
            "joined": True,
            "skip": f"{INSTANCE}.c3",
            "instance": INSTANCE,
        },
    ),
    (
        DirectStateEvent(
            user_id=1,
            user_key="alice",
            with_nickname="bob",
            with_user_id=2,
            seq=7,
            read_seq=7,
            unread=0,
            open=True,
            instance=INSTANCE,
        ),
        {
            "kind": "direct_state",
            "user_id": 1,
            "user_key": "alice",
            "with": "bob",
            "with_user_id": 2,
            "seq": 7,
            "read_seq": 7,
            "unread": 0,
            "open": True,
            "instance": INSTANCE,
        },
    ),
    (
        NameClaimedEvent(nickname="Zed", skeleton="zed", instance=INSTANCE),
        {"kind": "name_claimed", "nickname": "Zed", "skeleton": "zed", "instance": INSTANCE},
    ),
]


class LogCapture:
    """Log events published while it is installed."""

    def __init__(self, case: TestCase) -> None:
        self.events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self.events.append)
        case.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def warnings(self) -> list[str]:
        return [formatEvent(e) for e in self.events if e.get("log_level") == LogLevel.warn]


class RegistryTests(TestCase):
    def test_every_kind(self) -> None:
        """The registry names the eleven control events, each under its KIND,
        and every ControlEvent class of the module is in it."""
        self.assertEqual(
            set(CONTROL_EVENTS),
            {
                "dm",
                "kick",
                "ban",
                "unban",
                "revoke",
                "cutoff",
                "session",
                "resync",
                "room_state",
                "direct_state",
                "name_claimed",
            },
        )
        for kind, cls in CONTROL_EVENTS.items():
            self.assertEqual(cls.KIND, kind)
        classes = {
            c
            for c in vars(events).values()
            if isinstance(c, type) and issubclass(c, ControlEvent) and c is not ControlEvent
        }
        self.assertEqual(classes, set(CONTROL_EVENTS.values()))
        self.assertEqual({type(e) for e, _ in SAMPLES}, classes)

    def test_events_are_frozen(self) -> None:
        event = KickEvent(nickname="bob", room="lobby")
        with self.assertRaises(dataclasses.FrozenInstanceError):
            event.room = "elsewhere"  # type: ignore[misc]

    def test_only_deliveries_apply_at_their_origin(self) -> None:
        """Every event but a direct message and an account state (shown to
        the account's connections wherever they are, the maker's instance
        included) was applied where it was made."""
        self.assertEqual(
            [kind for kind, cls in CONTROL_EVENTS.items() if not cls.APPLIED_AT_ORIGIN],
            ["dm", "room_state", "direct_state"],
        )


class CodecTests(TestCase):
    def test_encoded_as_the_wire_format(self) -> None:
        """Each event encodes to the dict instances exchange, key for key and
        in the same key order (so the JSON is byte for byte the same)."""
        for event, wire in SAMPLES:
            with self.subTest(kind=event.KIND):
                encoded = encode_event(event)
                self.assertEqual(encoded, wire)
                self.assertEqual(list(encoded), list(wire))

    def test_round_trip(self) -> None:
        """Every event survives encoding, JSON and decoding unchanged, alone
        and in a control frame."""
        for event, wire in SAMPLES:
            with self.subTest(kind=event.KIND):
                self.assertEqual(decode_event(json.loads(json.dumps(encode_event(event)))), event)
                self.assertEqual(decode_event(wire), event)
                self.assertEqual(read_control_frame(event_frame(INSTANCE, event)), event)

    def test_event_frame(self) -> None:
        self.assertEqual(
            event_frame(INSTANCE, UnbanEvent(user_id=2, instance=INSTANCE)),
            '{"k": "event", "i": "ab12cd34", "e": {"kind": "unban", "user_id": 2, '
            '"instance": "ab12cd34"}}',
        )

    def test_older_senders(self) -> None:
        """Fields with a default may be missing (older versions did not send
        them); keys a reader does not know are ignored (newer versions may
        add some)."""
        self.assertEqual(
            decode_event({"kind": "kick", "nickname": "bob", "room": "lobby"}),
            KickEvent(nickname="bob", room="lobby", reason="", instance=""),
        )
        self.assertEqual(
            decode_event({"kind": "cutoff", "user_id": 1, "nickname": "a", "before_ms": 9}),
            CutoffEvent(user_id=1, nickname="a", before_ms=9, close=False),
        )
        self.assertEqual(
            decode_event({"kind": "unban", "user_id": 3, "instance": INSTANCE, "shiny": [1, 2]}),
            UnbanEvent(user_id=3, instance=INSTANCE),
        )
        dm = {"kind": "dm", "id": 7, "from_user_id": 1, "from": "a", "to_user_id": 2}
        dm |= {"to": "b", "content": "hi", "timestamp_ms": 5}
        decoded = decode_event(dm)
        assert isinstance(decoded, DirectMessageEvent)
        self.assertEqual(decoded.message, DirectMessage(7, 1, "a", 2, "b", "hi", 5, seq=0))

    def test_domain_values(self) -> None:
        """Direct messages and bans convert to and from their model types."""
        message = DirectMessage(7, 1, "alice", 2, "bob", "hi", 5, seq=4)
        self.assertEqual(DirectMessageEvent.of(message, INSTANCE).message, message)
        ban = Ban(2, "bob", "spam", 5, 99)
        self.assertEqual(BanEvent.of(ban, INSTANCE).ban, ban)
        self.assertEqual(BanEvent.of(ban, INSTANCE).instance, INSTANCE)


class UnreadableEventTests(TestCase):
    """What cannot be read is dropped with one warning naming its kind."""

    def setUp(self) -> None:
        self.log = LogCapture(self)

    def assertDropped(self, data: object, *named: str) -> None:
        before = len(self.log.warnings())
        self.assertIsNone(decode_event(data))
        new = self.log.warnings()[before:]
        self.assertEqual(len(new), 1, new)
        for text in named:
            self.assertIn(text, new[0])

    def test_unknown_kind(self) -> None:
        self.assertDropped({"kind": "teleport", "to": "mars"}, "'teleport'", "unknown")
        self.assertDropped({"no": "kind"}, "unknown", "None")
        self.assertDropped(["kind", "dm"], "unknown")

    def test_missing_field(self) -> None:
        self.assertDropped({"kind": "ban", "user_id": 2, "nickname": "bob"}, "'ban'", "'reason'")
        wire = dict(SAMPLES[0][1])
        del wire["to"]
        self.assertDropped(wire, "'dm'", "'to'")

    def test_wrong_types(self) -> None:
        self.assertDropped({"kind": "unban", "user_id": "2"}, "'unban'", "'user_id'")
        self.assertDropped({"kind": "unban", "user_id": True}, "'unban'", "'user_id'")
        self.assertDropped(
            {"kind": "cutoff", "user_id": 1, "nickname": "a", "before_ms": 9, "close": 1},
            "'cutoff'",
            "'close'",
        )
        self.assertDropped({"kind": "resync", "instance": None}, "'resync'", "'instance'")
        wire = dict(SAMPLES[2][1], expires_ms="never")
        self.assertDropped(wire, "'ban'", "'expires_ms'")

    def test_nothing_else_happens(self) -> None:
        """Dropping is all: no error is logged, nothing raises."""
        decode_event({"kind": "kick"})
        decode_event({"kind": "nope"})
        self.assertEqual(self.flushLoggedErrors(), [])
        self.assertEqual(len(self.log.warnings()), 2)


class FrameTests(TestCase):
    """The bytes on Redis: room frames, control frames, presence records."""

    def setUp(self) -> None:
        self.log = LogCapture(self)

    def test_room_frame(self) -> None:
        message = Message(
            id=42,
            seq=7,
            room="lobby",
            nickname="alice",
            content="hi",
            timestamp_ms=1_757_345_400_123,
            user_id=1,
            origin=f"{INSTANCE}.c3",
        )
        frame = room_frame(INSTANCE, message)
        self.assertEqual(
            frame,
            '{"i": "ab12cd34", "m": {"id": 42, "seq": 7, "room": "lobby", "nickname": "alice", '
            '"content": "hi", "ts": 1757345400123, "type": "chat", "user_id": 1, '
            '"event": null, "origin": "ab12cd34.c3", "departure": null, "guest": false}}',
        )
        read = read_room_frame(frame.encode())
        assert read is not None
        instance, copy = read
        self.assertEqual(instance, INSTANCE)
        self.assertEqual((copy, copy.origin, copy.seq), (message, message.origin, 7))

    def test_edited_frame(self) -> None:
        """An ``edited`` room event carries its edit time as "edited" (only
        when set), and reads back the same."""
        message = Message(
            id=42,
            seq=7,
            room="lobby",
            nickname="alice",
            content="new text",
            timestamp_ms=1_757_345_400_123,
            type=EDITED,
            user_id=1,
            edited_ms=1_757_345_500_000,
        )
        frame = room_frame(INSTANCE, message)
        self.assertIn('"type": "edited"', frame)
        self.assertIn('"edited": 1757345500000', frame)
        read = read_room_frame(frame.encode())
        assert read is not None
        self.assertEqual(
            (read[1], read[1].edited_ms, read[1].type), (message, 1_757_345_500_000, EDITED)
        )

    def test_room_frame_with_mentions(self) -> None:
        """A message's mentions cross as "mentions" (only when there are
        any) and come back as a tuple; a malformed list is refused."""
        message = Message(
            id=1,
            seq=1,
            room="lobby",
            nickname="a",
            content="@bob",
            timestamp_ms=1,
            mentions=("@room", "bob"),
        )
        frame = room_frame(INSTANCE, message)
        self.assertIn('"mentions": ["@room", "bob"]', frame)
        read = read_room_frame(frame)
        assert read is not None
        self.assertEqual(read[1].mentions, ("@room", "bob"))
        self.assertIsNone(read_room_frame(frame.replace('["@room", "bob"]', '"bob"')))

    def test_room_frame_of_an_older_sender(self) -> None:
        """A room event from an instance that sends no "seq" reads as seq 0
        (delivered at once, not ordered: as system events are)."""
        raw = (
            b'{"i": "old", "m": {"id": 5, "room": "lobby", "nickname": "bob", '
            b'"content": "hi", "ts": 1, "type": "chat"}}'
        )
        read = read_room_frame(raw)
        assert read is not None
        self.assertEqual((read[1].id, read[1].seq), (5, 0))
        # No "guest" either: a chat message without user_id is a guest's.
        self.assertTrue(read[1].guest)

    def test_room_frame_carries_guest(self) -> None:
        """A guest's join (a system event, whose user_id is not sent) keeps
        its guest mark across instances."""
        join = Message(
            room="lobby",
            nickname="zed",
            content="zed has joined the room",
            timestamp_ms=1,
            type="system",
            event="joined",
            guest=True,
        )
        read = read_room_frame(room_frame(INSTANCE, join).encode())
        assert read is not None
        self.assertTrue(read[1].guest)
        account = Message(room="lobby", nickname="a", content="x", timestamp_ms=1, user_id=3)
        read = read_room_frame(room_frame(INSTANCE, account).encode())
        assert read is not None
        self.assertFalse(read[1].guest)

    def test_room_frame_of_a_leave(self) -> None:
        """A leave carries how and why the member left ([kind, reason]);
        from an older sender, or unreadable, it has no departure."""
        leave = system_message("lobby", "bob", LEFT, 5, Departure(QUIT, "Ping timeout"))
        frame = room_frame(INSTANCE, leave)
        self.assertIn('"departure": ["quit", "Ping timeout"]', frame)
        read = read_room_frame(frame)
        assert read is not None
        self.assertEqual(read[1].departure, Departure(QUIT, "Ping timeout"))
        for departure in ("", '"quit"', '["quit"]', '["quit", 5]'):
            extra = f', "departure": {departure}' if departure else ""
            raw = (
                '{"i": "old", "m": {"id": 0, "room": "lobby", "nickname": "bob", '
                f'"content": "bob has left the room", "ts": 1, "type": "system", '
                f'"event": "left"{extra}}}}}'
            )
            read = read_room_frame(raw)
            assert read is not None, raw
            self.assertIsNone(read[1].departure)

    def test_announcements(self) -> None:
        snapshot = {"users": {"bob": [2, "bob"]}, "rooms": {"lobby": ["bob"]}, "connections": {}}
        presence = PresenceAnnouncement(INSTANCE, snapshot)
        self.assertEqual(
            announcement_frame(presence),
            '{"k": "presence", "i": "ab12cd34", "p": {"users": {"bob": [2, "bob"]}, '
            '"rooms": {"lobby": ["bob"]}, "connections": {}}}',
        )
        self.assertEqual(read_control_frame(announcement_frame(presence)), presence)
        self.assertEqual(announcement_frame(Goodbye(INSTANCE)), '{"k": "bye", "i": "ab12cd34"}')
        self.assertEqual(read_control_frame(b'{"k": "bye", "i": "ab12cd34"}'), Goodbye(INSTANCE))
        self.assertEqual(presence_record(snapshot), json.dumps(snapshot))
        self.assertEqual(read_presence_record(presence_record(snapshot).encode()), snapshot)
        self.assertEqual(self.log.warnings(), [])

    def test_unreadable_frames(self) -> None:
        """Each is dropped (None) with one warning naming what it was."""
        cases: list[tuple[Any, bytes, str]] = [
            (read_control_frame, b"{not json", "JSON"),
            (read_control_frame, b'{"k": "wave", "i": "x"}', "'wave'"),
            (read_control_frame, b'{"k": "presence", "i": "x", "p": []}', "'presence'"),
            (read_control_frame, b'{"k": "bye"}', "'bye'"),
            (read_control_frame, b'{"k": "event", "i": "x", "e": {"kind": "x"}}', "'x'"),
            (read_room_frame, b"[]", "room frame"),
            (read_room_frame, b'{"i": "x", "m": {"id": 1, "type": "chat"}}', "'chat'"),
            (
                read_room_frame,
                b'{"i": "x", "m": {"id": "one", "room": "r", "nickname": "n", '
                b'"content": "c", "ts": 1, "type": "chat"}}',
                "'chat'",
            ),
            (read_presence_record, b"[1]", "presence"),
        ]
        for read, raw, named in cases:
            with self.subTest(raw=raw):
                before = len(self.log.warnings())
                self.assertIsNone(read(raw))
                new = self.log.warnings()[before:]
                self.assertEqual(len(new), 1, new)
                self.assertIn(named, new[0])
        self.assertEqual(self.flushLoggedErrors(), [])
