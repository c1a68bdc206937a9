"""Fakes and builders shared by the tests: no threads, no sockets, no real time."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.task import Clock
from zope.interface import implementer

from parkchat.auth import PasswordHasher, VerifiedCredentials
from parkchat.interfaces import IBus, IEncoder, IParticipant
from parkchat.limits import Limits
from parkchat.model import DisconnectReason, Message
from parkchat.protocols.participant import AdapterContext
from parkchat.protocols.websocket import RoomSocketFactory
from parkchat.service import ChatService
from parkchat.store.memory import MemoryStore
from parkchat.tap import build_chat_service
from parkchat.web.site import make_site

#: The cheapest bcrypt cost: real hashing, fast tests.
TEST_ROUNDS = 4


def sync_hasher(rounds: int = TEST_ROUNDS, max_pending: int = 256) -> PasswordHasher:
    """A PasswordHasher that runs bcrypt inline (no thread pool)."""

    def run(f: Any, *args: Any) -> Deferred[Any]:
        return maybeDeferred(f, *args)

    return PasswordHasher(run, rounds=rounds, max_pending=max_pending)


@implementer(IEncoder)
class RecordingEncoder:
    """Counts encodings; the payload is the message itself."""

    def __init__(self) -> None:
        self.calls = 0

    def encode(self, message: Message) -> Message:
        self.calls += 1
        return message


@implementer(IParticipant)
class FakeParticipant:
    """A connection that records what it is sent."""

    def __init__(
        self,
        nickname: str,
        encoder: RecordingEncoder | None = None,
        *,
        user_id: int | None = None,
        peer_host: str = "127.0.0.1",
    ) -> None:
        self.nickname = nickname
        self.user_id = user_id
        self.peer_host = peer_host
        self.encoder = encoder if encoder is not None else RecordingEncoder()
        self.received: list[Any] = []
        self.disconnected: list[DisconnectReason] = []
        self.fail_sends = False
        self.removals: list[tuple[str, str]] = []
        self.directs: list[Any] = []
        self.takes_direct = True

    def send(self, payload: Any) -> None:
        if self.fail_sends:
            raise ConnectionError("socket is gone")
        self.received.append(payload)

    def disconnect(self, reason: DisconnectReason) -> None:
        self.disconnected.append(reason)

    def removed(self, room: str, reason: str) -> None:
        self.removals.append((room, reason))

    def direct(self, message: Any) -> bool:
        if not self.takes_direct:
            return False
        self.directs.append(message)
        return True

    def contents(self) -> list[str]:
        return [m.content for m in self.received]


def make_service(
    store: Any = None,
    clock: Clock | None = None,
    limits: Limits | None = None,
    **options: Any,
) -> tuple[ChatService, MemoryStore | Any, Clock]:
    """A started ChatService over an in-memory store and a fake clock, built
    as ``tap.build_chat_service`` builds it; ``options`` go to it (a drain
    timeout of 0 unless given: stopping does not wait on the clock)."""
    clock = clock if clock is not None else Clock()
    store = store if store is not None else MemoryStore()
    options.setdefault("credential_cache", VerifiedCredentials(clock))
    # Fake connections never close by themselves: a stop would wait for them.
    options.setdefault("drain_timeout", 0.0)
    service = build_chat_service(
        store, options.pop("hasher", sync_hasher()), clock, limits=limits, **options
    )
    service.startService()
    return service, store, clock


def settle_pumps(clock: Clock, pumps: Any, rounds: int = 100) -> bool:
    """Run the clock's due calls and move bytes over iosim pumps until nothing
    changes; False if that never happens within ``rounds``."""
    for _ in range(rounds):
        clock.advance(0)
        moved = [pump.pump() for pump in pumps]
        if not any(moved) and not any(
            call.getTime() <= clock.seconds() for call in clock.getDelayedCalls()
        ):
            return True
    return False


def adapter_context(service: ChatService, clock: Any = None, **changes: Any) -> AdapterContext:
    """What ``tap.makeService`` gives the protocol factories, for ``service``
    (its metrics, its clock unless ``clock`` is given); ``changes`` sets
    other fields (``paths``, ``slow_readers``, ``trusted_proxies``)."""
    return AdapterContext(
        service=service,
        metrics=service.metrics,
        clock=clock if clock is not None else service.clock,
        **changes,
    )


def site_for(service: ChatService, ws_factory: Any = None, *args: Any, **kwargs: Any) -> Any:
    """``make_site`` wired as ``tap.makeService`` wires it for ``service``
    (its portal and history page size; a room socket factory if none is
    given); other arguments go to ``make_site`` unchanged."""
    if ws_factory is None:
        ws_factory = RoomSocketFactory(adapter_context(service))
    kwargs.setdefault("portal", service.portal)
    kwargs.setdefault("history_default", service.limits.history_default)
    return make_site(service, ws_factory, *args, **kwargs)


@implementer(IBus)
class RecordingBus:
    """An IBus that records what is published; with ``loop_back``, room
    events are also handed to the attached handler at once (as LocalBus
    does). ``remote`` plays the other instances' presence."""

    def __init__(self, loop_back: bool = False) -> None:
        self.loop_back = loop_back
        self.handler: Any = None
        self.published: list[tuple[str, Message]] = []
        self.controls: list[Any] = []
        self.subscriptions: list[tuple[str, str]] = []
        self.presence_changes = 0
        self.remote: dict[str, Any] = {
            "users": {},
            "rooms": {},
            "connections": {},
            "connections_by_instance": {},
        }

    def attach(self, handler: Any) -> None:
        self.handler = handler

    def subscribe(self, room: str) -> None:
        self.subscriptions.append(("subscribe", room))

    def unsubscribe(self, room: str) -> None:
        self.subscriptions.append(("unsubscribe", room))

    def publish(self, room: str, message: Any) -> None:
        self.published.append((room, message))
        if self.loop_back and self.handler is not None:
            self.handler.deliver(room, message)

    def publish_control(self, event: Any) -> None:
        self.controls.append(event)

    def presence_changed(self) -> None:
        self.presence_changes += 1

    def remote_presence(self) -> dict[str, Any]:
        return self.remote
