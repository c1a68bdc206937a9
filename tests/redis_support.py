"""The Redis the integration tests use, and how they find out whether it is
there: ``PARKCHAT_TEST_REDIS`` (default ``redis://127.0.0.1:6379/0``).
Without a reachable Redis the tests that need one skip, except under
``CI=true``, where they fail."""

from __future__ import annotations

import os
import socket
from urllib.parse import urlsplit

from twisted.trial.unittest import SkipTest

from tests.e2e_support import in_ci

REDIS_URL = os.environ.get("PARKCHAT_TEST_REDIS", "redis://127.0.0.1:6379/0")
_REDIS = urlsplit(REDIS_URL)
REDIS_HOST = _REDIS.hostname or "127.0.0.1"
REDIS_PORT = _REDIS.port or 6379


def redis_reachable() -> bool:
    """Whether a Redis answers PING at ``REDIS_URL`` (one short blocking try)."""
    try:
        with socket.create_connection((REDIS_HOST, REDIS_PORT), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith((b"+PONG", b"-NOAUTH"))
    except OSError:
        return False


def require_redis() -> None:
    """Skip (or, under CI, fail) when no Redis answers."""
    if redis_reachable():
        return
    message = (
        f"no Redis at {REDIS_HOST}:{REDIS_PORT} (set PARKCHAT_TEST_REDIS, or start one: "
        "redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '' --appendonly no)"
    )
    if in_ci():
        raise AssertionError(message + "; CI must run the Redis tests")
    raise SkipTest(message)
