"""The HTTP site: REST resources and WebSockets on one port."""

from __future__ import annotations

from typing import Any

from autobahn.twisted.resource import WebSocketResource
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from parkchat import __version__
from parkchat.protocols.mychat import MyChatFactory
from parkchat.protocols.unified import AppSocketFactory
from parkchat.protocols.websocket import RoomSocketFactory
from parkchat.service import ChatService
from parkchat.tokens import TokenAuthority
from parkchat.web.resources import (
    AdminResource,
    HealthResource,
    HistoryResource,
    LoginResource,
    RegisterResource,
    SocketRoot,
    TextResource,
    origin_allowed,
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
    """The resource tree: the seed API, /ws for apps, /login, /mychat and,
    with an admin token, /admin."""
    root = Resource()
    root.putChild(b"", TextResource(f"parkchat {__version__}\n".encode()))
    root.putChild(b"register", RegisterResource(service))
    root.putChild(b"history", HistoryResource(service))
    root.putChild(b"health", HealthResource(service))
    root.putChild(b"ws", SocketRoot(service, ws_factory, app_factory, allowed_origins))
    if tokens is not None:
        root.putChild(b"login", LoginResource(service, tokens))
    if mychat_factory is not None:
        root.putChild(b"mychat", OriginGuard(WebSocketResource(mychat_factory), allowed_origins))
    if admin_token:
        root.putChild(b"admin", AdminResource(service, admin_token))
    site = Site(root, timeout=HTTP_IDLE_TIMEOUT)
    site.displayTracebacks = False
    if not access_log:
        site.log = lambda request: None  # type: ignore[method-assign]
    return site


class OriginGuard(Resource):
    """Refuses WebSocket upgrades from foreign browser origins (403)."""

    isLeaf = True

    def __init__(self, wrapped: Any, allowed_origins: tuple[str, ...]) -> None:
        super().__init__()
        self._wrapped = wrapped
        self._allowed = allowed_origins

    def render(self, request: Request) -> Any:
        if not origin_allowed(request, self._allowed):
            request.setResponseCode(403)
            request.setHeader(b"Content-Type", b"application/json")
            return b'{"error":"origin_forbidden","message":"this origin may not connect here"}'
        return self._wrapped.render(request)
