"""Tests for parkchat.mentions: parsing ``@name``, ``@room`` and ``@here``."""

from __future__ import annotations

from twisted.trial.unittest import TestCase

from parkchat.mentions import (
    HERE,
    MAX_MENTIONS,
    ROOM,
    UNRESOLVED,
    candidates,
    names_to_look_up,
    parse,
    resolve,
)


class ParseTests(TestCase):
    def test_names_in_order_once(self) -> None:
        """Each name once (folded), in the order written."""
        self.assertEqual(parse("@bob hi @Alice and @BOB"), ["bob", "Alice"])

    def test_not_inside_words_or_addresses(self) -> None:
        """An ``@`` inside a word or an address is no mention; a lone ``@`` neither."""
        self.assertEqual(parse("mail bob@example.org or a@b, me @ home"), [])
        self.assertEqual(parse("(@carol) @@dave"), ["carol"])

    def test_punctuation_after_a_name(self) -> None:
        """Trailing dots and hyphens end a sentence, not a name; others stop it."""
        self.assertEqual(
            parse("thanks @alice. and @bob-, @carol! @d.e"), ["alice", "bob", "carol", "d.e"]
        )

    def test_unicode_names(self) -> None:
        """Names are parkchat nicknames: letters of any script."""
        wide_b = "\uff22ob"  # FULLWIDTH LATIN CAPITAL LETTER B
        self.assertEqual(parse(f"@Zoë @名前 @{wide_b}"), ["Zoë", "名前", wide_b])
        self.assertEqual(len(parse(f"@{wide_b} @bob")), 1)  # NFKC-folded alike

    def test_bounded(self) -> None:
        """At most MAX_MENTIONS names per message."""
        body = " ".join(f"@user{n}" for n in range(MAX_MENTIONS + 10))
        self.assertEqual(len(parse(body)), MAX_MENTIONS)


class CandidatesTests(TestCase):
    def test_specials_members_and_candidates(self) -> None:
        """``@room``/``@here`` (any case), members by their own spelling,
        others left for the store."""
        members = {"guest1": "Guest1"}
        self.assertEqual(
            candidates("@ROOM @here @guest1 @bob", members.get),
            (ROOM, HERE, "Guest1", UNRESOLVED + "bob"),
        )
        self.assertEqual(candidates("no one", members.get), ())

    def test_resolve(self) -> None:
        """Accounts get their ids and spelling; guests stay without an id;
        unknown candidates go; sorted, specials first."""
        accounts = {"bob": (2, "Bob"), "alice": (1, "alice")}
        self.assertEqual(
            resolve([UNRESOLVED + "BOB", "Guest1", HERE, UNRESOLVED + "nobody", "alice"], accounts),
            [(None, HERE), (2, "Bob"), (None, "Guest1"), (1, "alice")],
        )
        self.assertEqual(names_to_look_up([ROOM, "?Bob", "Guest1"]), ["bob", "guest1"])
