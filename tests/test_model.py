"""Tests for parkchat.model: naming rules, timestamps and the message object."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from twisted.trial.unittest import TestCase

from hypothesis import given
from hypothesis import strategies as st

from parkchat.errors import ContentTooLong, InvalidContent, InvalidName, InvalidRoom
from parkchat.model import (
    CHAT,
    JOINED,
    LEFT,
    MAX_NICKNAME_LENGTH,
    MAX_ROOM_LENGTH,
    SYSTEM,
    Message,
    StoredUser,
    User,
    format_timestamp,
    nickname_key,
    system_message,
    validate_content,
    validate_nickname,
    validate_room,
)

# 2025-09-08T15:32:10Z as Unix seconds.
SEPT_8_2025 = 1757345530


class ValidateRoomTests(TestCase):
    """validate_room accepts 1 to 64 visible characters and nothing else."""

    def test_accepts_plain_names(self) -> None:
        """Ordinary room names are returned unchanged."""
        for name in ["lobby", "dev-room", "a", "Room 42", "r:1", "a/b"]:
            self.assertEqual(validate_room(name), name)

    def test_accepts_unicode(self) -> None:
        """Non-ASCII room names (accents, CJK, emoji) are valid."""
        for name in ["café", "チャット", "🎉party"]:
            self.assertEqual(validate_room(name), name)

    def test_inner_whitespace_allowed(self) -> None:
        """White space inside the name is fine; only the ends are refused."""
        self.assertEqual(validate_room("the lounge"), "the lounge")

    def test_empty_refused(self) -> None:
        """An empty room name raises InvalidRoom."""
        self.assertRaises(InvalidRoom, validate_room, "")

    def test_non_string_refused(self) -> None:
        """None, numbers, bytes and lists are not room names."""
        for value in [None, 42, b"lobby", ["lobby"]]:
            self.assertRaises(InvalidRoom, validate_room, value)

    def test_max_length(self) -> None:
        """Exactly 64 characters is accepted, 65 is refused."""
        self.assertEqual(MAX_ROOM_LENGTH, 64)
        self.assertEqual(validate_room("r" * 64), "r" * 64)
        error = self.assertRaises(InvalidRoom, validate_room, "r" * 65)
        self.assertIn("64", error.message)

    def test_length_counts_characters_not_bytes(self) -> None:
        """64 multi-byte characters are within the limit."""
        self.assertEqual(validate_room("é" * 64), "é" * 64)

    def test_control_characters_refused(self) -> None:
        """Newlines, tabs, NUL, ESC, DEL and C1 controls are refused."""
        for bad in ["a\nb", "a\tb", "a\x00b", "\x1b[31mred", "a\x7fb", "a\x85b", "a\rb"]:
            self.assertRaises(InvalidRoom, validate_room, bad)

    def test_lone_surrogate_refused(self) -> None:
        """A lone surrogate (which JSON can smuggle in) is refused."""
        self.assertRaises(InvalidRoom, validate_room, "room\ud800")

    def test_leading_or_trailing_whitespace_refused(self) -> None:
        """'lobby ' and ' lobby' cannot pose as 'lobby'."""
        for bad in [" lobby", "lobby ", "lobby\u00a0", "\u3000lobby", " "]:
            self.assertRaises(InvalidRoom, validate_room, bad)

    def test_error_code(self) -> None:
        """InvalidRoom carries the stable code clients see."""
        error = self.assertRaises(InvalidRoom, validate_room, "")
        self.assertEqual(error.code, "invalid_room")
        self.assertEqual(error.http_status, 400)


class ValidateNicknameTests(TestCase):
    """validate_nickname: letters, digits, '_', '-', '.', 1 to 32 characters."""

    def test_accepts_valid_names(self) -> None:
        """Names made of the allowed characters are returned unchanged."""
        for name in ["alice", "Bob", "carol_99", "_dave", "e.f-g", "7of9", "x"]:
            self.assertEqual(validate_nickname(name), name)

    def test_accepts_unicode_letters(self) -> None:
        """Letters of any script count as letters."""
        for name in ["José", "Zoë", "名前", "Ελένη"]:
            self.assertEqual(validate_nickname(name), name)

    def test_empty_and_non_string_refused(self) -> None:
        """Empty strings and non-strings raise InvalidName."""
        for value in ["", None, 5, b"alice"]:
            self.assertRaises(InvalidName, validate_nickname, value)

    def test_max_length(self) -> None:
        """Exactly 32 characters is accepted, 33 is refused."""
        self.assertEqual(MAX_NICKNAME_LENGTH, 32)
        self.assertEqual(validate_nickname("n" * 32), "n" * 32)
        error = self.assertRaises(InvalidName, validate_nickname, "n" * 33)
        self.assertIn("32", error.message)

    def test_colon_refused(self) -> None:
        """':' would break the TCP protocol's 'nick:text' lines."""
        for bad in ["a:b", "alice:", ":alice"]:
            self.assertRaises(InvalidName, validate_nickname, bad)

    def test_whitespace_refused(self) -> None:
        """Spaces, tabs and newlines anywhere (including a trailing newline)."""
        for bad in ["a b", " alice", "alice ", "alice\n", "a\tb", "a\u00a0b"]:
            self.assertRaises(InvalidName, validate_nickname, bad)

    def test_control_characters_refused(self) -> None:
        """Control characters are not letters or digits."""
        for bad in ["a\x00", "a\x1b", "a\x7f"]:
            self.assertRaises(InvalidName, validate_nickname, bad)

    def test_must_start_with_word_character(self) -> None:
        """A leading '-' or '.' is refused; they are fine further in."""
        for bad in ["-alice", ".alice"]:
            self.assertRaises(InvalidName, validate_nickname, bad)
        self.assertEqual(validate_nickname("a-.b"), "a-.b")

    def test_punctuation_refused(self) -> None:
        """Other punctuation and symbols are refused."""
        for bad in ["al!ce", "a@b", "a/b", "<b>", "a,b", "🎉"]:
            self.assertRaises(InvalidName, validate_nickname, bad)

    def test_error_code(self) -> None:
        """InvalidName carries the stable code clients see."""
        error = self.assertRaises(InvalidName, validate_nickname, "a b")
        self.assertEqual(error.code, "invalid_nickname")


class NicknameKeyTests(TestCase):
    """nickname_key is the case-insensitive identity of a nickname."""

    def test_case_folded(self) -> None:
        """Alice, ALICE and alice share one key."""
        self.assertEqual(nickname_key("Alice"), "alice")
        self.assertEqual(nickname_key("ALICE"), nickname_key("alice"))

    def test_casefold_not_lower(self) -> None:
        """Full case folding: 'Straße' and 'STRASSE' clash."""
        self.assertEqual(nickname_key("Straße"), nickname_key("STRASSE"))

    def test_compatibility_forms_clash(self) -> None:
        """NFKC: full-width letters are the same name as their ASCII forms."""
        self.assertEqual(nickname_key("\uff41\uff4c\uff49\uff43\uff45"), "alice")

    def test_distinct_names_stay_distinct(self) -> None:
        """Different names keep different keys."""
        self.assertNotEqual(nickname_key("alice"), nickname_key("alicia"))


class ValidateContentTests(TestCase):
    """validate_content: non-blank text, within the limit, no terminal controls."""

    def test_accepts_text(self) -> None:
        """Ordinary content is returned unchanged (not stripped)."""
        self.assertEqual(validate_content("  hello  ", 100), "  hello  ")

    def test_newline_and_tab_allowed(self) -> None:
        """Multi-line messages and tabs are kept."""
        self.assertEqual(validate_content("a\nb\tc", 100), "a\nb\tc")

    def test_unicode_allowed(self) -> None:
        """Emoji and non-Latin text are fine."""
        self.assertEqual(validate_content("héllo 🌍 世界", 100), "héllo 🌍 世界")

    def test_non_string_refused(self) -> None:
        """Numbers, None, lists and bytes raise InvalidContent."""
        for value in [None, 1, ["hi"], b"hi", {"content": "hi"}]:
            self.assertRaises(InvalidContent, validate_content, value, 100)

    def test_blank_refused(self) -> None:
        """Empty or all-whitespace content raises InvalidContent."""
        for value in ["", " ", "\n\t ", "\u3000"]:
            error = self.assertRaises(InvalidContent, validate_content, value, 100)
            self.assertEqual(error.code, "invalid_content")

    def test_length_limit(self) -> None:
        """Exactly max_length is accepted; one more raises ContentTooLong (413)."""
        self.assertEqual(validate_content("x" * 10, 10), "x" * 10)
        error = self.assertRaises(ContentTooLong, validate_content, "x" * 11, 10)
        self.assertEqual(error.http_status, 413)
        self.assertIn("10", error.message)

    def test_length_counts_characters(self) -> None:
        """The limit is in characters, not UTF-8 bytes."""
        self.assertEqual(validate_content("é" * 10, 10), "é" * 10)

    def test_control_characters_refused(self) -> None:
        """ESC, CR, NUL, BEL, DEL and C1 controls raise InvalidContent."""
        for bad in ["\x1b[2Jhi", "a\rb", "a\x00b", "ding\x07", "a\x7f", "a\x9bb"]:
            self.assertRaises(InvalidContent, validate_content, bad, 100)

    def test_lone_surrogate_refused(self) -> None:
        """A lone surrogate cannot be encoded as UTF-8 and is refused."""
        self.assertRaises(InvalidContent, validate_content, "hi\udc00", 100)


class FormatTimestampTests(TestCase):
    """format_timestamp renders RFC 3339 UTC with milliseconds and 'Z'."""

    def test_epoch(self) -> None:
        """0 ms is the Unix epoch."""
        self.assertEqual(format_timestamp(0), "1970-01-01T00:00:00.000Z")

    def test_milliseconds(self) -> None:
        """Milliseconds are zero-padded to three digits."""
        ms = SEPT_8_2025 * 1000
        self.assertEqual(format_timestamp(ms + 123), "2025-09-08T15:32:10.123Z")
        self.assertEqual(format_timestamp(ms + 7), "2025-09-08T15:32:10.007Z")
        self.assertEqual(format_timestamp(ms + 999), "2025-09-08T15:32:10.999Z")

    def test_before_epoch(self) -> None:
        """Negative times still give valid, correctly ordered timestamps."""
        self.assertEqual(format_timestamp(-1), "1969-12-31T23:59:59.999Z")

    def test_parses_as_utc(self) -> None:
        """The result is parseable RFC 3339 and denotes the same UTC instant."""
        ms = SEPT_8_2025 * 1000 + 456
        parsed = datetime.fromisoformat(format_timestamp(ms))
        self.assertEqual(parsed.utcoffset().total_seconds(), 0)  # type: ignore[union-attr]
        self.assertEqual(parsed, datetime.fromtimestamp(ms / 1000, UTC))


class MessageTests(TestCase):
    """Message renders the parkchat API object and caches its JSON."""

    def make(self, **kwargs: object) -> Message:
        fields: dict[str, object] = {
            "room": "lobby",
            "nickname": "alice",
            "content": "hi",
            "timestamp_ms": SEPT_8_2025 * 1000 + 5,
        }
        fields.update(kwargs)
        return Message(**fields)  # type: ignore[arg-type]

    def test_defaults(self) -> None:
        """A new message is a chat message with id 0 and no event."""
        message = self.make()
        self.assertEqual(message.type, CHAT)
        self.assertEqual(message.id, 0)
        self.assertIsNone(message.event)
        self.assertIsNone(message.user_id)

    def test_as_dict_fields(self) -> None:
        """as_dict has exactly the seed API's fields, with an RFC 3339 timestamp."""
        message = self.make(id=7, user_id=3)
        self.assertEqual(
            message.as_dict(),
            {
                "id": 7,
                "chat_room": "lobby",
                "nickname": "alice",
                "content": "hi",
                "timestamp": "2025-09-08T15:32:10.005Z",
                "type": "chat",
            },
        )

    def test_user_id_not_exposed(self) -> None:
        """The account id is internal and absent from the API object."""
        self.assertNotIn("user_id", self.make(user_id=3).as_dict())

    def test_json_is_as_dict(self) -> None:
        """json() is compact UTF-8 JSON of as_dict, non-ASCII kept literal."""
        message = self.make(content="héllo 🌍")
        data = message.json()
        self.assertIsInstance(data, bytes)
        self.assertEqual(json.loads(data), message.as_dict())
        self.assertIn("héllo 🌍".encode(), data)
        self.assertNotIn(b": ", data)
        self.assertNotIn(b", ", data)

    @given(
        id=st.integers(min_value=0, max_value=2**63 - 1),
        room=st.text(),
        nickname=st.text(),
        content=st.text(),
        timestamp_ms=st.integers(min_value=-(10**12), max_value=10**14),
        type=st.sampled_from(["chat", "system", "typing", 'x"\\\n']),
    )
    def test_json_is_what_json_dumps_gives(self, **fields: object) -> None:
        """The hand-built encoding is byte for byte json.dumps's, for any
        text (quotes, backslashes, controls, non-BMP)."""
        message = Message(**fields)  # type: ignore[arg-type]
        expected = json.dumps(message.as_dict(), ensure_ascii=False, separators=(",", ":"))
        self.assertEqual(message.json(), expected.encode("utf-8"))

    def test_timestamp_cache_keeps_seconds_apart(self) -> None:
        """Timestamps of neighbouring seconds, formatted in turn, stay distinct
        (the per-second prefix is cached)."""
        ms = SEPT_8_2025 * 1000
        got = [format_timestamp(ms + step) for step in (999, 1000, 999, 61_000, 1)]
        self.assertEqual(
            got,
            [
                "2025-09-08T15:32:10.999Z",
                "2025-09-08T15:32:11.000Z",
                "2025-09-08T15:32:10.999Z",
                "2025-09-08T15:33:11.000Z",
                "2025-09-08T15:32:10.001Z",
            ],
        )

    def test_json_cached(self) -> None:
        """json() serialises once: the second call returns the same object."""
        message = self.make()
        first = message.json()
        self.assertIs(message.json(), first)

    def test_json_escapes_content(self) -> None:
        """Quotes, backslashes and newlines in content survive a round trip."""
        message = self.make(content='say "hi"\\\nbye')
        self.assertEqual(json.loads(message.json())["content"], 'say "hi"\\\nbye')

    def test_with_id(self) -> None:
        """with_id copies every field, sets the id and leaves the original alone."""
        original = self.make(user_id=3)
        original.json()
        stored = original.with_id(42)
        self.assertEqual(stored.id, 42)
        self.assertEqual(original.id, 0)
        self.assertEqual(stored.user_id, 3)
        self.assertEqual(stored.as_dict(), {**original.as_dict(), "id": 42})
        self.assertEqual(json.loads(stored.json())["id"], 42)

    def test_with_ids_sets_seq_outside_the_api_object(self) -> None:
        """with_ids sets the id and the room position; seq stays out of the
        seed API object (as_dict and json are those of the same message
        with that id and no seq), and with_id keeps a seq already set."""
        original = self.make(user_id=3)
        stored = original.with_ids(42, 7)
        self.assertEqual((stored.id, stored.seq, stored.user_id), (42, 7, 3))
        self.assertEqual((original.id, original.seq), (0, 0))
        self.assertEqual(stored.as_dict(), original.with_id(42).as_dict())
        self.assertEqual(stored.json(), original.with_id(42).json())
        self.assertNotIn("seq", json.loads(stored.json()))
        self.assertEqual(stored.with_id(43).seq, 7)

    def test_equality(self) -> None:
        """Messages with the same fields are equal and hash alike; ids tell apart."""
        self.assertEqual(self.make(id=1), self.make(id=1))
        self.assertEqual(hash(self.make(id=1)), hash(self.make(id=1)))
        self.assertNotEqual(self.make(id=1), self.make(id=2))
        self.assertNotEqual(self.make(user_id=1), self.make(user_id=2))
        self.assertNotEqual(self.make(id=1, seq=1), self.make(id=1, seq=2))
        self.assertNotEqual(self.make(), "hi")

    def test_timestamp_property(self) -> None:
        """timestamp is the formatted timestamp_ms."""
        self.assertEqual(self.make(timestamp_ms=0).timestamp, "1970-01-01T00:00:00.000Z")


class SystemMessageTests(TestCase):
    """system_message builds the join/leave notices of the seed API."""

    def test_joined(self) -> None:
        """A join notice reads '<nick> has joined the room', type system, id 0."""
        message = system_message("lobby", "alice", JOINED, 1000)
        self.assertEqual(message.content, "alice has joined the room")
        self.assertEqual(message.type, SYSTEM)
        self.assertEqual(message.event, JOINED)
        self.assertEqual(message.id, 0)
        self.assertEqual(
            message.as_dict(),
            {
                "id": 0,
                "chat_room": "lobby",
                "nickname": "alice",
                "content": "alice has joined the room",
                "timestamp": "1970-01-01T00:00:01.000Z",
                "type": "system",
            },
        )

    def test_left(self) -> None:
        """A leave notice reads '<nick> has left the room'."""
        message = system_message("lobby", "bob", LEFT, 0)
        self.assertEqual(message.content, "bob has left the room")
        self.assertEqual(message.event, LEFT)
        self.assertEqual(message.type, "system")


class UserTests(TestCase):
    """StoredUser.public drops the password hash."""

    def test_public(self) -> None:
        """public() is the User record, with no hash attribute."""
        stored = StoredUser(5, "alice", b"$2b$hash")
        user = stored.public()
        self.assertEqual(user, User(5, "alice"))
        self.assertFalse(hasattr(user, "password_hash"))
