"""The HTTP side of the seed dialects (docs/dialects.md).

* GarinChat: a WebSocket upgrade on any path (``garinchat_socket``); on the
  main port, an upgrade of ``/`` (``parkchat.web.site``).
* golang-chat: ``/chat`` (WebSocket), ``/getAllMessages``, and a page of
  parkchat's own at ``/messages`` (a name and a message box; on the
  dialect's own listener, every other path shows it too, as the seed serves
  its page on every path).
* lildengzi (its own listener only: its paths collide with parkchat's):
  ``POST /register``, ``POST /login`` and ``GET /ws`` with the seed's JSON
  envelope ``{"code", "message", "data"}``; every other path is Go's
  ``404 page not found``.

Bodies are written as the Go seeds write them (``protocols.gowire``), with
a trailing newline where ``json.NewEncoder`` put one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import resource
from twisted.web.server import NOT_DONE_YET, Request

from parkchat.errors import AuthenticationFailed, ChatError
from parkchat.interfaces import IChatService
from parkchat.model import User
from parkchat.protocols.garinchat import GarinChatFactory
from parkchat.protocols.golangchat import GolangChatFactory
from parkchat.protocols.gowire import GoDecodeError, go_encode, go_struct
from parkchat.protocols.lildengzi import LildengziFactory, LildengziTokens
from parkchat.web.page import StaticFiles
from parkchat.web.resources import client_host, origin_allowed, upgrade

_log = Logger()

#: The golang-chat page's files (package data, see setup.cfg).
GOLANG_CHAT_DIR = Path(__file__).resolve().parent / "golangchat"
#: Largest lildengzi request body read.
MAX_BODY = 64 * 1024

TEXT = b"text/plain; charset=utf-8"
JSON = b"application/json"


def is_upgrade(request: Request) -> bool:
    """Whether ``request`` asks for a WebSocket."""
    return (request.getHeader(b"upgrade") or b"").strip().lower() == b"websocket"


def _finish(request: Request, status: int, body: bytes, content_type: bytes) -> None:
    if request.finished or getattr(request, "_disconnected", False):
        return
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", content_type)
    request.setHeader(b"Content-Length", str(len(body)).encode("ascii"))
    if request.method != b"HEAD":
        request.write(body)
    request.finish()


def go_error(request: Request, status: int, text: str) -> bytes:
    """An answer like Go's ``http.Error``: the text and a newline."""
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", TEXT)
    request.setHeader(b"X-Content-Type-Options", b"nosniff")
    return (text + "\n").encode("utf-8")


class GoNotFound(resource.Resource):
    """Go's ``http.NotFound``."""

    isLeaf = True

    def render(self, request: Request) -> bytes:
        return go_error(request, 404, "404 page not found")


# -- GarinChat ---------------------------------------------------------------------


class GarinChatSocket(resource.Resource):
    """The GarinChat WebSocket, on whatever path it is mounted (a leaf).

    The seed answers a foreign ``Origin`` with an empty 200; parkchat says
    403. A request without ``Origin`` (not a browser) is let through.
    """

    isLeaf = True

    def __init__(self, factory: GarinChatFactory, allowed_origins: tuple[str, ...]) -> None:
        super().__init__()
        self._factory = factory
        self._allowed = allowed_origins

    def render(self, request: Request) -> Any:
        if not origin_allowed(request, self._allowed):
            return go_error(request, 403, "origin not allowed")
        return upgrade(request, self._factory)


# -- golang-chat ---------------------------------------------------------------------


class GolangChatSocket(resource.Resource):
    """``/chat``: the golang-chat WebSocket. Like gorilla's default origin
    check, a browser page of another origin gets 403 (unless allowed)."""

    isLeaf = True

    def __init__(self, factory: GolangChatFactory, allowed_origins: tuple[str, ...]) -> None:
        super().__init__()
        self._factory = factory
        self._allowed = allowed_origins

    def render(self, request: Request) -> Any:
        if not origin_allowed(request, self._allowed):
            return go_error(request, 403, "Forbidden")
        return upgrade(request, self._factory)


class AllMessages(resource.Resource):
    """``/getAllMessages`` (any method): ``{"Messages":[...]}`` and a
    newline, oldest first, as text/plain (the seed's content type, sniffed by
    Go), the room's newest ``golangchat.REPLAY`` messages."""

    isLeaf = True

    def __init__(self, factory: GolangChatFactory) -> None:
        super().__init__()
        self._factory = factory

    def render(self, request: Request) -> Any:
        d = self._factory.past()
        d.addCallback(
            lambda messages: _finish(request, 200, go_encode({"Messages": messages}), TEXT)
        )
        d.addErrback(_failed, request, lambda: go_error(request, 500, "internal server error"))
        return NOT_DONE_YET


class GolangChatPage(resource.Resource):
    """parkchat's own golang-chat page: ``index.html`` here, its script and
    style below (``/messages/app.js``), with the browser client's headers
    (strict CSP: scripts and styles from this origin only, WebSockets to
    this host)."""

    def __init__(self) -> None:
        super().__init__()
        self.files = StaticFiles(GOLANG_CHAT_DIR)

    def render(self, request: Request) -> Any:
        return self.files.getChild(b"index.html", request).render(request)

    def getChild(self, path: bytes, request: Request) -> Any:
        if path == b"" and not request.postpath:
            return self
        return self.files.getChild(path, request)


def golang_chat_children(
    factory: GolangChatFactory, allowed_origins: tuple[str, ...]
) -> dict[bytes, resource.Resource]:
    """The golang-chat paths, for the main port and the dialect's listener."""
    return {
        b"chat": GolangChatSocket(factory, allowed_origins),
        b"getAllMessages": AllMessages(factory),
        b"messages": GolangChatPage(),
    }


class GolangChatRoot(resource.Resource):
    """The root of a ``--golang-chat`` listener: the seed's paths, and the
    page on every other one."""

    def __init__(self, factory: GolangChatFactory, allowed_origins: tuple[str, ...]) -> None:
        super().__init__()
        children = golang_chat_children(factory, allowed_origins)
        for name, child in children.items():
            self.putChild(name, child)
        self._page = _Everywhere(children[b"messages"])

    def getChild(self, path: bytes, request: Request) -> Any:
        return self._page


class _Everywhere(resource.Resource):
    """A page at every path below where it is mounted."""

    isLeaf = True

    def __init__(self, page: resource.Resource) -> None:
        super().__init__()
        self.page = page

    def render(self, request: Request) -> Any:
        return self.page.render(request)


# -- lildengzi ---------------------------------------------------------------------------


def envelope(request: Request, status: int, message: str, data: Any = None) -> None:
    """The seed's JSON envelope: ``{"code":0,"message":"ok","data":...}`` on
    success, ``{"code":STATUS,"message":...}`` otherwise."""
    body: dict[str, Any] = {"code": 0 if status == 200 else status, "message": message}
    if data is not None:
        body["data"] = data
    _finish(request, status, go_encode(body), JSON)


def _failed(failure: Failure, request: Request, answer: Callable[[], object]) -> None:
    if failure.check(CancelledError):
        return
    _log.failure("{method} {path} failed", failure, method=request.method, path=request.path)
    if not request.finished and not getattr(request, "_disconnected", False):
        body = answer()
        if isinstance(body, bytes):
            request.write(body)
            request.finish()


class LildengziResource(resource.Resource):
    """Base of the lildengzi endpoints: one coroutine per request whose
    ChatErrors become envelopes (``refusal``); anything else is logged and
    answered 500."""

    isLeaf = True
    method: bytes | None = b"POST"

    def __init__(self, service: IChatService) -> None:
        super().__init__()
        self.service = service

    def render(self, request: Request) -> Any:
        if self.method is not None and request.method != self.method:
            envelope(request, 405, "method not allowed")
            return NOT_DONE_YET
        d = Deferred.fromCoroutine(self._run(request))
        request.notifyFinish().addErrback(lambda _: d.cancel())
        d.addErrback(_failed, request, lambda: envelope(request, 500, "internal server error"))
        return NOT_DONE_YET

    async def _run(self, request: Request) -> None:
        try:
            await self.handle(request)
        except ChatError as e:
            status, message = self.refusal(e)
            envelope(request, status, message)

    async def handle(self, request: Request) -> None:
        raise NotImplementedError

    def refusal(self, error: ChatError) -> tuple[int, str]:
        """The status and message for a refused request: the seed's 400 for
        what the client sent, parkchat's own status for its limits."""
        if error.http_status in (429, 403) or error.http_status >= 500:
            return error.http_status, error.message
        return 400, error.message

    def credentials(self, request: Request) -> tuple[str, str]:
        """``username`` and ``password`` from the body, trimmed, as the seed
        reads them."""
        assert request.content is not None
        body = request.content.read(MAX_BODY + 1)
        if len(body) > MAX_BODY:
            raise _TooLarge()
        try:
            fields = go_struct(body, {"username": str, "password": str})
        except GoDecodeError:
            raise _BadRequest("bad request") from None
        username, password = fields["username"].strip(), fields["password"].strip()
        if not username:
            raise _BadRequest("username is required")
        if not password:
            raise _BadRequest("password is required")
        return username, password


class _BadRequest(ChatError):
    code = "invalid_request"


class _TooLarge(ChatError):
    code = "invalid_request"
    http_status = 413

    def default_message(self) -> str:
        return f"request body is larger than {MAX_BODY} bytes"


class LildengziRegister(LildengziResource):
    """``POST /register {"username","password"}`` -> ``{"user_id"}``. Names
    follow parkchat's rules; any refusal is a 400 with the reason (the seed:
    its database's error text)."""

    def refusal(self, error: ChatError) -> tuple[int, str]:
        if isinstance(error, _TooLarge):
            return 413, error.message
        return super().refusal(error)

    async def handle(self, request: Request) -> None:
        username, password = self.credentials(request)
        user = await self.service.register(username, password, client_host(request))
        envelope(request, 200, "ok", {"user_id": user.id})


class LildengziLogin(LildengziResource):
    """``POST /login {"username","password"}`` -> ``{"user_id","username",
    "token"}`` (a lildengzi token); wrong credentials: 401 ``unauthorized``,
    behind parkchat's failed-login throttle (429)."""

    def __init__(self, service: IChatService, tokens: LildengziTokens) -> None:
        super().__init__(service)
        self.tokens = tokens

    def refusal(self, error: ChatError) -> tuple[int, str]:
        if isinstance(error, AuthenticationFailed):
            return 401, "unauthorized"
        if isinstance(error, _TooLarge):
            return 413, error.message
        return super().refusal(error)

    async def handle(self, request: Request) -> None:
        username, password = self.credentials(request)
        user = await self.service.login(username, password, client_host(request))
        token = self.tokens.issue(user)
        envelope(
            request, 200, "ok", {"user_id": user.id, "username": user.nickname, "token": token}
        )


def lildengzi_token(request: Request) -> str:
    """The token as the seed finds it: ``Authorization: Bearer`` (that exact
    prefix), else the ``token`` query parameter; both trimmed."""
    header = (request.getHeader(b"authorization") or b"").decode("latin-1")
    if header.startswith("Bearer "):
        return header[len("Bearer ") :].strip()
    args: Mapping[bytes, list[bytes]] = request.args or {}
    values = args.get(b"token") or [b""]
    return values[0].decode("utf-8", "replace").strip()


class LildengziSocket(LildengziResource):
    """``GET /ws``: the token is checked over HTTP (401 ``missing token`` /
    ``unauthorized`` in the envelope), then the connection is upgraded."""

    method = None  # the seed checks the token before anything else

    def __init__(self, service: IChatService, factory: LildengziFactory) -> None:
        super().__init__(service)
        self.factory = factory

    def refusal(self, error: ChatError) -> tuple[int, str]:
        if isinstance(error, AuthenticationFailed):
            return 401, error.message
        return super().refusal(error)

    async def handle(self, request: Request) -> None:
        token = lildengzi_token(request)
        if not token:
            raise AuthenticationFailed("missing token")
        claims = self.factory.tokens.verify(token)
        user = await self._account(claims.user_id)
        self.service.check_not_banned(user.id)
        self.service.check_connection(user.nickname, client_host(request))
        if request.finished or getattr(request, "_disconnected", False):
            return
        result = upgrade(request, self.factory.bound(user))
        if isinstance(result, bytes):  # Autobahn could not take the connection
            request.write(result)
            request.finish()

    async def _account(self, user_id: int) -> User:
        """The account with this id, or AuthenticationFailed (the seed: 401
        when its user is gone)."""
        if user_id <= 0:
            raise AuthenticationFailed("unauthorized")
        found = await self.service.list_accounts(1, user_id - 1)
        if not found or found[0].id != user_id:
            raise AuthenticationFailed("unauthorized")
        user: User = found[0]
        return user


class LildengziRoot(resource.Resource):
    """The root of a ``--lildengzi`` listener: its three exact paths."""

    def __init__(
        self, service: IChatService, factory: LildengziFactory, tokens: LildengziTokens
    ) -> None:
        super().__init__()
        self._routes: dict[bytes, resource.Resource] = {
            b"register": LildengziRegister(service),
            b"login": LildengziLogin(service, tokens),
            b"ws": LildengziSocket(service, factory),
        }
        self._missing = GoNotFound()

    def getChild(self, path: bytes, request: Request) -> Any:
        if request.postpath:
            return self._missing  # /register/ and deeper: the seed's paths are exact
        return self._routes.get(path, self._missing)
