"""Tests for parkchat.rooms.Room: membership and fan-out."""

from __future__ import annotations

from twisted.trial.unittest import TestCase

from parkchat.model import Message
from parkchat.rooms import Room
from tests.helpers import FakeParticipant, RecordingEncoder


def chat(content: str) -> Message:
    return Message(room="lobby", nickname="alice", content=content, timestamp_ms=0)


class RoomTests(TestCase):
    """Room groups members by encoder and isolates delivery failures."""

    def setUp(self) -> None:
        self.room = Room("lobby")
        self.ws = RecordingEncoder()
        self.tcp = RecordingEncoder()

    def test_empty(self) -> None:
        """A new room has its name and no members."""
        self.assertEqual(self.room.name, "lobby")
        self.assertEqual(len(self.room), 0)
        self.assertEqual(list(self.room), [])
        self.assertEqual(self.room.nicknames(), [])
        self.assertEqual(self.room.broadcast(chat("hi")), [])

    def test_add_and_contains(self) -> None:
        """Added members are counted, iterated and found; others are not."""
        alice = FakeParticipant("alice", self.ws)
        bob = FakeParticipant("bob", self.tcp)
        self.room.add(alice)
        self.room.add(bob)
        self.assertEqual(len(self.room), 2)
        self.assertIn(alice, self.room)
        self.assertIn(bob, self.room)
        self.assertNotIn(FakeParticipant("carol", self.ws), self.room)
        self.assertNotIn(object(), self.room)
        self.assertEqual(set(self.room), {alice, bob})

    def test_add_twice(self) -> None:
        """Adding a member again does not duplicate it."""
        alice = FakeParticipant("alice", self.ws)
        self.room.add(alice)
        self.room.add(alice)
        self.assertEqual(len(self.room), 1)
        self.room.broadcast(chat("hi"))
        self.assertEqual(alice.contents(), ["hi"])

    def test_broadcast_encodes_once_per_encoder(self) -> None:
        """Five members over two kinds of connection cost two encodings."""
        ws_members = [FakeParticipant(f"w{i}", self.ws) for i in range(3)]
        tcp_members = [FakeParticipant(f"t{i}", self.tcp) for i in range(2)]
        for member in ws_members + tcp_members:
            self.room.add(member)
        message = chat("hello")
        self.assertEqual(self.room.broadcast(message), [])
        self.assertEqual(self.ws.calls, 1)
        self.assertEqual(self.tcp.calls, 1)
        for member in ws_members + tcp_members:
            self.assertEqual(member.received, [message])

    def test_each_member_gets_each_message_once(self) -> None:
        """Several broadcasts reach every member once each, in order."""
        members = [FakeParticipant(n, self.ws) for n in ("a", "b")]
        for member in members:
            self.room.add(member)
        self.room.broadcast(chat("1"))
        self.room.broadcast(chat("2"))
        for member in members:
            self.assertEqual(member.contents(), ["1", "2"])
        self.assertEqual(self.ws.calls, 2)

    def test_failed_send_reported_others_still_receive(self) -> None:
        """A member whose send raises is returned; everyone else still gets
        the message, including members after it in the same group."""
        alice = FakeParticipant("alice", self.ws)
        broken = FakeParticipant("broken", self.ws)
        carol = FakeParticipant("carol", self.ws)
        dave = FakeParticipant("dave", self.tcp)
        for member in (alice, broken, carol, dave):
            self.room.add(member)
        broken.fail_sends = True
        failed = self.room.broadcast(chat("hi"))
        self.assertEqual(failed, [broken])
        for member in (alice, carol, dave):
            self.assertEqual(member.contents(), ["hi"])
        self.assertEqual(broken.received, [])
        self.assertEqual(len(self.flushLoggedErrors(ConnectionError)), 1)

    def test_broadcast_does_not_remove_failed_members(self) -> None:
        """Dropping a failed member is the caller's decision, not the room's."""
        broken = FakeParticipant("broken", self.ws)
        broken.fail_sends = True
        self.room.add(broken)
        self.assertEqual(self.room.broadcast(chat("hi")), [broken])
        self.assertIn(broken, self.room)
        self.flushLoggedErrors(ConnectionError)

    def test_all_failures_reported(self) -> None:
        """Every failing member in every group is in the failed list."""
        a = FakeParticipant("a", self.ws)
        b = FakeParticipant("b", self.tcp)
        for member in (a, b):
            member.fail_sends = True
            self.room.add(member)
        self.assertEqual(set(self.room.broadcast(chat("hi"))), {a, b})
        self.assertEqual(len(self.flushLoggedErrors(ConnectionError)), 2)

    def test_remove(self) -> None:
        """remove returns True for a member, False otherwise; a removed member
        gets no more messages."""
        alice = FakeParticipant("alice", self.ws)
        bob = FakeParticipant("bob", self.ws)
        self.room.add(alice)
        self.room.add(bob)
        self.assertTrue(self.room.remove(alice))
        self.assertFalse(self.room.remove(alice))
        self.assertFalse(self.room.remove(FakeParticipant("carol", self.tcp)))
        self.assertNotIn(alice, self.room)
        self.assertEqual(len(self.room), 1)
        self.room.broadcast(chat("hi"))
        self.assertEqual(alice.received, [])
        self.assertEqual(bob.contents(), ["hi"])

    def test_remove_last_of_encoder_drops_group(self) -> None:
        """When an encoder's last member leaves, broadcasts stop encoding for it."""
        alice = FakeParticipant("alice", self.ws)
        bob = FakeParticipant("bob", self.tcp)
        self.room.add(alice)
        self.room.add(bob)
        self.room.remove(bob)
        self.room.broadcast(chat("hi"))
        self.assertEqual(self.tcp.calls, 0)
        self.assertEqual(self.ws.calls, 1)

    def test_remove_during_broadcast(self) -> None:
        """A member removed by another's send (re-entrancy) does not break the loop."""
        room = self.room

        class Leaver(FakeParticipant):
            def send(self, payload: object) -> None:
                super().send(payload)
                room.remove(self)

        leaver = Leaver("leaver", self.ws)
        bob = FakeParticipant("bob", self.ws)
        room.add(leaver)
        room.add(bob)
        self.assertEqual(room.broadcast(chat("hi")), [])
        self.assertEqual(bob.contents(), ["hi"])
        self.assertNotIn(leaver, room)

    def test_nicknames(self) -> None:
        """nicknames lists who is here, each name once even with several
        connections, in arrival order within a kind of connection."""
        self.room.add(FakeParticipant("alice", self.ws))
        self.room.add(FakeParticipant("bob", self.ws))
        self.room.add(FakeParticipant("alice", self.tcp))
        self.room.add(FakeParticipant("carol", self.tcp))
        self.assertEqual(self.room.nicknames(), ["alice", "bob", "carol"])


class DistinctCountTests(TestCase):
    """Room.distinct_count: people, not connections, kept without a walk."""

    def test_counts_nicknames_once(self) -> None:
        """Two connections of one nickname count once; the count follows
        removals and never goes below the people still present."""
        room = Room("lobby")
        encoder = RecordingEncoder()
        alice1, alice2 = FakeParticipant("alice", encoder), FakeParticipant("alice", encoder)
        bob = FakeParticipant("bob")
        for p in (alice1, alice2, bob):
            room.add(p)
        room.add(bob)  # adding twice changes nothing
        self.assertEqual(room.distinct_count(), 2)
        self.assertEqual(room.distinct_count(), len(room.nicknames()))
        room.remove(alice1)
        self.assertEqual(room.distinct_count(), 2)
        room.remove(alice2)
        room.remove(alice2)  # removing twice changes nothing
        self.assertEqual(room.distinct_count(), 1)
        room.remove(bob)
        self.assertEqual(room.distinct_count(), 0)
