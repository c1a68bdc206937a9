"""The transport fast paths: the one module that reads the private internals
of Twisted's transports and Autobahn's WebSocket protocol.

Each path below replaces a public API with a cheaper walk through internals
(measured in docs/performance.md). Internals change without notice, so they
are used only with the exact versions they were read and tested against
(``CHECKED_TWISTED``, ``CHECKED_AUTOBAHN``; setup.cfg pins these release
series). With any other version ``choose()`` logs one warning at startup and
the adapters take plain public-API paths instead (``PLAIN``): the same bytes
on the wire, only slower, and ``--max-send-buffer`` cannot be checked.

What the fast paths (``FAST``) do:

* ``TurnWriter`` (Twisted: ``tcp.Server``'s ``dataBuffer``, ``offset``,
  ``_tempDataLen``, ``socket``). A delivery to a socket with nothing waiting
  costs Twisted a full cycle: ``transport.write`` buffers and registers the
  socket for writing (``epoll_ctl``), the next poll reports it writable,
  ``doWrite`` sends, and an empty buffer unregisters it (``epoll_ctl``
  again); it was about a third of the reactor's time in the ingest
  benchmark. ``TurnWriter`` holds the frames for such idle sockets until the
  end of the reactor turn and sends each socket's frames with one ``send``.
  Whatever the kernel does not take at once, and every socket that already
  has bytes waiting, goes through ``transport.write`` as before, so
  ordering, back pressure and error handling stay Twisted's. The plain
  path: ``PlainWriter``, which is ``transport.write``.
* ``buffered_bytes`` (the same Twisted fields): how much a slow reader has
  waiting, for ``--max-send-buffer``. The plain path cannot know.
* ``FastConnection`` (Autobahn: ``_dataReceived``, ``message_data``,
  ``message_is_binary``, ``failedByMe``, ``send_queue``,
  ``_perMessageCompress``, ``CONFIG_ATTRS``). Broadcast frames go to the
  ``TurnWriter`` instead of ``sendPreparedMessage``; incoming bytes go
  straight to the frame parser and a complete message straight to
  ``onMessage``, skipping debug-log arguments Autobahn builds even with
  debug logging off and a txaio future per message that nothing listens to;
  the factory's options live on the protocol class instead of being copied
  onto every connection. The plain path: Autobahn's own
  ``sendPreparedMessage``, ``dataReceived`` and ``onMessageEnd``.
* ``fail_invalid_payload`` (Autobahn: ``_invalid_payload``). On the fast
  paths, the endpoints whose every text message goes through
  ``Participant.decode_frame`` (``/ws/{room}``, ``/ws``) turn Autobahn's
  incremental UTF-8 validator off (``utf8validateIncoming``): the strict
  ``bytes.decode("utf-8")`` before the JSON parser checks the same thing once
  per message instead of a validator reset and a call per frame, and a
  message that is not UTF-8 fails the connection through Autobahn's own
  method, as its validator would have (close 1007, nothing after it reaches
  ``onMessage``). The plain path keeps Autobahn's validator.
* ``close_with`` (Autobahn: ``sendCloseFrame``) is used on every version:
  Autobahn's public ``sendClose`` refuses the protocol-level codes 1001
  (going away) and 1008 (policy) that clients act on, and there is no other
  way to send them.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import autobahn
import twisted
from autobahn.util import encode_truncate
from autobahn.websocket.protocol import WebSocketProtocol
from twisted.internet import tcp
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

_log = Logger()

#: Twisted releases whose transport internals the paths below were read and
#: tested against. setup.cfg pins their release series (tests/test_fastpath.py
#: keeps the two in step).
CHECKED_TWISTED = ("26.10.0",)
#: Autobahn releases likewise (``_dataReceived``, ``onMessageEnd``,
#: ``sendPreparedMessage``, ``sendCloseFrame``, ``sendData`` and the option
#: copying in ``_connectionMade`` are the same in both).
CHECKED_AUTOBAHN = ("26.10.2", "26.11.1")


@dataclass(frozen=True)
class Versions:
    """The Twisted and Autobahn releases a process runs with."""

    twisted: str
    autobahn: str

    @classmethod
    def installed(cls) -> Versions:
        return cls(twisted.__version__, autobahn.__version__)

    @property
    def checked(self) -> bool:
        return self.twisted in CHECKED_TWISTED and self.autobahn in CHECKED_AUTOBAHN


# -- Twisted: writing to sockets ------------------------------------------------


def buffered_bytes(transport: Any) -> int | None:
    """Bytes written to ``transport`` that the kernel has not taken yet, or
    None if that cannot be known.

    Twisted has no public API for this; it reads the internals of
    ``twisted.internet.abstract.FileDescriptor`` (``dataBuffer``, ``offset``,
    ``_tempDataLen``). Wrapping transports (TLS) are followed to the socket
    underneath.
    """
    for _ in range(4):
        data = getattr(transport, "dataBuffer", None)
        if data is not None:
            return (
                len(data) - getattr(transport, "offset", 0) + getattr(transport, "_tempDataLen", 0)
            )
        transport = getattr(transport, "transport", None)
        if transport is None:
            break
    return None


def unknown_buffer(transport: Any) -> int | None:
    """``buffered_bytes`` through public APIs: it cannot be known."""
    return None


def idle_socket(transport: Any) -> socket.socket | None:
    """The socket under ``transport`` if bytes may be sent on it directly: a
    plain TCP connection (never TLS, whose bytes must be encrypted), open,
    with nothing of its own waiting to be sent (the same fields as
    ``buffered_bytes``, read directly: this runs twice per delivery)."""
    if type(transport) is not tcp.Server or transport.TLS:
        return None
    if not transport.connected or transport.disconnecting or transport._tempDataLen:
        return None
    if len(transport.dataBuffer) > transport.offset:
        return None
    sock: socket.socket = transport.socket
    return sock


class Writer(Protocol):
    """Where an adapter's broadcast frames go (``TurnWriter`` or
    ``PlainWriter``, chosen once per factory)."""

    def write(self, transport: Any, data: bytes) -> None:
        """Send ``data`` on ``transport``, possibly at the end of the turn."""

    def release(self, transport: Any) -> None:
        """Send now whatever is held for ``transport``: call before writing
        to it any other way, or closing it."""


class PlainWriter:
    """Broadcast frames through ``transport.write``, nothing held."""

    def write(self, transport: Any, data: bytes) -> None:
        transport.write(data)

    def release(self, transport: Any) -> None:
        pass


class TurnWriter:
    """Frames for idle sockets, held until the end of the reactor turn.

    Anything else written to a transport while it has frames held here must
    come after them: call ``release(transport)`` first (the WebSocket
    protocols do, in ``sendData`` and before a graceful close).
    """

    def __init__(
        self,
        reactor: IReactorTime,
        direct: Callable[[Any], socket.socket | None] = idle_socket,
    ) -> None:
        self._reactor = reactor
        self._direct = direct
        self._held: dict[Any, list[bytes]] = {}
        self._call: IDelayedCall | None = None

    def write(self, transport: Any, data: bytes) -> None:
        held = self._held.get(transport)
        if held is not None:
            held.append(data)
        elif self._direct(transport) is None:
            transport.write(data)
        else:
            self._held[transport] = [data]
            if self._call is None:
                self._call = self._reactor.callLater(0, self.flush)

    def release(self, transport: Any) -> None:
        """Send what is held for ``transport`` now."""
        held = self._held.pop(transport, None)
        if held is not None:
            self._send(transport, held)

    def flush(self) -> None:
        """Send everything held (the end of the turn)."""
        self._call = None
        held, self._held = self._held, {}
        for transport, chunks in held.items():
            self._send(transport, chunks)

    def _send(self, transport: Any, chunks: list[bytes]) -> None:
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        sock = self._direct(transport)
        if sock is not None:
            try:
                sent = sock.send(data)
            except OSError:
                # EAGAIN, or a dead peer: the transport buffers the bytes, or
                # meets the same error on its next write and closes as usual.
                sent = 0
            if sent == len(data):
                return
            data = data[sent:]
        transport.write(data)


# -- Autobahn: the WebSocket protocol -------------------------------------------------

_OPEN = WebSocketProtocol.STATE_OPEN


def close_with(protocol: Any, code: int, reason: str) -> None:
    """Start the closing handshake with a protocol-level code such as 1001 or
    1008. Autobahn's ``sendClose`` accepts only 1000 and 3000-4999 (the codes
    an application may pick) and raises for the rest, so send the frame
    directly; it is a no-op once the connection is closing."""
    protocol.sendCloseFrame(code=code, reasonUtf8=encode_truncate(reason, 123), isReply=False)


def fail_invalid_payload(protocol: Any, reason: str) -> None:
    """Fail the connection as Autobahn does for a text message that is not
    UTF-8: a 1007 close frame, and ``failedByMe``, so that no later message
    of the connection reaches ``onMessage``. Only on the fast paths (see the
    module docstring)."""
    protocol._invalid_payload(reason)


class FastConnection:
    """Put in front of a parkchat WebSocket protocol class on checked
    versions (``TransportPaths.protocol_class``).

    * ``write_prepared`` hands a broadcast frame to the factory's
      ``TurnWriter``: Autobahn's ``sendData`` evaluates its debug-log
      arguments for every frame even with debug logging off (``hltype`` /
      ``hlval`` styled text), which costs more than the write itself, and a
      broadcast pays it once per member. Frames are never sent once the
      closing handshake has begun.
    * Frames held by the ``TurnWriter`` go out before anything Autobahn
      writes itself (error frames, pings, the closing handshake) and before
      a graceful drop.
    * Incoming bytes go straight to the frame parser, and a complete
      message straight to ``onMessage`` (see the module docstring).
    """

    factory: Any
    transport: Any
    state: int
    send_queue: Any
    _perMessageCompress: Any
    failedByMe: bool
    message_data: list[bytes] | None
    message_is_binary: bool

    def write_prepared(self, prepared: Any) -> None:
        if self.state != _OPEN:
            return
        transport = self.transport
        if transport is not None and not self.send_queue and self._perMessageCompress is None:
            self.factory.writer.write(transport, prepared.payloadHybi)
        else:
            protocol: Any = self
            protocol.sendPreparedMessage(prepared)

    def sendData(self, data: bytes, sync: bool = False, chopsize: int | None = None) -> None:
        self.factory.writer.release(self.transport)
        super().sendData(data, sync, chopsize)  # type: ignore[misc]

    def dropConnection(self, abort: bool = False) -> None:
        if not abort:
            self.factory.writer.release(self.transport)
        super().dropConnection(abort)  # type: ignore[misc]

    def dataReceived(self, data: bytes) -> None:
        protocol: Any = self
        protocol._dataReceived(data)

    def onMessageEnd(self) -> None:
        if not self.failedByMe and self.message_data is not None:
            protocol: Any = self
            protocol.onMessage(b"".join(self.message_data), self.message_is_binary)
        self.message_data = None


def _options_on_class(protocol: type, factory: Any) -> type:
    """``protocol`` behind ``FastConnection``, with the factory's options as
    class attributes.

    Autobahn copies every option (some forty) from the factory onto each new
    protocol instance unless the instance already has it (``CONFIG_ATTRS`` in
    ``_connectionMade``). As class attributes nothing is copied and each idle
    connection is a few KB smaller; an empty ``CONFIG_ATTRS`` also spares
    each connection the pformat of all options that Autobahn builds for a
    debug log line (a fifth of the cost of accepting a connection) even with
    debug off.
    """
    attrs: dict[str, Any] = {
        "_parkchat_shared_options": True,
        # The adapter's own module: its Logger namespace stays the adapter's.
        "__module__": protocol.__module__,
        "__qualname__": protocol.__qualname__,
    }
    for name in getattr(protocol, "CONFIG_ATTRS", ()):
        if hasattr(factory, name):
            value = getattr(factory, name)
            # a function stored on a class would become a method
            attrs[name] = staticmethod(value) if callable(value) else value
    attrs["CONFIG_ATTRS"] = ()
    if getattr(protocol, "send_is_write_prepared", False):
        # The adapter's ``send`` only calls ``write_prepared``: one Python
        # call less per delivery (issue 18).
        attrs["send"] = FastConnection.write_prepared
    return type(protocol.__name__, (FastConnection, protocol), attrs)


# -- the choice ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TransportPaths:
    """Which way an adapter's bytes go: ``FAST`` (the internals above) or
    ``PLAIN`` (public APIs only). Chosen once per process, by version; each
    factory asks it for its writer and protocol class, so nothing on the
    per-member path tests which one is in use."""

    fast: bool

    def writer(self, clock: IReactorTime) -> Writer:
        """Where the factory's broadcast frames go."""
        return TurnWriter(clock) if self.fast else PlainWriter()

    def protocol_class(self, protocol: type, factory: Any) -> type:
        """The class a WebSocket factory builds its connections from, for its
        current options (called again after every ``setProtocolOptions``)."""
        while getattr(protocol, "_parkchat_shared_options", False):
            protocol = protocol.__bases__[-1]
        return _options_on_class(protocol, factory) if self.fast else protocol

    def buffered_bytes(self, transport: Any) -> int | None:
        """Bytes waiting in ``transport``, if they can be known."""
        return buffered_bytes(transport) if self.fast else None

    @property
    def decoder_checks_utf8(self) -> bool:
        """Whether an endpoint that decodes every text message strictly
        (``Participant.decode_frame``) may turn Autobahn's UTF-8 validator
        off: it fails bad messages through ``fail_invalid_payload``."""
        return self.fast


FAST = TransportPaths(fast=True)
PLAIN = TransportPaths(fast=False)


def paths_for(versions: Versions) -> TransportPaths:
    """``FAST`` for checked versions, otherwise ``PLAIN``."""
    return FAST if versions.checked else PLAIN


def choose(versions: Versions | None = None, log: Logger = _log) -> TransportPaths:
    """The paths for this process (``tap.makeService`` calls it once), with
    a warning when the installed versions were not checked."""
    versions = versions if versions is not None else Versions.installed()
    paths = paths_for(versions)
    if not paths.fast:
        log.warn(  # noqa: G010 (twisted.logger has no warning())
            "Twisted {twisted} / autobahn {autobahn} are not the versions parkchat's "
            "transport fast paths were checked against (Twisted {checked_twisted}; "
            "autobahn {checked_autobahn}): using public APIs only (slower broadcast; "
            "--max-send-buffer is not enforced)",
            twisted=versions.twisted,
            autobahn=versions.autobahn,
            checked_twisted=", ".join(CHECKED_TWISTED),
            checked_autobahn=", ".join(CHECKED_AUTOBAHN),
        )
    return paths


#: The paths for the installed versions, without the warning: the default of
#: factories built outside ``tap.makeService`` (tests, embedding programs).
INSTALLED = paths_for(Versions.installed())
