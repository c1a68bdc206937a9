"""Writing frames to sockets, and the one place that reads the internals of
Twisted's transports.

A delivery to a socket with nothing waiting costs Twisted a full cycle:
``transport.write`` buffers and registers the socket for writing
(``epoll_ctl``), the next poll reports it writable, ``doWrite`` sends, and an
empty buffer unregisters it (``epoll_ctl`` again). When many rooms each get
a message, every socket takes that cycle for one frame; it was about a third
of the reactor's time in the ingest benchmark (docs/performance.md).

``TurnWriter`` holds the frames for such idle sockets until the end of the
reactor turn and then sends each socket's frames with one ``send``: the
frames a broadcast of a whole commit batch gives one socket still share one
write, and the registration round trip is gone. Whatever the kernel does not
take at once (a slow reader), and every socket that already has bytes
waiting, goes through ``transport.write`` as before, so ordering, back
pressure (producers) and error handling stay Twisted's.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

from twisted.internet import tcp
from twisted.internet.interfaces import IDelayedCall, IReactorTime


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
