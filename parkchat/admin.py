"""``parkchat-admin``: moderate a running parkchat server over its admin API.

A thin, one-shot client of the ``/admin/...`` REST endpoints (see
docs/moderation.md)::

    export PARKCHAT_ADMIN_TOKEN=...            # or --token-file PATH
    parkchat-admin --url http://127.0.0.1:8080 rooms
    parkchat-admin users --limit 50 --after 120
    parkchat-admin ban alice --reason spam --duration 2h
    parkchat-admin unban alice
    parkchat-admin kick alice lounge --reason "off topic"
    parkchat-admin register bob                # asks for the password
    printf '%s\\n' "$PW" | parkchat-admin register bob --password-stdin
    parkchat-admin password bob                # a new password (asked for)
    parkchat-admin delete 4711                 # remove a message from its room
    parkchat-admin edits 4711                  # the texts a message had before its edits

The admin token is never taken from the command line (argv is visible to
every local user through ``ps``), nor are passwords. Requests go straight to
``--url``: proxy settings from the environment are ignored and redirects are
not followed, so the token is only ever sent where it was meant to go.

Exit status: 0 done; 1 the server refused the request (its message is printed
on one line) or could not be reached; 2 a bad command line or missing token.
It uses only the standard library: no reactor is needed for one request.
"""

from __future__ import annotations

import argparse
import getpass as getpass_module
import json
import math
import os
import re
import sys
import unicodedata
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from contextlib import redirect_stdout
from dataclasses import dataclass
from http.client import HTTPException
from typing import Any, NoReturn, TextIO
from urllib.parse import urlencode, urlsplit

from parkchat import __version__

PROG = "parkchat-admin"
DEFAULT_URL = "http://127.0.0.1:8080"
URL_ENV = "PARKCHAT_ADMIN_URL"
TOKEN_ENV = "PARKCHAT_ADMIN_TOKEN"
DEFAULT_TIMEOUT = 10.0
MAX_USERS_PAGE = 1000

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?|\.\d+)([smhdw]?)")


class UsageError(Exception):
    """The command line (or the environment it relies on) is unusable: exit 2."""


class AdminFailed(Exception):
    """The request did not succeed: the server refused it or was unreachable.

    ``str()`` is the one line to show the operator.
    """


class ServerRefused(AdminFailed):
    """The server answered with an error status."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.message} ({self.code}, HTTP {self.status})"


class Unreachable(AdminFailed):
    """No usable answer: refused connection, timeout, broken HTTP."""


# -- parsing -----------------------------------------------------------------


def parse_duration(text: str) -> float:
    """Seconds from ``600``, ``90s``, ``10m``, ``2h``, ``1d``, ``1w``,
    ``1.5h`` or a sum like ``1h30m``; a bare number is seconds.

    Raises ValueError for anything else, including zero.
    """
    compact = text.strip().lower()
    position = 0
    total = 0.0
    while position < len(compact):
        match = _DURATION_PART.match(compact, position)
        if match is None:
            break
        number, unit = match.groups()
        total += float(number) * _UNITS[unit or "s"]
        position = match.end()
        if not unit and position < len(compact):
            break  # a unitless number is only allowed at the end ("1h30" is not)
    if not compact or position != len(compact):
        raise ValueError(f"{text!r} is not a duration like 600, 10m, 2h or 1d")
    if not math.isfinite(total) or total <= 0:
        raise ValueError(f"{text!r}: a duration must be positive")
    return total


def _duration_arg(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from e


def _bounded_int(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum or (maximum is not None and value > maximum):
            bounds = f"between {minimum} and {maximum}" if maximum else f"at least {minimum}"
            raise argparse.ArgumentTypeError(f"{value} is out of range: must be {bounds}")
        return value

    return convert


def _timeout_arg(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError("the timeout must be a positive number of seconds")
    return value


class _Parser(argparse.ArgumentParser):
    """argparse that raises UsageError instead of exiting, so ``main`` keeps
    control of the exit status and of where messages go."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see {self.prog} --help)")


def build_parser(environ: Mapping[str, str] | None = None) -> argparse.ArgumentParser:
    """The command line; ``environ`` supplies the ``--url`` default."""
    environ = os.environ if environ is None else environ
    parser = _Parser(
        prog=PROG,
        # "--tok" must not quietly mean --token-file (and take a token as a path).
        allow_abbrev=False,
        description="Moderate a parkchat server through its admin API.",
        epilog=(
            f"The admin token comes from ${TOKEN_ENV} or --token-file, never from "
            "the command line. Exit status: 0 done, 1 refused by the server or "
            "server unreachable, 2 usage error."
        ),
    )
    parser.add_argument(
        "--url",
        default=environ.get(URL_ENV) or DEFAULT_URL,
        help=f"the server's HTTP address (default: ${URL_ENV} or {DEFAULT_URL})",
    )
    parser.add_argument(
        "--token-file",
        metavar="PATH",
        help=f"read the admin token from this file (default: ${TOKEN_ENV})",
    )
    parser.add_argument(
        "--timeout",
        type=_timeout_arg,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"give up on an unanswered request after this long (default: {DEFAULT_TIMEOUT:g})",
    )
    parser.add_argument(
        "--json", action="store_true", help="print the server's JSON answer instead of a table"
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    commands.add_parser("rooms", help="rooms with members and their connection counts")

    users = commands.add_parser("users", help="registered accounts, by id, a page at a time")
    users.add_argument(
        "--limit",
        type=_bounded_int(1, MAX_USERS_PAGE),
        default=100,
        metavar="N",
        help=f"at most N accounts (1-{MAX_USERS_PAGE}, default 100)",
    )
    users.add_argument(
        "--after",
        type=_bounded_int(0),
        default=0,
        metavar="ID",
        help="only accounts with an id above ID (the next page)",
    )

    commands.add_parser("bans", help="active bans")

    ban = commands.add_parser(
        "ban", help="ban an account: refuse its logins and close its connections"
    )
    ban.add_argument("nickname", metavar="NICK")
    ban.add_argument("--reason", default="", metavar="TEXT", help="shown to the banned user")
    ban.add_argument(
        "--duration",
        type=_duration_arg,
        metavar="SECONDS|10m|2h|1d",
        help="lift the ban automatically after this long (default: until unbanned)",
    )

    unban = commands.add_parser("unban", help="lift an account's ban")
    unban.add_argument("nickname", metavar="NICK")

    kick = commands.add_parser("kick", help="take an account's connections out of a room")
    kick.add_argument("nickname", metavar="NICK")
    kick.add_argument("room", metavar="ROOM")
    kick.add_argument("--reason", default="", metavar="TEXT", help="shown to the kicked user")

    delete = commands.add_parser("delete", help="remove a stored message from its room")
    delete.add_argument("message_id", metavar="ID", type=int)

    edits = commands.add_parser("edits", help="the recorded edits of a room message")
    edits.add_argument("message_id", metavar="ID", type=int)

    for name, text in (
        ("register", "create an account (the password is asked for, never an argument)"),
        ("password", "set an account's password; its login tokens stop working"),
    ):
        command = commands.add_parser(name, help=text)
        command.add_argument("nickname", metavar="NICK")
        command.add_argument(
            "--password-stdin",
            action="store_true",
            help="read the password from the first line of standard input",
        )
    return parser


def refuse_token_argument(arguments: Sequence[str]) -> None:
    """Explain, without echoing it, why a token on the command line is refused."""
    for argument in arguments:
        if argument == "--":
            return
        if argument == "--token" or argument.startswith("--token="):
            raise UsageError(
                "there is no --token option: the command line is visible to other "
                f"users (ps); set {TOKEN_ENV} or use --token-file PATH"
            )


def read_token(token_file: str | None, environ: Mapping[str, str]) -> str:
    """The admin token: from ``--token-file`` if given, else the environment
    (``PARKCHAT_ADMIN_TOKEN``, or the file ``PARKCHAT_ADMIN_TOKEN_FILE``
    names, as the server reads it)."""
    if token_file is None and not environ.get(TOKEN_ENV, "").strip():
        token_file = environ.get(TOKEN_ENV + "_FILE") or None
    if token_file is not None:
        try:
            with open(token_file, encoding="utf-8") as f:
                token = f.read().strip()
        except (OSError, UnicodeDecodeError) as e:
            raise UsageError(f"cannot read the token file {token_file}: {_reason(e)}") from e
        if not token:
            raise UsageError(f"the token file {token_file} is empty")
        return token
    token = environ.get(TOKEN_ENV, "").strip()
    if not token:
        raise UsageError(f"no admin token: set {TOKEN_ENV} or use --token-file PATH")
    return token


def check_url(url: str) -> str:
    """The base URL without a trailing slash; UsageError unless http(s)://host."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- raises ValueError for a bad port
    except ValueError as e:
        raise UsageError(f"bad --url {url!r}: {e}") from e
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"bad --url {url!r}: expected http://HOST:PORT or https://HOST")
    if parts.query or parts.fragment:
        raise UsageError(f"bad --url {url!r}: no query or fragment, please")
    return url.rstrip("/")


# -- HTTP --------------------------------------------------------------------


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Refuse redirects: urllib would repeat the Authorization header to
    wherever the server points, token included."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class AdminClient:
    """Blocking calls to ``/admin/...`` with a bearer token and a timeout.

    Each method returns the decoded JSON answer, or raises ServerRefused
    (error status) or Unreachable (no usable answer).
    """

    def __init__(self, base_url: str, token: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token
        self.timeout = timeout
        # No proxies from the environment, no redirects: see _NoRedirect.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())

    def rooms(self) -> Any:
        return self.request("GET", "/admin/rooms")

    def users(self, limit: int = 100, after: int = 0) -> Any:
        return self.request("GET", "/admin/users?" + urlencode({"limit": limit, "after": after}))

    def bans(self) -> Any:
        return self.request("GET", "/admin/bans")

    def ban(self, nickname: str, reason: str = "", duration: float | None = None) -> Any:
        body: dict[str, Any] = {"nickname": nickname, "reason": reason}
        if duration is not None:
            body["duration"] = int(duration) if duration == int(duration) else duration
        return self.request("POST", "/admin/ban", body)

    def unban(self, nickname: str) -> Any:
        return self.request("POST", "/admin/unban", {"nickname": nickname})

    def kick(self, nickname: str, room: str, reason: str = "") -> Any:
        return self.request(
            "POST", "/admin/kick", {"nickname": nickname, "room": room, "reason": reason}
        )

    def register(self, nickname: str, password: str) -> Any:
        return self.request("POST", "/admin/register", {"nickname": nickname, "password": password})

    def delete(self, message_id: int) -> Any:
        return self.request("POST", "/admin/delete", {"id": message_id})

    def edits(self, message_id: int) -> Any:
        return self.request("GET", f"/admin/messages/{message_id}/edits")

    def set_password(self, nickname: str, password: str) -> Any:
        return self.request("POST", "/admin/password", {"nickname": nickname, "password": password})

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """One request; the JSON answer of a 2xx response."""
        url = self.base_url + path
        data = None if body is None else json.dumps(body).encode("utf-8")
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self._token}")
        request.add_header("Accept", "application/json")
        request.add_header("User-Agent", f"{PROG}/{__version__}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as e:
            with e:
                raise self._refusal(e.code, e.reason, _read_quietly(e)) from None
        except urllib.error.URLError as e:
            if isinstance(e.reason, TimeoutError):
                raise Unreachable(
                    f"no answer from {self.base_url} within {self.timeout:g} s"
                ) from None
            raise Unreachable(f"cannot reach {self.base_url}: {_reason(e.reason)}") from None
        except TimeoutError:
            raise Unreachable(f"no answer from {self.base_url} within {self.timeout:g} s") from None
        except (OSError, HTTPException) as e:
            raise Unreachable(f"connection to {self.base_url} failed: {_reason(e)}") from None
        try:
            return json.loads(raw)
        except ValueError:
            raise Unreachable(
                f"{self.base_url} answered HTTP {status} without JSON: is --url a parkchat server?"
            ) from None

    def _refusal(self, status: int, reason: object, raw: bytes) -> ServerRefused:
        try:
            data = json.loads(raw)
        except ValueError:
            data = None
        if isinstance(data, dict) and isinstance(data.get("message"), str):
            return ServerRefused(status, str(data.get("error", "error")), data["message"])
        if status == 404:
            message = "no admin API at this address: does the server have an admin token set?"
        elif 300 <= status < 400:
            message = "the server redirects (not followed, to keep the token here): check --url"
        else:
            message = f"the server answered {reason or 'an error'}"
        return ServerRefused(status, "http_error", message)


def _read_quietly(response: urllib.error.HTTPError) -> bytes:
    try:
        return response.read(64 * 1024)
    except (OSError, HTTPException):
        return b""


def _reason(error: object) -> str:
    """A short description of an OS or network error."""
    if isinstance(error, OSError) and error.strerror:
        return str(error.strerror)
    return str(error) or type(error).__name__


# -- output ------------------------------------------------------------------


def clean(value: object) -> str:
    """One line of printable text: control characters from the server (a ban
    reason, say) must not move the cursor or forge lines in a terminal."""
    text = "" if value is None else str(value)
    return "".join(
        " " if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp", "Cs") else ch for ch in text
    )


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Columns padded to their widest cell, numbers aligned right."""
    cells = [[clean(c) for c in row] for row in rows]
    numeric = [
        bool(rows) and all(isinstance(row[i], int) and not isinstance(row[i], bool) for row in rows)
        for i in range(len(headers))
    ]
    widths = [max([len(h)] + [len(row[i]) for row in cells]) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        padded = [
            v.rjust(w) if right else v.ljust(w)
            for v, w, right in zip(values, widths, numeric, strict=True)
        ]
        return "  ".join(padded).rstrip()

    return "\n".join([line(headers)] + [line(row) for row in cells])


def format_rooms(data: Mapping[str, Any]) -> str:
    rooms = data.get("rooms") or []
    if not rooms:
        return "no rooms with members"
    return format_table(
        ("ROOM", "CONNECTIONS"), [(r.get("room"), r.get("connections")) for r in rooms]
    )


def format_users(data: Mapping[str, Any]) -> str:
    users = data.get("users") or []
    if not users:
        return "no users"
    return format_table(
        ("ID", "NICKNAME", "ONLINE"),
        [(u.get("user_id"), u.get("nickname"), "yes" if u.get("online") else "no") for u in users],
    )


def format_bans(data: Mapping[str, Any]) -> str:
    bans = data.get("bans") or []
    if not bans:
        return "no bans"
    return format_table(
        ("NICKNAME", "ID", "SINCE", "UNTIL", "REASON"),
        [
            (
                b.get("nickname"),
                b.get("user_id"),
                b.get("since"),
                b.get("until") or "unbanned",
                b.get("reason") or "-",
            )
            for b in bans
        ],
    )


def format_ban(data: Mapping[str, Any]) -> str:
    until = data.get("until")
    when = f"until {until}" if until else "until unbanned"
    reason = f": {data['reason']}" if data.get("reason") else ""
    return clean(f"banned {data.get('nickname')} {when}{reason}")


def format_unban(nickname: str, data: Mapping[str, Any]) -> str:
    if data.get("unbanned"):
        return clean(f"unbanned {nickname}")
    return clean(f"{nickname} was not banned")


def format_kick(nickname: str, room: str, data: Mapping[str, Any]) -> str:
    count = data.get("kicked") or 0
    plural = "connection" if count == 1 else "connections"
    if data.get("forwarded"):
        # Other instances apply the kick too and do not report back.
        return clean(
            f"kicked {nickname} from {room} ({count} {plural} on the instance that answered; "
            "the other instances were told)"
        )
    if not count:
        return clean(f"{nickname} is not in {room}")
    return clean(f"kicked {nickname} from {room} ({count} {plural})")


def format_register(data: Mapping[str, Any]) -> str:
    return clean(f"registered {data.get('nickname')} (id {data.get('id')})")


# -- the command ---------------------------------------------------------------


@dataclass
class _Streams:
    stdin: TextIO
    stdout: TextIO
    stderr: TextIO


def read_password(
    nickname: str,
    from_stdin: bool,
    stdin: TextIO,
    ask: Callable[[str], str],
) -> str:
    """The new account's password: the first line of stdin, or asked twice."""
    if from_stdin:
        line = stdin.readline()
        if not line:
            raise UsageError("--password-stdin: standard input is empty")
        return line.rstrip("\r\n")
    try:
        password = ask(f"Password for {nickname}: ")
        again = ask("Repeat the password: ")
    except EOFError:
        raise UsageError("no password given (use --password-stdin to pipe one)") from None
    if password != again:
        raise UsageError("the passwords do not match")
    return password


def format_edits(message_id: int, data: Any) -> str:
    """One line per recorded edit, oldest first: when, who, the text it replaced."""
    edits = data.get("edits") or []
    if not edits:
        return f"message {message_id} was never edited"
    return "\n".join(
        clean(f"{e.get('edited_at')}  {e.get('editor')} replaced: {e.get('old_body')}")
        for e in edits
    )


def run(
    args: argparse.Namespace,
    client: AdminClient,
    streams: _Streams,
    ask: Callable[[str], str],
) -> None:
    """Carry out one parsed command and print its result."""
    data: Any
    text: str
    if args.command == "rooms":
        data = client.rooms()
        text = format_rooms(data)
    elif args.command == "users":
        data = client.users(args.limit, args.after)
        text = format_users(data)
        users = data.get("users") or []
        if not args.json and len(users) >= args.limit:
            last = users[-1].get("user_id")
            print(f"(more may follow: {PROG} users --after {last})", file=streams.stderr)
    elif args.command == "bans":
        data = client.bans()
        text = format_bans(data)
    elif args.command == "ban":
        data = client.ban(args.nickname, args.reason, args.duration)
        text = format_ban(data)
    elif args.command == "unban":
        data = client.unban(args.nickname)
        text = format_unban(args.nickname, data)
    elif args.command == "kick":
        data = client.kick(args.nickname, args.room, args.reason)
        text = format_kick(args.nickname, args.room, data)
    elif args.command == "register":
        password = read_password(args.nickname, args.password_stdin, streams.stdin, ask)
        data = client.register(args.nickname, password)
        text = format_register(data)
    elif args.command == "delete":
        data = client.delete(args.message_id)
        text = clean(f"deleted message {args.message_id} from {data.get('room')}")
    elif args.command == "edits":
        data = client.edits(args.message_id)
        text = format_edits(args.message_id, data)
    elif args.command == "password":
        password = read_password(args.nickname, args.password_stdin, streams.stdin, ask)
        data = client.set_password(args.nickname, password)
        text = clean(f"new password set for {args.nickname}; its login tokens no longer work")
    else:  # pragma: no cover -- argparse only accepts the commands above
        raise UsageError(f"unknown command {args.command!r}")
    if args.json:
        text = json.dumps(data, indent=2, ensure_ascii=False)
    print(text, file=streams.stdout)


def main(
    argv: Sequence[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    getpass: Callable[[str], str] | None = None,
) -> int:
    """Run ``parkchat-admin``; return the exit status.

    The keyword arguments replace the process's environment, streams and
    password prompt (tests use them).
    """
    environ = os.environ if environ is None else environ
    streams = _Streams(stdin or sys.stdin, stdout or sys.stdout, stderr or sys.stderr)
    ask = getpass if getpass is not None else getpass_module.getpass
    arguments = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(environ)
    try:
        refuse_token_argument(arguments)
        with redirect_stdout(streams.stdout):  # --help and --version
            args = parser.parse_args(arguments)
    except UsageError as e:
        print(f"{PROG}: {e}", file=streams.stderr)
        return EXIT_USAGE
    except SystemExit as e:  # --help and --version print and exit 0
        return e.code if isinstance(e.code, int) else EXIT_OK
    try:
        client = AdminClient(
            check_url(args.url), read_token(args.token_file, environ), args.timeout
        )
        run(args, client, streams, ask)
    except UsageError as e:
        print(f"{PROG}: {clean(e)}", file=streams.stderr)
        return EXIT_USAGE
    except AdminFailed as e:
        print(f"{PROG}: {clean(e)}", file=streams.stderr)
        return EXIT_REFUSED
    except KeyboardInterrupt:
        print(file=streams.stderr)
        return 130
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
