"""Tests for parkchat.handlers.edits: authors edit and delete their own room
messages within the edit window, moderators any message at any time; the
edits are recorded for moderators and reach every member as room events;
history shows the current text with its edit time."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from parkchat.errors import (
    EditWindowPassed,
    Forbidden,
    InvalidContent,
    InvalidRequest,
    NoSuchMessage,
)
from parkchat.model import CHAT, DELETED, EDITED, Message, MessageEdit
from tests.helpers import FakeParticipant, RecordingEncoder, make_service

#: A clock time (s) far from 0, so that message times are not 0.
START = 1_757_345_400


class EditCase(TestCase):
    options: dict[str, Any] = {"moderators": ("Mod",), "edit_window": 900.0}

    def setUp(self) -> None:
        clock = Clock()
        clock.advance(START)
        self.service, self.store, self.clock = make_service(clock=clock, **self.options)
        self.encoder = RecordingEncoder()
        self.alice = self.joined("alice", user_id=1)
        self.bob = self.joined("bob", user_id=2)
        self.mod = self.joined("Mod", user_id=3)

    def joined(self, nickname: str, room: str = "lobby", **kwargs: Any) -> FakeParticipant:
        participant = FakeParticipant(nickname, self.encoder, **kwargs)
        self.service.connect(participant)
        self.service.join(participant, room)
        return participant

    def post(self, participant: FakeParticipant, content: str, room: str = "lobby") -> Message:
        d = self.service.post(participant, room, content)
        self.clock.advance(0)
        return self.successResultOf(d)

    def run_(self, coroutine: Any) -> Any:
        return self.successResultOf(Deferred.fromCoroutine(coroutine))

    def fails(self, coroutine: Any, error: type[Exception]) -> Exception:
        failure = self.failureResultOf(Deferred.fromCoroutine(coroutine), error)
        return failure.value

    def events(self, participant: FakeParticipant, kind: str) -> list[Message]:
        return [m for m in participant.received if m.type == kind]


class EditTests(EditCase):
    def test_edit_own(self) -> None:
        """The author's edit is stored (with the old text recorded), every
        member gets one ``edited`` event with the new text, its seq and the
        edit time, and the history shows the new text with ``edited_ms``."""
        posted = self.post(self.alice, "helo")
        self.clock.advance(10)
        edited = self.run_(self.service.edit_message(self.alice, "lobby", posted.seq, "hello"))
        self.assertEqual((edited.content, edited.edited_ms), ("hello", (START + 10) * 1000))
        for member in (self.alice, self.bob, self.mod):
            [event] = self.events(member, EDITED)
            self.assertEqual(
                (event.id, event.seq, event.content, event.nickname, event.edited_ms),
                (posted.id, posted.seq, "hello", "alice", (START + 10) * 1000),
            )
        [shown] = self.successResultOf(self.service.history("lobby"))
        self.assertEqual((shown.content, shown.edited_ms), ("hello", (START + 10) * 1000))
        self.assertEqual(
            self.successResultOf(self.service.message_edits(posted.id)),
            [MessageEdit(posted.id, "helo", "alice", 1, (START + 10) * 1000)],
        )

    def test_history_from_the_store_and_by_seq(self) -> None:
        """Reads that bypass the recent cache show the edit too."""
        posted = self.post(self.alice, "one")
        self.run_(self.service.edit_message(self.alice, "lobby", posted.seq, "uno"))
        [by_seq] = self.successResultOf(self.service.history("lobby", after_seq=0))
        [by_id] = self.successResultOf(self.service.history("lobby", before=posted.id + 1))
        self.assertEqual([by_seq.content, by_id.content], ["uno", "uno"])

    def test_same_text_is_no_edit(self) -> None:
        """An edit to the same text records nothing and sends nothing."""
        posted = self.post(self.alice, "same")
        result = self.run_(self.service.edit_message(self.alice, "lobby", posted.seq, "same"))
        self.assertIsNone(result.edited_ms)
        self.assertEqual(self.events(self.bob, EDITED), [])
        self.assertEqual(self.successResultOf(self.service.message_edits(posted.id)), [])

    def test_not_yours(self) -> None:
        """Another member's message: forbidden; a guest's own messages
        too (a guest cannot prove it is the same guest)."""
        posted = self.post(self.alice, "mine")
        self.fails(self.service.edit_message(self.bob, "lobby", posted.seq, "x"), Forbidden)
        self.fails(self.service.delete_own_message(self.bob, "lobby", posted.seq), Forbidden)
        guest = self.joined("visitor")
        own = self.post(guest, "guest text")
        self.fails(self.service.edit_message(guest, "lobby", own.seq, "x"), Forbidden)

    def test_window(self) -> None:
        """After ``--edit-window`` seconds the author can no longer edit or
        delete; a moderator still can, and it is recorded as the
        moderator's edit."""
        posted = self.post(self.alice, "old")
        self.clock.advance(900)
        self.run_(self.service.edit_message(self.alice, "lobby", posted.seq, "at the limit"))
        self.clock.advance(1)
        error = self.fails(
            self.service.edit_message(self.alice, "lobby", posted.seq, "late"), EditWindowPassed
        )
        self.assertEqual(error.code, "edit_window_passed")
        self.fails(
            self.service.delete_own_message(self.alice, "lobby", posted.seq), EditWindowPassed
        )
        self.run_(self.service.edit_message(self.mod, "lobby", posted.seq, "moderated"))
        edits = self.successResultOf(self.service.message_edits(posted.id))
        self.assertEqual(
            [(e.old_content, e.editor) for e in edits],
            [
                ("old", "alice"),
                ("at the limit", "Mod"),
            ],
        )

    def test_no_window(self) -> None:
        """An edit window of 0 never closes."""
        self.service._edits.edit_window = 0  # type: ignore[attr-defined]
        posted = self.post(self.alice, "old")
        self.clock.advance(10**7)
        self.run_(self.service.edit_message(self.alice, "lobby", posted.seq, "new"))

    def test_bad_requests(self) -> None:
        """No such message, bad seqs, bad rooms and bad content are refused."""
        posted = self.post(self.alice, "text")
        self.fails(self.service.edit_message(self.alice, "lobby", 99, "x"), NoSuchMessage)
        self.fails(self.service.edit_message(self.alice, "other", posted.seq, "x"), NoSuchMessage)
        for seq in (0, -1, True, "1", None):
            self.fails(self.service.edit_message(self.alice, "lobby", seq, "x"), InvalidRequest)
        self.fails(self.service.edit_message(self.alice, "lobby", posted.seq, "  "), InvalidContent)
        self.fails(
            self.service.edit_message(self.alice, "lobby", posted.seq, "a\x1b[2Jb"), InvalidContent
        )

    def test_edit_times_only_grow(self) -> None:
        """Two edits in the same millisecond get increasing times, so that
        the greatest ``edited_at`` is always the latest text."""
        posted = self.post(self.alice, "v0")
        first = self.run_(self.service.edit_message(self.alice, "lobby", posted.seq, "v1"))
        second = self.run_(self.service.edit_message(self.alice, "lobby", posted.seq, "v2"))
        self.assertEqual(second.edited_ms, first.edited_ms + 1)


class DeleteTests(EditCase):
    def test_delete_own(self) -> None:
        """The author deletes: the message leaves the history and every
        member gets a ``deleted`` event with its id and seq."""
        keep = self.post(self.alice, "keep")
        gone = self.post(self.alice, "oops")
        self.run_(self.service.delete_own_message(self.alice, "lobby", gone.seq))
        [event] = self.events(self.bob, DELETED)
        self.assertEqual((event.id, event.seq), (gone.id, gone.seq))
        self.assertEqual(
            [m.content for m in self.successResultOf(self.service.history("lobby"))], ["keep"]
        )
        self.fails(self.service.delete_own_message(self.alice, "lobby", gone.seq), NoSuchMessage)
        self.assertEqual(keep.content, "keep")

    def test_moderator_deletes_any(self) -> None:
        """A moderator deletes someone else's message."""
        posted = self.post(self.bob, "spam")
        self.run_(self.service.delete_own_message(self.mod, "lobby", posted.seq))
        self.assertEqual(len(self.events(self.alice, DELETED)), 1)

    def test_guest_named_like_a_moderator(self) -> None:
        """A guest taking a moderator's name (never registered) is no
        moderator: only accounts are."""
        posted = self.post(self.alice, "text")
        impostor = self.joined("mod", room="lobby")
        self.fails(self.service.delete_own_message(impostor, "lobby", posted.seq), Forbidden)

    def test_edits_kept_after_delete(self) -> None:
        """The record of edits stays for moderators after the message goes."""
        posted = self.post(self.alice, "first")
        self.run_(self.service.edit_message(self.alice, "lobby", posted.seq, "second"))
        self.run_(self.service.delete_own_message(self.alice, "lobby", posted.seq))
        edits = self.successResultOf(self.service.message_edits(posted.id))
        self.assertEqual([e.old_content for e in edits], ["first"])

    def test_chat_unaffected(self) -> None:
        """Posting still works around edits (the edit took no position)."""
        one = self.post(self.alice, "one")
        self.run_(self.service.edit_message(self.alice, "lobby", one.seq, "uno"))
        two = self.post(self.alice, "two")
        self.assertEqual(two.seq, one.seq + 1)
        chats = [m.content for m in self.bob.received if m.type == CHAT]
        self.assertEqual(chats, ["one", "two"])
