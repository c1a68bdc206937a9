"""Faults against a real server: a full disk, a read-only database, SIGTERM
in the middle of traffic. (SIGKILL mid-stream: tests/test_end_to_end.py.)

The full disk is a 2 MiB tmpfs and the read-only database a read-only bind
mount; both need root (mount), and the tests skip without it. Every mount
is unmounted in cleanup, after the server has stopped.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SkipTest, TestCase

from websockets.exceptions import ConnectionClosed

from tests.e2e_support import CLEAN_EXITS, LineSocket, ParkchatProcess
from tests.hostile_support import http_request, ws_client

TOKEN_SECRET = "faults-test-token-secret-0123456789abcdef"


def integrity(db: Path) -> str:
    conn = sqlite3.connect(db)
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()


class FaultCase(TestCase):
    def mount(self, *args: str) -> None:
        """Run ``mount ARGS``; skip the test if mounting is not allowed here."""
        if os.geteuid() != 0:
            raise SkipTest("mounting needs root")
        result = subprocess.run(["mount", *args], capture_output=True, text=True, timeout=30)
        if result.returncode != 0:
            raise SkipTest(f"mount {' '.join(args)} failed: {result.stderr.strip()}")

    def umount_later(self, target: Path) -> None:
        self.addCleanup(
            subprocess.run, ["umount", str(target)], timeout=30, check=False, capture_output=True
        )

    def server(self, workdir: Path, db: Path, *args: str) -> ParkchatProcess:
        server = ParkchatProcess(
            workdir,
            db=str(db),
            args=["--rate-limit", "0", "--access-log", "no", "--token-secret", TOKEN_SECRET, *args],
        )
        self.addCleanup(server.stop)
        server.start()
        return server

    def post(self, ws: Any, content: str) -> dict[str, Any]:
        """Post and return the echo or the error frame that answers it."""
        ws.send(json.dumps({"content": content}))
        for _ in range(100):
            frame: dict[str, Any] = json.loads(ws.recv(timeout=15))
            if frame.get("type") == "error" or frame.get("content") == content:
                return frame
        raise AssertionError(f"no answer to {content[:20]!r}")


class DiskFullTests(FaultCase):
    def test_full_disk_then_space_freed(self) -> None:
        base = Path(self.mktemp()).resolve()
        data = base / "data"
        data.mkdir(parents=True)
        self.mount("-t", "tmpfs", "-o", "size=2m", "tmpfs", str(data))
        self.umount_later(data)  # runs after server.stop (cleanups run last-in first-out)
        db = data / "chat.db"
        server = self.server(base / "work", db)
        server.register("alice", "pw")
        # Leave little room: a filler takes most of what is free.
        stat = os.statvfs(data)
        filler = data / "filler"
        filler.write_bytes(b"\0" * max(0, stat.f_bavail * stat.f_frsize - 256 * 1024))

        stored: list[int] = []
        error: dict[str, Any] | None = None
        with ws_client(server, "/ws/disk", auth=("alice", "pw")) as ws:
            for i in range(400):
                frame = self.post(ws, f"{i} " + "z" * 3000)
                if frame.get("type") == "error":
                    error = frame
                    break
                stored.append(frame["id"])
            self.assertIsNotNone(error, "the disk never filled")
            assert error is not None
            self.assertEqual(error["code"], "storage_failed")
            # The connection, the server and reads keep working.
            self.assertTrue(server.running)
            history = server.history("disk", ("alice", "pw"))
            self.assertEqual([m["id"] for m in history], stored[-len(history) :])
            status, _ = http_request(server, "/health")
            self.assertEqual(status, 200)
            # Space comes back: so do writes, on the same connection.
            filler.unlink()
            frame = self.post(ws, "after the disk was freed")
            self.assertEqual(frame.get("content"), "after the disk was freed", frame)
        self.assertIn(server.stop(), CLEAN_EXITS)
        self.assertEqual(integrity(db), "ok")
        conn = sqlite3.connect(db)
        try:
            ids = [r[0] for r in conn.execute("SELECT id FROM messages WHERE type = 'chat'")]
        finally:
            conn.close()
        self.assertEqual(ids, [*stored, frame["id"]])
        print(f"\nfull disk: {len(stored)} messages stored before storage_failed; recovered")


class ReadOnlyDatabaseTests(FaultCase):
    def test_read_only_database(self) -> None:
        base = Path(self.mktemp()).resolve()
        data, readonly = base / "data", base / "readonly"
        data.mkdir(parents=True)
        readonly.mkdir()
        db = data / "chat.db"
        # Some history first, on a writable database.
        server = self.server(base / "work1", db)
        server.register("alice", "pw")
        with ws_client(server, "/ws/ro", auth=("alice", "pw")) as ws:
            before = [self.post(ws, f"before {i}")["id"] for i in range(5)]
        self.assertIn(server.stop(), CLEAN_EXITS)

        # Keep the -wal and -shm files (SQLite needs them to read a WAL
        # database it cannot write), then serve the file from a read-only
        # mount: root itself cannot write there.
        holder = sqlite3.connect(db)
        self.addCleanup(holder.close)
        holder.execute("SELECT count(*) FROM messages").fetchall()
        self.mount("--bind", str(data), str(readonly))
        self.umount_later(readonly)
        self.mount("-o", "remount,bind,ro", str(readonly))
        server = self.server(base / "work2", readonly / "chat.db")

        with ws_client(server, "/ws/ro", auth=("alice", "pw")) as ws:
            frame = self.post(ws, "cannot be stored")
            self.assertEqual(frame.get("type"), "error", frame)
            self.assertEqual(frame["code"], "storage_failed")
            frame = self.post(ws, "still cannot")
            self.assertEqual(frame["code"], "storage_failed")
        self.assertEqual([m["id"] for m in server.history("ro", ("alice", "pw"))], before)
        self.assertTrue(server.running)
        # Registering writes too: refused, and the server carries on.
        status, _ = http_request(server, "/register", "POST", {"nickname": "bob", "password": "pw"})
        self.assertGreaterEqual(status, 500)
        self.assertTrue(server.running)
        self.assertIn(server.stop(), CLEAN_EXITS)
        subprocess.run(["umount", str(readonly)], timeout=30, check=True)
        holder.close()
        self.assertEqual(integrity(db), "ok")


class LockedDatabaseTests(FaultCase):
    def test_readiness_while_another_process_holds_the_lock(self) -> None:
        """Another process takes SQLite's exclusive lock: every post would
        fail with storage_failed, so /health/ready says 503 (it used to say
        ready); once the lock is gone it is ready again, and the server
        never stopped serving liveness."""
        base = Path(self.mktemp()).resolve()
        base.mkdir(parents=True)
        db = base / "chat.db"
        server = self.server(base / "work", db)
        self.assertEqual(http_request(server, "/health/ready")[0], 200)
        # Another process: sqlite3's command-line shell would do; a
        # connection of the test's own holds the same kind of lock.
        locker = sqlite3.connect(db, timeout=0, isolation_level=None)
        self.addCleanup(locker.close)
        locker.execute("BEGIN EXCLUSIVE")
        status, body = http_request(server, "/health/ready")
        self.assertEqual(status, 503, body)
        self.assertIn("database", json.loads(body)["message"])
        self.assertEqual(http_request(server, "/health")[0], 200)
        locker.execute("ROLLBACK")
        deadline = time.monotonic() + 15
        while http_request(server, "/health/ready")[0] != 200:
            self.assertLess(time.monotonic(), deadline, "not ready again after the lock went")
            time.sleep(0.2)
        self.assertIn(server.stop(), CLEAN_EXITS)


class SigtermTests(TestCase):
    def test_sigterm_during_traffic(self) -> None:
        """SIGTERM stops accepting, says goodbye on both surfaces (1001 and a
        TCP goodbye line), stores every message it accepted and exits in
        bounded time."""
        server = ParkchatProcess(
            self.mktemp(), args=["--rate-limit", "0", "--access-log", "no"], stop_timeout=20
        )
        self.addCleanup(server.stop)
        server.start()
        server.register("alice", "pw")
        line = LineSocket(server.tcp_address, timeout=15)
        self.addCleanup(line.close)
        line.send_line('{"name": "tcpuser", "room": "bye"}')
        with ws_client(server, "/ws/bye", auth=("alice", "pw")) as ws:
            ws.send(json.dumps({"content": "hello"}))
            line.send_line("first")
            for _ in range(10):
                if line.read_line() == "~tcpuser:first":
                    break
            else:
                self.fail("no echo of 'first'")
            # A burst that is still being stored when the signal arrives.
            line.send(b"".join(f"burst {i}\n".encode() for i in range(300)))
            first = line.read_line()
            while not first.startswith("~tcpuser:burst"):
                first = line.read_line()
            assert server.process is not None
            sent_at = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            tail = first + "\n" + line.read_until_closed(timeout=15).decode()
            self.assertTrue(tail.endswith("*** server shutting down, bye\n"), tail[-200:])
            code = None
            try:
                for _ in range(1000):
                    ws.recv(timeout=15)
            except ConnectionClosed as e:
                code = e.rcvd.code if e.rcvd is not None else None
            self.assertEqual(code, 1001)
            # No longer accepting.
            with self.assertRaises(OSError):
                http_request(server, "/health", timeout=2)
            exit_code = server.process.wait(15)
            took = time.monotonic() - sent_at
        self.assertIn(exit_code, CLEAN_EXITS)
        self.assertLess(took, 15)
        echoed = [
            ln.split(":", 1)[1] for ln in tail.splitlines() if ln.startswith("~tcpuser:burst")
        ]
        server.process = None
        server.start()
        stored_all: list[str] = []
        after = 0
        while True:
            status, body = http_request(
                server, f"/history/bye?limit=200&after={after}", auth=("alice", "pw")
            )
            self.assertEqual(status, 200, body)
            page = json.loads(body)
            if not page:
                break
            stored_all += [m["content"] for m in page]
            after = page[-1]["id"]
        self.assertIn("hello", stored_all)
        # Everything echoed was stored, in order; and what was accepted but
        # not yet echoed was flushed too (stored is a superset, in order).
        bursts = [c for c in stored_all if c.startswith("burst")]
        self.assertEqual(bursts[: len(echoed)], echoed)
        self.assertEqual(bursts, [f"burst {i}" for i in range(300)])
        print(
            f"\nSIGTERM: exit in {took:.2f} s; {len(echoed)} burst messages echoed, "
            f"{len(bursts)} stored"
        )
