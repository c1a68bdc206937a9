"""The HTTP site: REST resources and WebSockets on one port."""

from __future__ import annotations

from typing import Any

from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from parkchat.protocols.mychat import MyChatFactory
from parkchat.protocols.unified import AppSocketFactory
from parkchat.protocols.websocket import RoomSocketFactory
from parkchat.service import ChatService
from parkchat.tokens import TokenAuthority
from parkchat.web.page import SiteRoot
from parkchat.web.resources import (
    AdminResource,
    HealthResource,
    HistoryResource,
    LoginResource,
    RegisterResource,
    SocketRoot,
    origin_allowed,
    upgrade,
)

#: Seconds an HTTP connection may sit idle (or half-sent) before it is closed.
HTTP_IDLE_TIMEOUT = 60


def make_site(
    service: ChatService,
    ws_factory: RoomSocketFactory,
    mychat_factory: MyChatFactory | None = None,
    *,
    app_factory: AppSocketFactory | None = None,
    tokens: TokenAuthority | None = None,
    allowed_origins: tuple[str, ...] = (),
    admin_token: str | None = None,
    access_log: bool = True,
) -> Site:
    """The resource tree: the browser client at /, the seed API, /ws for
    apps, /login, /mychat and, with an admin token, /admin."""
    root = SiteRoot()  # "/" and every path not below is the browser client's files
    root.putChild(b"register", RegisterResource(service))
    root.putChild(b"history", HistoryResource(service))
    root.putChild(b"health", HealthResource(service))
    root.putChild(b"ws", SocketRoot(service, ws_factory, app_factory, allowed_origins))
    if tokens is not None:
        root.putChild(b"login", LoginResource(service, tokens))
    if mychat_factory is not None:
        root.putChild(b"mychat", OriginGuard(mychat_factory, allowed_origins))
    if admin_token:
        root.putChild(b"admin", AdminResource(service, admin_token))
    site = Site(root, timeout=HTTP_IDLE_TIMEOUT)
    site.displayTracebacks = False
    if not access_log:
        site.log = lambda request: None  # type: ignore[method-assign]
    return site


class OriginGuard(Resource):
    """A WebSocket endpoint that refuses foreign browser origins (403)."""

    isLeaf = True

    def __init__(self, factory: Any, allowed_origins: tuple[str, ...]) -> None:
        super().__init__()
        self._factory = factory
        self._allowed = allowed_origins

    def render(self, request: Request) -> Any:
        if not origin_allowed(request, self._allowed):
            request.setResponseCode(403)
            request.setHeader(b"Content-Type", b"application/json")
            return b'{"error":"origin_forbidden","message":"this origin may not connect here"}'
        return upgrade(request, self._factory)
