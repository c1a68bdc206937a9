"""Room messages in SQL: the ``messages`` table behind ``IRoomMessageStore``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from twisted.internet.defer import Deferred
from zope.interface import implementer

from parkchat.interfaces import IRoomMessageStore
from parkchat.model import Message
from parkchat.store.sql.engine import Cursor, Dialect, SQLStoreBase

_MESSAGE_COLUMNS = "id, room, user_id, nickname, content, created_ms, type"


def _message_from_row(row: Sequence[Any]) -> Message:
    id_, room, user_id, nickname, content, created_ms, type_ = row
    return Message(
        id=id_,
        room=room,
        user_id=user_id,
        nickname=nickname,
        content=content,
        timestamp_ms=created_ms,
        type=type_,
    )


def insert_messages_txn(txn: Cursor, dialect: Dialect, messages: Sequence[Message]) -> list[int]:
    if not messages:
        return []
    dialect.order_message_ids(txn)
    return dialect.insert_returning_ids(
        txn,
        "messages",
        ("room", "user_id", "nickname", "content", "created_ms", "type"),
        [(m.room, m.user_id, m.nickname, m.content, m.timestamp_ms, m.type) for m in messages],
    )


def delete_message_txn(txn: Cursor, dialect: Dialect, message_id: int) -> str | None:
    txn.execute(dialect.sql("SELECT room FROM messages WHERE id = ?"), (message_id,))
    row = txn.fetchone()
    if row is None:
        return None
    txn.execute(dialect.sql("DELETE FROM messages WHERE id = ?"), (message_id,))
    return str(row[0])


def recent_messages_txn(
    txn: Cursor,
    dialect: Dialect,
    room: str,
    limit: int,
    before: int | None,
    after: int | None,
) -> list[Message]:
    if after is not None:
        txn.execute(
            dialect.sql(
                f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE room = ? AND id > ? "
                "ORDER BY id ASC LIMIT ?"
            ),
            (room, after, limit),
        )
        return [_message_from_row(r) for r in txn.fetchall()]
    if before is not None:
        txn.execute(
            dialect.sql(
                f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE room = ? AND id < ? "
                "ORDER BY id DESC LIMIT ?"
            ),
            (room, before, limit),
        )
    else:
        txn.execute(
            dialect.sql(
                f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE room = ? ORDER BY id DESC LIMIT ?"
            ),
            (room, limit),
        )
    rows = txn.fetchall()
    rows.reverse()
    return [_message_from_row(r) for r in rows]


@implementer(IRoomMessageStore)
class RoomMessageStore(SQLStoreBase):
    """Chat messages of rooms, written in batches by the group-commit writer."""

    def insert_messages(self, messages: Sequence[Message]) -> Deferred[list[int]]:
        return self._write(insert_messages_txn, list(messages))

    def recent_messages(
        self, room: str, limit: int, before: int | None = None, after: int | None = None
    ) -> Deferred[list[Message]]:
        return self._read(recent_messages_txn, room, limit, before, after)

    def delete_message(self, message_id: int) -> Deferred[str | None]:
        return self._write(delete_message_txn, message_id)
