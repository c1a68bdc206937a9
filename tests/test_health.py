"""/health (liveness) and /health/ready (readiness: database, bus)."""

from __future__ import annotations

import json
from typing import Any

from treq.testing import StubTreq
from twisted.internet.defer import Deferred, fail
from twisted.trial.unittest import TestCase

from parkchat.errors import StorageFailed
from tests.helpers import FakeParticipant, make_service, site_for


class HealthTests(TestCase):
    def setUp(self) -> None:
        self.service, self.store, self.clock = make_service()
        self.addCleanup(self.service.stopService)
        site = site_for(self.service, access_log=False)
        self.stub: Any = StubTreq(site.resource)

    async def get(self, path: str) -> tuple[int, bytes]:
        response = await self.stub.get("http://x" + path)
        return response.code, await response.content()

    async def test_liveness_unchanged(self) -> None:
        """GET /health stays 200 "OK" in plain text (the seed contract)."""
        self.assertEqual(await self.get("/health"), (200, b"OK"))

    async def test_ready(self) -> None:
        """/health/ready is 200 JSON when the database answers."""
        code, body = await self.get("/health/ready")
        self.assertEqual(code, 200)
        self.assertEqual(json.loads(body), {"status": "ready", "database": "ok", "bus": "local"})

    async def test_database_error(self) -> None:
        """A failing ping is 503 with a reason naming the error class only
        (details go to the log)."""
        self.store.ping = lambda: fail(OSError("unable to open /secret/path"))
        code, body = await self.get("/health/ready")
        self.assertEqual(code, 503)
        report = json.loads(body)
        self.assertEqual(report["error"], "not_ready")
        self.assertEqual(report["message"], "database check failed (OSError)")
        self.assertNotIn("/secret/path", body.decode())

    def test_database_timeout(self) -> None:
        """A database that does not answer within the timeout is 503."""
        self.store.ping = lambda: Deferred()
        d = self.stub.get("http://x/health/ready")
        self.assertNoResult(d)
        self.clock.advance(5)
        self.stub.flush()
        response = self.successResultOf(d)
        self.assertEqual(response.code, 503)
        report = json.loads(self.successResultOf(response.content()))
        self.assertIn("did not answer within 5 s", report["message"])

    async def test_bus_down_is_degraded_not_unready(self) -> None:
        """With a shared bus that is not live the instance still serves its
        own members: 200 ``degraded`` with the reason, never 503 (a Redis
        blip must not take every instance out of its load balancer)."""
        self.service.bus.live = False  # type: ignore[attr-defined]
        code, body = await self.get("/health/ready")
        self.assertEqual(code, 200)
        report = json.loads(body)
        self.assertEqual((report["status"], report["bus"]), ("degraded", "down"))
        self.assertIn("Redis", report["reason"])

    async def test_bus_live(self) -> None:
        """A live shared bus is ``ok``."""
        self.service.bus.live = True  # type: ignore[attr-defined]
        code, body = await self.get("/health/ready")
        self.assertEqual((code, json.loads(body)["bus"]), (200, "ok"))

    async def test_no_write_transaction(self) -> None:
        """A database that answers but refuses to start a write transaction
        (locked by another process, read-only) is not ready: 503."""
        self.store.check_writable = lambda: fail(OSError("database is locked"))
        code, body = await self.get("/health/ready")
        self.assertEqual(code, 503)
        self.assertEqual(json.loads(body)["message"], "database cannot start a write (OSError)")

    async def test_failing_commits_then_recovered(self) -> None:
        """While the last batch of messages failed to commit the instance
        is not ready; the next batch that commits makes it ready again."""
        alice = FakeParticipant("alice")
        self.service.connect(alice)
        self.service.join(alice, "lobby")
        self.store.fail_writes = OSError("disk full")
        failed = self.service.post(alice, "lobby", "lost")
        self.clock.advance(0)
        self.failureResultOf(failed, StorageFailed)
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)
        code, body = await self.get("/health/ready")
        self.assertEqual(code, 503)
        self.assertEqual(json.loads(body)["message"], "the last messages could not be stored")
        self.store.fail_writes = None
        stored = self.service.post(alice, "lobby", "kept")
        self.clock.advance(0)
        self.successResultOf(stored)
        code, _ = await self.get("/health/ready")
        self.assertEqual(code, 200)

    async def test_unknown_subpath(self) -> None:
        """Other paths below /health are 404."""
        code, _ = await self.get("/health/nope")
        self.assertEqual(code, 404)
