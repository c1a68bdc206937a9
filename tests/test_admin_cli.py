"""``parkchat-admin``: parsing, output, error mapping and a real server.

The unit tests call ``parkchat.admin.main`` with their own environment and
streams. The error-mapping tests point it at a tiny ``http.server`` on a free
loopback port that answers whatever the test tells it to. The end-to-end
tests start ``twistd -n parkchat`` with ``PARKCHAT_ADMIN_TOKEN`` set (through
``tests.e2e_support``) and run the installed ``parkchat-admin`` script as a
subprocess, with the ``websockets`` sync client as the chat user being
moderated. Every server and socket started is stopped in cleanups; every wait
is bounded.
"""

from __future__ import annotations

import configparser
import io
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

from twisted.trial.unittest import TestCase

from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

import parkchat
from parkchat import admin
from tests.e2e_support import LOOPBACK, ParkchatProcess, basic_auth, free_port

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "admin-token-for-the-cli-tests-5d81c3e0a9f7b246"
TIMEOUT = 5.0


def run_main(
    *argv: str,
    environ: Mapping[str, str] | None = None,
    stdin: str = "",
    getpass: Callable[[str], str] | None = None,
) -> tuple[int, str, str]:
    """``admin.main`` in-process: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    code = admin.main(
        list(argv),
        environ={admin.TOKEN_ENV: TOKEN} if environ is None else environ,
        stdin=io.StringIO(stdin),
        stdout=out,
        stderr=err,
        getpass=getpass or (lambda prompt: "unused"),
    )
    return code, out.getvalue(), err.getvalue()


class DurationParsingTests(TestCase):
    """``parse_duration``: what ``ban --duration`` accepts."""

    def test_plain_seconds(self) -> None:
        """A bare number is seconds, fractions included."""
        self.assertEqual(admin.parse_duration("600"), 600)
        self.assertEqual(admin.parse_duration("0.5"), 0.5)

    def test_units(self) -> None:
        """s, m, h, d and w suffixes multiply, case-insensitively."""
        self.assertEqual(admin.parse_duration("90s"), 90)
        self.assertEqual(admin.parse_duration("10m"), 600)
        self.assertEqual(admin.parse_duration("2h"), 7200)
        self.assertEqual(admin.parse_duration("1d"), 86400)
        self.assertEqual(admin.parse_duration("1W"), 7 * 86400)
        self.assertEqual(admin.parse_duration("1.5h"), 5400)

    def test_sums(self) -> None:
        """Several parts add up; a trailing unitless number is seconds."""
        self.assertEqual(admin.parse_duration("1h30m"), 5400)
        self.assertEqual(admin.parse_duration("1d2h"), 93600)
        self.assertEqual(admin.parse_duration("1m30"), 90)

    def test_rejects_garbage(self) -> None:
        """Empty, unknown units, signs, words and inner numbers without a unit
        are refused."""
        for text in ("", " ", "h", "10x", "-5", "+5", "1e3", "inf", "nan", "1 h", "1h30x", "30 1h"):
            with self.subTest(text=text):
                self.assertRaises(ValueError, admin.parse_duration, text)

    def test_rejects_zero(self) -> None:
        """A ban must last: zero is not a duration."""
        for text in ("0", "0s", "0h0m", "0.0"):
            with self.subTest(text=text):
                self.assertRaises(ValueError, admin.parse_duration, text)


class ArgumentParsingTests(TestCase):
    """The command line, as ``build_parser`` and ``main`` read it."""

    def parse(self, *argv: str, environ: Mapping[str, str] | None = None) -> Any:
        return admin.build_parser(environ or {}).parse_args(list(argv))

    def test_subcommands(self) -> None:
        """Every subcommand parses into its fields, with defaults."""
        args = self.parse("rooms")
        self.assertEqual((args.command, args.json, args.url), ("rooms", False, admin.DEFAULT_URL))
        args = self.parse("users", "--limit", "5", "--after", "40")
        self.assertEqual((args.command, args.limit, args.after), ("users", 5, 40))
        args = self.parse("users")
        self.assertEqual((args.limit, args.after), (100, 0))
        self.assertEqual(self.parse("bans").command, "bans")
        args = self.parse("ban", "alice", "--reason", "spam", "--duration", "2h")
        self.assertEqual((args.nickname, args.reason, args.duration), ("alice", "spam", 7200))
        args = self.parse("ban", "alice")
        self.assertEqual((args.reason, args.duration), ("", None))
        self.assertEqual(self.parse("unban", "alice").nickname, "alice")
        args = self.parse("kick", "alice", "lounge", "--reason", "off topic")
        self.assertEqual((args.nickname, args.room, args.reason), ("alice", "lounge", "off topic"))
        args = self.parse("register", "bob")
        self.assertEqual((args.nickname, args.password_stdin), ("bob", False))

    def test_global_options(self) -> None:
        """--url, --token-file, --timeout and --json come before the command."""
        args = self.parse(
            "--url", "http://h:1", "--token-file", "/t", "--timeout", "2.5", "--json", "bans"
        )
        self.assertEqual(
            (args.url, args.token_file, args.timeout, args.json), ("http://h:1", "/t", 2.5, True)
        )

    def test_url_from_environment(self) -> None:
        """PARKCHAT_ADMIN_URL is the default --url; the flag overrides it."""
        environ = {admin.URL_ENV: "http://chat.internal:9000"}
        self.assertEqual(self.parse("rooms", environ=environ).url, "http://chat.internal:9000")
        args = self.parse("--url", "http://other:1", "rooms", environ=environ)
        self.assertEqual(args.url, "http://other:1")

    def assertUsageError(self, *argv: str, mentions: str) -> None:
        code, out, err = run_main(*argv)
        self.assertEqual(code, admin.EXIT_USAGE, err)
        self.assertEqual(out, "")
        self.assertEqual(len(err.splitlines()), 1, err)
        self.assertIn(mentions, err)
        self.assertNotIn("Traceback", err)

    def test_usage_errors_exit_2(self) -> None:
        """A bad command line is one line on stderr and exit status 2."""
        self.assertUsageError(mentions="required: COMMAND")
        self.assertUsageError("frobnicate", mentions="invalid choice")
        self.assertUsageError("ban", mentions="NICK")
        self.assertUsageError("kick", "alice", mentions="ROOM")
        self.assertUsageError("ban", "alice", "--duration", "soon", mentions="--duration")
        self.assertUsageError("users", "--limit", "0", mentions="between 1 and 1000")
        self.assertUsageError("users", "--limit", "1001", mentions="between 1 and 1000")
        self.assertUsageError("users", "--after", "-1", mentions="at least 0")
        self.assertUsageError("--timeout", "0", "rooms", mentions="positive")
        self.assertUsageError("rooms", "extra", mentions="unrecognized")

    def test_no_token_flag(self) -> None:
        """There is no --token option (argv shows in ps), and the refusal does
        not repeat the would-be token; abbreviations of --token-file are
        not accepted either."""
        for argv in (("--token", "s3cret", "rooms"), ("--token=s3cret", "rooms")):
            with self.subTest(argv=argv):
                code, _, err = run_main(*argv)
                self.assertEqual(code, admin.EXIT_USAGE)
                self.assertIn("no --token option", err)
                self.assertNotIn("s3cret", err)
        code, _, err = run_main("--token-f", "/some/file", "rooms")
        self.assertEqual(code, admin.EXIT_USAGE)
        self.assertNotIn("token file", err)

    def test_no_password_argument(self) -> None:
        """``register`` takes no password on the command line."""
        for argv in (("register", "bob", "hunter2"), ("register", "bob", "--password", "x")):
            with self.subTest(argv=argv):
                code, _, err = run_main(*argv)
                self.assertEqual(code, admin.EXIT_USAGE)
                self.assertIn("unrecognized arguments", err)

    def test_help_and_version_exit_0(self) -> None:
        """--help and --version are not errors."""
        code, out, _ = run_main("--version")
        self.assertEqual((code, out), (0, f"parkchat-admin {parkchat.__version__}\n"))
        code, out, _ = run_main("--help")
        self.assertEqual(code, 0)
        self.assertIn("usage: parkchat-admin", out)
        self.assertIn(admin.TOKEN_ENV, out)
        code, out, _ = run_main("ban", "--help")
        self.assertEqual(code, 0)
        self.assertIn("--duration", out)


class TokenAndUrlTests(TestCase):
    """Where the token and the server address come from."""

    def test_token_from_environment(self) -> None:
        """PARKCHAT_ADMIN_TOKEN is used, surrounding white space removed."""
        self.assertEqual(admin.read_token(None, {admin.TOKEN_ENV: f" {TOKEN}\n"}), TOKEN)

    def test_token_file_wins(self) -> None:
        """--token-file is read (trailing newline dropped) and preferred to
        the environment."""
        path = Path(self.mktemp())
        path.write_text(TOKEN + "\n")
        self.assertEqual(admin.read_token(str(path), {admin.TOKEN_ENV: "other"}), TOKEN)

    def test_missing_token(self) -> None:
        """No token, an empty file or an unreadable file is a usage error that
        says what to do."""
        error = self.assertRaises(admin.UsageError, admin.read_token, None, {})
        self.assertIn(admin.TOKEN_ENV, str(error))
        self.assertRaises(admin.UsageError, admin.read_token, None, {admin.TOKEN_ENV: "  "})
        empty = Path(self.mktemp())
        empty.write_text("\n")
        self.assertRaises(admin.UsageError, admin.read_token, str(empty), {})
        missing = self.mktemp()
        error = self.assertRaises(admin.UsageError, admin.read_token, missing, {})
        self.assertIn("cannot read", str(error))

    def test_missing_token_exit_2(self) -> None:
        """Without a token, ``main`` stops before any request, with status 2."""
        code, _, err = run_main("rooms", environ={})
        self.assertEqual(code, admin.EXIT_USAGE)
        self.assertIn("no admin token", err)

    def test_urls(self) -> None:
        """http(s) URLs with a host are accepted (trailing slash dropped,
        a path prefix kept); anything else is a usage error."""
        self.assertEqual(admin.check_url("http://127.0.0.1:8080/"), "http://127.0.0.1:8080")
        self.assertEqual(admin.check_url("https://h/chat/"), "https://h/chat")
        for url in ("127.0.0.1:8080", "ftp://h", "http://", "http://h:port", "http://h/?x=1"):
            with self.subTest(url=url):
                self.assertRaises(admin.UsageError, admin.check_url, url)


class OutputFormattingTests(TestCase):
    """The human-readable output."""

    def test_table(self) -> None:
        """Columns are padded to the widest cell; number columns align right;
        no trailing spaces."""
        text = admin.format_table(("ID", "NAME"), [(1, "alice"), (10, "bo")])
        self.assertEqual(text, "ID  NAME\n 1  alice\n10  bo")

    def test_rooms(self) -> None:
        """Rooms and their connection counts; a friendly line when empty."""
        data = {"rooms": [{"room": "lounge", "connections": 2}, {"room": "dev", "connections": 11}]}
        self.assertEqual(
            admin.format_rooms(data),
            "ROOM    CONNECTIONS\nlounge            2\ndev              11",
        )
        self.assertEqual(admin.format_rooms({"rooms": []}), "no rooms with members")

    def test_users(self) -> None:
        """Users with their id and whether they are online."""
        data = {
            "users": [
                {"user_id": 1, "nickname": "alice", "online": True},
                {"user_id": 2, "nickname": "bob", "online": False},
            ]
        }
        self.assertEqual(
            admin.format_users(data), "ID  NICKNAME  ONLINE\n 1  alice     yes\n 2  bob       no"
        )
        self.assertEqual(admin.format_users({"users": []}), "no users")

    def test_bans(self) -> None:
        """Bans with their times; a permanent ban says so; no reason is ``-``."""
        data = {
            "bans": [
                {
                    "user_id": 3,
                    "nickname": "mallory",
                    "reason": "spam",
                    "since": "2025-01-01T00:00:00.000Z",
                    "until": None,
                },
                {
                    "user_id": 12,
                    "nickname": "eve",
                    "reason": "",
                    "since": "2025-01-02T00:00:00.000Z",
                    "until": "2025-01-03T00:00:00.000Z",
                },
            ]
        }
        lines = admin.format_bans(data).splitlines()
        self.assertEqual(lines[0].split(), ["NICKNAME", "ID", "SINCE", "UNTIL", "REASON"])
        self.assertEqual(
            lines[1].split(), ["mallory", "3", "2025-01-01T00:00:00.000Z", "unbanned", "spam"]
        )
        self.assertEqual(
            lines[2].split(),
            ["eve", "12", "2025-01-02T00:00:00.000Z", "2025-01-03T00:00:00.000Z", "-"],
        )
        self.assertEqual(admin.format_bans({"bans": []}), "no bans")

    def test_one_line_results(self) -> None:
        """ban, unban, kick and register answer with one sentence."""
        self.assertEqual(
            admin.format_ban({"nickname": "eve", "reason": "spam", "until": None}),
            "banned eve until unbanned: spam",
        )
        self.assertEqual(
            admin.format_ban({"nickname": "eve", "reason": "", "until": "2025-01-03T00:00:00Z"}),
            "banned eve until 2025-01-03T00:00:00Z",
        )
        self.assertEqual(admin.format_unban("eve", {"unbanned": True}), "unbanned eve")
        self.assertEqual(admin.format_unban("eve", {"unbanned": False}), "eve was not banned")
        self.assertEqual(
            admin.format_kick("eve", "dev", {"kicked": 2}), "kicked eve from dev (2 connections)"
        )
        self.assertEqual(
            admin.format_kick("eve", "dev", {"kicked": 1}), "kicked eve from dev (1 connection)"
        )
        self.assertEqual(admin.format_kick("eve", "dev", {"kicked": 0}), "eve is not in dev")
        self.assertEqual(
            admin.format_register({"id": 7, "nickname": "eve"}), "registered eve (id 7)"
        )

    def test_edits(self) -> None:
        """``edits``: one line per recorded edit, oldest first."""
        data = {
            "id": 4,
            "edits": [
                {"old_body": "v0", "editor": "alice", "editor_id": 1, "edited_at": "T1"},
                {"old_body": "v1\nx", "editor": "mod", "editor_id": 2, "edited_at": "T2"},
            ],
        }
        self.assertEqual(
            admin.format_edits(4, data), "T1  alice replaced: v0\nT2  mod replaced: v1 x"
        )
        self.assertEqual(admin.format_edits(4, {"edits": []}), "message 4 was never edited")

    def test_control_characters_neutralised(self) -> None:
        """Text from the server cannot add lines or terminal escapes."""
        data = {"bans": [{"user_id": 1, "nickname": "x", "reason": "a\nb\x1b[2Jc\u202e"}]}
        text = admin.format_bans(data)
        self.assertEqual(len(text.splitlines()), 2)
        self.assertNotIn("\x1b", text)
        self.assertNotIn("\u202e", text)
        self.assertIn("a b [2Jc", text)


class PasswordTests(TestCase):
    """How ``register`` gets the new account's password."""

    def test_stdin_first_line(self) -> None:
        """--password-stdin takes the first line without its line ending,
        keeping other white space."""
        stdin = io.StringIO(" pass word \r\nsecond line\n")
        self.assertEqual(
            admin.read_password("bob", True, stdin, lambda p: "not asked"), " pass word "
        )

    def test_stdin_empty(self) -> None:
        """Nothing on stdin is a usage error, not an empty password."""
        self.assertRaises(
            admin.UsageError, admin.read_password, "bob", True, io.StringIO(""), input
        )

    def test_prompt_twice(self) -> None:
        """Without --password-stdin the password is asked for twice."""
        prompts: list[str] = []

        def ask(prompt: str) -> str:
            prompts.append(prompt)
            return "hunter2hunter2"

        self.assertEqual(admin.read_password("bob", False, io.StringIO(), ask), "hunter2hunter2")
        self.assertEqual(len(prompts), 2)
        self.assertIn("bob", prompts[0])

    def test_prompt_mismatch(self) -> None:
        """Two different answers are refused."""
        answers = iter(["one-password", "another-one"])
        error = self.assertRaises(
            admin.UsageError,
            admin.read_password,
            "bob",
            False,
            io.StringIO(),
            lambda prompt: next(answers),
        )
        self.assertIn("do not match", str(error))

    def test_prompt_eof(self) -> None:
        """End of input at the prompt is a usage error."""

        def ask(prompt: str) -> str:
            raise EOFError()

        self.assertRaises(admin.UsageError, admin.read_password, "bob", False, io.StringIO(), ask)


class _Answer:
    """What the fake server says next."""

    def __init__(
        self, status: int, body: bytes, content_type: str = "application/json", **headers: str
    ) -> None:
        self.status = status
        self.body = body
        self.headers = {"Content-Type": content_type, **headers}


class _FakeHandler(BaseHTTPRequestHandler):
    server: _FakeAdminServer

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.server.requests.append(
            {
                "method": self.command,
                "path": self.path,
                "authorization": self.headers.get("Authorization"),
                "content_type": self.headers.get("Content-Type"),
                "body": json.loads(body) if body else None,
            }
        )
        answer = self.server.answer
        self.send_response(answer.status)
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer.body)))
        self.end_headers()
        self.wfile.write(answer.body)

    do_GET = _answer
    do_POST = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _FakeAdminServer(HTTPServer):
    """An HTTP server on a free loopback port that records each request and
    answers with ``answer``."""

    def __init__(self) -> None:
        super().__init__((LOOPBACK, 0), _FakeHandler)
        self.requests: list[dict[str, Any]] = []
        self.answer = _Answer(200, b"{}")

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.server_address[1]}"


class ErrorMappingTests(TestCase):
    """Requests sent and answers mapped, against a fake admin API."""

    def fake_server(self) -> _FakeAdminServer:
        server = _FakeAdminServer()
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
        thread.start()

        def stop() -> None:
            server.shutdown()
            server.server_close()
            thread.join(TIMEOUT)

        self.addCleanup(stop)
        return server

    def setUp(self) -> None:
        self.server = self.fake_server()

    def run_against(self, *argv: str, answer: _Answer, stdin: str = "") -> tuple[int, str, str]:
        self.server.answer = answer
        return run_main("--url", self.server.url, *argv, stdin=stdin)

    def assertOneLineError(self, err: str, *mentions: str) -> None:
        self.assertEqual(len(err.splitlines()), 1, err)
        self.assertTrue(err.startswith("parkchat-admin: "), err)
        self.assertNotIn("Traceback", err)
        for text in mentions:
            self.assertIn(text, err)

    def test_requests(self) -> None:
        """Each command sends its method, path, bearer token and JSON body."""
        ok = _Answer(200, b"{}")
        self.run_against("rooms", answer=ok)
        self.run_against("users", "--limit", "7", "--after", "3", answer=ok)
        self.run_against("bans", answer=ok)
        self.run_against("ban", "eve", "--reason", "spam", "--duration", "10m", answer=ok)
        self.run_against("ban", "eve", "--duration", "0.5", answer=ok)
        self.run_against("unban", "eve", answer=ok)
        self.run_against("kick", "eve", "dev", "--reason", "off topic", answer=ok)
        self.run_against("register", "eve", "--password-stdin", answer=ok, stdin="pw-of-eve\n")
        seen = [(r["method"], r["path"], r["body"]) for r in self.server.requests]
        self.assertEqual(
            seen,
            [
                ("GET", "/admin/rooms", None),
                ("GET", "/admin/users?limit=7&after=3", None),
                ("GET", "/admin/bans", None),
                ("POST", "/admin/ban", {"nickname": "eve", "reason": "spam", "duration": 600}),
                ("POST", "/admin/ban", {"nickname": "eve", "reason": "", "duration": 0.5}),
                ("POST", "/admin/unban", {"nickname": "eve"}),
                ("POST", "/admin/kick", {"nickname": "eve", "room": "dev", "reason": "off topic"}),
                ("POST", "/admin/register", {"nickname": "eve", "password": "pw-of-eve"}),
            ],
        )
        for request in self.server.requests:
            self.assertEqual(request["authorization"], f"Bearer {TOKEN}")
            if request["method"] == "POST":
                self.assertEqual(request["content_type"], "application/json")

    def test_path_prefix(self) -> None:
        """A --url with a path (behind a reverse proxy) prefixes the API paths."""
        self.server.answer = _Answer(200, b'{"bans": []}')
        code, out, _ = run_main("--url", self.server.url + "/chat/", "bans")
        self.assertEqual((code, out), (0, "no bans\n"))
        self.assertEqual(self.server.requests[0]["path"], "/chat/admin/bans")

    def test_json_output(self) -> None:
        """--json prints the server's answer as JSON, unchanged."""
        data = {"rooms": [{"room": "caf\u00e9", "connections": 1}]}
        code, out, _ = self.run_against(
            "--json", "rooms", answer=_Answer(200, json.dumps(data).encode())
        )
        self.assertEqual(code, 0)
        self.assertEqual(json.loads(out), data)
        self.assertIn("caf\u00e9", out)

    def test_table_output(self) -> None:
        """Without --json the answer is a table on stdout."""
        body = b'{"rooms": [{"room": "lounge", "connections": 3}]}'
        code, out, err = self.run_against("rooms", answer=_Answer(200, body))
        self.assertEqual((code, err), (0, ""))
        self.assertEqual(out, "ROOM    CONNECTIONS\nlounge            3\n")

    def test_full_page_hint(self) -> None:
        """A full page of users says on stderr how to ask for the next one."""
        users = [{"user_id": i, "nickname": f"u{i}", "online": False} for i in (4, 9)]
        body = json.dumps({"users": users}).encode()
        code, out, err = self.run_against("users", "--limit", "2", answer=_Answer(200, body))
        self.assertEqual(code, 0)
        self.assertIn("u9", out)
        self.assertIn("--after 9", err)
        code, out, err = self.run_against("users", "--limit", "3", answer=_Answer(200, body))
        self.assertEqual(err, "")

    def test_server_error_message(self) -> None:
        """A JSON error is exit status 1 and its message on one line."""
        body = b'{"error": "unknown_recipient", "message": "no account \'eve\'"}'
        code, out, err = self.run_against("ban", "eve", answer=_Answer(404, body))
        self.assertEqual((code, out), (admin.EXIT_REFUSED, ""))
        self.assertOneLineError(err, "no account 'eve'", "unknown_recipient", "404")

    def test_unauthorized(self) -> None:
        """The admin API's 401 is reported as such."""
        body = b'{"error":"unauthorized","message":"admin token required"}'
        code, _, err = self.run_against(
            "rooms", answer=_Answer(401, body, **{"WWW-Authenticate": "Bearer"})
        )
        self.assertEqual(code, admin.EXIT_REFUSED)
        self.assertOneLineError(err, "admin token required")

    def test_multi_line_message(self) -> None:
        """A message with line breaks or escapes still prints as one line."""
        body = json.dumps({"error": "x", "message": "one\ntwo\x1b[31m"}).encode()
        code, _, err = self.run_against("rooms", answer=_Answer(400, body))
        self.assertEqual(code, admin.EXIT_REFUSED)
        self.assertOneLineError(err, "one two")
        self.assertNotIn("\x1b", err)

    def test_no_admin_api(self) -> None:
        """A non-JSON 404 (no admin token on the server) gets a hint."""
        answer = _Answer(404, b"<html>No Such Resource</html>", "text/html")
        code, _, err = self.run_against("rooms", answer=answer)
        self.assertEqual(code, admin.EXIT_REFUSED)
        self.assertOneLineError(err, "no admin API", "admin token")

    def test_non_json_error(self) -> None:
        """Any other error without a JSON body names the HTTP status."""
        code, _, err = self.run_against("rooms", answer=_Answer(502, b"bad gateway", "text/plain"))
        self.assertEqual(code, admin.EXIT_REFUSED)
        self.assertOneLineError(err, "502")

    def test_non_json_success(self) -> None:
        """A 200 that is not JSON is not a parkchat server."""
        code, _, err = self.run_against("rooms", answer=_Answer(200, b"OK", "text/plain"))
        self.assertEqual(code, admin.EXIT_REFUSED)
        self.assertOneLineError(err, "without JSON")

    def test_redirect_not_followed(self) -> None:
        """A redirect is not followed, so the token does not travel to
        wherever the server points."""
        elsewhere = self.fake_server()
        answer = _Answer(302, b"", Location=elsewhere.url + "/admin/rooms")
        code, _, err = self.run_against("rooms", answer=answer)
        self.assertEqual(code, admin.EXIT_REFUSED)
        self.assertOneLineError(err, "redirect")
        self.assertEqual(elsewhere.requests, [])

    def test_proxy_settings_ignored(self) -> None:
        """The token goes straight to --url even when the environment names a
        proxy."""
        self.server.answer = _Answer(200, b'{"rooms": []}')
        environ = {
            admin.TOKEN_ENV: TOKEN,
            "http_proxy": f"http://{LOOPBACK}:{free_port()}",
            "HTTP_PROXY": f"http://{LOOPBACK}:{free_port()}",
        }
        saved = {k: os.environ.get(k) for k in ("http_proxy", "HTTP_PROXY", "no_proxy", "NO_PROXY")}

        def restore() -> None:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

        self.addCleanup(restore)
        # urllib reads proxies from the process environment, not ours.
        for key in saved:
            os.environ.pop(key, None)
        os.environ.update({k: v for k, v in environ.items() if "proxy" in k.lower()})
        code, _, err = run_main("--url", self.server.url, "rooms", environ=environ)
        self.assertEqual((code, err), (0, ""))
        self.assertEqual(len(self.server.requests), 1)

    def test_connection_refused(self) -> None:
        """Nobody listening: one line, exit status 1, no traceback."""
        url = f"http://{LOOPBACK}:{free_port()}"
        code, out, err = run_main("--url", url, "rooms")
        self.assertEqual((code, out), (admin.EXIT_REFUSED, ""))
        self.assertOneLineError(err, "cannot reach", url)

    def test_timeout(self) -> None:
        """A server that never answers is given up on after --timeout."""
        listener = socket.socket()
        self.addCleanup(listener.close)
        listener.bind((LOOPBACK, 0))
        listener.listen(1)  # connections wait in the backlog, never answered
        url = f"http://{LOOPBACK}:{listener.getsockname()[1]}"
        code, _, err = run_main("--url", url, "--timeout", "0.2", "rooms")
        self.assertEqual(code, admin.EXIT_REFUSED)
        self.assertOneLineError(err, "no answer", "0.2 s")


def admin_command() -> list[str]:
    """The installed ``parkchat-admin`` script, or ``python -m parkchat.admin``
    when the package is not installed with its scripts."""
    script = Path(sys.executable).with_name("parkchat-admin")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "parkchat.admin"]


class EntryPointTests(TestCase):
    """The console script is declared and runs."""

    def test_declared_in_setup_cfg(self) -> None:
        """setup.cfg names ``parkchat.admin:main`` as ``parkchat-admin``."""
        config = configparser.ConfigParser()
        config.read(ROOT / "setup.cfg", encoding="utf-8")
        scripts = config["options.entry_points"]["console_scripts"].split("\n")
        self.assertIn("parkchat-admin = parkchat.admin:main", [s.strip() for s in scripts])

    def test_script_runs(self) -> None:
        """The command starts and prints its version."""
        result = subprocess.run(
            [*admin_command(), "--version"], capture_output=True, text=True, timeout=30
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("parkchat-admin", result.stdout)


class AdminEndToEndTests(TestCase):
    """``parkchat-admin`` against a real ``twistd -n parkchat`` process."""

    def setUp(self) -> None:
        self.server = ParkchatProcess(self.mktemp(), tcp=False, env={"PARKCHAT_ADMIN_TOKEN": TOKEN})
        self.server.start()
        self.addCleanup(self.server.stop)

    def cli(
        self, *argv: str, token: str | None = TOKEN, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run the installed command against the server."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PARKCHAT_")}
        env[admin.URL_ENV] = self.server.url("")
        if token is not None:
            env[admin.TOKEN_ENV] = token
        return subprocess.run(
            [*admin_command(), *argv],
            input=stdin if stdin is not None else "",
            capture_output=True,
            text=True,
            env=env,
            timeout=30,
        )

    def ok(self, *argv: str, stdin: str | None = None) -> str:
        """Run a command that must succeed; its stdout."""
        result = self.cli(*argv, stdin=stdin)
        self.assertEqual(result.returncode, 0, f"{argv}: {result.stderr}")
        self.assertNotIn("Traceback", result.stderr)
        return result.stdout

    def register(self, nickname: str) -> tuple[str, str]:
        password = f"{nickname}-password"
        out = self.ok("register", nickname, "--password-stdin", stdin=password + "\n")
        self.assertRegex(out, rf"^registered {nickname} \(id \d+\)\n$")
        return nickname, password

    def websocket(self, room: str, auth: tuple[str, str]) -> ClientConnection:
        """A member of ``room`` on ``/ws/{room}``, past its own join notice."""
        stack = ExitStack()
        self.addCleanup(stack.close)
        ws: ClientConnection = stack.enter_context(
            connect(
                self.server.ws_url(f"/ws/{room}"),
                additional_headers={"Authorization": basic_auth(*auth)},
                open_timeout=TIMEOUT,
                close_timeout=TIMEOUT,
            )
        )
        joined = json.loads(ws.recv(timeout=TIMEOUT))
        self.assertIn(auth[0], joined["content"])
        return ws

    def closed(self, ws: ClientConnection) -> ConnectionClosed:
        """Read until the server closes ``ws``; the close exception."""
        for _ in range(50):
            try:
                ws.recv(timeout=TIMEOUT)
            except ConnectionClosed as e:
                return e
        self.fail("the connection was not closed")

    def test_register_ban_unban(self) -> None:
        """Accounts made with the CLI can connect; a ban closes the live
        socket, shows in ``bans`` and refuses new connections (403) and Basic
        logins; ``unban`` lets the account back in."""
        alice = self.register("alice")
        self.register("bob")
        ws = self.websocket("lounge", alice)

        out = self.ok("ban", "alice", "--reason", "spam links", "--duration", "2h")
        self.assertRegex(out, r"^banned alice until \d{4}-\d\d-\d\dT[\d:.]+Z: spam links\n$")
        close = self.closed(ws)
        assert close.rcvd is not None
        self.assertEqual((close.rcvd.code, close.rcvd.reason), (1008, "banned"))

        lines = self.ok("bans").splitlines()
        self.assertEqual(lines[0].split(), ["NICKNAME", "ID", "SINCE", "UNTIL", "REASON"])
        self.assertEqual(lines[1].split()[:2], ["alice", "1"])
        self.assertTrue(lines[1].endswith("spam links"), lines[1])
        bans = json.loads(self.ok("--json", "bans"))["bans"]
        self.assertEqual([(b["nickname"], b["reason"]) for b in bans], [("alice", "spam links")])
        self.assertIsNotNone(bans[0]["until"])

        with self.assertRaises(InvalidStatus) as refused:
            self.websocket("lounge", alice)
        self.assertEqual(refused.exception.response.status_code, 403)
        status, body = self.server.request("/history/lounge", auth=alice)
        self.assertEqual(status, 403)
        self.assertEqual(json.loads(body)["error"], "banned")

        self.assertEqual(self.ok("unban", "alice"), "unbanned alice\n")
        self.assertEqual(self.ok("unban", "alice"), "alice was not banned\n")
        self.assertEqual(self.ok("bans"), "no bans\n")
        self.websocket("lounge", alice)

    def test_password(self) -> None:
        """``password`` sets a new one: the old is refused (even though the
        server had it cached as verified), the new works."""
        alice = self.register("alice")
        self.assertEqual(self.server.request("/history/lounge", auth=alice)[0], 200)
        out = self.ok("password", "alice", "--password-stdin", stdin="brand-new-pw\n")
        self.assertEqual(out, "new password set for alice; its login tokens no longer work\n")
        self.assertEqual(self.server.request("/history/lounge", auth=alice)[0], 401)
        self.assertEqual(
            self.server.request("/history/lounge", auth=("alice", "brand-new-pw"))[0], 200
        )
        result = self.cli("password", "nobody", "--password-stdin", stdin="x\n")
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertIn("no account", result.stderr)

    def test_delete(self) -> None:
        """``delete ID`` removes a message from the history and from the
        screens of /ws members; an unknown id is an error (exit 1)."""
        alice = self.register("alice")
        ws = self.websocket("lounge", alice)
        ws.send(json.dumps({"content": "regrettable"}))
        posted = json.loads(ws.recv(timeout=TIMEOUT))
        out = self.ok("delete", str(posted["id"]))
        self.assertEqual(out, f"deleted message {posted['id']} from lounge\n")
        status, body = self.server.request("/history/lounge", auth=alice)
        self.assertEqual((status, json.loads(body)), (200, []))
        result = self.cli("delete", str(posted["id"]))
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertIn("no message", result.stderr)

    def test_kick_and_rooms(self) -> None:
        """``rooms`` counts connections; ``kick`` closes the kicked member's
        room socket with the reason, the others see them leave."""
        alice = self.register("alice")
        bob = self.register("bob")
        self.assertEqual(self.ok("rooms"), "no rooms with members\n")
        ws_alice = self.websocket("lounge", alice)
        ws_bob = self.websocket("lounge", bob)
        self.websocket("dev", bob)
        self.assertEqual(
            self.ok("rooms"), "ROOM    CONNECTIONS\ndev               1\nlounge            2\n"
        )

        out = self.ok("kick", "bob", "lounge", "--reason", "off topic")
        self.assertEqual(out, "kicked bob from lounge (1 connection)\n")
        close = self.closed(ws_bob)
        assert close.rcvd is not None
        self.assertEqual(close.rcvd.code, 1008)
        self.assertIn("off topic", close.rcvd.reason)
        seen = [json.loads(ws_alice.recv(timeout=TIMEOUT)) for _ in range(2)]
        self.assertTrue(any("bob" in f.get("content", "") and "left" in f["content"] for f in seen))

        rooms = json.loads(self.ok("--json", "rooms"))["rooms"]
        self.assertEqual(
            rooms, [{"room": "dev", "connections": 1}, {"room": "lounge", "connections": 1}]
        )
        self.assertEqual(self.ok("kick", "bob", "lounge"), "bob is not in lounge\n")

    def test_users(self) -> None:
        """``users`` lists accounts by id with their online state, a page at a
        time."""
        carol = self.register("carol")
        self.register("dave")
        self.register("erin")
        self.websocket("lounge", carol)
        self.assertEqual(
            self.ok("users"),
            "ID  NICKNAME  ONLINE\n 1  carol     yes\n 2  dave      no\n 3  erin      no\n",
        )
        first = self.cli("users", "--limit", "2")
        self.assertEqual(first.returncode, 0)
        self.assertEqual(len(first.stdout.splitlines()), 3)
        self.assertIn("--after 2", first.stderr)
        self.assertEqual(
            self.ok("users", "--after", "2"), "ID  NICKNAME  ONLINE\n 3  erin      no\n"
        )
        users = json.loads(self.ok("--json", "users", "--limit", "1"))["users"]
        self.assertEqual(users, [{"user_id": 1, "nickname": "carol", "online": True}])

    def test_refusals(self) -> None:
        """What the server says no to is exit status 1 and its message on one
        line: a wrong token, a taken nickname, an unknown account."""
        result = self.cli("rooms", token="wrong-" + TOKEN)
        self.assertEqual((result.returncode, result.stdout), (1, ""))
        self.assertEqual(
            result.stderr, "parkchat-admin: admin token required (unauthorized, HTTP 401)\n"
        )
        self.register("alice")
        result = self.cli("register", "alice", "--password-stdin", stdin="another-password\n")
        self.assertEqual(result.returncode, 1)
        self.assertIn("nickname_taken", result.stderr)
        result = self.cli("ban", "nobody")
        self.assertEqual(result.returncode, 1)
        self.assertEqual(
            result.stderr, "parkchat-admin: no account 'nobody' (unknown_recipient, HTTP 404)\n"
        )

    def test_server_down(self) -> None:
        """A stopped server is one clear line and exit status 1."""
        self.server.stop()
        result = self.cli("bans")
        self.assertEqual(result.returncode, 1)
        self.assertEqual(len(result.stderr.splitlines()), 1, result.stderr)
        self.assertIn("cannot reach", result.stderr)
        self.assertNotIn("Traceback", result.stderr)


class AdminApiOffEndToEndTests(TestCase):
    """A server without an admin token has no admin API."""

    def test_no_admin_api(self) -> None:
        """The CLI explains the 404 instead of printing an HTML page."""
        server = ParkchatProcess(self.mktemp(), tcp=False)
        server.start()
        self.addCleanup(server.stop)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PARKCHAT_")}
        env[admin.TOKEN_ENV] = TOKEN
        result = subprocess.run(
            [*admin_command(), "--url", server.url(""), "rooms"],
            capture_output=True,
            text=True,
            env=env,
            timeout=30,
        )
        self.assertEqual(result.returncode, 1)
        self.assertIn("no admin API", result.stderr)
        self.assertEqual(len(result.stderr.splitlines()), 1)
