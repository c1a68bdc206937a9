"""The REST resource tree (MISSION section A): JSON in, JSON out.

Every handler is a coroutine started by ``ApiResource.render``; whatever it
raises goes through ``_translate``, the one place that turns domain errors
into HTTP statuses and JSON bodies ``{"error": code, "message": text}``.
Unexpected errors are logged with their traceback and answered 500.
"""

from __future__ import annotations

import binascii
import json
from base64 import b64decode
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote

from autobahn.twisted.resource import WebSocketResource
from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import CancelledError, Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from parkchat.auth import IChatUser
from parkchat.errors import AuthenticationFailed, ChatError, InvalidRequest
from parkchat.model import User, validate_room
from parkchat.protocols.websocket import RoomSocketFactory
from parkchat.service import ChatService

_log = Logger()

REALM = "parkchat"
MAX_BODY = 64 * 1024

Handler = Callable[[Request], Awaitable[Any]]


class Response:
    """A non-JSON or non-200 answer from a handler."""

    def __init__(self, body: Any, status: int = 200, content_type: bytes | None = None) -> None:
        self.body = body
        self.status = status
        self.content_type = content_type


class NotFound(ChatError):
    code = "not_found"
    http_status = 404

    def default_message(self) -> str:
        return "no such resource"


class ApiResource(Resource):
    """Base of the API: method dispatch to ``handle_<METHOD>`` coroutines,
    405 with ``Allow`` for other methods (twisted.web would say 501), and one
    error translator."""

    isLeaf = True

    def __init__(self, service: ChatService) -> None:
        super().__init__()
        self.service = service

    def allowed_methods(self) -> list[str]:
        methods = [name[len("handle_") :] for name in dir(self) if name.startswith("handle_")]
        if "GET" in methods:
            methods.append("HEAD")
        return sorted(methods)

    def render(self, request: Request) -> Any:
        method = request.method.decode("ascii", "replace")
        handler: Handler | None = getattr(self, "handle_" + method, None)
        if handler is None and method == "HEAD":
            handler = getattr(self, "handle_GET", None)
        if handler is None:
            allowed = self.allowed_methods()
            request.setHeader(b"Allow", ", ".join(allowed).encode("ascii"))
            _write_json(
                request, 405, _error_body("method_not_allowed", f"use {', '.join(allowed)}")
            )
            return NOT_DONE_YET
        d = Deferred.fromCoroutine(_call(handler, request))
        finished = request.notifyFinish()
        finished.addErrback(lambda _: d.cancel())  # the client went away: stop working
        d.addCallbacks(
            lambda result: _respond(request, result), lambda failure: _translate(request, failure)
        )
        return NOT_DONE_YET


async def _call(handler: Handler, request: Request) -> Any:
    return await handler(request)


def _error_body(code: str, message: str) -> dict[str, str]:
    return {"error": code, "message": message}


def _write_json(request: Request, status: int, body: Any) -> None:
    data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    _write(request, status, data, b"application/json; charset=utf-8")


def _write(request: Request, status: int, data: bytes, content_type: bytes) -> None:
    if request.finished or getattr(request, "_disconnected", False):
        return
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", content_type)
    request.setHeader(b"X-Content-Type-Options", b"nosniff")
    request.setHeader(b"Cache-Control", b"no-store")
    request.setHeader(b"Content-Length", str(len(data)).encode("ascii"))
    if request.method != b"HEAD":
        request.write(data)
    request.finish()


def _respond(request: Request, result: Any) -> None:
    if result is NOT_DONE_YET:
        return
    if isinstance(result, Response):
        if isinstance(result.body, bytes):
            _write(
                request,
                result.status,
                result.body,
                result.content_type or b"application/octet-stream",
            )
        else:
            _write_json(request, result.status, result.body)
    else:
        _write_json(request, 200, result)


def _translate(request: Request, failure: Failure) -> None:
    """The one error translator of the REST API."""
    if failure.check(CancelledError):
        return
    error = failure.value
    if isinstance(error, ChatError):
        if isinstance(error, AuthenticationFailed):
            request.setHeader(b"WWW-Authenticate", f'Basic realm="{REALM}"'.encode("ascii"))
        _write_json(request, error.http_status, _error_body(error.code, error.message))
        return
    _log.failure(
        "unhandled error in {method} {path}", failure, method=request.method, path=request.path
    )
    _write_json(request, 500, _error_body("internal_error", "internal server error"))


def read_json_object(request: Request) -> dict[str, Any]:
    """The request body as a JSON object, or InvalidRequest."""
    assert request.content is not None
    body = request.content.read(MAX_BODY + 1)
    if len(body) > MAX_BODY:
        raise InvalidRequest(f"request body is larger than {MAX_BODY} bytes")
    try:
        data = json.loads(body)
    except ValueError as e:
        raise InvalidRequest("body is not valid JSON") from e
    if not isinstance(data, dict):
        raise InvalidRequest("body must be a JSON object")
    return data


def basic_credentials(request: Request) -> tuple[str, str]:
    """Nickname and password from an ``Authorization: Basic`` header."""
    raw = request.getHeader(b"authorization")
    if not raw:
        raise AuthenticationFailed("authentication required")
    scheme, _, encoded = raw.decode("latin-1").partition(" ")
    if scheme.lower() != "basic":
        raise AuthenticationFailed("use HTTP Basic authentication")
    try:
        decoded = b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as e:
        raise AuthenticationFailed("malformed Basic credentials") from e
    nickname, sep, password = decoded.partition(":")
    if not sep:
        raise AuthenticationFailed("malformed Basic credentials")
    return nickname, password


async def authenticate_basic(service: ChatService, request: Request) -> User:
    """The account named by the request's Basic credentials, through the
    service's twisted.cred portal; AuthenticationFailed otherwise."""
    nickname, password = basic_credentials(request)
    try:
        _, user, _ = await service.portal.login(
            UsernamePassword(nickname.encode("utf-8"), password.encode("utf-8")),
            None,
            IChatUser,
        )
    except UnauthorizedLogin as e:
        raise AuthenticationFailed() from e
    assert isinstance(user, User)
    return user


def single_segment(request: Request, what: str) -> str:
    """The one percent-decoded path segment below a resource (the room)."""
    postpath = request.postpath or []
    if len(postpath) != 1 or not postpath[0]:
        raise NotFound(f"{what} name missing or contains '/'")
    try:
        return unquote(postpath[0].decode("ascii"), errors="strict")
    except UnicodeDecodeError as e:
        raise NotFound(f"{what} name is not valid UTF-8") from e


def _query_int(request: Request, name: str) -> int | None:
    args: dict[bytes, list[bytes]] = request.args or {}
    values = args.get(name.encode("ascii"))
    if not values:
        return None
    try:
        return int(values[0])
    except ValueError as e:
        raise InvalidRequest(f"{name} must be an integer") from e


class RegisterResource(ApiResource):
    """``POST /register {"nickname"|"username", "password"}`` -> 201."""

    async def handle_POST(self, request: Request) -> Response:
        data = read_json_object(request)
        nickname = data.get("nickname", data.get("username"))
        user = await self.service.register(nickname, data.get("password"))
        return Response({"id": user.id, "nickname": user.nickname}, status=201)


class HistoryResource(ApiResource):
    """``GET /history/{room}[?limit=N&before=ID&after=ID]`` with Basic auth."""

    async def handle_GET(self, request: Request) -> list[dict[str, Any]]:
        await authenticate_basic(self.service, request)
        room = single_segment(request, "room")
        messages = await self.service.history(
            room,
            limit=_query_int(request, "limit"),
            before=_query_int(request, "before"),
            after=_query_int(request, "after"),
        )
        return [m.as_dict() for m in messages]


class HealthResource(ApiResource):
    """``GET /health`` -> ``200 OK`` (plain text, as the seed API)."""

    async def handle_GET(self, request: Request) -> Response:
        return Response(b"OK", content_type=b"text/plain; charset=utf-8")


class RoomSocketResource(ApiResource):
    """``GET /ws/{room}``: Basic auth and limits checked over HTTP (so a
    refusal is a real 401 with ``WWW-Authenticate``, or a 429), then the
    connection is handed to Autobahn for the upgrade."""

    def __init__(self, service: ChatService, factory: RoomSocketFactory) -> None:
        super().__init__(service)
        self.factory = factory

    async def handle_GET(self, request: Request) -> Any:
        room = validate_room(single_segment(request, "room"))
        user = await authenticate_basic(self.service, request)
        peer = request.getClientAddress()
        self.service.check_connection(user.nickname, getattr(peer, "host", ""))
        if request.finished or getattr(request, "_disconnected", False):
            return NOT_DONE_YET
        return WebSocketResource(self.factory.bound(user, room)).render(request)


class TextResource(Resource):
    """A fixed plain-text page."""

    isLeaf = True

    def __init__(self, text: bytes) -> None:
        super().__init__()
        self._text = text

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
        return self._text
