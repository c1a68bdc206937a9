"""The IRC wire helpers (``parkchat.protocols.ircwire``): tags, byte
limits, text splitting, formatting and the room-event encoder."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase
from twisted.words.protocols.irc import parsemsg

from parkchat.model import (
    DELETED,
    JOINED,
    KICK,
    LEFT,
    PART,
    QUIT,
    Departure,
    Message,
    system_message,
)
from parkchat.protocols.irchistory import (
    HistoryError,
    Reference,
    line_msgid,
    parse_msgid,
    parse_reference,
)
from parkchat.protocols.ircwire import (
    MSGID,
    MULTILINE,
    TIME,
    IrcEncoder,
    LineTooLong,
    check_length,
    escape_tag_value,
    message_lines,
    parse_tags,
    split_tags,
    strip_formatting,
    tag_prefix,
    unescape_tag_value,
    wrap,
)

WHEN = 1_757_345_400_123


class TagTests(SynchronousTestCase):
    """IRCv3 message tags in and out."""

    def test_split_and_parse(self) -> None:
        """Tags come off before ``parsemsg``, which then reads the rest."""
        tags, rest = split_tags("@id=123AB;rose;+example.com/x=a\\sb :nick!u@h PRIVMSG #c :hi")
        self.assertEqual(tags, {"id": "123AB", "rose": "", "+example.com/x": "a b"})
        self.assertEqual(parsemsg(rest), ("nick!u@h", "PRIVMSG", ["#c", "hi"]))
        self.assertEqual(split_tags("PING :x"), ({}, "PING :x"))

    def test_unescape(self) -> None:
        """The escapes of the spec, an unknown one and a trailing backslash
        (the examples of the message-tags specification)."""
        self.assertEqual(unescape_tag_value(r"\:\s\\\r\n"), "; \\\r\n")
        self.assertEqual(unescape_tag_value(r"\b"), "b")
        self.assertEqual(unescape_tag_value("end\\"), "end")
        self.assertEqual(parse_tags("a=1;a=2;=x;b"), {"a": "2", "b": ""})

    def test_escape_round_trip(self) -> None:
        """Escaping then unescaping gives the value back."""
        value = "a; b\\c\r\nd"
        self.assertEqual(unescape_tag_value(escape_tag_value(value)), value)
        self.assertEqual(tag_prefix({"time": "t", "flag": ""}), "@time=t;flag ")
        self.assertEqual(tag_prefix({}), "")


class LengthTests(SynchronousTestCase):
    def test_limits(self) -> None:
        """510 bytes without CRLF; with tags, 510 after at most 4094 bytes
        of tag data (IRCv3 message-tags: a client's limit)."""
        check_length(b"x" * 510)
        self.assertRaises(LineTooLong, check_length, b"x" * 511)
        check_length(b"@" + b"t" * 4094 + b" " + b"x" * 510)
        self.assertRaises(LineTooLong, check_length, b"@t " + b"x" * 511)
        self.assertRaises(LineTooLong, check_length, b"@" + b"t" * 4095 + b" " + b"x" * 200)


class TextTests(SynchronousTestCase):
    def test_wrap(self) -> None:
        """Pieces fit in bytes, break after a space where one is near, never
        inside a character, and join back into the text."""
        text = "é" * 300
        pieces = wrap(text, 101)
        self.assertEqual("".join(pieces), text)
        self.assertTrue(all(len(p.encode()) <= 101 for p in pieces))
        words = "word " * 50
        pieces = wrap(words, 42)
        self.assertEqual("".join(pieces), words)
        self.assertTrue(all(p.endswith(" ") for p in pieces[:-1]))
        self.assertEqual(wrap("short", 10), ["short"])
        self.assertEqual(wrap("", 10), [""])

    def test_strip_formatting(self) -> None:
        """Every formatting code goes, Twisted's and the newer ones; other
        characters stay."""
        self.assertEqual(
            strip_formatting(
                "\x02b\x02 \x0304,12c\x03 \x04ff0000h\x04 \x1di\x1d "
                "\x1es\x1e \x11m\x11 \x1fu\x1f \x16r\x16\x0f"
            ),
            "b c h i s m u r",
        )
        self.assertEqual(strip_formatting("tab\there"), "tab\there")

    def test_message_lines(self) -> None:
        """One PRIVMSG per line, each within 510 bytes; ``/me`` is an ACTION."""
        lines = message_lines("a!a@h", "PRIVMSG", "#r", "one\ntwo")
        self.assertEqual(lines, [":a!a@h PRIVMSG #r :one", ":a!a@h PRIVMSG #r :two"])
        self.assertEqual(
            message_lines("a!a@h", "PRIVMSG", "#r", "/me waves"),
            [":a!a@h PRIVMSG #r :\x01ACTION waves\x01"],
        )
        long = message_lines("a!a@h", "PRIVMSG", "#r", "/me " + "z" * 1000)
        self.assertTrue(all(len(line.encode()) <= 510 for line in long))
        self.assertTrue(all(line.endswith("\x01") for line in long))
        self.assertEqual([line_msgid("7", i) for i in range(3)], ["7", "7.2", "7.3"])


class EncoderTests(SynchronousTestCase):
    """The room-event encoder: once per event, per tag set on demand."""

    def setUp(self) -> None:
        self.encoder = IrcEncoder("irc.test")

    def test_chat_variants(self) -> None:
        message = Message(
            room="dev",
            nickname="mina",
            content="hi",
            timestamp_ms=WHEN,
            id=42,
            seq=7,
            origin="c1",
            user_id=3,
        )
        event = self.encoder.encode(message)
        assert event is not None
        line = ":mina!mina@irc.test PRIVMSG #dev :hi\r\n"
        self.assertEqual(event.data(0), line.encode())
        self.assertEqual(event.data(TIME), f"@time={message.timestamp} {line}".encode())
        self.assertEqual(event.data(MSGID), f"@msgid=7-42 {line}".encode())
        self.assertEqual(
            event.data(TIME | MSGID), f"@time={message.timestamp};msgid=7-42 {line}".encode()
        )
        # One line: the same with draft/multiline.
        self.assertEqual(event.data(MSGID | MULTILINE), event.data(MSGID))
        self.assertIs(event.data(TIME), event.data(TIME))  # rendered once
        self.assertEqual((event.origin, event.event, event.key), ("c1", None, "mina"))

    def test_joins_leaves_and_others(self) -> None:
        """Joins are JOIN, leaves PART (no msgid); typing a TAGMSG with
        ``+typing``; a deletion is a NOTICE from the server to the channel
        (tests/test_irc_topics.py)."""
        joined = self.encoder.encode(system_message("dev", "Mina", JOINED, WHEN))
        left = self.encoder.encode(system_message("dev", "Mina", LEFT, WHEN))
        assert joined is not None and left is not None
        self.assertEqual(joined.data(MSGID), b":Mina!Mina@irc.test JOIN #dev\r\n")
        self.assertEqual(left.data(0), b":Mina!Mina@irc.test PART #dev\r\n")
        self.assertEqual((joined.event, joined.key), (JOINED, "mina"))
        deleted = Message(
            room="dev", nickname="", content="", timestamp_ms=WHEN, type=DELETED, id=9, seq=4
        )
        notice = self.encoder.encode(deleted)
        assert notice is not None
        self.assertEqual(notice.data(MSGID), b":irc.test NOTICE #dev :message #4 deleted\r\n")
        typing = Message(room="dev", nickname="x", content="", timestamp_ms=WHEN, type="typing")
        event = self.encoder.encode(typing)
        assert event is not None
        self.assertTrue(event.tag_only)
        self.assertEqual(event.data(MSGID), b"@+typing=active :x!x@irc.test TAGMSG #dev\r\n")

    def test_departures(self) -> None:
        """A leave is PART, QUIT or KICK by its departure; long reasons are
        cut to fit the line (in bytes, never inside a character)."""
        cases = (
            (Departure(PART, "bye"), ":Mina!Mina@irc.test PART #dev :bye"),
            (Departure(PART, ""), ":Mina!Mina@irc.test PART #dev"),
            (Departure(QUIT, "Ping timeout"), ":Mina!Mina@irc.test QUIT :Ping timeout"),
            (Departure(QUIT, ""), ":Mina!Mina@irc.test QUIT :Connection closed"),
            (Departure(KICK, "spam"), ":irc.test KICK #dev Mina :spam"),
        )
        for departure, line in cases:
            event = self.encoder.encode(system_message("dev", "Mina", LEFT, WHEN, departure))
            assert event is not None
            self.assertEqual(event.data(TIME | MSGID).split(b" ", 1)[1], f"{line}\r\n".encode())
            self.assertEqual(event.quit, departure.kind == QUIT)
        event = self.encoder.encode(
            system_message("dev", "Mina", LEFT, WHEN, Departure(QUIT, "é" * 300))
        )
        assert event is not None
        raw = event.data(0)
        self.assertLessEqual(len(raw), 512)
        raw.decode("utf-8")


class ReferenceTests(SynchronousTestCase):
    """CHATHISTORY references (``irchistory``): the one mapping from IRC
    msgids and timestamps to parkchat positions."""

    def test_msgids(self) -> None:
        """``S-N`` and ``S-N.k`` name the message at position S (of id N);
        ``dS-N`` a direct message; anything else is INVALID_PARAMS."""
        self.assertEqual(parse_msgid("42-1000"), 42)
        self.assertEqual(parse_msgid("42-1000.3"), 42)
        self.assertEqual(parse_msgid("d7-9", direct=True), 7)
        for bad, direct in (
            ("42", False),
            ("0-5", False),
            ("5-0", False),
            ("x1-1", False),
            ("7-1", True),
            ("d7-1", False),
            ("١٢-1", False),
            ("", False),
            ("-", False),
        ):
            error = self.assertRaises(HistoryError, parse_msgid, bad, direct)
            self.assertEqual(error.code, "INVALID_PARAMS")

    def test_references(self) -> None:
        """``msgid=``, ``timestamp=`` (with or without milliseconds) and,
        where allowed, ``*``."""
        self.assertEqual(parse_reference("msgid=5-12"), Reference(seq=5))
        self.assertEqual(
            parse_reference("timestamp=2025-09-08T15:30:00.123Z"),
            Reference(timestamp_ms=1_757_345_400_123),
        )
        self.assertEqual(
            parse_reference("timestamp=2025-09-08T15:30:00Z"),
            Reference(timestamp_ms=1_757_345_400_000),
        )
        self.assertTrue(parse_reference("*", star=True).now)
        for bad in ("*", "id=5", "timestamp=now", "msgid"):
            self.assertRaises(HistoryError, parse_reference, bad)
        self.assertEqual(line_msgid("d3", 1), "d3.2")
