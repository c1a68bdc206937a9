"""Edits, deletions, search and topics end to end (issue #16): a real
``twistd -n parkchat`` (SQLite file, ``--tcp``, an admin token) and
independent clients -- the ``websockets`` library on ``/ws``, a blocking TCP
socket on the line protocol, ``urllib`` for ``GET /search`` and the admin
API. Every wait is bounded by a timeout."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from websockets.sync.client import ClientConnection

from tests.e2e_support import LineSocket, basic_auth
from tests.test_app_end_to_end import AppEndToEndCase, Frame

ADMIN_TOKEN = "messages-e2e-admin-token-0123456789abcdef"


class MessagesEndToEndTests(AppEndToEndCase):
    server_args = ("--admin-token", ADMIN_TOKEN, "--edit-window", "600")

    def until(self, client: ClientConnection, kind: str, *also: str) -> Frame:
        """The next frame of type ``kind``, skipping presence events (and
        frames of the types ``also``)."""
        while True:
            frame = self.recv(client)
            if frame["type"] == kind:
                return frame
            self.assertIn(frame["type"], ("join", "userleave", *also), frame)

    def joined(self, nickname: str, room: str = "garden") -> ClientConnection:
        client = self.garin(nickname)
        self.send(client, {"type": "join", "room": room})
        self.until(client, "joined")
        return client

    def search(self, query: str, auth: tuple[str, str]) -> list[dict[str, Any]]:
        status, body = self.server.request(
            "/search?" + urlencode({"q": query}), headers={"Authorization": basic_auth(*auth)}
        )
        self.assertEqual(status, 200, body)
        results: list[dict[str, Any]] = json.loads(body)["results"]
        return results

    def test_edit_delete_search_topic(self) -> None:
        """An edit and a deletion reach a /ws client as ``edited`` and
        ``deleted`` events and a TCP client as notice lines; the author gets
        acks; the old text is kept for the admin API; search over HTTP finds
        the message by its new text only, and nothing once it is deleted;
        a topic reaches both and comes with the next join."""
        for nickname in ("alice", "bob"):
            self.register(nickname)
        alice = self.joined("alice")
        bob = self.joined("bob")
        carol = LineSocket(self.server.tcp_address)
        self.addCleanup(carol.close)
        carol.send_line(json.dumps({"name": "carol", "room": "garden"}))
        while self.until(alice, "join")["username"] != "carol":
            pass  # bob's join first; carol is in the room once hers has come

        self.send(alice, {"type": "message", "body": "meeting on tuesday", "id": "m"})
        ack = self.until(alice, "ack")
        seq, message_id = ack["seq"], ack["message_id"]
        self.assertEqual(self.until(bob, "message")["body"], "meeting on tuesday")
        self.assertEqual(carol.read_line(), "alice:meeting on tuesday")

        self.send(
            alice,
            {
                "type": "edit",
                "room": "garden",
                "seq": seq,
                "body": "meeting on wednesday",
                "id": "e",
            },
        )
        own = self.until(alice, "edited")
        self.assertEqual(
            self.until(alice, "ack"), {"type": "ack", "room": "garden", "seq": seq, "id": "e"}
        )
        edited = self.until(bob, "edited")
        self.assertEqual(edited, own)
        self.assertEqual(
            {k: edited[k] for k in ("room", "id", "seq", "body", "username")},
            {
                "room": "garden",
                "id": message_id,
                "seq": seq,
                "body": "meeting on wednesday",
                "username": "alice",
            },
        )
        self.assertTrue(edited["edited_at"].endswith("Z"))
        self.assertEqual(carol.read_line(), f"*** alice edited #{seq}: meeting on wednesday")

        auth = ("bob", self.passwords["bob"])
        self.assertEqual(self.search("tuesday", auth), [])
        [hit] = self.search("wedn", auth)
        self.assertEqual(
            (hit["room"], hit["id"], hit["body"], hit["highlights"], hit["edited_at"]),
            ("garden", message_id, "meeting on wednesday", [[11, 20]], edited["edited_at"]),
        )
        [shown] = self.server.history("garden", auth)
        self.assertEqual(shown["content"], "meeting on wednesday")

        error = self.request(bob, {"type": "edit", "room": "garden", "seq": seq, "body": "x"})
        self.assertEqual((error["type"], error["code"]), ("error", "forbidden"))

        status, body = self.server.request(
            f"/admin/messages/{message_id}/edits",
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        )
        self.assertEqual(status, 200, body)
        [record] = json.loads(body)["edits"]
        self.assertEqual((record["old_body"], record["editor"]), ("meeting on tuesday", "alice"))

        self.send(alice, {"type": "delete", "room": "garden", "seq": seq, "id": "d"})
        self.assertEqual(self.until(alice, "ack", "deleted")["id"], "d")
        self.assertEqual(
            self.until(bob, "deleted"),
            {"type": "deleted", "room": "garden", "id": message_id, "seq": seq},
        )
        self.assertEqual(carol.read_line(), f"*** message #{seq} deleted")
        self.assertEqual(self.search("wednesday", auth), [])
        self.assertEqual(self.server.history("garden", auth), [])

        self.send(alice, {"type": "topic", "room": "garden", "topic": "Release on Friday"})
        self.assertEqual(self.until(bob, "topic")["topic"], "Release on Friday")
        self.assertEqual(carol.read_line(), "*** alice set the topic: Release on Friday")
        self.register("dora")
        dora = self.garin("dora")
        self.send(dora, {"type": "join", "room": "garden"})
        self.assertEqual(self.until(dora, "joined")["topic"], "Release on Friday")
