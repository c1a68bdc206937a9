"""``/mychat``: MaChat's stream protocol carried in WebSocket text messages.

Each client message is one line (or several, separated by newlines): the first
is the JSON handshake, the rest are chat messages. Each ``name:text`` line the
TCP clients receive arrives here as one text message with the same bytes. The
protocol itself is ``stream.StreamSession``, shared with the TCP listener.
"""

from __future__ import annotations

from typing import Any

from autobahn.twisted.websocket import WebSocketServerFactory
from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from parkchat.errors import InvalidRequest
from parkchat.interfaces import IEncoder
from parkchat.model import CHAT, SYSTEM, Message
from parkchat.protocols.stream import StreamOptions, StreamSession, render_lines
from parkchat.protocols.websocket import (
    ParkchatServerProtocol,
    ParkchatSocketFactory,
    close_with,
    write_prepared,
)
from parkchat.service import ChatService


@implementer(IEncoder)
class PreparedLinesEncoder:
    """The stream rendering, framed once per message for all /mychat members."""

    def __init__(self, factory: WebSocketServerFactory) -> None:
        self._factory = factory

    surface = "mychat"

    def encode(self, message: Message) -> tuple[bool, Any] | None:
        if message.type not in (CHAT, SYSTEM):
            return None
        return (message.type == SYSTEM, self._factory.prepareMessage(render_lines(message)))


class MyChatProtocol(ParkchatServerProtocol):
    """One /mychat client; the carrier of its StreamSession."""

    factory: MyChatFactory
    session: StreamSession | None = None
    _closing = False

    def onOpen(self) -> None:
        f = self.factory
        self.session = StreamSession(f.service, self, f.encoder, f.clock, f.options)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if self.session is None:
            return
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError:
            self.session.bad_input(InvalidRequest("message is not valid UTF-8"))
            return
        for line in text.rstrip("\n").split("\n"):
            self.session.line_received(line.removesuffix("\r"))

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if self.session is not None:
            self.session.connection_lost()

    # -- Carrier -----------------------------------------------------------

    def write_text(self, text: str) -> None:
        if not self._closing:
            self.sendMessage((text + "\n").encode("utf-8"))

    def send_payload(self, payload: Any) -> None:
        if not self._closing:
            write_prepared(self, payload)

    def close(self, code: int = 1000) -> None:
        if self._closing:
            return
        self._closing = True
        if code == 1000:
            self.sendClose(1000)
        else:
            close_with(self, code, "goodbye" if code == 1001 else "refused")


class MyChatFactory(ParkchatSocketFactory):
    """Builds /mychat connections."""

    protocol = MyChatProtocol  # type: ignore[assignment]

    def __init__(
        self,
        service: ChatService,
        clock: IReactorTime,
        options: StreamOptions | None = None,
        *,
        max_message_size: int = 65536,
        ping_interval: float = 30.0,
        ping_timeout: float = 20.0,
    ) -> None:
        self.options = options if options is not None else StreamOptions()
        super().__init__(
            max_message_size=max_message_size,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            handshake_timeout=self.options.handshake_timeout,
        )
        self.service = service
        self.clock = clock
        self.encoder = PreparedLinesEncoder(self)
