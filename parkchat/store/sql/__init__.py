"""The engine-neutral SQL stores over ``twisted.enterprise.adbapi``.

All SQL parkchat runs against its tables is in this package, one module per
area, each pairing the named ``*_txn`` functions of its tables with the store
class that runs them (``messages``, ``edits``, ``search``, ``topics``, ``accounts``,
``sessions``, ``direct``, ``moderation``, ``tokens``, ``state``, ``refresh``; ``settings`` for
start-up). ``SQLStore`` is every area at once:
Synapse's ``DataStore`` made of its per-area stores is the model.

The SQL is written with ``?`` placeholders; an engine is a ``Dialect``
(``engine.py``), and the engine modules beside this package
(``store/sqlite.py``, ``store/postgres.py``) supply theirs with a pool. They
import from here, never from each other.
"""

from __future__ import annotations

from zope.interface import implementer

from parkchat.interfaces import IMessageStore
from parkchat.store.sql.accounts import AccountStore
from parkchat.store.sql.direct import DirectMessageStore
from parkchat.store.sql.edits import MessageEditStore
from parkchat.store.sql.engine import Cursor, Dialect, SQLStoreBase
from parkchat.store.sql.messages import RoomMessageStore
from parkchat.store.sql.moderation import ModerationStore
from parkchat.store.sql.refresh import RefreshTokenStore
from parkchat.store.sql.search import SearchStore
from parkchat.store.sql.sessions import SessionStore
from parkchat.store.sql.settings import load_or_create_setting_txn
from parkchat.store.sql.state import AccountStateStore
from parkchat.store.sql.tokens import TokenStore
from parkchat.store.sql.topics import RoomTopicStore

__all__ = [
    "AccountStateStore",
    "AccountStore",
    "Cursor",
    "Dialect",
    "DirectMessageStore",
    "MessageEditStore",
    "ModerationStore",
    "RefreshTokenStore",
    "RoomMessageStore",
    "RoomTopicStore",
    "SQLStore",
    "SQLStoreBase",
    "SearchStore",
    "SessionStore",
    "TokenStore",
    "load_or_create_setting_txn",
]


@implementer(IMessageStore)
class SQLStore(
    RoomMessageStore,
    MessageEditStore,
    SearchStore,
    RoomTopicStore,
    AccountStore,
    SessionStore,
    DirectMessageStore,
    ModerationStore,
    TokenStore,
    AccountStateStore,
    RefreshTokenStore,
):
    """An ``IMessageStore`` over an adbapi pool, the engine given by its
    ``dialect``: every area store on one pool."""
