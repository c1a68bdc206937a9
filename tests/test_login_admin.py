"""``POST /login``, bans over REST, the ``/admin`` API and the browser-origin
check, through the real resource tree of ``make_site`` with
``treq.testing.StubTreq``: no sockets, a fake clock, bcrypt inline.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from treq.testing import StubTreq
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase
from twisted.web.iweb import IResponse
from twisted.web.test.requesthelper import DummyRequest

from parkchat.errors import AuthenticationFailed, Banned
from parkchat.limits import Limits
from parkchat.model import DisconnectReason, format_timestamp
from parkchat.protocols.unified import AppSocketFactory
from parkchat.tokens import TokenAuthority, TokenVerifier
from parkchat.web.resources import origin_allowed
from tests.helpers import FakeParticipant, adapter_context, make_service, site_for

BASE = "http://parkchat.test"
#: 2025-09-08T15:30:00Z.
START = 1_757_345_400.0
PASSWORD = "s3cret"
ADMIN_TOKEN = "t" * 32
LIFETIME = 3600.0


def basic(nickname: str, password: str) -> str:
    token = base64.b64encode(f"{nickname}:{password}".encode()).decode("ascii")
    return f"Basic {token}"


def header(response: IResponse, name: str) -> str:
    values = response.headers.getRawHeaders(name)
    return values[0] if values else ""


class SiteCase(TestCase):
    """A started service with accounts alice and bob, its site and a StubTreq."""

    admin_token: str | None = ADMIN_TOKEN
    with_app_socket = False
    limits = Limits(rate_limit=0, login_failures=3, login_window=60)

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(START)
        self.service, self.store, _ = make_service(clock=self.clock, limits=self.limits)
        self.addCleanup(self.service.stopService)
        self.tokens = TokenAuthority(
            b"x" * 32, self.clock, lifetime=LIFETIME, revocations=self.service.revocations
        )
        app_factory = (
            AppSocketFactory(adapter_context(self.service), TokenVerifier(self.tokens))
            if self.with_app_socket
            else None
        )
        site = site_for(
            self.service,
            tokens=self.tokens,
            admin_token=self.admin_token,
            app_factory=app_factory,
            access_log=False,
        )
        self.stub: Any = StubTreq(site.resource)
        self.alice = self.successResultOf(self.service.register("alice", PASSWORD))
        self.bob = self.successResultOf(self.service.register("bob", PASSWORD))

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[IResponse, bytes]:
        """One request (``body`` is sent as JSON, ``raw`` as is); the
        response and its whole body."""
        data = raw if raw is not None else None if body is None else json.dumps(body).encode()
        d = self.stub.request(method, BASE + path, data=data, headers=headers or {})
        self.stub.flush()
        response = self.successResultOf(d)
        content = self.stub.content(response)
        self.stub.flush()
        return response, self.successResultOf(content)

    def json_request(self, method: str, path: str, **kwargs: Any) -> tuple[IResponse, Any]:
        response, body = self.request(method, path, **kwargs)
        self.assertTrue(
            header(response, "Content-Type").startswith("application/json"),
            f"{method} {path}: {header(response, 'Content-Type')!r} {body!r}",
        )
        return response, json.loads(body)

    def assertError(self, response: IResponse, data: Any, status: int, code: str) -> None:
        """A JSON error answer ``{"error": code, "message": ...}`` with ``status``."""
        self.assertEqual(response.code, status, data)
        self.assertEqual(set(data), {"error", "message"}, data)
        self.assertEqual(data["error"], code, data)
        self.assertTrue(data["message"])

    def ban(self, nickname: str, duration: float | None = None) -> None:
        self.successResultOf(Deferred.fromCoroutine(self.service.ban(nickname, "test", duration)))

    def login(self, nickname: str, password: str, field: str = "nickname") -> tuple[IResponse, Any]:
        return self.json_request("POST", "/login", body={field: nickname, "password": password})


class LogoutTests(SiteCase):
    """``POST /logout``: a token stops working before it expires."""

    def token(self, nickname: str = "alice") -> str:
        response, data = self.login(nickname, PASSWORD)
        self.assertEqual(response.code, 200, data)
        token: str = data["token"]
        return token

    def logout(self, token: str, body: Any = None) -> tuple[IResponse, Any]:
        return self.json_request(
            "POST", "/logout", body=body, headers={"Authorization": f"Bearer {token}"}
        )

    def test_one_token(self) -> None:
        """The token sent is revoked; the account's other tokens work."""
        laptop, phone = self.token(), self.token()
        response, data = self.logout(laptop)
        self.assertEqual((response.code, data), (200, {"logged_out": True, "everywhere": False}))
        response, data = self.logout(laptop)
        self.assertError(response, data, 401, "unauthorized")
        self.assertIn("revoked", data["message"])
        self.assertEqual(self.tokens.verify(phone).user_id, self.alice.id)
        # Stored: a restarted service (same database) still refuses it.
        self.assertEqual(len(self.successResultOf(self.store.list_revoked_tokens(int(START)))), 1)

    def test_everywhere(self) -> None:
        """``everywhere`` revokes every token of the account issued so far
        and closes its connections; a later login works; others are untouched."""
        laptop, phone, bobs = self.token(), self.token(), self.token("bob")
        connection = FakeParticipant("alice", user_id=self.alice.id)
        self.service.connect(connection)
        response, data = self.logout(phone, {"everywhere": True})
        self.assertEqual((response.code, data), (200, {"logged_out": True, "everywhere": True}))
        self.assertEqual(connection.disconnected, [DisconnectReason.LOGGED_OUT])
        for token in (laptop, phone):
            self.assertRaises(AuthenticationFailed, self.tokens.verify, token)
        self.assertEqual(self.tokens.verify(bobs).nickname, "bob")
        self.clock.advance(0.001)
        self.assertEqual(self.tokens.verify(self.token()).user_id, self.alice.id)

    def test_refusals(self) -> None:
        """No token, a bad token or a bad body: 401 / 400, nothing revoked."""
        response, data = self.json_request("POST", "/logout")
        self.assertError(response, data, 401, "unauthorized")
        response, data = self.logout("not-a-token")
        self.assertError(response, data, 401, "unauthorized")
        token = self.token()
        for body in ({"everywhere": "yes"}, [1]):
            response, data = self.logout(token, body)
            self.assertError(response, data, 400, "invalid_request")
        response, data = self.json_request(
            "POST", "/logout", raw=b"{", headers={"Authorization": f"Bearer {token}"}
        )
        self.assertError(response, data, 400, "invalid_request")
        self.assertEqual(self.tokens.verify(token).user_id, self.alice.id)
        response, data = self.json_request("GET", "/logout")
        self.assertError(response, data, 405, "method_not_allowed")


class RefreshTests(SiteCase):
    """``POST /login`` with ``remember``, ``POST /refresh`` and the
    revocations of refresh tokens (logout, everywhere, a new password)."""

    def remember(self, nickname: str = "alice") -> Any:
        response, data = self.json_request(
            "POST", "/login", body={"nickname": nickname, "password": PASSWORD, "remember": True}
        )
        self.assertEqual(response.code, 200, data)
        return data

    def refresh(self, token: Any) -> tuple[IResponse, Any]:
        return self.json_request("POST", "/refresh", body={"refresh_token": token})

    def test_login_remember(self) -> None:
        """``remember`` adds an opaque refresh token and its lifetime to the
        usual answer; without it nothing is added (and nothing stored)."""
        data = self.remember()
        self.assertEqual(
            set(data),
            {"token", "user_id", "nickname", "expires_at", "refresh_token", "refresh_expires_in"},
        )
        self.assertEqual(data["refresh_expires_in"], 30 * 86400)
        self.assertEqual(self.tokens.verify(data["token"]).user_id, self.alice.id)
        response, plain = self.login("alice", PASSWORD)
        self.assertNotIn("refresh_token", plain)
        response, bad = self.json_request(
            "POST", "/login", body={"nickname": "alice", "password": PASSWORD, "remember": 1}
        )
        self.assertError(response, bad, 400, "invalid_request")

    def test_rotation(self) -> None:
        """A refresh gives a new signed token and the next refresh token."""
        first = self.remember()["refresh_token"]
        self.clock.advance(10)
        response, data = self.refresh(first)
        self.assertEqual(response.code, 200, data)
        self.assertEqual(
            set(data),
            {
                "token",
                "user_id",
                "nickname",
                "expires_at",
                "expires_in",
                "refresh_token",
                "refresh_expires_in",
            },
        )
        self.assertEqual((data["nickname"], data["expires_in"]), ("alice", int(LIFETIME)))
        self.assertEqual(self.tokens.verify(data["token"]).user_id, self.alice.id)
        self.assertNotEqual(data["refresh_token"], first)
        response, again = self.refresh(data["refresh_token"])
        self.assertEqual(response.code, 200, again)

    def test_reuse_revokes_the_login(self) -> None:
        """A spent refresh token presented again is 401, and the one it was
        exchanged for stops working too."""
        first = self.remember()["refresh_token"]
        _, data = self.refresh(first)
        response, reused = self.refresh(first)
        self.assertError(response, reused, 401, "unauthorized")
        response, data = self.refresh(data["refresh_token"])
        self.assertError(response, data, 401, "unauthorized")

    def test_bad_requests(self) -> None:
        for body in ({}, {"refresh_token": 5}):
            response, data = self.json_request("POST", "/refresh", body=body)
            self.assertError(response, data, 400, "invalid_request")
        response, data = self.refresh("made-up")
        self.assertError(response, data, 401, "unauthorized")

    def test_logout_revokes_it(self) -> None:
        """``/logout`` with the refresh token in its body revokes it, with a
        Bearer token or without one."""
        login = self.remember()
        response, data = self.json_request(
            "POST",
            "/logout",
            body={"refresh_token": login["refresh_token"]},
            headers={"Authorization": f"Bearer {login['token']}"},
        )
        self.assertEqual((response.code, data), (200, {"logged_out": True, "everywhere": False}))
        self.assertEqual(self.refresh(login["refresh_token"])[0].code, 401)
        other = self.remember()["refresh_token"]
        response, data = self.json_request("POST", "/logout", body={"refresh_token": other})
        self.assertEqual((response.code, data), (200, {"logged_out": True, "everywhere": False}))
        self.assertEqual(self.refresh(other)[0].code, 401)

    def test_everywhere_and_password_revoke_all(self) -> None:
        """Logging out everywhere, or a new password, ends every long-lived login."""
        login, second = self.remember(), self.remember()["refresh_token"]
        self.json_request(
            "POST",
            "/logout",
            body={"everywhere": True},
            headers={"Authorization": f"Bearer {login['token']}"},
        )
        for token in (login["refresh_token"], second):
            self.assertEqual(self.refresh(token)[0].code, 401)
        self.clock.advance(1)
        kept = self.remember()["refresh_token"]
        self.json_request(
            "POST",
            "/password",
            body={"new_password": "another-one"},
            headers={"Authorization": basic("alice", PASSWORD)},
        )
        self.assertEqual(self.refresh(kept)[0].code, 401)

    def test_banned(self) -> None:
        token = self.remember("bob")["refresh_token"]
        self.ban("bob")
        response, data = self.refresh(token)
        self.assertError(response, data, 403, "banned")


class PasswordTests(SiteCase):
    """``POST /password`` (the user) and ``POST /admin/password`` (an admin)."""

    def change(self, current: str, new: Any) -> tuple[IResponse, Any]:
        return self.json_request(
            "POST",
            "/password",
            body={"new_password": new},
            headers={"Authorization": basic("alice", current)},
        )

    def test_change(self) -> None:
        """With the current password: the new one works, the old one and the
        tokens issued before do not."""
        _, data = self.login("alice", PASSWORD)
        token = data["token"]
        self.clock.advance(1)
        response, data = self.change(PASSWORD, "a-better-secret")
        self.assertEqual((response.code, data), (200, {"changed": True, "nickname": "alice"}))
        self.assertEqual(self.login("alice", PASSWORD)[0].code, 401)
        self.assertEqual(self.login("alice", "a-better-secret")[0].code, 200)
        self.assertRaises(AuthenticationFailed, self.tokens.verify, token)

    def test_refusals(self) -> None:
        """A wrong current password is 401 (and counts as a failed login); a
        missing or empty new one 400; nothing changes."""
        response, data = self.change("wrong", "whatever")
        self.assertError(response, data, 401, "unauthorized")
        for new in ("", None, 7):
            response, data = self.change(PASSWORD, new)
            self.assertError(response, data, 400, "invalid_password")
        response, data = self.json_request("POST", "/password", body={"new_password": "x"})
        self.assertError(response, data, 401, "unauthorized")
        self.assertEqual(self.login("alice", PASSWORD)[0].code, 200)

    def test_admin_sets_it(self) -> None:
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        response, data = self.json_request(
            "POST",
            "/admin/password",
            body={"nickname": "bob", "password": "reset-1"},
            headers=admin,
        )
        self.assertEqual((response.code, data), (200, {"changed": True}))
        self.assertEqual(self.login("bob", "reset-1")[0].code, 200)
        response, data = self.json_request(
            "POST", "/admin/password", body={"nickname": "nobody", "password": "x"}, headers=admin
        )
        self.assertError(response, data, 404, "unknown_recipient")
        response, data = self.json_request(
            "POST", "/admin/password", body={"nickname": "bob", "password": "x"}
        )
        self.assertError(response, data, 401, "unauthorized")


class AdminDeleteTests(SiteCase):
    """``POST /admin/delete``: a moderator removes a stored message."""

    def test_delete(self) -> None:
        poster = FakeParticipant("alice", user_id=self.alice.id)
        self.service.connect(poster)
        self.service.join(poster, "lobby")
        posted = self.service.post(poster, "lobby", "spam spam")
        self.clock.advance(0)
        message_id = self.successResultOf(posted).id
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        response, data = self.json_request(
            "POST", "/admin/delete", body={"id": message_id}, headers=admin
        )
        self.assertEqual((response.code, data), (200, {"deleted": True, "room": "lobby"}))
        self.assertEqual(self.successResultOf(self.service.history("lobby")), [])
        response, data = self.json_request(
            "POST", "/admin/delete", body={"id": message_id}, headers=admin
        )
        self.assertError(response, data, 404, "not_found")
        response, data = self.json_request("POST", "/admin/delete", body={"id": "1"}, headers=admin)
        self.assertError(response, data, 400, "invalid_request")
        response, data = self.json_request("POST", "/admin/delete", body={"id": 1})
        self.assertError(response, data, 401, "unauthorized")


class LoginTests(SiteCase):
    """``POST /login``: a signed token for a nickname and password."""

    def test_token(self) -> None:
        """The right password answers 200 with a token that verifies to the
        account, its id, nickname and the expiry as RFC 3339."""
        response, data = self.login("alice", PASSWORD)
        self.assertEqual(response.code, 200, data)
        self.assertEqual(set(data), {"token", "user_id", "nickname", "expires_at"})
        self.assertEqual((data["user_id"], data["nickname"]), (self.alice.id, "alice"))
        self.assertEqual(data["expires_at"], format_timestamp(int((START + LIFETIME) * 1000)))
        claims = self.tokens.verify(data["token"])
        self.assertEqual((claims.user_id, claims.nickname), (self.alice.id, "alice"))
        self.assertEqual(header(response, "Cache-Control"), "no-store")

    def test_username_alias_and_case(self) -> None:
        """``username`` works like ``nickname``, in any case; the answer
        names the account as registered."""
        response, data = self.login("BOB", PASSWORD, field="username")
        self.assertEqual(response.code, 200, data)
        self.assertEqual((data["user_id"], data["nickname"]), (self.bob.id, "bob"))

    def test_bad_credentials(self) -> None:
        """A wrong password and an unknown account both answer 401, alike."""
        wrong, wrong_data = self.login("alice", "nope")
        unknown, unknown_data = self.login("mallory", PASSWORD)
        self.assertError(wrong, wrong_data, 401, "unauthorized")
        self.assertError(unknown, unknown_data, 401, "unauthorized")
        self.assertEqual(wrong_data, unknown_data)

    def test_bad_bodies(self) -> None:
        """Missing or non-string fields, invalid JSON or a non-object answer 400."""
        for body in (
            {"nickname": "alice"},
            {"password": PASSWORD},
            {},
            {"nickname": 1, "password": PASSWORD},
            {"nickname": "alice", "password": None},
            ["alice", PASSWORD],
        ):
            response, data = self.json_request("POST", "/login", body=body)
            self.assertError(response, data, 400, "invalid_request")
        for raw in (b"", b"{", b"nickname=alice&password=s3cret", b"\xff"):
            response, data = self.json_request("POST", "/login", raw=raw)
            self.assertError(response, data, 400, "invalid_request")

    def test_too_many_failures(self) -> None:
        """After repeated failures the account answers 429 with a JSON error,
        even for the right password; it recovers after the window."""
        for _ in range(3):
            response, data = self.login("alice", "nope")
            self.assertEqual(response.code, 401)
        response, data = self.login("alice", PASSWORD)
        self.assertError(response, data, 429, "too_many_attempts")
        self.clock.advance(61)
        response, data = self.login("alice", PASSWORD)
        self.assertEqual(response.code, 200, data)

    def test_banned(self) -> None:
        """A banned account gets 403 ``banned`` with the right password."""
        self.ban("alice")
        response, data = self.login("alice", PASSWORD)
        self.assertError(response, data, 403, "banned")

    def test_banned_history(self) -> None:
        """``/history`` with Basic credentials of a banned account is 403."""
        self.ban("alice")
        response, data = self.json_request(
            "GET", "/history/lobby", headers={"Authorization": basic("alice", PASSWORD)}
        )
        self.assertError(response, data, 403, "banned")
        response, data = self.json_request(
            "GET", "/history/lobby", headers={"Authorization": basic("bob", PASSWORD)}
        )
        self.assertEqual((response.code, data), (200, []))

    def test_wrong_method(self) -> None:
        """GET /login is 405 with ``Allow: POST``."""
        response, data = self.json_request("GET", "/login")
        self.assertError(response, data, 405, "method_not_allowed")
        self.assertEqual(header(response, "Allow"), "POST")


class NoTokensTests(TestCase):
    """Without a token authority there is no ``/login``."""

    def test_absent(self) -> None:
        """POST /login is 404 when make_site gets no tokens."""
        service, _, _ = make_service()
        self.addCleanup(service.stopService)
        stub: Any = StubTreq(site_for(service).resource)
        d = stub.post(BASE + "/login", data=b"{}")
        stub.flush()
        self.assertEqual(self.successResultOf(d).code, 404)


class AdminCase(SiteCase):
    def admin(self, method: str, path: str, body: Any = None, **kwargs: Any) -> Any:
        """An admin request with the right token; the response and JSON body."""
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        return self.json_request(method, "/admin/" + path, body=body, headers=headers, **kwargs)


class AdminAuthTests(AdminCase):
    """The admin token guards every ``/admin`` resource."""

    def test_unauthorized(self) -> None:
        """No token, a wrong token, a Basic header or a token prefix: 401
        with a Bearer ``WWW-Authenticate`` challenge, and nothing done."""
        paths = [("GET", "rooms"), ("GET", "users"), ("GET", "bans")]
        paths += [("POST", p) for p in ("ban", "unban", "kick", "register")]
        for headers in (
            {},
            {"Authorization": "Bearer " + "u" * 32},
            {"Authorization": "Bearer " + ADMIN_TOKEN[:-1]},
            {"Authorization": basic("admin", ADMIN_TOKEN)},
            {"Authorization": ADMIN_TOKEN},
        ):
            for method, path in paths:
                response, data = self.json_request(
                    method,
                    "/admin/" + path,
                    body={"nickname": "bob", "password": "pw", "room": "lobby"},
                    headers=headers,
                )
                self.assertError(response, data, 401, "unauthorized")
                self.assertTrue(header(response, "WWW-Authenticate").startswith("Bearer"))
        self.assertEqual(self.service.bans(), [])
        self.assertIsNone(self.successResultOf(self.store.get_user("pw")))

    def test_scheme_case_insensitive(self) -> None:
        """``bearer`` in any case is accepted."""
        response, data = self.json_request(
            "GET", "/admin/rooms", headers={"Authorization": f"bEaReR {ADMIN_TOKEN}"}
        )
        self.assertEqual(response.code, 200, data)

    def test_wrong_method(self) -> None:
        """Wrong methods are 405 with ``Allow``."""
        for method, path, allow in (
            ("POST", "rooms", "GET, HEAD"),
            ("DELETE", "users", "GET, HEAD"),
            ("GET", "ban", "POST"),
            ("PUT", "kick", "POST"),
        ):
            response, data = self.admin(method, path)
            self.assertError(response, data, 405, "method_not_allowed")
            self.assertEqual(header(response, "Allow"), allow)

    def test_unknown_admin_path(self) -> None:
        """Paths below /admin that are not resources are 404."""
        response, _ = self.request("GET", "/admin/nothing")
        self.assertEqual(response.code, 404)


class NoAdminTests(SiteCase):
    """Without an admin token there is no ``/admin`` at all."""

    admin_token = None

    def test_absent(self) -> None:
        """Every admin path is 404, even with a bearer token."""
        for method, path in (("GET", "rooms"), ("GET", "users"), ("POST", "ban")):
            response, _ = self.request(
                method,
                "/admin/" + path,
                body={"nickname": "bob"},
                headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            )
            self.assertEqual(response.code, 404)
        self.assertEqual(self.service.bans(), [])


class AdminReadTests(AdminCase):
    """``GET /admin/rooms``, ``/admin/users``, ``/admin/bans``."""

    def test_rooms(self) -> None:
        """Rooms with members here, by name, with their connection counts."""
        self.assertEqual(self.admin("GET", "rooms")[1], {"rooms": []})
        for nickname, user_id, rooms in (
            ("alice", self.alice.id, ["lobby", "b-room"]),
            ("bob", self.bob.id, ["lobby"]),
        ):
            member = FakeParticipant(nickname, user_id=user_id)
            self.service.connect(member)
            for room in rooms:
                self.service.join(member, room)
        response, data = self.admin("GET", "rooms")
        self.assertEqual(response.code, 200)
        self.assertEqual(
            data,
            {
                "rooms": [
                    {"room": "b-room", "connections": 1},
                    {"room": "lobby", "connections": 2},
                ]
            },
        )

    def test_users_online_flag(self) -> None:
        """Accounts by id with whether each has an open connection."""
        self.service.connect(FakeParticipant("bob", user_id=self.bob.id))
        response, data = self.admin("GET", "users")
        self.assertEqual(response.code, 200)
        self.assertEqual(
            data,
            {
                "users": [
                    {"user_id": self.alice.id, "nickname": "alice", "online": False},
                    {"user_id": self.bob.id, "nickname": "bob", "online": True},
                ]
            },
        )

    def test_users_paging(self) -> None:
        """``limit`` and ``after`` page through accounts; a bad limit is 400."""
        carol = self.successResultOf(self.service.register("carol", PASSWORD))
        _, first = self.admin("GET", "users?limit=2")
        self.assertEqual([u["nickname"] for u in first["users"]], ["alice", "bob"])
        _, rest = self.admin("GET", f"users?limit=2&after={self.bob.id}")
        self.assertEqual([u["user_id"] for u in rest["users"]], [carol.id])
        for query in ("limit=5000", "limit=-1", "limit=x", "after=y"):
            response, data = self.admin("GET", "users?" + query)
            self.assertError(response, data, 400, "invalid_request")

    def test_bans(self) -> None:
        """Active bans with reason, start and end; expired ones drop out."""
        self.ban("alice")
        self.ban("bob", duration=60)
        response, data = self.admin("GET", "bans")
        self.assertEqual(response.code, 200)
        self.assertEqual(
            data["bans"],
            [
                {
                    "user_id": self.alice.id,
                    "nickname": "alice",
                    "reason": "test",
                    "since": format_timestamp(int(START * 1000)),
                    "until": None,
                },
                {
                    "user_id": self.bob.id,
                    "nickname": "bob",
                    "reason": "test",
                    "since": format_timestamp(int(START * 1000)),
                    "until": format_timestamp(int((START + 60) * 1000)),
                },
            ],
        )
        self.clock.advance(61)
        self.assertEqual([b["nickname"] for b in self.admin("GET", "bans")[1]["bans"]], ["alice"])


class AdminActionTests(AdminCase):
    """``POST /admin/ban``, ``/unban``, ``/kick``, ``/register``."""

    def test_ban(self) -> None:
        """A ban with duration and reason is answered with the ban, closes the
        account's live connections and refuses it until the time is up."""
        bob = FakeParticipant("bob", user_id=self.bob.id)
        self.service.connect(bob)
        response, data = self.admin(
            "POST", "ban", {"nickname": "Bob", "duration": 90, "reason": "spam"}
        )
        self.assertEqual(response.code, 200, data)
        self.assertEqual(
            data,
            {
                "user_id": self.bob.id,
                "nickname": "bob",
                "reason": "spam",
                "since": format_timestamp(int(START * 1000)),
                "until": format_timestamp(int((START + 90) * 1000)),
            },
        )
        self.assertEqual(bob.disconnected, [DisconnectReason.BANNED])
        self.assertRaises(Banned, self.service.check_not_banned, self.bob.id)
        self.assertEqual(self.login("bob", PASSWORD)[0].code, 403)
        self.clock.advance(91)
        self.assertEqual(self.login("bob", PASSWORD)[0].code, 200)

    def test_ban_without_duration(self) -> None:
        """Without a duration the ban lasts until lifted; it is persisted."""
        response, data = self.admin("POST", "ban", {"username": "alice"})
        self.assertEqual(response.code, 200, data)
        self.assertEqual((data["until"], data["reason"]), (None, ""))
        [stored] = self.successResultOf(self.store.list_bans())
        self.assertEqual(stored.user_id, self.alice.id)

    def test_ban_bad_input(self) -> None:
        """A bad duration or reason, or no nickname, is 400 and bans nobody."""
        for body in (
            {"nickname": "bob", "duration": -5},
            {"nickname": "bob", "duration": 0},
            {"nickname": "bob", "duration": "10m"},
            {"nickname": "bob", "duration": True},
            {"nickname": "bob", "reason": 5},
            {"nickname": "bob", "reason": "x" * 501},
            {"duration": 10},
            {"nickname": ""},
        ):
            response, data = self.admin("POST", "ban", body)
            self.assertError(response, data, 400, "invalid_request")
        self.assertEqual(self.service.bans(), [])

    def test_ban_non_finite_duration(self) -> None:
        """JSON ``NaN``, ``Infinity`` and absurdly long durations are bad
        input (400), not a server error."""
        for duration in (b"NaN", b"Infinity", b"-Infinity", b"1e300"):
            response, data = self.admin(
                "POST", "ban", raw=b'{"nickname": "bob", "duration": ' + duration + b"}"
            )
            self.assertError(response, data, 400, "invalid_request")
        self.assertEqual(self.service.bans(), [])

    def test_ban_unknown(self) -> None:
        """Banning a nickname without an account is 404."""
        response, data = self.admin("POST", "ban", {"nickname": "nobody"})
        self.assertError(response, data, 404, "unknown_recipient")

    def test_unban(self) -> None:
        """Unbanning answers whether a ban was removed; the account can log in again."""
        self.ban("bob")
        response, data = self.admin("POST", "unban", {"nickname": "bob"})
        self.assertEqual((response.code, data), (200, {"unbanned": True}))
        self.assertEqual(self.login("bob", PASSWORD)[0].code, 200)
        self.assertEqual(self.admin("POST", "unban", {"nickname": "bob"})[1], {"unbanned": False})
        response, data = self.admin("POST", "unban", {"nickname": "nobody"})
        self.assertError(response, data, 404, "unknown_recipient")

    def test_kick(self) -> None:
        """Kicking answers how many connections left the room."""
        alice = FakeParticipant("alice", user_id=self.alice.id)
        bob = FakeParticipant("bob", user_id=self.bob.id)
        for member in (alice, bob):
            self.service.connect(member)
            self.service.join(member, "lobby")
        response, data = self.admin(
            "POST", "kick", {"nickname": "bob", "room": "lobby", "reason": "off topic"}
        )
        # One instance: the count is the whole count (nothing forwarded).
        self.assertEqual((response.code, data), (200, {"kicked": 1, "forwarded": False}))
        self.assertEqual(bob.removals, [("lobby", "off topic")])
        self.assertEqual(self.service.members("lobby"), ["alice"])
        self.assertEqual(
            self.admin("POST", "kick", {"nickname": "bob", "room": "lobby"})[1],
            {"kicked": 0, "forwarded": False},
        )

    def test_kick_bad_input(self) -> None:
        """A kick without a valid room or nickname is 400."""
        for body, code in (
            ({"nickname": "bob"}, "invalid_room"),
            ({"nickname": "bob", "room": " lobby"}, "invalid_room"),
            ({"room": "lobby"}, "invalid_request"),
            ({"nickname": "bob", "room": "lobby", "reason": 1}, "invalid_request"),
        ):
            response, data = self.admin("POST", "kick", body)
            self.assertError(response, data, 400, code)

    def test_register(self) -> None:
        """An admin can create accounts (201); taken names are 409."""
        response, data = self.admin("POST", "register", {"nickname": "carol", "password": "pw"})
        self.assertEqual(response.code, 201, data)
        self.assertEqual(data["nickname"], "carol")
        self.assertEqual(self.login("carol", "pw")[1]["user_id"], data["id"])
        response, data = self.admin("POST", "register", {"nickname": "Carol", "password": "x"})
        self.assertError(response, data, 409, "nickname_taken")
        response, data = self.admin("POST", "register", {"nickname": "dave"})
        self.assertError(response, data, 400, "invalid_password")


def request_with(headers: dict[bytes, bytes]) -> Any:
    """A request carrying ``headers`` (a DummyRequest stands in for ``Request``)."""
    request = DummyRequest([b""])
    for name, value in headers.items():
        request.requestHeaders.setRawHeaders(name, [value])
    return request


class OriginAllowedTests(TestCase):
    """``origin_allowed``: which browser pages may open WebSockets."""

    def test_no_origin(self) -> None:
        """Clients that send no Origin (not browsers) are allowed, whatever the list."""
        self.assertTrue(origin_allowed(request_with({b"host": b"chat.example"}), ()))
        self.assertTrue(origin_allowed(request_with({}), ("https://app.example",)))

    def test_same_host(self) -> None:
        """The page's own origin (same host and port) is allowed by default,
        in any case, with or without a trailing slash."""
        for origin in (b"http://chat.example:8080", b"HTTPS://Chat.Example:8080/"):
            request = request_with({b"host": b"chat.example:8080", b"origin": origin})
            self.assertTrue(origin_allowed(request, ()), origin)

    def test_foreign_refused_by_default(self) -> None:
        """Another site, another port, ``null`` or a missing Host are refused."""
        for origin, host in (
            (b"https://evil.example", b"chat.example"),
            (b"http://chat.example:9090", b"chat.example:8080"),
            (b"http://chat.example.evil.example", b"chat.example"),
            (b"null", b"chat.example"),
            (b"http://chat.example", b""),
        ):
            request = request_with({b"host": host, b"origin": origin})
            self.assertFalse(origin_allowed(request, ()), (origin, host))

    def test_allow_list(self) -> None:
        """With an allow-list, exactly the listed origins are allowed."""
        allowed = ("https://app.example", "http://localhost:3000")
        for origin, expected in (
            (b"https://app.example", True),
            (b"https://App.Example/", True),
            (b"http://localhost:3000", True),
            (b"http://app.example", False),
            (b"https://evil.example", False),
        ):
            request = request_with({b"host": b"chat.example", b"origin": origin})
            self.assertEqual(origin_allowed(request, allowed), expected, origin)

    def test_star(self) -> None:
        """``*`` allows every origin."""
        request = request_with({b"host": b"chat.example", b"origin": b"https://any.example"})
        self.assertTrue(origin_allowed(request, ("*",)))


class SocketOriginTests(SiteCase):
    """``/ws`` refuses foreign origins over plain HTTP, before any upgrade."""

    with_app_socket = True

    def test_foreign_origin_forbidden(self) -> None:
        """A foreign Origin on /ws or /ws/{room} is 403 ``origin_forbidden``,
        even with valid credentials."""
        token, _ = self.tokens.issue(self.alice.id, "alice")
        for path, auth in (("/ws", f"Bearer {token}"), ("/ws/lobby", basic("alice", PASSWORD))):
            response, data = self.json_request(
                "GET",
                path,
                headers={"Origin": "https://evil.example", "Authorization": auth},
            )
            self.assertError(response, data, 403, "origin_forbidden")
        self.assertEqual(self.service.connection_count, 0)

    def test_banned_token_forbidden(self) -> None:
        """A valid token of a banned account opens no socket: 403 ``banned``."""
        token, _ = self.tokens.issue(self.bob.id, "bob")
        self.ban("bob")
        for path in ("/ws", "/ws/lobby"):
            response, data = self.json_request(
                "GET", path, headers={"Authorization": f"Bearer {token}"}
            )
            self.assertError(response, data, 403, "banned")

    def test_bad_token_unauthorized(self) -> None:
        """An invalid token on /ws is 401."""
        response, data = self.json_request("GET", "/ws?token=garbage", headers={"Origin": BASE})
        self.assertError(response, data, 401, "unauthorized")
