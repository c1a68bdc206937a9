"""Room topics in SQL: the ``room_topics`` table behind ``IRoomTopicStore``
(one row per room with a topic; clearing deletes it)."""

from __future__ import annotations

from twisted.internet.defer import Deferred
from zope.interface import implementer

from parkchat.interfaces import IRoomTopicStore
from parkchat.model import RoomTopic
from parkchat.store.sql.engine import Cursor, Dialect, SQLStoreBase


def room_topic_txn(txn: Cursor, dialect: Dialect, room: str) -> RoomTopic | None:
    txn.execute(
        dialect.sql("SELECT topic, set_by, set_ms FROM room_topics WHERE room = ?"), (room,)
    )
    row = txn.fetchone()
    return None if row is None else RoomTopic(row[0], row[1], int(row[2]))


def set_room_topic_txn(txn: Cursor, dialect: Dialect, room: str, topic: RoomTopic) -> None:
    if not topic.text:
        txn.execute(dialect.sql("DELETE FROM room_topics WHERE room = ?"), (room,))
        return
    txn.execute(
        dialect.sql(
            "INSERT INTO room_topics (room, topic, set_by, set_ms) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (room) DO UPDATE SET topic = excluded.topic,"
            " set_by = excluded.set_by, set_ms = excluded.set_ms"
        ),
        (room, topic.text, topic.nickname, topic.set_ms),
    )


@implementer(IRoomTopicStore)
class RoomTopicStore(SQLStoreBase):
    """Room topics."""

    def room_topic(self, room: str) -> Deferred[RoomTopic | None]:
        return self._read(room_topic_txn, room)

    def set_room_topic(self, room: str, topic: RoomTopic) -> Deferred[None]:
        return self._write(set_room_topic_txn, room, topic)
