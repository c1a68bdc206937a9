"""The participant base: what every protocol adapter shares, written once.

An adapter (``RoomSocketProtocol`` for ``/ws/{room}``, ``AppSocketProtocol``
for ``/ws``, ``StreamSession`` for TCP and ``/mychat``) turns its wire
format into ``IChatService`` verbs and room events back into its wire
format. Everything else is here, as transit-relay's two protocol classes
share one server state:

* ``AdapterContext``: what ``tap.makeService`` gives every adapter factory
  (the service verbs, metrics, the clock, the transport paths, the slow-reader
  policy, the trusted proxies), so that no adapter reaches through the
  service for them;
* ``Participant``: decoding a JSON frame, sending an error (counted per
  surface, rendered by the adapter's ``write_error``), turning a failure into
  the ``ChatError`` the client sees, one timer on the injected clock, and
  ``disconnect`` through the adapter's table from ``DisconnectReason`` to a
  ``Goodbye`` (a close code, and for line surfaces a last line).

Nothing here is on the broadcast path: ``send`` is each adapter's own.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from parkchat.errors import ChatError, InvalidRequest, NameRegistered
from parkchat.interfaces import IChatService
from parkchat.metrics import ServiceMetrics
from parkchat.model import DisconnectReason
from parkchat.protocols.fastpath import INSTALLED, TransportPaths
from parkchat.protocols.policies import SlowReaderPolicy
from parkchat.proxies import TrustedProxies

#: WebSocket close codes of RFC 6455 that every surface uses.
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008


@dataclass(frozen=True)
class AdapterContext:
    """What every adapter factory is given by ``tap.makeService``."""

    #: The domain verbs; the only way an adapter acts on rooms and accounts.
    service: IChatService
    #: Error replies per surface, refused connections (/metrics).
    metrics: ServiceMetrics
    #: Timers (handshake, idle, auth and join timeouts) and turn-end writes.
    clock: IReactorTime
    #: Fast paths or public APIs (``parkchat.protocols.fastpath.choose``).
    paths: TransportPaths = INSTALLED
    #: Closes connections that stop reading; None: nobody is watched.
    slow_readers: SlowReaderPolicy | None = None
    #: Proxies whose X-Forwarded-For names the WebSocket client.
    trusted_proxies: TrustedProxies = field(default_factory=TrustedProxies)


@dataclass(frozen=True)
class Goodbye:
    """How a surface ends a connection for one ``DisconnectReason``."""

    #: The WebSocket close code (carriers without codes ignore it).
    code: int
    #: A last line for line surfaces, sent before closing.
    line: str | None = None


class Participant:
    """The base of every adapter (see the module docstring).

    A subclass sets ``surface`` (the metrics label), ``goodbyes`` (one entry
    per ``DisconnectReason``) and, if it reads JSON frames, ``not_an_object``;
    it provides ``context``, ``nickname``, ``write_error`` and
    ``say_goodbye``.
    """

    #: The ``surface`` label of this adapter's metrics.
    surface: str
    #: This surface's close code (and goodbye line) per reason: complete.
    goodbyes: ClassVar[Mapping[DisconnectReason, Goodbye]]
    #: The error for a frame that is JSON but not an object.
    not_an_object: ClassVar[str] = "frame must be a JSON object"
    #: Namespaced by the adapter's class (Autobahn owns ``log``).
    _log: ClassVar[Logger] = Logger()
    _timer: IDelayedCall | None = None

    nickname: str

    @property
    def context(self) -> AdapterContext:
        raise NotImplementedError

    # -- input ---------------------------------------------------------------------

    def decode_frame(self, payload: bytes, is_binary: bool) -> dict[str, Any] | None:
        """A WebSocket message as the JSON object it must be, or InvalidRequest;
        None if it is not UTF-8 (``invalid_utf8`` has been called: the
        connection is being failed, nothing more of it is handled).

        Decoded as strict UTF-8 before parsing (RFC 8259): ``json.loads``
        would otherwise sniff bytes for UTF-16/32 and a byte-order mark, and
        let encoded surrogates through (``surrogatepass``). Where Autobahn
        validates text frames itself (``utf8validateIncoming``) a text
        message arrives as valid UTF-8; where that is off (the fast paths of
        ``/ws/{room}`` and ``/ws``) this decode is the check. Binary frames
        are refused.
        """
        if is_binary:
            raise InvalidRequest("binary frames are not accepted; send JSON text")
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError as e:
            self.invalid_utf8(e)
            return None
        try:
            value = json.loads(text)
        except (ValueError, RecursionError) as e:  # RecursionError: nested too deeply
            raise InvalidRequest("frame is not valid JSON") from e
        if not isinstance(value, dict):
            raise InvalidRequest(self.not_an_object)
        return value

    def invalid_utf8(self, error: UnicodeDecodeError) -> None:
        """A text message that is not UTF-8: WebSocket adapters fail the
        connection (1007); the default refuses the message."""
        raise InvalidRequest("frame is not valid UTF-8")

    # -- errors --------------------------------------------------------------------

    def send_error(self, error: ChatError, request_id: Any = None) -> None:
        """Tell the client about ``error`` in this surface's format (and count it)."""
        self.context.metrics.error_sent(self.surface, error.code)
        self.write_error(error, request_id)

    def write_error(self, error: ChatError, request_id: Any) -> None:
        """Render one error reply on the wire (``request_id``: the client's
        id of the request, for surfaces that echo it)."""
        raise NotImplementedError

    def chat_error(self, failure: Failure, doing: str) -> ChatError:
        """The ``ChatError`` a failed request shows its client. Anything else
        is a bug: logged with its traceback; the client hears "internal error"."""
        error = failure.value
        if isinstance(error, ChatError):
            return error
        self._log.failure(
            "{doing} for {nickname!r} failed", failure, doing=doing, nickname=self.nickname
        )
        return ChatError("internal error")

    # -- timers --------------------------------------------------------------------

    def start_timer(self, seconds: float, expired: Callable[..., object], *args: object) -> None:
        """Call ``expired(*args)`` in ``seconds`` on the injected clock, unless
        cancelled or replaced first (one timer per connection)."""
        self.cancel_timer()
        self._timer = self.context.clock.callLater(seconds, self._expired, expired, args)

    def _expired(self, expired: Callable[..., object], args: tuple[object, ...]) -> None:
        self._timer = None
        expired(*args)

    def cancel_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    # -- IParticipant.disconnect ------------------------------------------------------

    def disconnect(self, reason: DisconnectReason) -> None:
        """Close the connection the way this surface's ``goodbyes`` say.

        A guest whose name was registered is first told so as an error
        (``NameRegistered``) in the surface's own error format: an error
        frame, a ``*** error`` line, IRC's 436 nickname collision, or for
        dialects without error frames the close reason."""
        if reason is DisconnectReason.NAME_REGISTERED:
            self.send_error(NameRegistered())
        self.say_goodbye(self.goodbyes[reason], reason)

    def say_goodbye(self, goodbye: Goodbye, reason: DisconnectReason) -> None:
        """Send ``goodbye`` and close."""
        raise NotImplementedError
