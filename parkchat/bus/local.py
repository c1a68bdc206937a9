"""The in-process bus: one instance, so publishing is delivering."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from zope.interface import implementer

from parkchat.interfaces import IBus


def _nowhere(room: str, message: Any) -> None:
    raise RuntimeError("LocalBus used before attach()")


@implementer(IBus)
class LocalBus:
    """Delivers published events synchronously to this process's rooms."""

    def __init__(self) -> None:
        self._deliver: Callable[[str, Any], None] = _nowhere

    def attach(self, deliver: Callable[[str, Any], None]) -> None:
        self._deliver = deliver

    def subscribe(self, room: str) -> None:
        pass

    def unsubscribe(self, room: str) -> None:
        pass

    def publish(self, room: str, message: Any) -> None:
        self._deliver(room, message)
