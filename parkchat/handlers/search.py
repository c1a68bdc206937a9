"""Full-text search over the rooms an account may read and its own direct
messages (``GET /search``, the /ws ``search`` request).

A query is cut into words (letters and digits, lower case); a message
matches when each word begins one of its words. Results come newest first,
``limit`` at a time, with an opaque cursor (``next``) for the following
page, and highlights: the code-point offsets of the matching words in the
text (``parkchat.model.search_highlights``), never markup.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace

from parkchat.errors import AuthenticationFailed, InvalidRequest, UnknownRecipient
from parkchat.interfaces import IAccountStateStore, IAccountStore, ISearchStore
from parkchat.limits import TokenBucketLimiter
from parkchat.model import (
    MAX_ID,
    SearchHit,
    nickname_key,
    search_highlights,
    search_terms,
    validate_room,
)

#: Results per page when the request names no ``limit``; the most it may name.
SEARCH_DEFAULT = 20
SEARCH_MAX = 50

_CURSOR_VERSION = "1"


@dataclass(frozen=True)
class SearchPage:
    """One page of results and the cursor of the next (None: the last)."""

    hits: list[SearchHit]
    next: str | None


def encode_cursor(hit: SearchHit) -> str:
    """The cursor that continues below ``hit``: its sort key, opaque."""
    kind = 1 if hit.room is not None else 0
    raw = f"{_CURSOR_VERSION}.{hit.timestamp_ms}.{kind}.{hit.id}".encode("ascii")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(cursor: object) -> tuple[int, int, int] | None:
    """The sort key a cursor stands for (None for none); InvalidRequest if
    it is not one a search gave."""
    if cursor is None:
        return None
    bad = InvalidRequest('"before" must be the "next" cursor of an earlier search')
    if not isinstance(cursor, str) or not cursor or len(cursor) > 100:
        raise bad
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        version, ms, kind, message_id = raw.split(".")
        key = (int(ms), int(kind), int(message_id))
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise bad from None
    if version != _CURSOR_VERSION or key[1] not in (0, 1) or not 0 <= key[2] <= MAX_ID:
        raise bad
    return key


class SearchHandler:
    """Searches on behalf of an account (guests have none: no search)."""

    def __init__(
        self,
        store: ISearchStore,
        users: IAccountStore,
        rate: TokenBucketLimiter,
        *,
        joined: IAccountStateStore | None = None,
        present: Callable[[int, str], Iterable[str]] | None = None,
    ) -> None:
        self._store = store
        self._users = users
        self._rate = rate
        #: The rooms an account has joined (account state), and the rooms
        #: its open connections are in now, by account id and key (rooms entered on
        #: TCP, IRC or /ws/{room} are not recorded as joined).
        self._joined = joined
        self._present = present

    async def readable_rooms(self, user_id: int, nickname: str) -> Sequence[str] | None:
        """The rooms whose messages ``user_id`` may find; None: every room
        (a service built without account state, as some tests are).

        The one place that decides it: the rooms the account has joined (its
        account state, every device's) and those its connections are in now
        (a terminal's or an IRC client's room, not recorded as joined)."""
        if self._joined is None:
            return None
        rooms = set(await self._joined.account_room_names(user_id))
        if self._present is not None:
            rooms.update(self._present(user_id, nickname_key(nickname)))
        return sorted(rooms)

    async def search(
        self,
        user_id: int | None,
        nickname: str,
        query: object,
        *,
        room: object = None,
        with_nickname: object = None,
        before: object = None,
        limit: object = None,
    ) -> SearchPage:
        """A page of messages matching ``query`` that the account may read:
        in ``room`` if given, in the conversation with ``with_nickname`` if
        given, else everywhere; below the cursor ``before``."""
        if user_id is None:
            raise AuthenticationFailed("search needs a parkchat account")
        terms = search_terms(query)
        if limit is None:
            limit = SEARCH_DEFAULT
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= SEARCH_MAX:
            raise InvalidRequest(f'"limit" must be between 1 and {SEARCH_MAX}')
        key = decode_cursor(before)
        if room is not None and with_nickname is not None:
            raise InvalidRequest('give "room" or "with", not both')
        room_name = validate_room(room) if room is not None else None
        with_user_id = None
        if with_nickname is not None:
            if not isinstance(with_nickname, str) or not with_nickname:
                raise InvalidRequest('"with" must be a nickname')
            other = await self._users.get_user(with_nickname)
            if other is None:
                raise UnknownRecipient(f"no account {with_nickname!r}")
            with_user_id = other.id
        rooms = await self.readable_rooms(user_id, nickname)
        if room_name is not None and rooms is not None and room_name not in rooms:
            return SearchPage([], None)
        self._rate.consume(nickname_key(nickname))
        found = await self._store.search_messages(
            terms,
            user_id,
            rooms=rooms,
            room=room_name,
            with_user_id=with_user_id,
            include_rooms=with_user_id is None,
            include_direct=room_name is None,
            before=key,
            limit=limit + 1,
        )
        hits = [
            replace(hit, highlights=search_highlights(hit.content, terms)) for hit in found[:limit]
        ]
        following = encode_cursor(hits[-1]) if len(found) > limit else None
        return SearchPage(hits, following)
