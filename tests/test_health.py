"""/health (liveness) and /health/ready (readiness: database, bus)."""

from __future__ import annotations

import json
from typing import Any

from treq.testing import StubTreq
from twisted.internet.defer import Deferred, fail
from twisted.trial.unittest import TestCase

from tests.helpers import make_service, site_for


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

    async def test_bus_down(self) -> None:
        """With a shared bus that is not live, not ready."""
        self.service.bus.live = False  # type: ignore[attr-defined]
        code, body = await self.get("/health/ready")
        self.assertEqual(code, 503)
        self.assertIn("Redis", json.loads(body)["message"])

    async def test_unknown_subpath(self) -> None:
        """Other paths below /health are 404."""
        code, _ = await self.get("/health/nope")
        self.assertEqual(code, 404)
