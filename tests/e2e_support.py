"""Run a real ``twistd -n parkchat`` for end-to-end tests, and talk to it.

``ParkchatProcess`` starts the server as a subprocess on free loopback ports
(HTTP and, optionally, the plain-TCP line protocol), waits, with a deadline,
until ``GET /health`` answers, and stops it again (SIGTERM, then SIGKILL if it
will not go). It can be restarted on the same ports and database, which is
what persistence tests need. ``LineSocket`` is a blocking TCP client that
behaves like ``nc``: the server is another process, so blocking with a
timeout is fine.

Nothing here depends on trial; a test registers ``server.stop`` (and each
client's ``close``) with ``addCleanup``.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

LOOPBACK = "127.0.0.1"
#: twistd exits 0, or re-raises SIGTERM after a clean shutdown.
CLEAN_EXITS = (0, -signal.SIGTERM)


def in_ci() -> bool:
    """Whether this run is CI's (``CI=true``): there a test that would skip
    for want of a service (PostgreSQL, Redis, Chromium) fails instead."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def free_port() -> int:
    """A TCP port on the loopback interface that nobody listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def twistd_path() -> str:
    """The ``twistd`` of the Python running the tests."""
    candidate = Path(sys.executable).parent / "twistd"
    if not candidate.exists():
        raise RuntimeError(f"no twistd next to {sys.executable}")
    return str(candidate)


def basic_auth(nickname: str, password: str) -> str:
    """An HTTP ``Authorization`` header value for Basic auth."""
    return "Basic " + base64.b64encode(f"{nickname}:{password}".encode()).decode("ascii")


class ServerFailed(RuntimeError):
    """The server process did not start or stop as expected."""


class ParkchatProcess:
    """One ``twistd -n parkchat`` process on loopback ports.

    ``workdir`` holds the database, the log and nothing else; ``tcp`` adds a
    ``--tcp`` line-protocol listener (behind the PROXY protocol with
    ``tcp_proxy_protocol``), ``irc`` an ``--irc`` listener; ``args`` are further parkchat options;
    ``env`` adds environment variables (``PARKCHAT_*`` settings among them) to
    the caller's environment, from which ``PARKCHAT_*`` is otherwise removed.
    Ports are chosen once, so a ``restart`` serves the same URLs and data.
    """

    def __init__(
        self,
        workdir: str | Path,
        *,
        tcp: bool = True,
        db: str | None = None,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        bcrypt_rounds: int = 4,
        start_timeout: float = 30.0,
        stop_timeout: float = 15.0,
        tcp_proxy_protocol: bool = False,
        irc: bool = False,
    ) -> None:
        self.workdir = Path(workdir).resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.db = db if db is not None else str(self.workdir / "chat.db")
        self.log_path = self.workdir / "twistd.log"
        #: What twistd prints before its log is open (usage errors).
        self.output_path = self.workdir / "twistd.out"
        self.http_port = free_port()
        self.tcp_port: int | None = free_port() if tcp else None
        self.irc_port: int | None = free_port() if irc else None
        self.args = list(args)
        self.env = dict(env) if env is not None else {}
        self.bcrypt_rounds = bcrypt_rounds
        self.tcp_proxy_protocol = tcp_proxy_protocol
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self.returncode: int | None = None
        #: Once it has served, its ports are its identity (``restart``).
        self._served = False

    # -- addresses -------------------------------------------------------------

    def url(self, path: str = "/") -> str:
        """An ``http://`` URL of this server."""
        return f"http://{LOOPBACK}:{self.http_port}{path}"

    def ws_url(self, path: str) -> str:
        """A ``ws://`` URL of this server (``/ws/ROOM``, ``/mychat``)."""
        return f"ws://{LOOPBACK}:{self.http_port}{path}"

    @property
    def tcp_address(self) -> tuple[str, int]:
        if self.tcp_port is None:
            raise ServerFailed("this server has no --tcp listener")
        return (LOOPBACK, self.tcp_port)

    @property
    def irc_address(self) -> tuple[str, int]:
        if self.irc_port is None:
            raise ServerFailed("this server has no --irc listener")
        return (LOOPBACK, self.irc_port)

    def argv(self) -> list[str]:
        argv = [
            twistd_path(),
            "--nodaemon",
            "--pidfile=",
            f"--logfile={self.log_path}",
            "parkchat",
            "--port",
            f"tcp:{self.http_port}:interface={LOOPBACK}",
            "--db",
            self.db,
            "--bcrypt-rounds",
            str(self.bcrypt_rounds),
        ]
        if self.tcp_port is not None:
            prefix = "haproxy:" if self.tcp_proxy_protocol else ""
            argv += ["--tcp", f"{prefix}tcp:{self.tcp_port}:interface={LOOPBACK}"]
        if self.irc_port is not None:
            argv += ["--irc", f"tcp:{self.irc_port}:interface={LOOPBACK}"]
        return argv + self.args

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> None:
        """Start the server and return once ``/health`` answers 200 and the
        line listener (if any) accepts connections.

        ``free_port`` cannot reserve a port: between choosing one and twistd
        binding it, another process on a busy machine may take it. On a
        first start that fails for that reason, fresh ports are chosen and
        it starts again (a few times at most); a restart keeps its ports."""
        for attempt in range(4):
            try:
                self._start()
                self._served = True
                return
            except ServerFailed as e:
                if self._served or attempt == 3 or "Address already in use" not in str(e):
                    raise
            self.http_port = free_port()
            self.tcp_port = free_port() if self.tcp_port is not None else None
            self.irc_port = free_port() if self.irc_port is not None else None

    def _start(self) -> None:
        if self.process is not None:
            raise ServerFailed("already started")
        # Settings from the caller's environment must not change the server.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PARKCHAT_")}
        # Tests register many accounts from 127.0.0.1: the registration
        # throttle is off unless a test sets it (an option wins over these).
        env.update(
            {"PARKCHAT_REGISTRATIONS_PER_ADDRESS": "0", "PARKCHAT_REGISTRATIONS_PER_MINUTE": "0"}
        )
        env.update(self.env)
        with self.output_path.open("ab") as output:
            self.process = subprocess.Popen(
                self.argv(),
                cwd=self.workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        self.returncode = None
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self.process.poll() is not None:
                code = self.process.returncode
                self.process = None
                raise ServerFailed(f"twistd exited with {code} at start:\n{self.log_tail()}")
            if self._healthy() and self._tcp_accepts():
                return
            if time.monotonic() > deadline:
                self.stop()
                raise ServerFailed(f"server not up in {self.start_timeout} s:\n{self.log_tail()}")
            time.sleep(0.05)

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.url("/health"), timeout=1) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def _tcp_accepts(self) -> bool:
        if self.tcp_port is None:
            return True
        try:
            with socket.create_connection(self.tcp_address, timeout=1):
                return True
        except OSError:
            return False

    def stop(self) -> int | None:
        """SIGTERM, wait (bounded), SIGKILL if needed; return the exit code.
        Safe to call when not running."""
        process, self.process = self.process, None
        if process is None:
            return self.returncode
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(self.stop_timeout)
        self.returncode = process.returncode
        return self.returncode

    def kill(self) -> None:
        """SIGKILL: no goodbye, no flush."""
        process, self.process = self.process, None
        if process is not None:
            process.kill()
            self.returncode = process.wait(self.stop_timeout)

    def restart(self) -> None:
        """Stop cleanly and start again on the same ports and database."""
        code = self.stop()
        if code not in CLEAN_EXITS:
            raise ServerFailed(f"twistd exited with {code} on SIGTERM:\n{self.log_tail()}")
        self.start()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        """The end of the server's output and log, for failure messages."""
        parts = []
        for path in (self.output_path, self.log_path):
            try:
                text = path.read_text(errors="replace")
            except OSError:
                continue
            parts.append(f"--- {path.name}\n" + "\n".join(text.splitlines()[-lines:]))
        return "\n".join(parts) or "(no output)"

    # -- HTTP ------------------------------------------------------------------

    def request(
        self,
        path: str,
        method: str = "GET",
        body: Any = None,
        auth: tuple[str, str] | None = None,
        timeout: float = 10.0,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, bytes]:
        """An HTTP request; ``(status, body)`` whatever the status."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url(path), data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if auth is not None:
            request.add_header("Authorization", basic_auth(*auth))
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def register(self, nickname: str, password: str) -> None:
        status, body = self.request(
            "/register", "POST", {"nickname": nickname, "password": password}
        )
        if status != 201:
            raise ServerFailed(f"register {nickname}: {status} {body!r}")

    def history(self, room: str, auth: tuple[str, str]) -> list[dict[str, Any]]:
        status, body = self.request(f"/history/{room}", auth=auth)
        if status != 200:
            raise ServerFailed(f"history {room}: {status} {body!r}")
        result: list[dict[str, Any]] = json.loads(body)
        return result


class LineSocket:
    """A blocking line-protocol client, like ``nc``: it sends what it is
    given and keeps every byte it receives (``transcript`` has both, in
    order, for docs)."""

    def __init__(self, address: tuple[str, int], timeout: float = 5.0) -> None:
        self.timeout = timeout
        self.sock = socket.create_connection(address, timeout=timeout)
        self.buffer = b""
        self.received = b""
        self.transcript: list[tuple[str, bytes]] = []

    def send(self, data: bytes) -> None:
        self.transcript.append(("sent", data))
        self.sock.sendall(data)

    def send_line(self, text: str) -> None:
        self.send(text.encode("utf-8") + b"\n")

    def _fill(self, deadline: float) -> bytes:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("nothing received in time")
        self.sock.settimeout(remaining)
        data = self.sock.recv(65536)
        if data:
            self.transcript.append(("received", data))
            self.received += data
            self.buffer += data
        return data

    def read_line(self, timeout: float | None = None) -> str:
        """The next line from the server, without its newline."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        while b"\n" not in self.buffer:
            if not self._fill(deadline):
                raise ConnectionError(f"closed by the server; unterminated: {self.buffer!r}")
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.decode("utf-8")

    def read_lines(self, count: int, timeout: float | None = None) -> list[str]:
        return [self.read_line(timeout) for _ in range(count)]

    def read_until_closed(self, timeout: float | None = None) -> bytes:
        """Everything up to the server's close; TimeoutError if it does not
        close in time."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        while self._fill(deadline):
            pass
        rest, self.buffer = self.buffer, b""
        return rest

    def assert_quiet(self, seconds: float = 0.3) -> None:
        """Raise if anything arrives within ``seconds``."""
        try:
            data = self._fill(time.monotonic() + seconds)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected from the server: {data!r}")

    def close(self) -> None:
        self.sock.close()
