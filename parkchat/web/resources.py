"""The REST resource tree (MISSION section A): JSON in, JSON out.

Every handler is a coroutine started by ``ApiResource.render``; whatever it
raises goes through ``_translate``, the one place that turns domain errors
into HTTP statuses and JSON bodies ``{"error": code, "message": text}``.
Unexpected errors are logged with their traceback and answered 500.
"""

from __future__ import annotations

import binascii
import hmac
import json
import math
from base64 import b64decode
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from autobahn.twisted.resource import WebSocketResource
from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import Portal
from twisted.internet.defer import CancelledError, Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from parkchat.accounts import _encodable
from parkchat.auth import IChatUser, PeerUsernamePassword
from parkchat.errors import (
    AuthenticationFailed,
    ChatError,
    InvalidRequest,
    OriginForbidden,
    UnknownRecipient,
)
from parkchat.interfaces import IChatService
from parkchat.limits import Limits
from parkchat.model import MAX_ID, Ban, User, format_timestamp, validate_room
from parkchat.protocols.unified import AppSocketFactory, edit_dict, search_result_dict
from parkchat.protocols.websocket import RoomSocketFactory
from parkchat.tokens import TokenAuthority, TokenClaims, TokenVerifier

_log = Logger()

REALM = "parkchat"
#: Set on requests that authenticate with Basic: their 401 carries a challenge.
_BASIC_CHALLENGE = "_parkchat_basic_challenge"
MAX_BODY = 64 * 1024
#: Longest timed ban (100 years); longer is "until lifted" (no duration).
MAX_BAN_SECONDS = 100 * 365.25 * 86400

Handler = Callable[[Request], Awaitable[Any]]


class Response:
    """A non-JSON or non-200 answer from a handler."""

    def __init__(
        self,
        body: Any,
        status: int = 200,
        content_type: bytes | None = None,
        headers: dict[bytes, bytes] | None = None,
    ) -> None:
        self.body = body
        self.status = status
        self.content_type = content_type
        self.headers = headers or {}


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

    def __init__(self, service: IChatService) -> None:
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


JSON_CONTENT_TYPE = b"application/json; charset=utf-8"


def _dumps(body: Any) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _write_json(request: Request, status: int, body: Any) -> None:
    _write(request, status, _dumps(body), JSON_CONTENT_TYPE)


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
        for name, value in result.headers.items():
            request.setHeader(name, value)
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
        if isinstance(error, AuthenticationFailed) and getattr(request, _BASIC_CHALLENGE, False):
            # Only where Basic auth is the way in: a challenge on /login or a
            # token refusal would make browsers pop up a password dialog.
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
    except (ValueError, RecursionError) as e:  # RecursionError: nested too deeply
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


async def authenticate_basic(portal: Portal, request: Request) -> User:
    """The account named by the request's Basic credentials, through the
    twisted.cred ``portal``; AuthenticationFailed otherwise."""
    setattr(request, _BASIC_CHALLENGE, True)
    nickname, password = basic_credentials(request)
    credentials = PeerUsernamePassword(
        nickname.encode("utf-8"), password.encode("utf-8"), client_host(request)
    )
    try:
        _, user, _ = await portal.login(credentials, None, IChatUser)
    except UnauthorizedLogin as e:
        raise AuthenticationFailed() from e
    assert isinstance(user, User)
    return user


def client_host(request: Request) -> str:
    """The client's address (for per-address limits and login throttling)."""
    return getattr(request.getClientAddress(), "host", "")


def single_segment(request: Request, what: str) -> str:
    """The one percent-decoded path segment below a resource (the room).

    twisted.web has already percent-decoded ``postpath``; decoding again
    would turn ``100%2525`` into ``100%`` and refuse ``caf%C3%A9``. It
    splits the path at ``/`` before decoding, so ``a%2Fb`` arrives as one
    segment ``a/b``: a 404 like ``a/b`` itself (docs/protocol.md), since no
    room name holds a ``/``.
    """
    postpath = request.postpath or []
    if len(postpath) != 1 or not postpath[0] or b"/" in postpath[0]:
        raise NotFound(f"{what} name missing or contains '/'")
    try:
        return postpath[0].decode("utf-8")
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
        user = await self.service.register(nickname, data.get("password"), client_host(request))
        return Response({"id": user.id, "nickname": user.nickname}, status=201)


#: The room position (seq) of the newest message in a history answer: where
#: a client that showed it resumes (``/ws/{room}?since=``).
SEQ_HEADER = b"Parkchat-Seq"


class HistoryResource(ApiResource):
    """``GET /history/{room}[?limit=N&before=ID&after=ID]`` with Basic auth.

    The answer to the common query (no paging) is kept encoded until the
    room's newest messages change, so polling clients cost one lookup. The
    body is the seed API's list of message objects; the ``Parkchat-Seq``
    header gives the seq of the newest one (absent when there is none).
    """

    #: Most encoded answers kept (rooms x limits).
    MAX_ENCODED = 512

    def __init__(
        self,
        service: IChatService,
        portal: Portal,
        history_default: int = Limits.history_default,
    ) -> None:
        super().__init__(service)
        self.portal = portal
        #: The page size the service gives when the request names none.
        self.history_default = history_default
        self._encoded: OrderedDict[tuple[str, int], tuple[int, Response]] = OrderedDict()

    async def handle_GET(self, request: Request) -> Response:
        await authenticate_basic(self.portal, request)
        room = single_segment(request, "room")
        limit = _query_int(request, "limit")
        before = _query_int(request, "before")
        after = _query_int(request, "after")
        key = (room, limit if limit is not None else self.history_default)
        paging = before is not None or after is not None
        version = None if paging else self.service.history_version(room)
        if version is not None:
            hit = self._encoded.get(key)
            if hit is not None and hit[0] == version:
                self._encoded.move_to_end(key)
                return hit[1]
        messages = await self.service.history(room, limit=limit, before=before, after=after)
        response = Response(
            _dumps([m.as_dict() for m in messages]),
            content_type=JSON_CONTENT_TYPE,
            headers={SEQ_HEADER: b"%d" % messages[-1].seq} if messages else None,
        )
        version = None if paging else self.service.history_version(room)
        if version is not None:
            self._encoded[key] = (version, response)
            self._encoded.move_to_end(key)
            while len(self._encoded) > self.MAX_ENCODED:
                self._encoded.popitem(last=False)
        return response


def _query_text(request: Request, name: str) -> str | None:
    args: dict[bytes, list[bytes]] = request.args or {}
    values = args.get(name.encode("ascii"))
    if not values:
        return None
    try:
        return values[0].decode("utf-8")
    except UnicodeDecodeError as e:
        raise InvalidRequest(f"{name} must be UTF-8 text") from e


class SearchResource(ApiResource):
    """``GET /search?q=...[&room=R | &with=NICK][&before=CURSOR][&limit=N]``
    with a login token (Bearer or ``?token=``) or Basic credentials: a page
    of the messages the account may read that hold every word of ``q``,
    newest first, ``{"results": [...], "next": cursor | null}``."""

    def __init__(
        self, service: IChatService, portal: Portal, tokens: TokenVerifier | None = None
    ) -> None:
        super().__init__(service)
        self.portal = portal
        self.tokens = tokens

    async def handle_GET(self, request: Request) -> dict[str, Any]:
        user = await self._identify(request)
        page = await self.service.search(
            user.id,
            user.nickname,
            _query_text(request, "q"),
            room=_query_text(request, "room"),
            with_nickname=_query_text(request, "with"),
            before=_query_text(request, "before"),
            limit=_query_int(request, "limit"),
        )
        return {"results": [search_result_dict(hit) for hit in page.hits], "next": page.next}

    async def _identify(self, request: Request) -> User:
        token = bearer_token(request) if self.tokens is not None else None
        if token is None:
            return await authenticate_basic(self.portal, request)
        assert self.tokens is not None
        claims = self.tokens.verify(token)
        if claims.user_id is None:
            raise AuthenticationFailed("search needs a parkchat account")
        self.service.check_not_banned(claims.user_id)
        return User(claims.user_id, claims.nickname)


class HealthResource(ApiResource):
    """``GET /health`` -> ``200 OK`` (plain text, as the seed API): liveness,
    the event loop answers. ``GET /health/ready`` -> 200 JSON while the
    instance can store and serve its members (``ready``, or ``degraded``
    when the Redis bus is down), else 503 with the reason: readiness, for
    load balancers and Kubernetes (``ChatService.readiness``)."""

    #: Paths below /health (tests/test_openapi.py checks them against the spec).
    subpaths = ("ready",)

    async def handle_GET(self, request: Request) -> Response:
        if request.postpath in ([], [b""]):
            return Response(b"OK", content_type=b"text/plain; charset=utf-8")
        if request.postpath == [b"ready"]:
            report = await self.service.readiness()
            if report["status"] != "not_ready":
                return Response(report)
            # The API's error shape; the message says what is not ready.
            return Response(_error_body("not_ready", report["reason"]), 503)
        raise NotFound()


class RoomSocketResource(ApiResource):
    """``GET /ws/{room}``: Basic auth and limits checked over HTTP (so a
    refusal is a real 401 with ``WWW-Authenticate``, or a 429), then the
    connection is handed to Autobahn for the upgrade."""

    def __init__(
        self,
        service: IChatService,
        portal: Portal,
        factory: RoomSocketFactory,
        tokens: TokenVerifier | None = None,
    ) -> None:
        super().__init__(service)
        self.portal = portal
        self.factory = factory
        self.tokens = tokens

    async def handle_GET(self, request: Request) -> Any:
        room = validate_room(single_segment(request, "room"))
        since = _query_int(request, "since")
        if since is not None and not 0 <= since <= MAX_ID:
            raise InvalidRequest("since must be a room position (a seq, 0 or more)")
        user, token_id = await self._identify(request)
        peer = request.getClientAddress()
        self.service.check_connection(user.nickname, getattr(peer, "host", ""))
        if request.finished or getattr(request, "_disconnected", False):
            return NOT_DONE_YET
        return upgrade(request, self.factory.bound(user, room, token_id, since))

    async def _identify(self, request: Request) -> tuple[User, str | None]:
        """Basic credentials (the seed API), or a login token (Bearer or
        ``?token=``) of a registered account, with the token's id."""
        token = bearer_token(request) if self.tokens is not None else None
        if token is None:
            return await authenticate_basic(self.portal, request), None
        assert self.tokens is not None
        claims = self.tokens.verify(token)
        if claims.user_id is None:
            raise AuthenticationFailed("this endpoint needs a parkchat account")
        self.service.check_not_banned(claims.user_id)
        return User(claims.user_id, claims.nickname), claims.token_id


def upgrade(request: Request, factory: Any) -> Any:
    """Hand the request's connection to Autobahn for the WebSocket upgrade,
    then let go of the HTTP side.

    twisted.web's channel stays registered as the transport's producer after
    Autobahn takes the transport over, which keeps the channel, the request,
    its headers and body alive for the whole life of the socket (a few KB
    per idle connection). Unregistering it leaves them to the garbage
    collector; the WebSocket protocol does not use the producer. (A
    producer the WebSocket registered itself, the slow-reader guard of
    ``protocols.policies``, is left alone.)
    """
    transport: Any = request.transport
    channel = request.channel
    result = WebSocketResource(factory).render(request)
    if transport is not None and getattr(transport, "producer", None) is channel:
        transport.unregisterProducer()
    return result


class TextResource(Resource):
    """A fixed plain-text page."""

    isLeaf = True

    def __init__(self, text: bytes) -> None:
        super().__init__()
        self._text = text

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
        return self._text


def origin_allowed(request: Request, allowed: tuple[str, ...]) -> bool:
    """Browsers send ``Origin`` on WebSocket upgrades; other clients do not.

    With no allow-list, only the page's own origin (same host and port as the
    request) may connect, which stops other sites from opening sockets with a
    visitor's cached credentials. ``*`` in the list allows every origin.
    """
    raw = request.getHeader(b"origin")
    if raw is None:
        return True
    origin = raw.decode("latin-1").strip().rstrip("/").lower()
    if allowed:
        return "*" in allowed or origin in allowed
    host = (request.getHeader(b"host") or b"").decode("latin-1").strip().lower()
    scheme, _, origin_host = origin.partition("://")
    # Origins leave out the scheme's default port; a Host header may not.
    default_port = {"http": ":80", "https": ":443", "ws": ":80", "wss": ":443"}.get(scheme)
    if default_port is not None:
        host = host.removesuffix(default_port)
        origin_host = origin_host.removesuffix(default_port)
    return bool(host) and origin_host == host


def bearer_token(request: Request) -> str | None:
    """A token from ``Authorization: Bearer`` or the ``token`` query parameter."""
    raw = request.getHeader(b"authorization")
    if raw:
        scheme, _, value = raw.decode("latin-1").partition(" ")
        if scheme.lower() == "bearer":
            return value.strip()
    args: dict[bytes, list[bytes]] = request.args or {}
    values = args.get(b"token")
    if values:
        return values[0].decode("utf-8", "replace")
    return None


class LoginResource(ApiResource):
    """``POST /login {"nickname"|"username", "password", "remember"?}`` -> a
    signed token; with ``"remember": true`` also a refresh token for a login
    that outlives the signed token (``POST /refresh``)."""

    def __init__(self, service: IChatService, tokens: TokenAuthority) -> None:
        super().__init__(service)
        self.tokens = tokens

    async def handle_POST(self, request: Request) -> dict[str, Any]:
        data = read_json_object(request)
        nickname = data.get("nickname", data.get("username"))
        password = data.get("password")
        remember = data.get("remember", False)
        if not isinstance(nickname, str) or not isinstance(password, str):
            raise InvalidRequest('"nickname" and "password" are required strings')
        if not isinstance(remember, bool):
            raise InvalidRequest('"remember" must be true or false')
        user = await self.service.login(nickname, password, client_host(request))
        reply = self._token_reply(user)
        if remember:
            refresh_token, ttl = await self.service.issue_refresh_token(user)
            reply["refresh_token"] = refresh_token
            reply["refresh_expires_in"] = ttl
        return reply

    def _token_reply(self, user: User) -> dict[str, Any]:
        token, expires = self.tokens.issue(user.id, user.nickname)
        return {
            "token": token,
            "user_id": user.id,
            "nickname": user.nickname,
            "expires_at": format_timestamp(expires * 1000),
        }


class RefreshResource(LoginResource):
    """``POST /refresh {"refresh_token"}`` -> a new signed token and the
    next refresh token (the one given is spent; given again, it revokes the
    login: 401)."""

    async def handle_POST(self, request: Request) -> dict[str, Any]:
        data = read_json_object(request)
        user, refresh_token, ttl = await self.service.refresh_login(data.get("refresh_token"))
        reply = self._token_reply(user)
        reply["expires_in"] = int(self.tokens.lifetime)
        reply["refresh_token"] = refresh_token
        reply["refresh_expires_in"] = ttl
        return reply


class LogoutResource(ApiResource):
    """``POST /logout`` with ``Authorization: Bearer <token>``: that token
    stops working on every instance; with ``{"everywhere": true}``, every
    token of the account issued until now (refresh tokens too), and its open
    connections close. ``{"refresh_token": ...}`` in the body revokes that
    long-lived login too, and may come alone (without a Bearer token: the
    signed token of a reopened tab may have expired)."""

    def __init__(self, service: IChatService, tokens: TokenAuthority) -> None:
        super().__init__(service)
        self.tokens = tokens

    async def handle_POST(self, request: Request) -> dict[str, Any]:
        token = bearer_token(request)
        data: dict[str, Any] = {}
        assert request.content is not None
        if request.content.read(1):
            request.content.seek(0)
            data = read_json_object(request)
        everywhere = data.get("everywhere", False)
        if not isinstance(everywhere, bool):
            raise InvalidRequest('"everywhere" must be true or false')
        refresh_token = data.get("refresh_token")
        if token is None and refresh_token is None:
            raise AuthenticationFailed("send the token to revoke as Authorization: Bearer")
        claims = self.tokens.verify(token) if token is not None else None
        reply: dict[str, Any] = {"logged_out": True}
        if refresh_token is not None:
            await self.service.revoke_refresh_token(refresh_token)
        if claims is not None:
            await self.service.logout(claims, everywhere)
            reply["everywhere"] = everywhere or claims.token_id is None
        else:
            reply["everywhere"] = False
        return reply


class PasswordResource(ApiResource):
    """``POST /password {"new_password"}`` with ``Authorization: Basic``
    (the current password): a new password for the account. Its tokens
    issued until now stop working; log in again for a new one."""

    def __init__(self, service: IChatService, portal: Portal) -> None:
        super().__init__(service)
        self.portal = portal

    async def handle_POST(self, request: Request) -> dict[str, Any]:
        user = await authenticate_basic(self.portal, request)
        data = read_json_object(request)
        await self.service.change_password(user.nickname, data.get("new_password"))
        return {"changed": True, "nickname": user.nickname}


class SocketRoot(ApiResource):
    """``/ws`` is the app endpoint, ``/ws/{room}`` the seed API's room socket.

    Credentials (Bearer, ``?token=``, Basic) and the origin are checked over
    HTTP, so refusals are ordinary 401/403/429 answers; ``/ws`` also accepts a
    connection without credentials that authenticates with its first frame.
    """

    def __init__(
        self,
        service: IChatService,
        portal: Portal,
        room_factory: RoomSocketFactory,
        app_factory: AppSocketFactory | None = None,
        allowed_origins: tuple[str, ...] = (),
    ) -> None:
        super().__init__(service)
        self.portal = portal
        self.room_socket = RoomSocketResource(
            service, portal, room_factory, app_factory.tokens if app_factory is not None else None
        )
        self.app_factory = app_factory
        self.allowed_origins = allowed_origins

    async def handle_GET(self, request: Request) -> Any:
        if not origin_allowed(request, self.allowed_origins):
            raise OriginForbidden()
        # /ws is the app endpoint; /ws/ (no room) is a room socket's 404.
        if request.postpath or self.app_factory is None:
            return await self.room_socket.handle_GET(request)
        claims = await self._identify(request)
        if claims is not None:
            self.service.check_connection(claims.nickname, client_host(request))
        if request.finished or getattr(request, "_disconnected", False):
            return NOT_DONE_YET
        return upgrade(request, self.app_factory.bound(claims))

    async def _identify(self, request: Request) -> TokenClaims | None:
        assert self.app_factory is not None
        token = bearer_token(request)
        if token is not None:
            claims = self.app_factory.tokens.verify(token)
            await self.service.admit_token(claims.nickname, claims.user_id)
            return claims
        if request.getHeader(b"authorization"):
            user = await authenticate_basic(self.portal, request)
            return TokenClaims(user.nickname, user.id, 0)
        return None


class AdminResource(Resource):
    """``/admin/...``: moderation over HTTP, behind ``Authorization: Bearer
    <admin token>``. Absent (404) unless an admin token is configured."""

    def __init__(self, service: IChatService, admin_token: str) -> None:
        super().__init__()
        for name, cls in (
            (b"rooms", AdminRooms),
            (b"users", AdminUsers),
            (b"bans", AdminBans),
            (b"ban", AdminBan),
            (b"unban", AdminUnban),
            (b"kick", AdminKick),
            (b"register", AdminRegister),
            (b"password", AdminPassword),
            (b"delete", AdminDelete),
            (b"messages", AdminMessages),
        ):
            self.putChild(name, cls(service, admin_token))


class AdminApi(ApiResource):
    def __init__(self, service: IChatService, admin_token: str) -> None:
        super().__init__(service)
        self._token = admin_token.encode("utf-8")

    def render(self, request: Request) -> Any:
        raw = request.getHeader(b"authorization") or b""
        scheme, _, value = raw.partition(b" ")
        if scheme.lower() != b"bearer" or not hmac.compare_digest(value.strip(), self._token):
            request.setHeader(b"WWW-Authenticate", b'Bearer realm="parkchat-admin"')
            _write_json(request, 401, _error_body("unauthorized", "admin token required"))
            return NOT_DONE_YET
        return super().render(request)


def _nickname_field(data: dict[str, Any]) -> str:
    nickname = data.get("nickname", data.get("username"))
    if not isinstance(nickname, str) or not nickname or not _encodable(nickname):
        raise InvalidRequest('"nickname" is required')
    return nickname


class AdminRooms(AdminApi):
    async def handle_GET(self, request: Request) -> dict[str, Any]:
        return {
            "rooms": [
                {"room": name, "connections": count}
                for name, count in self.service.room_sizes().items()
            ]
        }


class AdminUsers(AdminApi):
    async def handle_GET(self, request: Request) -> dict[str, Any]:
        limit = _query_int(request, "limit")
        limit = 100 if limit is None else limit
        after = _query_int(request, "after") or 0
        if not 1 <= limit <= 1000:
            raise InvalidRequest("limit must be between 1 and 1000")
        if not 0 <= after <= MAX_ID:
            raise InvalidRequest("after must be a user id")
        users = await self.service.list_accounts(limit, after)
        online = {u.id for u in self.service.online_users()}
        return {
            "users": [
                {"user_id": u.id, "nickname": u.nickname, "online": u.id in online} for u in users
            ]
        }


def _ban_dict(ban: Ban) -> dict[str, Any]:
    return {
        "user_id": ban.user_id,
        "nickname": ban.nickname,
        "reason": ban.reason,
        "since": format_timestamp(ban.created_ms),
        "until": None if ban.expires_ms is None else format_timestamp(ban.expires_ms),
    }


class AdminBans(AdminApi):
    async def handle_GET(self, request: Request) -> dict[str, Any]:
        return {"bans": [_ban_dict(b) for b in self.service.bans()]}


class AdminBan(AdminApi):
    async def handle_POST(self, request: Request) -> dict[str, Any]:
        data = read_json_object(request)
        reason = data.get("reason", "")
        duration = data.get("duration")
        if not isinstance(reason, str) or len(reason) > 500 or not _encodable(reason):
            raise InvalidRequest('"reason" must be a string of at most 500 characters')
        # JSON admits NaN and Infinity, and a huge number overflows the
        # timestamp: refuse them here rather than answer 500.
        if duration is not None and (
            isinstance(duration, bool)
            or not isinstance(duration, int | float)
            or not math.isfinite(duration)
            or not 0 < duration <= MAX_BAN_SECONDS
        ):
            raise InvalidRequest(
                '"duration" must be a positive number of seconds (at most 100 years)'
            )
        ban = await self.service.ban(_nickname_field(data), reason, duration)
        return _ban_dict(ban)


class AdminUnban(AdminApi):
    async def handle_POST(self, request: Request) -> dict[str, Any]:
        removed = await self.service.unban(_nickname_field(read_json_object(request)))
        return {"unbanned": removed}


class AdminKick(AdminApi):
    async def handle_POST(self, request: Request) -> dict[str, Any]:
        data = read_json_object(request)
        room = validate_room(data.get("room"))
        reason = data.get("reason", "")
        if not isinstance(reason, str):
            raise InvalidRequest('"reason" must be a string')
        # Only this instance's count is known here: the others apply the
        # kick from the bus and do not answer, so the reply says that they
        # were told ("forwarded") rather than pretend their count is 0.
        return {
            "kicked": self.service.kick(_nickname_field(data), room, reason),
            "forwarded": self.service.multi_instance(),
        }


class AdminDelete(AdminApi):
    """Remove a stored message: from the history, and from the screens of
    the room's members whose surface shows deletions."""

    async def handle_POST(self, request: Request) -> dict[str, Any]:
        message_id = read_json_object(request).get("id")
        room = await self.service.delete_message(message_id)
        if room is None:
            raise NotFound(f"no message {message_id}")
        return {"deleted": True, "room": room}


class AdminMessages(AdminApi):
    """``GET /admin/messages/{id}/edits``: the recorded edits of a room
    message, oldest first: the text each edit replaced, who edited and when
    (kept after the message is deleted). An empty list for a message never
    edited (or an id never used)."""

    #: Its one path (tests/test_openapi.py checks it against the spec).
    path_template = "/admin/messages/{id}/edits"

    async def handle_GET(self, request: Request) -> dict[str, Any]:
        postpath = request.postpath or []
        if len(postpath) != 2 or postpath[1] != b"edits":
            raise NotFound("use /admin/messages/{id}/edits")
        try:
            message_id = int(postpath[0])
        except ValueError:
            raise NotFound("message ids are numbers") from None
        edits = await self.service.message_edits(message_id)
        return {"id": message_id, "edits": [edit_dict(edit) for edit in edits]}


class AdminPassword(AdminApi):
    """Set an account's password (a user who forgot theirs); its tokens stop
    working, and with ``--revoke-on-password-change`` its open connections
    close on every instance."""

    async def handle_POST(self, request: Request) -> dict[str, Any]:
        data = read_json_object(request)
        nickname = _nickname_field(data)
        if not await self.service.account_exists(nickname):
            raise UnknownRecipient(f"no account {nickname!r}")
        try:
            await self.service.change_password(nickname, data.get("password"))
        except AuthenticationFailed:
            # account_exists is also true for a name that only looks like an
            # account's (guests may not take it); there is no such account.
            raise UnknownRecipient(f"no account {nickname!r}") from None
        return {"changed": True}


class AdminRegister(AdminApi):
    async def handle_POST(self, request: Request) -> Response:
        data = read_json_object(request)
        user = await self.service.register(_nickname_field(data), data.get("password"))
        return Response({"id": user.id, "nickname": user.nickname}, status=201)
