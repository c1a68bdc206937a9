"""The REST surface (MISSION section A) through the real resource tree.

Every request goes through ``treq.testing.StubTreq`` over the resource of
``make_site``: no sockets, no threads, a fake clock, bcrypt inline at cost 4.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from treq.testing import StubTreq
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase
from twisted.web.iweb import IResponse

from parkchat.auth import PasswordHasher, VerifiedCredentials, check_password_blocking
from parkchat.limits import Limits
from parkchat.model import Message
from parkchat.store.memory import MemoryStore
from parkchat.tap import build_chat_service
from tests.helpers import TEST_ROUNDS, FakeParticipant, make_service, site_for

BASE = "http://parkchat.test"

#: 2025-09-08T15:30:00Z, so timestamps look like the seed's.
START = 1_757_345_400.0

RFC3339_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z\Z")


def basic(nickname: str, password: str) -> str:
    """An ``Authorization`` header value for HTTP Basic."""
    token = base64.b64encode(f"{nickname}:{password}".encode()).decode("ascii")
    return f"Basic {token}"


class RestCase(TestCase):
    """Shared set-up: a started ChatService, its site, and a StubTreq."""

    limits: Limits | None = Limits(rate_limit=0)

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(START)
        self.service, self.store, _ = make_service(clock=self.clock, limits=self.limits)
        self.addCleanup(self.service.stopService)
        self.site = site_for(self.service, access_log=False)
        self.stub: Any = StubTreq(self.site.resource)

    def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
    ) -> tuple[IResponse, bytes]:
        """Make one request and return the response with its whole body."""
        all_headers = dict(headers or {})
        if auth is not None:
            all_headers["Authorization"] = basic(*auth)
        d = self.stub.request(method, BASE + path, data=body, headers=all_headers)
        self.stub.flush()
        response = self.successResultOf(d)
        content = self.stub.content(response)
        self.stub.flush()
        return response, self.successResultOf(content)

    def json_request(self, method: str, path: str, **kwargs: Any) -> tuple[IResponse, Any]:
        """Like ``request``, and check that the answer is JSON."""
        response, body = self.request(method, path, **kwargs)
        self.assertTrue(
            header(response, "Content-Type").startswith("application/json"),
            f"{method} {path} answered {header(response, 'Content-Type')!r}: {body!r}",
        )
        return response, json.loads(body)

    def assertError(
        self, response: IResponse, data: Any, status: int, code: str | None = None
    ) -> None:
        """An error answer: the status and a JSON ``{"error", "message"}`` body."""
        self.assertEqual(response.code, status, data)
        self.assertIsInstance(data, dict)
        self.assertEqual(set(data), {"error", "message"})
        self.assertIsInstance(data["message"], str)
        self.assertTrue(data["message"])
        if code is not None:
            self.assertEqual(data["error"], code)

    def register(self, nickname: str = "alice", password: str = "s3cret") -> dict[str, Any]:
        response, data = self.json_request(
            "POST",
            "/register",
            body=json.dumps({"nickname": nickname, "password": password}).encode(),
        )
        self.assertEqual(response.code, 201, data)
        return data

    def post_messages(self, room: str, contents: list[str], nickname: str = "alice") -> None:
        """Post through the service as a connected member and commit."""
        member = FakeParticipant(nickname, user_id=1)
        self.service.connect(member)
        self.service.join(member, room)
        for content in contents:
            self.service.post(member, room, content)
            self.clock.advance(0.001)  # distinct timestamps; commits the batch too
        self.clock.advance(0)
        self.service.disconnect(member)


def header(response: IResponse, name: str) -> str:
    values = response.headers.getRawHeaders(name)
    return values[0] if values else ""


class RegisterTests(RestCase):
    """``POST /register``."""

    def test_created(self) -> None:
        """A new account answers 201 with its real id and nickname."""
        data = self.register("alice", "s3cret")
        self.assertEqual(data["nickname"], "alice")
        self.assertIsInstance(data["id"], int)
        self.assertGreater(data["id"], 0)

    def test_registered_account_authenticates(self) -> None:
        """The password given at registration opens ``/history``."""
        self.register("alice", "s3cret")
        response, data = self.json_request("GET", "/history/lobby", auth=("alice", "s3cret"))
        self.assertEqual(response.code, 200)
        self.assertEqual(data, [])

    def test_username_alias(self) -> None:
        """``username`` is accepted in place of ``nickname``."""
        response, data = self.json_request(
            "POST", "/register", body=b'{"username": "bob", "password": "pw"}'
        )
        self.assertEqual(response.code, 201, data)
        self.assertEqual(data["nickname"], "bob")

    def test_duplicate(self) -> None:
        """Registering a taken nickname answers 409."""
        self.register("alice")
        response, data = self.json_request(
            "POST", "/register", body=b'{"nickname": "alice", "password": "other"}'
        )
        self.assertError(response, data, 409, "nickname_taken")

    def test_duplicate_case_insensitive(self) -> None:
        """``Alice`` and ``alice`` are the same account name: 409."""
        self.register("alice")
        response, data = self.json_request(
            "POST", "/register", body=b'{"nickname": "ALICE", "password": "other"}'
        )
        self.assertError(response, data, 409, "nickname_taken")

    def test_duplicate_keeps_first_password(self) -> None:
        """A refused duplicate does not change the first account's password."""
        self.register("alice", "first")
        self.json_request("POST", "/register", body=b'{"nickname": "alice", "password": "2nd"}')
        response, _ = self.request("GET", "/history/x", auth=("alice", "first"))
        self.assertEqual(response.code, 200)
        response, _ = self.request("GET", "/history/x", auth=("alice", "2nd"))
        self.assertEqual(response.code, 401)

    def test_bad_bodies(self) -> None:
        """Invalid JSON, a non-object, missing or empty fields and a bad
        nickname each answer 400 with a JSON error."""
        cases: list[tuple[bytes, str]] = [
            (b"", "invalid_request"),
            (b"{nickname", "invalid_request"),
            (b'["alice", "pw"]', "invalid_request"),
            (b'"alice"', "invalid_request"),
            (b"null", "invalid_request"),
            (b'{"password": "pw"}', "invalid_nickname"),
            (b'{"nickname": "", "password": "pw"}', "invalid_nickname"),
            (b'{"nickname": 42, "password": "pw"}', "invalid_nickname"),
            (b'{"nickname": "alice"}', "invalid_password"),
            (b'{"nickname": "alice", "password": ""}', "invalid_password"),
            (b'{"nickname": "alice", "password": null}', "invalid_password"),
            (b'{"nickname": "bad nick", "password": "pw"}', "invalid_nickname"),
            (b'{"nickname": "a:b", "password": "pw"}', "invalid_nickname"),
            (b'{"nickname": "-dash", "password": "pw"}', "invalid_nickname"),
            (b'{"nickname": "' + b"n" * 33 + b'", "password": "pw"}', "invalid_nickname"),
            (b"\xff\xfe", "invalid_request"),
        ]
        for body, code in cases:
            response, data = self.json_request("POST", "/register", body=body)
            self.assertError(response, data, 400, code)
        # None of them created anything.
        self.register("alice")

    def test_body_too_large(self) -> None:
        """A body over the size limit is refused with 400, not parsed."""
        body = json.dumps({"nickname": "alice", "password": "x" * 70_000}).encode()
        response, data = self.json_request("POST", "/register", body=body)
        self.assertError(response, data, 400, "invalid_request")

    def test_get_not_allowed(self) -> None:
        """``GET /register`` is 405 with ``Allow: POST`` and a JSON body."""
        response, data = self.json_request("GET", "/register")
        self.assertError(response, data, 405, "method_not_allowed")
        self.assertEqual(header(response, "Allow"), "POST")


class HistoryAuthTests(RestCase):
    """``GET /history/{room}`` refuses requests without valid Basic credentials."""

    def setUp(self) -> None:
        super().setUp()
        self.register("alice", "s3cret")

    def assertUnauthorized(self, response: IResponse, data: Any) -> None:
        self.assertError(response, data, 401, "unauthorized")
        self.assertEqual(
            response.headers.getRawHeaders("WWW-Authenticate"), ['Basic realm="parkchat"']
        )

    def test_no_credentials(self) -> None:
        """Without ``Authorization`` the answer is 401 with the Basic challenge."""
        self.assertUnauthorized(*self.json_request("GET", "/history/lobby"))

    def test_wrong_password(self) -> None:
        """A wrong password is 401 with the challenge."""
        self.assertUnauthorized(*self.json_request("GET", "/history/lobby", auth=("alice", "no")))

    def test_unknown_account(self) -> None:
        """An unknown nickname is 401, told apart from a wrong password by
        nothing in the answer."""
        unknown = self.json_request("GET", "/history/lobby", auth=("mallory", "s3cret"))
        wrong = self.json_request("GET", "/history/lobby", auth=("alice", "nope"))
        self.assertUnauthorized(*unknown)
        self.assertEqual(unknown[1], wrong[1])

    def test_malformed_headers(self) -> None:
        """Broken ``Authorization`` headers are 401 with the challenge, never 500."""
        no_colon = base64.b64encode(b"alice").decode()
        bad_utf8 = base64.b64encode(b"\xff\xfe:pw").decode()
        for value in [
            "Basic",
            "Basic ",
            "Basic !!!not-base64!!!",
            f"Basic {no_colon}",
            f"Basic {bad_utf8}",
            "Bearer abc.def.ghi",
            "Digest username=alice",
            basic("", "s3cret"),
            basic("alice", ""),
            basic("alice", "x" * 2000),
        ]:
            response, data = self.json_request(
                "GET", "/history/lobby", headers={"Authorization": value}
            )
            self.assertUnauthorized(response, data)

    def test_case_insensitive_scheme_and_nickname(self) -> None:
        """``basic`` in lower case and the nickname in another case both work."""
        token = base64.b64encode(b"ALICE:s3cret").decode()
        response, data = self.json_request(
            "GET", "/history/lobby", headers={"Authorization": f"basic {token}"}
        )
        self.assertEqual(response.code, 200, data)

    def test_password_with_colon(self) -> None:
        """Only the first ``:`` splits nickname from password."""
        self.register("bob", "a:b:c")
        response, _ = self.request("GET", "/history/lobby", auth=("bob", "a:b:c"))
        self.assertEqual(response.code, 200)


class HistoryTests(RestCase):
    """``GET /history/{room}`` with valid credentials."""

    def setUp(self) -> None:
        super().setUp()
        self.register("alice", "s3cret")
        self.auth = ("alice", "s3cret")

    def history(self, path: str) -> Any:
        response, data = self.json_request("GET", path, auth=self.auth)
        self.assertEqual(response.code, 200, data)
        return data

    def test_unknown_room(self) -> None:
        """A room nobody wrote in is ``[]``, never ``null``."""
        response, body = self.request("GET", "/history/nowhere", auth=self.auth)
        self.assertEqual(response.code, 200)
        self.assertEqual(json.loads(body), [])

    def test_fields(self) -> None:
        """Each message has a real id, the room, the nickname, the content, an
        RFC 3339 UTC timestamp and type ``chat`` -- and nothing else."""
        self.post_messages("lobby", ["Hello World!"])
        [message] = self.history("/history/lobby")
        self.assertEqual(
            set(message), {"id", "chat_room", "nickname", "content", "timestamp", "type"}
        )
        self.assertIsInstance(message["id"], int)
        self.assertGreater(message["id"], 0)
        self.assertEqual(message["chat_room"], "lobby")
        self.assertEqual(message["nickname"], "alice")
        self.assertEqual(message["content"], "Hello World!")
        self.assertEqual(message["type"], "chat")
        self.assertRegex(message["timestamp"], RFC3339_UTC)
        parsed = datetime.fromisoformat(message["timestamp"].replace("Z", "+00:00"))
        self.assertEqual(parsed.timestamp(), START)

    def test_last_fifty_oldest_first(self) -> None:
        """Without ``limit`` the answer is the last 50 messages, oldest first,
        ids strictly increasing."""
        self.post_messages("lobby", [f"m{i}" for i in range(60)])
        messages = self.history("/history/lobby")
        self.assertEqual([m["content"] for m in messages], [f"m{i}" for i in range(10, 60)])
        ids = [m["id"] for m in messages]
        self.assertEqual(ids, sorted(set(ids)))

    def test_position_header(self) -> None:
        """``Parkchat-Seq`` gives the room position of the newest message in
        the answer (where a client resumes with ``/ws/{room}?since=``), also
        when the answer comes from the encoded cache; none for no messages."""
        response, _ = self.request("GET", "/history/lobby", auth=self.auth)
        self.assertIsNone(response.headers.getRawHeaders("parkchat-seq"))
        self.post_messages("lobby", ["a", "b", "c"])
        for path in ("/history/lobby", "/history/lobby", "/history/lobby?limit=1"):
            response, _ = self.request("GET", path, auth=self.auth)
            self.assertEqual(header(response, "Parkchat-Seq"), "3")
        response, _ = self.request("GET", "/history/lobby?limit=1&before=2", auth=self.auth)
        self.assertEqual(header(response, "Parkchat-Seq"), "1")

    def test_rooms_isolated(self) -> None:
        """A room's history holds only that room's messages."""
        self.post_messages("a", ["in a"])
        self.post_messages("b", ["in b"])
        self.assertEqual([m["content"] for m in self.history("/history/a")], ["in a"])
        self.assertEqual([m["content"] for m in self.history("/history/b")], ["in b"])

    def test_limit(self) -> None:
        """``?limit=N`` returns the last N, up to 200."""
        self.post_messages("lobby", [f"m{i}" for i in range(210)])
        self.assertEqual(
            [m["content"] for m in self.history("/history/lobby?limit=3")], ["m207", "m208", "m209"]
        )
        self.assertEqual(len(self.history("/history/lobby?limit=200")), 200)
        self.assertEqual(len(self.history("/history/lobby?limit=1")), 1)

    def test_bad_limit(self) -> None:
        """``limit`` 0, 201, negative, empty or not an integer is 400."""
        for value in ["0", "201", "-1", "abc", "1.5", ""]:
            response, data = self.json_request(
                "GET", f"/history/lobby?limit={value}", auth=self.auth
            )
            self.assertError(response, data, 400, "invalid_request")

    def test_bad_before_after(self) -> None:
        """Non-integer or negative ``before``/``after`` is 400."""
        for query in ["before=x", "after=x", "before=-1", "after=-5"]:
            response, data = self.json_request("GET", f"/history/lobby?{query}", auth=self.auth)
            self.assertError(response, data, 400, "invalid_request")

    def test_paging_backwards(self) -> None:
        """``?before=ID`` pages back through older messages until ``[]``."""
        self.post_messages("lobby", [f"m{i}" for i in range(25)])
        seen: list[str] = []
        page = self.history("/history/lobby?limit=10")
        while page:
            seen[:0] = [m["content"] for m in page]
            page = self.history(f"/history/lobby?limit=10&before={page[0]['id']}")
        self.assertEqual(seen, [f"m{i}" for i in range(25)])

    def test_paging_forwards(self) -> None:
        """``?after=ID`` returns the first messages newer than ID."""
        self.post_messages("lobby", [f"m{i}" for i in range(25)])
        seen: list[str] = []
        page = self.history("/history/lobby?limit=10&after=0")
        while page:
            seen.extend(m["content"] for m in page)
            page = self.history(f"/history/lobby?limit=10&after={page[-1]['id']}")
        self.assertEqual(seen, [f"m{i}" for i in range(25)])

    def test_percent_encoded_room(self) -> None:
        """A percent-encoded room name is decoded once: ``caf%C3%A9`` is
        ``café``, and ``%25`` stays a literal ``%``."""
        self.post_messages("café", ["crème"])
        self.post_messages("100%", ["full"])
        [message] = self.history("/history/caf%C3%A9")
        self.assertEqual(message["chat_room"], "café")
        self.assertEqual(message["content"], "crème")
        self.assertEqual([m["content"] for m in self.history("/history/100%25")], ["full"])
        self.assertEqual(self.history("/history/100%2525"), [])

    def test_space_in_room(self) -> None:
        """``%20`` in the path is a space in the room name."""
        self.post_messages("two words", ["hi"])
        self.assertEqual([m["content"] for m in self.history("/history/two%20words")], ["hi"])

    def test_extra_segments(self) -> None:
        """More than one path segment, or none, is 404 JSON."""
        for path in ["/history/a/b", "/history/a/", "/history/", "/history"]:
            response, data = self.json_request("GET", path, auth=self.auth)
            self.assertError(response, data, 404, "not_found")

    def test_invalid_room_name(self) -> None:
        """A room name breaking the naming rules is 400 JSON."""
        for path in ["/history/" + "r" * 65, "/history/%01ctl", "/history/%20lead"]:
            response, data = self.json_request("GET", path, auth=self.auth)
            self.assertError(response, data, 400, "invalid_room")

    def test_delete_not_allowed(self) -> None:
        """``DELETE /history/x`` is 405 with ``Allow`` and a JSON body."""
        response, data = self.json_request("DELETE", "/history/x", auth=self.auth)
        self.assertError(response, data, 405, "method_not_allowed")
        self.assertEqual(header(response, "Allow"), "GET, HEAD")

    def test_post_not_allowed(self) -> None:
        """``POST /history/x`` is 405 too, before any authentication."""
        response, data = self.json_request("POST", "/history/x", body=b"{}")
        self.assertError(response, data, 405, "method_not_allowed")


class HealthTests(RestCase):
    """``GET /health`` and method handling of the other fixed pages."""

    def test_ok(self) -> None:
        """``GET /health`` is 200 with the plain text body ``OK``."""
        response, body = self.request("GET", "/health")
        self.assertEqual(response.code, 200)
        self.assertEqual(body, b"OK")
        self.assertTrue(header(response, "Content-Type").startswith("text/plain"))

    def test_head(self) -> None:
        """``HEAD /health`` is 200 with the headers of GET and no body."""
        response, body = self.request("HEAD", "/health")
        self.assertEqual(response.code, 200)
        self.assertEqual(body, b"")
        self.assertEqual(header(response, "Content-Length"), "2")

    def test_wrong_method(self) -> None:
        """``POST /health`` is 405 with ``Allow: GET, HEAD`` and a JSON body."""
        response, data = self.json_request("POST", "/health", body=b"x")
        self.assertError(response, data, 405, "method_not_allowed")
        self.assertEqual(header(response, "Allow"), "GET, HEAD")

    def test_unknown_path(self) -> None:
        """An unknown top-level path is 404."""
        response, _ = self.request("GET", "/nope")
        self.assertEqual(response.code, 404)

    def test_ws_needs_credentials(self) -> None:
        """``GET /ws/{room}`` without credentials is 401 with the Basic
        challenge before any upgrade is attempted."""
        response, data = self.json_request("GET", "/ws/lobby")
        self.assertError(response, data, 401, "unauthorized")
        self.assertEqual(
            response.headers.getRawHeaders("WWW-Authenticate"), ['Basic realm="parkchat"']
        )


class CredentialCacheTests(TestCase):
    """Basic auth on every request does not cost a bcrypt each time."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.checks: list[str] = []

        def run(f: Callable[..., Any], *args: Any) -> Deferred[Any]:
            if f is check_password_blocking:
                self.checks.append("check")
            return maybeDeferred(f, *args)

        self.cache = VerifiedCredentials(self.clock, ttl=300)
        self.service = build_chat_service(
            MemoryStore(),
            PasswordHasher(run, rounds=TEST_ROUNDS),
            self.clock,
            credential_cache=self.cache,
        )
        self.service.startService()
        self.addCleanup(self.service.stopService)
        site = site_for(self.service, access_log=False)
        self.stub: Any = StubTreq(site.resource)
        self.successResultOf(self.service.register("alice", "s3cret"))
        self.cache.clear()  # start cold, as after a restart

    def get(self, password: str) -> int:
        d = self.stub.get(
            BASE + "/history/lobby", headers={"Authorization": basic("alice", password)}
        )
        self.stub.flush()
        response = self.successResultOf(d)
        self.successResultOf(self.stub.content(response))
        return int(response.code)

    def test_repeat_is_cached(self) -> None:
        """The same good credentials repeated run bcrypt once."""
        self.assertEqual([self.get("s3cret") for _ in range(5)], [200] * 5)
        self.assertEqual(len(self.checks), 1)

    def test_wrong_password_never_cached(self) -> None:
        """Every wrong password pays a full bcrypt (guessing is not cheaper),
        even after the right one was cached."""
        self.get("s3cret")
        self.assertEqual([self.get("wrong") for _ in range(3)], [401] * 3)
        self.assertEqual(len(self.checks), 4)

    def test_cache_expires(self) -> None:
        """After the TTL the password is checked with bcrypt again."""
        self.get("s3cret")
        self.clock.advance(301)
        self.assertEqual(self.get("s3cret"), 200)
        self.assertEqual(len(self.checks), 2)


class InternalErrorTests(RestCase):
    """Unexpected exceptions become a logged 500, never a traceback page."""

    def test_handler_exception(self) -> None:
        """An exception in a handler answers 500 JSON without details and is
        logged with its traceback."""
        self.register("alice", "s3cret")

        def broken(*args: Any, **kwargs: Any) -> Deferred[list[Message]]:
            raise RuntimeError("database on fire")

        self.patch(self.service, "history", broken)
        response, data = self.json_request("GET", "/history/lobby", auth=("alice", "s3cret"))
        self.assertError(response, data, 500, "internal_error")
        self.assertNotIn("fire", json.dumps(data))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_async_exception(self) -> None:
        """A Deferred failing later with an unexpected error is a 500 as well."""
        self.register("alice", "s3cret")
        pending: Deferred[list[Message]] = Deferred()
        self.patch(self.service, "history", lambda *a, **k: pending)
        d = self.stub.get(
            BASE + "/history/lobby", headers={"Authorization": basic("alice", "s3cret")}
        )
        self.stub.flush()
        self.assertNoResult(d)
        pending.errback(ZeroDivisionError())
        self.stub.flush()
        response = self.successResultOf(d)
        self.assertEqual(response.code, 500)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
