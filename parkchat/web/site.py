"""The HTTP site: REST resources and WebSockets on one port."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Mapping
from typing import IO, Any

from twisted.cred.portal import Portal
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import IAddress, IDelayedCall, IReactorTime
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger, formatTime
from twisted.python.failure import Failure
from twisted.python.logfile import LogFile
from twisted.web.http import HTTPChannel, combinedLogFormatter
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from parkchat.interfaces import IChatService
from parkchat.limits import Limits
from parkchat.metrics import ServiceMetrics
from parkchat.protocols.mychat import MyChatFactory
from parkchat.protocols.unified import AppSocketFactory
from parkchat.protocols.websocket import RoomSocketFactory
from parkchat.proxies import TrustedProxies
from parkchat.tokens import TokenAuthority
from parkchat.web.dialects import is_upgrade
from parkchat.web.metrics import MetricsResource, metrics_root
from parkchat.web.page import SiteRoot
from parkchat.web.resources import (
    AdminResource,
    HealthResource,
    HistoryResource,
    LoginResource,
    LogoutResource,
    PasswordResource,
    RefreshResource,
    RegisterResource,
    SearchResource,
    SocketRoot,
    origin_allowed,
    upgrade,
)

#: Seconds an HTTP connection may sit idle (or half-sent) before it is closed.
HTTP_IDLE_TIMEOUT = 60
#: Seconds a client has, in total, to send a whole request head.
HTTP_HEAD_TIMEOUT = 10.0

#: The answer to a request head that did not arrive in time.
REQUEST_TIMEOUT = (
    b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\nContent-Length: 32\r\n\r\n"
    b"request head not sent in time\r\n\r\n"
)

_log = Logger()

#: ``--access-log-file`` rotates past this size, keeping this many old files.
ACCESS_LOG_ROTATE_BYTES = 64 * 1024 * 1024
ACCESS_LOG_KEEP = 8

#: How long access-log lines for the server log may wait to be written (seconds).
SERVER_LOG_FLUSH_SECONDS = 0.1
#: ... and how many may wait.
SERVER_LOG_MAX_LINES = 1000

#: Query parameters whose values never reach the access log.
_SECRET_PARAMETER = re.compile(rb"([?&](?:access_)?token=)[^&#]*", re.IGNORECASE)
REDACTED = b"REDACTED"


def redact_uri(uri: bytes) -> bytes:
    """``uri`` with the value of any ``token`` query parameter replaced."""
    return _SECRET_PARAMETER.sub(rb"\1" + REDACTED, uri)


class _RedactedRequest:
    """What the access-log formatter sees of a request: the same, except
    for a token in the URI or the Referer."""

    def __init__(self, request: Request) -> None:
        self._request = request
        self.uri = redact_uri(request.uri)

    def getHeader(self, name: bytes) -> bytes | None:
        value = self._request.getHeader(name)
        if value is not None and name.lower() == b"referer":
            return redact_uri(value)
        return value

    def __getattr__(self, name: str) -> Any:
        return getattr(self._request, name)


def access_log_line(timestamp: str, request: Request) -> str:
    """The combined log format with login tokens redacted (``?token=`` on
    WebSocket URLs would otherwise land in every access log line)."""
    line: str = combinedLogFormatter(timestamp, _RedactedRequest(request))
    return line


class AccessLogFile:
    """The file behind ``--access-log-file``: lines are collected and
    written once per reactor turn, and the file rotates by size with a
    bounded number of old files.

    twisted.web's own choice (``twisted.python.logfile.LogFile`` with its
    defaults) makes a ``write`` system call per request, rotates every
    1 MB (every few seconds under load) and keeps every old file forever.
    """

    def __init__(
        self,
        path: str,
        reactor: IReactorTime,
        rotate_length: int = ACCESS_LOG_ROTATE_BYTES,
        max_rotated_files: int = ACCESS_LOG_KEEP,
    ) -> None:
        self._file = LogFile(
            os.path.basename(path),
            os.path.dirname(os.path.abspath(path)),
            rotateLength=rotate_length,
            maxRotatedFiles=max_rotated_files,
        )
        self._reactor = reactor
        self._lines: list[str] = []
        self._call: IDelayedCall | None = None

    def write(self, line: str) -> None:
        self._lines.append(line)
        if self._call is None:
            self._call = self._reactor.callLater(0, self.flush)

    def flush(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        if self._lines:
            data, self._lines = "".join(self._lines), []
            self._file.write(data)

    def close(self) -> None:
        self.flush()
        self._file.close()


class ServerLogLines:
    """The access log's default target when twistd writes the server log as
    text to standard output (``twistd -n``, no ``--logfile``/``--logger``/
    ``--syslog``): each line exactly as twistd's log observer would write it,
    but collected and written to the same stream once every
    ``SERVER_LOG_FLUSH_SECONDS`` (or ``SERVER_LOG_MAX_LINES`` lines), and
    when the site stops.

    twisted.web's default target, ``twisted.python.log.logfile``, makes each
    line a log event (namespace ``twisted.python.log``, level info) that
    twistd's observer formats (``formatEvent``, and ``formatTime``: a time-zone
    computation and ``strftime`` per line) and writes with a ``flush``, one
    ``write`` system call per request: about a third of a cached history
    request. Here a line costs one f-string: the timestamp is formatted once a
    second (twistd's format has whole seconds). Lines may come out up to a
    flush later than other log lines logged meanwhile; their timestamps say
    when they happened.
    """

    #: What twistd shows in brackets for an event of ``log.logfile``.
    SYSTEM = "twisted.python.log#info"

    def __init__(
        self,
        out: IO[str],
        reactor: IReactorTime,
        clock: Any = time.time,
        flush_seconds: float = SERVER_LOG_FLUSH_SECONDS,
        max_lines: int = SERVER_LOG_MAX_LINES,
    ) -> None:
        self._out = out
        self._reactor = reactor
        self._clock = clock
        self._flush_seconds = flush_seconds
        self._max_lines = max_lines
        self._lines: list[str] = []
        self._call: IDelayedCall | None = None
        self._second: int | None = None
        self._stamp = ""

    def write(self, data: str) -> None:
        """``data``: what twisted.web writes, one or more lines ending in a newline."""
        now = self._clock()
        second = int(now)
        if second != self._second:
            self._second = second
            self._stamp = formatTime(now)
        for line in data.split("\n")[:-1]:
            self._lines.append(f"{self._stamp} [{self.SYSTEM}] {line}\n")
        if len(self._lines) >= self._max_lines:
            self.flush()
        elif self._call is None:
            self._call = self._reactor.callLater(self._flush_seconds, self.flush)

    def flush(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        if self._lines:
            data, self._lines = "".join(self._lines), []
            self._out.write(data)
            self._out.flush()

    def close(self) -> None:
        """Write what is waiting (the stream is twistd's: it stays open)."""
        self.flush()


class ParkchatRequest(Request):
    """A request whose client address is the one a trusted reverse proxy
    names in X-Forwarded-For (``parkchat.proxies``), when the site has
    trusted proxies and the socket's peer is one of them. Everything that
    asks ``getClientAddress`` -- per-address limits, login throttling, the
    access log -- then sees the client, not the proxy."""

    _client_address: IAddress | None = None

    def getClientAddress(self) -> IAddress:
        if self._client_address is None:
            self._client_address = self._resolve(super().getClientAddress())
        return self._client_address

    def _resolve(self, peer: IAddress) -> IAddress:
        trusted: TrustedProxies | None = getattr(
            getattr(self.channel, "site", None), "trusted_proxies", None
        )
        if not trusted or not isinstance(peer, IPv4Address | IPv6Address):
            return peer
        forwarded = self.requestHeaders.getRawHeaders(b"x-forwarded-for")
        joined = b",".join(forwarded).decode("latin-1") if forwarded else None
        client = trusted.client(peer.host, joined)
        if client == peer.host:
            return peer
        kind = IPv6Address if ":" in client else IPv4Address
        return kind("TCP", client, 0)


class ParkchatChannel(HTTPChannel):
    """twisted.web's HTTP/1.1 channel with a total deadline for each request
    head.

    The site's ``timeout`` is an idle timeout: every byte resets it, so a
    client trickling a request line or a WebSocket upgrade one byte every
    few seconds would hold its connection (and a slot of the per-address
    limit) for ever. Here the head -- request line and headers, WebSocket
    upgrades included, which are HTTP requests until they are answered --
    must be complete within ``head_timeout`` seconds of the connection's
    start (for a later request on a kept-alive connection: of its first
    byte), or the client gets a 408 and the connection closes. Bodies and
    the time between requests stay under the idle timeout.
    """

    head_timeout: float = HTTP_HEAD_TIMEOUT
    _head_call: IDelayedCall | None = None
    _waiting_for_head = True

    def connectionMade(self) -> None:
        super().connectionMade()
        self._arm_head_deadline()

    def dataReceived(self, data: bytes) -> None:
        if self._waiting_for_head and self._head_call is None:
            self._arm_head_deadline()
        super().dataReceived(data)

    def allHeadersReceived(self) -> None:
        self._waiting_for_head = False
        self._cancel_head_deadline()
        super().allHeadersReceived()

    def requestDone(self, request: Any) -> None:
        super().requestDone(request)
        # The next request's deadline starts with its first byte.
        self._waiting_for_head = True

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._cancel_head_deadline()
        super().connectionLost(reason)

    def _arm_head_deadline(self) -> None:
        if self.head_timeout > 0:
            self._head_call = self.callLater(self.head_timeout, self._head_too_slow)

    def _cancel_head_deadline(self) -> None:
        call, self._head_call = self._head_call, None
        if call is not None and call.active():
            call.cancel()

    def _head_too_slow(self) -> None:
        self._head_call = None
        if not self._waiting_for_head or self.transport is None:
            return
        _log.info(
            "closing {peer}: no complete request head within {seconds:g} s",
            peer=str(self.transport.getPeer()),
            seconds=self.head_timeout,
        )
        self.transport.write(REQUEST_TIMEOUT)
        self.transport.loseConnection()


class ParkchatSite(Site):
    """twisted.web's Site with parkchat's access-log file (AccessLogFile),
    client addresses from trusted proxies (ParkchatRequest) and a total
    deadline for request heads (ParkchatChannel)."""

    requestFactory = ParkchatRequest
    trusted_proxies: TrustedProxies = TrustedProxies()
    #: The stream twistd writes the server log to as text, if it is one
    #: (``parkchat.tap.server_log_stream``): the access log, when it goes
    #: to the server log, is written there by ``ServerLogLines``.
    server_log: IO[str] | None = None

    head_timeout: float = HTTP_HEAD_TIMEOUT

    # A plain HTTP/1.1 channel (twisted.web's default wraps it to offer
    # HTTP/2 when the h2 package is installed; parkchat does not use it).
    protocol = ParkchatChannel  # type: ignore[assignment]

    def buildProtocol(self, addr: IAddress | None) -> Any:
        channel = super().buildProtocol(addr)
        channel.head_timeout = self.head_timeout
        return channel

    def _openLogFile(self, path: str) -> AccessLogFile:  # type: ignore[override]
        return AccessLogFile(path, self.reactor)

    def startFactory(self) -> None:
        super().startFactory()
        if not self.logPath and self.server_log is not None:
            self._logFile = ServerLogLines(self.server_log, self.reactor)


def make_site(
    service: IChatService,
    ws_factory: RoomSocketFactory,
    mychat_factory: MyChatFactory | None = None,
    *,
    portal: Portal,
    history_default: int = Limits.history_default,
    app_factory: AppSocketFactory | None = None,
    tokens: TokenAuthority | None = None,
    allowed_origins: tuple[str, ...] = (),
    admin_token: str | None = None,
    access_log: bool = True,
    access_log_file: str | None = None,
    server_log: IO[str] | None = None,
    http_timeout: float = HTTP_IDLE_TIMEOUT,
    head_timeout: float = HTTP_HEAD_TIMEOUT,
    metrics: ServiceMetrics | None = None,
    metrics_token: str | None = None,
    trusted_proxies: TrustedProxies | None = None,
    garinchat: Resource | None = None,
    golang_chat: Mapping[bytes, Resource] | None = None,
) -> Site:
    """The resource tree: the browser client at /, the seed API (Basic
    credentials checked through ``portal``), /ws for apps, /login, /mychat,
    with an admin token /admin and with ``metrics`` /metrics (behind
    ``metrics_token`` if given); the dialects where their paths are free
    (``garinchat``: a WebSocket upgrade of /; ``golang_chat``: its paths)."""
    # "/" and every path not below is the browser client's files
    root = ParkchatRoot(garinchat)
    for name, child in (golang_chat or {}).items():
        root.putChild(name, child)
    root.putChild(b"register", RegisterResource(service))
    root.putChild(b"password", PasswordResource(service, portal))
    root.putChild(b"history", HistoryResource(service, portal, history_default))
    root.putChild(b"health", HealthResource(service))
    root.putChild(
        b"search",
        SearchResource(service, portal, app_factory.tokens if app_factory is not None else None),
    )
    root.putChild(b"ws", SocketRoot(service, portal, ws_factory, app_factory, allowed_origins))
    if tokens is not None:
        root.putChild(b"login", LoginResource(service, tokens))
        root.putChild(b"logout", LogoutResource(service, tokens))
        root.putChild(b"refresh", RefreshResource(service, tokens))
    if mychat_factory is not None:
        root.putChild(b"mychat", OriginGuard(mychat_factory, allowed_origins))
    if admin_token:
        root.putChild(b"admin", AdminResource(service, admin_token))
    if metrics is not None:
        root.putChild(b"metrics", MetricsResource(metrics, metrics_token))
    # With a file, lines go to it in one write per reactor turn; without,
    # they go to the server log: through ``ServerLogLines`` when that is
    # twistd's text on standard output (``server_log``), else through the
    # server's log observers (formatting, timestamps: a fifth to a third of
    # a cached history request).
    site = ParkchatSite(
        root, logPath=access_log_file, timeout=http_timeout, logFormatter=access_log_line
    )
    site.server_log = server_log
    site.head_timeout = head_timeout
    site.displayTracebacks = False
    if trusted_proxies is not None:
        site.trusted_proxies = trusted_proxies
    if not access_log:
        site.log = lambda request: None  # type: ignore[method-assign]
    return site


class ParkchatRoot(SiteRoot):
    """The page's root, except that a WebSocket upgrade of ``/`` itself
    speaks GarinChat (its clients open ``new WebSocket("wss://host")``); a
    plain ``GET /`` still serves the page."""

    def __init__(self, garinchat: Resource | None = None) -> None:
        super().__init__()
        self._garinchat = garinchat

    def getChild(self, path: bytes, request: Request) -> Any:
        if path == b"" and self._garinchat is not None and is_upgrade(request):
            return self._garinchat
        return super().getChild(path, request)


def make_dialect_site(
    root: Resource,
    *,
    access_log: bool = True,
    server_log: IO[str] | None = None,
    http_timeout: float = HTTP_IDLE_TIMEOUT,
    head_timeout: float = HTTP_HEAD_TIMEOUT,
    trusted_proxies: TrustedProxies | None = None,
) -> Site:
    """The site of a dialect's own listener (``--garinchat``,
    ``--golang-chat``, ``--lildengzi``): only that dialect's paths. Its access
    log goes to the server log (``--access-log-file`` belongs to the main
    site, and one file must have one writer)."""
    site = ParkchatSite(root, timeout=http_timeout, logFormatter=access_log_line)
    site.server_log = server_log
    site.head_timeout = head_timeout
    site.displayTracebacks = False
    if trusted_proxies is not None:
        site.trusted_proxies = trusted_proxies
    if not access_log:
        site.log = lambda request: None  # type: ignore[method-assign]
    return site


def make_metrics_site(
    metrics: ServiceMetrics, token: str | None = None, head_timeout: float = HTTP_HEAD_TIMEOUT
) -> Site:
    """A site serving only /metrics, for a separate metrics listener."""
    site = ParkchatSite(metrics_root(metrics, token), timeout=HTTP_IDLE_TIMEOUT)
    site.head_timeout = head_timeout
    site.displayTracebacks = False
    site.log = lambda request: None  # type: ignore[method-assign]  # scrapes would flood the log
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
