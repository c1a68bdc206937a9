"""What every SQL store stands on: the ``Dialect`` of an engine and
``SQLStoreBase``, which runs named ``*_txn`` functions through an adbapi pool.

The SQL is written once, with ``?`` placeholders, in the per-area modules
beside this one. An engine is a ``Dialect``: the few things that differ
between SQLite (``store/sqlite.py``) and PostgreSQL (``store/postgres.py``) —
placeholders, the integrity error, how inserted ids come back, and which
errors mean a lost connection — as
Synapse keeps its engines apart from its per-area stores.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

from twisted.enterprise import adbapi
from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from parkchat.interfaces import IStoreLifecycle

_log = Logger()

P = ParamSpec("P")
T = TypeVar("T")


class Cursor(Protocol):
    """What a ``*_txn`` function may use of the transaction it is given: the
    DB-API cursor methods both engines' cursors have (an adbapi
    ``Transaction`` passes them on to its cursor)."""

    @property
    def rowcount(self) -> int: ...

    @property
    def lastrowid(self) -> Any: ...

    def execute(self, query: str, params: Sequence[Any] = (), /) -> Any: ...

    def executemany(self, query: str, params: Iterable[Sequence[Any]], /) -> Any: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


@dataclass(frozen=True)
class Dialect(ABC):
    """What differs between SQL engines, kept in one place: each engine is a
    subclass (``sqlite.SQLiteDialect``, ``postgres.PostgresDialect``)."""

    name: str
    integrity_error: type[Exception]
    placeholder: str = "?"
    #: Errors meaning the connection was lost (server restart, a terminated
    #: backend): a read that fails with one is retried on a new connection,
    #: and so is a write that fails with one before its COMMIT.
    connection_errors: tuple[type[Exception], ...] = ()

    def sql(self, query: str) -> str:
        """``query``, written with ``?`` placeholders, in this engine's."""
        return query if self.placeholder == "?" else query.replace("?", self.placeholder)

    @abstractmethod
    def probe_write(self, txn: Cursor) -> None:
        """Raise unless a write transaction can start on this connection now
        (readiness); leave nothing behind."""

    @abstractmethod
    def insert_returning_ids(
        self, txn: Cursor, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]
    ) -> list[int]:
        """Insert ``rows`` into ``table`` and return their new ``id`` values,
        in the order of ``rows``. This is the hot path of group commit: one
        statement (or one ``executemany``) per batch, no Python per row."""


class LostBeforeCommit(Exception):
    """The connection was lost inside a write transaction, before adbapi sent
    its COMMIT: nothing of the transaction was stored (``SQLStoreBase._write``)."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


def _until_commit(
    txn: Cursor,
    interaction: Callable[..., T],
    dialect: Dialect,
    *args: Any,
    **kwargs: Any,
) -> T:
    """Run ``interaction``, telling a lost connection before COMMIT apart
    from every other error (``LostBeforeCommit``)."""
    try:
        return interaction(txn, dialect, *args, **kwargs)
    except dialect.connection_errors as error:
        raise LostBeforeCommit(error) from error


@implementer(IStoreLifecycle)
class SQLStoreBase:
    """A pool and its engine's dialect; the per-area stores
    (``messages.RoomMessageStore`` and its siblings) build on it, and
    ``SQLStore`` is all of them at once.

    Every public method of an area store runs one named ``*_txn(txn,
    dialect, ...)`` function on a pool thread: ``_read`` again on a new
    connection if the first was found dropped, ``_write`` again only if the
    connection was found dropped before the COMMIT.
    """

    def __init__(self, pool: adbapi.ConnectionPool, dialect: Dialect) -> None:
        self.pool = pool
        self.dialect = dialect

    def _write(
        self,
        interaction: Callable[Concatenate[Cursor, Dialect, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> Deferred[T]:
        """Run ``interaction`` in a transaction, again on a new connection if
        the connection turns out to have been dropped *before* the COMMIT.

        adbapi calls ``interaction`` and then commits; a connection error
        raised inside ``interaction`` means no COMMIT was ever sent, so the
        server rolled the transaction back and running it again cannot store
        anything twice. A failure of the COMMIT itself is not retried: its
        reply was lost, so whether it happened is unknown, and the caller is
        told (``StorageFailed`` for messages)."""
        if not self.dialect.connection_errors:
            return self.pool.runInteraction(interaction, self.dialect, *args, **kwargs)
        return self._run(interaction, args, kwargs, self.pool.max, read=False)

    def _read(
        self,
        interaction: Callable[Concatenate[Cursor, Dialect, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> Deferred[T]:
        """Run a read-only ``interaction``, again if its connection turns out
        to have been dropped (``Dialect.connection_errors``).

        adbapi's ``cp_reconnect`` discards a broken connection only after a
        query on it has failed, so the first query after a server restart or
        a terminated backend fails even though the database is back. A read
        can simply run again; each failure discards one dead connection, so
        one attempt per pooled connection more is enough to reach a live one.
        """
        if not self.dialect.connection_errors:
            return self.pool.runInteraction(interaction, self.dialect, *args, **kwargs)
        return self._run(interaction, args, kwargs, self.pool.max, read=True)

    def _run(
        self,
        interaction: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        retries: int,
        *,
        read: bool,
    ) -> Deferred[Any]:
        """Run ``interaction`` and, ``retries`` times at most, again on a new
        connection: a read after any lost connection, a write only after
        one lost before its COMMIT (``LostBeforeCommit``)."""
        d = self.pool.runInteraction(_until_commit, interaction, self.dialect, *args, **kwargs)
        d.addErrback(self._again, interaction, args, kwargs, retries, read)
        return d

    def _again(
        self,
        failure: Failure,
        interaction: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        retries: int,
        read: bool,
    ) -> Deferred[Any] | Failure:
        if failure.check(LostBeforeCommit):
            lost = failure.value.error
        elif read and failure.check(*self.dialect.connection_errors):
            lost = failure.value
        else:
            return failure
        if retries <= 0:
            return Failure(lost)
        _log.warn(
            "database connection lost ({error}); running {interaction} again",
            error=str(lost).strip(),
            interaction=interaction.__name__,
        )
        return self._run(interaction, args, kwargs, retries - 1, read=read)

    def ping(self) -> Deferred[None]:
        return self._read(ping_txn)

    def check_writable(self) -> Deferred[None]:
        # A read as far as retries go: the probe changes nothing.
        return self._read(check_writable_txn)

    def close(self) -> Deferred[None]:
        # ConnectionPool.close joins its thread, which finishes the running
        # interaction first; queued work has been flushed by the service.
        if self.pool.running:
            self.pool.close()
        return succeed(None)


def ping_txn(txn: Cursor, dialect: Dialect) -> None:
    txn.execute("SELECT 1")
    txn.fetchall()


def check_writable_txn(txn: Cursor, dialect: Dialect) -> None:
    dialect.probe_write(txn)
