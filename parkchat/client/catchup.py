"""Showing what was missed while disconnected, and nothing twice.

Two strategies, one per transport:

* WebSocket messages carry ids, so ``Timeline`` remembers the last id shown,
  buffers live messages while ``/history?after=<id>`` is fetched after a
  reconnect, and then shows the fetched page followed by the buffer, dropping
  anything at or below the last id shown. Exact.
* Line-protocol lines carry no ids, so ``missed_lines`` lines up the tail of
  what was shown with a ``/history N`` reply and keeps what follows the
  longest overlap. Best effort: a run of identical lines can confuse it, and
  a gap longer than N lines is only partly filled.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

Frame = Mapping[str, Any]


class Timeline:
    """What has been shown of a room, by message id."""

    def __init__(self, last_id: int = 0) -> None:
        self.last_id = last_id
        self.catching_up = False
        self._buffer: list[Frame] = []

    def begin_catch_up(self) -> None:
        """A connection opened: hold live messages until history is in."""
        self.catching_up = True

    def live(self, frame: Frame) -> list[Frame]:
        """A message pushed by the server; the frames to show now."""
        if self.catching_up:
            self._buffer.append(frame)
            return []
        return self._fresh([frame])

    def finish_catch_up(self, history: Iterable[Frame]) -> list[Frame]:
        """The fetched history is in (possibly empty, if fetching failed):
        everything new from it, then the held live messages, oldest first."""
        buffered, self._buffer = self._buffer, []
        self.catching_up = False
        return self._fresh([*history, *buffered])

    def _fresh(self, frames: Iterable[Frame]) -> list[Frame]:
        out = []
        for frame in frames:
            ident = frame.get("id")
            if isinstance(ident, int) and ident > 0 and frame.get("type", "chat") == "chat":
                if ident <= self.last_id:
                    continue  # seen already: in history and pushed live, or replayed
                self.last_id = ident
            out.append(frame)
        return out


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
