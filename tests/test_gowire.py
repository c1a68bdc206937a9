"""Go's encoding/json as the dialects need it (parkchat.protocols.gowire)."""

from __future__ import annotations

from twisted.trial.unittest import TestCase

from parkchat.protocols.gowire import GoDecodeError, go_dumps, go_encode, go_struct, go_time

FIELDS = {"type": str, "to_user_id": int, "data": object}


class StructTests(TestCase):
    def test_keys_fold_and_last_wins(self) -> None:
        """Keys match field names case-insensitively; the last one counts;
        unknown keys are ignored."""
        self.assertEqual(
            go_struct(b'{"TYPE":"a","Type":"b","extra":1}', FIELDS),
            {"type": "b", "to_user_id": 0, "data": None},
        )

    def test_null_and_absent_are_zero(self) -> None:
        self.assertEqual(
            go_struct(b'{"type":null}', FIELDS), {"type": "", "to_user_id": 0, "data": None}
        )
        self.assertEqual(go_struct(b"null", FIELDS)["type"], "")

    def test_types_checked(self) -> None:
        """A string for an int, a float, a bool, a number for a string: errors."""
        for payload in (
            b'{"to_user_id":"1"}',
            b'{"to_user_id":1.0}',
            b'{"to_user_id":true}',
            b'{"to_user_id":9223372036854775808}',
            b'{"type":1}',
            b"[]",
            b'"text"',
        ):
            self.assertRaises(GoDecodeError, go_struct, payload, FIELDS)

    def test_any_value_for_interface(self) -> None:
        self.assertEqual(go_struct(b'{"data":[1,{"a":2}]}', FIELDS)["data"], [1, {"a": 2}])

    def test_decoder_vs_unmarshal(self) -> None:
        """``Decoder.Decode`` takes the first value; ``Unmarshal`` wants one."""
        payload = b' {"type":"a"} {"type":"b"} junk'
        self.assertEqual(go_struct(payload, FIELDS)["type"], "a")
        self.assertRaises(GoDecodeError, go_struct, payload, FIELDS, whole=True)
        self.assertEqual(go_struct(b'{"type":"a"}\n', FIELDS, whole=True)["type"], "a")

    def test_not_json(self) -> None:
        for payload in (b"", b"{", b"NaN", b'{"type":"\x01"}'):
            self.assertRaises(GoDecodeError, go_struct, payload, FIELDS)


class EncodeTests(TestCase):
    def test_html_escapes(self) -> None:
        """``<``, ``>``, ``&``, U+2028 and U+2029 escaped; other text raw UTF-8."""
        self.assertEqual(
            go_dumps({"b": "<é>&\u2028\u2029\n"}),
            '{"b":"\\u003cé\\u003e\\u0026\\u2028\\u2029\\n"}'.encode(),
        )

    def test_encoder_newline(self) -> None:
        self.assertEqual(go_encode({"a": 1}), b'{"a":1}\n')

    def test_time(self) -> None:
        """RFC 3339 in UTC, the fraction's trailing zeros trimmed."""
        base = 1_757_345_400_000
        self.assertEqual(go_time(base), "2025-09-08T15:30:00Z")
        self.assertEqual(go_time(base + 120), "2025-09-08T15:30:00.12Z")
        self.assertEqual(go_time(base + 5), "2025-09-08T15:30:00.005Z")
