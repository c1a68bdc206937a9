"""CHATHISTORY (IRCv3 ``draft/chathistory``) over parkchat's history, by
position: a room's ``seq`` (its messages are numbered 1, 2, 3, ... in the
order they were stored) or a conversation's (direct messages, the same).

This is the one place where an IRC message reference becomes a position,
and back:

* the ``msgid`` tag of a room message is ``<seq>-<id>`` (``12-4031``): its
  seq in its room, then its parkchat id, which makes it unique across
  rooms (a msgid must be unique on the network; seqs repeat from room to
  room). A message cut into several IRC lines gives its k-th line
  ``<seq>-<id>.k``; a reference to any of them names the message. Direct
  messages are ``d<seq>-<id>`` (the conversation's seq).
* ``msgid=...`` in a request is read for its seq alone: positions are
  what history is paged by, and a deleted message's seq is still a valid
  position (the messages around it are found);
* ``timestamp=YYYY-MM-DDThh:mm:ss.sssZ`` is found by walking the history
  back from the newest message, a page at a time, for at most
  ``scan_pages`` pages; further back, MESSAGE_ERROR asks for a msgid.

Why seqs and not ids: ids are global and, with several instances writing
to one room, a room's ids are not in the order of its seqs (the order its
members are shown the messages). A client that saw seq 7 has seen every
message of the room up to 7 (delivery is in seq order, without gaps), so
``CHATHISTORY LATEST #room msgid=7-...`` (or AFTER) returns exactly what it
missed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, Protocol, TypeVar

from parkchat.interfaces import IChatService
from parkchat.model import MAX_ID, DirectMessage, Message

#: The msgid prefix of direct messages (their positions are another sequence).
DIRECT = "d"


class HistoryError(Exception):
    """A CHATHISTORY request that cannot be answered: ``code`` is the
    standard-replies code (INVALID_PARAMS, MESSAGE_ERROR, ...)."""

    def __init__(self, code: str, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.text = text


@dataclass(frozen=True)
class Reference:
    """A CHATHISTORY message reference: a position (seq), a time, or ``*``
    (neither: now)."""

    seq: int | None = None
    timestamp_ms: int | None = None

    @property
    def now(self) -> bool:
        return self.seq is None and self.timestamp_ms is None


STAR = Reference()


def line_msgid(base: str, index: int) -> str:
    """The ``msgid`` of the ``index``-th (0-based) IRC line of a message
    whose msgid is ``base``: ``base``, then ``base.2``, ``base.3``... Every
    line needs an id of its own (clients drop repeated ids); references to
    any of them name the message (``parse_msgid``)."""
    return base if index == 0 else f"{base}.{index + 1}"


def room_msgid(message: Message) -> str:
    """The msgid of a room message (of its first IRC line)."""
    return f"{message.seq}-{message.id}"


def direct_msgid(message: DirectMessage) -> str:
    """The msgid of a direct message (of its first IRC line)."""
    return f"{DIRECT}{message.seq}-{message.id}"


def parse_msgid(text: str, direct: bool = False) -> int:
    """The seq a msgid names (``<seq>-<id>``, ``<seq>-<id>.k``; ``d...``
    for direct messages); HistoryError INVALID_PARAMS for anything else."""
    body = text
    if direct:
        if not body.startswith(DIRECT):
            raise HistoryError("INVALID_PARAMS", f"{text} is not a direct message's msgid")
        body = body[len(DIRECT) :]
    seq, dash, rest = body.split(".", 1)[0].partition("-")
    if not dash or not _number(seq) or not _number(rest):
        raise HistoryError("INVALID_PARAMS", f"{text} is not a parkchat msgid")
    return int(seq)


def _number(text: str) -> bool:
    return text.isascii() and text.isdigit() and 0 < int(text) <= MAX_ID


def parse_timestamp(text: str) -> int:
    """``YYYY-MM-DDThh:mm:ss[.sss]Z`` in ms since the epoch."""
    try:
        when = datetime.strptime(
            text, "%Y-%m-%dT%H:%M:%S.%fZ" if "." in text else "%Y-%m-%dT%H:%M:%SZ"
        )
    except ValueError:
        raise HistoryError("INVALID_PARAMS", f"{text} is not a timestamp") from None
    return int(when.replace(tzinfo=UTC).timestamp() * 1000)


def parse_reference(text: str, *, star: bool = False, direct: bool = False) -> Reference:
    """``msgid=...``, ``timestamp=...`` or (where ``star``) ``*``."""
    if star and text == "*":
        return STAR
    kind, sep, value = text.partition("=")
    if sep and kind == "msgid":
        return Reference(seq=parse_msgid(value, direct))
    if sep and kind == "timestamp":
        return Reference(timestamp_ms=parse_timestamp(value))
    raise HistoryError("INVALID_PARAMS", f"{text} is not a message reference")


class Positioned(Protocol):
    """A room or direct message: what paging by position needs of it."""

    @property
    def seq(self) -> int: ...

    @property
    def timestamp_ms(self) -> int: ...


T = TypeVar("T", bound=Positioned)


class Pager(Generic[T]):
    """Answers the CHATHISTORY subcommands over one stream of positions (a
    room, or a conversation), in ascending order, with reads of at most
    ``page_size``. References are exclusive, as the specification says.

    ``after(seq, limit)`` reads up to ``limit`` items with a seq above
    ``seq``, oldest first; ``before(seq, limit)`` the newest ``limit``
    with a seq below ``seq`` (None: the newest of all), oldest first."""

    def __init__(
        self,
        after: Callable[[int, int], Awaitable[list[T]]],
        before: Callable[[int | None, int], Awaitable[list[T]]],
        page_size: int,
        scan_pages: int,
    ) -> None:
        self._after = after
        self._before = before
        self._page_size = page_size
        self._scan_pages = scan_pages

    async def _newest_below(self, below: int | None, count: int) -> list[T]:
        """The newest ``count`` items with a seq below ``below`` (None: all)."""
        collected: list[T] = []
        while len(collected) < count:
            want = min(self._page_size, count - len(collected))
            page = await self._before(below, want)
            collected[:0] = page
            if len(page) < want or not page:
                break
            below = page[0].seq
        return collected

    async def _oldest_above(self, above: int, count: int) -> list[T]:
        """The oldest ``count`` items with a seq above ``above``."""
        collected: list[T] = []
        while len(collected) < count:
            want = min(self._page_size, count - len(collected))
            page = await self._after(above, want)
            collected.extend(page)
            if len(page) < want or not page:
                break
            above = page[-1].seq
        return collected

    async def position(self, ref: Reference, *, inclusive: bool) -> int:
        """The seq of the reference: for a msgid, its own (less one unless
        ``inclusive``); for a time, the seq of the newest item before it
        (at it too, if ``inclusive``), 0 if there is none; for ``*`` the
        largest seq there can be. Every item at or below the result is "at
        or before" the reference, every item above it after it."""
        if ref.seq is not None:
            return ref.seq if inclusive else ref.seq - 1
        if ref.timestamp_ms is None:
            return MAX_ID - 1
        at = ref.timestamp_ms
        below: int | None = None
        for _ in range(self._scan_pages):
            page = await self._before(below, self._page_size)
            for item in reversed(page):
                if item.timestamp_ms < at or (inclusive and item.timestamp_ms == at):
                    return item.seq
            if len(page) < self._page_size or not page:
                return 0
            below = page[0].seq
        raise HistoryError(
            "MESSAGE_ERROR",
            f"that time is more than {self._scan_pages * self._page_size} messages back; "
            "use a msgid",
        )

    async def before(self, ref: Reference, limit: int) -> list[T]:
        """Up to ``limit`` items before ``ref``, the newest of them."""
        top = await self.position(ref, inclusive=False)
        return await self._newest_below(top + 1, limit)

    async def after(self, ref: Reference, limit: int) -> list[T]:
        """Up to ``limit`` items after ``ref``, the oldest of them."""
        bottom = await self.position(ref, inclusive=True)
        return await self._oldest_above(bottom, limit)

    async def latest(self, ref: Reference, limit: int) -> list[T]:
        """The newest ``limit`` items; with a reference, only those after it."""
        newest = await self._newest_below(None, limit)
        if ref.now:
            return newest
        bottom = await self.position(ref, inclusive=True)
        return [item for item in newest if item.seq > bottom]

    async def around(self, ref: Reference, limit: int) -> list[T]:
        """``limit`` items around ``ref``: half before it, the rest from it on."""
        pivot = await self.position(ref, inclusive=False)
        older = await self._newest_below(pivot + 1, limit // 2)
        newer = await self._oldest_above(pivot, limit - len(older))
        return older + newer

    async def between(self, start: Reference, end: Reference, limit: int) -> list[T]:
        """Up to ``limit`` items strictly between two references, counted
        from ``start``: forwards if it is the older one, else backwards."""
        if start.seq is not None and end.seq is not None:
            forwards = start.seq <= end.seq
        elif start.timestamp_ms is not None and end.timestamp_ms is not None:
            forwards = start.timestamp_ms <= end.timestamp_ms
        else:
            forwards = await self.position(start, inclusive=True) <= await self.position(
                end, inclusive=True
            )
        if forwards:
            low = await self.position(start, inclusive=True)
            high = await self.position(end, inclusive=False)
            return [i for i in await self._oldest_above(low, limit) if i.seq <= high]
        high = await self.position(start, inclusive=False)
        low = await self.position(end, inclusive=True)
        return [i for i in await self._newest_below(high + 1, limit) if i.seq > low]

    async def answer(self, subcommand: str, refs: list[Reference], limit: int) -> list[T]:
        """The items a CHATHISTORY subcommand asks for (not TARGETS)."""
        if subcommand == "BETWEEN":
            return await self.between(refs[0], refs[1], limit)
        act: dict[str, Callable[[Reference, int], Awaitable[list[T]]]] = {
            "LATEST": self.latest,
            "BEFORE": self.before,
            "AFTER": self.after,
            "AROUND": self.around,
        }
        return await act[subcommand](refs[0], limit)


def room_pager(
    service: IChatService, room: str, page_size: int, scan_pages: int = 10
) -> Pager[Message]:
    """CHATHISTORY over a room's positions (``IChatService.history`` by seq)."""

    async def after(seq: int, limit: int) -> list[Message]:
        page: list[Message] = await service.history(room, limit=limit, after_seq=seq)
        return page

    async def before(seq: int | None, limit: int) -> list[Message]:
        if seq is None:
            newest: list[Message] = await service.history(room, limit=limit)
            return newest
        if seq <= 1:
            return []
        page: list[Message] = await service.history(room, limit=limit, before_seq=seq)
        return page

    return Pager(after, before, page_size, scan_pages)


def direct_pager(
    service: IChatService, participant: Any, other: str, page_size: int, scan_pages: int = 10
) -> Pager[DirectMessage]:
    """CHATHISTORY over the conversation with ``other`` (its positions)."""

    async def after(seq: int, limit: int) -> list[DirectMessage]:
        _, page = await service.direct_history(participant, other, limit, after_seq=seq)
        result: list[DirectMessage] = page
        return result

    async def before(seq: int | None, limit: int) -> list[DirectMessage]:
        if seq is not None and seq <= 1:
            return []
        _, page = await service.direct_history(participant, other, limit, before_seq=seq)
        result: list[DirectMessage] = page
        return result

    return Pager(after, before, page_size, scan_pages)
