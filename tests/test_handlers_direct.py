"""Tests for parkchat.handlers.direct.DirectMessageHandler."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from parkchat.errors import InvalidContent, InvalidRequest, RateLimited, UnknownRecipient
from parkchat.events import DirectMessageEvent
from parkchat.handlers.connections import ConnectionHandler
from parkchat.handlers.direct import DirectMessageHandler
from parkchat.limits import Limits, TokenBucketLimiter
from parkchat.model import DirectMessage
from parkchat.store.memory import MemoryStore
from tests.helpers import FakeParticipant, RecordingBus

START = 1_757_345_400


class DirectMessageHandlerTests(TestCase):
    limits = Limits(history_default=2)

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(START)
        self.store = MemoryStore()
        self.bus = RecordingBus()
        self.connections = ConnectionHandler(self.bus, self.limits)
        self.rate = TokenBucketLimiter(self.clock, 1, 3)
        self.direct = DirectMessageHandler(
            self.store,
            self.store,
            self.connections,
            self.bus,
            self.clock,
            self.limits,
            self.rate,
            instance_id="i1",
        )
        self.alice = self.successResultOf(self.store.create_user("alice", b"h", 0))
        self.bob = self.successResultOf(self.store.create_user("bob", b"h", 0))
        self.alice_here = self.connect("alice", self.alice.id)

    def connect(self, nickname: str, user_id: int | None) -> FakeParticipant:
        participant = FakeParticipant(nickname, user_id=user_id)
        self.connections.register(participant)
        return participant

    def send(self, to: object, content: object = "hi") -> DirectMessage:
        coroutine = self.direct.send_direct(self.alice_here, to, content)
        message: DirectMessage = self.successResultOf(Deferred.fromCoroutine(coroutine))
        return message

    def fails(self, coroutine: Any, error: type[Exception]) -> None:
        self.failureResultOf(Deferred.fromCoroutine(coroutine), error)

    def test_stored_then_announced(self) -> None:
        """Stored undelivered (with its position in the conversation), then
        announced for every instance."""
        message = self.send("BOB", "psst")
        self.assertEqual(
            message,
            DirectMessage(
                1, self.alice.id, "alice", self.bob.id, "bob", "psst", START * 1000, seq=1
            ),
        )
        self.assertEqual(self.bus.controls, [DirectMessageEvent.of(message, "i1")])
        self.assertEqual(
            self.successResultOf(self.store.pending_direct(self.bob.id, 10)), [message]
        )
        self.assertEqual(self.send(self.bob.id).to_nickname, "bob")

    def test_refused(self) -> None:
        guest = self.connect("guest", None)
        self.fails(self.direct.send_direct(guest, "bob", "hi"), InvalidRequest)
        self.fails(self.direct.send_direct(self.alice_here, "nobody", "hi"), UnknownRecipient)
        self.fails(self.direct.send_direct(self.alice_here, 2**70, "hi"), UnknownRecipient)
        self.fails(self.direct.send_direct(self.alice_here, "\ud800", "hi"), UnknownRecipient)
        self.fails(self.direct.send_direct(self.alice_here, True, "hi"), InvalidRequest)
        self.fails(self.direct.send_direct(self.alice_here, "bob", " "), InvalidContent)
        self.assertEqual(self.bus.controls, [])

    def test_rate_limited(self) -> None:
        self.send("bob")
        self.send("bob")
        self.fails(self.direct.send_direct(self.alice_here, "nobody", "hi"), UnknownRecipient)
        self.fails(self.direct.send_direct(self.alice_here, "bob", "hi"), RateLimited)

    def test_delivered_where_the_recipient_is(self) -> None:
        """Handed to the recipient's connections that take direct messages
        (not a guest of the same name), then marked delivered."""
        message = self.send("bob")
        phone = self.connect("bob", self.bob.id)
        terminal = self.connect("bob", self.bob.id)
        terminal.takes_direct = False
        guest = self.connect("Bob", None)
        self.direct.deliver(self.bus.controls[0])
        self.assertEqual(phone.directs, [message])
        self.assertEqual((terminal.directs, guest.directs), ([], []))
        self.assertEqual(self.successResultOf(self.store.pending_direct(self.bob.id, 10)), [])

    def test_nobody_took_it(self) -> None:
        message = self.send("bob")
        self.connect("bob", self.bob.id).takes_direct = False
        self.direct.deliver(self.bus.controls[0])
        self.assertEqual(
            self.successResultOf(self.store.pending_direct(self.bob.id, 10)), [message]
        )
        bob = self.connect("bob", self.bob.id)
        offline = self.direct.offline_messages(bob)
        self.assertEqual(self.successResultOf(Deferred.fromCoroutine(offline)), [message])
        again = self.direct.offline_messages(bob)
        self.assertEqual(self.successResultOf(Deferred.fromCoroutine(again)), [])

    def test_a_failing_connection(self) -> None:
        message = self.send("bob")
        broken = self.connect("bob", self.bob.id)
        broken.direct = lambda m: 1 / 0  # type: ignore[assignment,method-assign]
        working = self.connect("bob", self.bob.id)
        self.direct.deliver(self.bus.controls[0])
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.assertEqual(working.directs, [message])

    def test_history(self) -> None:
        """Both ways, oldest first, paged; default page from the limits."""
        sent = [self.send("bob", f"m{i}") for i in range(3)]
        self.clock.advance(10)
        coroutine = self.direct.direct_history(self.alice_here, "bob")
        account, messages = self.successResultOf(Deferred.fromCoroutine(coroutine))
        self.assertEqual(account.id, self.bob.id)
        self.assertEqual(messages, sent[1:])
        coroutine = self.direct.direct_history(self.alice_here, self.bob.id, 5, sent[1].id)
        _, older = self.successResultOf(Deferred.fromCoroutine(coroutine))
        self.assertEqual(older, sent[:1])
        self.fails(self.direct.direct_history(self.alice_here, "bob", 0), InvalidRequest)

    def test_history_by_seq(self) -> None:
        """Paged by the conversation's positions; each message has its seq."""
        sent = [self.send("bob", f"m{i}") for i in range(3)]
        self.assertEqual([m.seq for m in sent], [1, 2, 3])
        coroutine = self.direct.direct_history(self.alice_here, "bob", 2, after_seq=1)
        _, after = self.successResultOf(Deferred.fromCoroutine(coroutine))
        self.assertEqual(after, sent[1:3])
        coroutine = self.direct.direct_history(self.alice_here, "bob", 2, before_seq=2)
        _, before = self.successResultOf(Deferred.fromCoroutine(coroutine))
        self.assertEqual(before, sent[:1])
        self.fails(self.direct.direct_history(self.alice_here, "bob", after_seq=-1), InvalidRequest)
