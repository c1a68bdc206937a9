"""Several real ``twistd -n parkchat`` instances on one Redis and one database.

Each test starts two or three servers (``tests.e2e_support.ParkchatProcess``)
with ``--redis redis://...?prefix=<unique>`` and ``--presence-ttl 3``, all on
one fresh PostgreSQL database (``parkchat_mi_<random>``, dropped afterwards),
and drives them with independent clients: the ``websockets`` sync client and
``urllib``. They check what issue 6 promises: accounts, rooms, history,
presence and direct messages shared; one order of a room's messages
everywhere; a SIGKILLed instance's users gone within the TTL; recovery from a
Redis restart, with the gap filled from ``/history?after=``.

Services: Redis from ``PARKCHAT_TEST_REDIS`` (default
``redis://127.0.0.1:6379/0``), PostgreSQL from ``PARKCHAT_TEST_POSTGRES``
(default ``postgresql://postgres@127.0.0.1:5432/postgres``, a user that may
create databases). Without Redis the module is skipped; without PostgreSQL
the instances share one SQLite file (WAL works across processes on one
machine). Under ``CI=true`` both must be there. Every wait has a deadline.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from typing import Any

from twisted.trial.unittest import TestCase

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.e2e_support import ParkchatProcess, basic_auth, in_ci
from tests.postgres_support import create_database
from tests.redis_support import REDIS_URL, PrivateRedis, require_redis

POSTGRES_URL = os.environ.get(
    "PARKCHAT_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)
IO_TIMEOUT = 5.0
#: --presence-ttl of the instances: a killed instance's users go within it.
PRESENCE_TTL = 3.0
Frame = dict[str, Any]


def _psycopg2() -> Any:
    try:
        import psycopg2
    except ImportError:
        return None
    return psycopg2


def postgres_admin() -> Any:
    """An autocommit connection to ``POSTGRES_URL``, or None if unreachable."""
    psycopg2 = _psycopg2()
    if psycopg2 is None:
        return None
    try:
        conn = psycopg2.connect(POSTGRES_URL, connect_timeout=3)
    except psycopg2.Error:
        return None
    conn.autocommit = True
    return conn


def shared_database(case: TestCase) -> str:
    """A fresh PostgreSQL database for the test's instances (dropped in
    cleanup), or a SQLite file in the test's directory without PostgreSQL."""
    conn = postgres_admin()
    if conn is None:
        if in_ci():
            raise AssertionError(f"no PostgreSQL at {POSTGRES_URL}; CI must use it")
        return os.path.abspath(case.mktemp() + ".db")
    conn.close()
    return create_database(case.addCleanup, POSTGRES_URL, "parkchat_mi")


def wait_until(condition: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


class MultiInstanceCase(TestCase):
    """Starts ``instances`` servers sharing a Redis prefix and a database."""

    instances = 2
    timeout = 120
    #: More options for every instance.
    extra_args: tuple[str, ...] = ()

    def redis_url(self) -> str:
        """The Redis the instances share: the test run's (keys under a
        prefix of this test's own)."""
        require_redis()
        return REDIS_URL

    def setUp(self) -> None:
        redis_url = self.redis_url()
        self.prefix = f"mi{secrets.token_hex(6)}"
        self.db = shared_database(self)
        self.exits = ExitStack()
        self.addCleanup(self.exits.close)
        self.servers: list[ParkchatProcess] = []
        self.passwords: dict[str, str] = {}
        args = [
            "--redis",
            f"{redis_url}?prefix={self.prefix}",
            "--presence-ttl",
            str(PRESENCE_TTL),
            "--rate-limit",
            "0",
            *self.extra_args,
        ]
        for _ in range(self.instances):
            server = ParkchatProcess(self.mktemp(), tcp=False, db=self.db, args=args)
            server.start()
            self.addCleanup(server.stop)
            self.servers.append(server)

    # -- accounts ---------------------------------------------------------------

    def register(self, nickname: str, server: int = 0) -> None:
        self.passwords[nickname] = f"{nickname}-secret"
        self.servers[server].register(nickname, self.passwords[nickname])

    def token(self, nickname: str, server: int) -> str:
        status, body = self.servers[server].request(
            "/login", "POST", {"username": nickname, "password": self.passwords[nickname]}
        )
        self.assertEqual(status, 200, body)
        return str(json.loads(body)["token"])

    # -- clients ----------------------------------------------------------------

    def _connect(self, url: str, headers: dict[str, str] | None = None) -> ClientConnection:
        client = connect(
            url, additional_headers=headers, open_timeout=IO_TIMEOUT, close_timeout=IO_TIMEOUT
        )
        return self.exits.enter_context(client)

    def app(self, nickname: str, server: int, room: str | None = "lobby") -> ClientConnection:
        """A /ws client of ``server``, logged in there, in ``room``."""
        client = self._connect(self.servers[server].ws_url("/ws"))
        ready = self.request(client, {"type": "auth", "body": self.token(nickname, server)})
        self.assertEqual((ready["type"], ready["nickname"]), ("ready", nickname), ready)
        if room is not None:
            self.send(client, {"type": "join", "room": room, "id": "j"})
            self.next_frame(client, lambda f: f.get("type") == "joined")
        return client

    def seed(self, nickname: str, server: int, room: str = "lobby") -> ClientConnection:
        """A /ws/{room} (seed API) client with Basic auth; waits for its join."""
        headers = {"Authorization": basic_auth(nickname, self.passwords[nickname])}
        client = self._connect(self.servers[server].ws_url(f"/ws/{room}"), headers)
        self.next_frame(client, lambda f: f.get("type") == "system" and f["nickname"] == nickname)
        return client

    def send(self, client: ClientConnection, value: Any) -> None:
        client.send(json.dumps(value))

    def recv(self, client: ClientConnection, timeout: float = IO_TIMEOUT) -> Frame:
        frame: Frame = json.loads(client.recv(timeout=timeout))
        return frame

    def request(self, client: ClientConnection, value: Frame) -> Frame:
        """Send a frame with an id and return the reply carrying that id
        (events arriving meanwhile are skipped)."""
        marker = f"r{secrets.token_hex(3)}"
        self.send(client, {**value, "id": marker})
        return self.next_frame(client, lambda f: f.get("id") == marker)

    def next_frame(
        self, client: ClientConnection, match: Callable[[Frame], bool], timeout: float = IO_TIMEOUT
    ) -> Frame:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError("no matching frame in time")
            frame = self.recv(client, remaining)
            if match(frame):
                return frame

    def chats(
        self, client: ClientConnection, count: int, timeout: float = 15.0
    ) -> list[tuple[int, str]]:
        """The next ``count`` room messages a client gets, as (id, text);
        acks and system events are skipped."""
        got: list[tuple[int, str]] = []
        deadline = time.monotonic() + timeout
        while len(got) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"got {len(got)} of {count} messages: {got}")
            frame = self.recv(client, remaining)
            if frame.get("type") == "message":  # /ws
                got.append((frame["id"], frame["body"]))
            elif frame.get("type") == "chat" and "chat_room" in frame:  # /ws/{room}
                got.append((frame["id"], frame["content"]))
        return got

    def assertQuiet(self, client: ClientConnection, seconds: float = 0.3) -> None:
        """No room message arrives within ``seconds``."""
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                frame = self.recv(client, remaining)
            except TimeoutError:
                return
            self.assertNotIn(frame.get("type"), ("message", "chat"), frame)

    def online(self, client: ClientConnection) -> list[str]:
        reply = self.request(client, {"type": "get_online_list"})
        return sorted(u["nickname"] for u in reply["users"])

    def who(self, client: ClientConnection, room: str = "lobby") -> list[str]:
        return sorted(self.request(client, {"type": "who", "room": room})["users"])

    def history(self, server: int, room: str, query: str = "") -> list[Frame]:
        nickname = next(iter(self.passwords))
        status, body = self.servers[server].request(
            f"/history/{room}{query}", auth=(nickname, self.passwords[nickname])
        )
        self.assertEqual(status, 200, body)
        result: list[Frame] = json.loads(body)
        return result


class SharedStateTests(MultiInstanceCase):
    """Three instances: one service, as far as clients can tell."""

    instances = 3

    def test_accounts_and_tokens(self) -> None:
        """An account registered on one instance logs in on the others; a
        token from one instance is good on another; nicknames stay unique."""
        self.register("alice", server=0)
        for server in (1, 2):
            self.app("alice", server, room=None)
        token = self.token("alice", 1)
        client = self._connect(self.servers[2].ws_url(f"/ws?token={token}"))
        self.assertEqual(self.recv(client)["type"], "ready")
        status, _ = self.servers[2].request(
            "/register", "POST", {"nickname": "Alice", "password": "another-secret"}
        )
        self.assertEqual(status, 409)

    def test_room_spans_instances(self) -> None:
        """/ws and /ws/{room} members on three instances see every message
        once and in one order; history is the same from every instance."""
        for nickname in ("alice", "bob", "carol", "dave", "erin", "frank"):
            self.register(nickname)
        # Listeners, one per instance and surface, and a sender on each.
        listeners = [self.seed("frank", 0), self.app("bob", 1), self.app("erin", 2)]
        alice = self.app("alice", 0)  # /ws sender: acks instead of echoes
        carol = self.app("carol", 1)
        dave = self.seed("dave", 2)  # /ws/{room} sender: gets its own back
        count = 45
        for i in range(count):
            if i % 3 == 0:
                self.send(alice, {"type": "message", "body": f"m{i}"})
            elif i % 3 == 1:
                self.send(carol, {"type": "message", "body": f"m{i}"})
            else:
                self.send(dave, {"content": f"m{i}"})
        reference = self.chats(listeners[0], count)
        self.assertEqual(
            sorted(text for _, text in reference), sorted(f"m{i}" for i in range(count))
        )
        self.assertEqual(len({i for i, _ in reference}), count)
        for listener in listeners[1:]:
            self.assertEqual(self.chats(listener, count), reference)
        self.assertEqual(self.chats(dave, count), reference)
        for sender, skip in ((alice, 0), (carol, 1)):
            others = [m for m in reference if int(m[1][1:]) % 3 != skip]
            self.assertEqual(self.chats(sender, len(others)), others)
        for client in [*listeners, alice, carol, dave]:
            self.assertQuiet(client, 0.2)
        # History: the same 45 messages (by id) from every instance.
        pages = [self.history(server, "lobby", "?limit=200") for server in range(3)]
        self.assertEqual(pages[0], pages[1])
        self.assertEqual(pages[0], pages[2])
        self.assertEqual(sorted(m["id"] for m in pages[0]), sorted(i for i, _ in reference))

    def test_presence_spans_instances(self) -> None:
        for nickname in ("alice", "bob", "carol", "guest"):
            self.register(nickname)
        alice = self.app("alice", 0)
        bob = self.app("bob", 1)
        carol = self.seed("carol", 2)
        everyone = ["alice", "bob", "carol"]
        for client in (alice, bob):
            wait_until(lambda: self.online(client) == everyone, 5, "everyone online")  # noqa: B023
            wait_until(lambda: self.who(client) == everyone, 5, "everyone in the room")  # noqa: B023
        carol.close()
        wait_until(lambda: self.online(alice) == ["alice", "bob"], 5, "carol gone")
        self.assertEqual(self.who(bob), ["alice", "bob"])

    def test_direct_messages(self) -> None:
        for nickname in ("alice", "bob", "carol"):
            self.register(nickname)
        alice = self.app("alice", 0, room=None)
        bob = self.app("bob", 1, room=None)
        ack = self.request(alice, {"type": "chat", "to": "bob", "content": "psst"})
        self.assertEqual(ack["type"], "ack", ack)
        dm = self.next_frame(bob, lambda f: f.get("type") == "chat")
        self.assertEqual(
            (dm["id"], dm["from"], dm["to"], dm["content"]),
            (ack["message_id"], "alice", "bob", "psst"),
        )
        # Delivered over there: nothing left for get_offline.
        wait_until(
            lambda: self.request(bob, {"type": "get_offline"})["data"] == [], 5, "delivered mark"
        )
        # carol is offline: the message waits for her, on any instance.
        ack = self.request(alice, {"type": "chat", "to": "carol", "content": "later"})
        self.assertEqual(ack["type"], "ack", ack)
        carol = self.app("carol", 2, room=None)
        offline = self.request(carol, {"type": "get_offline"})["data"]
        self.assertEqual(
            [(m["msg_id"], m["content"]) for m in offline], [(ack["message_id"], "later")]
        )
        self.assertEqual(self.request(carol, {"type": "get_offline"})["data"], [])


class KilledInstanceTests(MultiInstanceCase):
    instances = 2

    def test_sigkill(self) -> None:
        """A SIGKILLed instance leaves the other serving; its users leave
        presence within the TTL."""
        for nickname in ("alice", "ann", "bob"):
            self.register(nickname)
        alice = self.app("alice", 0)
        ann = self.app("ann", 0)
        bob = self.app("bob", 1)
        wait_until(lambda: self.online(alice) == ["alice", "ann", "bob"], 5, "bob online")
        self.send(bob, {"type": "message", "body": "last words"})
        self.assertEqual([t for _, t in self.chats(alice, 1)], ["last words"])

        self.servers[1].kill()
        killed = time.monotonic()
        self.send(alice, {"type": "message", "body": "still here"})
        self.assertEqual([t for _, t in self.chats(ann, 2)], ["last words", "still here"])
        wait_until(lambda: self.online(ann) == ["alice", "ann"], 2 * PRESENCE_TTL, "bob to expire")
        self.assertLessEqual(time.monotonic() - killed, PRESENCE_TTL + 1.5)
        self.assertEqual(self.who(ann), ["alice", "ann"])
        # New clients keep coming to the survivor.
        self.register("carol")
        self.app("carol", 0)
        self.assertEqual(self.who(ann), ["alice", "ann", "carol"])


class SingleSessionTests(MultiInstanceCase):
    """``--single-session`` over two instances: the newest login wins,
    decided by the store's per-account session counter."""

    extra_args = ("--single-session", "yes")

    def simultaneous_logins(self, count: int) -> list[ClientConnection]:
        """``count`` /ws connections of alice, spread over both instances,
        opening at the same moment; returns those still open once the
        others have been replaced (4004)."""
        tokens = [self.token("alice", i % 2) for i in range(count)]
        urls = [self.servers[i % 2].ws_url(f"/ws?token={t}") for i, t in enumerate(tokens)]
        start = threading.Barrier(len(urls))

        def opened(url: str) -> ClientConnection:
            start.wait(timeout=IO_TIMEOUT)
            return self._connect(url)

        with ThreadPoolExecutor(len(urls)) as pool:
            clients = list(pool.map(opened, urls))
        replaced: set[int] = set()
        quiet_since = time.monotonic()
        deadline = quiet_since + 20
        # Until nothing has closed for a second (announcements cross within
        # milliseconds) and at most one is left.
        while time.monotonic() - quiet_since < 1.0 or len(replaced) < count - 1:
            self.assertLess(time.monotonic(), deadline, f"replaced so far: {sorted(replaced)}")
            for n, client in enumerate(clients):
                if n in replaced:
                    continue
                try:
                    client.recv(timeout=0.02)
                except TimeoutError:
                    continue
                except ConnectionClosed as e:
                    self.assertEqual(e.rcvd.code if e.rcvd else None, 4004)
                    replaced.add(n)
                    quiet_since = time.monotonic()
            if len(replaced) == count:
                break
        return [c for n, c in enumerate(clients) if n not in replaced]

    def test_parallel_logins_leave_exactly_one(self) -> None:
        """Logins of one account at the same moment on both instances leave
        exactly one open connection, every time (it used to be none in most
        trials: each instance closed the other's), and it is usable: five
        rounds of two, then ten at once."""
        self.register("alice")
        for count in (2, 2, 2, 2, 2, 10):
            survivors = self.simultaneous_logins(count)
            self.assertEqual(len(survivors), 1, f"{len(survivors)} of {count} left open")
        survivor = survivors[0]
        self.send(survivor, {"type": "join", "room": "lobby", "id": "j"})
        self.next_frame(survivor, lambda f: f.get("type") == "joined")
        self.assertEqual(self.request(survivor, {"type": "ping"})["type"], "pong")


class RedisRestartTests(MultiInstanceCase):
    """Redis stops and comes back under two instances: a Redis of the
    test's own (``PrivateRedis``), never the shared one."""

    instances = 2

    def redis_url(self) -> str:
        self.redis = PrivateRedis(self.mktemp())
        self.redis.start()
        self.addCleanup(self.redis.kill)
        return self.redis.url

    def until_crossing(self, sender: ClientConnection, receiver: ClientConnection) -> list[str]:
        """Probe from ``sender`` until a probe reaches ``receiver`` on the
        other instance (pub/sub keeps nothing for a subscriber that is not
        back yet); the message bodies ``receiver`` got meanwhile."""
        # Its own marker: the receiver also holds its own earlier probes.
        marker = f"probe-{secrets.token_hex(3)}"
        bodies: list[str] = []

        def arrived(frame: Frame) -> bool:
            if frame.get("type") == "message":
                bodies.append(frame.get("body"))
            return frame.get("body") == marker

        deadline = time.monotonic() + 30
        while True:
            self.assertLess(time.monotonic(), deadline, "no delivery across after the restart")
            self.send(sender, {"type": "message", "body": marker})
            try:
                self.next_frame(receiver, arrived, timeout=0.5)
                return bodies
            except (AssertionError, TimeoutError):
                pass

    def test_redis_restart(self) -> None:
        for nickname in ("alice", "ann", "bob"):
            self.register(nickname)
        alice = self.app("alice", 0)
        ann = self.app("ann", 0)
        bob = self.app("bob", 1)
        self.send(alice, {"type": "message", "body": "before"})
        last_seen = self.chats(bob, 1)
        self.assertEqual([t for _, t in last_seen], ["before"])

        self.redis.stop()
        # Each instance serves its own members; nothing crosses.
        self.send(alice, {"type": "message", "body": "during"})
        self.assertEqual([t for _, t in self.chats(ann, 2)], ["before", "during"])
        self.assertQuiet(bob, 0.5)
        self.redis.start()

        # Both instances reconnect and resubscribe by themselves, each on its
        # own back-off schedule: a message crossing one way says nothing of
        # the other way, so each direction is probed until it carries.
        seen_by_bob = self.until_crossing(alice, bob)
        self.until_crossing(bob, alice)
        # What bob missed reaches him once the instances catch up (resync).
        if "during" not in seen_by_bob:
            self.next_frame(bob, lambda f: f.get("body") == "during", timeout=10)
        # And it is in the history for clients that were not connected.
        missed = self.history(1, "lobby", f"?after={last_seen[-1][0]}")
        self.assertEqual(missed[0]["content"], "during")
        # Presence is shared again (Redis lost every key).
        wait_until(lambda: self.online(bob) == ["alice", "ann", "bob"], 10, "presence back")


class AbuseAcrossInstancesTests(MultiInstanceCase):
    """Issue 15 across two instances (a Redis of the test's own): the
    per-account connection limit under a burst, a password change, a kick
    answered by the instance that does not hold the user."""

    instances = 2
    admin_token = secrets.token_hex(32)
    extra_args = ("--max-connections-per-user", "3", "--admin-token", admin_token)

    def redis_url(self) -> str:
        self.redis = PrivateRedis(self.mktemp())
        self.redis.start()
        self.addCleanup(self.redis.kill)
        return self.redis.url

    def open(self, client: ClientConnection) -> bool:
        """Whether the server still holds ``client`` open."""
        try:
            while True:
                client.recv(timeout=0.05)
        except TimeoutError:
            return True
        except ConnectionClosed:
            return False

    def test_burst_keeps_the_account_limit(self) -> None:
        """Six simultaneous upgrades, three on each instance, with a limit of
        three: each instance let its three in before it heard of the other
        (item 12); within a few seconds exactly three stay, for good."""
        self.register("alice")
        tokens = [self.token("alice", i % 2) for i in range(6)]
        start = threading.Barrier(6)

        def upgrade(i: int) -> ClientConnection | None:
            start.wait(IO_TIMEOUT)
            try:
                return connect(
                    self.servers[i % 2].ws_url("/ws"),
                    additional_headers={"Authorization": f"Bearer {tokens[i]}"},
                    open_timeout=IO_TIMEOUT,
                    close_timeout=IO_TIMEOUT,
                )
            except Exception:
                return None

        with ThreadPoolExecutor(6) as pool:
            clients = [c for c in pool.map(upgrade, range(6)) if c is not None]
        self.assertGreater(len(clients), 3, "the burst should pass the check on each instance")
        for client in clients:
            self.exits.enter_context(client)
        wait_until(
            lambda: sum(self.open(c) for c in clients) <= 3, 10, "the excess connections to close"
        )
        time.sleep(2 * PRESENCE_TTL / 3)  # a presence heartbeat later: still three
        self.assertEqual(
            sum(self.open(c) for c in clients), 3, [(c.close_code, c.close_reason) for c in clients]
        )

    def test_password_change_closes_everywhere(self) -> None:
        """A new password closes the account's connections on both instances
        (item 10) and its old token stops working."""
        self.register("alice")
        here = self.app("alice", 0)
        there = self.app("alice", 1)
        old_token = self.token("alice", 1)
        status, body = self.servers[0].request(
            "/password",
            "POST",
            {"new_password": "alice-new-secret"},
            auth=("alice", self.passwords["alice"]),
        )
        self.assertEqual(status, 200, body)
        for client in (here, there):
            wait_until(lambda c=client: not self.open(c), 10, "the connection to close")
            self.assertEqual(client.close_code, 4005)
        status, _ = self.servers[1].request("/history/lobby", auth=("alice", "alice-new-secret"))
        self.assertEqual(status, 200)
        refused = self.bearer_token_works(old_token, 1)
        self.assertFalse(refused)

    def bearer_token_works(self, token: str, server: int) -> bool:
        try:
            client = self._connect(
                self.servers[server].ws_url("/ws"), {"Authorization": f"Bearer {token}"}
            )
        except Exception:
            return False
        return self.open(client)

    def test_kick_says_it_was_forwarded(self) -> None:
        """``/admin/kick`` on the instance that does not hold the user
        answers ``kicked: 0, forwarded: true`` (item 12), and the kick
        happens on the other instance."""
        self.register("alice")
        alice = self.app("alice", 1)
        status, body = self.servers[0].request(
            "/admin/kick",
            "POST",
            {"nickname": "alice", "room": "lobby"},
            headers={"Authorization": f"Bearer {self.admin_token}"},
        )
        self.assertEqual(status, 200, body)
        self.assertEqual(json.loads(body), {"kicked": 0, "forwarded": True})
        kicked = self.next_frame(alice, lambda f: f.get("type") == "kicked")
        self.assertEqual(kicked["room"], "lobby")
