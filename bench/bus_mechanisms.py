#!/usr/bin/env python3
"""Which bus for parkchat: Redis pub/sub + store fill, Redis Streams, or NATS
JetStream? Measures what decides it on this machine.

One publisher and three subscribers (three instances), ~250-byte payloads
(a room event's size), on servers of the run's own (a ``redis-server`` and,
with ``nats-py`` installed, a ``nats-server -js`` on free loopback ports,
stopped at the end; the shared ones are not touched):

* **latency**: ``--messages`` at ``--rate`` per second, publish -> delivery
  at each subscriber (one process, one monotonic clock): p50/p99/max;
* **throughput**: ``--burst`` messages published back to back (pipelined; for
  JetStream with up to 256 acknowledgements outstanding): messages/s until
  all three subscribers had all of them;
* for each mechanism, with the client a Twisted parkchat could use:
  ``PUBLISH``/``SUBSCRIBE`` with txredisapi (what parkchat does),
  ``XADD``/``XREAD BLOCK`` with txredisapi's raw ``execute_command`` (it has
  no stream helpers), core NATS and JetStream (file storage, an ordered push
  consumer per subscriber) with nats-py (asyncio: there is no maintained
  Twisted NATS client);
* **catch-up**: reading ``--missed`` messages of one room back in pages of
  200, from PostgreSQL through parkchat's store (``room_messages_after``:
  the store fill every mechanism needs after a restart of the bus) and, for
  comparison, from a Redis stream (``XRANGE``).

Usage (repository root, the project's venv; ``pip install nats-py`` for the
NATS rows)::

    python bench/bus_mechanisms.py
    python bench/bus_mechanisms.py --messages 5000 --rate 2000 --burst 20000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.e2e_support import free_port  # noqa: E402

SUBSCRIBERS = 3


def payload(i: int, size: int) -> bytes:
    head = f"{i}|{time.perf_counter():.9f}|".encode()
    return head + b"x" * max(0, size - len(head))


def sent_at(data: bytes) -> tuple[int, float]:
    i, t, _ = data.split(b"|", 2)
    return int(i), float(t)


class Tally:
    """Arrivals at one subscriber: latency per message, count."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.count = 0
        self.seen: set[int] = set()
        self.dups = 0

    def arrived(self, data: bytes) -> None:
        now = time.perf_counter()
        i, t = sent_at(data)
        if i in self.seen:
            self.dups += 1
        self.seen.add(i)
        self.count += 1
        self.latencies.append((now - t) * 1000)

    def reset(self) -> None:
        self.__init__()  # type: ignore[misc]


def summary(tallies: list[Tally], expected: int) -> dict[str, Any]:
    values = sorted(v for t in tallies for v in t.latencies)
    if not values:
        return {"delivered": 0}

    def pct(q: float) -> float:
        return round(values[min(len(values) - 1, int(q * len(values)))], 3)

    return {
        "delivered": sum(t.count for t in tallies),
        "expected": expected * len(tallies),
        "dups": sum(t.dups for t in tallies),
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "max_ms": round(values[-1], 3),
    }


#: How the helpers below sleep: asyncio's for the NATS half, Twisted's (a
#: ``deferLater`` on parkchat's own epoll reactor) for the Redis half.
SLEEP: list[Callable[[float], Any]] = [asyncio.sleep]


async def sleep(seconds: float) -> None:
    await SLEEP[0](seconds)


async def paced(count: int, rate: float, send: Callable[[int], Any]) -> None:
    """Call ``send(i)`` ``count`` times at ``rate``/s (deficit every 2 ms)."""
    start = time.perf_counter()
    sent = 0
    while sent < count:
        due = min(count, int((time.perf_counter() - start) * rate) + 1)
        while sent < due:
            result = send(sent)
            if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
                await result
            sent += 1
        await sleep(0.002)


async def until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not within {timeout} s")
        await sleep(0.001)


# -- servers of the run's own ---------------------------------------------------------


class Server:
    def __init__(self, argv: list[str], port: int, directory: Path) -> None:
        self.port = port
        log = (directory / f"{Path(argv[0]).name}.log").open("ab")
        self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    self.stop()
                    raise RuntimeError(f"{argv[0]} did not start") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


# -- NATS (asyncio, nats-py) ---------------------------------------------------------


async def nats_runs(port: int, args: argparse.Namespace) -> dict[str, Any]:
    import nats
    from nats.js.api import StorageType

    url = f"nats://127.0.0.1:{port}"
    results: dict[str, Any] = {}
    publisher = await nats.connect(url)
    subscribers = [await nats.connect(url) for _ in range(SUBSCRIBERS)]
    try:
        # Core NATS: fire and forget, like Redis PUBLISH.
        tallies = [Tally() for _ in subscribers]
        for conn, tally in zip(subscribers, tallies, strict=True):

            async def core_cb(msg: Any, tally: Tally = tally) -> None:
                tally.arrived(msg.data)

            await conn.subscribe("room.core", cb=core_cb)
        await publisher.flush()
        for conn in subscribers:
            await conn.flush()
        results["nats-core"] = await measure(
            tallies,
            args,
            lambda i: publisher.publish("room.core", payload(i, args.size)),
            flush=publisher.flush,
        )
        # JetStream: durable (file storage), acknowledged publishes; each
        # subscriber an ordered push consumer from "new".
        js = publisher.jetstream()
        stream = f"BENCH{os.getpid()}"
        await js.add_stream(name=stream, subjects=[f"{stream}.>"], storage=StorageType.FILE)
        try:
            tallies = [Tally() for _ in subscribers]
            for conn, tally in zip(subscribers, tallies, strict=True):

                async def js_cb(msg: Any, tally: Tally = tally) -> None:
                    tally.arrived(msg.data)

                await conn.jetstream().subscribe(f"{stream}.room", cb=js_cb, ordered_consumer=True)
            subject = f"{stream}.room"

            async def burst_publish(count: int) -> None:
                for start in range(0, count, 256):
                    await asyncio.gather(
                        *(
                            js.publish(subject, payload(i, args.size))
                            for i in range(start, min(count, start + 256))
                        )
                    )

            results["jetstream"] = await measure(
                tallies,
                args,
                lambda i: js.publish(subject, payload(i, args.size)),
                burst=burst_publish,
            )
        finally:
            await js.delete_stream(stream)
    finally:
        for conn in [publisher, *subscribers]:
            await conn.close()
    return results


async def measure(
    tallies: list[Tally],
    args: argparse.Namespace,
    send_one: Callable[[int], Any],
    flush: Callable[[], Any] | None = None,
    burst: Callable[[int], Any] | None = None,
) -> dict[str, Any]:
    """The latency run at ``--rate``, then the burst for throughput."""
    await paced(args.messages, args.rate, send_one)
    await until(
        lambda: all(t.count >= args.messages for t in tallies), 30, "latency-run deliveries"
    )
    latency = summary(tallies, args.messages)
    for tally in tallies:
        tally.reset()
    start = time.perf_counter()
    if burst is not None:
        await burst(args.burst)
    else:
        for i in range(args.burst):
            result = send_one(i)
            if asyncio.iscoroutine(result):
                await result
        if flush is not None:
            await flush()
    await until(lambda: all(t.count >= args.burst for t in tallies), 60, "burst deliveries")
    seconds = time.perf_counter() - start
    return {"latency": latency, "throughput_msg_s": round(args.burst / seconds)}


# -- Redis and PostgreSQL (Twisted, txredisapi, parkchat's store) ----------------------


def twisted_runs(redis_port: int, args: argparse.Namespace) -> dict[str, Any]:
    """Run the Redis and PostgreSQL half on Twisted's default (epoll)
    reactor, as parkchat runs."""
    from twisted.internet import reactor
    from twisted.internet.defer import Deferred
    from twisted.internet.task import deferLater

    SLEEP[0] = lambda seconds: deferLater(reactor, seconds)  # type: ignore[arg-type]
    results: dict[str, Any] = {}

    async def main() -> None:
        results.update(await redis_runs(redis_port, args))
        if args.postgres:
            results["store-fill"] = await store_fill(args)

    def start() -> None:
        d = Deferred.fromCoroutine(main())
        d.addErrback(lambda f: results.setdefault("error", f.getTraceback()))
        d.addBoth(lambda _: reactor.stop())  # type: ignore[attr-defined]

    reactor.callWhenRunning(start)  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]
    return results


async def redis_runs(port: int, args: argparse.Namespace) -> dict[str, Any]:
    from twisted.internet import reactor
    from twisted.internet.defer import Deferred, gatherResults
    from twisted.internet.endpoints import TCP4ClientEndpoint

    import txredisapi

    results: dict[str, Any] = {}

    def endpoint() -> Any:
        return TCP4ClientEndpoint(reactor, "127.0.0.1", port)

    class Commands(txredisapi.RedisProtocol):
        # As parkchat's bus does: no Nagle delay on small commands.
        def connectionMade(self) -> Any:
            self.transport.setTcpNoDelay(True)
            return super().connectionMade()

    command_factories: list[Any] = []

    async def command_connection() -> Any:
        factory = txredisapi.RedisFactory(f"127.0.0.1:{port}", 0, 1, isLazy=False)
        factory.protocol = Commands
        factory.continueTrying = False
        factory.startConnecting(endpoint())
        command_factories.append(factory)
        return await factory.deferred

    publisher = await command_connection()

    # -- pub/sub --
    tallies = [Tally() for _ in range(SUBSCRIBERS)]
    factories = []
    for tally in tallies:

        class Sub(txredisapi.SubscriberProtocol):
            def connectionMade(self) -> Any:
                self.transport.setTcpNoDelay(True)
                return super().connectionMade()

            def messageReceived(self, pattern: Any, channel: Any, message: Any, t=tally) -> None:
                t.arrived(message if isinstance(message, bytes) else message.encode())

        factory = txredisapi.SubscriberFactory()
        factory.protocol = Sub
        factory.continueTrying = False
        factory.startConnecting(endpoint())
        protocol = await factory.deferred
        await protocol.subscribe("room:bench")
        factories.append((factory, protocol))

    def publish(i: int) -> Any:
        return publisher.publish("room:bench", payload(i, args.size).decode())

    results["redis-pubsub"] = await measure(tallies, args, publish)
    for factory, _protocol in factories:
        await factory.disconnect()

    # -- streams --
    await publisher.execute_command("DEL", "stream:bench")
    tallies = [Tally() for _ in range(SUBSCRIBERS)]
    readers = [await command_connection() for _ in range(SUBSCRIBERS)]
    stopping = False

    async def read(conn: Any, tally: Tally) -> None:
        last = "$"
        while not stopping:
            reply = await conn.execute_command(
                "XREAD", "BLOCK", "200", "COUNT", "1000", "STREAMS", "stream:bench", last
            )
            if not reply:
                continue
            for _key, entries in reply:
                for entry_id, fields in entries:
                    last = entry_id
                    tally.arrived(fields[1] if isinstance(fields[1], bytes) else fields[1].encode())

    tasks = [Deferred.fromCoroutine(read(c, t)) for c, t in zip(readers, tallies, strict=True)]
    await sleep(0.3)  # every reader is blocked in XREAD on "$"

    def xadd(i: int) -> Any:
        return publisher.execute_command(
            "XADD",
            "stream:bench",
            "MAXLEN",
            "~",
            "100000",
            "*",
            "m",
            payload(i, args.size).decode(),
        )

    results["redis-streams"] = await measure(tallies, args, xadd)
    stopping = True
    await gatherResults(tasks)
    # Catch-up from the stream: XRANGE pages of 200 over the last --missed.
    entries = await publisher.execute_command("XLEN", "stream:bench")
    missed = min(args.missed, int(entries))
    start = time.perf_counter()
    got = 0
    low = "-"
    first = await publisher.execute_command(
        "XREVRANGE", "stream:bench", "+", "-", "COUNT", str(missed)
    )
    low = first[-1][0]
    start = time.perf_counter()
    while got < missed:
        page = await publisher.execute_command("XRANGE", "stream:bench", low, "+", "COUNT", "200")
        if got:
            page = page[1:] if page and page[0][0] == low else page
        if not page:
            break
        got += len(page)
        low = page[-1][0]
    results["stream-catch-up"] = {
        "messages": got,
        "ms": round((time.perf_counter() - start) * 1000, 1),
    }
    for factory in command_factories:
        await factory.disconnect()
    return results


async def store_fill(args: argparse.Namespace) -> dict[str, Any]:
    """Store ``--missed`` messages in one room, then read them back after
    seq 0 in pages of 200 through parkchat's PostgreSQL store, as a delivery
    fill or a resume does."""
    from parkchat.model import Message
    from parkchat.store.postgres import open_postgres
    from tests.postgres_support import create_database

    cleanups: list[Callable[[], Any]] = []
    try:
        dsn = create_database(cleanups.append, args.postgres, "parkchat_busbench")
        store = open_postgres(dsn)
        cleanups.append(lambda: store.close())
        text = "x" * args.size
        now = 1_700_000_000_000
        for start in range(0, args.missed, 500):
            batch = [
                Message(id=0, room="bench", nickname="bench", content=text, timestamp_ms=now)
                for _ in range(start, min(args.missed, start + 500))
            ]
            await store.insert_messages(batch)
        # Warm the pool's connection and the plan, as a running server has.
        await store.room_messages_after("bench", 0, 1)
        timings = []
        for _ in range(3):
            begin = time.perf_counter()
            after, got = 0, 0
            while True:
                page = await store.room_messages_after("bench", after, 200)
                if not page:
                    break
                got += len(page)
                after = page[-1].seq
            timings.append((time.perf_counter() - begin) * 1000)
        return {"messages": got, "ms": round(statistics.median(timings), 1)}
    finally:
        for cleanup in reversed(cleanups):
            result = cleanup()
            if result is not None:
                await result


# -- report ------------------------------------------------------------------------------


def table(results: dict[str, Any], args: argparse.Namespace) -> str:
    names = {
        "redis-pubsub": "Redis PUBLISH/SUBSCRIBE (txredisapi)",
        "redis-streams": "Redis XADD/XREAD BLOCK (txredisapi execute_command)",
        "nats-core": "NATS core publish/subscribe (nats-py)",
        "jetstream": "NATS JetStream, file storage, ordered consumers (nats-py)",
    }
    lines = [
        f"| mechanism | p50 ms | p99 ms | max ms (at {args.rate:g}/s, {args.messages} msgs, "
        f"{SUBSCRIBERS} subscribers) | burst throughput msg/s ({args.burst} msgs) |",
        "|---|---:|---:|---:|---:|",
    ]
    for key, label in names.items():
        row = results.get(key)
        if row is None:
            lines.append(f"| {label} | - | - | - | not measured |")
            continue
        lat = row["latency"]
        lines.append(
            f"| {label} | {lat['p50_ms']:.2f} | {lat['p99_ms']:.2f} | {lat['max_ms']:.2f} | "
            f"{row['throughput_msg_s']:,} |"
        )
    for key, label in (
        ("store-fill", "PostgreSQL store fill (room_messages_after, pages of 200)"),
        ("stream-catch-up", "Redis stream catch-up (XRANGE, pages of 200)"),
    ):
        row = results.get(key)
        if row:
            lines.append(f"\n{label}: {row['messages']} messages in {row['ms']} ms")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--messages", type=int, default=5000, help="latency run [5000]")
    ap.add_argument("--rate", type=float, default=2000, help="latency run msg/s [2000]")
    ap.add_argument("--burst", type=int, default=20000, help="throughput run [20000]")
    ap.add_argument("--size", type=int, default=250, help="payload bytes [250]")
    ap.add_argument("--missed", type=int, default=10000, help="catch-up messages [10000]")
    ap.add_argument(
        "--postgres",
        default=os.environ.get(
            "PARKCHAT_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
        help="admin URL for the store-fill run ('' to skip)",
    )
    args = ap.parse_args()
    if not (1 <= args.messages <= 200_000 and 1 <= args.burst <= 1_000_000):
        ap.error("--messages 1..200000, --burst 1..1000000")
    workdir = Path(tempfile.mkdtemp(prefix="parkchat-busbench-"))
    servers: list[Server] = []
    results: dict[str, Any] = {"loadavg_before": os.getloadavg()[0]}
    try:
        redis_port = free_port()
        servers.append(
            Server(
                [
                    "redis-server",
                    "--bind",
                    "127.0.0.1",
                    "--port",
                    str(redis_port),
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(workdir),
                ],
                redis_port,
                workdir,
            )
        )
        try:
            import nats  # noqa: F401

            have_nats = shutil.which("nats-server") is not None
        except ImportError:
            have_nats = False
        if have_nats:
            nats_port = free_port()
            servers.append(
                Server(
                    [
                        "nats-server",
                        "-a",
                        "127.0.0.1",
                        "-p",
                        str(nats_port),
                        "-js",
                        "-sd",
                        str(workdir),
                    ],
                    nats_port,
                    workdir,
                )
            )
            results.update(asyncio.run(nats_runs(nats_port, args)))
        else:
            print("nats-py or nats-server missing: NATS rows skipped", file=sys.stderr)
        results.update(twisted_runs(redis_port, args))
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    results["loadavg_after"] = os.getloadavg()[0]
    print(json.dumps(results, indent=1))
    print()
    print(table(results, args))
    return 1 if "error" in results else 0


if __name__ == "__main__":
    sys.exit(main())
