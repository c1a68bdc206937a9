#!/usr/bin/env python3
"""Delivery under faults at 100 messages/s per instance: lost, duplicated,
and the time every client takes to catch up after each fault.

The chaos test of CI (``tests/test_chaos.py``) at benchmark load: three
``twistd -n parkchat`` instances on a fresh PostgreSQL database and a Redis
of the run's own (a ``redis-server`` on a free loopback port, killed and
restarted by the run; the shared Redis is never touched), 18 clients in three
rooms on every surface (``/ws`` resuming with ``last_seq``, ``/ws/{room}``
with ``?since=`` and plain, TCP, ``/mychat``), sending ``--rate`` messages/s
per instance; Redis SIGKILLed and restarted twice, ``pg_terminate_backend``
on the run's database, one instance SIGKILLed and restarted. Every client's
received sequence is then compared with the stored one
(``tests/delivery_support.py``).

Catch-up after a fault: from the moment the fault ended (Redis accepting
connections again; the killed instance healthy again; the backends
terminated) until every client had every message stored up to that moment
(polled every 50 ms, so +-50 ms).

Usage, from the repository root with the project's venv (stdlib + the test
dependencies; needs ``redis-server`` on the PATH and a PostgreSQL whose user
may create databases)::

    python bench/delivery.py                       # 100 msg/s per instance
    python bench/delivery.py --rate 100 --write docs/performance.md
    python bench/delivery.py --rate 30 --steady 3  # the CI test's load, quicker

Exit status 1 if any message was lost or duplicated (or any other problem).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.delivery_support import Config, Report, run_chaos  # noqa: E402
from tests.postgres_support import create_database  # noqa: E402
from tests.redis_support import PrivateRedis  # noqa: E402

HEADING = "## Delivery under faults"


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
        f"{os.cpu_count()} cores ({cpu}), {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}"
    )


def version(command: list[str]) -> str:
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=10)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return "?"


def render(report: Report, args: argparse.Namespace, load: tuple[float, float]) -> str:
    cfg = report.config
    others = sum(1 for p in report.failures if p.kind not in ("missing", "duplicate"))
    warnings = len(report.problems) - len(report.failures)
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        HEADING,
        "",
        "Measured by `bench/delivery.py`: the CI chaos test (`tests/test_chaos.py`) at "
        f"{cfg.rate_per_instance:g} messages/s per instance. {cfg.instances} `twistd -n parkchat` "
        "instances on one fresh PostgreSQL database and a Redis of the run's own; "
        f"{report.clients} clients in {len(cfg.rooms)} rooms on every surface (`/ws` resuming "
        "with `last_seq`, some with a small `max_frame`; `/ws/{room}` with `?since=` and "
        "plain; TCP; `/mychat`); the faults in order, "
        f"{cfg.steady:g} s of traffic before and after each. Every client's received "
        "sequence per room is compared with the stored one over the span it was owed "
        "(from its join, through its resumes).",
        "",
        "| fault | stored during the fault | catch-up: every client has everything (s) |",
        "|---|---:|---:|",
    ]
    for fault in report.faults:
        took = f"{fault.converged_s:.2f}" if fault.converged_s is not None else "**never**"
        name = fault.name + (f" {fault.detail}" if fault.detail else "")
        lines.append(f"| {name} | {fault.stored_during} | {took} |")
    lines += [
        "",
        f"* Messages sent {report.sent}, stored {sum(report.stored.values())}; deliveries "
        f"owed {report.expected}, received {report.delivered} (acks of a `/ws` sender's own "
        "messages included, and what a resume replays of them again); resumes "
        f"{report.resumes}, replaying {report.replayed} messages in {report.pages} frames.",
        f"* **Lost {report.lost()}, duplicated {report.duplicated()}**, other problems "
        f"{others}, warnings {warnings}.",
        "* Catch-up: from the end of the fault (Redis accepting connections again; the killed "
        "instance answering `/health` again; the backends terminated) until every client "
        "had every message stored up to then (polled every 50 ms).",
    ]
    if report.errors:
        lines.append(f"* Error frames or lines clients received: {dict(report.errors)}.")
    if report.server_counters:
        filled = [int(c.get("parkchat_messages_filled_total", 0)) for c in report.server_counters]
        dropped = [
            int(c.get("parkchat_duplicates_dropped_total", 0)) for c in report.server_counters
        ]
        lines.append(
            f"* Per instance, at the end (instance {cfg.victim} counts since its restart): "
            f"messages delivered from the database because the bus did not bring them in "
            f"order (`parkchat_messages_filled_total`) {filled}; bus copies dropped as already "
            f"delivered (`parkchat_duplicates_dropped_total`) {dropped}."
        )
    lines += [
        f"* Date: {when}",
        f"* Machine: {machine()}",
        f"* Load average (1 min) before and after: {load[0]:.2f}, {load[1]:.2f}",
        f"* Services: {version(['redis-server', '--version'])}; {version(['psql', '--version'])}",
        f"* Command: `{args.command}`",
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


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rate", type=float, default=100.0, help="msg/s per instance [100]")
    ap.add_argument("--steady", type=float, default=5.0, help="s of traffic around faults [5]")
    ap.add_argument("--redis-down", type=float, default=5.0, help="s Redis stays down [5]")
    ap.add_argument("--instance-down", type=float, default=3.0, help="s the victim is down [3]")
    ap.add_argument(
        "--faults",
        default="redis,postgres,instance,redis",
        help="comma list of redis, postgres, instance [redis,postgres,instance,redis]",
    )
    ap.add_argument(
        "--postgres",
        default=os.environ.get(
            "PARKCHAT_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
        help="a PostgreSQL URL whose user may create databases",
    )
    ap.add_argument("--padding", type=int, default=0, help="characters added to each message")
    ap.add_argument(
        "--server-args",
        default="",
        help="further parkchat options for every instance, e.g. '--resume-max 50'",
    )
    ap.add_argument("--deadline", type=float, default=600.0, help="bound on the whole run [600]")
    ap.add_argument("--write", type=Path, help="put the results into this Markdown file")
    ap.add_argument("--quiet", action="store_true", help="no progress on stderr")
    args = ap.parse_args()
    args.command = shlex.join(["python", "bench/delivery.py", *sys.argv[1:]])
    faults = tuple(f for f in args.faults.split(",") if f)
    if set(faults) - {"redis", "postgres", "instance"} or len(faults) > 10:
        ap.error("--faults: up to 10 of redis, postgres, instance")
    config = Config(
        rate_per_instance=args.rate,
        steady=args.steady,
        redis_down=args.redis_down,
        instance_down=args.instance_down,
        faults=faults,
        padding=args.padding,
        server_args=tuple(shlex.split(args.server_args)),
        converge_timeout=60.0,
        deadline=args.deadline,
        verbose=not args.quiet,
    )
    load_before = os.getloadavg()[0]
    workdir = Path(tempfile.mkdtemp(prefix="parkchat-delivery-"))
    with ExitStack() as cleanups:
        cleanups.callback(shutil.rmtree, workdir, ignore_errors=True)
        db = create_database(cleanups.callback, args.postgres, "parkchat_delivery")
        redis = PrivateRedis(str(workdir / "redis"))
        redis.start()
        cleanups.callback(redis.kill)
        report = run_chaos(config, workdir, db, redis, cleanups.callback)
    load_after = os.getloadavg()[0]
    print(report.explain() if report.problems else report.summary())
    section = render(report, args, (load_before, load_after))
    print()
    print(section)
    if args.write:
        write_section(args.write, section)
        print(f"wrote {HEADING!r} to {args.write}", file=sys.stderr)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
