"""The in-memory newest-messages cache and its use by ChatService.history."""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from parkchat.model import Message
from parkchat.recent import RecentMessages
from parkchat.store.memory import MemoryStore
from parkchat.tap import build_chat_service
from tests.helpers import FakeParticipant, sync_hasher


def message(id: int, room: str = "lobby") -> Message:
    return Message(id=id, room=room, nickname="n", content=f"m{id}", timestamp_ms=id)


class RecentMessagesTests(TestCase):
    """RecentMessages on its own."""

    def test_uncached_room_is_none(self) -> None:
        """A room never loaded is not answered from memory."""
        self.assertIsNone(RecentMessages().get("lobby", 10))

    def test_fill_then_get_last_n(self) -> None:
        """After a fill, the last ``limit`` messages come back oldest first."""
        recent = RecentMessages(depth=5)
        recent.loading("lobby")
        recent.fill("lobby", [message(i) for i in range(1, 6)])
        self.assertEqual([m.id for m in recent.get("lobby", 3) or []], [3, 4, 5])
        self.assertEqual([m.id for m in recent.get("lobby", 50) or []], [1, 2, 3, 4, 5])

    def test_add_keeps_depth(self) -> None:
        """New messages push the oldest out; the version changes."""
        recent = RecentMessages(depth=3)
        recent.loading("lobby")
        recent.fill("lobby", [message(1), message(2)])
        before = recent.version("lobby")
        recent.add(message(3))
        recent.add(message(4))
        self.assertEqual([m.id for m in recent.get("lobby", 10) or []], [2, 3, 4])
        self.assertNotEqual(recent.version("lobby"), before)

    def test_messages_stored_during_load_are_kept(self) -> None:
        """A message committed while the room is loading is merged in, and one
        the load already returned is not doubled."""
        recent = RecentMessages(depth=10)
        recent.loading("lobby")
        recent.add(message(3))  # committed after the query read 1..3
        recent.add(message(4))  # committed after the query finished reading
        window = recent.fill("lobby", [message(1), message(2), message(3)])
        self.assertEqual([m.id for m in window], [1, 2, 3, 4])

    def test_failed_load_stops_collecting(self) -> None:
        """After a failed load nothing more is collected for the room; the
        next load starts afresh."""
        recent = RecentMessages(depth=10)
        recent.loading("lobby")
        recent.load_failed("lobby")
        recent.add(message(5))  # no load under way: not kept
        recent.loading("lobby")
        window = recent.fill("lobby", [message(1)])
        self.assertEqual([m.id for m in window], [1])

    def test_remove(self) -> None:
        """A deleted message drops the room's window (reloaded on the next
        read) and changes its version; one deleted while the room loads is
        kept out of the window the load builds."""
        recent = RecentMessages(depth=10)
        recent.loading("lobby")
        recent.fill("lobby", [message(1), message(2)])
        before = recent.version("lobby")
        recent.remove("lobby", 99)  # not there: nothing changes
        self.assertEqual(recent.version("lobby"), before)
        recent.remove("lobby", 2)
        self.assertIsNone(recent.get("lobby", 10))
        self.assertNotEqual(recent.version("lobby"), before)
        recent.loading("lobby")
        recent.add(message(4))
        recent.remove("lobby", 1)  # the load below read it before the delete
        recent.remove("lobby", 4)
        window = recent.fill("lobby", [message(1), message(3)])
        self.assertEqual([m.id for m in window], [3])

    def test_rooms_are_bounded(self) -> None:
        """At most ``max_rooms`` rooms are kept; the least recently read goes."""
        recent = RecentMessages(depth=2, max_rooms=2)
        for room in ("a", "b"):
            recent.loading(room)
            recent.fill(room, [message(1, room)])
        recent.get("a", 1)
        recent.loading("c")
        recent.fill("c", [message(2, "c")])
        self.assertIsNotNone(recent.get("a", 1))
        self.assertIsNone(recent.get("b", 1))
        self.assertEqual(len(recent), 2)

    def test_adds_to_uncached_rooms_are_ignored(self) -> None:
        """Messages of rooms nobody has read are not kept."""
        recent = RecentMessages()
        recent.add(message(1))
        self.assertIsNone(recent.get("lobby", 1))


class ServiceHistoryCacheTests(TestCase):
    """ChatService.history answers the common query from memory."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.store = MemoryStore()
        self.calls = 0
        real = self.store.recent_messages

        def counting(*args: object, **kwargs: object) -> Deferred[list[Message]]:
            self.calls += 1
            return real(*args, **kwargs)  # type: ignore[arg-type]

        self.store.recent_messages = counting  # type: ignore[method-assign]
        self.service = build_chat_service(self.store, sync_hasher(), self.clock)
        self.from_the_store = real
        self.alice = FakeParticipant("alice", user_id=1)
        self.service.connect(self.alice)
        self.service.join(self.alice, "lobby")

    def post(self, text: str) -> None:
        self.service.post(self.alice, "lobby", text)
        self.clock.advance(0)

    def history(self, **kwargs: int) -> list[str]:
        result = self.successResultOf(self.service.history("lobby", **kwargs))
        return [m.content for m in result]

    def test_second_read_costs_no_query(self) -> None:
        """The first read loads the room; later reads and new messages are
        served from memory with the same answers the store would give."""
        self.post("one")
        self.assertEqual(self.history(), ["one"])
        self.post("two")
        self.post("three")
        self.assertEqual(self.history(limit=2), ["two", "three"])
        self.assertEqual(self.calls, 1)
        self.assertEqual(self.history(), self.from_store())

    def from_store(self) -> list[str]:
        """What the store holds: the last 50 messages, as history answers."""
        return [m.content for m in self.successResultOf(self.from_the_store("lobby", 50))]

    def test_paging_goes_to_the_store(self) -> None:
        """``before``/``after`` queries are not answered from memory."""
        for text in ("a", "b", "c"):
            self.post(text)
        self.history()
        self.assertEqual(self.history(before=3), ["a", "b"])
        self.assertEqual(self.history(after=1), ["b", "c"])
        self.assertEqual(self.calls, 3)

    def test_concurrent_loads_share_one_query(self) -> None:
        """Readers of a room that is loading wait for the same query."""
        pending: list[Deferred[list[Message]]] = []
        self.store.recent_messages = (  # type: ignore[method-assign]
            lambda *a, **k: pending.append(Deferred()) or pending[-1]
        )
        first = self.service.history("lobby")
        second = self.service.history("lobby", limit=1)
        self.post("meanwhile")
        self.assertEqual(len(pending), 1)
        pending[0].callback([])
        self.assertEqual([m.content for m in self.successResultOf(first)], ["meanwhile"])
        self.assertEqual([m.content for m in self.successResultOf(second)], ["meanwhile"])

    def test_version_changes_with_messages(self) -> None:
        """history_version is None until loaded and changes on every message."""
        self.assertIsNone(self.service.history_version("lobby"))
        self.history()
        v1 = self.service.history_version("lobby")
        self.post("x")
        self.assertNotEqual(self.service.history_version("lobby"), v1)

    def test_disabled_with_a_shared_bus(self) -> None:
        """With recent_history=False every read goes to the store."""
        service = build_chat_service(self.store, sync_hasher(), self.clock, recent_history=False)
        before = self.calls
        for _ in range(2):
            self.successResultOf(service.history("lobby"))
        self.assertEqual(self.calls - before, 2)
        self.assertIsNone(service.history_version("lobby"))
