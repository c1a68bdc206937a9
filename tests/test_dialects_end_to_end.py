"""End to end on the seed dialects: a real ``twistd -n parkchat`` and
independent clients doing exactly what each seed's own client does.

The server is ``tests.e2e_support.ParkchatProcess``; the clients share no
code with parkchat: the ``websockets`` library's synchronous client,
``urllib`` and a blocking TCP socket. Each flow follows the seed's client
request by request and frame by frame (SEED-WIRE.md; the clients' code):

* GarinChat: the README's client API (``new WebSocket("wss://host")``, an
  ``auth`` frame with a third-party service's JWT, ``join``, ``message``),
  with the seed's own configuration (``--seed-config garinchat``);
* golang-chat: its ``chat.html`` (``/chat`` on the page's own host, one
  ``{"userName","body","timestamp"}`` per message) and ``/getAllMessages``,
  with its ``config/config.json`` (``--seed-config golang-chat``);
* lildengzi: its ``index.html`` (``/register``, ``/login``, ``/ws?token=``,
  ``get_online_list`` on open, ``@id text`` as ``chat`` frames,
  ``get_offline``);
* and one room where a GarinChat user, a golang-chat user, a TCP user and
  a ``/ws`` app (the page's protocol) talk, while a lildengzi user and the
  ``/ws`` user exchange direct messages: each sees the others in its own
  format.

Every wait is bounded; servers and clients are closed in cleanup.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from contextlib import ExitStack
from typing import Any
from urllib.parse import quote

from twisted.trial.unittest import TestCase

import jwt
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Origin

from tests.e2e_support import LOOPBACK, LineSocket, ParkchatProcess, free_port

IO_TIMEOUT = 5.0
GARIN_SECRET = "the auth service secret, 32 bytes+"
GARIN_FRONTEND = "http://garin.test"
LILDENGZI_SECRET = "a lildengzi secret that is long enough"


class DialectEndToEndCase(TestCase):
    """Helpers for one server per test and its clients."""

    def setUp(self) -> None:
        self.exits = ExitStack()
        self.addCleanup(self.exits.close)

    def start(
        self,
        args: list[str],
        env: dict[str, str] | None = None,
        files: dict[str, str] | None = None,
    ) -> ParkchatProcess:
        server = ParkchatProcess(self.mktemp(), tcp=True, args=args, env=env)
        for name, text in (files or {}).items():
            path = server.workdir / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        server.start()
        self.addCleanup(server.stop)
        return server

    def ws(
        self, url: str, origin: str | None = None, headers: dict[str, str] | None = None
    ) -> ClientConnection:
        client = connect(
            url,
            origin=Origin(origin) if origin is not None else None,
            additional_headers=headers,
            open_timeout=IO_TIMEOUT,
            close_timeout=IO_TIMEOUT,
        )
        return self.exits.enter_context(client)

    def raw(self, client: ClientConnection) -> str:
        text = client.recv(timeout=IO_TIMEOUT)
        assert isinstance(text, str), "the dialects send text frames"
        return text

    def assertQuiet(self, client: ClientConnection) -> None:
        """Nothing is waiting for ``client``: everything sent before the
        pong of a ping has arrived by then."""
        self.assertTrue(client.ping().wait(IO_TIMEOUT))
        self.assertRaises(TimeoutError, client.recv, timeout=0)

    def http(
        self, url: str, method: str = "GET", body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=IO_TIMEOUT) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def closed(self, client: ClientConnection) -> tuple[int | None, str | None]:
        """Wait for the server to close ``client``: its code and reason."""
        try:
            while True:
                client.recv(timeout=IO_TIMEOUT)
        except ConnectionClosed as e:
            assert e.rcvd is not None, "closed without a close frame"
            return e.rcvd.code, e.rcvd.reason


def garin_token(**claims: Any) -> str:
    """What a third-party auth service hands a GarinChat user."""
    return jwt.encode({"sub": "user-1", **claims}, GARIN_SECRET, algorithm="HS256")


class GarinChatTests(DialectEndToEndCase):
    """The GarinChat client API of the seed's README, against the seed's own
    environment (``--seed-config garinchat``)."""

    def test_readme_client(self) -> None:
        """auth -> join -> message -> close, on the GarinChat listener (any
        path) and on the main port's ``/``, from the allowed frontend."""
        port = free_port()
        server = self.start(
            ["--seed-config", "garinchat"],
            env={
                "ALLOWED_ORIGINS": GARIN_FRONTEND,
                "JWT_DECODE_SECRET": GARIN_SECRET,
                "PORT": str(port),
            },
        )
        mina = self.ws(f"ws://{LOOPBACK}:{port}", origin=GARIN_FRONTEND)
        mina.send(json.dumps({"type": "auth", "body": garin_token(exp=int(time.time()) + 600)}))
        mina.send(json.dumps({"type": "join", "username": "mina", "room": "garden"}))
        self.assertEqual(self.raw(mina), '{"type":"join","username":"mina","totalUsers":1}')

        bob = self.ws(server.ws_url("/"), origin=GARIN_FRONTEND)
        bob.send(json.dumps({"type": "auth", "body": garin_token()}))
        bob.send(json.dumps({"type": "join", "username": "bob", "room": "garden"}))
        join = '{"type":"join","username":"bob","totalUsers":2}'
        self.assertEqual(self.raw(bob), join)
        self.assertEqual(self.raw(mina), join)

        mina.send(json.dumps({"type": "message", "body": "hello bob"}))
        self.assertEqual(self.raw(bob), '{"type":"message","body":"hello bob","username":"mina"}')
        self.assertQuiet(mina)  # the README: append your own message yourself

        bob.close()
        self.assertEqual(self.raw(mina), '{"type":"userleave","username":"bob","totalUsers":1}')

    def test_refusals(self) -> None:
        """A foreign page is refused over HTTP; a client that breaks the
        protocol is closed with 1008 and the reason (the seed drops it)."""
        server = self.start(
            ["--garinchat-secret", GARIN_SECRET, "--garinchat-origins", GARIN_FRONTEND]
        )
        with self.assertRaises(InvalidStatus) as refused:
            self.ws(server.ws_url("/"), origin="http://elsewhere.test")
        self.assertEqual(refused.exception.response.status_code, 403)
        late = self.ws(server.ws_url("/"), origin=GARIN_FRONTEND)
        self.assertEqual(self.closed(late), (1008, "no auth message in time"))
        forged = self.ws(server.ws_url("/"))
        forged.send(json.dumps({"type": "auth", "body": jwt.encode({}, "x" * 32, "HS256")}))
        self.assertEqual(self.closed(forged), (1008, "invalid or expired token"))


GOLANG_CONFIG = {"hostName": LOOPBACK, "logfilePath": "logs.log"}


class GolangChatTests(DialectEndToEndCase):
    """golang-chat's ``chat.html`` and ``/getAllMessages``, against the
    seed's own ``config/config.json`` (``--seed-config golang-chat``)."""

    def page_client(self, port: int) -> ClientConnection:
        """What chat.html opens: ``/chat`` on the page's own host."""
        return self.ws(f"ws://{LOOPBACK}:{port}/chat", origin=f"http://{LOOPBACK}:{port}")

    def send(self, client: ClientConnection, user: str, body: str, stamp: str) -> None:
        client.send(json.dumps({"userName": user, "body": body, "timestamp": stamp}))

    def test_chat_page_client(self) -> None:
        port = free_port()
        server = self.start(
            ["--seed-config", "golang-chat"],
            files={"config/config.json": json.dumps({"port": port, **GOLANG_CONFIG})},
        )
        gus = self.page_client(port)
        self.assertQuiet(gus)  # nothing until the first message
        self.send(gus, "gus", "first!", "3:05 PM")
        self.assertEqual(
            self.raw(gus), '{"userName":"gus","body":"first!","timestamp":"3:05 PM"}\n'
        )

        # A later visitor gets the past, then its own first message; both
        # see every message, their own included.
        dot = self.page_client(port)
        self.send(dot, "dot", "hi gus", "3:06 PM")
        past = json.loads(self.raw(dot))
        self.assertEqual((past["userName"], past["body"]), ("gus", "first!"))
        greeting = '{"userName":"dot","body":"hi gus","timestamp":"3:06 PM"}\n'
        self.assertEqual(self.raw(dot), greeting)
        self.assertEqual(self.raw(gus), greeting)

        # The main port speaks it too, in the same room (lobby).
        main = self.ws(server.ws_url("/chat"), origin=server.url("").rstrip("/"))
        self.send(main, "ann", "", "")
        self.assertEqual(
            [json.loads(self.raw(main))["body"] for _ in range(2)], ["first!", "hi gus"]
        )

        status, headers, body = self.http(f"http://{LOOPBACK}:{port}/getAllMessages")
        self.assertEqual((status, headers["Content-Type"]), (200, "text/plain; charset=utf-8"))
        messages = json.loads(body)["Messages"]
        self.assertTrue(body.endswith(b"]}\n"))
        self.assertEqual(
            [(m["userName"], m["body"]) for m in messages], [("gus", "first!"), ("dot", "hi gus")]
        )

    def test_pages(self) -> None:
        """The listener shows parkchat's golang-chat page on its other
        paths; the main port at /messages; the browser page stays at /."""
        port = free_port()
        server = self.start(["--golang-chat", f"tcp:{port}:interface={LOOPBACK}"])
        for url in (f"http://{LOOPBACK}:{port}/", server.url("/messages")):
            status, headers, body = self.http(url)
            self.assertEqual(status, 200)
            self.assertIn(b'src="/messages/app.js"', body)
            self.assertIn("script-src 'self'", headers["Content-Security-Policy"])
        self.assertEqual(self.http(server.url("/messages/app.js"))[0], 200)
        self.assertIn(b"<title>parkchat</title>", self.http(server.url("/"))[2])

    def test_refused_visitors_are_told(self) -> None:
        """Found by running the seed's own chat.html in Chromium: it shows
        every frame as a message and has no close handler, so a visitor
        parkchat refuses saw a page that silently stopped working. Two such
        visitors of the seed's page: one whose name has a space, and a
        second one who left the name empty (the page sends ``Anonymous``).
        Each gets one message saying why, then the close."""
        port = free_port()
        self.start(["--golang-chat", f"tcp:{port}:interface={LOOPBACK}"])
        first = self.page_client(port)
        self.send(first, "Anonymous", "no name typed", "7:06 PM")
        self.assertEqual(json.loads(self.raw(first))["body"], "no name typed")
        for name, reason in (
            ("Anonymous", "the name Anonymous is already taken in lobby"),
            (
                "Gauri Shankar",
                "nickname may contain only letters, digits, '_', '-' and '.', "
                "and must start with a letter, digit or '_'",
            ),
        ):
            visitor = self.page_client(port)
            self.send(visitor, name, "hello", "7:07 PM")
            notice = f"{reason}. You are disconnected: reload the page to try again."
            self.assertEqual(
                self.raw(visitor),
                json.dumps(
                    {"userName": "(parkchat)", "body": notice, "timestamp": "7:07 PM"},
                    separators=(",", ":"),
                )
                + "\n",
            )
            self.assertEqual(self.closed(visitor), (1008, reason))
        self.assertQuiet(first)  # nothing reached the room


class LildengziTests(DialectEndToEndCase):
    """lildengzi's ``index.html``, step by step, with the seed's JWT_SECRET
    (``--seed-config lildengzi``; the database and Redis are parkchat's)."""

    def setUp(self) -> None:
        super().setUp()
        self.port = free_port()
        self.server = self.start(
            ["--lildengzi", f"tcp:{self.port}:interface={LOOPBACK}",
             "--seed-config", "lildengzi", "--redis", ""],
            env={"JWT_SECRET": LILDENGZI_SECRET},
        )  # fmt: skip
        self.base = f"http://{LOOPBACK}:{self.port}"

    def post(self, path: str, body: Any) -> tuple[int, dict[str, Any]]:
        """The page's ``postJSON``: the envelope, ``code === 0`` on success."""
        status, headers, raw = self.http(
            self.base + path, "POST", body, {"Content-Type": "application/json"}
        )
        self.assertEqual(headers["Content-Type"], "application/json")
        self.assertTrue(raw.endswith(b"}\n"))
        reply: dict[str, Any] = json.loads(raw)
        return status, reply

    def log_in(self, name: str) -> tuple[int, ClientConnection]:
        """register(), login(), connectWebSocket(token) and its onopen."""
        status, reply = self.post("/register", {"username": name, "password": "pw"})
        self.assertEqual((status, reply["code"], reply["message"]), (200, 0, "ok"))
        status, reply = self.post("/login", {"username": name, "password": "pw"})
        self.assertEqual(status, 200)
        data = reply["data"]
        self.assertEqual(jwt.decode(data["token"], LILDENGZI_SECRET, ["HS256"])["username"], name)
        client = self.ws(f"ws://{LOOPBACK}:{self.port}/ws?token={quote(data['token'], safe='')}")
        client.send(json.dumps({"type": "get_online_list"}))
        online = json.loads(self.raw(client))
        self.assertEqual(online["type"], "online_list")
        self.assertIn(data["user_id"], online["data"])
        return data["user_id"], client

    def test_index_page_client(self) -> None:
        alice_id, alice = self.log_in("alice")
        bob_id, bob = self.log_in("bob")
        # "@<bob's id> hello": online, so at once; the sender hears nothing.
        alice.send(json.dumps({"type": "chat", "to_user_id": bob_id, "content": "hello"}))
        self.assertEqual(
            self.raw(bob),
            f'{{"type":"chat","to_user_id":{bob_id},"from_user_id":{alice_id},"content":"hello"}}',
        )
        self.assertQuiet(alice)
        # Bob goes away; the message waits for his "fetch offline" button.
        bob.close()
        alice.send(json.dumps({"type": "chat", "to_user_id": bob_id, "content": "later"}))
        self.assertQuiet(alice)
        token = self.post("/login", {"username": "bob", "password": "pw"})[1]["data"]["token"]
        bob = self.ws(
            f"ws://{LOOPBACK}:{self.port}/ws", headers={"Authorization": f"Bearer {token}"}
        )
        bob.send(json.dumps({"type": "get_offline"}))
        offline = json.loads(self.raw(bob))
        self.assertEqual(offline["type"], "offline_list")
        [item] = offline["data"]
        self.assertEqual(
            {k: item[k] for k in ("to_user_id", "from_user_id", "content")},
            {"to_user_id": bob_id, "from_user_id": alice_id, "content": "later"},
        )
        bob.send(json.dumps({"type": "get_offline"}))
        self.assertEqual(self.raw(bob), '{"type":"offline_list","data":null}')
        alice.send(json.dumps({"type": "chat", "to_user_id": 999, "content": "anyone?"}))
        self.assertEqual(self.raw(alice), '{"type":"error","content":"target user not found"}')

    def test_http_refusals(self) -> None:
        status, reply = self.post("/register", {"username": "", "password": "pw"})
        self.assertEqual((status, reply), (400, {"code": 400, "message": "username is required"}))
        status, reply = self.post("/login", {"username": "nobody", "password": "pw"})
        self.assertEqual((status, reply), (401, {"code": 401, "message": "unauthorized"}))
        status, _, body = self.http(self.base + "/ws")
        self.assertEqual((status, body), (401, b'{"code":401,"message":"missing token"}\n'))
        self.assertEqual(self.http(self.base + "/")[2], b"404 page not found\n")


class MixedRoomTests(DialectEndToEndCase):
    """Every surface in one room and one conversation, each in its own format."""

    def test_everyone_together(self) -> None:
        lildengzi_port = free_port()
        server = self.start(
            ["--lildengzi", f"tcp:{lildengzi_port}:interface={LOOPBACK}",
             "--garinchat-secret", GARIN_SECRET, "--lildengzi-secret", LILDENGZI_SECRET],
        )  # fmt: skip
        origin = server.url("").rstrip("/")

        # paige: the page's protocol on /ws, a registered account.
        server.register("paige", "paige-pw")
        _, body = server.request("/login", "POST", {"username": "paige", "password": "paige-pw"})
        login = json.loads(body)
        paige = self.ws(server.ws_url("/ws"), headers={"Authorization": f"Bearer {login['token']}"})
        self.assertEqual(json.loads(self.raw(paige))["type"], "ready")
        paige.send(json.dumps({"type": "join", "room": "lobby"}))

        garin = self.ws(server.ws_url("/"), origin=origin)
        garin.send(json.dumps({"type": "auth", "body": garin_token()}))
        garin.send(json.dumps({"type": "join", "username": "garin", "room": "lobby"}))
        gopher = self.ws(server.ws_url("/chat"), origin=origin)
        gopher.send(json.dumps({"userName": "gopher", "body": "", "timestamp": ""}))
        tux = LineSocket(server.tcp_address, timeout=IO_TIMEOUT)
        self.addCleanup(tux.close)
        tux.send(json.dumps({"name": "tux", "room": "lobby"}).encode() + b"\n")
        self.assertQuietAll(paige, garin, gopher)
        for client in (paige, garin, gopher):
            while True:  # drop the joins so far
                try:
                    client.recv(timeout=0.2)
                except TimeoutError:
                    break

        def everyone_hears(sender: str, text: str) -> None:
            if sender != "paige":
                event = self.next_of(paige, "message")
                self.assertEqual((event["username"], event["body"]), (sender, text))
            if sender != "garin":
                self.assertEqual(
                    json.loads(self.raw(garin)),
                    {"type": "message", "body": text, "username": sender},
                )
            frame = json.loads(self.raw(gopher))
            self.assertEqual((frame["userName"], frame["body"]), (sender, text))
            # Every one but paige is a guest, marked "~" on the terminal.
            mark = "" if sender == "paige" else "~"
            self.assertEqual(tux.read_line(), f"{mark}{sender}:{text}")

        garin.send(json.dumps({"type": "message", "body": "from GarinChat"}))
        everyone_hears("garin", "from GarinChat")
        gopher.send(
            json.dumps({"userName": "gopher", "body": "from golang-chat", "timestamp": "t"})
        )
        everyone_hears("gopher", "from golang-chat")
        tux.send_line("from a terminal")
        everyone_hears("tux", "from a terminal")
        paige.send(json.dumps({"type": "message", "body": "from the page"}))
        everyone_hears("paige", "from the page")

        # lily: a lildengzi account; she and paige write to each other by id.
        lily_base = f"http://{LOOPBACK}:{lildengzi_port}"
        headers = {"Content-Type": "application/json"}
        self.http(lily_base + "/register", "POST", {"username": "lily", "password": "pw"}, headers)
        _, _, raw = self.http(
            lily_base + "/login", "POST", {"username": "lily", "password": "pw"}, headers
        )
        lily_login = json.loads(raw)["data"]
        lily = self.ws(f"ws://{LOOPBACK}:{lildengzi_port}/ws?token={lily_login['token']}")
        lily.send(
            json.dumps({"type": "chat", "to_user_id": login["user_id"], "content": "hi paige"})
        )
        direct = self.next_of(paige, "chat")
        self.assertEqual(
            (direct["from"], direct["from_user_id"], direct["content"]),
            ("lily", lily_login["user_id"], "hi paige"),
        )
        paige.send(
            json.dumps({"type": "chat", "to_user_id": lily_login["user_id"], "content": "hi lily"})
        )
        self.assertEqual(
            json.loads(self.raw(lily)),
            {
                "type": "chat",
                "to_user_id": lily_login["user_id"],
                "from_user_id": login["user_id"],
                "content": "hi lily",
            },
        )

    def next_of(self, client: ClientConnection, kind: str) -> dict[str, Any]:
        """The next /ws frame of ``kind``, skipping others (acks, joins)."""
        for _ in range(20):
            frame: dict[str, Any] = json.loads(self.raw(client))
            if frame["type"] == kind:
                return frame
        raise AssertionError(f"no {kind} frame")

    def assertQuietAll(self, *clients: ClientConnection) -> None:
        for client in clients:
            self.assertTrue(client.ping().wait(IO_TIMEOUT))
