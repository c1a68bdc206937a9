"""Turning what the server sends into terminal text; pure functions only.

Everything a server (or another user, through it) controls -- nicknames, room
names, message content, error texts -- passes through ``clean`` before it is
written, so that nobody can move our cursor, retitle the window, hide text
with bidirectional overrides or fake a line from someone else. The server
already refuses control characters in new messages, but the client must not
trust that: older rows, other servers and other surfaces may differ.
"""

from __future__ import annotations

import time
import unicodedata
from collections.abc import Mapping
from datetime import datetime, tzinfo
from typing import Any

NOTICE = "*** "

# Bidirectional embeddings, overrides and isolates (Trojan-Source style
# reordering), and the Unicode line/paragraph separators some terminals honour.
_UNSAFE_FORMAT = frozenset([*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x2028, 0x2029, 0xFEFF])


def clean(text: str) -> str:
    """``text`` with every control character made visible and harmless.

    C0/C1 controls (ESC, CR, BEL, DEL, ...), lone surrogates and the unsafe
    format characters above become ``\\xNN``/``\\uNNNN``; a tab becomes a
    space. Ordinary text, emoji and joiners are left alone.
    """
    if text.isprintable():
        return text
    out = []
    for ch in text:
        code = ord(ch)
        if ch == "\t":
            out.append(" ")
        elif unicodedata.category(ch) in ("Cc", "Cs") or code in _UNSAFE_FORMAT:
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(ch)
    return "".join(out)


def clock_time(when: float, tz: tzinfo | None = None) -> str:
    """``HH:MM`` of a POSIX time in ``tz`` (the local zone by default)."""
    moment = datetime.fromtimestamp(when, tz) if tz else datetime.fromtimestamp(when)
    return f"{moment:%H:%M}"


def message_time(timestamp: object, now: float, tz: tzinfo | None = None) -> str:
    """``HH:MM`` of an RFC 3339 server timestamp, in local time; ``now`` when
    the server sent none or something unreadable (the line is still shown)."""
    if isinstance(timestamp, str):
        try:
            return clock_time(datetime.fromisoformat(timestamp).timestamp(), tz)
        except (ValueError, OverflowError, OSError):
            pass
    return clock_time(now, tz)


def _with_prefix(prefix: str, text: str) -> str:
    """Prefix the first line; indent the others under it, so a multi-line
    message can never produce a line that looks like it came from elsewhere."""
    lines = text.split("\n")
    indent = " " * len(prefix)
    return "\n".join(
        [prefix + clean(lines[0]), *(indent + "| " + clean(line) for line in lines[1:])]
    )


def render_message(
    message: Mapping[str, Any], now: float | None = None, tz: tzinfo | None = None
) -> str:
    """One WebSocket/REST message object as terminal text.

    ``{"type":"chat"}`` -> ``[12:34] alice: hi``; ``"system"`` ->
    ``[12:34] *** alice has joined the room``; ``"error"`` ->
    ``[12:34] *** error (code): text``.
    """
    current = time.time() if now is None else now
    stamp = f"[{message_time(message.get('timestamp'), current, tz)}] "
    kind = message.get("type", "chat")
    content = str(message.get("content", ""))
    if kind == "system":
        return _with_prefix(stamp + NOTICE, content)
    if kind == "error":
        code = clean(str(message.get("code", "error")))
        return _with_prefix(f"{stamp}{NOTICE}error ({code}): ", content)
    nickname = clean(str(message.get("nickname", "?")))
    return _with_prefix(f"{stamp}{nickname}: ", content)


def split_line(line: str) -> tuple[str | None, str]:
    """A line-protocol line as (nickname, text); nickname None for ``***``
    notices and anything else that is not ``name:text``."""
    if line.startswith(NOTICE):
        return None, line[len(NOTICE) :]
    name, sep, text = line.partition(":")
    if not sep or not name or " " in name:
        return None, line
    return name, text


def render_line(line: str, now: float | None = None, tz: tzinfo | None = None) -> str:
    """One line of the line protocol as terminal text, stamped with the time
    it arrived (the line protocol carries no timestamps)."""
    stamp = f"[{clock_time(time.time() if now is None else now, tz)}] "
    name, text = split_line(line)
    if name is None:
        if line.startswith(NOTICE):
            return stamp + NOTICE + clean(text)
        return stamp + clean(line)
    return f"{stamp}{clean(name)}: {clean(text)}"


def same_name(a: str, b: str) -> bool:
    """Whether two nicknames are the same account (the server compares them
    case-insensitively, and may answer with the account's own spelling)."""
    return (
        unicodedata.normalize("NFKC", a).casefold() == unicodedata.normalize("NFKC", b).casefold()
    )
