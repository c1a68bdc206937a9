#!/usr/bin/env python3
"""Is there a lock common to every writer left in parkchat's write path?

Runs parkchat's own batch insert (``insert_messages_txn``: bump each room's
counter row in ``room_sequences``, insert the rows with their seqs, commit),
as the group-commit writer of each instance does, from 1 and from 3 writer
processes at once (three instances) on one fresh PostgreSQL database, in
batches of ``--batch`` messages spread over ``--rooms`` rooms, for
``--seconds`` each; and, for comparison, the same with a deployment-wide lock
taken in every batch (``pg_advisory_xact_lock``, what every write did before
schema version 4). Without the server, the WebSocket and Redis in the way,
this isolates the database: if the writers serialised on one lock, three
would store no more than one.

Usage (repository root, the project's venv; a PostgreSQL whose user may
create databases)::

    python bench/pg_writers.py
    python bench/pg_writers.py --batch 10 --rooms 300 --seconds 10
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import sys
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def writer(dsn: str, args: argparse.Namespace, lock: bool, seed: int, out: Any) -> None:
    """Batches until the time is up; puts (messages, batches, lock waits)."""
    import psycopg2

    from parkchat.model import Message
    from parkchat.store.postgres import POSTGRES
    from parkchat.store.sql.messages import insert_messages_txn

    rng = random.Random(seed)
    rooms = [f"room{i}" for i in range(args.rooms)]
    conn = psycopg2.connect(dsn)
    messages = batches = 0
    waited = 0.0
    try:
        deadline = time.monotonic() + args.seconds
        while time.monotonic() < deadline:
            batch = [
                Message(
                    room=rng.choice(rooms),
                    nickname=f"w{seed}",
                    content="x" * args.size,
                    timestamp_ms=int(time.time() * 1000),
                )
                for _ in range(args.batch)
            ]
            with conn, conn.cursor() as cursor:
                if lock:
                    begin = time.monotonic()
                    cursor.execute("SELECT pg_advisory_xact_lock(%s)", (1_300_013,))
                    waited += time.monotonic() - begin
                insert_messages_txn(cursor, POSTGRES, batch)
            messages += len(batch)
            batches += 1
    finally:
        conn.close()
    out.put((messages, batches, waited))


class LockWaits(threading.Thread):
    """Every 20 ms: how many of the database's active backends wait on a
    lock (any lock: the advisory one, or a room's counter row)."""

    def __init__(self, dsn: str) -> None:
        super().__init__(daemon=True)
        self.dsn = dsn
        self.active = 0
        self.waiting = 0
        self.halt = threading.Event()

    def run(self) -> None:
        import psycopg2

        conn = psycopg2.connect(self.dsn)
        conn.autocommit = True
        try:
            with conn.cursor() as cursor:
                while not self.halt.wait(0.02):
                    cursor.execute(
                        "SELECT count(*), count(*) FILTER (WHERE wait_event_type = 'Lock') "
                        "FROM pg_stat_activity WHERE datname = current_database() "
                        "AND pid <> pg_backend_pid() AND state = 'active'"
                    )
                    active, waiting = cursor.fetchone()
                    self.active += active
                    self.waiting += waiting
        finally:
            conn.close()


def run(dsn: str, args: argparse.Namespace, writers: int, lock: bool) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    sampler = LockWaits(dsn)
    sampler.start()
    queue = ctx.Queue()
    procs = [
        ctx.Process(target=writer, args=(dsn, args, lock, seed, queue)) for seed in range(writers)
    ]
    for proc in procs:
        proc.start()
    results = [queue.get(timeout=args.seconds + 60) for _ in procs]
    for proc in procs:
        proc.join(30)
    sampler.halt.set()
    sampler.join(10)
    messages = sum(r[0] for r in results)
    return {
        "writers": writers,
        "lock": lock,
        "messages_per_s": round(messages / args.seconds),
        "commits_per_s": round(sum(r[1] for r in results) / args.seconds),
        "lock_wait_share": round(sum(r[2] for r in results) / (writers * args.seconds), 2),
        "waiting_share": round(sampler.waiting / sampler.active, 2) if sampler.active else None,
    }


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--batch", type=int, default=10, help="messages per transaction [10]")
    ap.add_argument("--rooms", type=int, default=300, help="rooms written [300]")
    ap.add_argument("--seconds", type=float, default=10.0, help="per run [10]")
    ap.add_argument("--size", type=int, default=64, help="content characters [64]")
    ap.add_argument("--writers", default="1,3", help="writer counts [1,3]")
    ap.add_argument(
        "--postgres",
        default=os.environ.get(
            "PARKCHAT_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    args = ap.parse_args()
    if not (1 <= args.batch <= 500 and 1 <= args.rooms <= 100_000 and args.seconds <= 120):
        ap.error("--batch 1..500, --rooms 1..100000, --seconds <= 120")
    counts = [int(n) for n in args.writers.split(",") if n][:4]
    from parkchat.store.postgres import prepare_postgres
    from tests.postgres_support import create_database

    load = os.getloadavg()[0]
    rows = []
    with ExitStack() as cleanups:
        for lock in (False, True):
            for n in counts:
                dsn = create_database(cleanups.callback, args.postgres, "parkchat_writers")
                prepare_postgres(dsn)
                rows.append(run(dsn, args, n, lock))
                print(rows[-1], file=sys.stderr, flush=True)
    print(
        f"\n{args.rooms} rooms, batches of {args.batch} messages of {args.size} characters, "
        f"{args.seconds:g} s per run; load average (1 min) {load:.2f} before, "
        f"{os.getloadavg()[0]:.2f} after\n"
    )
    print(
        "| writers (instances) | lock common to all writers | messages/s | commits/s "
        "| writers' time waiting for that lock | active backends waiting on any lock "
        "(sampled) |"
    )
    print("|---:|---|---:|---:|---:|---:|")
    for row in rows:
        wait = f"{row['lock_wait_share']:.0%}" if row["lock"] else "-"
        lock = "yes (`pg_advisory_xact_lock`, as before v4)" if row["lock"] else "no (parkchat now)"
        print(
            f"| {row['writers']} | {lock} | {row['messages_per_s']:,} | {row['commits_per_s']:,} "
            f"| {wait} | {row['waiting_share']:.0%} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
