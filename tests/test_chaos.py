"""Chaos: three real instances, clients on every surface, faults; every
client must end up with exactly the store's sequence of each room.

Three ``twistd -n parkchat`` on one fresh PostgreSQL database and a Redis of
the test's own (``PrivateRedis``: the shared Redis and PostgreSQL servers are
never stopped; ``pg_terminate_backend`` touches only the test's database).
Eighteen clients in three rooms (``/ws`` resuming with ``last_seq``, some with
a small ``max_frame``; ``/ws/{room}`` with ``?since=`` and plain; TCP and
``/mychat``, checked by content) send at a steady 10 messages/s per instance
while Redis is SIGKILLed and restarted twice, the database's backends are
terminated, and one instance is SIGKILLed and restarted (its clients
reconnect elsewhere or to it, and resume). At the end, for every client and
room, what it received must be the stored sequence over the span it was
owed: no gap, no duplicate, in order (``tests/delivery_support.py`` says
exactly what "owed" means per surface). A failure names the client, the
room, the seqs and when they were stored. One thing is reported but not
failed: a message whose sender got ``storage_failed`` while the database
committed it all the same (a backend terminated between its commit and its
reply: no database client can tell); the others then receive it, as they
must, since it is stored.

Bounded: every wait has a deadline; the run takes ~60 s and may not exceed
``Config.deadline``. ``bench/delivery.py`` runs the same at 100 messages/s
per instance.
"""

from __future__ import annotations

from pathlib import Path

from twisted.trial.unittest import TestCase

from tests.delivery_support import Config, run_chaos
from tests.e2e_support import in_ci
from tests.postgres_support import create_database
from tests.redis_support import PrivateRedis
from tests.test_multi_instance import POSTGRES_URL, postgres_admin


class ChaosTests(TestCase):
    """The delivery guarantee under Redis outages, a killed instance and
    dropped database connections, on every surface."""

    def database(self) -> str:
        conn = postgres_admin()
        if conn is None:
            message = "PostgreSQL is needed (PARKCHAT_TEST_POSTGRES)"
            if in_ci():
                raise AssertionError(message + "; CI must run the chaos test")
            self.skipTest(message)
        conn.close()
        # On the server postgres_admin reached: PARKCHAT_TEST_POSTGRES, or the
        # local default when it is unset (the README's plain test command).
        return create_database(self.addCleanup, dsn=POSTGRES_URL, prefix="parkchat_chaos")

    def test_every_client_gets_the_stored_sequence(self) -> None:
        """Through two Redis restarts, ``pg_terminate_backend`` and a
        SIGKILLed instance, every client on every surface receives each
        room's stored messages exactly once and in order, from its join to
        the end, across its resumes."""
        db = self.database()
        redis = PrivateRedis(self.mktemp())
        redis.start()
        self.addCleanup(redis.kill)
        config = Config(deadline=150.0)
        report = run_chaos(config, Path(self.mktemp()), db, redis, self.addCleanup)
        if not report.ok:
            self.fail("delivery broke:\n" + report.explain())
        if report.problems:
            print(report.explain())  # warnings, in the test's log
        # The faults were real (messages were stored while Redis or the
        # instance was down) and every client converged after each; clients
        # resumed, and the small max_frame made the server page the replay.
        summary = report.summary()
        self.assertEqual([f.converged_s is not None for f in report.faults], [True] * 4, summary)
        for fault in report.faults:
            if not fault.name.startswith("postgres"):
                self.assertGreater(fault.stored_during, 0, summary)
        self.assertGreaterEqual(report.resumes, 5, summary)
        self.assertGreaterEqual(report.most_pages, 3, summary)
        self.assertGreater(sum(report.stored.values()), 300, summary)
