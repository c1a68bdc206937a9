"""The in-process bus: one instance, so publishing is delivering."""

from __future__ import annotations

from typing import Any

from zope.interface import implementer

from parkchat.events import ControlEvent
from parkchat.interfaces import IBus, IBusHandler


@implementer(IBus)
class LocalBus:
    """Delivers published events synchronously to this process."""

    def __init__(self) -> None:
        self._handler: IBusHandler | None = None

    def attach(self, handler: IBusHandler) -> None:
        self._handler = handler

    def _target(self) -> IBusHandler:
        if self._handler is None:
            raise RuntimeError("LocalBus used before attach()")
        return self._handler

    def subscribe(self, room: str) -> None:
        pass

    def unsubscribe(self, room: str) -> None:
        pass

    def publish(self, room: str, message: Any) -> None:
        self._target().deliver(room, message)

    def publish_control(self, event: ControlEvent) -> None:
        self._target().control(event)  # the object itself: nothing to encode

    def presence_changed(self) -> None:
        pass

    def remote_presence(self) -> dict[str, Any]:
        return {"users": {}, "rooms": {}, "connections": {}, "connections_by_instance": {}}
