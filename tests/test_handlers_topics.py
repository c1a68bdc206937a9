"""Tests for parkchat.handlers.topics: members set a room's topic (only
moderators with --topic-moderators-only); it is stored, announced to every
member, and reported on joining."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from parkchat.errors import ContentTooLong, Forbidden, InvalidContent, NotInRoom
from parkchat.model import TOPIC, RoomTopic
from tests.helpers import FakeParticipant, make_service

START = 1_757_345_400


class TopicTests(TestCase):
    options: dict[str, Any] = {"moderators": ("boss",)}

    def setUp(self) -> None:
        clock = Clock()
        clock.advance(START)
        self.service, self.store, self.clock = make_service(clock=clock, **self.options)
        self.alice = self.joined("alice", 1)
        self.bob = self.joined("bob", 2)

    def joined(self, nickname: str, user_id: int | None, room: str = "lobby") -> FakeParticipant:
        participant = FakeParticipant(nickname, user_id=user_id)
        self.service.connect(participant)
        self.last_join = self.successResultOf(self.service.join(participant, room))
        return participant

    def set(self, participant: FakeParticipant, text: Any, room: str = "lobby") -> Deferred[Any]:
        return Deferred.fromCoroutine(self.service.set_topic(participant, room, text))

    def test_member_sets_topic(self) -> None:
        """A member sets the topic: stored, every member gets a ``topic``
        event, a later join reports it, and so does ``room_topic``."""
        topic = self.successResultOf(self.set(self.alice, "  Release on Friday  "))
        expected = RoomTopic("Release on Friday", "alice", START * 1000)
        self.assertEqual(topic, expected)
        for member in (self.alice, self.bob):
            [event] = [m for m in member.received if m.type == TOPIC]
            self.assertEqual((event.content, event.nickname), ("Release on Friday", "alice"))
        self.assertEqual(self.successResultOf(self.store.room_topic("lobby")), expected)
        self.joined("carol", 3)
        self.assertEqual(self.last_join.topic, expected)
        self.assertEqual(
            self.successResultOf(Deferred.fromCoroutine(self.service.room_topic("lobby"))),
            expected,
        )
        # A room with no member here: read from the store.
        self.successResultOf(self.store.set_room_topic("empty", RoomTopic("quiet", "x", 1)))
        self.assertEqual(
            self.successResultOf(Deferred.fromCoroutine(self.service.room_topic("empty"))).text,
            "quiet",
        )

    def test_clear(self) -> None:
        """An empty text clears the topic."""
        self.successResultOf(self.set(self.alice, "something"))
        self.assertIsNone(self.successResultOf(self.set(self.bob, "")))
        self.assertIsNone(self.successResultOf(self.store.room_topic("lobby")))
        self.joined("carol", 3)
        self.assertIsNone(self.last_join.topic)

    def test_refused(self) -> None:
        """Not a member; too long; control characters (a topic is one line)."""
        self.failureResultOf(self.set(self.alice, "x", room="elsewhere"), NotInRoom)
        self.failureResultOf(self.set(self.alice, "x" * 301), ContentTooLong)
        self.failureResultOf(self.set(self.alice, "two\nlines"), InvalidContent)
        self.failureResultOf(self.set(self.alice, 42), InvalidContent)
        self.successResultOf(self.set(self.alice, "x" * 300))


class ModeratorsOnlyTests(TestCase):
    def test_moderators_only(self) -> None:
        """With --topic-moderators-only only a moderator account sets topics."""
        service, _, _ = make_service(moderators=("boss",), topic_moderators_only=True)
        alice = FakeParticipant("alice", user_id=1)
        boss = FakeParticipant("Boss", user_id=2)
        for participant in (alice, boss):
            service.connect(participant)
            service.join(participant, "lobby")
        self.failureResultOf(
            Deferred.fromCoroutine(service.set_topic(alice, "lobby", "mine")), Forbidden
        )
        self.successResultOf(Deferred.fromCoroutine(service.set_topic(boss, "lobby", "ours")))
