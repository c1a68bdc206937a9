"""The GarinChat dialect (seed 002) in memory: frame by frame, byte by byte,
on the main port's ``/`` and on a ``--garinchat`` listener's every path."""

from __future__ import annotations

import json
import warnings
from typing import Any

from twisted.internet.defer import Deferred
from twisted.web.resource import getChildForRequest
from twisted.web.static import File
from twisted.web.test.requesthelper import DummyRequest

import jwt

from parkchat.errors import AuthenticationFailed
from parkchat.limits import Limits
from parkchat.protocols.garinchat import AUTH_TIMEOUT, JOIN_TIMEOUT, GarinChatTokens
from parkchat.web.dialects import GarinChatSocket
from tests.dialect_support import GARIN_SECRET, DialectCase, RawClient, header
from tests.helpers import FakeParticipant


def token(
    claims: dict[str, Any] | None = None, algorithm: str = "HS256", key: bytes = GARIN_SECRET
) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the seed's secrets may be short
        return jwt.encode(claims or {}, key, algorithm=algorithm)


class GarinCase(DialectCase):
    def connect(self, path: str = "/", *, listener: bool = False, **kwargs: Any) -> RawClient:
        site = self.garinchat_site if listener else self.main_site
        return self.websocket(site, path, **kwargs)

    def auth(self, client: RawClient, jwt_token: str | None = None) -> None:
        client.send_json({"type": "auth", "body": jwt_token or token()})
        self.settle()

    def joined(self, name: str, room: str = "lobby", **kwargs: Any) -> RawClient:
        """A client that authenticated and joined; what it was sent is kept."""
        client = self.connect(**kwargs)
        self.auth(client)
        client.send_json({"type": "join", "username": name, "room": room})
        self.settle()
        self.assertIsNone(client.closed, f"{name} could not join: {client.closed}")
        return client

    def assertClosed(self, client: RawClient, reason: str, code: int = 1008) -> None:
        self.assertIsNotNone(client.closed, "the connection is still open")
        self.assertEqual((client.close_code, client.close_reason), (code, reason))


class ExchangeTests(GarinCase):
    """A working client sees exactly the seed's frames."""

    def test_join_message_leave(self) -> None:
        """The seed's three events, byte for byte: a join to everyone (the
        joiner too) with totalUsers, a message to everyone but its sender,
        a leave to those who stay."""
        mina = self.joined("mina")
        self.assertEqual(mina.take(), [b'{"type":"join","username":"mina","totalUsers":1}'])
        bob = self.joined("bob", listener=True, path="/any/path")
        join = b'{"type":"join","username":"bob","totalUsers":2}'
        self.assertEqual(mina.take(), [join])
        self.assertEqual(bob.take(), [join])
        mina.send_json({"type": "message", "body": "hi bob"})
        self.settle()
        self.assertEqual(bob.take(), [b'{"type":"message","body":"hi bob","username":"mina"}'])
        self.assertEqual(mina.take(), [])
        bob.sendClose(1000)
        self.settle()
        self.assertEqual(mina.take(), [b'{"type":"userleave","username":"bob","totalUsers":1}'])

    def test_go_escaping(self) -> None:
        """``<``, ``>`` and ``&`` are escaped as Go escapes them; other text
        is UTF-8 as it is."""
        mina = self.joined("mina")
        bob = self.joined("bob")
        mina.take()
        bob.take()
        mina.send_json({"type": "message", "body": "<b>café & co</b>"})
        self.settle()
        self.assertEqual(
            bob.take(),
            [
                '{"type":"message","body":"\\u003cb\\u003ecafé \\u0026 co\\u003c/b\\u003e",'
                '"username":"mina"}'.encode()
            ],
        )

    def test_stored(self) -> None:
        """Messages are stored in the room as a guest's (no account id)."""
        mina = self.joined("mina")
        mina.send_json({"type": "message", "body": "kept"})
        self.settle()
        [stored] = self.successResultOf(self.service.history("lobby"))
        self.assertEqual((stored.nickname, stored.content, stored.user_id), ("mina", "kept", None))

    def test_keys_case_insensitive(self) -> None:
        """Keys are matched as Go matches them: case does not matter."""
        client = self.connect()
        client.send_json({"TYPE": "auth", "Body": token()})
        client.send_json({"Type": "JOIN".lower(), "UserName": "mina", "ROOM": "lobby"})
        self.settle()
        self.assertEqual(json.loads(client.take()[0])["username"], "mina")

    def test_empty_body_ignored(self) -> None:
        """An empty or blank body is ignored; the connection stays."""
        mina = self.joined("mina")
        bob = self.joined("bob")
        mina.take()
        for body in ("", "   "):
            bob.send_json({"type": "message", "body": body})
        self.settle()
        self.assertEqual(mina.take(), [])
        self.assertIsNone(bob.closed)

    def test_userleave_changes_nothing(self) -> None:
        """``userleave`` after joining is only noted, as in the seed: the
        user stays and keeps receiving."""
        mina = self.joined("mina")
        bob = self.joined("bob")
        mina.take()
        bob.take()
        bob.send_json({"type": "userleave"})
        mina.send_json({"type": "message", "body": "still there?"})
        self.settle()
        self.assertEqual(len(bob.take()), 1)
        self.assertEqual(mina.take(), [])
        self.assertEqual(sorted(self.service.members("lobby")), ["bob", "mina"])

    def test_other_events_not_sent(self) -> None:
        """Events GarinChat has no frame for (typing) are not sent."""
        mina = self.joined("mina")
        other = FakeParticipant("ann")
        self.service.connect(other)
        self.service.join(other, "lobby")
        self.settle()
        mina.take()
        self.service.notify(other, "lobby", "typing")
        self.settle()
        self.assertEqual(mina.take(), [])

    def test_frames_kept_while_the_name_is_checked(self) -> None:
        """A message sent right after ``join``, while the name is being
        checked against the accounts, is posted once the join is done."""
        pending: Deferred[bool] = Deferred()
        self.patch(self.service, "account_exists", lambda name: pending)
        mina = self.connect()
        self.auth(mina)
        mina.send_json({"type": "join", "username": "mina", "room": "lobby"})
        mina.send_json({"type": "message", "body": "early"})
        self.settle()
        self.assertEqual(self.service.members("lobby"), [])
        pending.callback(False)
        self.settle()
        [stored] = self.successResultOf(self.service.history("lobby"))
        self.assertEqual(stored.content, "early")


class TokenTests(GarinCase):
    """Any HMAC-signed JWT under the secret, as the seed's ``jwt.Parse``."""

    def assertAdmitted(self, jwt_token: str) -> None:
        client = self.connect()
        self.auth(client, jwt_token)
        self.assertIsNone(client.closed)

    def assertRefused(self, jwt_token: str) -> None:
        client = self.connect()
        self.auth(client, jwt_token)
        self.assertClosed(client, "invalid or expired token")

    def test_any_hmac_algorithm_no_claims(self) -> None:
        """HS256, HS384 and HS512 with no claims at all are accepted."""
        for algorithm in ("HS256", "HS384", "HS512"):
            self.assertAdmitted(token({}, algorithm))

    def test_expiry_when_present(self) -> None:
        """``exp`` and ``nbf`` count only when present, on the clock."""
        now = self.clock.seconds()
        self.assertAdmitted(token({"exp": now + 60, "nbf": now - 1}))
        self.assertRefused(token({"exp": now - 1}))
        self.assertRefused(token({"nbf": now + 60}))
        self.assertRefused(token({"exp": "tomorrow"}))

    def test_wrong_key_or_algorithm(self) -> None:
        """Another key, ``none`` and garbage are refused (closed, 1008)."""
        self.assertRefused(token({}, key=b"another secret"))
        self.assertRefused(jwt.encode({}, None, algorithm="none"))
        self.assertRefused("not.a.token")

    def test_parkchat_login_tokens(self) -> None:
        """parkchat's own login tokens are accepted too; the name still
        comes from the join (a guest's, so not the account's own)."""
        user = self.account("alice")
        own, _ = self.authority.issue(user.id, user.nickname)
        self.assertAdmitted(own)

    def test_own_tokens_only_without_secret(self) -> None:
        """Without a secret, only parkchat tokens are accepted."""
        tokens = GarinChatTokens(self.clock, None, None)
        self.assertRaises(AuthenticationFailed, tokens.verify, token())


class RefusalTests(GarinCase):
    """Where the seed drops the connection, parkchat closes it with 1008
    and the reason."""

    def test_auth_timeout(self) -> None:
        client = self.connect()
        self.clock.advance(AUTH_TIMEOUT - 0.1)
        self.settle()
        self.assertIsNone(client.closed)
        self.clock.advance(0.1)
        self.settle()
        self.assertClosed(client, "no auth message in time")

    def test_join_timeout(self) -> None:
        client = self.connect()
        self.clock.advance(1)
        self.auth(client)
        self.clock.advance(JOIN_TIMEOUT - 0.1)
        self.settle()
        self.assertIsNone(client.closed)
        self.clock.advance(0.1)
        self.settle()
        self.assertClosed(client, "no join message in time")

    def test_out_of_order(self) -> None:
        """A second auth, a join before auth, a second join, a message or
        userleave before joining: each closes."""
        cases: list[tuple[list[dict[str, Any]], str]] = [
            ([{"type": "auth", "body": token()}] * 2, "already authenticated"),
            (
                [{"type": "join", "username": "mina", "room": "lobby"}],
                "authenticate before joining",
            ),
            (
                [{"type": "auth", "body": token()}, {"type": "message", "body": "x"}],
                "join a room before sending messages",
            ),
            (
                [{"type": "auth", "body": token()}, {"type": "userleave"}],
                "userleave before joining a room",
            ),
            (
                [
                    {"type": "auth", "body": token()},
                    {"type": "join", "username": "mina", "room": "lobby"},
                    {"type": "join", "username": "mina", "room": "other"},
                ],
                "already joined a room",
            ),
        ]
        for frames, reason in cases:
            client = self.connect()
            for frame in frames:
                client.send_json(frame)
            self.settle()
            self.assertClosed(client, reason)

    def test_bad_frames(self) -> None:
        """An unknown type, invalid JSON, something after the JSON value
        (``json.Unmarshal``), a wrong field type: each closes."""
        for payload, reason in (
            (b'{"type":"dance"}', "unknown message type 'dance'"),
            (b"{not json", "frame is not valid JSON"),
            (
                b'{"type":"auth","body":"x"} {}',
                "frame is not valid JSON: something follows the value",
            ),
            (b'{"type":"auth","body":5}', '"body" must be a string'),
            (b"[1]", "frame must be a JSON object"),
        ):
            client = self.connect()
            client.sendMessage(payload)
            self.settle()
            self.assertClosed(client, reason)

    def test_bad_frame_after_join_leaves(self) -> None:
        """Invalid JSON after joining: the others are told of the leave."""
        mina = self.joined("mina")
        bob = self.joined("bob")
        mina.take()
        bob.sendMessage(b"garbage")
        self.settle()
        self.assertClosed(bob, "frame is not valid JSON")
        self.assertEqual(mina.take(), [b'{"type":"userleave","username":"bob","totalUsers":1}'])

    def test_short_name_or_room(self) -> None:
        """Name and room need 3 bytes (Go's ``len``): ``é`` counts two."""
        for name, room in (("ab", "lobby"), ("mina", "ab")):
            client = self.connect()
            self.auth(client)
            client.send_json({"type": "join", "username": name, "room": room})
            self.settle()
            self.assertClosed(client, "username and room must be at least 3 bytes")
        self.joined("éa")

    def test_guest_names(self) -> None:
        """A registered account's name, a name taken in the room or one
        against parkchat's naming rules is refused."""
        self.account("alice")
        self.joined("mina")
        for name, reason in (
            ("alice", "alice is a registered account's name"),
            ("Mina", "the name Mina is already taken in lobby"),
            (
                "no spaces",
                "nickname may contain only letters, digits, '_', '-' and '.', "
                "and must start with a letter, digit or '_'",
            ),
        ):
            client = self.connect()
            self.auth(client)
            client.send_json({"type": "join", "username": name, "room": "lobby"})
            self.settle()
            self.assertClosed(client, reason)

    def test_guests_not_allowed(self) -> None:
        """With ``--allow-guests no`` nobody joins: GarinChat's users are
        all guests."""
        self.garinchat.allow_guests = False
        client = self.connect()
        self.auth(client)
        client.send_json({"type": "join", "username": "mina", "room": "lobby"})
        self.settle()
        self.assertClosed(client, "guests are not allowed here")

    def test_limits_close_with_reason(self) -> None:
        """parkchat's content limit: closed with 1008 and the reason."""
        mina = self.joined("mina")
        mina.send_json({"type": "message", "body": "x" * 4001})
        self.settle()
        self.assertClosed(mina, "content is longer than 4000 characters")

    def test_shutdown_and_kick(self) -> None:
        """A kick closes with 1008; shutting down with 1001."""
        mina = self.joined("mina")
        bob = self.joined("bob")
        self.assertEqual(self.service.kick("bob", "lobby", "spam"), 1)
        self.settle()
        self.assertClosed(bob, "removed from lobby: spam")
        self.successResultOf(self.service.stopService())
        self.settle()
        self.assertClosed(mina, "server shutting down", 1001)


class RateTests(GarinCase):
    limits = Limits(rate_limit=1, rate_burst=2)

    def test_rate_limit_closes(self) -> None:
        """Past parkchat's rate limit the client is closed (the seed: past
        one message a second)."""
        mina = self.joined("mina")
        for body in ("one", "two", "three"):
            mina.send_json({"type": "message", "body": body})
        self.settle()
        self.assertClosed(mina, "too many messages: slow down")
        stored = self.successResultOf(self.service.history("lobby"))
        self.assertEqual([m.content for m in stored], ["one", "two"])


class HttpTests(GarinCase):
    """The HTTP side: the page stays at ``/``; origins are checked."""

    def test_plain_get_is_the_page(self) -> None:
        """``GET /`` without an upgrade is still the browser page's; with
        one, GarinChat's socket."""
        root = self.main_site.resource
        plain = DummyRequest([b""])
        self.assertIsInstance(getChildForRequest(root, plain), File)
        upgrading = DummyRequest([b""])
        upgrading.requestHeaders.setRawHeaders(b"upgrade", [b"WebSocket"])
        self.assertIsInstance(getChildForRequest(root, upgrading), GarinChatSocket)

    def test_foreign_origin(self) -> None:
        """A page of another origin gets 403 (the seed: an empty 200); a
        client without ``Origin`` is let in."""
        headers = {"Upgrade": "websocket", "Connection": "Upgrade", "Origin": "http://evil.test"}
        for site in (self.main_site, self.garinchat_site):
            response, body = self.http(site, "GET", "/", headers=headers)
            self.assertEqual((response.code, body), (403, b"origin not allowed\n"))
            self.assertEqual(header(response, "Content-Type"), "text/plain; charset=utf-8")
        client = self.connect()
        self.assertTrue(client.opened)


class AllowedOriginTests(GarinCase):
    allowed_origins = ("http://garin.test",)

    def test_allowed_origin(self) -> None:
        """An allowed page origin may connect (``--garinchat-origins``)."""
        client = self.connect(origin="http://garin.test")
        self.auth(client)
        self.assertTrue(client.opened)
        self.assertIsNone(client.closed)
