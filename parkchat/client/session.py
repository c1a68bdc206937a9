"""The client's state machine and its two transport protocols.

``ChatClient`` knows nothing about wires: it queues what the user types,
sends it once a connection has joined the room, counts the server's echoes of
our own messages (so that ``printf 'hi\\n' | parkchat-client ...`` waits for
"hi" to be stored before leaving), and decides when and how to finish.

``LineClientProtocol`` speaks the plain-TCP line protocol and
``RoomClientProtocol`` the room WebSocket. The line protocol tells the
client it has "joined" only after it has shown what was missed (history on
the first join, catch-up after a reconnect), so typed messages always
appear after the history they answer. The WebSocket resumes by room
position (``?since=``): the server sends what was missed before anything
else and keeps what is typed meanwhile until it has.

``ClientService`` does the reconnecting. Its ``prepareConnection`` hook
would be the natural place to wait for the join, but Twisted 26.10's
ClientService raises ``NoTransition`` when a connection is lost while that
hook is pending (a refused handshake), so a connection counts as made once
TCP is up and a server that keeps refusing us is retried at the policy's
first-attempt delay rather than an ever longer one.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ConnectionLost
from twisted.internet.interfaces import IDelayedCall, IReactorTime, IStreamClientEndpoint
from twisted.internet.protocol import Factory
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.protocols.basic import LineOnlyReceiver
from twisted.python.failure import Failure
from zope.interface import implementer

from parkchat.client.catchup import Timeline, missed_lines
from parkchat.client.options import ClientConfig
from parkchat.client.render import (
    NOTICE,
    clean,
    clock_time,
    render_line,
    render_message,
    same_name,
    split_line,
)

_log = Logger()

_CLEAN_CLOSE = Failure(ConnectionLost())

#: ``/history`` size asked for after a line-protocol reconnect.
LINE_CATCH_UP = 100


class ClientFailed(Exception):
    """Something the user must fix (credentials, name, room): no retrying.
    The message is one line, safe to print."""


class AuthFailed(ClientFailed):
    """The server refused our name and password."""


class HistoryError(Exception):
    """``/history`` answered something other than a list of messages."""


class Console(Protocol):
    """Where the client's output goes: the terminal, or a list in tests."""

    def show(self, text: str) -> None:
        """Write one (already safe) line of output."""

    def close(self) -> Deferred[None]:
        """Flush and close the output; fires when done."""


class Link(Protocol):
    """A connection to the server, whatever carries it."""

    def send_text(self, text: str) -> None:
        """Send one message (or line-protocol command) as typed."""

    def close_politely(self) -> None:
        """Say goodbye the way the protocol expects, then close."""

    def when_lost(self) -> Deferred[None]:
        """A Deferred that fires when the connection is gone."""


def bounded(d: Deferred[Any], timeout: float, clock: IReactorTime) -> Deferred[None]:
    """A Deferred that fires when ``d`` does or after ``timeout`` seconds,
    whichever is first, without cancelling ``d`` (others may wait on it)."""
    out: Deferred[None] = Deferred()

    def fire(result: object = None) -> object:
        if call.active():
            call.cancel()
        if not out.called:
            out.callback(None)
        return result

    call = clock.callLater(timeout, fire)
    d.addBoth(fire)
    return out


class ChatClient:
    """What the user sees and types, independent of the transport."""

    def __init__(
        self,
        config: ClientConfig,
        console: Console,
        clock: IReactorTime,
        *,
        drain_timeout: float = 5.0,
        close_timeout: float = 3.0,
    ) -> None:
        self.config = config
        self.nickname = config.name
        self.room = config.room
        self.console = console
        self.clock = clock
        self.done: Deferred[int] = Deferred()
        #: The connection currently open (joined or not), and the joined one.
        self.current: Link | None = None
        self.link: Link | None = None
        self.joins = 0
        self.outbox: deque[str] = deque()
        self.pending_echoes = 0
        self.quitting = False
        self.closing = False
        #: Raw ``name:text`` lines shown lately (line-protocol catch-up).
        self.seen_lines: deque[str] = deque(maxlen=LINE_CATCH_UP)
        self.timeline = Timeline()
        self.service: Any = None  # a ClientService, set by main.start_client
        self._drain_timeout = drain_timeout
        self._close_timeout = close_timeout
        self._drain_call: IDelayedCall | None = None
        self._closed: Deferred[None] | None = None

    # -- output ------------------------------------------------------------

    def show(self, text: str) -> None:
        self.console.show(text)

    def note(self, text: str) -> None:
        """A line from the client itself (``---``), told apart from the
        server's ``***`` notices."""
        self.console.show(f"[{clock_time(self.clock.seconds())}] --- {clean(text)}")

    def show_line(self, line: str) -> None:
        """Show a line-protocol line and remember chat lines for catch-up."""
        if split_line(line)[0] is not None:
            self.seen_lines.append(line)
        self.show(render_line(line, self.clock.seconds()))

    def show_frame(self, frame: Mapping[str, Any]) -> None:
        self.show(render_message(frame, self.clock.seconds()))

    # -- input -------------------------------------------------------------

    def user_line(self, text: str) -> None:
        """A line typed by the user: a message, ``/quit``, or (line protocol)
        a server command such as ``/who``."""
        if self.quitting or self.closing:
            return
        if not text.strip():
            return
        if text.strip().lower() in ("/quit", "/exit"):
            self.quit()
            return
        self.outbox.append(text)
        self._flush()

    def _expects_echo(self, text: str) -> bool:
        if self.config.mode == "tcp":
            return not text.startswith("/") or text.startswith("//")
        return True

    def _flush(self) -> None:
        while self.link is not None and self.outbox:
            text = self.outbox.popleft()
            self.link.send_text(text)
            if self._expects_echo(text):
                self.pending_echoes += 1
        self._check_drained()

    # -- events from links ---------------------------------------------------

    def connected(self, link: Link) -> None:
        self.current = link

    def joined(self, link: Link) -> None:
        """The link is in the room and has shown what was missed."""
        self.link = link
        self.joins += 1
        # Echoes of messages sent on an earlier connection will not come.
        self.pending_echoes = 0
        self._flush()

    def echo(self) -> None:
        """The server echoed (or refused) one of our messages."""
        if self.pending_echoes:
            self.pending_echoes -= 1
            self._check_drained()

    def link_lost(self, link: Link, why: str) -> None:
        if self.current is link:
            self.current = None
        if self.link is link:
            self.link = None
            if not self.closing:
                self.note(f"disconnected ({why}); reconnecting")

    def moved_to(self, room: str) -> None:
        """``/join`` worked: reconnect to the new room from now on."""
        self.room = room
        self.seen_lines.clear()

    def fatal(self, message: str) -> None:
        """Give up: report ``message`` and exit with status 1."""
        if not self.closing:
            self._close(ClientFailed(clean(message)))

    def retry_policy(self, base: Callable[[int], float]) -> Callable[[int], float]:
        """``base`` (a backoff policy), telling the user about each wait."""

        def policy(attempt: int) -> float:
            delay = base(attempt)
            if not self.closing:
                self.note(f"reconnecting in {delay:.1f}s (attempt {attempt})")
            return delay

        return policy

    def connect_failed(self, failure: Failure) -> None:
        """The endpoint could not connect (refused, unreachable, no DNS)."""
        if not self.closing:
            self.note(f"cannot connect: {failure.getErrorMessage()}")

    # -- finishing -----------------------------------------------------------

    def quit(self) -> None:
        """End of input or ``/quit``: leave once what was typed is sent and
        echoed, or after ``drain_timeout`` seconds."""
        if self.quitting or self.closing:
            return
        self.quitting = True
        if self.outbox or self.pending_echoes:
            self._drain_call = self.clock.callLater(self._drain_timeout, self._drain_expired)
        self._check_drained()

    def _check_drained(self) -> None:
        if self.quitting and not self.closing and not self.outbox and not self.pending_echoes:
            self._close(0)

    def _drain_expired(self) -> None:
        self._drain_call = None
        if self.closing:
            return
        if self.outbox:
            count = len(self.outbox)
            self._close(ClientFailed(f"{count} message(s) not sent: not connected to the server"))
        else:
            self._close(0)

    def shutdown(self) -> Deferred[None]:
        """The reactor is stopping (Ctrl-C): close politely, right now."""
        if not self.closing:
            self._close(0)
        assert self._closed is not None
        return self._closed

    def _close(self, outcome: int | ClientFailed) -> None:
        self.closing = True
        self._closed = Deferred.fromCoroutine(self._close_steps(outcome))

    async def _close_steps(self, outcome: int | ClientFailed) -> None:
        if self._drain_call is not None and self._drain_call.active():
            self._drain_call.cancel()
        # Step out of whatever protocol callback got us here: ClientService
        # must see a connection's loss before it is asked to stop.
        await deferLater(self.clock, 0)
        link = self.current
        if link is not None:
            lost = link.when_lost()
            link.close_politely()
            await bounded(lost, self._close_timeout, self.clock)
            await deferLater(self.clock, 0)
        if self.service is not None:
            await bounded(self.service.stopService(), self._close_timeout, self.clock)
        await bounded(self.console.close(), self._close_timeout, self.clock)
        if isinstance(outcome, ClientFailed):
            self.done.errback(outcome)
        else:
            self.done.callback(outcome)


class _LinkBase:
    """Bookkeeping shared by both protocols: who waits for the loss."""

    def _init_link(self) -> None:
        self._lost_waiters: list[Deferred[None]] = []
        self.gone = False

    def when_lost(self) -> Deferred[None]:
        if self.gone:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._lost_waiters.append(d)
        return d

    def _fire_lost(self) -> None:
        self.gone = True
        waiters, self._lost_waiters = self._lost_waiters, []
        for d in waiters:
            d.callback(None)


# -- plain TCP -----------------------------------------------------------------


class LineClientProtocol(LineOnlyReceiver, _LinkBase):
    """The line protocol: JSON handshake, then ``name:text`` lines.

    States: ``handshake`` (until the server's first line that is not an
    error), ``history`` (waiting for the reply to ``/history``), ``joined``.
    """

    delimiter = b"\n"
    MAX_LENGTH = 1 << 20
    #: Seconds without a line that end a ``/history`` reply (it has no
    #: terminator), and the wait for the reply's header at all.
    QUIET = 0.3
    HISTORY_WAIT = 5.0

    def __init__(self, client: ChatClient) -> None:
        self.client = client
        self.state = "handshake"
        self.refusal: str | None = None
        self._block: list[str] | None = None
        self._held: list[str] = []
        self._timer: IDelayedCall | None = None
        self._init_link()

    def connectionMade(self) -> None:
        config = self.client.config
        handshake: dict[str, Any] = {
            "name": self.client.nickname,
            "room": self.client.room,
            "notices": True,
        }
        if config.password is not None:
            handshake["password"] = config.password
        self.sendLine(json.dumps(handshake).encode("utf-8"))
        self.client.connected(self)

    def lineLengthExceeded(self, line: bytes) -> None:
        self.client.note("dropped an over-long line from the server")

    def lineReceived(self, data: bytes) -> None:
        line = data.decode("utf-8", "replace").removesuffix("\r")
        if self.state == "handshake":
            if line.startswith(NOTICE + "error"):
                self.refusal = line[len(NOTICE) :]
                return
            self._handshake_done()
        if self.state == "history":
            self._history_line(line)
            return
        self._live(line)

    def _live(self, line: str) -> None:
        name, text = split_line(line)
        if self.state == "joined":
            # A guest's own lines come back as "~name:text" (the server's
            # guest mark; no account can share a guest's name).
            if name is not None and same_name(name.removeprefix("~"), self.client.nickname):
                self.client.echo()
            elif line.startswith(NOTICE + "error"):
                self.client.echo()
        if name is None and text.startswith("you are now in "):
            self.client.moved_to(text[len("you are now in ") :])
        self.client.show_line(line)

    def _handshake_done(self) -> None:
        first = self.client.joins == 0
        count = self.client.config.history if first else LINE_CATCH_UP
        if count <= 0:
            self._join()
            return
        self.state = "history"
        self.sendLine(f"/history {count}".encode("ascii"))
        self._restart_timer(self.HISTORY_WAIT)

    def _history_line(self, line: str) -> None:
        name, text = split_line(line)
        if self._block is None:
            if name is None and line.startswith(NOTICE) and text.startswith("last "):
                # The reply's header; chat lines held until now were stored
                # before the server read /history, so the reply has them.
                self._held = []
                self._block = []
                self.client.show_line(line)
                self._restart_timer(self.QUIET)
            elif name is not None:
                self._held.append(line)
            else:
                self.client.show_line(line)
                if line.startswith(NOTICE + "error"):
                    self._history_done()  # e.g. a limit this server refuses
            return
        if name is None:
            self._history_done()
            self._live(line)
            return
        self._block.append(line)
        self._restart_timer(self.QUIET)

    def _restart_timer(self, delay: float) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = self.client.clock.callLater(delay, self._history_done)

    def _history_done(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if self.state != "history":
            return
        block, self._block = self._block or [], None
        held, self._held = self._held, []
        if self.client.joins:
            fresh = missed_lines(list(self.client.seen_lines), block)
            if block and len(fresh) == len(block):
                self.client.note("some messages may have been missed while disconnected")
        else:
            fresh = block
        for line in [*fresh, *held]:
            self.client.show_line(line)
        self._join()

    def _join(self) -> None:
        self.state = "joined"
        self.client.joined(self)

    def send_text(self, text: str) -> None:
        # One message is one line: the server would split a newline anyway.
        self.sendLine(text.replace("\r", " ").replace("\n", " ").encode("utf-8"))

    def close_politely(self) -> None:
        if self.transport is None or self.gone:
            return
        if self.state == "handshake":
            self.transport.loseConnection()
        else:
            self.sendLine(b"/quit")  # the server answers "*** bye" and closes

    def connectionLost(self, reason: Failure = _CLEAN_CLOSE) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        client = self.client
        if self.state == "handshake" and not client.closing:
            if self.refusal is not None:
                fatal = client.joins == 0 or "(unauthorized)" in self.refusal
                if fatal:
                    client.fatal(f"the server refused to join: {self.refusal}")
                else:
                    client.note(f"the server refused to join: {self.refusal}")
        client.link_lost(self, clean(reason.getErrorMessage()))
        self._fire_lost()


class LineClientFactory(Factory):
    """Builds a fresh LineClientProtocol for every (re)connection."""

    def __init__(self, client: ChatClient) -> None:
        self.client = client

    def buildProtocol(self, addr: Any) -> LineClientProtocol:
        return LineClientProtocol(self.client)


# -- the line protocol in WebSocket messages (/mychat) ---------------------------------


class _MessageTransport:
    """What a LineClientProtocol writes to, for ``/mychat``: each line goes
    out as one WebSocket message (newline included, as MaChat's WebSocket
    client sends it)."""

    disconnecting = False

    def __init__(self, socket: MyChatClientProtocol) -> None:
        self._socket = socket

    def write(self, data: bytes) -> None:
        self._socket.sendMessage(data)

    def writeSequence(self, chunks: list[bytes]) -> None:
        self.write(b"".join(chunks))

    def loseConnection(self) -> None:
        self.disconnecting = True
        self._socket.sendClose(code=1000)

    def getPeer(self) -> Any:
        return self._socket.transport.getPeer() if self._socket.transport else None

    def getHost(self) -> Any:
        return self._socket.transport.getHost() if self._socket.transport else None


class MyChatClientProtocol(WebSocketClientProtocol):
    """``/mychat``: the line protocol (``LineClientProtocol``, handshake
    and all) carried in WebSocket messages."""

    factory: MyChatClientFactory

    def __init__(self) -> None:
        super().__init__()
        self.line: LineClientProtocol | None = None

    def onOpen(self) -> None:
        self.line = LineClientProtocol(self.factory.client)
        self.line.makeConnection(_MessageTransport(self))

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if self.line is not None:
            self.line.dataReceived(payload)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        client = self.factory.client
        if self.line is None:
            status = http_status(self)
            why = f"HTTP {status}" if status else (reason or "connection failed")
            if not client.closing:
                client.note(f"the server refused the WebSocket: {why}")
            return
        self.line.connectionLost(Failure(ConnectionLost(f"close {code}")))


class MyChatClientFactory(WebSocketClientFactory):
    """Builds MyChatClientProtocols for one ``/mychat`` URL."""

    protocol = MyChatClientProtocol  # type: ignore[assignment]

    def __init__(self, client: ChatClient, url: str, *, origin: str | None = None) -> None:
        super().__init__(url, origin=origin)
        self.client = client
        self.setProtocolOptions(
            openHandshakeTimeout=10,
            closeHandshakeTimeout=3,
            autoPingInterval=30,
            autoPingTimeout=20,
        )


# -- WebSocket -------------------------------------------------------------------


def http_status(protocol: WebSocketClientProtocol) -> int | None:
    """The HTTP status of a refused upgrade, if Autobahn read one."""
    line = getattr(protocol, "http_status_line", None)
    if not isinstance(line, str):
        return None
    parts = line.split()
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None


class RoomClientProtocol(WebSocketClientProtocol, _LinkBase):  # type: ignore[misc]
    """The room WebSocket: JSON message objects both ways."""

    factory: RoomClientFactory
    _log = Logger()

    def __init__(self) -> None:
        super().__init__()
        self.opened = False
        self._init_link()

    @property
    def client(self) -> ChatClient:
        return self.factory.client

    def connectionMade(self) -> None:
        super().connectionMade()
        self.client.connected(self)

    def onOpen(self) -> None:
        self.opened = True
        client = self.client
        if client.joins:
            since = client.timeline.last_seq
            client.note(
                "reconnected" + (f"; messages after #{since} follow" if since is not None else "")
            )
        client.joined(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        try:
            frame = json.loads(payload)
        except ValueError:
            frame = None
        if not isinstance(frame, dict):
            self.client.note("ignored a frame that is not a JSON object")
            return
        kind = frame.get("type", "chat")
        nickname = frame.get("nickname")
        if kind == "error" or (
            kind == "chat"
            and isinstance(nickname, str)
            and same_name(nickname, self.client.nickname)
        ):
            self.client.echo()
        if self.client.timeline.fresh(frame):
            self.client.show_frame(frame)

    def send_text(self, text: str) -> None:
        self.sendMessage(json.dumps({"content": text}, ensure_ascii=False).encode("utf-8"))

    def close_politely(self) -> None:
        if self.gone:
            return
        if self.opened:
            self.sendClose(code=1000)
        else:
            self.dropConnection(abort=True)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        client = self.client
        if not self.opened:
            status = http_status(self)
            if status in (401, 403) and not client.closing:
                client.fatal(
                    f"authentication failed for {client.nickname} "
                    f"(HTTP {status}): check the name and password"
                )
            why = f"HTTP {status}" if status else (reason or "connection failed")
            if status and not client.closing and status not in (401, 403):
                client.note(f"the server refused the WebSocket: {why}")
        else:
            why = f"close {code}" + (f": {reason}" if reason else "")
            client.link_lost(self, why)
        if client.current is self:
            client.current = None
        self._fire_lost()


class RoomClientFactory(WebSocketClientFactory):
    """Builds RoomClientProtocols for one room URL and credentials; each
    connection asks for what came after the last message shown
    (``?since=``), once that position is known."""

    protocol = RoomClientProtocol  # type: ignore[assignment]

    def __init__(
        self,
        client: ChatClient,
        url: str,
        *,
        authorization: str,
        origin: str | None = None,
    ) -> None:
        # The credentials live only in this header dict, never in the URL,
        # so Autobahn's logs (which show the URL) cannot leak them.
        self._headers = {"Authorization": authorization}
        self._url = url
        self._origin = origin
        super().__init__(url, headers=self._headers, origin=origin)
        self.client = client
        self.setProtocolOptions(
            openHandshakeTimeout=10,
            closeHandshakeTimeout=3,
            autoPingInterval=30,
            autoPingTimeout=20,
        )

    def resume_url(self) -> str:
        """The room URL, with ``?since=`` the last seq shown if known."""
        since = self.client.timeline.last_seq
        return self._url if since is None else f"{self._url}?since={since}"

    def buildProtocol(self, addr: Any) -> Any:
        self.setSessionParameters(url=self.resume_url(), headers=self._headers, origin=self._origin)
        return super().buildProtocol(addr)


@implementer(IStreamClientEndpoint)
class NotingEndpoint:
    """An endpoint that tells the client why a connection attempt failed
    (``ClientService`` only passes the attempt number to the retry policy)."""

    def __init__(self, endpoint: IStreamClientEndpoint, client: ChatClient) -> None:
        self._endpoint = endpoint
        self._client = client

    def connect(self, factory: Any) -> Deferred[Any]:
        d = self._endpoint.connect(factory)

        def failed(failure: Failure) -> Failure:
            self._client.connect_failed(failure)
            return failure

        return d.addErrback(failed)
