"""An IRC client for the in-memory tests (``iosim``), and the parsing of
what it receives: shared by tests/test_irc.py and tests/test_surfaces.py."""

from __future__ import annotations

from dataclasses import dataclass, field

from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from twisted.words.protocols.irc import parsemsg

from parkchat.protocols.ircwire import split_tags


@dataclass
class Line:
    """One line from the server, parsed."""

    command: str
    params: list[str]
    prefix: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    raw: str = ""

    @property
    def nick(self) -> str:
        """The nickname of the prefix (``nick!user@host``)."""
        return self.prefix.split("!", 1)[0]

    @property
    def text(self) -> str:
        return self.params[-1] if self.params else ""


def parse(raw: str) -> Line:
    tags, rest = split_tags(raw)
    prefix, command, params = parsemsg(rest)
    return Line(command, params, prefix, tags, raw)


class RawIrcClient(Protocol):
    """Sends what it is told and keeps every line it receives; checks that
    each ends with CRLF and fits the limits."""

    def __init__(self) -> None:
        self.received = b""
        self._taken = 0
        self._unread: list[str] = []
        self.lost = False

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Failure = ConnectionDone) -> None:  # type: ignore[assignment]
        self.lost = True

    def send(self, *lines: str) -> None:
        assert self.transport is not None
        self.transport.write(b"".join(line.encode("utf-8") + b"\r\n" for line in lines))

    def send_bytes(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def unread(self, lines: list[str]) -> None:
        """Give ``lines`` back: the next ``take`` starts with them."""
        self._unread = lines + self._unread

    def take_raw(self) -> list[str]:
        """The complete lines received since the last take, without CRLF."""
        unread, self._unread = self._unread, []
        end = self.received.rfind(b"\r\n") + 2
        if end < 2 or end <= self._taken:
            return unread
        chunk, self._taken = self.received[self._taken : end], end
        lines = unread + chunk.decode("utf-8").split("\r\n")[:-1]
        for line in lines:
            assert "\n" not in line and "\r" not in line, line
            _, rest = split_tags(line)
            assert len(rest.encode()) <= 510, f"line too long: {line!r}"
        return lines

    def take(self) -> list[Line]:
        return [parse(line) for line in self.take_raw()]
