"""JSON the way the seeds' Go servers read and write it.

The three dialects (GarinChat, golang-chat, lildengzi) serve clients written
against Go servers, so what crosses the wire follows Go's ``encoding/json``
rather than Python's defaults (SEED-WIRE.md section 0):

* **Reading** into a struct (``go_struct``): object keys match field names
  case-insensitively, the last of two matching keys wins, unknown keys are
  ignored, ``null`` leaves a field at its zero value, and a value of the wrong
  type (a number for a string, ``1.5`` or ``"2"`` for an integer) is an error.
  ``json.Unmarshal`` (GarinChat) wants one JSON value and nothing after it;
  ``Decoder.Decode`` (gorilla's ``ReadJSON``, HTTP bodies: golang-chat and
  lildengzi) reads the first value and ignores what follows.
* **Writing** (``go_dumps``): compact, non-ASCII as UTF-8, and ``<``, ``>``,
  ``&``, U+2028 and U+2029 escaped as ``\\u003c``... as Go escapes them; a
  field tagged ``omitempty`` is left out by the caller when empty.
* **Times** (``go_time``): RFC 3339 in UTC with the fraction's trailing zeros
  trimmed, as Go's ``time.Time`` marshals.

This module is pure: no I/O, nothing of parkchat but the error type.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from parkchat.errors import InvalidRequest

#: Go's JSON whitespace (Python's json also skips a few more characters).
_GO_SPACE = " \t\n\r"
_INT64 = (-(2**63), 2**63 - 1)

# Characters Go's encoder escapes even inside valid strings (HTML-safe output).
_GO_ESCAPES = str.maketrans(
    {
        "<": "\\u003c",
        ">": "\\u003e",
        "&": "\\u0026",
        "\u2028": "\\u2028",
        "\u2029": "\\u2029",
    }
)


class GoDecodeError(InvalidRequest):
    """A payload Go's ``encoding/json`` would not decode into the struct."""


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_DECODER = json.JSONDecoder(parse_constant=_no_constants)


def _first_value(text: str, whole: bool) -> Any:
    start = len(text) - len(text.lstrip(_GO_SPACE))
    try:
        value, end = _DECODER.raw_decode(text, start)
    except (ValueError, RecursionError) as e:
        raise GoDecodeError("frame is not valid JSON") from e
    if whole and text[end:].strip(_GO_SPACE):
        raise GoDecodeError("frame is not valid JSON: something follows the value")
    return value


def _fold(name: str) -> str:
    # Go matches keys with a simple Unicode case fold (bytes.EqualFold): the
    # long s folds to s; lower() covers the rest, the Kelvin sign included.
    return name.lower().replace("\u017f", "s")


def go_struct(
    payload: bytes | str, fields: Mapping[str, type], *, whole: bool = False
) -> dict[str, Any]:
    """Decode ``payload`` as Go decodes JSON into a struct with ``fields``
    (name -> ``str``, ``int`` for int64, or ``object`` for ``interface{}``).

    Returns every field, at its zero value (``""``, ``0``, None) when absent
    or null. ``whole``: ``json.Unmarshal`` (nothing may follow the value);
    otherwise ``Decoder.Decode`` (the first value counts). Raises
    GoDecodeError for what Go would refuse.
    """
    text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else payload
    value = _first_value(text, whole)
    result: dict[str, Any] = {name: _zero(kind) for name, kind in fields.items()}
    if value is None:
        return result
    if not isinstance(value, dict):
        raise GoDecodeError("frame must be a JSON object")
    by_fold = {_fold(name): name for name in fields}
    for key, item in value.items():
        name = key if key in fields else by_fold.get(_fold(key))
        if name is None:
            continue
        if item is None:
            continue  # null leaves the field as it was
        result[name] = _typed(name, fields[name], item)
    return result


def _zero(kind: type) -> Any:
    if kind is str:
        return ""
    if kind is int:
        return 0
    return None


def _typed(name: str, kind: type, item: Any) -> Any:
    if kind is str:
        if not isinstance(item, str):
            raise GoDecodeError(f'"{name}" must be a string')
        return item
    if kind is int:
        if isinstance(item, bool) or not isinstance(item, int):
            raise GoDecodeError(f'"{name}" must be an integer')
        if not _INT64[0] <= item <= _INT64[1]:
            raise GoDecodeError(f'"{name}" is out of range')
        return item
    return item


def go_dumps(value: Any) -> bytes:
    """``value`` as Go's ``json.Marshal`` writes it (key order as given)."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    try:
        return text.translate(_GO_ESCAPES).encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate: Go would write U+FFFD for it.
        return text.translate(_GO_ESCAPES).encode("utf-8", "replace")


def go_encode(value: Any) -> bytes:
    """``value`` as ``json.NewEncoder(w).Encode`` writes it: with a newline
    (gorilla's ``WriteJSON`` frames and the seeds' HTTP bodies)."""
    return go_dumps(value) + b"\n"


def go_time(ms: int) -> str:
    """A UTC time in ms as Go marshals a ``time.Time``: RFC 3339 with the
    fraction's trailing zeros trimmed (``...:10.12Z``, ``...:10Z``)."""
    seconds, millis = divmod(ms, 1000)
    stamp = f"{datetime.fromtimestamp(seconds, UTC):%Y-%m-%dT%H:%M:%S}"
    fraction = f".{millis:03d}".rstrip("0") if millis else ""
    return f"{stamp}{fraction}Z"
