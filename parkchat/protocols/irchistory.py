"""CHATHISTORY (IRCv3 ``draft/chathistory``) over parkchat's room history.

This is the one place where an IRC message reference becomes a position in
parkchat's history, and back:

* ``msgid=N`` (or ``N.k``, the k-th IRC line of a long message) is the
  parkchat message id ``N``: the ``msgid`` tag every IRC member is sent
  with a message (``room_msgid``, ``line_msgid``; direct messages ``dN``);
* ``timestamp=YYYY-MM-DDThh:mm:ss.sssZ`` is found by walking the room's
  history back from the newest message, a page at a time, for at most
  ``scan_pages`` pages (history is paged by message id, not by time);
  further back, a timestamp answers MESSAGE_ERROR and a msgid is needed.

``IChatService.history`` pages by message id (``before``/``after``, both
exclusive). Message ids grow with time across all rooms, so "the messages
of room R after id N" is well defined for any N. When rooms get positions
of their own (per-room sequence numbers), only this module changes: the
references clients hold are whatever ``msgid`` the adapter sent them.

Direct messages (a nickname as target) are kept by the direct-message
store, paged backwards only: ``LATEST`` and ``BEFORE`` with a msgid (a
direct message's msgid is ``dN``) work, the rest answers INVALID_PARAMS.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from parkchat.errors import ChatError
from parkchat.interfaces import IChatService
from parkchat.model import MAX_ID, DirectMessage, Message

#: The msgid prefix of direct messages (their ids are another sequence).
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
    """A CHATHISTORY message reference: a message id, a time, or ``*``
    (neither: now)."""

    message_id: int | None = None
    timestamp_ms: int | None = None

    @property
    def now(self) -> bool:
        return self.message_id is None and self.timestamp_ms is None


STAR = Reference()


def line_msgid(base: str, index: int) -> str:
    """The ``msgid`` of the ``index``-th (0-based) IRC line of a message
    whose id is ``base``: ``base``, then ``base.2``, ``base.3``... Every
    line needs an id of its own (clients drop repeated ids); references to
    any of them name the message (``parse_msgid``)."""
    return base if index == 0 else f"{base}.{index + 1}"


def room_msgid(message: Message) -> str:
    """The msgid of a room message (of its first IRC line)."""
    return str(message.id)


def direct_msgid(message: DirectMessage) -> str:
    """The msgid of a direct message (of its first IRC line)."""
    return f"{DIRECT}{message.id}"


def parse_msgid(text: str, direct: bool = False) -> int:
    """The message id a msgid names (``N`` or ``N.k``; ``dN`` for direct
    messages); HistoryError INVALID_PARAMS for anything else."""
    if direct:
        if not text.startswith(DIRECT):
            raise HistoryError("INVALID_PARAMS", f"{text} is not a direct message's msgid")
        text = text[len(DIRECT) :]
    number = text.split(".", 1)[0]
    if not number.isascii() or not number.isdigit() or not 0 < int(number) <= MAX_ID:
        raise HistoryError("INVALID_PARAMS", f"{text} is not a parkchat msgid")
    return int(number)


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
        return Reference(message_id=parse_msgid(value, direct))
    if sep and kind == "timestamp":
        return Reference(timestamp_ms=parse_timestamp(value))
    raise HistoryError("INVALID_PARAMS", f"{text} is not a message reference")


class RoomHistory:
    """Answers the CHATHISTORY subcommands for rooms, in ascending order,
    from ``IChatService.history`` pages of at most ``page_size``."""

    def __init__(self, service: IChatService, page_size: int, scan_pages: int = 10) -> None:
        self._service = service
        self._page_size = page_size
        self._scan_pages = scan_pages

    async def _page(self, room: str, limit: int, **where: int | None) -> list[Message]:
        messages: list[Message] = await self._service.history(room, limit=limit, **where)
        return messages

    async def _newest_before(self, room: str, before: int | None, count: int) -> list[Message]:
        """The newest ``count`` messages with an id below ``before``."""
        collected: list[Message] = []
        while len(collected) < count:
            want = min(self._page_size, count - len(collected))
            page = await self._page(room, want, before=before)
            collected[:0] = page
            if len(page) < want:
                break
            before = page[0].id
        return collected

    async def _first_after(self, room: str, after: int, count: int) -> list[Message]:
        """The first ``count`` messages with an id above ``after``."""
        collected: list[Message] = []
        while len(collected) < count:
            want = min(self._page_size, count - len(collected))
            page = await self._page(room, want, after=after)
            collected.extend(page)
            if len(page) < want:
                break
            after = page[-1].id
        return collected

    async def boundary(self, room: str, ref: Reference, *, inclusive: bool) -> int:
        """The id of the newest message at or before ``ref`` (before it,
        unless ``inclusive``): ``before=boundary+1`` / ``after=boundary``
        then select by the reference. 0 when no message is that old."""
        if ref.message_id is not None:
            return ref.message_id if inclusive else ref.message_id - 1
        if ref.timestamp_ms is None:
            return MAX_ID - 1
        at = ref.timestamp_ms
        before: int | None = None
        for _ in range(self._scan_pages):
            page = await self._page(room, self._page_size, before=before)
            for message in reversed(page):
                if message.timestamp_ms < at or (inclusive and message.timestamp_ms == at):
                    return message.id
            if len(page) < self._page_size:
                return 0
            before = page[0].id
        raise HistoryError(
            "MESSAGE_ERROR",
            f"that time is more than {self._scan_pages * self._page_size} messages back; "
            "use a msgid",
        )

    async def before(self, room: str, ref: Reference, limit: int) -> list[Message]:
        """Up to ``limit`` messages before ``ref`` (excluded), the newest ones."""
        top = await self.boundary(room, ref, inclusive=False)
        return await self._newest_before(room, top + 1, limit)

    async def after(self, room: str, ref: Reference, limit: int) -> list[Message]:
        """Up to ``limit`` messages after ``ref`` (excluded), the oldest ones."""
        bottom = await self.boundary(room, ref, inclusive=True)
        return await self._first_after(room, bottom, limit)

    async def latest(self, room: str, ref: Reference, limit: int) -> list[Message]:
        """The newest ``limit`` messages, only those after ``ref`` unless ``*``."""
        newest = await self._newest_before(room, None, limit)
        if ref.now:
            return newest
        bottom = await self.boundary(room, ref, inclusive=True)
        return [m for m in newest if m.id > bottom]

    async def around(self, room: str, ref: Reference, limit: int) -> list[Message]:
        """``limit`` messages around ``ref``: half before it, the rest from it on."""
        pivot = await self.boundary(room, ref, inclusive=False)
        older = await self._newest_before(room, pivot + 1, limit // 2)
        newer = await self._first_after(room, pivot, limit - len(older))
        return older + newer

    async def between(
        self, room: str, start: Reference, end: Reference, limit: int
    ) -> list[Message]:
        """Up to ``limit`` messages strictly between two references, counted
        from ``start``: forwards if it is the older one, else backwards."""
        low = await self.boundary(room, start, inclusive=True)
        high = await self.boundary(room, end, inclusive=False)
        if start.message_id is not None and end.message_id is not None:
            forwards = start.message_id <= end.message_id
        elif start.timestamp_ms is not None and end.timestamp_ms is not None:
            forwards = start.timestamp_ms <= end.timestamp_ms
        else:
            forwards = low <= high
        if forwards:
            page = await self._first_after(room, low, limit)
            return [m for m in page if m.id <= high]
        # Backwards: start is the newer one.
        newer_edge = await self.boundary(room, start, inclusive=False)
        older_edge = await self.boundary(room, end, inclusive=True)
        page = await self._newest_before(room, newer_edge + 1, limit)
        return [m for m in page if m.id > older_edge]


async def direct_page(
    service: IChatService, participant: Any, other: str, subcommand: str, ref: Reference, limit: int
) -> list[DirectMessage]:
    """The direct messages with ``other`` that CHATHISTORY LATEST or BEFORE
    asks for, oldest first."""
    if subcommand == "LATEST":
        if ref.timestamp_ms is not None:
            raise HistoryError("INVALID_PARAMS", "direct messages are referenced by msgid")
        _, messages = await service.direct_history(participant, other, limit)
        if ref.message_id is not None:
            messages = [m for m in messages if m.id > ref.message_id]
    elif subcommand == "BEFORE" and ref.message_id is not None:
        _, messages = await service.direct_history(participant, other, limit, ref.message_id)
    else:
        raise HistoryError(
            "INVALID_PARAMS",
            "direct message history supports LATEST and BEFORE with a msgid only",
        )
    result: list[DirectMessage] = messages
    return result


def chat_error(error: ChatError) -> HistoryError:
    """A service refusal as a CHATHISTORY error."""
    return HistoryError("MESSAGE_ERROR", f"{error.message} ({error.code})")
