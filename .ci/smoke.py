"""CI smoke test of an *installed* parkchat: start ``twistd parkchat`` as a real
process, talk to it over HTTP and WebSocket, stop it with SIGTERM, start it
again and check the message survived.

Usage: python smoke.py PATH/TO/twistd WORKDIR
"""

from __future__ import annotations

import base64
import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

ROOM = "smoke"
NICK, PASSWORD = "smoker", "not-a-secret"
#: twistd shuts down cleanly on SIGTERM, then re-raises the signal so that its
#: exit status says what stopped it (systemd counts that as a clean stop).
CLEAN_EXIT = (0, -signal.SIGTERM)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def request(
    url: str, method: str = "GET", body: Any = None, auth: bool = False
) -> tuple[int, dict[str, str], bytes]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if auth:
        token = base64.b64encode(f"{NICK}:{PASSWORD}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def check(condition: bool, what: str) -> None:
    print(("ok   " if condition else "FAIL ") + what, flush=True)
    if not condition:
        raise SystemExit(f"smoke test failed: {what}")


class Server:
    def __init__(self, twistd: str, workdir: Path, port: int) -> None:
        self.log = workdir / "twistd.log"
        self.base = f"http://127.0.0.1:{port}"
        argv = [
            twistd,
            "--nodaemon",
            "--pidfile=",
            f"--logfile={self.log}",
            "parkchat",
            "--port",
            f"tcp:{port}:interface=127.0.0.1",
            "--db",
            str(workdir / "chat.db"),
            "--bcrypt-rounds",
            "4",
        ]
        self.process = subprocess.Popen(argv, cwd=workdir, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.fail(f"twistd exited with {self.process.returncode} at start")
            try:
                if request(self.base + "/health")[0] == 200:
                    return
            except OSError:
                time.sleep(0.2)
        self.fail("server did not answer /health within 30 s")

    def fail(self, why: str) -> None:
        if self.log.exists():
            sys.stderr.write(self.log.read_text(errors="replace")[-4000:])
        self.process.kill()
        raise SystemExit(f"smoke test failed: {why}")

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.fail("server did not stop within 20 s of SIGTERM")
            raise


def main() -> None:
    twistd, workdir = sys.argv[1], Path(sys.argv[2])
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    server = Server(twistd, workdir, port)
    try:
        status, _, body = request(server.base + "/health")
        check(status == 200 and body == b"OK", "GET /health -> 200 OK")
        status, _, _ = request(
            server.base + "/register", "POST", {"nickname": NICK, "password": PASSWORD}
        )
        check(status == 201, "POST /register -> 201")
        status, _, _ = request(
            server.base + "/register", "POST", {"nickname": NICK, "password": PASSWORD}
        )
        check(status == 409, "POST /register again -> 409")
        status, headers, _ = request(server.base + f"/history/{ROOM}")
        check(
            status == 401 and "Basic" in headers.get("WWW-Authenticate", ""),
            "GET /history without credentials -> 401 + WWW-Authenticate",
        )

        url = f"ws://{NICK}:{PASSWORD}@127.0.0.1:{port}/ws/{ROOM}"
        with connect(url, open_timeout=10) as ws:
            joined = json.loads(ws.recv(timeout=10))
            check(
                joined["type"] == "system" and joined["content"] == f"{NICK} has joined the room",
                "WebSocket join notice",
            )
            ws.send(json.dumps({"content": "hello from CI"}))
            echo = json.loads(ws.recv(timeout=10))
            check(
                echo["type"] == "chat" and echo["content"] == "hello from CI" and echo["id"] > 0,
                "own message echoed with a real id",
            )
            status, _, body = request(server.base + f"/history/{ROOM}", auth=True)
            history = json.loads(body)
            check(status == 200 and history == [echo], "GET /history -> the message")

            code = server.stop()
            check(code in CLEAN_EXIT, f"SIGTERM: twistd exited with {code}")
            try:
                ws.recv(timeout=10)
                closed_with = None
            except ConnectionClosed as e:
                closed_with = e.rcvd.code if e.rcvd is not None else None
            check(closed_with == 1001, f"SIGTERM closed the WebSocket with {closed_with}")

        server = Server(twistd, workdir, port)
        status, _, body = request(server.base + f"/history/{ROOM}", auth=True)
        check(status == 200 and json.loads(body) == [echo], "message survived a restart")
        code = server.stop()
        check(code in CLEAN_EXIT, f"second SIGTERM: twistd exited with {code}")
    finally:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait()
    print("smoke test passed")


if __name__ == "__main__":
    main()
