"""The HTTP site: REST resources and WebSockets on one port."""

from __future__ import annotations

from twisted.web.resource import Resource
from twisted.web.server import Site

from parkchat import __version__
from parkchat.protocols.websocket import RoomSocketFactory
from parkchat.service import ChatService
from parkchat.web.resources import (
    HealthResource,
    HistoryResource,
    RegisterResource,
    RoomSocketResource,
    TextResource,
)

#: Seconds an HTTP connection may sit idle (or half-sent) before it is closed.
HTTP_IDLE_TIMEOUT = 60


def make_site(
    service: ChatService, ws_factory: RoomSocketFactory, *, access_log: bool = True
) -> Site:
    root = Resource()
    root.putChild(b"", TextResource(f"parkchat {__version__}\n".encode()))
    root.putChild(b"register", RegisterResource(service))
    root.putChild(b"history", HistoryResource(service))
    root.putChild(b"health", HealthResource(service))
    root.putChild(b"ws", RoomSocketResource(service, ws_factory))
    site = Site(root, timeout=HTTP_IDLE_TIMEOUT)
    site.displayTracebacks = False
    if not access_log:
        site.log = lambda request: None  # type: ignore[method-assign]
    return site
