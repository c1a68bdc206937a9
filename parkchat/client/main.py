"""``parkchat-client``: wiring the client to the reactor, stdio and the net.

Usage (see docs/client.md)::

    parkchat-client -client Mina -room dev                      # MaChat style, TCP
    parkchat-client --name mina --room dev --address host:8989  # the same
    parkchat-client -client Mina -room dev -address ws://host:8080/mychat  # in WebSocket
    PARKCHAT_PASSWORD=... parkchat-client --name alice --url ws://host:8080/ws/dev

Exit status: 0 after end of input, ``/quit`` or Ctrl-C; 1 when the server
refuses us (wrong password, bad name) or typed messages could not be sent;
2 for a bad command line. Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import json
import os
import random
import sys
from base64 import b64encode
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.ssl import optionsForClientTLS
from twisted.internet.stdio import StandardIO
from twisted.internet.task import react
from twisted.logger import (
    FilteringLogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogBeginner,
    textFileLogObserver,
)
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure
from zope.interface import implementer

from parkchat.client.options import ClientConfig, UsageError, parse_args
from parkchat.client.render import clean
from parkchat.client.session import (
    AuthFailed,
    ChatClient,
    ClientFailed,
    HistoryError,
    LineClientFactory,
    MyChatClientFactory,
    NotingEndpoint,
    RoomClientFactory,
)

PROG = "parkchat-client"


def make_backoff(
    initial: float = 1.0,
    maximum: float = 30.0,
    factor: float = 2.0,
    rng: random.Random | None = None,
) -> Any:
    """Exponential backoff for reconnects: ``initial * factor**n`` seconds,
    capped at ``maximum``, plus up to one second of jitter so that clients
    dropped together by a restart do not come back in lockstep."""
    source = rng if rng is not None else random.Random()
    return backoffPolicy(
        initialDelay=initial, maxDelay=maximum, factor=factor, jitter=source.random
    )


def basic_authorization(name: str, password: str) -> str:
    """The ``Authorization`` header value for HTTP Basic."""
    return "Basic " + b64encode(f"{name}:{password}".encode()).decode("ascii")


class HistoryClient:
    """``GET /history/{room}`` with Basic auth, through a treq client."""

    def __init__(self, http: Any, base_url: str, room: str, name: str, password: str) -> None:
        self._http = http
        self._url = f"{base_url}/history/{quote(room, safe='')}"
        self._auth = basic_authorization(name, password)

    def fetch(self, *, limit: int) -> Deferred[tuple[list[dict[str, Any]], int | None]]:
        """The newest ``limit`` messages, oldest first, and the room position
        (seq) of the newest (the ``Parkchat-Seq`` header; 0 if there are no
        messages, None if a server too old to send it sent messages)."""
        return Deferred.fromCoroutine(self._fetch(limit))

    async def _fetch(self, limit: int) -> tuple[list[dict[str, Any]], int | None]:
        params = {"limit": str(limit)}
        response = await self._http.get(
            self._url, params=params, headers={"Authorization": self._auth}
        )
        body = await response.content()
        if response.code == 401:
            raise AuthFailed("authentication failed (HTTP 401): check the name and password")
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        if response.code != 200:
            message = data.get("message") if isinstance(data, dict) else None
            raise HistoryError(f"HTTP {response.code}" + (f": {message}" if message else ""))
        if not isinstance(data, list):
            raise HistoryError("the server did not answer with a list of messages")
        messages = [m for m in data if isinstance(m, dict)]
        header = response.headers.getRawHeaders("parkchat-seq", [""])[0]
        if header.isdigit():
            return messages, int(header)
        return messages, None if messages else 0


@implementer(IHalfCloseableProtocol)
class StdioConsole(LineReceiver):
    """The terminal: stdin lines go to the client, output to stdout.

    Half-closeable so that end of input (a pipe running dry, Ctrl-D) does not
    also close stdout while we are still printing the last echoes.
    """

    delimiter = b"\n"
    MAX_LENGTH = 65536

    def __init__(self) -> None:
        self.client: ChatClient | None = None
        self._closed: list[Deferred[None]] = []
        self._gone = False

    def lineReceived(self, line: bytes) -> None:
        if self.client is not None:
            self.client.user_line(line.decode("utf-8", "replace").removesuffix("\r"))

    def lineLengthExceeded(self, line: bytes) -> None:
        self.show(f"--- line longer than {self.MAX_LENGTH} bytes not sent")

    def readConnectionLost(self) -> None:
        if self.client is not None:
            self.client.quit()

    def writeConnectionLost(self) -> None:
        """stdout went away (``| head``): nothing more to show, so leave."""
        self._gone = True
        if self.client is not None:
            self.client.quit()

    def connectionLost(self, reason: Failure | None = None) -> None:
        self._gone = True
        waiters, self._closed = self._closed, []
        for d in waiters:
            d.callback(None)
        if self.client is not None:
            self.client.quit()

    def show(self, text: str) -> None:
        if self.transport is not None and not self._gone:
            self.transport.write(text.encode("utf-8", "replace") + b"\n")

    def close(self) -> Deferred[None]:
        if self._gone or self.transport is None:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._closed.append(d)
        self.transport.loseConnection()
        return d


def _endpoint(reactor: Any, config: ClientConfig) -> Any:
    endpoint = HostnameEndpoint(reactor, config.host, config.port)
    if config.tls:
        return wrapClientTLS(optionsForClientTLS(config.host), endpoint)
    return endpoint


def _http_client(reactor: Any) -> Any:
    # treq is imported here so that the TCP mode works without it.
    from treq.client import HTTPClient
    from twisted.web.client import Agent, HTTPConnectionPool

    return HTTPClient(Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False)))


async def show_recent(client: ChatClient, history: HistoryClient, count: int) -> None:
    """Show the last ``count`` messages before joining; this first request
    also checks the credentials, so a wrong password is reported at once
    instead of being retried forever as a refused WebSocket upgrade."""
    try:
        recent, seq = await history.fetch(limit=max(count, 1))
    except AuthFailed as e:
        raise AuthFailed(f"{client.nickname}: {e}") from None
    except HistoryError as e:
        client.note(f"history unavailable: {e}")
        return
    except Exception as e:
        client.note(f"history unavailable: {e}")
        return
    # The WebSocket resumes after the newest message of this answer.
    client.timeline.last_seq = seq
    shown = recent[-count:] if count else []
    if shown:
        client.note(f"last {len(shown)} messages in {client.room}:")
    for frame in shown:
        client.show_frame(frame)


async def start_client(
    reactor: Any,
    client: ChatClient,
    *,
    http: Any = None,
    backoff: Any = None,
    endpoint: Any = None,
) -> None:
    """Show recent history (WebSocket) and start connecting; the client's
    ``done`` fires with the exit status (or fails with ClientFailed)."""
    config = client.config
    if config.mode == "ws":
        assert config.password is not None
        history = HistoryClient(
            http if http is not None else _http_client(reactor),
            config.http_url,
            config.room,
            config.name,
            config.password,
        )
        await show_recent(client, history, config.history)
        factory: Any = RoomClientFactory(
            client,
            config.ws_url,
            authorization=basic_authorization(config.name, config.password),
            origin=config.origin,
        )
    elif config.mode == "mychat":
        factory = MyChatClientFactory(client, config.ws_url, origin=config.origin)
    else:
        factory = LineClientFactory(client)
    service = ClientService(
        NotingEndpoint(endpoint if endpoint is not None else _endpoint(reactor, config), client),
        factory,
        retryPolicy=client.retry_policy(backoff if backoff is not None else make_backoff()),
        clock=reactor,
    )
    client.service = service
    service.startService()


def _start_logging(debug: bool) -> None:
    """With ``--debug``, connection events go to stderr (info and up only:
    Autobahn's debug events include the handshake headers, and with them the
    Authorization header)."""
    if debug:
        observer = FilteringLogObserver(
            textFileLogObserver(sys.stderr),
            [LogLevelFilterPredicate(defaultLogLevel=LogLevel.info)],
        )
        globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)


def fail(message: str, status: int) -> SystemExit:
    sys.stderr.write(f"{PROG}: error: {clean(message)}\n")
    sys.stderr.flush()
    return SystemExit(status)


async def run(reactor: Any, config: ClientConfig) -> None:
    """The body of ``main`` under ``react``: returns (or raises SystemExit)
    once the client is done."""
    _start_logging(config.debug)
    console = StdioConsole()
    client = ChatClient(config, console, reactor)
    # Attach before stdin is read: lines (and end of input) may arrive while
    # history is still being fetched; they wait in the client's outbox.
    console.client = client
    StandardIO(console, reactor=reactor)
    try:
        await start_client(reactor, client)
    except ClientFailed as e:
        await console.close()
        raise fail(str(e), 1) from None
    reactor.addSystemEventTrigger("before", "shutdown", client.shutdown)
    try:
        status = await client.done
    except ClientFailed as e:
        raise fail(str(e), 1) from None
    if status:
        raise SystemExit(status)


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point."""
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        config = parse_args(args, os.environ)
    except UsageError as e:
        raise fail(f"{e} (see {PROG} --help)", 2) from None
    react(run, (config,))


if __name__ == "__main__":
    main()
