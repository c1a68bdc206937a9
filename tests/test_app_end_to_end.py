"""End to end on ``GET /ws``: a real ``twistd -n parkchat`` and independent clients.

The server is started by ``tests.e2e_support.ParkchatProcess`` on free
loopback ports (HTTP and ``--tcp``); the clients share no code with parkchat:
the ``websockets`` library's synchronous client, ``urllib`` (through
``ParkchatProcess.request``) and a blocking TCP socket. Every wait is bounded
by a timeout; the server and every client are closed in cleanup.

The flows are the ones docs/websocket.md shows: GarinChat's (login, auth
frame, join, message, userleave), seed 004's (login, a direct message to an
offline user, ``get_offline`` later), and one room shared by a /ws app, a
``/ws/{room}`` seed client and a TCP line client.
"""

from __future__ import annotations

import json
from contextlib import ExitStack
from typing import Any
from urllib.parse import quote

from twisted.trial.unittest import TestCase

from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Origin

from tests.e2e_support import LineSocket, ParkchatProcess, basic_auth

IO_TIMEOUT = 5.0
Frame = dict[str, Any]


class AppEndToEndCase(TestCase):
    """One server per test, with ``--tcp``; helpers for /ws clients."""

    server_args: tuple[str, ...] = ()

    def setUp(self) -> None:
        self.server = ParkchatProcess(self.mktemp(), tcp=True, args=self.server_args)
        self.server.start()
        self.addCleanup(self.server.stop)
        self.passwords: dict[str, str] = {}
        self.exits = ExitStack()
        self.addCleanup(self.exits.close)

    def register(self, nickname: str) -> None:
        self.passwords[nickname] = f"{nickname}-secret"
        self.server.register(nickname, self.passwords[nickname])

    def login(self, nickname: str) -> Frame:
        """``POST /login`` -> ``{"token", "user_id", "nickname", "expires_at"}``."""
        status, body = self.server.request(
            "/login", "POST", {"username": nickname, "password": self.passwords[nickname]}
        )
        self.assertEqual(status, 200, body)
        reply: Frame = json.loads(body)
        self.assertEqual(set(reply), {"token", "user_id", "nickname", "expires_at"})
        return reply

    def ws(self, path: str = "/ws", headers: dict[str, str] | None = None) -> ClientConnection:
        """A connected client, closed in cleanup."""
        client = connect(
            self.server.ws_url(path),
            additional_headers=headers,
            open_timeout=IO_TIMEOUT,
            close_timeout=IO_TIMEOUT,
        )
        # websockets 17 wants connect() used as a context manager.
        return self.exits.enter_context(client)

    def recv(self, client: ClientConnection) -> Frame:
        """The next frame, the account-state frames skipped (``state`` after
        ``ready``, pushed ``room_state``/``direct_state``: clients of these
        flows ignore them; tests/test_app_socket_state.py is about them)."""
        while True:
            frame: Frame = json.loads(client.recv(timeout=IO_TIMEOUT))
            if frame.get("type") not in ("state", "room_state", "direct_state"):
                return frame

    def send(self, client: ClientConnection, value: Any) -> None:
        client.send(json.dumps(value))

    def request(self, client: ClientConnection, value: Any) -> Frame:
        self.send(client, value)
        return self.recv(client)

    def assertNothingPending(self, client: ClientConnection) -> None:
        """Nothing is waiting for ``client``: a ping's pong is the next frame
        (frames on one connection arrive in order, so no sleeping)."""
        self.assertEqual(
            self.request(client, {"type": "ping", "id": "sync"}), {"type": "pong", "id": "sync"}
        )

    def garin(self, nickname: str) -> ClientConnection:
        """A GarinChat-style client: connect without credentials, then the
        auth frame with a token from ``/login``."""
        token = self.login(nickname)["token"]
        client = self.ws()
        ready = self.request(client, {"type": "auth", "body": token})
        self.assertEqual((ready["type"], ready["nickname"]), ("ready", nickname))
        return client


class GarinChatFlowTests(AppEndToEndCase):
    """GarinChat's client flow: auth frame -> join -> message -> userleave."""

    def test_two_users(self) -> None:
        """Two users join a room, talk and leave, seeing each other's events
        with ``username`` and ``totalUsers``; a sender gets an ack, never its
        own message back."""
        for nickname in ("alice", "bob"):
            self.register(nickname)
        alice = self.garin("alice")
        bob = self.garin("bob")

        self.send(alice, {"type": "join", "username": "alice", "room": "garden"})
        self.assertEqual(self.recv(alice)["type"], "join")
        self.assertEqual(
            self.recv(alice), {"type": "joined", "room": "garden", "seq": 0, "totalUsers": 1}
        )

        self.send(bob, {"type": "join", "username": "bob", "room": "garden"})
        for client in (bob, alice):
            event = self.recv(client)
            self.assertEqual(
                (event["type"], event["username"], event["totalUsers"]), ("join", "bob", 2)
            )
        self.assertEqual(self.recv(bob)["type"], "joined")

        ack = self.request(bob, {"type": "message", "body": "hello alice", "id": "b1"})
        self.assertEqual((ack["type"], ack["id"], ack["room"]), ("ack", "b1", "garden"))
        message = self.recv(alice)
        self.assertEqual(
            {k: message[k] for k in ("type", "id", "username", "body", "totalUsers")},
            {
                "type": "message",
                "id": ack["message_id"],
                "username": "bob",
                "body": "hello alice",
                "totalUsers": 2,
            },
        )
        self.assertNothingPending(bob)

        self.assertEqual(self.request(alice, {"type": "message", "body": "hi bob"})["type"], "ack")
        self.assertEqual(self.recv(bob)["body"], "hi bob")

        self.assertEqual(
            self.request(bob, {"type": "userleave"}), {"type": "left", "rooms": ["garden"]}
        )
        leave = self.recv(alice)
        self.assertEqual(
            (leave["type"], leave["username"], leave["totalUsers"]), ("userleave", "bob", 1)
        )

        # Stored, and in the room's history for a later client.
        reply = self.request(alice, {"type": "history", "room": "garden"})
        self.assertEqual([m["body"] for m in reply["messages"]], ["hello alice", "hi bob"])

    def test_resume_after_reconnect(self) -> None:
        """A client that reconnects with ``last_id`` (deprecated) gets what
        it missed, then the notice of its own join."""
        for nickname in ("alice", "bob"):
            self.register(nickname)
        alice = self.garin("alice")
        self.send(alice, {"type": "join", "room": "garden"})
        self.recv(alice)
        self.recv(alice)
        first = self.request(alice, {"type": "message", "body": "seen"})["message_id"]
        for body in ("missed 1", "missed 2"):
            self.request(alice, {"type": "message", "body": body})
        bob = self.garin("bob")
        self.send(bob, {"type": "join", "room": "garden", "last_id": first})
        frames = [self.recv(bob) for _ in range(3)]
        self.assertEqual([f["type"] for f in frames], ["joined", "history", "join"])
        self.assertEqual([m["body"] for m in frames[1]["messages"]], ["missed 1", "missed 2"])
        self.assertIs(frames[1]["recovered"], True)
        self.assertEqual(frames[0]["resume"], {"count": 2, "recovered": True, "first_seq": 2})

    def test_resume_by_seq(self) -> None:
        """``last_seq``: ``joined`` gives the position and the count, the
        missed messages follow in ``history`` pages, then live."""
        for nickname in ("alice", "bob"):
            self.register(nickname)
        alice = self.garin("alice")
        self.send(alice, {"type": "join", "room": "garden"})
        self.recv(alice)
        joined = self.recv(alice)
        self.assertEqual((joined["type"], joined["seq"]), ("joined", 0))
        for body in ("one", "two"):
            self.request(alice, {"type": "message", "body": body})
        bob = self.garin("bob")
        self.send(bob, {"type": "join", "room": "garden", "last_seq": 1})
        frames = [self.recv(bob) for _ in range(3)]
        self.assertEqual([f["type"] for f in frames], ["joined", "history", "join"])
        self.assertEqual((frames[0]["seq"], frames[0]["resume"]["count"]), (2, 1))
        self.assertEqual([(m["body"], m["seq"]) for m in frames[1]["messages"]], [("two", 2)])
        self.assertIs(frames[1]["last"], True)


class Seed004FlowTests(AppEndToEndCase):
    """Seed 004's flow: login -> DM to an offline user -> get_offline."""

    def test_offline_dm(self) -> None:
        """A direct message to an offline user is kept; when that user logs
        in later, ``get_offline`` returns it once, then nothing."""
        for nickname in ("alice", "bob"):
            self.register(nickname)
        alice_login = self.login("alice")
        bob_id = self.login("bob")["user_id"]
        alice = self.ws(headers={"Authorization": "Bearer " + alice_login["token"]})
        self.assertEqual(self.recv(alice)["type"], "ready")

        ack = self.request(alice, {"type": "chat", "to_user_id": bob_id, "content": "hello"})
        self.assertEqual((ack["type"], ack["to_user_id"]), ("ack", bob_id))

        online = self.request(alice, {"type": "get_online_list"})
        self.assertEqual(online["data"], [alice_login["user_id"]])

        bob = self.ws("/ws?token=" + quote(self.login("bob")["token"]))
        self.assertEqual(self.recv(bob)["type"], "ready")
        reply = self.request(bob, {"type": "get_offline"})
        self.assertEqual(reply["type"], "offline_list")
        [offline] = reply["data"]
        self.assertEqual(
            {k: offline[k] for k in ("msg_id", "to_user_id", "from_user_id", "content")},
            {
                "msg_id": ack["message_id"],
                "to_user_id": bob_id,
                "from_user_id": alice_login["user_id"],
                "content": "hello",
            },
        )
        self.assertEqual(
            self.request(bob, {"type": "get_offline"}), {"type": "offline_list", "data": []}
        )

        # Now that bob is online, a DM reaches him at once.
        self.request(alice, {"type": "chat", "to": "bob", "content": "live"})
        live = self.recv(bob)
        self.assertEqual(
            (live["type"], live["from_user_id"], live["content"]),
            ("chat", alice_login["user_id"], "live"),
        )

    def test_unknown_recipient(self) -> None:
        """A DM to nobody is an ``unknown_recipient`` error frame."""
        self.register("alice")
        alice = self.garin("alice")
        error = self.request(alice, {"type": "chat", "to_user_id": 4242, "content": "x", "id": 1})
        self.assertEqual(
            (error["type"], error["code"], error["id"]), ("error", "unknown_recipient", 1)
        )


class CrossSurfaceTests(AppEndToEndCase):
    """One room, three surfaces: /ws, /ws/{room} and TCP lines."""

    def test_everyone_sees_everyone(self) -> None:
        """A /ws app user, a ``/ws/{room}`` seed user and a TCP line user in
        ``lounge`` each see the others' messages in their own format."""
        for nickname in ("alice", "bob"):
            self.register(nickname)
        app = self.garin("alice")
        self.send(app, {"type": "join", "room": "lounge"})
        self.recv(app)
        self.recv(app)

        seed = self.ws("/ws/lounge", {"Authorization": basic_auth("bob", self.passwords["bob"])})
        self.assertEqual(json.loads(seed.recv(timeout=IO_TIMEOUT))["type"], "system")
        self.assertEqual(self.recv(app)["username"], "bob")

        line = LineSocket(self.server.tcp_address, timeout=IO_TIMEOUT)
        self.addCleanup(line.close)
        line.send_line(json.dumps({"name": "dave", "room": "lounge"}))
        self.assertEqual(self.recv(app)["username"], "dave")
        self.assertEqual(json.loads(seed.recv(timeout=IO_TIMEOUT))["type"], "system")

        self.assertEqual(self.request(app, {"type": "message", "body": "from app"})["type"], "ack")
        self.assertEqual(json.loads(seed.recv(timeout=IO_TIMEOUT))["content"], "from app")
        self.assertEqual(line.read_line(), "alice:from app")

        seed.send(json.dumps({"content": "from seed"}))
        self.assertEqual(json.loads(seed.recv(timeout=IO_TIMEOUT))["content"], "from seed")
        self.assertEqual(line.read_line(), "bob:from seed")
        event = self.recv(app)
        self.assertEqual((event["username"], event["body"]), ("bob", "from seed"))

        line.send_line("from tcp")
        self.assertEqual(line.read_line(), "~dave:from tcp")  # a guest
        self.assertEqual(json.loads(seed.recv(timeout=IO_TIMEOUT))["content"], "from tcp")
        event = self.recv(app)
        self.assertEqual((event["username"], event["body"]), ("dave", "from tcp"))

        reply = self.request(app, {"type": "who"})
        self.assertEqual(sorted(reply["users"]), ["alice", "bob", "dave"])


class ProtectionTests(AppEndToEndCase):
    """Bad input, refusals and timeouts as an outside client sees them."""

    server_args = ("--auth-timeout", "0.5")

    def test_bad_frames(self) -> None:
        """Invalid JSON, an unknown type and a frame before auth are error
        frames; the connection carries on."""
        self.register("alice")
        token = self.login("alice")["token"]
        client = self.ws()
        client.send("{not json")
        self.assertEqual(self.recv(client)["code"], "invalid_request")
        self.assertEqual(
            self.request(client, {"type": "join", "room": "x"})["code"], "not_authenticated"
        )
        self.assertEqual(self.request(client, {"type": "auth", "body": token})["type"], "ready")
        self.assertEqual(self.request(client, {"type": "dance", "id": 9})["code"], "unknown_type")
        self.assertNothingPending(client)

    def test_auth_timeout(self) -> None:
        """A connection that never authenticates is closed with 4001."""
        client = self.ws()
        with self.assertRaises(ConnectionClosed) as caught:
            client.recv(timeout=IO_TIMEOUT)
        assert caught.exception.rcvd is not None
        self.assertEqual(caught.exception.rcvd.code, 4001)

    def test_refused_over_http(self) -> None:
        """A bad token is 401 and a foreign Origin 403, before any upgrade."""
        with self.assertRaises(InvalidStatus) as caught:
            with connect(self.server.ws_url("/ws?token=bad"), open_timeout=IO_TIMEOUT):
                pass
        self.assertEqual(caught.exception.response.status_code, 401)
        with self.assertRaises(InvalidStatus) as caught:
            with connect(
                self.server.ws_url("/ws"),
                origin=Origin("http://evil.example"),
                open_timeout=IO_TIMEOUT,
            ):
                pass
        self.assertEqual(caught.exception.response.status_code, 403)
