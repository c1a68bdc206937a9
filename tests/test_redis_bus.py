"""Tests for parkchat.bus.redis: the parts that need no server, then two
ChatService instances in one process sharing a real Redis.

The integration tests use the real reactor and the Redis on
``PARKCHAT_TEST_REDIS`` (default ``redis://127.0.0.1:6379/0``), each test under
its own channel prefix, so concurrent runs never see each other. Without a
reachable Redis they are skipped, except under ``CI=true``, where they fail.
Every wait is bounded (``wait_for`` polls with a deadline).
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock, deferLater
from twisted.internet.testing import StringTransport
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.trial.unittest import SkipTest, TestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from parkchat.auth import VerifiedCredentials
from parkchat.bus.redis import (
    FAST_PARSER,
    RedisBus,
    RedisURLError,
    _Subscriber,
    parse_redis_url,
)
from parkchat.errors import AuthenticationFailed, Banned, TooManyConnections
from parkchat.events import (
    BanEvent,
    ControlEvent,
    DirectMessageEvent,
    KickEvent,
    encode_event,
    message_from_wire,
    message_to_wire,
)
from parkchat.interfaces import IBus, IBusHandler
from parkchat.limits import Limits
from parkchat.model import CHAT, JOINED, LEFT, SYSTEM, DisconnectReason, Message, system_message
from parkchat.store.memory import MemoryStore
from parkchat.tap import build_chat_service
from parkchat.tokens import TokenAuthority
from tests.helpers import FakeParticipant, sync_hasher
from tests.redis_support import REDIS_HOST, REDIS_PORT, REDIS_URL, require_redis


def redis_cli(*args: str) -> str:
    """One command through ``redis-cli`` (blocking, loopback, bounded)."""
    cli = shutil.which("redis-cli")
    if cli is None:
        raise SkipTest("redis-cli is not installed")
    result = subprocess.run(
        [cli, "-h", REDIS_HOST, "-p", str(REDIS_PORT), *args],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    return result.stdout.strip()


async def wait_for(
    condition: Callable[[], object], timeout: float = 5.0, what: str = "condition"
) -> None:
    """Poll ``condition`` on the real reactor until it is true, at most
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await deferLater(reactor, 0.01)


async def sleep(seconds: float) -> None:
    await deferLater(reactor, seconds)


# -- no server needed -----------------------------------------------------------


class ParseRedisURLTests(TestCase):
    def test_defaults(self) -> None:
        self.assertEqual(
            parse_redis_url("redis://localhost"),
            {"host": "localhost", "port": 6379, "db": 0, "password": None, "prefix": "parkchat"},
        )

    def test_all_parts(self) -> None:
        self.assertEqual(
            parse_redis_url("redis://:s%40cret@10.0.0.5:6380/3?prefix=chat-eu"),
            {"host": "10.0.0.5", "port": 6380, "db": 3, "password": "s@cret", "prefix": "chat-eu"},
        )

    def test_trailing_slash_and_user(self) -> None:
        parts = parse_redis_url("redis://user:pw@127.0.0.1:6379/")
        self.assertEqual((parts["db"], parts["password"]), (0, "pw"))

    def test_bad_urls(self) -> None:
        for url in (
            "http://localhost:6379/0",
            "redis://",
            "redis:///0",
            "localhost:6379",
            "redis://localhost:port/0",
            "redis://localhost:99999/0",
            "redis://localhost/zero",
            "redis://localhost/0/1",
            "redis://localhost/0?prefix=",
            "redis://localhost/0?prefix=a%20b",
        ):
            with self.subTest(url=url), self.assertRaises(RedisURLError):
                parse_redis_url(url)

    def test_error_is_a_value_error(self) -> None:
        self.assertTrue(issubclass(RedisURLError, ValueError))


class WireTests(TestCase):
    def roundtrip(self, message: Message) -> Message:
        import json

        return message_from_wire(json.loads(json.dumps(message_to_wire(message))))

    def assertSameMessage(self, a: Message, b: Message) -> None:
        for field in Message.__slots__:
            if field != "_json":
                self.assertEqual(getattr(a, field), getattr(b, field), field)

    def test_chat_message(self) -> None:
        message = Message(
            id=42,
            room="lounge ☕",
            nickname="Zoë",
            content="line one\nline two \U0001f600",
            timestamp_ms=1_790_000_000_123,
            user_id=7,
            origin="ab12cd34.c9",
        )
        self.assertSameMessage(self.roundtrip(message), message)

    def test_system_event_without_user(self) -> None:
        message = system_message("lobby", "guest", LEFT, 5)
        copy = self.roundtrip(message)
        self.assertSameMessage(copy, message)
        self.assertEqual(
            (copy.type, copy.event, copy.user_id, copy.origin), (SYSTEM, LEFT, None, None)
        )

    def test_missing_optional_fields(self) -> None:
        copy = message_from_wire(
            {"id": 1, "room": "r", "nickname": "n", "content": "c", "ts": 2, "type": CHAT}
        )
        self.assertEqual((copy.user_id, copy.event, copy.origin), (None, None, None))


@implementer(IBusHandler)
class RecordingHandler:
    """An IBusHandler that records what the bus hands it."""

    def __init__(self) -> None:
        self.delivered: list[tuple[str, Message]] = []
        self.events: list[ControlEvent] = []
        self.snapshot: dict[str, Any] = {"users": {}, "rooms": {}}
        self.recoveries = 0
        self.presence_updates = 0

    def deliver(self, room: str, message: Any) -> None:
        self.delivered.append((room, message))

    def bus_recovered(self) -> None:
        self.recoveries += 1

    def control(self, event: ControlEvent) -> None:
        self.events.append(event)

    def presence_snapshot(self) -> dict[str, Any]:
        return self.snapshot

    def presence_updated(self) -> None:
        self.presence_updates += 1


#: What remote_presence() says with no other instance.
EMPTY_PRESENCE = {"users": {}, "rooms": {}, "connections": {}, "connections_by_instance": {}}


def warnings_in(events: list[dict[str, Any]]) -> list[str]:
    """The warnings among captured log events, formatted."""
    return [formatEvent(e) for e in events if e.get("log_level") == LogLevel.warn]


def presence_frame(instance: str, users: dict[str, Any], rooms: dict[str, Any]) -> dict[str, Any]:
    return {"k": "presence", "i": instance, "p": {"users": users, "rooms": rooms}}


class OfflineBusTests(TestCase):
    """A RedisBus that was never started: presence bookkeeping and the local
    fallback, driven by hand with a Clock."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.bus = RedisBus(
            "redis://127.0.0.1:1/0?prefix=unit", self.clock, None, "me", presence_ttl=10
        )
        self.handler = RecordingHandler()
        self.bus.attach(self.handler)

    def room_frame(self, instance: str, message: Message) -> bytes:
        return json.dumps({"i": instance, "m": message_to_wire(message)}).encode()

    def control(self, frame: dict[str, Any]) -> None:
        """A frame on the control channel, as Redis hands it over."""
        self.bus._received(self.bus.control_channel.encode(), json.dumps(frame).encode())

    def logged(self) -> list[dict[str, Any]]:
        """The log events from now on."""
        seen: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(seen.append)
        self.addCleanup(globalLogPublisher.removeObserver, seen.append)
        return seen

    def test_interfaces(self) -> None:
        self.assertTrue(verifyObject(IBus, self.bus))
        self.assertTrue(verifyObject(IBusHandler, self.handler))
        service = build_chat_service(MemoryStore(), sync_hasher(), self.clock, bus=self.bus)
        self.assertTrue(verifyObject(IBusHandler, service))
        self.assertIs(service.bus, self.bus)

    def test_channel_names(self) -> None:
        self.assertEqual(self.bus.control_channel, "unit:ctl")
        self.assertEqual(self.bus.room_channel("a b"), "unit:room:a b")
        self.assertEqual(self.bus.presence_key("x1"), "unit:presence:x1")

    def test_not_live_before_start(self) -> None:
        self.assertFalse(self.bus.live)

    def test_publish_falls_back_to_local_delivery(self) -> None:
        message = system_message("lobby", "alice", JOINED, 1)
        self.bus.publish("lobby", message)
        self.assertEqual(self.handler.delivered, [("lobby", message)])

    def test_recovery_after_local_only_delivery(self) -> None:
        """What was delivered here only while the bus was down is reported
        once both connections work again (the command connection may come
        back after the subscriber: checked each second)."""
        self.bus.running = True
        self.bus.publish("lobby", system_message("lobby", "alice", JOINED, 1))
        self.bus._check_recovered()
        self.assertEqual(self.handler.recoveries, 0)  # nothing is back yet
        self.bus._live = True  # the subscriber is back ...
        self.bus._check_recovered()
        self.assertEqual(self.handler.recoveries, 0)
        pool: list[object] = []
        self.bus._command_factory = type("Factory", (), {"pool": pool})()  # type: ignore[assignment]
        self.clock.advance(1)
        self.assertEqual(self.handler.recoveries, 0)
        pool.append(object())  # ... and then the command connection
        self.clock.advance(1)
        self.assertEqual(self.handler.recoveries, 1)
        self.clock.advance(5)
        self.bus._check_recovered()
        self.assertEqual(self.handler.recoveries, 1)  # once per outage
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_publish_control_falls_back_to_local(self) -> None:
        event = KickEvent(nickname="bob", room="lobby", instance="me")
        self.bus.publish_control(event)
        self.assertIs(self.handler.events[0], event)

    def test_unattached(self) -> None:
        bus = RedisBus("redis://127.0.0.1:1/0", self.clock, None, "x")
        self.assertRaises(RuntimeError, bus.publish, "r", system_message("r", "n", JOINED, 1))

    def test_presence_changed_without_redis_is_harmless(self) -> None:
        self.bus.presence_changed()
        self.bus.presence_changed()
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.clock.advance(1)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_remote_presence_merges_and_expires(self) -> None:
        self.assertEqual(self.bus.remote_presence(), EMPTY_PRESENCE)
        self.control(presence_frame("i1", {"alice": [1, "Alice"]}, {"lobby": ["Alice"]}))
        self.clock.advance(5)
        self.control(presence_frame("i2", {"bob": [2, "bob"]}, {"lobby": ["bob"], "den": ["bob"]}))
        self.assertEqual(
            self.bus.remote_presence(),
            {
                "users": {"alice": [1, "Alice"], "bob": [2, "bob"]},
                "rooms": {"lobby": ["Alice", "bob"], "den": ["bob"]},
                "connections": {"alice": 1, "bob": 1},
                "connections_by_instance": {"alice": {"i1": 1}, "bob": {"i2": 1}},
            },
        )
        self.clock.advance(5)  # i1 was last heard of 10 s ago: gone
        self.assertEqual(
            self.bus.remote_presence(),
            {
                "users": {"bob": [2, "bob"]},
                "rooms": {"lobby": ["bob"], "den": ["bob"]},
                "connections": {"bob": 1},
                "connections_by_instance": {"bob": {"i2": 1}},
            },
        )
        self.clock.advance(5)
        self.assertEqual(self.bus.remote_presence(), EMPTY_PRESENCE)

    def test_connection_counts_add_up(self) -> None:
        """Each instance's connection count per account is summed (for the
        per-account limit); an instance that sends none counts as one."""
        frame = presence_frame("i1", {"bob": [2, "bob"]}, {})
        frame["p"]["connections"] = {"bob": 3}
        self.control(frame)
        self.control(presence_frame("i2", {"bob": [2, "bob"]}, {}))
        self.assertEqual(self.bus.remote_presence()["connections"], {"bob": 4})
        self.assertEqual(
            self.bus.remote_presence()["connections_by_instance"], {"bob": {"i1": 3, "i2": 1}}
        )
        # Each announcement makes the service check the limit again.
        self.assertEqual(self.handler.presence_updates, 2)

    def test_renewal_extends(self) -> None:
        frame = presence_frame("i1", {"alice": [1, "alice"]}, {})
        self.control(frame)
        self.clock.advance(8)
        self.control(frame)
        self.clock.advance(8)
        self.assertIn("alice", self.bus.remote_presence()["users"])

    def test_own_presence_and_goodbye(self) -> None:
        self.control(presence_frame("me", {"me": [9, "me"]}, {}))
        self.assertEqual(self.bus.remote_presence()["users"], {})
        self.control(presence_frame("i1", {"a": [1, "a"]}, {"r": ["a"]}))
        self.control({"k": "bye", "i": "i1"})
        self.assertEqual(self.bus.remote_presence(), EMPTY_PRESENCE)

    def test_events_from_every_instance_reach_the_handler(self) -> None:
        """Control events are handed over whoever sent them (the service
        skips its own); presence frames are not."""
        dm = DirectMessageEvent(
            id=1,
            from_user_id=1,
            from_nickname="a",
            to_user_id=2,
            to_nickname="b",
            content="hi",
            timestamp_ms=5,
            instance="me",
        )
        ban = BanEvent(
            user_id=2, nickname="b", reason="", created_ms=1, expires_ms=None, instance="i1"
        )
        self.control({"k": "event", "i": "me", "e": encode_event(dm)})
        self.control({"k": "event", "i": "i1", "e": encode_event(ban)})
        self.assertEqual(self.handler.events, [dm, ban])

    def test_track_remote_joins_and_leaves(self) -> None:
        """A join or leave seen on a room channel updates that instance's
        presence at once, before its next snapshot."""
        self.bus._rooms.add("lobby")
        channel = self.bus.room_channel("lobby").encode()
        join = system_message("lobby", "carol", JOINED, 1)
        self.bus._received(channel, self.room_frame("i3", join))
        self.assertEqual(self.bus.remote_presence()["rooms"], {"lobby": ["carol"]})
        self.assertEqual(self.handler.delivered[0][1].nickname, "carol")
        self.bus._received(
            channel, self.room_frame("i3", system_message("lobby", "dave", JOINED, 2))
        )
        self.bus._received(
            channel, self.room_frame("i3", system_message("lobby", "carol", LEFT, 3))
        )
        self.assertEqual(self.bus.remote_presence()["rooms"], {"lobby": ["dave"]})
        # A leave of someone unknown changes nothing.
        self.bus._received(channel, self.room_frame("i3", system_message("lobby", "x", LEFT, 4)))
        self.assertEqual(self.bus.remote_presence()["rooms"], {"lobby": ["dave"]})
        # Own events are not tracked (the handler knows its own members).
        self.bus._received(channel, self.room_frame("me", system_message("lobby", "me", JOINED, 5)))
        self.assertEqual(self.bus.remote_presence()["rooms"], {"lobby": ["dave"]})
        # Tracked presence expires like announced presence.
        self.clock.advance(10)
        self.assertEqual(self.bus.remote_presence()["rooms"], {})
        self.assertEqual(len(self.handler.delivered), 5)

    def test_track_keeps_the_users_of_a_snapshot(self) -> None:
        self.control(presence_frame("i1", {"a": [1, "a"]}, {"r": ["a"]}))
        channel = self.bus.room_channel("r").encode()
        self.bus._received(channel, self.room_frame("i1", system_message("r", "b", JOINED, 1)))
        self.assertEqual(
            self.bus.remote_presence(),
            {
                "users": {"a": [1, "a"]},
                "rooms": {"r": ["a", "b"]},
                "connections": {"a": 1},
                "connections_by_instance": {"a": {"i1": 1}},
            },
        )

    def test_chat_messages_are_not_tracked(self) -> None:
        channel = self.bus.room_channel("r").encode()
        message = Message(room="r", nickname="a", content="hi", timestamp_ms=1, id=3)
        self.bus._received(channel, self.room_frame("i1", message))
        self.assertEqual(self.bus.remote_presence(), EMPTY_PRESENCE)
        self.assertEqual(self.handler.delivered[0][1].content, "hi")

    def test_garbage_is_logged_not_raised(self) -> None:
        """What cannot be read is dropped with one warning each; nothing
        reaches the handler and nothing raises."""
        logged = self.logged()
        self.bus._received(b"unit:ctl", b"{not json")
        self.bus._received(
            self.bus.room_channel("r"), b'{"i": "x", "m": {"id": 1, "type": "chat"}}'
        )
        self.control({"k": "event", "i": "x", "e": {"kind": "teleport"}})
        self.control({"k": "event", "i": "x", "e": {"kind": "ban", "user_id": "2"}})
        self.control({"k": "wave", "i": "x"})
        self.assertEqual((self.handler.delivered, self.handler.events), ([], []))
        warnings = warnings_in(logged)
        self.assertEqual(len(warnings), 5, warnings)
        for text, kind in zip(
            warnings, ["JSON", "'chat'", "'teleport'", "'ban'", "'wave'"], strict=True
        ):
            self.assertIn(kind, text)
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_other_channels_ignored(self) -> None:
        self.bus._received(b"someone-else:room:r", b"{}")
        self.assertEqual((self.handler.delivered, self.handler.events), ([], []))


class SubscriberParserTests(TestCase):
    """The pub/sub connection must hand a whole burst over in one reactor
    turn: everything broadcast in one turn shares one write per socket."""

    def test_burst_is_delivered_in_one_data_received(self) -> None:
        bus = RedisBus("redis://127.0.0.1:1/0?prefix=unit", Clock(), None, "me")
        handler = RecordingHandler()
        bus.attach(handler)

        class Subscriber(_Subscriber):
            pass

        Subscriber.bus = bus
        protocol = Subscriber()
        protocol.transport = StringTransport()
        channel = bus.room_channel("r").encode()
        burst = b""
        for n in range(1, 4):
            message = Message(room="r", nickname="a", content=f"m{n}", timestamp_ms=n, id=n)
            payload = json.dumps({"i": "other", "m": message_to_wire(message)}).encode()
            burst += b"*3\r\n$7\r\nmessage\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (
                len(channel),
                channel,
                len(payload),
                payload,
            )
        # Split mid-reply too, as TCP may.
        protocol.dataReceived(burst[:-7])
        protocol.dataReceived(burst[-7:])
        self.assertEqual([m.content for _, m in handler.delivered], ["m1", "m2", "m3"])
        self.assertFalse(protocol.paused)
        self.assertTrue(FAST_PARSER)


class WiringTests(TestCase):
    def test_tap_wires_the_redis_bus(self) -> None:
        """``--redis`` puts a RedisBus before the chat service (so it stops
        after it) with the configured ``--presence-ttl`` and one instance id."""
        from twisted.internet.testing import MemoryReactorClock

        from parkchat.tap import Options, makeService

        options = Options()
        options.parseOptions(
            [
                "--db",
                ":memory:",
                "--port",
                "tcp:0:interface=127.0.0.1",
                "--redis",
                "redis://127.0.0.1:6379/0?prefix=wired",
                "--presence-ttl",
                "3",
            ]
        )
        top: Any = makeService(options, MemoryReactorClock())
        bus, chat = top.getServiceNamed("redis-bus"), top.getServiceNamed("chat")
        self.assertIsInstance(bus, RedisBus)
        self.assertIs(chat.bus, bus)
        self.assertEqual(bus.presence_ttl, 3.0)
        self.assertEqual(bus.prefix, "wired:")
        self.assertEqual(chat.instance_id, bus.instance_id)
        self.assertEqual(len(bus.instance_id), 8)
        children = list(top)
        self.assertLess(children.index(bus), children.index(chat))


# -- two instances on a real Redis ------------------------------------------------


class Instance:
    """A ChatService with its own RedisBus, as ``tap.makeService`` wires them."""

    def __init__(
        self,
        prefix: str,
        store: MemoryStore,
        name: str,
        *,
        single_session: bool = False,
        presence_ttl: float = 30.0,
        limits: Limits | None = None,
    ) -> None:
        self.id = f"{name}{secrets.token_hex(2)}"
        self.bus = RedisBus(
            f"{REDIS_URL}?prefix={prefix}", reactor, reactor, self.id, presence_ttl=presence_ttl
        )
        self.service = build_chat_service(
            store,
            sync_hasher(),
            reactor,
            bus=self.bus,
            limits=limits if limits is not None else Limits(rate_limit=0),
            credential_cache=VerifiedCredentials(reactor),
            single_session=single_session,
            instance_id=self.id,
        )
        self.running = False

    def start(self) -> None:
        self.bus.startService()
        self.service.startService()
        self.running = True

    async def stop(self) -> None:
        if not self.running:
            return
        self.running = False
        await self.service.stopService()
        await self.bus.stopService()

    def connect(self, nickname: str, user_id: int | None = None) -> FakeParticipant:
        participant = FakeParticipant(nickname, user_id=user_id)
        self.service.connect(participant)
        return participant

    def bus_ports(self) -> list[int]:
        """Local ports of this bus's two Redis connections."""
        ports = []
        assert self.bus._subscriber is not None and self.bus._command_factory is not None
        ports.append(self.bus._subscriber.transport.getHost().port)
        for conn in self.bus._command_factory.pool:
            ports.append(conn.transport.getHost().port)
        return ports


def chats(participant: FakeParticipant) -> list[tuple[int, str]]:
    return [(m.id, m.content) for m in participant.received if m.type == CHAT]


def events(participant: FakeParticipant) -> list[tuple[str | None, str]]:
    return [(m.event, m.nickname) for m in participant.received if m.type == SYSTEM]


class TwoInstancesCase(TestCase):
    """Two instances in this process, one Redis, one shared store."""

    single_session = False
    presence_ttl = 30.0
    limits = Limits(rate_limit=0)
    timeout = 60

    def setUp(self) -> Deferred[None]:  # type: ignore[override]
        require_redis()
        self.prefix = f"test{secrets.token_hex(6)}"
        self.store = MemoryStore()
        self.one = self.instance("one")
        self.two = self.instance("two")
        return Deferred.fromCoroutine(self._live())

    async def _live(self) -> None:
        for instance in (self.one, self.two):
            await wait_for(lambda: instance.bus.live, what=f"{instance.id} live")  # noqa: B023
        # Each has seen the other's presence key (scan on going live).
        await self.presence_settled()

    def instance(self, name: str) -> Instance:
        instance = Instance(
            self.prefix,
            self.store,
            name,
            single_session=self.single_session,
            presence_ttl=self.presence_ttl,
            limits=self.limits,
        )
        instance.start()
        self.addCleanup(lambda: Deferred.fromCoroutine(instance.stop()))
        return instance

    async def presence_settled(self) -> None:
        """Wait until both instances share the same view of who is online."""

        def same() -> bool:
            return {u.id for u in self.one.service.online_users()} == {
                u.id for u in self.two.service.online_users()
            }

        await wait_for(same, what="presence to be shared")

    def pending(self, user_id: int) -> list[Any]:
        """Undelivered DMs (the memory store answers at once)."""
        result: list[Any] = []
        self.store.pending_direct(user_id, 100).addCallback(result.extend)
        return result

    async def account(self, nickname: str) -> int:
        user = await self.one.service.register(nickname, f"{nickname}-secret")
        return int(user.id)

    async def joined(
        self, instance: Instance, nickname: str, room: str = "lobby", **kw: Any
    ) -> FakeParticipant:
        participant = instance.connect(nickname, **kw)
        instance.service.join(participant, room)
        await wait_for(
            lambda: (JOINED, nickname) in events(participant), what=f"{nickname}'s own join"
        )
        return participant


class RoomTests(TwoInstancesCase):
    async def test_messages_cross_once_in_the_same_order(self) -> None:
        a1 = await self.joined(self.one, "a1")
        a2 = await self.joined(self.one, "a2")
        b1 = await self.joined(self.two, "b1")
        b2 = await self.joined(self.two, "b2")
        members = [a1, a2, b1, b2]
        # Both instances post at once, interleaved, without waiting.
        posted = []
        for i in range(60):
            sender, instance = [(a1, self.one), (b1, self.two), (a2, self.one)][i % 3]
            posted.append(instance.service.post(sender, "lobby", f"m{i}"))
        await wait_for(lambda: all(len(chats(p)) >= 60 for p in members), what="60 messages")
        await sleep(0.2)  # anything duplicated would have arrived by now
        reference = chats(a1)
        self.assertEqual(len(reference), 60)
        self.assertEqual(len({i for i, _ in reference}), 60, "a message arrived twice")
        self.assertEqual(sorted(c for _, c in reference), sorted(f"m{i}" for i in range(60)))
        for member in members:
            self.assertEqual(chats(member), reference, member.nickname)
        # The order is the order Redis put them in, the same on both
        # instances; each instance's own posts keep their commit order.
        mine = [c for _, c in reference if int(c[1:]) % 3 == 1]
        self.assertEqual(mine, sorted(mine, key=lambda c: int(c[1:])))

    async def test_joins_and_leaves_cross(self) -> None:
        a = await self.joined(self.one, "alice")
        b = await self.joined(self.two, "bob")
        await wait_for(lambda: (JOINED, "bob") in events(a), what="bob's join at alice")
        self.two.service.leave(b, "lobby")
        await wait_for(lambda: (LEFT, "bob") in events(a), what="bob's leave at alice")
        self.assertNotIn((JOINED, "alice"), events(b))  # joined before bob was there

    async def test_first_member_sees_own_join(self) -> None:
        """The first join of a room on an instance subscribes and publishes
        at once: the joiner still gets its own join event."""
        for i in range(20):
            await self.joined(self.two if i % 2 else self.one, f"u{i}", room=f"fresh{i}")

    async def test_rooms_are_separate(self) -> None:
        a = await self.joined(self.one, "alice", "den")
        b = await self.joined(self.two, "bob", "lobby")
        c = await self.joined(self.two, "carol", "den")
        await self.one.service.post(a, "den", "for the den")
        await wait_for(lambda: chats(c), what="the den message")
        await sleep(0.1)
        self.assertEqual(chats(b), [])


class DirectMessageTests(TwoInstancesCase):
    async def test_to_the_other_instance(self) -> None:
        alice_id = await self.account("alice")
        bob_id = await self.account("bob")
        alice = self.one.connect("alice", alice_id)
        bob = self.two.connect("bob", bob_id)
        message = await self.one.service.send_direct(alice, "bob", "psst")
        await wait_for(lambda: bob.directs, what="the DM on instance two")
        self.assertEqual(
            [(d.id, d.from_nickname, d.content) for d in bob.directs],
            [(message.id, "alice", "psst")],
        )
        self.assertEqual(alice.directs, [])
        # Marked delivered by instance two: nothing waits for get_offline.
        await wait_for(lambda: not self.pending(bob_id), what="the delivered mark")
        self.assertEqual(await self.two.service.offline_messages(bob), [])

    async def test_to_an_offline_user(self) -> None:
        alice_id = await self.account("alice")
        await self.account("bob")
        alice = self.one.connect("alice", alice_id)
        message = await self.one.service.send_direct(alice, "bob", "later")
        await sleep(0.2)
        bob = self.two.connect("bob", message.to_user_id)
        offline = await self.two.service.offline_messages(bob)
        self.assertEqual([(m.id, m.content) for m in offline], [(message.id, "later")])
        self.assertEqual(await self.two.service.offline_messages(bob), [])
        self.assertEqual(bob.directs, [])


class ModerationTests(TwoInstancesCase):
    async def test_ban_closes_and_refuses_on_the_other_instance(self) -> None:
        bob_id = await self.account("bob")
        bob = await self.joined(self.two, "bob", user_id=bob_id)
        await self.one.service.ban("bob", "spam")
        await wait_for(lambda: bob.disconnected, what="bob to be closed on two")
        self.assertEqual(bob.disconnected, [DisconnectReason.BANNED])
        self.assertEqual(self.two.service.connection_count, 0)
        self.assertEqual([b.nickname for b in self.two.service.bans()], ["bob"])
        self.assertRaises(Banned, self.two.connect, "bob", bob_id)
        with self.assertRaises(Banned):
            await self.two.service.authenticate("bob", "bob-secret")
        await self.one.service.unban("bob")
        await wait_for(lambda: not self.two.service.bans(), what="the unban on two")
        self.two.connect("bob", bob_id)
        await self.two.service.authenticate("bob", "bob-secret")

    async def test_logout_on_the_other_instance(self) -> None:
        """A revoked token, then a log-out-everywhere, made on one instance
        are refused (and closed) on the other."""
        alice_id = await self.account("alice")
        secret = b"s" * 32
        one = TokenAuthority(secret, reactor, revocations=self.one.service.revocations)
        two = TokenAuthority(secret, reactor, revocations=self.two.service.revocations)
        token, _ = one.issue(alice_id, "alice")
        other, _ = one.issue(alice_id, "alice")

        def refused(authority: TokenAuthority, token: str) -> bool:
            try:
                authority.verify(token)
            except AuthenticationFailed:
                return True
            return False

        thief = await self.joined(self.two, "alice", user_id=alice_id)
        thief.token_id = one.verify(token).token_id  # type: ignore[attr-defined]
        await self.one.service.logout(one.verify(token))
        await wait_for(lambda: refused(two, token), what="the revocation on two")
        self.assertFalse(refused(two, other))
        await wait_for(lambda: thief.disconnected, what="the token's connection closed on two")
        self.assertEqual(thief.disconnected, [DisconnectReason.TOKEN_REVOKED])
        alice = await self.joined(self.two, "alice", user_id=alice_id)
        await self.one.service.logout(one.verify(other), everywhere=True)
        await wait_for(lambda: alice.disconnected, what="alice closed on two")
        self.assertEqual(alice.disconnected, [DisconnectReason.LOGGED_OUT])
        self.assertTrue(refused(two, other))

    async def test_password_change_reaches_the_other_cache(self) -> None:
        """Two caches the verified old password; a change on one makes the
        other forget it at once (not after --auth-cache-ttl)."""
        await self.account("alice")
        await self.two.service.authenticate("alice", "alice-secret")  # cached on two
        await self.one.service.change_password("alice", "new-secret")

        async def old_refused() -> bool:
            try:
                await self.two.service.authenticate("alice", "alice-secret")
            except AuthenticationFailed:
                return True
            return False

        for _ in range(100):  # the event crosses Redis: bounded wait
            if await old_refused():
                break
            await deferLater(reactor, 0.05, lambda: None)
        self.assertTrue(await old_refused())
        user = await self.two.service.authenticate("alice", "new-secret")
        self.assertEqual(user.nickname, "alice")

    async def test_kick_on_the_other_instance(self) -> None:
        bob = await self.joined(self.two, "bob")
        alice = await self.joined(self.one, "alice")
        self.assertEqual(self.one.service.kick("bob", "lobby", "behave"), 0)
        await wait_for(lambda: bob.removals, what="the kick on two")
        self.assertEqual(bob.removals, [("lobby", "behave")])
        self.assertEqual(self.two.service.rooms_of(bob), frozenset())
        await wait_for(lambda: (LEFT, "bob") in events(alice), what="bob's leave at alice")
        self.assertEqual(bob.disconnected, [])


class AccountLimitTests(TwoInstancesCase):
    """--max-connections-per-user counts an account's connections on every
    instance (not N times the limit with N instances)."""

    limits = Limits(rate_limit=0, max_connections_per_user=2)

    async def test_limit_spans_instances(self) -> None:
        alice_id = await self.account("alice")
        self.one.connect("alice", alice_id)
        self.two.connect("alice", alice_id)
        await wait_for(
            lambda: self.one.bus.remote_presence()["connections"].get("alice") == 1,
            what="two's connection counted on one",
        )
        with self.assertRaises(TooManyConnections) as refused:
            self.one.connect("alice", alice_id)
        self.assertIn("on all servers", str(refused.exception))
        self.assertRaises(TooManyConnections, self.one.service.check_connection, "alice", "")
        # Another account is not affected.
        bob_id = await self.account("bob")
        self.one.connect("bob", bob_id)


class SingleSessionTests(TwoInstancesCase):
    single_session = True

    async def test_newer_session_elsewhere_closes_the_older(self) -> None:
        bob_id = await self.account("bob")
        older = await self.joined(self.one, "bob", user_id=bob_id)
        newer = self.two.connect("bob", bob_id)
        await wait_for(lambda: older.disconnected, what="the older session to close")
        self.assertEqual(older.disconnected, [DisconnectReason.REPLACED])
        self.assertEqual(self.one.service.connection_count, 0)
        await sleep(0.1)
        self.assertEqual(newer.disconnected, [])
        self.assertEqual(self.two.service.connection_count, 1)

    async def test_guests_are_not_affected(self) -> None:
        first = self.one.connect("guest")
        self.two.connect("guest")
        await sleep(0.2)
        self.assertEqual(first.disconnected, [])


class PresenceTests(TwoInstancesCase):
    async def test_online_users_and_members_span_instances(self) -> None:
        alice_id = await self.account("alice")
        bob_id = await self.account("bob")
        alice = await self.joined(self.one, "alice", user_id=alice_id)
        await self.joined(self.two, "bob", user_id=bob_id)
        await self.joined(self.two, "guest")
        for instance in (self.one, self.two):
            await wait_for(
                lambda: [u.nickname for u in instance.service.online_users()] == ["alice", "bob"],  # noqa: B023
                what=f"both accounts online on {instance.id}",
            )
            self.assertEqual(sorted(instance.service.members("lobby")), ["alice", "bob", "guest"])
            self.assertEqual(instance.service.member_count("lobby"), 3)
            self.assertTrue(instance.service.is_online("bob"))
        self.one.service.disconnect(alice)
        await wait_for(lambda: not self.two.service.is_online("alice"), what="alice gone on two")
        await wait_for(
            lambda: sorted(self.two.service.members("lobby")) == ["bob", "guest"],
            what="alice out of the lobby on two",
        )

    async def test_room_directory_spans_instances(self) -> None:
        alice = await self.joined(self.one, "alice")
        await self.joined(self.two, "bob")
        await self.joined(self.two, "carl", room="garden")
        await wait_for(
            lambda: self.one.service.active_rooms(alice) == [("lobby", 2), ("garden", 1)],
            what="two's rooms in one's directory",
        )

    async def test_stop_removes_the_presence_key(self) -> None:
        bob_id = await self.account("bob")
        await self.joined(self.two, "bob", user_id=bob_id)
        key = self.two.bus.presence_key(self.two.id)
        await wait_for(lambda: redis_cli("EXISTS", key) == "1", what="the presence key")
        ttl = int(redis_cli("TTL", key))
        self.assertTrue(0 < ttl <= 30, ttl)
        await wait_for(lambda: self.one.service.is_online("bob"), what="bob online on one")
        await self.two.stop()
        self.assertEqual(redis_cli("EXISTS", key), "0")
        await wait_for(lambda: not self.one.service.is_online("bob"), what="bob gone on one")


class CrashedInstanceTests(TwoInstancesCase):
    presence_ttl = 2.0

    async def test_presence_of_a_silent_instance_expires(self) -> None:
        """An instance that stops renewing (as if killed) disappears from the
        others within the TTL, without any goodbye."""
        bob_id = await self.account("bob")
        await self.joined(self.two, "bob", user_id=bob_id)
        await wait_for(lambda: self.one.service.is_online("bob"), what="bob online on one")
        # Freeze instance two: no renewals, no goodbye, connections cut.
        self.two.running = False
        self.two.bus._heartbeat.stop()
        self.two.bus._handler = None
        for factory in (self.two.bus._subscriber_factory, self.two.bus._command_factory):
            assert factory is not None
            await factory.disconnect()
        started = time.monotonic()
        await wait_for(
            lambda: not self.one.service.is_online("bob"), timeout=6, what="bob to expire"
        )
        self.assertLess(time.monotonic() - started, 2 * self.presence_ttl + 0.5)
        self.assertEqual(redis_cli("EXISTS", self.two.bus.presence_key(self.two.id)), "0")
        await self.two.service.stopService()


class RedisOutageTests(TwoInstancesCase):
    timeout = 90

    async def test_ban_during_the_outage_applies_after_it(self) -> None:
        bob_id = await self.account("bob")
        bob = await self.joined(self.two, "bob", user_id=bob_id)
        for port in self.two.bus_ports():
            redis_cli("CLIENT", "KILL", "ADDR", f"127.0.0.1:{port}")
        await wait_for(lambda: not self.two.bus.live, what="instance two to notice")
        await self.one.service.ban("bob", "spam")  # two cannot hear of it now
        self.assertEqual(bob.disconnected, [])
        await wait_for(lambda: bob.disconnected, timeout=20, what="bob closed once two is back")
        self.assertEqual(bob.disconnected, [DisconnectReason.BANNED])

    async def test_connection_killed_local_delivery_then_recovery(self) -> None:
        a = await self.joined(self.one, "alice")
        b = await self.joined(self.two, "bob")
        b2 = await self.joined(self.two, "bert")
        await self.one.service.post(a, "lobby", "before")
        await wait_for(lambda: chats(b) and chats(b2), what="the first message")

        for port in self.two.bus_ports():
            redis_cli("CLIENT", "KILL", "ADDR", f"127.0.0.1:{port}")
        await wait_for(lambda: not self.two.bus.live, what="instance two to notice")

        # Instance two keeps serving its own members; one's messages do not
        # reach them meanwhile.
        during = await self.two.service.post(b, "lobby", "during")
        await wait_for(lambda: (during.id, "during") in chats(b2), what="local delivery")
        self.assertIn((during.id, "during"), chats(b))
        while_away = await self.one.service.post(a, "lobby", "while two is away")
        self.assertNotIn(while_away.id, [i for i, _ in chats(b)])

        # It reconnects and resubscribes by itself; traffic crosses again,
        # and each side catches up on what it missed, once.
        await wait_for(lambda: self.two.bus.live, timeout=20, what="instance two back")
        await wait_for(
            lambda: (during.id, "during") in chats(a), what="two's outage message at one"
        )
        await wait_for(
            lambda: (while_away.id, "while two is away") in chats(b2), what="one's message at two"
        )
        after_one = await self.one.service.post(a, "lobby", "after from one")
        await wait_for(lambda: (after_one.id, "after from one") in chats(b), what="one -> two")
        after_two = await self.two.service.post(b, "lobby", "after from two")
        await wait_for(lambda: (after_two.id, "after from two") in chats(a), what="two -> one")
        everything = ["before", "during", "while two is away", "after from one", "after from two"]
        for member in (a, b, b2):
            self.assertEqual(sorted(c for _, c in chats(member)), sorted(everything))
        # Two's members got its own message before the one they missed.
        self.assertEqual([c for _, c in chats(b2)][:2], ["before", "during"])
        # Presence is shared again.
        await wait_for(lambda: self.one.service.member_count("lobby") == 3, what="presence back")
