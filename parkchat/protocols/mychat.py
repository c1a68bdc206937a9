"""``/mychat``: MaChat's stream protocol carried in WebSocket text messages.

Each client message is one line (or several, separated by newlines): the first
is the JSON handshake, the rest are chat messages. Each ``name:text`` line the
TCP clients receive arrives here as one text message with the same bytes. The
protocol itself is ``stream.StreamSession``, shared with the TCP listener.
"""

from __future__ import annotations

from typing import Any

from autobahn.twisted.websocket import WebSocketServerFactory
from zope.interface import implementer

from parkchat.errors import InvalidRequest
from parkchat.interfaces import IEncoder
from parkchat.model import SYSTEM, Message
from parkchat.protocols.fastpath import close_with
from parkchat.protocols.participant import CLOSE_GOING_AWAY, CLOSE_NORMAL, AdapterContext
from parkchat.protocols.sockets import ParkchatServerProtocol, ParkchatSocketFactory
from parkchat.protocols.stream import SHOWN_EVENTS, StreamOptions, StreamSession, render_lines


@implementer(IEncoder)
class PreparedLinesEncoder:
    """The stream rendering, framed once per message for all /mychat members."""

    def __init__(self, factory: WebSocketServerFactory) -> None:
        self._factory = factory

    surface = "mychat"

    def encode(self, message: Message) -> tuple[bool, Any] | None:
        if message.type not in SHOWN_EVENTS:
            return None
        return (message.type == SYSTEM, self._factory.prepareMessage(render_lines(message)))


class MyChatProtocol(ParkchatServerProtocol):
    """One /mychat client; the carrier of its StreamSession."""

    factory: MyChatFactory
    session: StreamSession | None = None
    _closing = False

    def onOpen(self) -> None:
        f = self.factory
        self.session = StreamSession(f.context, self, f.encoder, f.options)

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
            self.write_prepared(payload)

    def close(self, code: int = CLOSE_NORMAL) -> None:
        if self._closing:
            return
        self._closing = True
        if code == CLOSE_NORMAL:
            self.sendClose(CLOSE_NORMAL)
        else:
            close_with(self, code, "goodbye" if code == CLOSE_GOING_AWAY else "refused")


class MyChatFactory(ParkchatSocketFactory):
    """Builds /mychat connections."""

    protocol = MyChatProtocol  # type: ignore[assignment]

    def __init__(
        self,
        context: AdapterContext,
        options: StreamOptions | None = None,
        *,
        max_message_size: int = 65536,
        ping_interval: float = 30.0,
        ping_timeout: float = 20.0,
    ) -> None:
        self.options = options if options is not None else StreamOptions()
        super().__init__(
            context,
            max_message_size=max_message_size,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            handshake_timeout=self.options.handshake_timeout,
        )
        self.encoder = PreparedLinesEncoder(self)
