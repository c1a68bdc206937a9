#!/usr/bin/env python3
"""A fixed workload against one parkchat server, measured in ways that do not
depend on how busy the machine is (issue 18).

    python bench/profile_ingest.py ingest                  # server CPU per message
    python bench/profile_ingest.py ingest --callgrind      # + instructions per message
    python bench/profile_ingest.py fanout --py-spy out.txt # + a py-spy profile (collapsed)
    python bench/profile_ingest.py history --access-log-file   # history, log to a file

It starts ``twistd -n parkchat`` on 127.0.0.1 (SQLite in a temporary
directory, bcrypt cost 4, the three per-user/IP limits off, access log to the
server log on standard output unless ``--access-log-file``), registers the
users, connects every client, warms up, and then runs one workload whose size
does not depend on time:

* ``ingest``: ``--rooms`` rooms of 2 members on ``/ws/{room}``; every member
  posts ``--messages`` messages, at most ``--window`` of its own unanswered at
  a time (a message is answered by its echo); done when every member has
  seen every message of its room. Persisted messages: rooms x 2 x messages.
* ``fanout``: one room of ``--receivers`` members plus ``--senders`` senders,
  each posting ``--messages`` messages with ``--window`` in flight; done when
  every member has every message. Deliveries: members x messages.
* ``history``: one room filled with 50 messages, then ``--clients``
  keep-alive connections each doing ``--requests`` ``GET /history/{room}``
  with Basic auth (the credential cache makes all but the first cheap).

Only the server is measured, only over the workload: its CPU time (user +
system, from /proc) and, with ``--callgrind``, the instructions it executed
(``valgrind --tool=callgrind``, counters zeroed after the warm-up and dumped
at the end with ``callgrind_control``; the server runs 50-100x slower, so use
small workloads). ``--py-spy FILE`` records the server with py-spy over the
workload (collapsed stacks; ``--py-spy-native`` adds C frames). Instruction
counts are the figures to compare step by step on a shared machine; CPU time
moves with the load (cache, frequency), and the group-commit batch sizes
depend on timing, so repeat a run and compare medians.

Prints one JSON object. Standard library plus ``websockets`` (a test
dependency of parkchat).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import websockets

LIMITS_OFF = {
    "PARKCHAT_RATE_LIMIT": "0",
    "PARKCHAT_MAX_CONNECTIONS_PER_USER": "0",
    "PARKCHAT_MAX_CONNECTIONS_PER_IP": "0",
}
PASSWORD = "profile-password-1"
USERS = 20
MARK = "pf|"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def basic(user: int) -> str:
    token = base64.b64encode(f"u{user}:{PASSWORD}".encode()).decode()
    return f"Basic {token}"


def cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` and its waited-for children, seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(fields[i]) for i in (11, 12))  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


class Server:
    """``twistd -n parkchat`` (optionally under callgrind), stopped by PID."""

    def __init__(self, args: argparse.Namespace, tmp: str) -> None:
        self.port = free_port()
        self.tmp = tmp
        twistd = shutil.which("twistd", path=os.path.dirname(sys.executable)) or "twistd"
        command = [
            sys.executable,
            twistd,
            "-n",
            "--pidfile=",
            "parkchat",
            "--port",
            f"tcp:{self.port}:interface=127.0.0.1",
            "--db",
            os.path.join(tmp, "chat.db"),
            "--bcrypt-rounds",
            "4",
        ]
        if args.access_log_file:
            command += ["--access-log-file", os.path.join(tmp, "access.log")]
        command += args.server_arg
        self.callgrind = args.callgrind
        if args.callgrind:
            command = [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={tmp}/callgrind.out.%p",
                *command,
            ]
        env = dict(os.environ, **LIMITS_OFF)
        for item in args.env:
            key, _, value = item.partition("=")
            env[key] = value
        self.log_path = os.path.join(tmp, "server.log")
        self.log = open(self.log_path, "wb")  # closed in stop
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT, env=env)

    @property
    def pid(self) -> int:
        return self.process.pid

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"server exited: see {self.log_path}")
            try:
                with urllib.request.urlopen(self.url("/health"), timeout=5) as r:
                    if r.status == 200:
                        return
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.5)
        raise SystemExit("server did not become healthy")

    def register(self, users: int) -> None:
        for n in range(users):
            body = json.dumps({"nickname": f"u{n}", "password": PASSWORD}).encode()
            request = urllib.request.Request(
                self.url("/register"), body, {"Content-Type": "application/json"}
            )
            with urllib.request.urlopen(request, timeout=120) as r:
                assert r.status == 201, r.status

    def zero(self) -> None:
        if self.callgrind:
            subprocess.run(
                ["callgrind_control", "--zero", str(self.pid)], check=True, capture_output=True
            )

    def instructions(self) -> int | None:
        if not self.callgrind:
            return None
        subprocess.run(
            ["callgrind_control", "--dump=workload", str(self.pid)], check=True, capture_output=True
        )
        dumps = sorted(glob.glob(f"{self.tmp}/callgrind.out.{self.pid}.*"), key=os.path.getmtime)
        for line in Path(dumps[-1]).read_text().splitlines():
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
        raise SystemExit("no totals in the callgrind dump")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(120 if self.callgrind else 30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


class Member:
    """One ``/ws/{room}`` connection that counts the marked messages it gets."""

    def __init__(self, ws: Any, tag: str) -> None:
        self.ws = ws
        self.tag = tag
        self.seen = 0
        self.own_seen = 0
        self.want = 0
        self.done = asyncio.Event()
        self.credit = asyncio.Event()

    async def read(self) -> None:
        own = f'"content":"{MARK}{self.tag}|'
        async for frame in self.ws:
            if MARK not in frame:
                continue
            self.seen += 1
            if own in frame:
                self.own_seen += 1
                self.credit.set()
            if self.seen >= self.want:
                self.done.set()

    async def post(self, count: int, window: int, filler: str) -> None:
        for n in range(count):
            while n - self.own_seen >= window:
                self.credit.clear()
                await self.credit.wait()
            await self.ws.send(json.dumps({"content": f"{MARK}{self.tag}|{n}|{filler}"}))


async def connect(server: Server, room: str, user: int, tag: str) -> Member:
    ws = await websockets.connect(
        f"ws://127.0.0.1:{server.port}/ws/{room}",
        additional_headers={"Authorization": basic(user)},
        max_size=None,
        open_timeout=300,
        ping_interval=None,
    )
    return Member(ws, tag)


async def run_rooms(
    server: Server,
    groups: list[tuple[list[Member], list[Member]]],
    messages: int,
    window: int,
    size: int,
) -> float:
    """Each group: (members, senders); every sender posts ``messages``."""
    filler = "x" * size
    readers = [asyncio.create_task(m.read()) for members, _ in groups for m in members]
    for members, senders in groups:
        for m in members:
            m.want = messages * len(senders)
    start = time.monotonic()
    await asyncio.gather(*(s.post(messages, window, filler) for _, ss in groups for s in ss))
    await asyncio.gather(*(m.done.wait() for members, _ in groups for m in members))
    wall = time.monotonic() - start
    for members, _ in groups:
        for m in members:
            await m.ws.close()
    for r in readers:
        r.cancel()
    return wall


async def warm_up(server: Server, groups: list[tuple[list[Member], list[Member]]]) -> None:
    """One message per sender, so that every code path has run once."""
    for _, senders in groups:
        for s in senders:
            await s.ws.send(json.dumps({"content": f"warm-up {s.tag}"}))
    await asyncio.sleep(1.0 if not server.callgrind else 10.0)
    for members, _ in groups:
        for m in members:
            while True:  # drain
                try:
                    await asyncio.wait_for(m.ws.recv(), 0.05)
                except TimeoutError:
                    break


async def history_client(server: Server, room: str, requests: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    request = (
        f"GET /history/{room} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {basic(0)}\r\n\r\n"
    ).encode()
    for _ in range(requests):
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        if not head.startswith(b"HTTP/1.1 200"):
            raise SystemExit(f"history answered {head[:40]!r}")
        await reader.readexactly(length)
    writer.close()


async def workload(args: argparse.Namespace, server: Server) -> dict[str, Any]:
    if args.scenario == "ingest":
        groups = []
        for r in range(args.rooms):
            a = await connect(server, f"r{r}", (2 * r) % USERS, f"r{r}a")
            b = await connect(server, f"r{r}", (2 * r + 1) % USERS, f"r{r}b")
            groups.append(([a, b], [a, b]))
        await warm_up(server, groups)
        units = args.rooms * 2 * args.messages
        unit = "messages"
    elif args.scenario == "fanout":
        members = [await connect(server, "fan", n % USERS, f"m{n}") for n in range(args.receivers)]
        senders = [await connect(server, "fan", n % USERS, f"s{n}") for n in range(args.senders)]
        groups = [(members + senders, senders)]
        await warm_up(server, groups)
        units = (args.receivers + args.senders) * args.senders * args.messages
        unit = "deliveries"
    else:
        filler = await connect(server, "hist", 0, "h")
        for n in range(50):
            await filler.ws.send(json.dumps({"content": f"history {n}"}))
        await asyncio.sleep(2 if not server.callgrind else 20)
        await filler.ws.close()
        await asyncio.gather(*(history_client(server, "hist", 2) for _ in range(args.clients)))
        units = args.clients * args.requests
        unit = "requests"

    server.zero()
    cpu0 = cpu_seconds(server.pid)
    spy = None
    if args.py_spy:
        command = [
            "py-spy",
            "record",
            "--pid",
            str(server.pid),
            "--format",
            "raw",
            "--output",
            args.py_spy,
            "--rate",
            str(args.py_spy_rate),
        ]
        if args.py_spy_native:
            command.append("--native")
        spy = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        await asyncio.sleep(1.0)
    start = time.monotonic()
    if args.scenario == "history":
        await asyncio.gather(
            *(history_client(server, "hist", args.requests) for _ in range(args.clients))
        )
        wall = time.monotonic() - start
    else:
        wall = await run_rooms(server, groups, args.messages, args.window, args.size)
    cpu = cpu_seconds(server.pid) - cpu0
    instructions = server.instructions()
    if spy is not None:
        spy.send_signal(signal.SIGINT)
        spy.wait(60)
    result: dict[str, Any] = {
        "scenario": args.scenario,
        unit: units,
        "wall_s": round(wall, 3),
        "server_cpu_s": round(cpu, 3),
        f"cpu_us_per_{unit[:-1]}": round(cpu / units * 1e6, 2),
    }
    if instructions is not None:
        result["instructions"] = instructions
        result[f"instructions_per_{unit[:-1]}"] = round(instructions / units)
    if args.py_spy:
        result["py_spy"] = shares(args.py_spy, top=12)
    return result


#: Where a sampled frame's code lives, by file path, for ``shares``.
OWNERS = (
    ("autobahn/", "autobahn"),
    ("txaio/", "autobahn"),
    ("twisted/", "twisted"),
    ("parkchat/", "parkchat"),
    ("json/", "json"),
    ("sqlite3/", "sqlite"),
    ("threading.py", "threads"),
)


def owner(frame: str) -> str:
    for needle, name in OWNERS:
        if needle in frame:
            return name
    return "other"


def shares(path: str, top: int = 25) -> dict[str, Any]:
    """Cost shares from a py-spy collapsed-stack file: by the package of the
    innermost frame (self time), by the outermost parkchat/autobahn frame
    on the stack that is not the reactor loop, and the top functions by self
    time. Native frames (``--py-spy-native``) count as ``native``."""
    total = 0
    by_owner: dict[str, int] = {}
    by_function: dict[str, int] = {}
    for line in Path(path).read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = stack.split(";")
        leaf = frames[-1]
        kind = owner(leaf) if "(" in leaf and ".py" in leaf else "native"
        total += count
        by_owner[kind] = by_owner.get(kind, 0) + count
        by_function[leaf] = by_function.get(leaf, 0) + count
    if not total:
        return {"samples": 0}
    return {
        "samples": total,
        "self_by_package": {
            k: round(v / total, 3) for k, v in sorted(by_owner.items(), key=lambda i: -i[1])
        },
        "top_self": [
            (k, round(v / total, 3))
            for k, v in sorted(by_function.items(), key=lambda i: -i[1])[:top]
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenario", choices=("ingest", "fanout", "history"))
    parser.add_argument("--rooms", type=int, default=50)
    parser.add_argument("--messages", type=int, default=100, help="per sender")
    parser.add_argument("--window", type=int, default=4, help="own messages in flight")
    parser.add_argument("--size", type=int, default=64, help="filler bytes per message")
    parser.add_argument("--receivers", type=int, default=100)
    parser.add_argument("--senders", type=int, default=2)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=500, help="per history client")
    parser.add_argument("--access-log-file", action="store_true")
    parser.add_argument("--callgrind", action="store_true")
    parser.add_argument("--py-spy", metavar="FILE")
    parser.add_argument("--py-spy-rate", type=int, default=250)
    parser.add_argument("--py-spy-native", action="store_true")
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="environment of the server (repeatable)",
    )
    parser.add_argument(
        "--server-arg", action="append", default=[], help="extra argument to parkchat (repeatable)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument(
        "--shares", metavar="FILE", help="only summarise a py-spy collapsed file and exit"
    )
    if "--shares" in sys.argv:
        index = sys.argv.index("--shares")
        print(json.dumps(shares(sys.argv[index + 1]), indent=1))
        return
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="parkchat-profile-")
    server = Server(args, tmp)
    try:
        server.wait_healthy(600 if args.callgrind else 60)
        server.register(USERS)
        result = asyncio.run(workload(args, server))
    finally:
        server.stop()
        if args.keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
