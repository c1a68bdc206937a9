"""A soak: thousands of connect/join/post/disconnect cycles against a real
server, then no growth of memory, file descriptors or room state.

Marked long: by default it runs in a bounded form (1,000 measured cycles
after a warm-up, a few seconds); ``PARKCHAT_SOAK_SECONDS=600`` runs cycles
for that long instead (at most 600 s). The figures are printed.
"""

from __future__ import annotations

import json
import os
import time

from twisted.trial.unittest import TestCase

from tests.e2e_support import LineSocket, ParkchatProcess
from tests.hostile_support import (
    ADMIN_TOKEN,
    admin,
    http_request,
    open_fds,
    rss,
    wait_for,
    ws_client,
)

#: Marks the test as long (a benchmark-like run that CI runs bounded).
LONG = True
WARMUP_CYCLES = 300
CYCLES = 1000
MAX_SECONDS = 600.0
#: RSS may grow this much (allocator pools, SQLite's page cache, caches
#: that fill once) between the end of the warm-up and the end.
RSS_SLACK = 16 * 1024 * 1024
ROOMS = 10


class SoakTests(TestCase):
    def setUp(self) -> None:
        self.server = ParkchatProcess(
            self.mktemp(),
            args=["--rate-limit", "0", "--access-log", "no", "--admin-token", ADMIN_TOKEN],
        )
        self.addCleanup(self.server.stop)
        self.server.start()
        status, body = http_request(
            self.server, "/register", "POST", {"nickname": "soaker", "password": "pw"}
        )
        self.assertEqual(status, 201, body)

    def cycle(self, i: int) -> None:
        """Connect, join, post, see the echo, disconnect: on the line protocol
        three times out of four, on /ws/{room} otherwise."""
        room = f"soak{i % ROOMS}"
        text = f"cycle {i}"
        if i % 4:
            line = LineSocket(self.server.tcp_address, timeout=10)
            try:
                line.send_line(json.dumps({"name": f"guest{i}", "room": room}))
                line.send_line(text)
                for _ in range(50):
                    if line.read_line() == f"~guest{i}:{text}":
                        break
                else:
                    self.fail(f"no echo in cycle {i}")
                if i % 8 == 1:
                    line.send_line("/quit")
                    line.read_until_closed()
            finally:
                line.close()
        else:
            with ws_client(self.server, f"/ws/{room}", auth=("soaker", "pw")) as ws:
                ws.send(json.dumps({"content": text}))
                for _ in range(50):
                    if json.loads(ws.recv(timeout=10)).get("content") == text:
                        break
                else:
                    self.fail(f"no echo in cycle {i}")

    def settled(self) -> bool:
        return admin(self.server, "/admin/rooms")["rooms"] == []

    def test_no_growth(self) -> None:
        for i in range(WARMUP_CYCLES):
            self.cycle(i)
        wait_for(self.settled, 10, "every room to empty after the warm-up")
        rss_before, fds_before = rss(self.server), open_fds(self.server)

        seconds = min(float(os.environ.get("PARKCHAT_SOAK_SECONDS", "0") or 0), MAX_SECONDS)
        started = time.monotonic()
        cycles = 0
        while (time.monotonic() - started < seconds) if seconds else cycles < CYCLES:
            self.cycle(WARMUP_CYCLES + cycles)
            cycles += 1
        elapsed = time.monotonic() - started

        wait_for(self.settled, 10, "every room to empty")
        wait_for(lambda: open_fds(self.server) <= fds_before, 10, "sockets to close")
        rss_after, fds_after = rss(self.server), open_fds(self.server)
        status, body = http_request(self.server, "/history/soak0?limit=5", auth=("soaker", "pw"))
        self.assertEqual(status, 200, body)
        print(
            f"\nsoak: {cycles} cycles in {elapsed:.1f} s ({cycles / elapsed:.0f}/s) after "
            f"{WARMUP_CYCLES} warm-up; RSS {rss_before / 2**20:.1f} -> "
            f"{rss_after / 2**20:.1f} MiB; fds {fds_before} -> {fds_after}"
        )
        self.assertLessEqual(fds_after, fds_before)
        self.assertLess(rss_after - rss_before, RSS_SLACK)
        self.assertTrue(self.server.running)
