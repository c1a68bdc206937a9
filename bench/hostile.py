#!/usr/bin/env python3
"""Hostile clients against one real instance: logins must still work.

Starts one ``twistd -n parkchat`` on loopback (SQLite, bcrypt cost 12, the
verified-credential cache off so that every login pays a full bcrypt, the
login and registration throttles at their defaults) and runs two scenarios
from issue 15, each for ``--seconds``:

* **registration storm**: ``--storm`` clients in parallel ``POST /register``
  new accounts as fast as they are answered -- first all from one address
  (127.0.0.2), then spread over ``--storm-addresses`` addresses
  (127.0.1.x, which the per-address budget does not stop: the global budget
  and the bcrypt queue's priority for logins do) -- while a legitimate user
  logs in with ``POST /login`` from 127.0.0.250, one login after the other.
  Reported: the login times (p50, p99, max; the target is p99 < 1 s) and
  the storm's answers by status.
* **password-guessing crowd**: ``--crowd`` clients from ``--crowd-addresses``
  addresses (127.0.2.x) send wrong passwords for ``victim`` as fast as they
  are answered, while the real ``victim`` logs in from 127.0.0.251 every
  ``--owner-interval`` seconds. Reported: how often the owner was refused
  (the target is never) and the owner's login times, and the crowd's
  answers by status.

The client side is the standard library only (``http.client`` in threads,
each bound to its source address: Linux routes all of 127.0.0.0/8 to
loopback). Usage, from the repository root with the project's venv::

    python bench/hostile.py                       # ~2 min on 2 cores
    python bench/hostile.py --write docs/performance.md

``--write`` replaces (or appends) the "Hostile clients" section of the given
Markdown file with the results, the machine, the date and the command.
"""

from __future__ import annotations

import argparse
import datetime
import http.client
import json
import os
import platform
import re
import secrets
import shlex
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.e2e_support import LOOPBACK, ParkchatProcess  # noqa: E402

HEADING = "## Hostile clients"
OWNER_ADDRESS = "127.0.0.250"
VICTIM_ADDRESS = "127.0.0.251"


class Client:
    """A keep-alive HTTP client bound to one source address."""

    def __init__(self, port: int, source: str, timeout: float = 30.0) -> None:
        self.port = port
        self.source = source
        self.timeout = timeout
        self.conn: http.client.HTTPConnection | None = None

    def post(self, path: str, body: dict[str, Any]) -> int:
        """POST JSON; the status, or 0 if the connection failed."""
        data = json.dumps(body).encode()
        for _ in range(2):  # once more on a connection the server closed
            if self.conn is None:
                self.conn = http.client.HTTPConnection(
                    LOOPBACK, self.port, timeout=self.timeout, source_address=(self.source, 0)
                )
            try:
                self.conn.request("POST", path, data, {"Content-Type": "application/json"})
                response = self.conn.getresponse()
                response.read()
                if response.getheader("Connection", "").lower() == "close":
                    self.close()
                return response.status
            except (OSError, http.client.HTTPException):
                self.close()
        return 0

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))
    return ordered[index]


def timing(values: list[float]) -> dict[str, float]:
    ms = [v * 1000 for v in values] or [float("nan")]
    return {
        "count": len(values),
        "p50": percentile(ms, 50),
        "p99": percentile(ms, 99),
        "max": max(ms),
    }


def hammer(
    port: int, sources: list[str], threads: int, stop: threading.Event, body: Any, path: str
) -> Counter[int]:
    """``threads`` clients spread over ``sources`` POSTing ``body(i, n)`` to
    ``path`` until ``stop``; their answers by status."""
    statuses: Counter[int] = Counter()
    lock = threading.Lock()

    def run(index: int) -> None:
        client = Client(port, sources[index % len(sources)])
        mine: Counter[int] = Counter()
        n = 0
        try:
            while not stop.is_set():
                mine[client.post(path, body(index, n))] += 1
                n += 1
        finally:
            client.close()
            with lock:
                statuses.update(mine)

    workers = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(threads)]
    for worker in workers:
        worker.start()
    stop.wait()
    for worker in workers:
        worker.join(60)
    return statuses


def storm(args: argparse.Namespace, server: ParkchatProcess, sources: list[str]) -> dict[str, Any]:
    """A registration storm from ``sources`` while the owner logs in."""
    stop = threading.Event()
    tag = secrets.token_hex(3)
    result: dict[str, Counter[int]] = {}

    def body(index: int, n: int) -> dict[str, str]:
        return {"nickname": f"s{tag}{index}x{n}", "password": "storm-password"}

    attack = threading.Thread(
        target=lambda: result.setdefault(
            "storm", hammer(server.http_port, sources, args.storm, stop, body, "/register")
        ),
        daemon=True,
    )
    attack.start()
    time.sleep(1.0)  # the storm is under way
    owner = Client(server.http_port, OWNER_ADDRESS)
    times: list[float] = []
    refused: Counter[int] = Counter()
    deadline = time.monotonic() + args.seconds
    while time.monotonic() < deadline:
        began = time.perf_counter()
        status = owner.post("/login", {"nickname": "owner", "password": "owner-password"})
        times.append(time.perf_counter() - began)
        if status != 200:
            refused[status] += 1
    owner.close()
    stop.set()
    attack.join(90)
    return {
        "login": timing(times),
        "refused": dict(refused),
        "storm": dict(result.get("storm", {})),
    }


def crowd(args: argparse.Namespace, server: ParkchatProcess) -> dict[str, Any]:
    """Wrong passwords for ``victim`` from many addresses while the real
    victim logs in from another one."""
    stop = threading.Event()
    sources = [f"127.0.2.{i + 1}" for i in range(args.crowd_addresses)]
    result: dict[str, Counter[int]] = {}

    def body(index: int, n: int) -> dict[str, str]:
        return {"nickname": "victim", "password": f"guess-{index}-{n}"}

    attack = threading.Thread(
        target=lambda: result.setdefault(
            "crowd", hammer(server.http_port, sources, args.crowd, stop, body, "/login")
        ),
        daemon=True,
    )
    attack.start()
    time.sleep(1.0)
    owner = Client(server.http_port, VICTIM_ADDRESS)
    times: list[float] = []
    refused: Counter[int] = Counter()
    deadline = time.monotonic() + args.seconds
    while time.monotonic() < deadline:
        began = time.perf_counter()
        status = owner.post("/login", {"nickname": "victim", "password": "victim-password"})
        times.append(time.perf_counter() - began)
        if status != 200:
            refused[status] += 1
        time.sleep(args.owner_interval)
    owner.close()
    stop.set()
    attack.join(90)
    return {
        "login": timing(times),
        "refused": dict(refused),
        "crowd": dict(result.get("crowd", {})),
    }


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


def statuses(counts: dict[int, int]) -> str:
    names = {0: "failed", 201: "201", 200: "200", 401: "401", 429: "429", 503: "503"}
    return ", ".join(f"{names.get(k, str(k))}: {v}" for k, v in sorted(counts.items())) or "none"


def render(args: argparse.Namespace, results: dict[str, Any], command: str, load: float) -> str:
    lines = [
        HEADING,
        "",
        "Issue 15's attacks against one `twistd -n parkchat` on loopback (SQLite,",
        "`--bcrypt-rounds 12`, `--auth-cache-ttl 0` so that every login pays a full",
        "bcrypt, `--bcrypt-threads 2`, the login and registration throttles at their",
        "defaults), measured by `bench/hostile.py` (standard-library clients in",
        f"threads, each bound to its own loopback source address), {args.seconds:g} s each.",
        "",
        "| scenario | attackers | legitimate logins | p50 (ms) | p99 (ms) | max (ms) "
        "| refused | attackers' answers |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    rows = (
        ("registration storm, one address", f"{args.storm} clients from 127.0.0.2", "one"),
        (
            "registration storm, many addresses",
            f"{args.storm} clients over {args.storm_addresses} addresses",
            "many",
        ),
        (
            "password-guessing crowd",
            f"{args.crowd} clients over {args.crowd_addresses} addresses, "
            "wrong passwords for `victim`",
            "crowd",
        ),
    )
    for title, who, key in rows:
        r = results[key]
        login = r["login"]
        attack = r.get("storm", r.get("crowd", {}))
        lines.append(
            f"| {title} | {who} | {login['count']} | {login['p50']:.0f} | {login['p99']:.0f} | "
            f"{login['max']:.0f} | {sum(r['refused'].values())} | {statuses(attack)} |"
        )
    lines += [
        "",
        f"* Date: {datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"* Machine: {machine()}",
        f"* Load average (1 min) before and after the run: {load:.2f}, "
        f"{os.getloadavg()[0]:.2f} (other work on the machine at the same time)",
        f"* Command: `{command}`",
        "",
    ]
    return "\n".join(lines)


def write_section(path: Path, section: str) -> None:
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    pattern = re.compile(rf"^{re.escape(HEADING)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text, encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="each scenario [30]")
    parser.add_argument("--storm", type=int, default=400, help="registering clients [400]")
    parser.add_argument("--storm-addresses", type=int, default=100, help="their addresses [100]")
    parser.add_argument("--crowd", type=int, default=200, help="guessing clients [200]")
    parser.add_argument("--crowd-addresses", type=int, default=50, help="their addresses [50]")
    parser.add_argument("--owner-interval", type=float, default=0.5, help="between logins [0.5]")
    parser.add_argument("--bcrypt-rounds", type=int, default=12)
    parser.add_argument("--write", type=Path, help="Markdown file to put the section into")
    args = parser.parse_args()
    if not (1 <= args.storm <= 1000 and 1 <= args.crowd <= 1000 and 0 < args.seconds <= 600):
        parser.error("--storm and --crowd must be 1-1000, --seconds 0-600")
    if not (1 <= args.storm_addresses <= 250 and 1 <= args.crowd_addresses <= 250):
        parser.error("--storm-addresses and --crowd-addresses must be 1-250")
    load = os.getloadavg()[0]
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    workdir = Path(tempfile.mkdtemp(prefix="parkchat-hostile-"))
    server = ParkchatProcess(
        workdir,
        tcp=False,
        bcrypt_rounds=args.bcrypt_rounds,
        args=[
            "--auth-cache-ttl", "0",
            "--rate-limit", "0",
            "--max-connections-per-ip", "0",
            # The defaults, explicitly (the test harness turns them off).
            "--registrations-per-address", "10",
            "--registrations-per-minute", "60",
            "--access-log", "no",
        ],
        start_timeout=60,
    )  # fmt: skip
    results: dict[str, Any] = {}
    try:
        server.start()
        server.register("owner", "owner-password")
        server.register("victim", "victim-password")
        print("registration storm from one address...", file=sys.stderr)
        results["one"] = storm(args, server, ["127.0.0.2"])
        print("registration storm from many addresses...", file=sys.stderr)
        results["many"] = storm(
            args, server, [f"127.0.1.{i + 1}" for i in range(args.storm_addresses)]
        )
        print("password-guessing crowd...", file=sys.stderr)
        results["crowd"] = crowd(args, server)
    finally:
        server.stop()
    print(json.dumps(results, indent=2, default=str))
    section = render(args, results, command, load)
    print(section)
    if args.write is not None:
        write_section(args.write, section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
