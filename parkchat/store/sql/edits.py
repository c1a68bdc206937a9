"""Edits of room messages in SQL: ``messages.content``/``edited_ms`` and the
``message_edits`` record behind ``IMessageEditStore``.

An edit reads the row, records its old text and writes the new one in one
transaction; the full-text index follows by itself (SQLite: the FTS5
triggers of schema v5; PostgreSQL: the generated ``search_vector``).
"""

from __future__ import annotations

from twisted.internet.defer import Deferred
from zope.interface import implementer

from parkchat.interfaces import IMessageEditStore
from parkchat.model import Message, MessageEdit
from parkchat.store.sql.engine import Cursor, Dialect, SQLStoreBase
from parkchat.store.sql.messages import MESSAGE_COLUMNS, message_from_row


def room_message_txn(txn: Cursor, dialect: Dialect, room: str, seq: int) -> Message | None:
    txn.execute(
        dialect.sql(f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE room = ? AND seq = ?"),
        (room, seq),
    )
    row = txn.fetchone()
    return None if row is None else message_from_row(row)


def edit_message_txn(
    txn: Cursor,
    dialect: Dialect,
    message_id: int,
    content: str,
    editor_id: int | None,
    editor: str,
    edited_ms: int,
) -> Message | None:
    # FOR UPDATE where the engine has it: two edits of one message on two
    # instances are recorded one after the other, each with the text it replaced.
    lock = " FOR UPDATE" if dialect.name == "postgres" else ""
    txn.execute(
        dialect.sql(f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = ?{lock}"), (message_id,)
    )
    row = txn.fetchone()
    if row is None:
        return None
    old = message_from_row(row)
    if old.edited_ms is not None and edited_ms <= old.edited_ms:
        edited_ms = old.edited_ms + 1
    txn.execute(
        dialect.sql(
            "INSERT INTO message_edits"
            " (message_id, room, seq, old_content, editor_id, editor, edited_ms)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)"
        ),
        (message_id, old.room, old.seq, old.content, editor_id, editor, edited_ms),
    )
    txn.execute(
        dialect.sql("UPDATE messages SET content = ?, edited_ms = ? WHERE id = ?"),
        (content, edited_ms, message_id),
    )
    old.content = content
    old.edited_ms = edited_ms
    return old


def message_edits_txn(txn: Cursor, dialect: Dialect, message_id: int) -> list[MessageEdit]:
    txn.execute(
        dialect.sql(
            "SELECT message_id, old_content, editor, editor_id, edited_ms FROM message_edits"
            " WHERE message_id = ? ORDER BY id"
        ),
        (message_id,),
    )
    return [
        MessageEdit(int(mid), old, editor, None if eid is None else int(eid), int(ms))
        for mid, old, editor, eid, ms in txn.fetchall()
    ]


@implementer(IMessageEditStore)
class MessageEditStore(SQLStoreBase):
    """Edits of room messages and their record."""

    def room_message(self, room: str, seq: int) -> Deferred[Message | None]:
        return self._read(room_message_txn, room, seq)

    def edit_message(
        self, message_id: int, content: str, editor_id: int | None, editor: str, edited_ms: int
    ) -> Deferred[Message | None]:
        return self._write(edit_message_txn, message_id, content, editor_id, editor, edited_ms)

    def message_edits(self, message_id: int) -> Deferred[list[MessageEdit]]:
        return self._read(message_edits_txn, message_id)
