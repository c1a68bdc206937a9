"""Account state across two real instances (issue 16): two ``twistd -n
parkchat`` processes on one PostgreSQL database and one Redis of the test's
own (``PrivateRedis``), driven with the ``websockets`` sync client and
``urllib`` (``tests.test_multi_instance.MultiInstanceCase``).

What a user sees with a phone on one server and a laptop on the other: a
room joined on one device is in the other's ``state`` and pushed to it live;
a read marker set on one instance reaches the account's connection on the
other as ``room_state`` with exact counts; mentions cross with the message.
And refresh tokens over real HTTP: rotation on either instance, reuse
detection revoking the login.
"""

from __future__ import annotations

import json
from typing import Any

from tests.redis_support import PrivateRedis
from tests.test_multi_instance import Frame, MultiInstanceCase


class AccountStateAcrossInstancesTests(MultiInstanceCase):
    instances = 2

    def redis_url(self) -> str:
        self.redis = PrivateRedis(self.mktemp())
        self.redis.start()
        self.addCleanup(self.redis.kill)
        return self.redis.url

    def of_type(self, client: Any, kind: str, **fields: Any) -> Frame:
        """The next frame of ``kind`` (with ``fields``), others skipped."""
        return self.next_frame(
            client,
            lambda f: f.get("type") == kind and all(f.get(k) == v for k, v in fields.items()),
        )

    def test_read_marker_reaches_the_other_instance(self) -> None:
        """Phone on instance A, laptop on instance B, one account."""
        self.register("alice")
        self.register("bob")
        phone = self.app("alice", 0, room="garden")
        laptop = self.app("alice", 1, room=None)
        state = self.of_type(laptop, "state")
        self.assertEqual([r["room"] for r in state["rooms"]], ["garden"])
        # Joined on the phone: pushed live to the laptop on the other instance.
        self.send(phone, {"type": "join", "room": "attic"})
        pushed = self.of_type(laptop, "room_state", room="attic")
        self.assertTrue(pushed["joined"])
        self.send(laptop, {"type": "join", "room": "garden", "id": "j"})
        self.of_type(laptop, "joined")
        bob = self.app("bob", 0, room="garden")
        for body in ("hello", "@alice look at this", "and @room too"):
            self.assertEqual(self.request(bob, {"type": "message", "body": body})["type"], "ack")
        bodies = []
        for _ in range(3):
            message = self.of_type(laptop, "message")
            bodies.append((message["body"], message.get("mentions")))
        self.assertEqual(
            bodies,
            [
                ("hello", None),
                ("@alice look at this", ["alice"]),
                ("and @room too", ["@room"]),
            ],
        )
        # The phone reads up to seq 2 on instance A ...
        self.send(phone, {"type": "read", "room": "garden", "seq": 2})
        # ... and the laptop on instance B hears it, with exact counts.
        state = self.of_type(laptop, "room_state", room="garden")
        self.assertEqual(
            {k: state[k] for k in ("seq", "read_seq", "unread", "mentions", "joined")},
            {"seq": 3, "read_seq": 2, "unread": 1, "mentions": 1, "joined": True},
        )
        # A new device on B starts from the stored state.
        tablet = self.app("alice", 1, room=None)
        [garden] = [r for r in self.of_type(tablet, "state")["rooms"] if r["room"] == "garden"]
        self.assertEqual((garden["read_seq"], garden["unread"], garden["mentions"]), (2, 1, 1))

    def test_refresh_tokens_over_http(self) -> None:
        """A remembered login refreshes on either instance (rotation); a
        spent refresh token presented again revokes the login everywhere."""
        self.register("carol")

        def post(server: int, path: str, body: Any) -> tuple[int, Any]:
            status, raw = self.servers[server].request(path, "POST", body)
            return status, json.loads(raw)

        status, login = post(
            0,
            "/login",
            {"username": "carol", "password": self.passwords["carol"], "remember": True},
        )
        self.assertEqual(status, 200, login)
        first = login["refresh_token"]
        self.assertEqual(login["refresh_expires_in"], 30 * 86400)
        status, refreshed = post(1, "/refresh", {"refresh_token": first})
        self.assertEqual(status, 200, refreshed)
        second = refreshed["refresh_token"]
        self.assertNotEqual(second, first)
        # The new signed token works on the other instance.
        client = self._connect(self.servers[0].ws_url("/ws?token=" + refreshed["token"]))
        self.assertEqual(self.recv(client)["type"], "ready")
        # The spent one again: refused, and the whole login is revoked.
        status, reused = post(0, "/refresh", {"refresh_token": first})
        self.assertEqual((status, reused["error"]), (401, "unauthorized"))
        status, after = post(1, "/refresh", {"refresh_token": second})
        self.assertEqual(status, 401, after)
        # Logout revokes a remembered login.
        _, login = post(
            1,
            "/login",
            {"username": "carol", "password": self.passwords["carol"], "remember": True},
        )
        status, _ = post(0, "/logout", {"refresh_token": login["refresh_token"]})
        self.assertEqual(status, 200)
        self.assertEqual(post(1, "/refresh", {"refresh_token": login["refresh_token"]})[0], 401)
