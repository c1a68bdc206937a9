"""``parkchat-workers``: several ``twistd parkchat`` processes behind one port.

One parkchat process runs one reactor on one core. To use more cores behind
the same address, this launcher binds the listening socket once and starts
``--workers`` children that each adopt it the way systemd socket activation
passes a socket (``LISTEN_FDS=1``, ``LISTEN_FDNAMES=http``, ``LISTEN_PID`` =
the child's own pid, the socket as file descriptor 3), served with
``--port systemd:domain=INET:index=0``. The kernel spreads new connections
over the processes accepting on the shared socket; the Redis bus (``--redis``)
makes the instances one chat server (rooms, direct messages, bans), so more
than one worker requires it.

    parkchat-workers --workers 2 --port 8080 -- --redis redis://127.0.0.1:6379/0 --db chat.db

twistd's own options (``--logfile``, ``--logger``, ``--umask``...) go before
``parkchat`` on each worker's command line: give each as
``--twistd-option=--logfile=/var/log/parkchat/worker{worker}.log``
(``{worker}`` becomes the worker's number: one log file per worker).

The first worker must answer ``GET /health`` before the others start (it
creates or upgrades the schema alone). The launcher supervises nothing: it
forwards SIGTERM and SIGINT to the children, waits for them (bounded, then
SIGKILL), and when a child exits on its own it stops the others and exits
with that child's status, leaving restarts to systemd (or whatever started
it). Children die with it (``PR_SET_PDEATHSIG``) if the launcher itself is
killed.

Standard library only: it does not import Twisted.
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

#: Where systemd puts the first passed socket (``SD_LISTEN_FDS_START``).
LISTEN_FDS_START = 3
#: The name the children see in ``LISTEN_FDNAMES`` (Twisted 26 requires one).
FD_NAME = "http"
#: twistd's own options: after ``--`` they would reach ``parkchat``, which
#: does not know them (they belong in ``--twistd-option``).
TWISTD_OPTIONS = (
    "--logfile", "-l", "--logger", "--pidfile", "--nodaemon", "-n", "--umask",
    "--reactor", "-r", "--syslog", "--prefix", "--uid", "-u", "--gid", "-g",
    "--euid", "--chroot", "--rundir", "-d", "--profile", "-p", "--profiler",
    "--savestats", "--spew", "--debug", "-b", "--originalname", "--no_save", "-o",
)  # fmt: skip
#: Listeners each worker would bind again: only the HTTP port is shared.
OWN_LISTENERS = ("--tcp", "--garinchat", "--golang-chat", "--lildengzi")
#: Child exit statuses that mean "stopped as asked" (twistd re-raises SIGTERM).
CLEAN_EXITS = (0, -signal.SIGTERM, -signal.SIGINT)
POLL_INTERVAL = 0.2

#: Runs in each child before twistd: puts the inherited socket at fd 3, sets
#: LISTEN_PID to its own pid (kept by exec), asks to be killed with the
#: launcher, then execs twistd.
TRAMPOLINE = """\
import ctypes, os, signal, sys
fd, parent = int(sys.argv[1]), int(sys.argv[2])
if fd != 3:
    os.dup2(fd, 3)
    os.close(fd)
os.set_inheritable(3, True)
try:
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
except (OSError, AttributeError):
    pass
if os.getppid() != parent:
    sys.exit("parkchat-workers: the launcher is gone")
os.environ["LISTEN_PID"] = str(os.getpid())
os.execv(sys.argv[3], sys.argv[3:])
"""


class WorkersError(Exception):
    """A usage or start-up error, printed as one line."""


class WorkerExited(Exception):
    """A worker exited on its own."""

    def __init__(self, pid: int, code: int) -> None:
        super().__init__(pid, code)
        self.pid = pid
        self.code = code


def log(message: str) -> None:
    print(f"parkchat-workers: {message}", file=sys.stderr, flush=True)


def default_twistd() -> str:
    """The ``twistd`` next to this Python, else the one on ``PATH``."""
    candidate = Path(sys.executable).with_name("twistd")
    if candidate.exists():
        return str(candidate)
    return shutil.which("twistd") or "twistd"


def _option_value(extra: Sequence[str], name: str) -> str | None:
    """The last value of ``--name VALUE`` or ``--name=VALUE`` in ``extra``."""
    value = None
    for i, arg in enumerate(extra):
        if arg == name and i + 1 < len(extra):
            value = extra[i + 1]
        elif arg.startswith(name + "="):
            value = arg[len(name) + 1 :]
    return value


def redis_configured(extra: Sequence[str], environ: Mapping[str, str]) -> bool:
    """Whether the children get a Redis URL: ``--redis`` (or ``--redis-file``)
    among the parkchat options, ``PARKCHAT_REDIS`` (or ``PARKCHAT_REDIS_FILE``),
    or ``redis`` (``redis_file``) in the TOML file named by ``--config`` /
    ``PARKCHAT_CONFIG`` (the same precedence parkchat uses)."""
    value = _option_value(extra, "--redis")
    if value is not None:
        return bool(value)
    if _option_value(extra, "--redis-file"):
        return True
    if "PARKCHAT_REDIS" in environ:
        return bool(environ["PARKCHAT_REDIS"])
    if environ.get("PARKCHAT_REDIS_FILE"):
        return True
    config = _option_value(extra, "--config") or environ.get("PARKCHAT_CONFIG")
    if config:
        try:
            with open(config, "rb") as f:
                data = tomllib.load(f)
            return bool(data.get("redis") or data.get("redis_file"))
        except (OSError, tomllib.TOMLDecodeError):
            return False  # parkchat itself will report the bad file
    return False


@dataclass
class Config:
    workers: int
    port: int
    interface: str
    backlog: int
    twistd: str
    stop_timeout: float
    start_timeout: float = 60.0
    extra: list[str] = field(default_factory=list)
    #: twistd's own options, before ``parkchat``; ``{worker}`` is the number.
    twistd_options: list[str] = field(default_factory=list)

    @property
    def family(self) -> socket.AddressFamily:
        return socket.AF_INET6 if ":" in self.interface else socket.AF_INET

    @property
    def domain(self) -> str:
        return "INET6" if self.family == socket.AF_INET6 else "INET"

    @property
    def health_url(self) -> str:
        """``GET /health`` on the shared socket, from this machine."""
        host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(
            self.interface, self.interface
        )
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}/health"


def parse_args(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> Config:
    """Parse the launcher's options; what follows ``--`` goes to every child."""
    env = os.environ if environ is None else environ
    argv = list(argv)
    if "--" in argv:
        split = argv.index("--")
        own, extra = argv[:split], argv[split + 1 :]
    else:
        own, extra = argv, []
    parser = argparse.ArgumentParser(
        prog="parkchat-workers",
        description="Run several twistd parkchat processes sharing one listening socket "
        "(one per core; the Redis bus joins them). Options after '--' are passed to "
        "every 'twistd parkchat'.",
        epilog="example: parkchat-workers --workers 2 --port 8080 -- "
        "--redis redis://127.0.0.1:6379/0 --db /var/lib/parkchat/chat.db",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="number of parkchat processes [default: the number of CPUs]",
    )
    parser.add_argument("--port", type=int, default=8080, help="TCP port [default: 8080]")
    parser.add_argument(
        "--interface",
        default="0.0.0.0",
        help="address to bind, e.g. 127.0.0.1 or :: [default: 0.0.0.0]",
    )
    parser.add_argument("--backlog", type=int, default=1024, help="listen backlog [1024]")
    parser.add_argument("--twistd", default=None, help="twistd to run [next to this Python]")
    parser.add_argument(
        "--twistd-option",
        action="append",
        default=[],
        metavar="OPTION",
        help="an option for twistd itself, given with '=': "
        "--twistd-option=--logfile=/var/log/parkchat/worker{worker}.log "
        "({worker} becomes each worker's number); repeatable",
    )
    parser.add_argument(
        "--start-timeout",
        type=float,
        default=60.0,
        help="seconds for the first worker to answer /health before the others start [60]",
    )
    parser.add_argument(
        "--stop-timeout",
        type=float,
        default=30.0,
        help="seconds to wait for the workers after SIGTERM before SIGKILL [30]",
    )
    ns = parser.parse_args(own)
    if ns.workers < 1:
        parser.error("--workers must be at least 1")
    if not 0 <= ns.port <= 65535:
        parser.error("--port must be 0-65535")
    if any(a == "--port" or a.startswith("--port=") for a in extra):
        parser.error(
            "give the port to parkchat-workers (--port), not to the workers: "
            "they serve the shared socket"
        )
    for arg in extra:
        name = arg.partition("=")[0]
        if name in TWISTD_OPTIONS:
            parser.error(
                f"{name} is an option of twistd, not of parkchat: "
                f"give it as --twistd-option={arg if '=' in arg else arg + '=VALUE'}"
            )
    for listener in OWN_LISTENERS:
        if ns.workers > 1 and _option_value(extra, listener) is not None:
            parser.error(
                f"{listener} cannot be shared by several workers (its port would be bound twice)"
            )
    if ns.workers > 1 and not redis_configured(extra, env):
        parser.error(
            f"--workers {ns.workers} needs the Redis bus so the instances share rooms: "
            "pass '-- --redis redis://HOST:6379/0' or set PARKCHAT_REDIS"
        )
    return Config(
        workers=ns.workers,
        port=ns.port,
        interface=ns.interface,
        backlog=ns.backlog,
        twistd=ns.twistd or default_twistd(),
        stop_timeout=ns.stop_timeout,
        start_timeout=ns.start_timeout,
        extra=extra,
        twistd_options=ns.twistd_option,
    )


def bind_socket(config: Config) -> socket.socket:
    """The shared listening socket (SO_REUSEADDR), inheritable."""
    sock = socket.socket(config.family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((config.interface, config.port))
        sock.listen(config.backlog)
    except OSError as e:
        sock.close()
        raise WorkersError(f"cannot listen on {config.interface}:{config.port}: {e}") from None
    sock.set_inheritable(True)
    return sock


#: Each worker's number (1..N), for what must differ between workers (the
#: access-log file, see parkchat.tap.access_log_path).
WORKER_ENV = "PARKCHAT_WORKER"


def child_env(environ: Mapping[str, str], number: int) -> dict[str, str]:
    """Worker ``number``'s environment: the caller's plus the systemd
    socket-passing variables (``LISTEN_PID`` is set by the trampoline to the
    worker's pid) and its number."""
    env = {k: v for k, v in environ.items() if k not in ("LISTEN_PID", "LISTEN_FDS")}
    env["LISTEN_FDS"] = "1"
    env["LISTEN_FDNAMES"] = FD_NAME
    env[WORKER_ENV] = str(number)
    return env


def child_argv(config: Config, fd: int, parent_pid: int, number: int = 1) -> list[str]:
    """The command line of worker ``number``: the trampoline, then twistd
    with its own options, then parkchat's."""
    return [
        sys.executable,
        "-c",
        TRAMPOLINE,
        str(fd),
        str(parent_pid),
        config.twistd,
        "--nodaemon",
        "--pidfile=",
        *(option.replace("{worker}", str(number)) for option in config.twistd_options),
        "parkchat",
        "--port",
        f"systemd:domain={config.domain}:index=0",
        *config.extra,
    ]


def _status(code: int) -> str:
    return f"killed by signal {-code}" if code < 0 else f"exit status {code}"


def _exit_code(code: int) -> int:
    if code < 0:
        return 128 - code
    return code or 1


class Launcher:
    """Starts the workers, forwards signals, waits."""

    def __init__(self, config: Config, environ: Mapping[str, str] | None = None) -> None:
        self.config = config
        self.environ = dict(os.environ if environ is None else environ)
        self.children: list[subprocess.Popen[bytes]] = []
        self.stop_signal: int | None = None

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.stop_signal is None:
            self.stop_signal = signum
            log(f"got {signal.Signals(signum).name}; stopping {len(self.children)} worker(s)")
            self._signal_children(signum)

    def _signal_children(self, signum: int) -> None:
        for child in self.children:
            if child.poll() is None:
                try:
                    child.send_signal(signum)
                except ProcessLookupError:
                    pass

    def _spawn(self, sock: socket.socket, env: Mapping[str, str]) -> None:
        child = subprocess.Popen(
            child_argv(self.config, sock.fileno(), os.getpid(), len(self.children) + 1),
            env=env,
            stdin=subprocess.DEVNULL,
            pass_fds=(sock.fileno(),),
            start_new_session=True,  # signals come from here, once
        )
        self.children.append(child)
        log(f"worker {len(self.children)}/{self.config.workers} started: pid {child.pid}")

    def _wait_first_ready(self) -> None:
        """Until the only worker so far answers ``GET /health`` on the shared
        socket: it has created or upgraded the schema, so the others just open
        the database (instances that start together on a fresh database would
        race to create it), and a configuration error shows once."""
        first = self.children[0]
        deadline = time.monotonic() + self.config.start_timeout
        while self.stop_signal is None:
            code = first.poll()
            if code is not None:
                raise WorkerExited(first.pid, code)
            try:
                with urllib.request.urlopen(self.config.health_url, timeout=2) as response:
                    if response.status == 200:
                        return
            except (OSError, http.client.HTTPException):
                pass
            if time.monotonic() > deadline:
                raise WorkersError(
                    f"the first worker did not answer {self.config.health_url} "
                    f"within {self.config.start_timeout:g} s"
                )
            time.sleep(POLL_INTERVAL)

    def start(self) -> None:
        """Bind, start one worker, wait until it serves, start the others."""
        sock = bind_socket(self.config)
        try:
            self._spawn(sock, child_env(self.environ, 1))
            if self.config.workers > 1:
                self._wait_first_ready()
            while len(self.children) < self.config.workers and self.stop_signal is None:
                self._spawn(sock, child_env(self.environ, len(self.children) + 1))
        finally:
            sock.close()  # the workers hold it now
        log(f"{self.config.workers} worker(s) sharing {self.config.interface}:{self.config.port}")

    def wait(self) -> int:
        """Until a signal or a worker's own exit; then stop all (bounded)."""
        failure: tuple[int, int] | None = None
        while self.stop_signal is None:
            for child in self.children:
                code = child.poll()
                if code is not None:
                    failure = (child.pid, code)
                    break
            if failure is not None:
                break
            time.sleep(POLL_INTERVAL)
        if failure is not None:
            log(f"worker pid {failure[0]} exited ({_status(failure[1])}); stopping the others")
            self._signal_children(signal.SIGTERM)
        codes = self._reap()
        if failure is not None:
            return _exit_code(failure[1])
        bad = [(pid, code) for pid, code in codes if code not in CLEAN_EXITS]
        for pid, code in bad:
            log(f"worker pid {pid} stopped with {_status(code)}")
        return _exit_code(bad[0][1]) if bad else 0

    def _reap(self) -> list[tuple[int, int]]:
        deadline = time.monotonic() + self.config.stop_timeout
        for child in self.children:
            try:
                child.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for child in self.children:
            if child.poll() is None:
                log(f"worker pid {child.pid} still running; SIGKILL")
                child.kill()
                try:
                    child.wait(5.0)
                except subprocess.TimeoutExpired:
                    log(f"worker pid {child.pid} did not die")
        return [(c.pid, c.returncode if c.returncode is not None else -9) for c in self.children]

    def run(self) -> int:
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            try:
                self.start()
            except WorkerExited as e:
                log(f"worker pid {e.pid} exited ({_status(e.code)}) while starting")
                self._signal_children(signal.SIGTERM)
                self._reap()
                return _exit_code(e.code)
            except BaseException:
                self._signal_children(signal.SIGTERM)
                self._reap()
                raise
            return self.wait()
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return Launcher(config).run()
    except WorkersError as e:
        log(str(e))
        return 1


if __name__ == "__main__":
    sys.exit(main())
