"""The Redis the integration tests use, and how they find out whether it is
there: ``PARKCHAT_TEST_REDIS`` (default ``redis://127.0.0.1:6379/0``).
Without a reachable Redis the tests that need one skip, except under
``CI=true``, where they fail."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from urllib.parse import urlsplit

from twisted.trial.unittest import SkipTest

from tests.e2e_support import free_port, in_ci

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


class PrivateRedis:
    """A ``redis-server`` of the test's own, on a free loopback port, in a
    directory of the test's: the only kind of Redis a test may stop, kill
    or restart (the shared one at ``REDIS_URL`` may serve other runs).

    ``start()`` again after ``stop()`` or ``kill()`` reuses the same port,
    as a restarted server would. Skips (fails under CI) without
    ``redis-server`` on the PATH.
    """

    def __init__(self, directory: str) -> None:
        self.server = shutil.which("redis-server")
        if self.server is None:
            message = "redis-server is not installed (apt-get install redis-server)"
            if in_ci():
                raise AssertionError(message + "; CI must run the Redis restart tests")
            raise SkipTest(message)
        self.directory = os.path.abspath(directory)
        os.makedirs(self.directory, exist_ok=True)
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def reachable(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def start(self) -> None:
        """Start the server (in the foreground of a child process) and wait
        for PING; a no-op while it runs."""
        if self.process is not None and self.process.poll() is None:
            return
        assert self.server is not None
        log = open(os.path.join(self.directory, "redis.log"), "ab")
        try:
            self.process = subprocess.Popen(
                [
                    self.server,
                    "--bind",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    self.directory,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        finally:
            log.close()
        deadline = time.monotonic() + 15
        while not self.reachable():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"redis-server on port {self.port} did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM, and wait until it has exited (a clean shutdown)."""
        self._end(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL: Redis vanishes mid-flight, as in a crash."""
        self._end(signal.SIGKILL)

    def _end(self, how: signal.Signals) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(how)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
