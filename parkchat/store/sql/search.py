"""Full-text search in SQL, behind ``ISearchStore``.

The engines differ only in how a row is matched, kept here in one small
table (``_MATCH``): SQLite joins its FTS5 index (``messages_fts``,
``direct_messages_fts``: external-content tables kept in step by triggers,
schema v5) and matches ``"term"*`` phrases; PostgreSQL matches the
generated ``search_vector`` column (GIN-indexed) against
``to_tsquery('simple', 'term:* & ...')``. Both match every term as the
beginning of a word. Results are newest first by ``(created_ms, kind,
id)``, kind 1 for room messages and 0 for direct ones, which is also the
key a page continues below.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from twisted.internet.defer import Deferred
from zope.interface import implementer

from parkchat.interfaces import ISearchStore
from parkchat.model import CHAT, SearchHit
from parkchat.store.sql.engine import Cursor, Dialect, SQLStoreBase

ROOM_KIND = 1
DIRECT_KIND = 0


def _fts5_query(terms: Sequence[str]) -> str:
    # Terms are words of letters and digits: nothing in them needs escaping
    # inside an FTS5 string; quoted anyway, so no term is read as an operator.
    return " ".join(f'"{term}"*' for term in terms)


def _tsquery(terms: Sequence[str]) -> str:
    return " & ".join(f"'{term}':*" for term in terms)


# (FROM ... of room messages, of direct messages, the match condition of
# each, the query text) per engine.
_MATCH: dict[str, tuple[str, str, str, str, Any]] = {
    "sqlite": (
        "messages_fts JOIN messages m ON m.id = messages_fts.rowid",
        "direct_messages_fts JOIN direct_messages d ON d.id = direct_messages_fts.rowid",
        "messages_fts MATCH ?",
        "direct_messages_fts MATCH ?",
        _fts5_query,
    ),
    "postgres": (
        "messages m",
        "direct_messages d",
        "m.search_vector @@ to_tsquery('simple', ?)",
        "d.search_vector @@ to_tsquery('simple', ?)",
        _tsquery,
    ),
}


def _below(alias: str, kind: int, before: tuple[int, int, int] | None) -> tuple[str, list[Any]]:
    """The condition "this row's key is below ``before``" for rows of ``kind``."""
    if before is None:
        return "", []
    at_ms, at_kind, at_id = before
    if kind < at_kind:  # the same time sorts this kind after the cursor's
        return f" AND {alias}.created_ms <= ?", [at_ms]
    if kind > at_kind:
        return f" AND {alias}.created_ms < ?", [at_ms]
    return (
        f" AND ({alias}.created_ms < ? OR ({alias}.created_ms = ? AND {alias}.id < ?))",
        [at_ms, at_ms, at_id],
    )


def search_messages_txn(
    txn: Cursor,
    dialect: Dialect,
    terms: Sequence[str],
    user_id: int,
    rooms: Sequence[str] | None,
    room: str | None,
    with_user_id: int | None,
    include_rooms: bool,
    include_direct: bool,
    before: tuple[int, int, int] | None,
    limit: int,
) -> list[SearchHit]:
    if not terms or limit <= 0:
        return []
    room_from, direct_from, room_match, direct_match, make_query = _MATCH[dialect.name]
    query = make_query(terms)
    hits: list[tuple[tuple[int, int, int], SearchHit]] = []
    if include_rooms and (rooms is None or rooms or room is not None):
        where = f"{room_match} AND m.type = ?"
        params: list[Any] = [query, CHAT]
        if room is not None:
            where += " AND m.room = ?"
            params.append(room)
        elif rooms is not None:
            where += " AND m.room IN (" + ", ".join(["?"] * len(rooms)) + ")"
            params.extend(rooms)
        cursor, extra = _below("m", ROOM_KIND, before)
        txn.execute(
            dialect.sql(
                "SELECT m.id, m.seq, m.room, m.nickname, m.content, m.created_ms, m.edited_ms"
                f" FROM {room_from} WHERE {where}{cursor}"
                " ORDER BY m.created_ms DESC, m.id DESC LIMIT ?"
            ),
            [*params, *extra, limit],
        )
        for id_, seq, room_name, nickname, content, created_ms, edited_ms in txn.fetchall():
            hit = SearchHit(
                id=int(id_),
                seq=int(seq),
                nickname=nickname,
                content=content,
                timestamp_ms=int(created_ms),
                room=room_name,
                edited_ms=None if edited_ms is None else int(edited_ms),
            )
            hits.append(((hit.timestamp_ms, ROOM_KIND, hit.id), hit))
    if include_direct:
        if with_user_id is None:
            pair = "(d.from_user_id = ? OR d.to_user_id = ?)"
            params = [query, user_id, user_id]
        else:
            pair = (
                "((d.from_user_id = ? AND d.to_user_id = ?)"
                " OR (d.from_user_id = ? AND d.to_user_id = ?))"
            )
            params = [query, user_id, with_user_id, with_user_id, user_id]
        cursor, extra = _below("d", DIRECT_KIND, before)
        txn.execute(
            dialect.sql(
                "SELECT d.id, d.seq, d.from_user_id, fu.nickname, tu.nickname, d.content,"
                f" d.created_ms FROM {direct_from}"
                " JOIN users fu ON fu.id = d.from_user_id"
                " JOIN users tu ON tu.id = d.to_user_id"
                f" WHERE {direct_match} AND {pair}{cursor}"
                " ORDER BY d.created_ms DESC, d.id DESC LIMIT ?"
            ),
            [*params, *extra, limit],
        )
        for id_, seq, from_id, from_nick, to_nick, content, created_ms in txn.fetchall():
            hit = SearchHit(
                id=int(id_),
                seq=int(seq),
                nickname=from_nick,
                content=content,
                timestamp_ms=int(created_ms),
                with_nickname=to_nick if int(from_id) == user_id else from_nick,
            )
            hits.append(((hit.timestamp_ms, DIRECT_KIND, hit.id), hit))
    hits.sort(key=lambda pair: pair[0], reverse=True)
    return [hit for _, hit in hits[:limit]]


@implementer(ISearchStore)
class SearchStore(SQLStoreBase):
    """Full-text search over room and direct messages."""

    def search_messages(
        self,
        terms: Sequence[str],
        user_id: int,
        *,
        rooms: Sequence[str] | None,
        room: str | None,
        with_user_id: int | None,
        include_rooms: bool,
        include_direct: bool,
        before: tuple[int, int, int] | None,
        limit: int,
    ) -> Deferred[list[SearchHit]]:
        return self._read(
            search_messages_txn,
            list(terms),
            user_id,
            None if rooms is None else list(rooms),
            room,
            with_user_id,
            include_rooms,
            include_direct,
            before,
            limit,
        )
