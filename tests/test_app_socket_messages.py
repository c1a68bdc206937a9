"""``/ws`` frames of issue #16's messages part, in memory over the real site
(``tests.test_app_socket.AppSocketCase``): ``edit``, ``delete``, ``search``,
``topic``, and what a seed ``/ws/{room}`` client sees of them (nothing)."""

from __future__ import annotations

from typing import Any

from tests.test_app_socket import AppSocketCase, Frame


class MessagesCase(AppSocketCase):
    def make_service(self, **options: Any) -> Any:
        options.update(moderators=("carol",), edit_window=60.0)
        return super().make_service(**options)

    def by_type(self, frames: list[Frame], kind: str) -> Frame:
        [frame] = [f for f in frames if f["type"] == kind]
        return frame


class EditFrameTests(MessagesCase):
    def test_edit_and_delete(self) -> None:
        """The author edits: an ``edited`` event to everyone (the author
        too) and an ``ack``; then deletes: ``deleted`` and an ``ack``;
        ``history`` shows the edited text with ``edited_at`` until then."""
        alice = self.joined("alice")
        bob = self.joined("bob")
        ack = self.post(alice, "helo")
        bob.take()
        self.advance(2)
        frames = self.send(
            alice, {"type": "edit", "room": "lobby", "seq": ack["seq"], "body": "hello", "id": 1}
        )
        self.assertEqual(
            self.by_type(frames, "ack"),
            {"type": "ack", "room": "lobby", "seq": ack["seq"], "id": 1},
        )
        edited = self.by_type(frames, "edited")
        self.assertEqual(bob.take(), [edited])
        self.assertEqual(
            edited,
            {
                "type": "edited",
                "room": "lobby",
                "id": ack["message_id"],
                "seq": ack["seq"],
                "body": "hello",
                "username": "alice",
                "edited_at": edited["edited_at"],
            },
        )
        [page] = self.send(bob, {"type": "history", "room": "lobby"})
        [shown] = page["messages"]
        self.assertEqual((shown["body"], shown["edited_at"]), ("hello", edited["edited_at"]))

        frames = self.send(alice, {"type": "delete", "room": "lobby", "seq": ack["seq"], "id": 2})
        self.assertEqual(self.by_type(frames, "ack")["id"], 2)
        self.assertEqual(
            bob.take(),
            [{"type": "deleted", "room": "lobby", "id": ack["message_id"], "seq": ack["seq"]}],
        )

    def test_errors(self) -> None:
        """Not yours: ``forbidden``; too late: ``edit_window_passed``; no
        such message: ``not_found``; bad fields: ``invalid_request``; a
        moderator may still."""
        alice = self.joined("alice")
        bob = self.joined("bob")
        carol = self.joined("carol")
        ack = self.post(alice, "text")
        for client in (bob, carol):
            client.take()
        edit = {"type": "edit", "room": "lobby", "seq": ack["seq"], "body": "x", "id": "e"}
        self.assertError(self.send(bob, edit), "forbidden", "e")
        self.assertError(self.send(alice, {**edit, "seq": 99}), "not_found", "e")
        self.assertError(self.send(alice, {**edit, "seq": "1"}), "invalid_request", "e")
        self.assertError(self.send(alice, {**edit, "body": ""}), "invalid_content", "e")
        self.advance(61)
        self.assertError(self.send(alice, edit), "edit_window_passed", "e")
        frames = self.send(carol, {**edit, "body": "moderated"})
        self.assertEqual(self.by_type(frames, "edited")["body"], "moderated")

    def test_edits_for_moderators(self) -> None:
        """A moderator reads the record of a message's edits on /ws; anyone
        else is ``forbidden``."""
        alice = self.joined("alice")
        carol = self.joined("carol")
        ack = self.post(alice, "first")
        self.send(alice, {"type": "edit", "room": "lobby", "seq": ack["seq"], "body": "second"})
        request = {"type": "edits", "message_id": ack["message_id"], "id": "r"}
        carol.take()
        [reply] = self.send(carol, request)
        self.assertEqual(
            (reply["type"], reply["message_id"], reply["id"]), ("edits", ack["message_id"], "r")
        )
        [record] = reply["edits"]
        self.assertEqual((record["old_body"], record["editor"]), ("first", "alice"))
        self.assertError(self.send(alice, request), "forbidden", "r")

    def test_seed_room_socket_sees_current_text_only(self) -> None:
        """A ``/ws/{room}`` client gets no frame for an edit (its client would
        print it as a message); it sees the current text on reconnecting."""
        alice = self.joined("alice")
        seed = self.seed_client("bob")
        self.settle()
        alice.take()  # bob's join
        ack = self.post(alice, "before")
        self.settle()
        seed.take()
        self.send(alice, {"type": "edit", "room": "lobby", "seq": ack["seq"], "body": "after"})
        self.settle()
        self.assertEqual(seed.take(), [])


class SearchFrameTests(MessagesCase):
    def test_search(self) -> None:
        """``search`` answers results newest first with highlights and a
        cursor; the next page follows it."""
        alice = self.joined("alice")
        for text in ("plan one", "plan two", "plan three"):
            self.post(alice, text)
            self.advance(1)
        [reply] = self.send(alice, {"type": "search", "q": "PLAN", "limit": 2, "id": "s"})
        self.assertEqual(reply["type"], "search")
        self.assertEqual(reply["id"], "s")
        self.assertEqual([r["body"] for r in reply["results"]], ["plan three", "plan two"])
        self.assertEqual(reply["results"][0]["highlights"], [[0, 4]])
        self.assertEqual(reply["results"][0]["room"], "lobby")
        [rest] = self.send(alice, {"type": "search", "q": "plan", "before": reply["next"]})
        self.assertEqual(([r["body"] for r in rest["results"]], rest["next"]), (["plan one"], None))

    def test_bad_search(self) -> None:
        """An empty or over-long query, a bad cursor: ``invalid_request``."""
        alice = self.joined("alice")
        for frame in (
            {"q": ""},
            {"q": "x" * 201},
            {"q": "x", "before": "nope"},
            {"q": "x", "limit": 51},
            {"q": "x", "room": "lobby", "with": "bob"},
        ):
            self.assertError(self.send(alice, {"type": "search", **frame}), "invalid_request")


class TopicFrameTests(MessagesCase):
    def test_topic(self) -> None:
        """Setting a topic: ``ack`` and a ``topic`` event to every member;
        ``joined`` carries it; ``topic`` without text reads it."""
        alice = self.joined("alice")
        bob = self.joined("bob")
        frames = self.send(alice, {"type": "topic", "room": "lobby", "topic": "Friday", "id": "t"})
        self.assertEqual(self.by_type(frames, "ack"), {"type": "ack", "room": "lobby", "id": "t"})
        event = self.by_type(frames, "topic")
        self.assertEqual(bob.take(), [event])
        self.assertEqual((event["topic"], event["username"]), ("Friday", "alice"))
        carol = self.login("carol")
        frames = self.send(carol, {"type": "join", "room": "lobby"})
        self.assertEqual(self.by_type(frames, "joined")["topic"], "Friday")
        [current] = self.send(carol, {"type": "topic", "room": "lobby", "id": 3})
        self.assertEqual(
            (current["topic"], current["username"], current["id"]), ("Friday", "alice", 3)
        )
        alice.take()  # carol's join
        self.assertError(
            self.send(alice, {"type": "topic", "room": "elsewhere", "topic": "x"}), "not_in_room"
        )
