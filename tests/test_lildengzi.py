"""The lildengzi dialect (seed 004) in memory: its HTTP envelope, its
tokens, and its WebSocket frame by frame, on a ``--lildengzi`` listener."""

from __future__ import annotations

import json
import warnings
from typing import Any

from twisted.internet.defer import Deferred

import jwt

from parkchat.limits import Limits
from parkchat.model import User
from parkchat.protocols.lildengzi import INSECURE_SECRET, InsecureSecret, LildengziTokens
from tests.dialect_support import LILDENGZI_SECRET, DialectCase, RawClient, header
from tests.helpers import FakeParticipant


def body(value: Any) -> bytes:
    return json.dumps(value).encode()


class LildengziCase(DialectCase):
    def post(self, path: str, value: Any = None, raw: bytes | None = None) -> tuple[int, bytes]:
        response, content = self.http(
            self.lildengzi_site,
            "POST",
            path,
            body=raw if raw is not None else body(value),
            headers={"Content-Type": "application/json"},
        )
        self.assertEqual(header(response, "Content-Type"), "application/json")
        return response.code, content

    def login(self, name: str, password: str | None = None) -> dict[str, Any]:
        code, content = self.post(
            "/login", {"username": name, "password": password or f"{name}-pw"}
        )
        self.assertEqual(code, 200, content)
        data: dict[str, Any] = json.loads(content)["data"]
        return data

    def connect(self, token: str | None = None, *, via: str = "query") -> RawClient:
        if via == "query":
            return self.websocket(self.lildengzi_site, f"/ws?token={token}")
        return self.websocket(
            self.lildengzi_site, "/ws", headers={"Authorization": f"Bearer {token}"}
        )

    def online(self, name: str) -> tuple[User, RawClient]:
        user = self.account(name)
        client = self.connect(self.login(name)["token"])
        self.assertTrue(client.opened)
        return user, client

    def ws_refusal(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        response, content = self.http(self.lildengzi_site, "GET", path, headers=headers)
        return response.code, content


class RegisterTests(LildengziCase):
    def test_register(self) -> None:
        """200 and the envelope with the new user id, names and passwords
        trimmed; the account is parkchat's."""
        code, content = self.post("/register", {"username": " alice ", "password": " pw "})
        self.assertEqual(
            (code, content), (200, b'{"code":0,"message":"ok","data":{"user_id":1}}\n')
        )
        self.successResultOf(self.service.authenticate("alice", "pw"))

    def test_refusals(self) -> None:
        """The seed's 400s and messages; a taken name is a 400 too."""
        self.post("/register", {"username": "alice", "password": "pw"})
        for value, raw, message in (
            (None, b"not json", "bad request"),
            ({"username": 5, "password": "pw"}, None, "bad request"),
            ({"username": "  ", "password": "pw"}, None, "username is required"),
            ({"username": "bob"}, None, "password is required"),
            ({"username": "alice", "password": "pw"}, None, "nickname already registered"),
        ):
            code, content = self.post("/register", value, raw)
            self.assertEqual((code, json.loads(content)), (400, {"code": 400, "message": message}))

    def test_method(self) -> None:
        response, content = self.http(self.lildengzi_site, "GET", "/register")
        self.assertEqual(
            (response.code, content), (405, b'{"code":405,"message":"method not allowed"}\n')
        )

    def test_exact_paths(self) -> None:
        """Only the seed's three paths; everything else is Go's 404."""
        for path in ("/", "/register/", "/ws/", "/history/lobby", "/health"):
            response, content = self.http(self.lildengzi_site, "GET", path)
            self.assertEqual((response.code, content), (404, b"404 page not found\n"))


class LoginTests(LildengziCase):
    def test_login(self) -> None:
        """``data`` is ``user_id``, ``username``, ``token``; the token is
        HS256 with the seed's claims, valid 24 hours."""
        user = self.account("alice")
        code, content = self.post("/login", {"username": "alice", "password": "alice-pw"})
        self.assertEqual(code, 200)
        reply = json.loads(content)
        self.assertEqual(list(reply), ["code", "message", "data"])
        self.assertEqual(list(reply["data"]), ["user_id", "username", "token"])
        data = reply["data"]
        self.assertEqual((data["user_id"], data["username"]), (user.id, "alice"))
        self.assertEqual(jwt.get_unverified_header(data["token"]), {"alg": "HS256", "typ": "JWT"})
        claims = jwt.decode(
            data["token"], LILDENGZI_SECRET, algorithms=["HS256"], options={"verify_exp": False}
        )
        now = int(self.clock.seconds())
        self.assertEqual(
            claims, {"user_id": user.id, "username": "alice", "exp": now + 86400, "iat": now}
        )

    def test_unauthorized(self) -> None:
        self.account("alice")
        for name, password in (("alice", "wrong"), ("nobody", "pw")):
            code, content = self.post("/login", {"username": name, "password": password})
            self.assertEqual((code, content), (401, b'{"code":401,"message":"unauthorized"}\n'))


class ThrottleTests(LildengziCase):
    limits = Limits(rate_limit=0, login_failures=2)

    def test_throttled(self) -> None:
        """parkchat's failed-login throttle answers 429 in the envelope."""
        self.account("alice")
        for _ in range(2):
            self.post("/login", {"username": "alice", "password": "wrong"})
        code, content = self.post("/login", {"username": "alice", "password": "alice-pw"})
        self.assertEqual(code, 429)
        self.assertEqual(json.loads(content)["code"], 429)


class TokenTests(LildengziCase):
    def test_missing_and_bad_tokens(self) -> None:
        """401 in the envelope before any upgrade: ``missing token``, or
        ``unauthorized`` for a bad one (the Bearer prefix is case-sensitive,
        as the seed reads it)."""
        user = self.account("alice")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            hs384 = jwt.encode({"user_id": user.id}, LILDENGZI_SECRET, algorithm="HS384")
            expired = jwt.encode(
                {"user_id": user.id, "exp": int(self.clock.seconds()) - 1},
                LILDENGZI_SECRET,
                algorithm="HS256",
            )
            unknown = jwt.encode({"user_id": 99}, LILDENGZI_SECRET, algorithm="HS256")
        missing = (401, b'{"code":401,"message":"missing token"}\n')
        refused = (401, b'{"code":401,"message":"unauthorized"}\n')
        self.assertEqual(self.ws_refusal("/ws"), missing)
        self.assertEqual(self.ws_refusal("/ws", {"Authorization": "bearer x"}), missing)
        for bad in ("garbage", hs384, expired, unknown):
            self.assertEqual(self.ws_refusal(f"/ws?token={bad}"), refused)

    def test_seed_tokens_without_expiry(self) -> None:
        """A token the seed would take (no ``exp``) is taken."""
        user = self.account("alice")
        plain = jwt.encode({"user_id": user.id, "username": "alice"}, LILDENGZI_SECRET)
        client = self.connect(plain, via="header")
        self.assertTrue(client.opened)

    def test_cut_off_and_banned(self) -> None:
        """A password change ends earlier tokens; a banned account is 403."""
        self.account("alice")
        old = self.login("alice")["token"]
        self.clock.advance(2)
        self.successResultOf(self.service.change_password("alice", "new-password"))
        self.assertEqual(self.ws_refusal(f"/ws?token={old}")[0], 401)
        self.account("bob")
        token = self.login("bob")["token"]
        self.successResultOf(self.service.ban("bob"))
        self.assertEqual(self.ws_refusal(f"/ws?token={token}")[0], 403)

    def test_insecure_secret_refused(self) -> None:
        self.assertRaises(InsecureSecret, LildengziTokens, INSECURE_SECRET.encode(), self.clock)


class SocketTests(LildengziCase):
    def test_direct_message_online(self) -> None:
        """The receiver gets the seed's frame; the sender gets nothing."""
        alice, a = self.online("alice")
        bob, b = self.online("bob")
        a.send_json({"type": "chat", "to_user_id": bob.id, "content": "  hello  "})
        self.settle()
        self.assertEqual(
            b.take(),
            [
                f'{{"type":"chat","to_user_id":{bob.id},"from_user_id":{alice.id},'
                '"content":"hello"}'.encode()
            ],
        )
        self.assertEqual(a.take(), [])

    def test_to_self(self) -> None:
        alice, a = self.online("alice")
        a.send_json({"type": "chat", "to_user_id": alice.id, "content": "note"})
        self.settle()
        self.assertEqual(json.loads(a.take()[0])["content"], "note")

    def test_offline_then_fetched(self) -> None:
        """A message to someone away waits; ``get_offline`` hands it over,
        oldest first, once; then ``"data":null``."""
        _, a = self.online("alice")
        bob = self.account("bob")
        for text in ("first", "second"):
            a.send_json({"type": "chat", "to_user_id": bob.id, "content": text})
            self.settle()
            self.clock.advance(0.25)
        b = self.connect(self.login("bob")["token"])
        b.send_json({"type": "get_offline"})
        self.settle()
        self.assertEqual(
            b.take(),
            [
                b'{"type":"offline_list","data":['
                b'{"msg_id":1,"to_user_id":2,"from_user_id":1,"content":"first",'
                b'"created_at":"2025-09-08T15:30:00Z"},'
                b'{"msg_id":2,"to_user_id":2,"from_user_id":1,"content":"second",'
                b'"created_at":"2025-09-08T15:30:00.25Z"}]}'
            ],
        )
        b.send_json({"type": "get_offline"})
        self.settle()
        self.assertEqual(b.take(), [b'{"type":"offline_list","data":null}'])

    def test_online_list(self) -> None:
        alice, a = self.online("alice")
        bob, _ = self.online("bob")
        a.send_json({"type": "get_online_list"})
        self.settle()
        [reply] = a.frames()
        self.assertEqual(reply["type"], "online_list")
        self.assertEqual(sorted(reply["data"]), [alice.id, bob.id])

    def test_error_texts(self) -> None:
        """The seed's error texts, in its order of checks; the connection stays."""
        alice, a = self.online("alice")
        for frame, text in (
            ({"type": "chat", "to_user_id": 0, "content": "x"}, "invalid to_user_id"),
            ({"type": "chat", "content": "x"}, "invalid to_user_id"),
            ({"type": "chat", "to_user_id": alice.id, "content": "   "}, "content is required"),
            ({"type": "chat", "to_user_id": 99, "content": "x"}, "target user not found"),
            ({"type": "dance"}, "unsupported message type"),
            ({}, "unsupported message type"),
            (
                {"type": "chat", "to_user_id": alice.id, "content": "x" * 4001},
                "content is longer than 4000 characters",
            ),
        ):
            a.send_json(frame)
            self.settle()
            self.assertEqual(a.frames(), [{"type": "error", "content": text}])
        self.assertIsNone(a.closed)

    def test_bad_frames_close(self) -> None:
        """What the seed's ``ReadJSON`` fails on closes, with the reason."""
        for payload, reason in (
            (b"nope", "frame is not valid JSON"),
            (b'{"type":"chat","to_user_id":"2"}', '"to_user_id" must be an integer'),
            (b'{"type":"chat","to_user_id":1.5}', '"to_user_id" must be an integer'),
        ):
            _, client = self.online(f"u{len(self.clients)}")
            client.sendMessage(payload)
            self.settle()
            self.assertEqual((client.close_code, client.close_reason), (1008, reason))

    def test_frame_limit(self) -> None:
        """Frames over 4096 bytes close with 1009, as gorilla's read limit."""
        _, a = self.online("alice")
        a.sendMessage(b'{"type":"get_offline","pad":"' + b"x" * 4096 + b'"}')
        self.settle()
        self.assertEqual(a.close_code, 1009)

    def test_same_person_everywhere(self) -> None:
        """A lildengzi user is the account: direct messages from and to the
        account's other connections (the page, /ws) cross over."""
        alice, a = self.online("alice")
        bob = self.account("bob")
        page = FakeParticipant("bob", user_id=bob.id)
        self.service.connect(page)
        a.send_json({"type": "chat", "to_user_id": bob.id, "content": "to the page"})
        self.settle()
        self.assertEqual([m.content for m in page.directs], ["to the page"])
        self.successResultOf(
            Deferred.fromCoroutine(self.service.send_direct(page, alice.id, "from the page"))
        )
        self.settle()
        self.assertEqual(
            a.frames(),
            [
                {
                    "type": "chat",
                    "to_user_id": alice.id,
                    "from_user_id": bob.id,
                    "content": "from the page",
                }
            ],
        )
