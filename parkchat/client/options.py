"""The ``parkchat-client`` command line.

The MaChat example clients take Go-style flags (``-client Mina -room dev
-address localhost:8989``). Go's ``flag`` package treats ``-x`` and ``--x``
alike, argparse does not: ``-room`` would be read as ``-r -o -o -m``. So the
seed's single-dash spellings are rewritten to their ``--`` forms before
argparse sees them, and everything else stays ordinary argparse.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import quote, unquote, urlsplit

from parkchat.errors import ChatError
from parkchat.model import validate_nickname, validate_room

DEFAULT_ADDRESS = "localhost:8989"
DEFAULT_HISTORY = 20
PASSWORD_ENV = "PARKCHAT_PASSWORD"

#: Single-dash spellings of the MaChat example clients, and ours they mean.
SEED_ALIASES = {"client": "name", "room": "room", "address": "address", "origin": "origin"}
_SEED_FLAG = re.compile(r"-(client|room|address|origin)(=.*)?\Z", re.DOTALL)


class UsageError(Exception):
    """A bad command line; reported as one line, exit status 2."""


@dataclass(frozen=True)
class ClientConfig:
    """Everything the client needs to run, validated.

    ``password`` is left out of ``repr`` so that a stray debug print or
    traceback cannot show it.
    """

    name: str
    room: str
    mode: str  # "tcp", "mychat" (the line protocol in WebSocket messages) or "ws"
    host: str
    port: int
    history: int = DEFAULT_HISTORY
    password: str | None = field(default=None, repr=False)
    tls: bool = False
    ws_url: str = ""
    origin: str | None = None
    debug: bool = False

    @property
    def http_url(self) -> str:
        """The REST base URL on the same host and port as the WebSocket."""
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{_host_for_url(self.host)}:{self.port}"


def rewrite_seed_flags(argv: Sequence[str]) -> list[str]:
    """``-client X`` -> ``--client X`` (and ``-room``, ``-address``,
    ``-origin``, also in ``-flag=value`` form); stops at ``--``."""
    out: list[str] = []
    for i, arg in enumerate(argv):
        if arg == "--":
            out.extend(argv[i:])
            break
        match = _SEED_FLAG.match(arg)
        out.append("-" + arg if match else arg)
    return out


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage and exiting, so main()
    can print exactly one line."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="parkchat-client",
        description=(
            "Chat in a parkchat room from a terminal, over the plain-TCP line protocol "
            "(--address) or the room WebSocket (--url)."
        ),
        epilog=(
            "The MaChat flags -client, -room and -address are accepted too. "
            f"The password may come from ${PASSWORD_ENV} instead of --password."
        ),
    )
    target = parser.add_mutually_exclusive_group()
    target.add_argument(
        "--address",
        metavar="HOST:PORT",
        help=f"plain-TCP line-protocol server (default {DEFAULT_ADDRESS}), or "
        "ws://HOST:PORT/mychat for the same protocol over WebSocket (MaChat's "
        "WebSocket client)",
    )
    target.add_argument(
        "--url", metavar="ws://HOST:PORT/ws/ROOM", help="room WebSocket URL (Basic auth)"
    )
    parser.add_argument("--name", "--client", dest="name", help="your nickname")
    parser.add_argument("--room", help="room to join (WebSocket: may be part of --url)")
    parser.add_argument(
        "--password",
        help=f"account password (prefer ${PASSWORD_ENV}: arguments are visible to other users)",
    )
    parser.add_argument(
        "--history",
        type=int,
        default=DEFAULT_HISTORY,
        metavar="N",
        help=f"recent messages to show on join (default {DEFAULT_HISTORY}, 0 for none)",
    )
    parser.add_argument("--origin", help="Origin header for the WebSocket handshake")
    parser.add_argument("--debug", action="store_true", help="log connection events to stderr")
    return parser


def parse_args(argv: Sequence[str], environ: Mapping[str, str]) -> ClientConfig:
    """Validate the command line into a ClientConfig, or raise UsageError."""
    args = build_parser().parse_args(rewrite_seed_flags(argv))
    if args.name is None:
        raise UsageError("--name (or -client) is required")
    try:
        name = validate_nickname(args.name)
    except ChatError as e:
        raise UsageError(f"bad --name: {e.message}") from None
    if args.history < 0:
        raise UsageError("--history must be 0 or more")
    password = args.password if args.password is not None else environ.get(PASSWORD_ENV)
    if password == "":
        password = None
    common = {
        "name": name,
        "history": args.history,
        "password": password,
        "debug": args.debug,
        "origin": args.origin,
    }
    if args.url is not None:
        host, port, tls, room, url = parse_ws_url(args.url, args.room)
        if password is None:
            raise UsageError(
                f"WebSocket rooms need an account: give --password or set ${PASSWORD_ENV}"
            )
        return ClientConfig(
            room=room, mode="ws", host=host, port=port, tls=tls, ws_url=url, **common
        )
    if args.room is None:
        raise UsageError("--room (or -room) is required")
    address = args.address or DEFAULT_ADDRESS
    if address.startswith(("ws://", "wss://")):
        host, port, tls, url = parse_mychat_url(address)
        return ClientConfig(
            room=_room(args.room),
            mode="mychat",
            host=host,
            port=port,
            tls=tls,
            ws_url=url,
            **common,
        )
    host, port = parse_address(address)
    return ClientConfig(room=_room(args.room), mode="tcp", host=host, port=port, **common)


def parse_mychat_url(url: str) -> tuple[str, int, bool, str]:
    """``ws[s]://host[:port]/mychat`` (MaChat's WebSocket) -> (host, port,
    tls, url)."""
    parts = urlsplit(url)
    if not parts.hostname or parts.path.rstrip("/") != "/mychat":
        raise UsageError(
            f"bad address {url!r}: expected HOST:PORT, or ws://HOST:PORT/mychat "
            "(for a room WebSocket /ws/ROOM use --url)"
        )
    tls = parts.scheme == "wss"
    try:
        port = parts.port or (443 if tls else 80)
    except ValueError:
        raise UsageError(f"bad port in {url!r}: expected 1-65535") from None
    return (
        parts.hostname,
        port,
        tls,
        f"{parts.scheme}://{_host_for_url(parts.hostname)}:{port}/mychat",
    )


def _room(value: str) -> str:
    try:
        return validate_room(value)
    except ChatError as e:
        raise UsageError(f"bad room: {e.message}") from None


def parse_address(value: str) -> tuple[str, int]:
    """``host:port`` or ``[v6addr]:port`` -> (host, port)."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not host:
        raise UsageError(f"bad address {value!r}: expected HOST:PORT")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, _port(port_text, value)


def _port(text: str, whole: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise UsageError(f"bad port in {whole!r}: expected 1-65535")
    return int(text)


def _host_for_url(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def parse_ws_url(url: str, room: str | None) -> tuple[str, int, bool, str, str]:
    """Split ``ws[s]://host[:port]/ws/ROOM`` into (host, port, tls, room, url).

    The room comes from the path, or from ``--room`` when the URL stops at
    the host (or at ``/ws``); the returned URL always names the room.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss"):
        raise UsageError(f"bad --url {url!r}: expected ws://HOST:PORT/ws/ROOM")
    if not parts.hostname:
        raise UsageError(f"bad --url {url!r}: no host")
    tls = parts.scheme == "wss"
    try:
        port = parts.port or (443 if tls else 80)
    except ValueError:
        raise UsageError(f"bad port in {url!r}: expected 1-65535") from None
    if parts.username or parts.password:
        raise UsageError("put credentials in --name and --password, not in the URL")
    path = parts.path.rstrip("/")
    if path in ("", "/ws"):
        if room is None:
            raise UsageError("give the room in the URL (ws://HOST:PORT/ws/ROOM) or --room")
        url_room = _room(room)
    else:
        prefix, _, last = path.rpartition("/")
        if prefix != "/ws" or not last:
            raise UsageError(f"bad --url {url!r}: expected ws://HOST:PORT/ws/ROOM")
        url_room = _room(unquote(last))
        if room is not None and room != url_room:
            raise UsageError(f"--room {room!r} does not match the room in --url ({url_room!r})")
    host = parts.hostname
    full = f"{parts.scheme}://{_host_for_url(host)}:{port}/ws/{quote(url_room, safe='')}"
    return host, port, tls, url_room, full
