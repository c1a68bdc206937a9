"""Showing what was missed while disconnected, and nothing twice.

Two strategies, one per transport:

* On the room WebSocket every chat message carries its room position
  (``seq``, on connections that ask with ``?since=``). ``Timeline``
  remembers the last one shown; each (re)connection asks the server for
  what came after it (``/ws/{room}?since=<seq>``), which sends the missed
  messages before anything live. Anything at or below the last seq shown is
  dropped. Exact.
* Line-protocol lines carry no positions, so ``missed_lines`` lines up the
  tail of what was shown with a ``/history N`` reply and keeps what follows
  the longest overlap. Best effort: a run of identical lines can confuse it,
  and a gap longer than N lines is only partly filled.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

Frame = Mapping[str, Any]


class Timeline:
    """What has been shown of a room, by room position (``seq``); None
    while unknown (the history could not be read)."""

    def __init__(self, last_seq: int | None = None) -> None:
        self.last_seq = last_seq

    def fresh(self, frame: Frame) -> bool:
        """Whether a message from the server is new (to be shown); a chat
        message with a seq moves the position on."""
        seq = frame.get("seq")
        if (
            isinstance(seq, int)
            and not isinstance(seq, bool)
            and seq > 0
            and frame.get("type", "chat") == "chat"
        ):
            if self.last_seq is not None and seq <= self.last_seq:
                return False  # shown already (history, or an earlier connection)
            self.last_seq = seq
        return True


def missed_lines(seen: Sequence[str], history: Sequence[str]) -> list[str]:
    """The lines of a ``/history`` reply that come after what was seen.

    Finds the longest run at the end of ``seen`` that also occurs in
    ``history`` (the latest such place) and returns what follows it. With no
    overlap at all, everything in ``history`` is new.
    """
    best_len, best_end = 0, 0
    for end in range(len(history), 0, -1):
        length = 0
        while (
            length < end
            and length < len(seen)
            and history[end - 1 - length] == seen[len(seen) - 1 - length]
        ):
            length += 1
        if length > best_len:
            best_len, best_end = length, end
    if best_len == 0:
        return list(history)
    return list(history[best_end:])
