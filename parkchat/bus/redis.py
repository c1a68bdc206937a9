"""The Redis bus: room events, direct messages, bans, kicks, session
takeovers and presence shared by every instance, over txredisapi pub/sub.

Channels (all under a prefix, ``parkchat`` by default):

* ``<prefix>:room:<room>`` -- the events of one room, subscribed by the
  instances that have members there. Every instance, the publisher included,
  delivers what comes back from Redis, so all members of a room see its
  events in the one order Redis put them in.
* ``<prefix>:ctl`` -- instance-wide events (direct messages, bans, kicks,
  single-session takeovers) and presence announcements, subscribed by all.

Presence: each instance keeps ``<prefix>:presence:<instance>`` (who is
connected there, per account and per room) with a TTL it renews; a crashed
instance's users disappear when its key expires. Announcements on the control
channel make changes visible at once; a periodic scan of the keys catches up
an instance that missed them.

While Redis is unreachable an instance keeps serving its own members: events
are delivered locally and nothing crosses instances; txredisapi reconnects by
itself and the subscriber subscribes again. Once both connections work again
the handler hears of it (``bus_recovered``): the service then delivers to its
members, from the database, the room messages stored elsewhere meanwhile, and
asks the other instances to do the same (``parkchat.handlers.resync``). Events
that are not stored (joins, leaves, direct messages, kicks) are not caught up.
What crosses Redis is encoded and decoded by ``parkchat.events`` only.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

import txredisapi

from parkchat.events import (
    ControlEvent,
    ControlFrame,
    Goodbye,
    PresenceAnnouncement,
    announcement_frame,
    event_frame,
    presence_record,
    read_control_frame,
    read_presence_record,
    read_room_frame,
    room_frame,
)
from parkchat.interfaces import IBus, IBusHandler
from parkchat.model import JOINED, SYSTEM, Message

_log = Logger()

#: Whether txredisapi parses replies with hiredis (installed with parkchat).
#: Its pure-Python parser pauses the connection after every bulk string and
#: resumes on the next reactor turn, so a burst of N pub/sub messages takes
#: about 3N turns and N separate broadcasts, none of which can share a socket
#: write: fanout across two workers measured 93k deliveries/s with it and
#: 809k with hiredis (docs/performance.md).
FAST_PARSER = txredisapi.hiredis is not None

#: How long an instance's presence lives without renewal (seconds).
PRESENCE_TTL = 30.0
#: Coalescing delay for presence announcements after changes (seconds).
PRESENCE_DELAY = 0.05


class RedisURLError(ValueError):
    """A ``--redis`` value that is not a usable redis:// URL."""


def parse_redis_url(url: str) -> dict[str, Any]:
    """``redis://[:password@]host[:port][/db][?prefix=name]`` as parts."""
    parts = urlsplit(url)
    if parts.scheme != "redis" or not parts.hostname:
        raise RedisURLError(f"{url!r} is not a redis://host:port/db URL")
    try:
        port = parts.port or 6379
    except ValueError as e:
        raise RedisURLError(f"bad port in {url!r}") from e
    path = parts.path.strip("/")
    if path and not path.isdigit():
        raise RedisURLError(f"the database in {url!r} must be a number")
    query = parse_qs(parts.query, keep_blank_values=True)
    prefix = query.get("prefix", ["parkchat"])[0]
    if not prefix or any(ch.isspace() for ch in prefix):
        raise RedisURLError(f"bad prefix in {url!r}")
    return {
        "host": parts.hostname,
        "port": port,
        "db": int(path) if path else 0,
        "password": unquote(parts.password) if parts.password else None,
        "prefix": prefix,
    }


def _no_delay(transport: Any) -> None:
    """Small commands and messages must not wait for Nagle's algorithm: with
    a reply outstanding, the kernel holds the next small write until the
    peer's (possibly delayed) ACK, which stalls pub/sub for tens of ms."""
    set_no_delay = getattr(transport, "setTcpNoDelay", None)
    if set_no_delay is not None:
        set_no_delay(True)


class _Commands(txredisapi.RedisProtocol):
    """The command connection (PUBLISH, presence keys)."""

    def connectionMade(self) -> Any:
        _no_delay(self.transport)
        return super().connectionMade()


class _Subscriber(txredisapi.SubscriberProtocol):
    """The pub/sub connection; (re)subscribes everything on every connect."""

    bus: RedisBus

    def connectionMade(self) -> Any:
        _no_delay(self.transport)
        d = super().connectionMade()
        d.addCallback(lambda _: self.bus._subscriber_ready(self))
        return d

    def messageReceived(self, pattern: Any, channel: Any, message: Any) -> None:
        self.bus._received(channel, message)

    def connectionLost(self, why: Failure) -> None:
        self.bus._subscriber_lost(self)
        super().connectionLost(why)


@implementer(IBus)
class RedisBus(Service):
    """IBus over Redis pub/sub; see the module docstring."""

    def __init__(
        self,
        url: str,
        clock: IReactorTime,
        reactor: Any,
        instance_id: str,
        presence_ttl: float = PRESENCE_TTL,
    ) -> None:
        self.setName("redis-bus")
        self.config = parse_redis_url(url)
        self.prefix = self.config["prefix"] + ":"
        self.clock = clock
        self.reactor = reactor
        self.instance_id = instance_id
        self.presence_ttl = presence_ttl
        self._handler: IBusHandler | None = None
        self._rooms: set[str] = set()
        self._subscriber: _Subscriber | None = None
        # room -> publishes held until Redis confirms the room's SUBSCRIBE,
        # so that the first local members get their own join (and messages)
        self._subscribing: dict[str, list[Message]] = {}
        self._live = False
        # Something published here was delivered here only, or the
        # subscriber lost events: tell the handler once the bus is back.
        self._outage = False
        self._recheck: IDelayedCall | None = None
        self._commands: Any = None
        self._command_factory: txredisapi.RedisFactory | None = None
        self._subscriber_factory: txredisapi.SubscriberFactory | None = None
        # instance id -> (presence snapshot, local time it expires)
        self._remote: dict[str, tuple[dict[str, Any], float]] = {}
        self._merged: dict[str, Any] = {
            "users": {},
            "rooms": {},
            "connections": {},
            "connections_by_instance": {},
        }
        self._announce: IDelayedCall | None = None
        self._heartbeat = LoopingCall(self._renew, scan=True)
        self._heartbeat.clock = clock

    # -- channels ------------------------------------------------------------

    @property
    def control_channel(self) -> str:
        return self.prefix + "ctl"

    def room_channel(self, room: str) -> str:
        return self.prefix + "room:" + room

    def presence_key(self, instance_id: str) -> str:
        return self.prefix + "presence:" + instance_id

    # -- lifecycle -------------------------------------------------------------

    def _endpoint(self) -> HostnameEndpoint:
        return HostnameEndpoint(self.reactor, self.config["host"], self.config["port"], timeout=5)

    def startService(self) -> None:
        super().startService()
        if not FAST_PARSER:
            _log.warn(
                "hiredis is not installed: txredisapi falls back to its slow parser; "
                "'pip install hiredis' for full cross-instance throughput"
            )
        commands = txredisapi.RedisFactory(
            f"{self.config['host']}:{self.config['port']}",
            self.config["db"],
            1,
            isLazy=True,
            password=self.config["password"],
            replyTimeout=5,
        )
        commands.protocol = _Commands
        commands.startConnecting(self._endpoint())
        self._command_factory = commands
        self._commands = commands.handler
        bus = self

        class Subscriber(_Subscriber):
            pass

        Subscriber.bus = bus
        subscriber = txredisapi.SubscriberFactory(isLazy=True)
        subscriber.protocol = Subscriber
        subscriber.password = self.config["password"]
        subscriber.startConnecting(self._endpoint())
        self._subscriber_factory = subscriber
        self._heartbeat.start(self.presence_ttl / 3, now=False)

    def stopService(self) -> Deferred[None]:
        super().stopService()
        if self._heartbeat.running:
            self._heartbeat.stop()
        for call in (self._announce, self._recheck):
            if call is not None and call.active():
                call.cancel()
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        if self._commands_ready():
            try:
                await self._commands.delete(self.presence_key(self.instance_id))
                await self._commands.publish(
                    self.control_channel, announcement_frame(Goodbye(self.instance_id))
                )
            except Exception:
                _log.failure("saying goodbye on Redis failed")
        for factory in (self._subscriber_factory, self._command_factory):
            if factory is not None:
                try:
                    await factory.disconnect()
                except Exception:
                    _log.failure("closing a Redis connection failed")

    def _commands_ready(self) -> bool:
        return self._command_factory is not None and bool(self._command_factory.pool)

    @property
    def live(self) -> bool:
        """Subscribed and able to publish: events go through Redis."""
        return self._live and self._commands_ready()

    # -- IBus ------------------------------------------------------------------

    def attach(self, handler: IBusHandler) -> None:
        self._handler = handler

    def _target(self) -> IBusHandler:
        if self._handler is None:
            raise RuntimeError("RedisBus used before attach()")
        return self._handler

    def subscribe(self, room: str) -> None:
        self._rooms.add(room)
        if self._subscriber is not None and self._live:
            self._subscribe_room(self._subscriber, room)

    def _subscribe_room(self, protocol: _Subscriber, room: str) -> None:
        """SUBSCRIBE to a room; its publishes wait for the confirmation (the
        subscriber and the publisher are separate connections, so Redis
        could otherwise see a PUBLISH first and not echo it back here)."""
        held = self._subscribing.setdefault(room, [])

        def done(result: object) -> None:
            if self._subscribing.get(room) is held:
                del self._subscribing[room]
            for message in held:
                self.publish(room, message)

        d: Deferred[Any] = protocol.subscribe(self.room_channel(room))
        d.addErrback(self._log_failure).addBoth(done)

    def unsubscribe(self, room: str) -> None:
        self._rooms.discard(room)
        if self._subscriber is not None and self._live:
            self._subscriber.unsubscribe(self.room_channel(room)).addErrback(self._log_failure)

    def publish(self, room: str, message: Any) -> None:
        if not self.live:
            self._outage = True
            self._target().deliver(room, message)
            return
        held = self._subscribing.get(room)
        if held is not None:
            held.append(message)
            return
        d = self._commands.publish(self.room_channel(room), room_frame(self.instance_id, message))
        d.addErrback(self._publish_failed, lambda: self._target().deliver(room, message))

    def publish_control(self, event: ControlEvent) -> None:
        if not self.live:
            self._outage = True
            self._target().control(event)
            return
        d = self._commands.publish(self.control_channel, event_frame(self.instance_id, event))
        d.addErrback(self._publish_failed, lambda: self._target().control(event))

    def presence_changed(self) -> None:
        if self._announce is None or not self._announce.active():
            self._announce = self.clock.callLater(PRESENCE_DELAY, self._renew, scan=False)

    def remote_presence(self) -> dict[str, Any]:
        now = self.clock.seconds()
        if any(expires <= now for _, expires in self._remote.values()):
            self._remote = {k: v for k, v in self._remote.items() if v[1] > now}
            self._merge()
        return self._merged

    # -- receiving -------------------------------------------------------------

    def _subscriber_ready(self, protocol: _Subscriber) -> Deferred[None]:
        asked = set(self._rooms)
        channels = [self.control_channel, *(self.room_channel(r) for r in sorted(asked))]
        d: Deferred[Any] = protocol.subscribe(channels)

        def subscribed(_: object) -> None:
            self._subscriber = protocol
            self._live = True
            _log.info("Redis bus live as instance {instance}", instance=self.instance_id)
            # Rooms first joined during the round trip were not in the list.
            for room in sorted(self._rooms - asked):
                self._subscribe_room(protocol, room)
            self._renew(scan=True)
            self._check_recovered()

        d.addCallbacks(subscribed, self._log_failure)
        return d

    def _subscriber_lost(self, protocol: _Subscriber) -> None:
        if self._subscriber is protocol:
            self._subscriber = None
        if self._live:
            _log.warn("Redis bus lost: serving local members only until it is back")
            self._outage = True
        self._live = False

    def _check_recovered(self) -> None:
        """After an outage, tell the handler once events cross again: the
        subscriber is back and so is the command connection (which may
        reconnect later than the subscriber: checked again each second)."""
        self._recheck = None
        if not self._outage or not self.running:
            return
        if self.live:
            self._outage = False
            _log.info("Redis bus back: catching up on what did not cross")
            self._target().bus_recovered()
        elif self._live:
            self._recheck = self.clock.callLater(1.0, self._check_recovered)

    def _received(self, channel: Any, raw: Any) -> None:
        """A frame from Redis. What the codec cannot read it logs and drops;
        what it can is handed over, and a failure there is a bug that
        surfaces (no blanket ``except`` around the handler)."""
        if isinstance(channel, bytes):
            channel = channel.decode("utf-8", "replace")
        if channel == self.control_channel:
            frame = read_control_frame(raw)
            if frame is not None:
                self._control_received(frame)
        elif channel.startswith(self.prefix + "room:"):
            read = read_room_frame(raw)
            if read is None:
                return
            instance, message = read
            room = channel[len(self.prefix + "room:") :]
            if message.type == SYSTEM and instance != self.instance_id:
                self._track(instance, room, message)
            self._target().deliver(room, message)

    def _control_received(self, frame: ControlFrame) -> None:
        if isinstance(frame, ControlEvent):
            self._target().control(frame)
        elif frame.instance == self.instance_id:
            return
        elif isinstance(frame, PresenceAnnouncement):
            self._remote[frame.instance] = (
                frame.snapshot,
                self.clock.seconds() + self.presence_ttl,
            )
            self._merge()
            self._target().presence_updated()
        else:
            self._remote.pop(frame.instance, None)
            self._merge()

    # -- presence --------------------------------------------------------------

    def _track(self, instance: str, room: str, message: Message) -> None:
        """Apply another instance's join or leave to its presence at once, so
        that counts such as ``totalUsers`` are right before its next snapshot."""
        snapshot, expires = self._remote.get(
            instance, ({"users": {}, "rooms": {}}, self.clock.seconds() + self.presence_ttl)
        )
        names: list[str] = snapshot.setdefault("rooms", {}).setdefault(room, [])
        if message.event == JOINED:
            names.append(message.nickname)
        elif message.nickname in names:
            names.remove(message.nickname)
        self._remote[instance] = (snapshot, expires)
        self._merge()

    def _renew(self, scan: bool) -> None:
        """Share this instance's presence (key with a TTL, plus an
        announcement); with ``scan``, also re-read the other instances' keys
        (on the heartbeat and after connecting, not on every change)."""
        self._announce = None
        if not self.live or self._handler is None:
            return
        snapshot = self._handler.presence_snapshot()
        d = self._commands.set(
            self.presence_key(self.instance_id),
            presence_record(snapshot),
            expire=int(self.presence_ttl),
        )
        d.addCallback(
            lambda _: self._commands.publish(
                self.control_channel,
                announcement_frame(PresenceAnnouncement(self.instance_id, snapshot)),
            )
        )
        if scan:
            d.addCallback(lambda _: Deferred.fromCoroutine(self._scan_presence()))
        d.addErrback(self._log_failure)

    async def _scan_presence(self) -> None:
        pattern = self.prefix + "presence:*"
        keys: list[str] = []
        cursor = 0
        for _ in range(1000):  # bounded: ~100k keys at COUNT 100
            cursor, found = await self._commands.scan(cursor, pattern, 100)
            keys.extend(k.decode() if isinstance(k, bytes) else k for k in found)
            if int(cursor) == 0:
                break
        own = self.presence_key(self.instance_id)
        keys = [k for k in keys if k != own]
        remote: dict[str, tuple[dict[str, Any], float]] = {}
        if keys:
            values = await self._commands.mget(keys)
            expires = self.clock.seconds() + self.presence_ttl
            for key, value in zip(keys, values, strict=True):
                snapshot = read_presence_record(value) if value else None
                if snapshot is not None:
                    instance = key[len(self.prefix + "presence:") :]
                    remote[instance] = (snapshot, expires)
        self._remote = remote
        self._merge()
        if self._handler is not None:
            self._handler.presence_updated()

    def _merge(self) -> None:
        users: dict[str, list[Any]] = {}
        rooms: dict[str, list[str]] = {}
        connections: dict[str, int] = {}
        by_instance: dict[str, dict[str, int]] = {}
        for instance, (snapshot, _) in self._remote.items():
            counts = snapshot.get("connections", {})
            for key, entry in snapshot.get("users", {}).items():
                users[key] = entry
                # An instance of an older version sends no counts: at least one.
                count = counts.get(key, 1)
                count = count if isinstance(count, int) else 1
                connections[key] = connections.get(key, 0) + count
                by_instance.setdefault(key, {})[instance] = count
            for room, names in snapshot.get("rooms", {}).items():
                rooms.setdefault(room, []).extend(names)
        self._merged = {
            "users": users,
            "rooms": rooms,
            "connections": connections,
            "connections_by_instance": by_instance,
        }

    # -- failures ---------------------------------------------------------------

    def _publish_failed(self, failure: Failure, fallback: Any) -> None:
        _log.warn(
            "publishing on Redis failed ({why}); delivering locally", why=failure.getErrorMessage()
        )
        self._outage = True
        fallback()
        if self._recheck is None and self.running:
            self._recheck = self.clock.callLater(1.0, self._check_recovered)

    def _log_failure(self, failure: Failure) -> None:
        _log.warn("Redis: {why}", why=failure.getErrorMessage())
