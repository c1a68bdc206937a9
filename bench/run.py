#!/usr/bin/env python3
"""parkchat benchmarks in one command (Python 3.11, standard library only).

    /path/to/venv/bin/python bench/run.py                 # everything, ~1 h on 2 cores
    /path/to/venv/bin/python bench/run.py --quick         # smoke run, a few minutes
    /path/to/venv/bin/python bench/run.py --scenarios fanout,ingest --repeat 3
    /path/to/venv/bin/python bench/run.py --postgres postgresql://postgres@127.0.0.1:5432/postgres

Run it with the Python that has parkchat installed (its ``twistd`` is used, and
the shared harness's ``twisted`` reference server runs on the same Python).
It drives the shared harness (``../shared/bench``: ``bench.py`` + ``loadgen.js``)
and writes

* the raw JSON lines to ``bench/results/<date>/run-<time>.jsonl`` (git-ignored),
* a Markdown report between ``<!-- bench:begin -->`` / ``<!-- bench:end -->``
  and ``<!-- workers:begin -->`` / ``<!-- workers:end -->`` in
  ``docs/performance.md`` (``--out``; other sections of the file are kept).

Scenarios: ``fanout``, ``rooms``, ``idle``, ``history`` (parkchat on SQLite vs
the raw Twisted/Autobahn reference, alternating, plus parkchat on PostgreSQL
with ``--postgres``), ``ingest`` (persisted messages/s at rising rates) and
``workers`` (fanout and rooms with ``parkchat-workers`` at 1 and 2 processes).
See bench/README.md. Every loop is bounded; bench.py starts and stops every
server.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

REPO = Path(__file__).resolve().parent.parent
ALL_SCENARIOS = ("fanout", "rooms", "idle", "history", "ingest", "workers", "pgwrite")
HARNESS_SCENARIOS = ("fanout", "rooms", "idle", "history")
LIMITS_OFF = (
    "PARKCHAT_RATE_LIMIT=0 PARKCHAT_MAX_CONNECTIONS_PER_USER=0 PARKCHAT_MAX_CONNECTIONS_PER_IP=0 "
    "PARKCHAT_REGISTRATIONS_PER_ADDRESS=0 PARKCHAT_REGISTRATIONS_PER_MINUTE=0"
)
BCRYPT_ROUNDS = 12
#: Every request is logged, to a file of its own: the setting docs/operations.md
#: recommends for a busy API (through the server log, each line costs a fifth to
#: a third of a cached history request).
ACCESS_LOG = "--access-log-file {tmp}/access.log"
#: ``--default-access-log``: the access log through the server log (standard
#: output under ``twistd -n``, as users run it; issue 18) instead of ACCESS_LOG.
DEFAULT_ACCESS_LOG = False
INGEST_RATES = (2000, 5000, 7500, 10000, 12500, 15000, 20000, 30000)
INGEST_P99_MS = 50.0
INGEST_MIN_DELIVERY = 0.95
REDIS_URL = "redis://127.0.0.1:6379/0"
#: parkchat.store.schema.SCHEMA_LOCK_KEY (this runner imports nothing of parkchat).
SCHEMA_LOCK_KEY = zlib.crc32(b"parkchat schema")
PGWRITE_RATES = (1000, 2000, 3000, 4000, 5000, 6000, 8000, 10000)

# (json path, label, digits) per scenario, in table order.
METRICS: dict[str, list[tuple[str, str, int]]] = {
    "fanout": [
        ("deliveries_per_s", "deliveries/s", 0),
        ("latency_ms.p50", "p50 ms", 2),
        ("latency_ms.p99", "p99 ms", 2),
        ("server.cpu_util", "server cpu_util", 2),
        ("server.rss_peak_mb", "server RSS peak MB", 1),
        ("loadgen.cpu_util", "loadgen cpu_util", 2),
    ],
    "rooms": [
        ("deliveries_per_s", "deliveries/s (target 10000)", 0),
        ("latency_ms.p50", "p50 ms", 2),
        ("latency_ms.p99", "p99 ms", 2),
        ("server.cpu_util", "server cpu_util", 2),
        ("loadgen.cpu_util", "loadgen cpu_util", 2),
    ],
    "idle": [
        ("connected", "connected", 0),
        ("connect_per_s", "connect+auth/s", 0),
        ("rss_per_conn_kb", "RSS KB per connection", 2),
        ("rss_after_mb", "RSS after MB", 1),
        ("loadgen.cpu_util", "loadgen cpu_util", 2),
    ],
    "history": [
        ("requests_per_s", "requests/s", 0),
        ("latency_ms.p50", "p50 ms", 2),
        ("latency_ms.p99", "p99 ms", 2),
        ("non_2xx", "non-2xx", 0),
        ("server.cpu_util", "server cpu_util", 2),
    ],
}


def log(message: str) -> None:
    print(f"[run] {message}", file=sys.stderr, flush=True)


def get(d: Any, path: str) -> Any:
    for key in path.split("."):
        if not isinstance(d, dict):
            return None
        d = d.get(key)
    return d


def fmt(value: float | None, digits: int) -> str:
    if value is None:
        return "-"
    if digits == 0:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


# -- environment ----------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    node = subprocess.run(["node", "--version"], capture_output=True, text=True, timeout=30)
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "ram_gib": mem_gib,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "node": node.stdout.strip(),
        "loadavg": os.getloadavg(),
    }


def git_describe() -> str:
    try:
        head = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout.strip()
        return head + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def prepare_harness(harness: Path) -> None:
    for name in ("bench.py", "loadgen.js"):
        if not (harness / name).exists():
            raise SystemExit(f"run.py: no {name} in {harness} (give --harness DIR)")
    if shutil.which("node") is None:
        raise SystemExit("run.py: node (>= 18) is needed for loadgen.js")
    if not (harness / "node_modules").is_dir():
        log(f"npm ci in {harness}")
        try:
            subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=harness, timeout=600)
        except (OSError, subprocess.SubprocessError) as e:
            log(f"npm ci failed ({e}); loadgen's default raw client needs no package")
        if not (harness / "node_modules").is_dir():
            log("node_modules still missing: only the 'node' references need it")


def redis_reachable(url: str = REDIS_URL) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379), 2) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def twistd_path() -> str:
    candidate = Path(sys.executable).with_name("twistd")
    if candidate.exists():
        return str(candidate)
    found = shutil.which("twistd")
    if found is None:
        raise SystemExit("run.py: no twistd next to this Python nor on PATH; install parkchat")
    return found


# -- PostgreSQL (throwaway database) ----------------------------------------------


class ThrowawayPostgres:
    """CREATE DATABASE on enter, DROP DATABASE on exit (psycopg2, else psql)."""

    def __init__(self, admin_dsn: str) -> None:
        self.admin_dsn = admin_dsn
        self.name = f"parkchat_bench_{uuid.uuid4().hex[:10]}"
        parts = urlsplit(admin_dsn)
        self.dsn = urlunsplit(parts._replace(path="/" + self.name))

    def _sql(self, statement: str) -> None:
        try:
            import psycopg2
        except ImportError:
            subprocess.run(
                ["psql", self.admin_dsn, "-v", "ON_ERROR_STOP=1", "-c", statement],
                check=True,
                timeout=60,
                capture_output=True,
            )
            return
        conn = psycopg2.connect(self.admin_dsn, connect_timeout=10)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(statement)
        finally:
            conn.close()

    def __enter__(self) -> ThrowawayPostgres:
        self._sql(f"CREATE DATABASE {self.name}")
        log(f"created PostgreSQL database {self.name}")
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._sql(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")
            log(f"dropped PostgreSQL database {self.name}")
        except Exception as e:
            log(f"could not drop database {self.name}: {e}")


# -- /proc sampling (multi-process servers) ---------------------------------------

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _proc_stat(pid: int) -> tuple[int, int] | None:
    """(utime + stime ticks, RSS KB) of ``pid``."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        ticks = int(fields[11]) + int(fields[12])
        rss_kb = int(fields[21]) * (os.sysconf("SC_PAGE_SIZE") // 1024)
        return ticks, rss_kb
    except (OSError, ValueError, IndexError):
        return None


class ProcSampler(threading.Thread):
    """Every 0.2 s: CPU ticks and RSS of every process whose command line
    contains ``marker`` (the launcher and its workers), of redis-server, and
    whether a loadgen.js is running (to place the measured window)."""

    def __init__(self, marker: str) -> None:
        super().__init__(daemon=True)
        self.marker = marker.encode()
        self.samples: list[dict[str, Any]] = []
        self._halt = threading.Event()
        self._match: dict[int, str] = {}

    def _classify(self, pid: int) -> str:
        if pid not in self._match:
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                return ""
            if b"loadgen.js" in cmd:
                kind = "loadgen"
            elif b"bench.py" in cmd:
                kind = ""  # the runner's command line holds the template, marker included
            elif self.marker in cmd:
                kind = "server"
            elif cmd.startswith(b"redis-server"):
                kind = "redis"
            else:
                kind = ""
            self._match[pid] = kind
        return self._match[pid]

    def run(self) -> None:
        while not self._halt.wait(0.2):
            sample: dict[str, Any] = {"t": time.monotonic(), "server": {}, "redis": 0}
            loadgen = False
            for entry in os.listdir("/proc"):
                if not entry.isdigit():
                    continue
                pid = int(entry)
                kind = self._classify(pid)
                if not kind:
                    continue
                if kind == "loadgen":
                    loadgen = True
                    continue
                st = _proc_stat(pid)
                if st is None:
                    continue
                if kind == "server":
                    sample["server"][pid] = st
                else:
                    sample["redis"] += st[0]
            sample["loadgen"] = loadgen
            self.samples.append(sample)

    def stop(self) -> None:
        self._halt.set()
        self.join(5)

    def window(self, seconds: float) -> dict[str, Any]:
        """Summed server CPU (cores) and RSS over the ``seconds`` that end when
        the load generator exits (its measured window ends just before)."""
        with_lg = [s for s in self.samples if s["loadgen"]]
        if not with_lg:
            return {}
        end = with_lg[-1]["t"] - 0.2
        start = end - seconds
        inside = [s for s in self.samples if start <= s["t"] <= end and s["server"]]
        if len(inside) < 2:
            return {}
        first, last = inside[0], inside[-1]
        pids = set(first["server"]) & set(last["server"])
        secs = last["t"] - first["t"]
        cpu = sum(last["server"][p][0] - first["server"][p][0] for p in pids) / CLK_TCK
        redis = (last["redis"] - first["redis"]) / CLK_TCK
        per_pid = {
            p: round((last["server"][p][0] - first["server"][p][0]) / CLK_TCK / secs, 2)
            for p in pids
        }
        rss_peak = max(sum(v[1] for v in s["server"].values()) for s in inside)
        return {
            "processes": len(pids),
            "cpu_util_total": round(cpu / secs, 2),
            "cpu_util_per_process": per_pid,
            "redis_cpu_util": round(redis / secs, 2),
            "rss_total_peak_mb": round(rss_peak / 1024, 1),
        }


# -- running bench.py ------------------------------------------------------------


class Runner:
    def __init__(self, args: argparse.Namespace, raw_path: Path) -> None:
        self.args = args
        self.harness: Path = args.harness
        self.raw = raw_path.open("a")
        self.commands: list[str] = []

    def close(self) -> None:
        self.raw.close()

    def bench(
        self,
        mode: str,
        bench_args: list[str],
        loadgen_args: Sequence[str],
        config: dict[str, str],
        sampler_marker: str | None = None,
    ) -> list[dict[str, Any]]:
        """One bench.py invocation; its JSON lines, tagged with ``config``
        (a label per server template: ``reference#1`` -> config["reference"])."""
        argv = [sys.executable, str(self.harness / "bench.py"), mode, *bench_args]
        argv += ["--timeout", str(self.args.timeout), "--health-timeout", "120"]
        argv += ["--", *loadgen_args]
        self.commands.append(shlex.join(argv))
        log("$ " + shlex.join(argv))
        sampler = ProcSampler(sampler_marker) if sampler_marker else None
        if sampler:
            sampler.start()
        results = []
        try:
            proc = subprocess.run(
                argv, stdout=subprocess.PIPE, text=True, timeout=self.args.timeout * 4 + 600
            )
            out = proc.stdout
        except subprocess.TimeoutExpired as e:
            out = e.stdout if isinstance(e.stdout, str) else ""
            log(f"bench.py timed out: {shlex.join(argv)}")
        finally:
            if sampler:
                sampler.stop()
        for line in out.splitlines():
            if not line.startswith("{"):
                continue
            try:
                res = json.loads(line)
            except json.JSONDecodeError:
                continue
            label = str(res.get("label", "summary")).split("#")[0]
            res["bench_config"] = config.get(label, label)
            if sampler and "summary" not in res:
                res["processes"] = sampler.window(float(res.get("window_s") or 0))
            self.raw.write(json.dumps(res) + "\n")
            self.raw.flush()
            results.append(res)
            if "error" in res:
                log(f"{res['bench_config']} {res.get('scenario')}: ERROR {res['error']}")
        return results


def loadgen_args(args: argparse.Namespace, scenario: str) -> list[str]:
    extra: list[str] = []
    if args.users:
        extra += ["--users", str(args.users)]
    if args.quick:
        extra += ["--warmup", "1", "--duration", "3"]
    if scenario == "rooms":
        extra += ["--rooms", "50", "--members", "10", "--rate", "1000"]
    elif scenario == "idle":
        extra += ["--connections", str(args.connections)]
        if args.quick:
            extra += ["--hold", "1"]
    return extra


def quote(word: str) -> str:
    """Shell-quote ``word`` unless it is plain (keeps ``{tmp}/chat.db`` readable)."""
    plain = all(c.isalnum() or c in "/._-:{}@=%+,?" for c in word)
    return word if plain and word else shlex.quote(word)


def parkchat_template(db: str) -> str:
    return (
        f"env {LIMITS_OFF} {shlex.quote(twistd_path())} -n --pidfile= parkchat "
        f"--port tcp:{{port}}:interface=127.0.0.1 --db {quote(db)} "
        f"--bcrypt-rounds {BCRYPT_ROUNDS} {'' if DEFAULT_ACCESS_LOG else ACCESS_LOG}"
    )


def workers_template(n: int, db: str, redis: str | None) -> str:
    extra = f"--db {shlex.quote(db)} --bcrypt-rounds {BCRYPT_ROUNDS}"
    if redis:
        extra = f"--redis {shlex.quote(redis)} " + extra
    return (
        f"env {LIMITS_OFF} {shlex.quote(sys.executable)} -m parkchat.workers --workers {n} "
        f"--port {{port}} --interface 127.0.0.1 -- {extra}"
    )


def count_messages(db: Path) -> int:
    if not db.exists():
        return 0
    conn = sqlite3.connect(str(db), timeout=30)
    try:
        row = conn.execute("SELECT count(*) FROM messages WHERE type = 'chat'").fetchone()
        return int(row[0])
    finally:
        conn.close()


# -- aggregation and Markdown -----------------------------------------------------


def stats(results: Iterable[dict[str, Any]], path: str) -> tuple[float, float, float] | None:
    values = [v for v in (get(r, path) for r in results) if isinstance(v, int | float)]
    if not values:
        return None
    return statistics.median(values), min(values), max(values)


def cell(st: tuple[float, float, float] | None, digits: int) -> str:
    if st is None:
        return "-"
    median, low, high = st
    if low == high:
        return fmt(median, digits)
    return f"{fmt(median, digits)} ({fmt(low, digits)}-{fmt(high, digits)})"


def ratio(target: tuple[float, float, float] | None, ref: tuple[float, float, float] | None) -> str:
    if not target or not ref or not ref[0]:
        return "-"
    return f"{target[0] / ref[0]:.2f}"


def harness_table(results: list[dict[str, Any]], configs: list[str]) -> list[str]:
    ok = [r for r in results if "summary" not in r and "error" not in r]
    head = ["scenario", "metric", *configs]
    for c in configs[1:]:
        head.append(f"{c} / {configs[0]}")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for scenario, metrics in METRICS.items():
        rows = [r for r in ok if r.get("scenario") == scenario]
        if not rows:
            continue
        for path, label, digits in metrics:
            per = [stats((r for r in rows if r["bench_config"] == c), path) for c in configs]
            if all(p is None for p in per):
                continue
            cells = [scenario, label] + [cell(p, digits) for p in per]
            cells += [ratio(p, per[0]) for p in per[1:]]
            lines.append("| " + " | ".join(cells) + " |")
    errors = [r for r in results if "error" in r]
    for r in errors:
        lines.append("")
        lines.append(f"- error: {r['bench_config']} {r.get('scenario')}: {r['error']}")
    return lines


def machine_lines(info: dict[str, Any], started: dt.datetime, quick: bool) -> list[str]:
    load = ", ".join(f"{x:.2f}" for x in info["loadavg"])
    return [
        f"- date: {started:%Y-%m-%d %H:%M} UTC; parkchat commit {info['commit']}"
        + ("; **smoke run (`--quick`): short windows, not for comparison**" if quick else ""),
        f"- machine: {info['nproc']} CPUs ({info['cpu']}), {info['ram_gib']} GiB RAM, "
        f"Linux {info['kernel']}, Python {info['python']}, Node {info['node']}",
        f"- load average at the start: {load} (other work on the machine shows up as noise)",
    ]


def replace_section(path: Path, name: str, title: str, body: list[str]) -> None:
    """Put ``body`` between ``<!-- name:begin -->`` and ``<!-- name:end -->``
    (re-reading the file right before writing; other sections untouched)."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    block = "\n".join([begin, *body, end])
    text = path.read_text() if path.exists() else "# Performance\n"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        text = head + block + tail
    else:
        text = text.rstrip("\n") + f"\n\n## {title}\n\n{block}\n"
    path.write_text(text)
    log(f"wrote the {name} section of {path}")


# -- the scenarios ---------------------------------------------------------------


def run_harness_scenarios(
    runner: Runner, args: argparse.Namespace, scenarios: list[str], pg_dsn: str | None
) -> list[dict[str, Any]]:
    sqlite = parkchat_template("{tmp}/chat.db")
    results: list[dict[str, Any]] = []
    repeat = ["--repeat", str(args.repeat)]
    for scenario in scenarios:
        extra = loadgen_args(args, scenario)
        results += runner.bench(
            "compare",
            ["--reference", "twisted", "--target", sqlite, "--scenario", scenario, *repeat],
            extra,
            {"reference": "twisted", "target": "parkchat-sqlite"},
        )
        if pg_dsn:
            results += runner.bench(
                "run",
                ["--server", parkchat_template(pg_dsn), "--scenario", scenario, *repeat],
                extra,
                {"server": "parkchat-postgres"},
            )
    return results


def run_ingest(runner: Runner, args: argparse.Namespace, workdir: Path) -> list[dict[str, Any]]:
    """Rooms of 2 at rising rates, parkchat on one SQLite file and then the
    raw Twisted/Autobahn reference (which stores nothing). Each rate is run
    ``--ingest-tries`` times; a rate holds when the median p99 of its tries
    is at most 50 ms and every try delivered (and, for parkchat, persisted)
    at least 95 % of its target. Each server stops at its first rate that
    does not hold."""
    db = workdir / "ingest.db"
    rows: list[dict[str, Any]] = []
    servers = [("parkchat-sqlite", parkchat_template(str(db)))]
    if not args.no_ingest_reference:
        servers.append(("twisted", "twisted"))
    for name, template in servers:
        stored = name != "twisted"
        for rate in args.ingest_rates:
            tries = [
                ingest_try(runner, args, name, template, db if stored else None, rate, n)
                for n in range(1, args.ingest_tries + 1)
            ]
            p99s = [t["p99"] for t in tries if isinstance(t["p99"], int | float)]
            median_p99 = statistics.median(p99s) if len(p99s) == len(tries) else None
            held = median_p99 is not None and median_p99 <= INGEST_P99_MS
            held = held and all(t["complete"] for t in tries)
            for t in tries:
                t["step_p99"] = median_p99
                t["held"] = held
            rows += tries
            runner.raw.write(json.dumps({"ingest_step": [strip_result(t) for t in tries]}) + "\n")
            log(
                f"ingest {name} {rate}/s: p99 of tries {[t['p99'] for t in tries]} ms "
                f"(median {median_p99}) -> {'held' if held else 'NOT held'}"
            )
            if not held:
                break
    return rows


def strip_result(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k != "result"}


def ingest_try(
    runner: Runner,
    args: argparse.Namespace,
    name: str,
    template: str,
    db: Path | None,
    rate: int,
    attempt: int,
) -> dict[str, Any]:
    """One run of the rooms scenario at ``rate``; with ``db``, the chat rows
    it added to that SQLite file are counted."""
    before = count_messages(db) if db is not None else 0
    extra = loadgen_args(args, "ingest")
    extra += ["--rooms", str(args.ingest_rooms), "--members", "2", "--rate", str(rate)]
    res = runner.bench(
        "run",
        ["--server", template, "--scenario", "rooms"],
        extra,
        {"server": f"ingest-{name}@{rate}#{attempt}"},
    )
    r = next((x for x in res if "summary" not in x), {"error": "no result"})
    warmup = 1.0 if args.quick else 2.0
    window = float(r.get("window_s") or 0)
    expected = rate * (warmup + window) - int(r.get("skipped_sends") or 0)
    persisted = count_messages(db) - before if db is not None else None
    target = float(r.get("target_deliveries_per_s") or rate * 2)
    delivered = float(r.get("deliveries_per_s") or 0)
    return {
        "server": name,
        "rate": rate,
        "try": attempt,
        "result": r,
        "p99": get(r, "latency_ms.p99"),
        "persisted": persisted,
        "expected": round(expected),
        "persisted_per_s": (
            round(persisted / (warmup + window)) if window and persisted is not None else None
        ),
        "delivery_ratio": round(delivered / target, 3) if target else None,
        "complete": (
            "error" not in r
            and delivered >= INGEST_MIN_DELIVERY * target
            and (persisted is None or persisted >= INGEST_MIN_DELIVERY * expected)
        ),
    }


def ingest_lines(rows: list[dict[str, Any]], args: argparse.Namespace) -> list[str]:
    if not rows:
        return []
    best = {
        name: max((r["rate"] for r in rows if r["server"] == name and r["held"]), default=None)
        for name in dict.fromkeys(r["server"] for r in rows)
    }
    lines = [
        "",
        f"### Ingest: {args.ingest_rooms} rooms x 2 members, rising rate",
        "",
        f"Highest rate that held (median p99 of {args.ingest_tries} tries <= "
        f"{INGEST_P99_MS:g} ms; deliveries and, for parkchat, persisted rows >= "
        f"{INGEST_MIN_DELIVERY:.0%} of target in every try): "
        + "; ".join(
            f"{name} **{rate:,} msg/s**" if rate else f"{name}: none" for name, rate in best.items()
        ),
        "",
        "| server | send rate msg/s | try | sends/s measured | deliveries/s / target | p50 ms "
        "| p99 ms | persisted / sent | server cpu_util | loadgen cpu_util | rate held |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        r = row["result"]
        if "error" in r:
            lines.append(
                f"| {row['server']} | {row['rate']:,} | {row['try']} | error: {r['error']} "
                "| | | | | | | no |"
            )
            continue
        persisted = (
            f"{row['persisted']:,} / {row['expected']:,}"
            if row["persisted"] is not None
            else "(stores nothing)"
        )
        lines.append(
            "| "
            + " | ".join(
                [
                    row["server"],
                    f"{row['rate']:,}",
                    str(row["try"]),
                    fmt(r.get("sends_per_s"), 0),
                    f"{fmt(r.get('deliveries_per_s'), 0)} / "
                    + fmt(r.get("target_deliveries_per_s"), 0),
                    fmt(get(r, "latency_ms.p50"), 2),
                    fmt(get(r, "latency_ms.p99"), 2),
                    persisted,
                    fmt(get(r, "server.cpu_util"), 2),
                    fmt(get(r, "loadgen.cpu_util"), 2),
                    "yes" if row["held"] else "**no**",
                ]
            )
            + " |"
        )
    lines += [
        "",
        "Persisted = chat rows added to the SQLite file during the step (counted after the "
        "server stopped); sent = rate x (warm-up + window) minus skipped sends.",
    ]
    return lines


def run_workers(runner: Runner, args: argparse.Namespace, workdir: Path) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    redis_ok = redis_reachable()
    if not redis_ok:
        log(f"workers: no Redis at {REDIS_URL}; skipped")
        return results
    for scenario in ("fanout", "rooms"):
        for n in args.worker_counts:
            for i in range(args.repeat):
                tag = f"pcbw{uuid.uuid4().hex[:8]}"
                db = workdir / f"{tag}.db"
                redis = f"{REDIS_URL}?prefix={tag}" if n > 1 else None
                cpus = (
                    ["--server-cpu", "0", "--client-cpu", "1"]
                    if n == 1
                    else ["--server-cpu", "", "--client-cpu", ""]
                )
                res = runner.bench(
                    "run",
                    [
                        "--server",
                        workers_template(n, str(db), redis),
                        "--scenario",
                        scenario,
                        *cpus,
                    ],
                    loadgen_args(args, scenario),
                    {"server": f"workers={n}"},
                    sampler_marker=tag,
                )
                for r in res:
                    r["repeat"] = i + 1
                results += res
    return results


def workers_lines(results: list[dict[str, Any]], args: argparse.Namespace) -> list[str]:
    ok = [r for r in results if "summary" not in r and "error" not in r]
    configs = [f"workers={n}" for n in args.worker_counts]
    head = ["scenario", "metric", *configs]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    metrics = [
        ("deliveries_per_s", "deliveries/s", 0),
        ("latency_ms.p50", "p50 ms", 2),
        ("latency_ms.p99", "p99 ms", 2),
        ("processes.cpu_util_total", "server CPU, all processes (cores)", 2),
        ("processes.redis_cpu_util", "redis-server CPU (cores)", 2),
        ("processes.rss_total_peak_mb", "server RSS, all processes, peak MB", 1),
        ("server.cpu_util", "bench.py's one measured process (cores)", 2),
        ("loadgen.cpu_util", "loadgen cpu_util", 2),
    ]
    for scenario in ("fanout", "rooms"):
        rows = [r for r in ok if r.get("scenario") == scenario]
        if not rows:
            continue
        for path, label, digits in metrics:
            per = [stats((r for r in rows if r["bench_config"] == c), path) for c in configs]
            lines.append(
                "| " + " | ".join([scenario, label] + [cell(p, digits) for p in per]) + " |"
            )
    for r in results:
        if "error" in r:
            lines.append(f"\n- error: {r['bench_config']} {r.get('scenario')}: {r['error']}")
    return lines


# -- pgwrite: 1 vs N instances writing to one PostgreSQL ---------------------------


def pg_scalar(dsn: str, sql: str) -> int:
    """One integer from ``sql`` on ``dsn`` (psycopg2, else psql)."""
    try:
        import psycopg2
    except ImportError:
        out = subprocess.run(
            ["psql", dsn, "-At", "-c", sql], capture_output=True, text=True, timeout=60, check=True
        )
        return int(out.stdout.strip() or 0)
    conn = psycopg2.connect(dsn, connect_timeout=10)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            row = cur.fetchone()
            return int(row[0] or 0) if row else 0
    finally:
        conn.close()


class LockSampler(threading.Thread):
    """Every 0.1 s: the run's database's backends, and for those waiting on a
    lock, what they wait for (the relation, or the lock type); advisory locks
    held. Evidence that the write path has no lock common to every writer."""

    SQL = (
        "SELECT a.wait_event_type, a.wait_event, "
        "(SELECT string_agg(DISTINCT coalesce(l.relation::regclass::text, l.locktype), ',') "
        " FROM pg_locks l WHERE l.pid = a.pid AND NOT l.granted), "
        "(SELECT string_agg(((l.classid::bigint << 32) | l.objid::bigint)::text, ',') "
        " FROM pg_locks l WHERE l.pid = a.pid AND l.locktype = 'advisory') "
        "FROM pg_stat_activity a WHERE a.datname = current_database() "
        "AND a.pid <> pg_backend_pid() AND a.state = 'active'"
    )

    def __init__(self, dsn: str) -> None:
        super().__init__(daemon=True)
        self.dsn = dsn
        self.samples = 0
        self.active = 0
        self.waiting = 0
        self.advisory: dict[str, int] = {}
        self.waits: dict[str, int] = {}
        self._halt = threading.Event()

    def run(self) -> None:
        try:
            import psycopg2
        except ImportError:
            return
        conn = psycopg2.connect(self.dsn, connect_timeout=10)
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                while not self._halt.wait(0.1):
                    cur.execute(self.SQL)
                    self.samples += 1
                    for kind, event, on, advisory in cur.fetchall():
                        self.active += 1
                        for key in (advisory or "").split(","):
                            if key:
                                name = "schema" if int(key) == SCHEMA_LOCK_KEY else key
                                self.advisory[name] = self.advisory.get(name, 0) + 1
                        if kind == "Lock":
                            self.waiting += 1
                            key = f"{event} on {on or '?'}"
                            self.waits[key] = self.waits.get(key, 0) + 1
        except Exception as e:  # the database went away at the end of the step
            log(f"lock sampler stopped: {e}")
        finally:
            conn.close()

    def stop(self) -> dict[str, Any]:
        self._halt.set()
        self.join(5)
        return {
            "samples": self.samples,
            "active_backends": self.active,
            "lock_waits": self.waiting,
            "advisory_locks": self.advisory,
            "waits": self.waits,
        }


def run_pgwrite(runner: Runner, args: argparse.Namespace, admin_dsn: str) -> list[dict[str, Any]]:
    """Persisted messages/s of 1 and N parkchat instances (``parkchat-workers``,
    the kernel spreading connections over them, the Redis bus between them)
    on one PostgreSQL database, ``--pgwrite-rooms`` rooms of 2 members at
    rising rates until the median p99 exceeds 50 ms or fewer than 95 % of
    the messages are persisted (or delivered)."""
    rows: list[dict[str, Any]] = []
    if not redis_reachable():
        log(f"pgwrite: no Redis at {REDIS_URL}; skipped")
        return rows
    for n in args.pgwrite_instances:
        with ThrowawayPostgres(admin_dsn) as pg:
            tag = f"pcbpg{uuid.uuid4().hex[:8]}"
            template = workers_template(n, pg.dsn, f"{REDIS_URL}?prefix={tag}")
            for rate in args.pgwrite_rates:
                tries = [
                    pgwrite_try(runner, args, n, template, pg.dsn, tag, rate, k)
                    for k in range(1, args.ingest_tries + 1)
                ]
                p99s = [t["p99"] for t in tries if isinstance(t["p99"], int | float)]
                median_p99 = statistics.median(p99s) if len(p99s) == len(tries) else None
                held = median_p99 is not None and median_p99 <= INGEST_P99_MS
                held = held and all(t["complete"] for t in tries)
                for t in tries:
                    t["held"] = held
                rows += tries
                runner.raw.write(
                    json.dumps({"pgwrite_step": [strip_result(t) for t in tries]}) + "\n"
                )
                log(
                    f"pgwrite instances={n} {rate}/s: persisted/s "
                    f"{[t['persisted_per_s'] for t in tries]}, p99 {[t['p99'] for t in tries]} "
                    f"-> {'held' if held else 'NOT held'}"
                )
                if not held:
                    break
    return rows


def pgwrite_try(
    runner: Runner,
    args: argparse.Namespace,
    instances: int,
    template: str,
    dsn: str,
    tag: str,
    rate: int,
    attempt: int,
) -> dict[str, Any]:
    count = "SELECT count(*) FROM messages WHERE type = 'chat'"
    before = pg_scalar(dsn, count) if _has_messages(dsn) else 0
    extra = loadgen_args(args, "ingest")
    extra += ["--rooms", str(args.pgwrite_rooms), "--members", "2", "--rate", str(rate)]
    sampler = LockSampler(dsn)
    sampler.start()
    try:
        res = runner.bench(
            "run",
            ["--server", template, "--scenario", "rooms", "--server-cpu", "", "--client-cpu", ""],
            extra,
            {"server": f"pgwrite-{instances}@{rate}#{attempt}"},
            sampler_marker=tag,
        )
    finally:
        locks = sampler.stop()
    r = next((x for x in res if "summary" not in x), {"error": "no result"})
    warmup = 1.0 if args.quick else 2.0
    window = float(r.get("window_s") or 0)
    expected = rate * (warmup + window) - int(r.get("skipped_sends") or 0)
    persisted = pg_scalar(dsn, count) - before
    target = float(r.get("target_deliveries_per_s") or rate * 2)
    delivered = float(r.get("deliveries_per_s") or 0)
    return {
        "instances": instances,
        "rate": rate,
        "try": attempt,
        "result": r,
        "locks": locks,
        "p99": get(r, "latency_ms.p99"),
        "persisted": persisted,
        "expected": round(expected),
        "persisted_per_s": round(persisted / (warmup + window)) if window else None,
        "delivery_ratio": round(delivered / target, 3) if target else None,
        "complete": (
            "error" not in r
            and delivered >= INGEST_MIN_DELIVERY * target
            and persisted >= INGEST_MIN_DELIVERY * expected
        ),
    }


def _has_messages(dsn: str) -> bool:
    return bool(pg_scalar(dsn, "SELECT count(*) FROM pg_tables WHERE tablename = 'messages'"))


def pgwrite_lines(rows: list[dict[str, Any]], args: argparse.Namespace) -> list[str]:
    if not rows:
        return []
    best = {
        n: max(
            (r["persisted_per_s"] or 0 for r in rows if r["instances"] == n and r["held"]),
            default=None,
        )
        for n in dict.fromkeys(r["instances"] for r in rows)
    }
    lines = [
        "",
        f"Highest persisted rate that held ({args.pgwrite_rooms} rooms x 2 members, median p99 "
        f"<= {INGEST_P99_MS:g} ms, >= {INGEST_MIN_DELIVERY:.0%} delivered and persisted): "
        + "; ".join(
            f"{n} instance{'s' if n > 1 else ''} **{v:,} msg/s**" if v else f"{n}: none"
            for n, v in best.items()
        ),
        "",
        "| instances | send rate msg/s | try | deliveries/s / target | p50 ms | p99 ms "
        "| persisted / sent | persisted msg/s | server CPU, all processes | loadgen cpu_util "
        "| lock waits / active backends sampled | advisory locks seen (key: samples) "
        "| rate held |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        r = row["result"]
        locks = row["locks"]
        if "error" in r:
            lines.append(
                f"| {row['instances']} | {row['rate']:,} | {row['try']} | error: {r['error']} "
                "| | | | | | | | | no |"
            )
            continue
        lines.append(
            "| "
            + " | ".join(
                [
                    str(row["instances"]),
                    f"{row['rate']:,}",
                    str(row["try"]),
                    f"{fmt(r.get('deliveries_per_s'), 0)} / "
                    + fmt(r.get("target_deliveries_per_s"), 0),
                    fmt(get(r, "latency_ms.p50"), 2),
                    fmt(get(r, "latency_ms.p99"), 2),
                    f"{row['persisted']:,} / {row['expected']:,}",
                    fmt(row["persisted_per_s"], 0),
                    fmt(get(r, "processes.cpu_util_total"), 2),
                    fmt(get(r, "loadgen.cpu_util"), 2),
                    f"{locks.get('lock_waits', 0)} / {locks.get('active_backends', 0)}",
                    ", ".join(f"{k}: {v}" for k, v in locks.get("advisory_locks", {}).items())
                    or "none",
                    "yes" if row["held"] else "**no**",
                ]
            )
            + " |"
        )
    waits: dict[str, int] = {}
    for row in rows:
        for key, value in row["locks"].get("waits", {}).items():
            waits[key] = waits.get(key, 0) + value
    lines += [
        "",
        "Lock waits sampled every 0.1 s in `pg_stat_activity` (backends of the run's database "
        "waiting on a lock, and what for), summed over all steps: "
        + (", ".join(f"{k}: {v}" for k, v in sorted(waits.items())) or "none")
        + ". Advisory locks: the `pg_locks` rows of type `advisory` held by those backends, "
        "sampled from the servers' start (`schema` = the lock instances take while they "
        "create or upgrade the schema at start-up; any other key would be a lock in the "
        "write path).",
    ]
    return lines


# -- main ------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--harness", type=Path, default=REPO.parent / "shared" / "bench")
    ap.add_argument("--scenarios", default=",".join(ALL_SCENARIOS))
    ap.add_argument("--repeat", type=int, default=2, help="runs per server and scenario [2]")
    ap.add_argument("--quick", action="store_true", help="smoke run: 3 s windows, 1000 idle")
    ap.add_argument(
        "--default-access-log",
        action="store_true",
        help="run parkchat with the default access log (the server log) instead of a file",
    )
    ap.add_argument("--connections", type=int, default=None, help="idle connections [5000]")
    ap.add_argument("--users", type=int, default=None, help="loadgen --users [100; quick 20]")
    ap.add_argument("--postgres", metavar="DSN", help="admin DSN: also run parkchat on PostgreSQL")
    ap.add_argument(
        "--ingest-rates",
        default=",".join(str(r) for r in INGEST_RATES),
        help="comma list of msg/s, tried in order until one fails",
    )
    ap.add_argument("--ingest-rooms", type=int, default=500)
    ap.add_argument(
        "--ingest-tries",
        type=int,
        default=1,
        help="ingest: runs per rate; a rate holds on the median p99 [1]",
    )
    ap.add_argument(
        "--no-ingest-reference",
        action="store_true",
        help="ingest: skip the raw Twisted reference's ramp",
    )
    ap.add_argument("--worker-counts", default="1,2", help="parkchat-workers sizes [1,2]")
    ap.add_argument(
        "--pgwrite-instances", default="1,3", help="pgwrite: instance counts to compare [1,3]"
    )
    ap.add_argument(
        "--pgwrite-rates",
        default=",".join(str(r) for r in PGWRITE_RATES),
        help="pgwrite: comma list of msg/s, tried in order until one fails",
    )
    ap.add_argument("--pgwrite-rooms", type=int, default=300, help="pgwrite: rooms of 2 [300]")
    ap.add_argument("--timeout", type=float, default=600, help="per loadgen run [600]")
    ap.add_argument("--out", default=str(REPO / "docs" / "performance.md"), help="'-': none")
    ap.add_argument("--results", type=Path, default=REPO / "bench" / "results")
    args = ap.parse_args(argv)
    if args.default_access_log:
        global DEFAULT_ACCESS_LOG
        DEFAULT_ACCESS_LOG = True
    args.scenarios = [s for s in args.scenarios.split(",") if s]
    bad = set(args.scenarios) - set(ALL_SCENARIOS)
    if bad:
        ap.error(f"unknown scenarios {sorted(bad)}; choose from {','.join(ALL_SCENARIOS)}")
    if not 1 <= args.repeat <= 20:
        ap.error("--repeat must be 1-20")
    args.ingest_rates = [int(r) for r in args.ingest_rates.split(",") if r][:12]
    if not 1 <= args.ingest_tries <= 5:
        ap.error("--ingest-tries must be 1-5")
    args.worker_counts = [int(n) for n in args.worker_counts.split(",") if n][:4]
    args.pgwrite_instances = [int(n) for n in args.pgwrite_instances.split(",") if n][:4]
    args.pgwrite_rates = [int(r) for r in args.pgwrite_rates.split(",") if r][:12]
    if args.connections is None:
        args.connections = 1000 if args.quick else 5000
    if args.users is None and args.quick:
        args.users = 20
    if args.quick and "--repeat" not in (argv if argv is not None else sys.argv):
        args.repeat = 1
    args.harness = args.harness.resolve()
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    prepare_harness(args.harness)
    started = dt.datetime.now(dt.UTC)
    info = machine()
    info["commit"] = git_describe()
    results_dir = args.results / f"{started:%Y-%m-%d}"
    results_dir.mkdir(parents=True, exist_ok=True)
    raw_path = results_dir / f"run-{started:%H%M%S}.jsonl"
    invocation = shlex.join(
        [Path(sys.executable).name, "bench/run.py", *(sys.argv[1:] if argv is None else argv)]
    )
    runner = Runner(args, raw_path)
    runner.raw.write(json.dumps({"run": invocation, "machine": info, "date": str(started)}) + "\n")
    workdir = Path(tempfile.mkdtemp(prefix="parkchat-bench-"))
    harness_results: list[dict[str, Any]] = []
    ingest_rows: list[dict[str, Any]] = []
    worker_results: list[dict[str, Any]] = []
    pgwrite_rows: list[dict[str, Any]] = []
    pgwrite_commands: list[str] = []
    pg_note = ""
    try:
        scenarios = [s for s in args.scenarios if s in HARNESS_SCENARIOS]
        if scenarios:
            if args.postgres:
                with ThrowawayPostgres(args.postgres) as pg:
                    pg_note = f"throwaway database {pg.name} on {urlsplit(args.postgres).hostname}"
                    harness_results = run_harness_scenarios(runner, args, scenarios, pg.dsn)
            else:
                harness_results = run_harness_scenarios(runner, args, scenarios, None)
        bench_commands = list(runner.commands)
        if "ingest" in args.scenarios:
            ingest_rows = run_ingest(runner, args, workdir)
        ingest_commands = runner.commands[len(bench_commands) :]
        if "workers" in args.scenarios:
            worker_results = run_workers(runner, args, workdir)
        worker_commands = runner.commands[len(bench_commands) + len(ingest_commands) :]
        done = len(bench_commands) + len(ingest_commands) + len(worker_commands)
        if "pgwrite" in args.scenarios:
            if args.postgres:
                pgwrite_rows = run_pgwrite(runner, args, args.postgres)
            else:
                log("pgwrite needs --postgres ADMIN_DSN; skipped")
        pgwrite_commands = runner.commands[done:]
    finally:
        runner.close()
        shutil.rmtree(workdir, ignore_errors=True)
    log(f"raw results: {raw_path}")

    header = machine_lines(info, started, args.quick)
    rel_raw = os.path.relpath(raw_path, REPO)
    sections: list[tuple[str, str, list[str]]] = []
    if harness_results or ingest_rows:
        configs = ["twisted", "parkchat-sqlite"] + (["parkchat-postgres"] if args.postgres else [])
        body = [
            "",
            f"Generated by `{invocation}` (raw JSON lines: `{rel_raw}`, not committed).",
            "",
            *header,
            "- servers: `twisted` = the shared harness's raw Twisted + Autobahn reference "
            "(no storage, plain-text passwords); `parkchat-sqlite` = parkchat with every "
            f"feature on, SQLite, bcrypt cost {BCRYPT_ROUNDS}, only the three per-user/per-IP "
            "limits off"
            + (f"; `parkchat-postgres` = the same on PostgreSQL ({pg_note})" if pg_note else ""),
            f"- each cell: median (min-max) of {args.repeat} run(s); ratio = parkchat median / "
            "reference median (above 1 is better for rates, worse for latency and memory)",
            "",
        ]
        if harness_results:
            body += harness_table(harness_results, configs)
        body += ingest_lines(ingest_rows, args)
        body += ["", "Commands (run by bench/run.py):", "", "```sh"]
        body += bench_commands + ingest_commands + ["```", ""]
        sections.append(("bench", "parkchat vs the raw Twisted/Autobahn stack", body))
    if worker_results:
        body = [
            "",
            f"Generated by `{invocation}` (raw JSON lines: `{rel_raw}`).",
            "",
            *header,
            "- `workers=1`: one parkchat behind `parkchat-workers` (no Redis), server pinned to "
            "CPU 0 and load generator to CPU 1; `workers=N>1`: N processes on one socket with "
            "the Redis bus, nothing pinned (server, Redis and load generator share both cores)",
            "- bench.py measures one process; the `all processes` rows are summed from "
            "/proc/PID/stat over the launcher and every worker by bench/run.py, over the "
            "window that ends when the load generator exits; redis-server is shown apart",
            "",
            *workers_lines(worker_results, args),
            "",
            "```sh",
            *worker_commands,
            "```",
            "",
        ]
        sections.append(("workers", "Using both cores", body))
    if pgwrite_rows:
        body = [
            "",
            f"Generated by `{invocation}` (raw JSON lines: `{rel_raw}`).",
            "",
            *header,
            "- each instance count on a fresh PostgreSQL database; the instances are "
            "`parkchat-workers --workers N` on one socket (the kernel spreads the connections, "
            "so the two members of a room are often on different instances) with the Redis bus, "
            "nothing pinned: servers, PostgreSQL, Redis and the load generator share the cores",
            "- persisted = chat rows added to the database during the step, counted after it; "
            "sent = rate x (warm-up + window) minus skipped sends",
            "",
            *pgwrite_lines(pgwrite_rows, args),
            "",
            "```sh",
            *pgwrite_commands,
            "```",
            "",
        ]
        sections.append(("pgwrite", "Write throughput: 1 vs 3 instances on one PostgreSQL", body))
    summary = results_dir / f"run-{started:%H%M%S}.md"
    summary.write_text("\n".join(line for _, _, body in sections for line in body) + "\n")
    if args.out != "-":
        for name, title, body in sections:
            replace_section(Path(args.out), name, title, body)
    log(f"summary: {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
