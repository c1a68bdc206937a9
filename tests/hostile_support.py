"""Helpers for the hostile-load, soak and fault tests: clients that choose
their loopback source address (so that an attacker on 127.0.0.1 and a normal
user on 127.0.0.2 count as different addresses), raw sockets that misbehave,
and what /proc says about the server process. Loopback only; every wait is
bounded."""

from __future__ import annotations

import base64
import http.client
import json
import os
import select
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from websockets.sync.client import ClientConnection, connect

from tests.e2e_support import LOOPBACK, ParkchatProcess, basic_auth

ATTACKER = "127.0.0.1"
ADMIN_TOKEN = "hostile-test-admin-token-0123456789abcdef"


def http_request(
    server: ParkchatProcess,
    path: str,
    method: str = "GET",
    body: Any = None,
    *,
    auth: tuple[str, str] | None = None,
    headers: dict[str, str] | None = None,
    source: str = "127.0.0.2",
    timeout: float = 10.0,
) -> tuple[int, bytes]:
    """One HTTP request from ``source``; ``(status, body)``."""
    conn = http.client.HTTPConnection(
        LOOPBACK, server.http_port, timeout=timeout, source_address=(source, 0)
    )
    try:
        all_headers = dict(headers or {})
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            all_headers["Content-Type"] = "application/json"
        if auth is not None:
            all_headers["Authorization"] = basic_auth(*auth)
        conn.request(method, path, body=data, headers=all_headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def admin(server: ParkchatProcess, path: str, source: str = "127.0.0.2") -> Any:
    status, body = http_request(
        server, path, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, source=source
    )
    assert status == 200, (status, body)
    return json.loads(body)


def room_connections(server: ParkchatProcess, room: str) -> int:
    for entry in admin(server, "/admin/rooms")["rooms"]:
        if entry["room"] == room:
            return int(entry["connections"])
    return 0


def source_socket(
    address: tuple[str, int], source: str, *, rcvbuf: int | None = None, timeout: float = 10.0
) -> socket.socket:
    """A TCP connection to ``address`` from ``source`` (a loopback address)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.settimeout(timeout)
        sock.bind((source, 0))
        sock.connect(address)
    except BaseException:
        sock.close()
        raise
    return sock


@contextmanager
def ws_client(
    server: ParkchatProcess,
    path: str,
    *,
    auth: tuple[str, str] | None = None,
    source: str = "127.0.0.2",
) -> Iterator[ClientConnection]:
    """A ``websockets`` client from ``source``."""
    sock = source_socket((LOOPBACK, server.http_port), source)
    headers = {"Authorization": basic_auth(*auth)} if auth is not None else {}
    with connect(
        server.ws_url(path),
        sock=sock,
        additional_headers=headers,
        open_timeout=10,
        close_timeout=5,
        max_size=None,
    ) as ws:
        yield ws


def raw_websocket(
    server: ParkchatProcess,
    path: str,
    auth: tuple[str, str],
    source: str,
    rcvbuf: int | None = None,
) -> socket.socket:
    """Open a WebSocket by hand and return the socket after the 101: a
    client that can then simply stop reading."""
    sock = source_socket((LOOPBACK, server.http_port), source, rcvbuf=rcvbuf)
    key = base64.b64encode(os.urandom(16)).decode("ascii")
    sock.sendall(
        (
            f"GET {path} HTTP/1.1\r\nHost: {LOOPBACK}:{server.http_port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Authorization: {basic_auth(*auth)}\r\n\r\n"
        ).encode("ascii")
    )
    head = b""
    deadline = time.monotonic() + 10
    while b"\r\n\r\n" not in head:
        if time.monotonic() > deadline:
            raise TimeoutError("no upgrade response")
        chunk = sock.recv(1)  # byte by byte: leave the first frames unread
        if not chunk:
            raise ConnectionError(f"closed during the upgrade: {head!r}")
        head += chunk
    if b" 101 " not in head.split(b"\r\n", 1)[0]:
        raise ConnectionError(f"upgrade refused: {head!r}")
    return sock


def closed_by_server(sock: socket.socket, timeout: float) -> bool:
    """Read and discard until the server closes the connection (True) or
    ``timeout`` passes with it still open (False)."""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        readable, _, _ = select.select([sock], [], [], remaining)
        if not readable:
            return False
        try:
            if not sock.recv(65536):
                return True
        except (ConnectionResetError, BrokenPipeError):
            return True


def proc_status(pid: int, field: str) -> int:
    """A ``kB`` field of /proc/PID/status (VmRSS, VmHWM) in bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(field)


def rss(server: ParkchatProcess) -> int:
    assert server.process is not None
    return proc_status(server.process.pid, "VmRSS")


def open_fds(server: ParkchatProcess) -> int:
    assert server.process is not None
    return len(os.listdir(f"/proc/{server.process.pid}/fd"))


def wait_for(condition: Any, timeout: float, what: str, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
