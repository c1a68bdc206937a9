#!/usr/bin/env python3
"""Delivery latency, local vs cross-instance, with two real instances on Redis.

Starts two ``twistd -n parkchat`` instances (A and B) on loopback, sharing a
Redis prefix and a database (a fresh PostgreSQL database by default, dropped
afterwards), connects three ``/ws`` clients -- the sender and one receiver on
A, one receiver on B -- and sends N messages from the sender at a fixed rate.
For each message it takes the time from just before the sender's ``send`` to
its arrival at each receiver (one process, one monotonic clock):

* **local**: A -> Redis -> A (with ``--redis`` every instance, the sender's
  own included, delivers what Redis echoes back);
* **cross-instance**: A -> Redis -> B.

With ``--baseline`` it also runs one instance without ``--redis`` (the
in-process bus) with the same load, which shows what the Redis hop costs.
Each message is stored (group commit) before it is published, so all three
include the database commit.

Usage (from the repository root, with the project's venv)::

    python bench/cross_instance_latency.py -n 2000 --rate 500 --baseline
    python bench/cross_instance_latency.py -n 2000 --write docs/performance.md

``--write`` replaces (or appends) the "Cross-instance delivery" section of
the given Markdown file with the results, the machine, the date and the
command. Needs a Redis (``--redis``, default redis://127.0.0.1:6379/0) and,
for the default ``--db postgres``, a PostgreSQL whose user may create
databases (``--postgres``); ``--db sqlite`` uses one SQLite file instead.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import secrets
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from websockets.sync.client import ClientConnection, connect  # noqa: E402

from tests.e2e_support import ParkchatProcess  # noqa: E402

HEADING = "## Cross-instance delivery"


class Receiver(threading.Thread):
    """Reads a /ws client's frames and notes when each numbered message came."""

    def __init__(self, client: ClientConnection, expected: int) -> None:
        super().__init__(daemon=True)
        self.client = client
        self.expected = expected
        self.arrivals: dict[int, float] = {}
        self.done = threading.Event()

    def run(self) -> None:
        try:
            while len(self.arrivals) < self.expected:
                raw = self.client.recv(timeout=30)
                now = time.perf_counter()
                frame = json.loads(raw)
                if frame.get("type") == "message" and frame["body"].startswith("b"):
                    self.arrivals[int(frame["body"][1:])] = now
        except Exception as e:  # timeout or close: report what arrived
            print(f"receiver stopped: {e!r}", file=sys.stderr)
        finally:
            self.done.set()


class Drain(threading.Thread):
    """Reads and drops the sender's acks."""

    def __init__(self, client: ClientConnection) -> None:
        super().__init__(daemon=True)
        self.client = client
        self.stop = False

    def run(self) -> None:
        while not self.stop:
            try:
                self.client.recv(timeout=0.5)
            except TimeoutError:
                continue
            except Exception:
                return


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))
    return ordered[index]


def summary(latencies: list[float]) -> dict[str, float]:
    ms = [v * 1000 for v in latencies]
    return {
        "count": len(ms),
        "p50": percentile(ms, 50),
        "p90": percentile(ms, 90),
        "p99": percentile(ms, 99),
        "max": max(ms),
    }


def app_client(server: ParkchatProcess, nickname: str, password: str) -> ClientConnection:
    status, body = server.request("/login", "POST", {"username": nickname, "password": password})
    if status != 200:
        raise RuntimeError(f"login {nickname}: {status} {body!r}")
    token = json.loads(body)["token"]
    client = connect(server.ws_url(f"/ws?token={token}"), open_timeout=10, close_timeout=5)
    client.__enter__()  # websockets 17 wants the context manager; closed by the caller
    if json.loads(client.recv(timeout=10))["type"] != "ready":
        raise RuntimeError("no ready frame")
    client.send(json.dumps({"type": "join", "room": "bench", "id": "j"}))
    while json.loads(client.recv(timeout=10)).get("type") != "joined":
        pass
    return client


def run_load(
    sender: ClientConnection, receivers: dict[str, Receiver], count: int, rate: float
) -> dict[str, dict[str, float]]:
    drain = Drain(sender)
    drain.start()
    for receiver in receivers.values():
        receiver.start()
    sent: dict[int, float] = {}
    interval = 1.0 / rate
    start = time.perf_counter()
    for i in range(count):
        target = start + i * interval
        delay = target - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        sent[i] = time.perf_counter()
        sender.send(json.dumps({"type": "message", "body": f"b{i}"}))
    for receiver in receivers.values():
        receiver.done.wait(60)
    drain.stop = True
    results = {}
    for name, receiver in receivers.items():
        missing = count - len(receiver.arrivals)
        if missing:
            print(f"{name}: {missing} of {count} messages missing", file=sys.stderr)
        results[name] = summary([receiver.arrivals[i] - sent[i] for i in receiver.arrivals])
    return results


def warm_up(sender: ClientConnection, receivers: list[ClientConnection], count: int = 50) -> None:
    for i in range(count):
        sender.send(json.dumps({"type": "message", "body": f"w{i}"}))
    for client in receivers:
        seen = 0
        while seen < count:
            frame = json.loads(client.recv(timeout=30))
            if frame.get("type") == "message":
                seen += 1
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # the sender's acks
        try:
            frame = json.loads(sender.recv(timeout=0.5))
        except TimeoutError:
            break


def create_postgres(admin_url: str) -> tuple[str, str]:
    import psycopg2

    name = f"parkchat_bench_{secrets.token_hex(4)}"
    conn = psycopg2.connect(admin_url)
    conn.autocommit = True
    with conn.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE {name}")
    conn.close()
    return name, urlsplit(admin_url)._replace(path="/" + name).geturl()


def drop_postgres(admin_url: str, name: str) -> None:
    import psycopg2

    conn = psycopg2.connect(admin_url)
    conn.autocommit = True
    with conn.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    conn.close()


def measure(args: argparse.Namespace, workdir: Path, db: str, redis: bool) -> dict[str, Any]:
    common = ["--rate-limit", "0", "--max-connections-per-ip", "0"]
    if redis:
        prefix = f"bench{secrets.token_hex(4)}"
        common += ["--redis", f"{args.redis}?prefix={prefix}"]
    names = ["a", "b"] if redis else ["a"]
    servers = [
        ParkchatProcess(workdir / f"{name}-{int(redis)}", tcp=False, db=db, args=common)
        for name in names
    ]
    clients: list[ClientConnection] = []
    try:
        for server in servers:
            server.start()
        for nickname in ("sender", "near", "far"):
            servers[0].register(nickname, f"{nickname}-secret-pw")
        sender = app_client(servers[0], "sender", "sender-secret-pw")
        near = app_client(servers[0], "near", "near-secret-pw")
        clients += [sender, near]
        receivers = {"local": near}
        if redis:
            far = app_client(servers[1], "far", "far-secret-pw")
            clients.append(far)
            receivers["cross-instance"] = far
        time.sleep(0.5)  # presence announcements settle
        warm_up(sender, list(receivers.values()))
        threads = {name: Receiver(client, args.n) for name, client in receivers.items()}
        return run_load(sender, threads, args.n, args.rate)
    finally:
        for client in clients:
            client.close()
        for server in servers:
            server.stop()


def version(command: list[str]) -> str:
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=10).stdout
    except OSError:
        return "?"
    return out.strip().splitlines()[0] if out.strip() else "?"


def machine() -> str:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{platform.node() or 'host'}: {os.cpu_count()} cores ({cpu}), "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}"
    )


def render(args: argparse.Namespace, results: dict[str, dict[str, Any]], command: str) -> str:
    db = "PostgreSQL" if args.db == "postgres" else "SQLite (one file)"
    redis_version = version(["redis-server", "--version"])
    pg_version = version(["psql", "--version"]) if args.db == "postgres" else ""
    lines = [
        HEADING,
        "",
        "End-to-end latency of a chat message, from just before the sender's",
        "WebSocket `send` to its arrival at a receiver, measured by",
        "`bench/cross_instance_latency.py`: two `twistd -n parkchat` instances (A",
        f"and B) with `--redis` on one Redis and one {db} database, all on loopback;",
        "three `/ws` clients (the `websockets` sync client, one process, one",
        "monotonic clock): the sender and one receiver on A, one receiver on B.",
        f"{args.n} messages at {args.rate:g} messages/s after 50 unmeasured ones;",
        "each is stored (group commit) before it is published, so every figure",
        "includes the database commit.",
        "",
        "* **local**: sender on A, receiver on A. With Redis, an instance delivers",
        "  what Redis echoes back, its own messages included (one order per room",
        "  everywhere), so this too makes the Redis round trip.",
        "* **cross-instance**: sender on A, receiver on B (A -> Redis -> B).",
    ]
    if "single instance" in results:
        lines.append(
            "* **single instance, no Redis**: one instance with the in-process bus, "
            "same load: what the Redis hop adds."
        )
    lines += [
        "",
        "| delivery | messages | p50 (ms) | p90 (ms) | p99 (ms) | max (ms) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['count']} | {r['p50']:.2f} | {r['p90']:.2f} | "
            f"{r['p99']:.2f} | {r['max']:.2f} |"
        )
    if "local" in results and "cross-instance" in results:
        local, cross = results["local"], results["cross-instance"]
        lines += [
            "",
            f"Added by crossing instances: p50 {cross['p50'] - local['p50']:+.2f} ms, "
            f"p99 {cross['p99'] - local['p99']:+.2f} ms.",
        ]
        if "single instance" in results:
            single = results["single instance"]
            lines.append(
                f"Added by Redis to a local delivery (vs. the in-process bus): "
                f"p50 {local['p50'] - single['p50']:+.2f} ms, "
                f"p99 {local['p99'] - single['p99']:+.2f} ms."
            )
    lines += [
        "",
        f"* Date: {datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"* Machine: {machine()}",
        f"* Load average (1 min) before and after the run: {args.load_before:.2f}, "
        f"{os.getloadavg()[0]:.2f} (other work on the machine at the same time)",
        f"* Services: {redis_version}" + (f"; {pg_version}" if pg_version else ""),
        f"* Command: `{command}`",
        "",
        "Crossing instances costs no more than a local delivery: both make the",
        "same Redis round trip, and B, which only delivers, is less busy than A,",
        "which also stores every message and acknowledges the sender. What Redis",
        "adds is the difference to the single instance. Every process (servers,",
        "Redis, PostgreSQL, clients) shares the same two cores with whatever else",
        "runs on the machine, so the tails are noisy (runs under a load average",
        "near 8 had p99 of 60-240 ms in every row); on a network, every delivery,",
        "local or not, also pays the network round trip to Redis.",
        "",
    ]
    return "\n".join(lines)


def write_section(path: Path, section: str) -> None:
    """Replace the section (up to the next ``## `` heading) or append it."""
    text = path.read_text() if path.exists() else "# Performance\n\n"
    pattern = re.compile(rf"^{re.escape(HEADING)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text.rstrip("\n") + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=2000, help="measured messages (default 2000)")
    parser.add_argument("--rate", type=float, default=500.0, help="messages/s (default 500)")
    parser.add_argument("--db", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument(
        "--postgres",
        default=os.environ.get(
            "PARKCHAT_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
        help="a PostgreSQL URL whose user may create databases",
    )
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument(
        "--baseline", action="store_true", help="also measure one instance without Redis"
    )
    parser.add_argument("--write", type=Path, help="write the results into this Markdown file")
    args = parser.parse_args()
    command = "python bench/cross_instance_latency.py " + shlex.join(sys.argv[1:])
    args.load_before = os.getloadavg()[0]

    with tempfile.TemporaryDirectory(prefix="parkchat-bench-") as tmp:
        workdir = Path(tmp)
        results: dict[str, dict[str, Any]] = {}
        for redis in [True, False] if args.baseline else [True]:
            name = None
            if args.db == "postgres":
                name, db = create_postgres(args.postgres)
            else:
                db = str(workdir / f"chat-{int(redis)}.db")
            try:
                measured = measure(args, workdir, db, redis)
            finally:
                if name is not None:
                    drop_postgres(args.postgres, name)
            if redis:
                results.update(measured)
            else:
                results["single instance"] = measured["local"]

    for name, r in results.items():
        print(
            f"{name:>16}: n={r['count']} p50={r['p50']:.2f} ms p90={r['p90']:.2f} ms "
            f"p99={r['p99']:.2f} ms max={r['max']:.2f} ms"
        )
    if args.write:
        write_section(args.write, render(args, results, command))
        print(f"wrote {HEADING!r} to {args.write}")


if __name__ == "__main__":
    main()
