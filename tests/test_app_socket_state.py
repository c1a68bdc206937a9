"""Account state and mentions on ``GET /ws`` (issue 16), in memory: the
``state`` frame after ``ready``, ``read``, ``mute``, ``open_direct``,
``close_direct``, the pushed ``room_state`` / ``direct_state``, rooms
recorded by ``join`` and forgotten by ``leave``, and ``mentions`` in
message, history and resume frames. Same harness as
``tests/test_app_socket.py`` (real site, real RFC 6455 frames over iosim,
one Clock)."""

from __future__ import annotations

from typing import Any

import jwt

from parkchat.tokens import ExternalTokenVerifier, TokenVerifier
from tests.test_app_socket import AppSocketCase, Frame


def of_type(frames: list[Frame], kind: str) -> list[Frame]:
    return [f for f in frames if f["type"] == kind]


class AccountStateTests(AppSocketCase):
    """Rooms, conversations and read markers follow the account."""

    def device(self, nickname: str) -> tuple[Any, Frame]:
        """A logged-in /ws connection of ``nickname`` and the ``state``
        frame it got right after ``ready``."""
        client = self.open()
        frames = self.send(client, {"type": "auth", "body": self.token(nickname)})
        self.assertEqual([f["type"] for f in frames], ["ready", "state"], frames)
        return client, frames[1]

    def test_state_after_ready(self) -> None:
        """A new connection of the account is told its rooms (joined on
        another device) and conversations, with positions and counts."""
        phone, state = self.device("alice")
        self.assertEqual(state, {"type": "state", "rooms": [], "directs": []})
        self.send(phone, {"type": "join", "room": "garden"})
        bob = self.joined("bob", "garden")
        self.post(bob, "one")
        self.post(bob, "two @alice")
        self.send(bob, {"type": "chat", "to": "alice", "content": "psst"})
        _, state = self.device("alice")
        self.assertEqual(
            state,
            {
                "type": "state",
                "rooms": [
                    {
                        "room": "garden",
                        "seq": 2,
                        "read_seq": 0,
                        "unread": 2,
                        "mentions": 1,
                        "muted": False,
                        "topic": None,
                    }
                ],
                "directs": [
                    {
                        "with": "bob",
                        "with_user_id": self.accounts["bob"].id,
                        "seq": 1,
                        "read_seq": 0,
                        "unread": 1,
                    }
                ],
            },
        )

    def test_join_pushed_to_other_devices(self) -> None:
        """A room joined on one device reaches the account's other
        connections as ``room_state`` with ``joined`` true; the joining one
        gets its ``joined`` answer only; a second join pushes nothing."""
        phone, _ = self.device("alice")
        laptop, _ = self.device("alice")
        frames = self.send(phone, {"type": "join", "room": "garden"})
        self.assertEqual([f["type"] for f in frames], ["join", "joined"])
        self.assertEqual(
            laptop.take(),
            [
                {
                    "type": "room_state",
                    "room": "garden",
                    "seq": 0,
                    "read_seq": 0,
                    "unread": 0,
                    "mentions": 0,
                    "muted": False,
                    "topic": None,
                    "joined": True,
                }
            ],
        )
        self.assertEqual(
            [f["type"] for f in self.send(laptop, {"type": "join", "room": "garden"})],
            ["join", "joined"],
        )
        self.assertEqual([f["type"] for f in phone.take()], ["join"])  # no room_state

    def test_read_marker_synced(self) -> None:
        """``read`` answers an ``ack`` (with the id) and pushes the exact
        counts to every connection of the account; a marker going back
        pushes nothing."""
        phone, _ = self.device("alice")
        self.send(phone, {"type": "join", "room": "garden"})
        laptop, _ = self.device("alice")
        self.send(laptop, {"type": "join", "room": "garden"})
        bob = self.joined("bob", "garden")
        for body in ("a", "b @alice", "c"):
            self.post(bob, body)
        phone.take()
        laptop.take()
        frames = self.send(phone, {"type": "read", "room": "garden", "seq": 2, "id": "r1"})
        # The ack and the push in either order: the push crosses the bus.
        self.assertCountEqual(
            frames,
            [
                {"type": "ack", "id": "r1"},
                {
                    "type": "room_state",
                    "room": "garden",
                    "seq": 3,
                    "read_seq": 2,
                    "unread": 1,
                    "mentions": 0,
                    "muted": False,
                    "topic": None,
                    "joined": True,
                },
            ],
        )
        self.assertEqual(of_type(laptop.take(), "room_state")[0]["read_seq"], 2)
        self.assertEqual(self.send(phone, {"type": "read", "room": "garden", "seq": 1}), [])
        self.assertEqual(laptop.take(), [])

    def test_mute(self) -> None:
        phone, _ = self.device("alice")
        self.send(phone, {"type": "join", "room": "garden"})
        [state] = self.send(phone, {"type": "mute", "room": "garden", "muted": True})
        self.assertEqual((state["type"], state["muted"]), ("room_state", True))
        self.assertError(
            self.send(phone, {"type": "mute", "room": "attic", "muted": True, "id": 4}),
            "not_in_room",
            4,
        )

    def test_leave_forgets(self) -> None:
        """``leave`` takes the room off the account's list, on every device."""
        phone, _ = self.device("alice")
        laptop, _ = self.device("alice")
        self.send(phone, {"type": "join", "room": "garden"})
        laptop.take()
        self.assertEqual(
            [f["type"] for f in self.send(phone, {"type": "leave", "room": "garden"})], ["left"]
        )
        [pushed] = laptop.take()
        self.assertEqual((pushed["type"], pushed["joined"]), ("room_state", False))
        _, state = self.device("alice")
        self.assertEqual(state["rooms"], [])

    def test_disconnect_is_no_leave(self) -> None:
        """Closing the connection keeps the room the account's."""
        phone, _ = self.device("alice")
        self.send(phone, {"type": "join", "room": "garden"})
        assert phone.transport is not None
        phone.transport.loseConnection()
        self.settle()
        _, state = self.device("alice")
        self.assertEqual([r["room"] for r in state["rooms"]], ["garden"])

    def test_seed_room_socket_not_recorded(self) -> None:
        """A room joined on ``/ws/{room}`` (the seed API) is not recorded."""
        self.seed_client("alice", "garden")
        self.settle()
        _, state = self.device("alice")
        self.assertEqual(state["rooms"], [])

    def test_open_and_close_direct(self) -> None:
        """``open_direct`` lists a conversation without messages;
        ``close_direct`` hides it until its next message; both pushed as
        ``direct_state`` with ``open``."""
        phone, _ = self.device("alice")
        frames = self.send(phone, {"type": "open_direct", "with": "carol", "id": 1})
        self.assertCountEqual(
            frames,
            [
                {"type": "ack", "id": 1},
                {
                    "type": "direct_state",
                    "with": "carol",
                    "with_user_id": self.accounts["carol"].id,
                    "seq": 0,
                    "read_seq": 0,
                    "unread": 0,
                    "open": True,
                },
            ],
        )
        [closed] = self.send(phone, {"type": "close_direct", "with": "carol"})
        self.assertEqual((closed["type"], closed["open"]), ("direct_state", False))
        self.assertEqual(
            self.send(phone, {"type": "state", "id": "s"}),
            [{"type": "state", "rooms": [], "directs": [], "id": "s"}],
        )
        self.assertError(
            self.send(phone, {"type": "open_direct", "with": "nobody"}), "unknown_recipient"
        )

    def test_direct_read(self) -> None:
        phone, _ = self.device("alice")
        bob = self.login("bob")
        bob.take()
        for text in ("1", "2"):
            self.send(bob, {"type": "chat", "to": "alice", "content": text})
        phone.take()
        [state] = self.send(phone, {"type": "read", "with": "bob", "seq": 1})
        self.assertEqual(
            (state["type"], state["read_seq"], state["unread"], state["seq"]),
            ("direct_state", 1, 1, 2),
        )

    def test_bad_requests(self) -> None:
        phone, _ = self.device("alice")
        self.assertError(
            self.send(phone, {"type": "read", "room": "garden", "seq": "x", "id": 1}),
            "invalid_request",
            1,
        )
        self.assertError(self.send(phone, {"type": "read", "seq": 1}), "invalid_request")
        self.assertError(
            self.send(phone, {"type": "mute", "room": "garden", "muted": "yes"}),
            "invalid_request",
        )

    def test_guest_gets_no_state(self) -> None:
        """A connection without an account gets no ``state``; its account
        state requests are ``forbidden``; its joins are not recorded."""
        secret = b"e" * 32
        self.factory.tokens = TokenVerifier(
            self.authority, ExternalTokenVerifier(secret, self.clock)
        )
        token = jwt.encode(
            {"username": "garin", "exp": int(self.clock.seconds()) + 60}, secret, "HS256"
        )
        guest = self.open()
        [ready] = self.send(guest, {"type": "auth", "body": token})
        self.assertEqual(ready["type"], "ready")
        self.send(guest, {"type": "join", "room": "garden"})
        for request in (
            {"type": "state"},
            {"type": "read", "room": "garden", "seq": 1},
            {"type": "mute", "room": "garden", "muted": True},
            {"type": "open_direct", "with": "alice"},
            {"type": "close_direct", "with": "alice"},
        ):
            self.assertError(self.send(guest, request), "forbidden")


class MentionFrameTests(AppSocketCase):
    """``mentions`` in /ws message, history and resume frames."""

    def test_message_frames(self) -> None:
        """A message naming an account, ``@room`` or a member carries
        ``mentions`` (the account's spelling, sorted); one without none."""
        alice = self.joined("alice", "garden")
        bob = self.joined("bob", "garden")
        self.post(bob, "hey @ALICE and @room, also @nobody and mail@example.org")
        self.post(bob, "@carol is not here but has an account")
        self.post(bob, "plain")
        frames = of_type(alice.take(), "message")
        self.assertEqual([f.get("mentions") for f in frames], [["@room", "alice"], ["carol"], None])
        self.assertNotIn("mentions", frames[2])

    def test_history_and_resume(self) -> None:
        """History pages and a resume's replay carry the stored mentions."""
        alice = self.joined("alice", "garden")
        bob = self.joined("bob", "garden")
        self.post(bob, "@alice look")
        self.post(bob, "plain")
        alice.take()
        [page] = self.send(alice, {"type": "history", "room": "garden"})
        self.assertEqual([m.get("mentions") for m in page["messages"]], [["alice"], None])
        later = self.login("alice")
        frames = self.send(later, {"type": "join", "room": "garden", "last_seq": 0})
        [replay] = of_type(frames, "history")
        self.assertEqual([m.get("mentions") for m in replay["messages"]], [["alice"], None])
