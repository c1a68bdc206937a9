"""Edits, deletions and topics across two real instances on one Redis and
one PostgreSQL database (issue #16): made on one instance, seen on the
other, each after the message it changes; search finds the edited text
from either instance. Uses ``tests.test_multi_instance.MultiInstanceCase``
on a Redis of its own (skipped without redis-server)."""

from __future__ import annotations

from urllib.parse import urlencode

from tests.e2e_support import basic_auth
from tests.redis_support import PrivateRedis
from tests.test_multi_instance import MultiInstanceCase


class EditsAcrossInstancesTests(MultiInstanceCase):
    def redis_url(self) -> str:
        """A Redis of the test's own (``PrivateRedis``)."""
        self.redis = PrivateRedis(self.mktemp())
        self.redis.start()
        self.addCleanup(self.redis.kill)
        return self.redis.url

    def test_edit_delete_topic_cross(self) -> None:
        """A message posted on instance 0 and edited on instance 1 (by
        another connection of its author) reaches a member of instance 0 as
        the message, then ``edited``; the deletion and a topic cross too;
        search on instance 0 finds the edited text."""
        for nickname in ("alice", "bob"):
            self.register(nickname)
        bob = self.app("bob", 0)
        alice_here = self.app("alice", 0)
        alice_there = self.app("alice", 1)
        ack = self.request(alice_here, {"type": "message", "body": "draft words"})
        seq = ack["seq"]
        edit = {"type": "edit", "room": "lobby", "seq": seq, "body": "final words"}
        self.assertEqual(self.request(alice_there, edit)["type"], "ack")
        message = self.next_frame(bob, lambda f: f.get("type") in ("message", "edited"))
        self.assertEqual((message["type"], message["body"]), ("message", "draft words"))
        edited = self.next_frame(bob, lambda f: f.get("type") == "edited")
        self.assertEqual((edited["seq"], edited["body"]), (seq, "final words"))

        status, body = self.servers[0].request(
            "/search?" + urlencode({"q": "final"}),
            headers={"Authorization": basic_auth("bob", self.passwords["bob"])},
        )
        self.assertEqual(status, 200, body)
        self.assertIn(b"final words", body)

        topic = {"type": "topic", "room": "lobby", "topic": "shipping today"}
        self.assertEqual(self.request(alice_there, topic)["type"], "ack")
        changed = self.next_frame(bob, lambda f: f.get("type") == "topic")
        self.assertEqual(changed["topic"], "shipping today")

        delete = {"type": "delete", "room": "lobby", "seq": seq}
        self.assertEqual(self.request(alice_there, delete)["type"], "ack")
        gone = self.next_frame(bob, lambda f: f.get("type") == "deleted")
        self.assertEqual((gone["id"], gone["seq"]), (ack["message_id"], seq))
        self.assertEqual(self.history(1, "lobby"), [])
