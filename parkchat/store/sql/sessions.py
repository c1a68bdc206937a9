"""Session numbers in SQL: the ``session_counters`` table behind
``ISessionStore``."""

from __future__ import annotations

from twisted.internet.defer import Deferred
from zope.interface import implementer

from parkchat.interfaces import ISessionStore
from parkchat.store.sql.engine import Cursor, Dialect, SQLStoreBase


def next_session_txn(txn: Cursor, dialect: Dialect, user_id: int) -> int:
    # One statement: on PostgreSQL two instances counting the same account
    # at once take turns on the row (the second waits for the first to
    # commit and adds to its number), so no number is given twice.
    txn.execute(
        dialect.sql(
            "INSERT INTO session_counters (user_id, last_session) VALUES (?, 1) "
            "ON CONFLICT (user_id) DO UPDATE "
            "SET last_session = session_counters.last_session + 1 RETURNING last_session"
        ),
        (user_id,),
    )
    return int(txn.fetchone()[0])


@implementer(ISessionStore)
class SessionStore(SQLStoreBase):
    """Per-account session numbers, increasing across instances."""

    def next_session(self, user_id: int) -> Deferred[int]:
        return self._write(next_session_txn, user_id)
