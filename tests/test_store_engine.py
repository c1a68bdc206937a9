"""``SQLStoreBase``'s retries, with a pool that runs interactions at once:
which failures run a transaction again and which reach the caller."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.trial.unittest import SynchronousTestCase

from parkchat.store.sql.engine import Cursor, Dialect, SQLStoreBase


class Lost(Exception):
    """The engine's "connection dropped" error."""


class Refused(Exception):
    """Any other database error (a constraint, a syntax error)."""


@dataclass(frozen=True)
class FakeDialect(Dialect):
    def probe_write(self, txn: Cursor) -> None:
        pass

    def insert_returning_ids(
        self, txn: Cursor, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]
    ) -> list[int]:
        return []


class ImmediatePool:
    """adbapi's ``runInteraction`` contract without threads: the function,
    then the COMMIT (which fails ``commit_failures`` times), else a failure."""

    max = 3

    def __init__(self, commit_failures: int = 0) -> None:
        self.calls = 0
        self.commit_failures = commit_failures

    def runInteraction(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Deferred[Any]:
        self.calls += 1
        try:
            result = func(object(), *args, **kwargs)
            if self.commit_failures:
                self.commit_failures -= 1
                raise Lost("the reply to COMMIT was lost")
        except Exception:
            return fail()
        return succeed(result)


def failing(times: int, error: type[Exception] = Lost) -> Callable[..., str]:
    """A transaction function that raises ``error`` on its first ``times`` runs."""
    runs = []

    def write_txn(txn: Cursor, dialect: Dialect, value: str) -> str:
        runs.append(value)
        if len(runs) <= times:
            raise error("server closed the connection unexpectedly")
        return value

    return write_txn


class WriteRetryTests(SynchronousTestCase):
    def store(
        self, pool: ImmediatePool, errors: tuple[type[Exception], ...] = (Lost,)
    ) -> SQLStoreBase:
        return SQLStoreBase(pool, FakeDialect("fake", Refused, connection_errors=errors))  # type: ignore[arg-type]

    def test_lost_before_commit_runs_again(self) -> None:
        """A connection found dropped inside the transaction: run again, on
        as many connections as the pool holds, until one works."""
        pool = ImmediatePool()
        result = self.successResultOf(self.store(pool)._write(failing(2), "stored"))
        self.assertEqual((result, pool.calls), ("stored", 3))
        self.flushLoggedErrors()

    def test_gives_up_with_the_connection_error(self) -> None:
        """Once every pooled connection (and one more) failed, the caller
        gets the engine's own error, not the internal marker."""
        pool = ImmediatePool()
        failure = self.failureResultOf(self.store(pool)._write(failing(10), "x"))
        failure.trap(Lost)
        self.assertEqual(pool.calls, ImmediatePool.max + 1)

    def test_commit_failure_is_not_run_again(self) -> None:
        """The COMMIT's reply was lost: whether it happened is unknown, so
        the write is not repeated (it could be stored twice)."""
        pool = ImmediatePool(commit_failures=1)
        failure = self.failureResultOf(self.store(pool)._write(failing(0), "x"))
        failure.trap(Lost)
        self.assertEqual(pool.calls, 1)

    def test_other_errors_are_not_retried(self) -> None:
        pool = ImmediatePool()
        failure = self.failureResultOf(self.store(pool)._write(failing(1, Refused), "x"))
        failure.trap(Refused)
        self.assertEqual(pool.calls, 1)

    def test_engine_without_connection_errors(self) -> None:
        """SQLite has no connections to lose: a failure reaches the caller
        after one run."""
        pool = ImmediatePool()
        failure = self.failureResultOf(self.store(pool, errors=())._write(failing(1), "x"))
        failure.trap(Lost)
        self.assertEqual(pool.calls, 1)

    def test_read_runs_again_after_any_lost_connection(self) -> None:
        """A read changes nothing, so even a connection lost at its COMMIT
        runs it again."""
        pool = ImmediatePool(commit_failures=1)
        result = self.successResultOf(self.store(pool)._read(failing(1), "read"))
        self.assertEqual((result, pool.calls), ("read", 3))
