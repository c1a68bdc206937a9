"""Tests for parkchat.handlers.search: what a search finds (rooms and the
account's own direct messages), its pages and cursors, its highlights, and
the requests it refuses."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from parkchat.errors import AuthenticationFailed, InvalidRequest, RateLimited, UnknownRecipient
from parkchat.handlers.search import SEARCH_MAX, SearchPage, decode_cursor, encode_cursor
from parkchat.limits import Limits
from parkchat.model import SearchHit, search_highlights, search_terms
from tests.helpers import FakeParticipant, make_service

START = 1_757_345_400


class TermTests(TestCase):
    def test_terms(self) -> None:
        """Words of letters and digits, lower case, each once."""
        self.assertEqual(
            search_terms("Hello, hello WORLD_42 café!"), ["hello", "world", "42", "café"]
        )

    def test_bad_queries(self) -> None:
        """Not a string, no words, too long or too many words: invalid_request (400)."""
        for query in (None, 5, "", "  ", "!!!", "x" * 201, " ".join("abcdefghi")):
            with self.assertRaises(InvalidRequest):
                search_terms(query)

    def test_highlights(self) -> None:
        """Code-point offsets of the words the terms begin, case and
        accents aside; an emoji before them counts as one code point."""
        text = "🙂 Édith edited the EDIT log"
        self.assertEqual(search_highlights(text, ["edit"]), ((2, 7), (8, 14), (19, 23)))
        self.assertEqual(
            [text[a:b] for a, b in search_highlights(text, ["ed"])],
            [
                "Édith",
                "edited",
                "EDIT",
            ],
        )
        self.assertEqual(search_highlights("nothing here", ["zzz"]), ())

    def test_cursor_round_trip(self) -> None:
        """A cursor stands for a hit's sort key; anything else is refused."""
        hit = SearchHit(id=7, seq=3, nickname="a", content="x", timestamp_ms=123, room="r")
        self.assertEqual(decode_cursor(encode_cursor(hit)), (123, 1, 7))
        self.assertIsNone(decode_cursor(None))
        for bad in ("", "!!", "bm90IGEgY3Vyc29y", 5, "x" * 101):
            self.assertRaises(InvalidRequest, decode_cursor, bad)


class SearchTests(TestCase):
    limits = Limits(rate_limit=100, rate_burst=100)

    def setUp(self) -> None:
        clock = Clock()
        clock.advance(START)
        self.service, self.store, self.clock = make_service(clock=clock, limits=self.limits)
        for name in ("alice", "bob", "carol"):
            self.successResultOf(self.service.register(name, "a long password"))
        self.alice = self.joined("alice", 1)
        self.bob = self.joined("bob", 2)

    def joined(self, nickname: str, user_id: int | None, room: str = "lobby") -> FakeParticipant:
        participant = FakeParticipant(nickname, user_id=user_id)
        self.service.connect(participant)
        self.service.join(participant, room)
        return participant

    def post(self, participant: FakeParticipant, content: str, room: str = "lobby") -> Any:
        d = self.service.post(participant, room, content)
        self.clock.advance(0)
        self.clock.advance(1)  # distinct times: newest first is unambiguous
        return self.successResultOf(d)

    def search(self, user_id: int | None = 1, nickname: str = "alice", **kwargs: Any) -> SearchPage:
        query = kwargs.pop("q")
        return self.successResultOf(
            Deferred.fromCoroutine(self.service.search(user_id, nickname, query, **kwargs))
        )

    def refused(self, error: type[Exception], **kwargs: Any) -> None:
        query = kwargs.pop("q", "x")
        user = kwargs.pop("user_id", 1)
        d = Deferred.fromCoroutine(self.service.search(user, "alice", query, **kwargs))
        self.failureResultOf(d, error)

    def test_rooms_and_own_directs(self) -> None:
        """Every word must begin a word of the message; room messages and
        the account's own direct messages come newest first; other
        accounts' direct messages never."""
        self.post(self.alice, "the garden party is on Friday")
        self.post(self.bob, "party planning", room="lobby")
        self.post(self.bob, "no match here")
        self.successResultOf(
            Deferred.fromCoroutine(self.service.send_direct(self.bob, "alice", "party at mine?"))
        )
        carol = self.joined("carol", 3)
        self.successResultOf(
            Deferred.fromCoroutine(self.service.send_direct(carol, "bob", "secret party"))
        )
        page = self.search(q="PART")
        self.assertEqual(
            [(h.room, h.with_nickname, h.content) for h in page.hits],
            [
                (None, "bob", "party at mine?"),
                ("lobby", None, "party planning"),
                ("lobby", None, "the garden party is on Friday"),
            ],
        )
        self.assertIsNone(page.next)
        self.assertEqual(page.hits[2].highlights, ((11, 16),))
        [only] = self.search(q="party garden").hits
        self.assertEqual(only.highlights, ((4, 10), (11, 16)))

    def test_only_rooms_the_account_is_in(self) -> None:
        """An account finds messages of the rooms it has joined or is in
        now, not of the others (open as they are); it finds them once it
        joins."""
        self.service.join(self.bob, "garden")
        self.post(self.bob, "garden party plans", room="garden")
        carol = FakeParticipant("carol", user_id=3)
        self.service.connect(carol)
        self.assertEqual(self.search(user_id=3, nickname="carol", q="party").hits, [])
        self.assertEqual(
            self.search(user_id=3, nickname="carol", q="party", room="garden").hits, []
        )
        self.service.join(carol, "garden")
        [hit] = self.search(user_id=3, nickname="carol", q="party").hits
        self.assertEqual((hit.room, hit.content), ("garden", "garden party plans"))

    def test_room_and_with(self) -> None:
        """``room`` keeps to one room's messages, ``with`` to one
        conversation; both at once is refused; an unknown account too."""
        self.post(self.alice, "lunch?")
        self.successResultOf(
            Deferred.fromCoroutine(self.service.send_direct(self.bob, "alice", "lunch at noon"))
        )
        self.assertEqual([h.room for h in self.search(q="lunch", room="lobby").hits], ["lobby"])
        self.assertEqual(self.search(q="lunch", room="kitchen").hits, [])
        self.assertEqual(
            [h.with_nickname for h in self.search(q="lunch", with_nickname="bob").hits], ["bob"]
        )
        self.assertEqual(self.search(q="lunch", with_nickname="carol").hits, [])
        self.refused(InvalidRequest, q="lunch", room="lobby", with_nickname="bob")
        self.refused(UnknownRecipient, q="lunch", with_nickname="nobody")

    def test_pages(self) -> None:
        """``limit`` at a time; ``next`` continues below the last, until
        a page that is the last (``next`` None)."""
        for i in range(5):
            self.post(self.alice, f"note {i}")
        first = self.search(q="note", limit=2)
        self.assertEqual([h.content for h in first.hits], ["note 4", "note 3"])
        second = self.search(q="note", limit=2, before=first.next)
        self.assertEqual([h.content for h in second.hits], ["note 2", "note 1"])
        third = self.search(q="note", limit=2, before=second.next)
        self.assertEqual(([h.content for h in third.hits], third.next), (["note 0"], None))

    def test_edited_and_deleted(self) -> None:
        """An edited message is found by its new text, not its old one; a
        deleted one not at all."""
        posted = self.post(self.alice, "old words")
        self.successResultOf(
            Deferred.fromCoroutine(
                self.service.edit_message(self.alice, "lobby", posted.seq, "new text")
            )
        )
        self.assertEqual(self.search(q="old").hits, [])
        [hit] = self.search(q="new").hits
        self.assertEqual((hit.content, hit.edited_ms is not None), ("new text", True))
        self.successResultOf(
            Deferred.fromCoroutine(self.service.delete_own_message(self.alice, "lobby", posted.seq))
        )
        self.assertEqual(self.search(q="new").hits, [])

    def test_refusals(self) -> None:
        """Guests have no search; bad limits, cursors and queries are refused."""
        self.refused(AuthenticationFailed, user_id=None)
        for limit in (0, SEARCH_MAX + 1, True, "5"):
            self.refused(InvalidRequest, limit=limit)
        self.refused(InvalidRequest, before="garbage")
        self.refused(InvalidRequest, q="")
        self.refused(InvalidRequest, q="x" * 201)

    def test_rate_limited(self) -> None:
        """Searches draw on the sender's rate limit."""
        service, _, _ = make_service(limits=Limits(rate_limit=1, rate_burst=2))
        for _ in range(2):
            self.successResultOf(Deferred.fromCoroutine(service.search(1, "alice", "x")))
        self.failureResultOf(Deferred.fromCoroutine(service.search(1, "alice", "x")), RateLimited)
