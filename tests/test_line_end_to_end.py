"""The line protocol against a real server process (MISSION section B).
Guests' lines come marked ``~name:text`` (docs/line-protocol.md).

Each test starts ``twistd -n parkchat`` with an HTTP port and a ``--tcp``
listener on free loopback ports and a fresh SQLite database (see
``tests.e2e_support``), and talks to it the way MaChat's clients and ``nc``
do: raw blocking TCP sockets with timeouts, and the ``websockets`` sync
client for ``/ws/{room}`` (HTTP Basic auth) and ``/mychat``. Every wait is
bounded; the server is stopped and every socket closed in cleanups.
"""

from __future__ import annotations

import json
from contextlib import ExitStack
from typing import Any

from twisted.trial.unittest import TestCase

from websockets.sync.client import ClientConnection, connect

from tests.e2e_support import CLEAN_EXITS, LineSocket, ParkchatProcess, basic_auth

TIMEOUT = 5.0


def handshake(name: str, room: str = "lounge", **extra: Any) -> str:
    return json.dumps({"name": name, "room": room, **extra})


class LineEndToEndCase(TestCase):
    """A running server and helpers to connect every kind of client."""

    def setUp(self) -> None:
        self.server = ParkchatProcess(self.mktemp())
        self.server.start()
        self.addCleanup(self.server.stop)

    def tcp(self) -> LineSocket:
        client = LineSocket(self.server.tcp_address, timeout=TIMEOUT)
        self.addCleanup(client.close)
        return client

    def tcp_join(self, name: str, room: str = "lounge", **extra: Any) -> LineSocket:
        client = self.tcp()
        client.send_line(handshake(name, room, **extra))
        return client

    def websocket(self, path: str, auth: tuple[str, str] | None = None) -> ClientConnection:
        headers = {"Authorization": basic_auth(*auth)} if auth is not None else None
        # Entered as a context manager: websockets >= 17.1 deprecates the
        # bare connect(); the ExitStack closes it in cleanup.
        stack = ExitStack()
        self.addCleanup(stack.close)
        ws: ClientConnection = stack.enter_context(
            connect(
                self.server.ws_url(path),
                additional_headers=headers,
                open_timeout=TIMEOUT,
                close_timeout=TIMEOUT,
            )
        )
        return ws

    def room_member(self, nickname: str, room: str = "lounge") -> ClientConnection:
        """A registered user on /ws/{room}, past its own join notice."""
        password = f"{nickname}-secret"
        self.server.register(nickname, password)
        ws = self.websocket(f"/ws/{room}", (nickname, password))
        joined = self.frame(ws)
        self.assertEqual(joined["content"], f"{nickname} has joined the room")
        return ws

    def frame(self, ws: ClientConnection) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(ws.recv(timeout=TIMEOUT))
        return result


class MixedRoomEndToEndTests(LineEndToEndCase):
    """TCP, /ws and /mychat clients in one room of a real server."""

    def test_tcp_and_websocket_see_each_other(self) -> None:
        """An ``nc``-style client and a /ws/lounge user see each other's
        messages, each in its own format, and the leave notice."""
        dora = self.room_member("dora")
        mina = self.tcp_join("mina")
        joined = self.frame(dora)
        self.assertEqual(
            (joined["type"], joined["content"]), ("system", "mina has joined the room")
        )

        mina.send_line("hello from nc")
        self.assertEqual(mina.read_line(), "~mina:hello from nc")
        chat = self.frame(dora)
        self.assertEqual(
            {k: chat[k] for k in ("chat_room", "nickname", "content", "type")},
            {"chat_room": "lounge", "nickname": "mina", "content": "hello from nc", "type": "chat"},
        )
        self.assertTrue(chat["id"] > 0)

        dora.send(json.dumps({"content": "hi mina\nhow are you?"}))
        self.assertEqual(self.frame(dora)["content"], "hi mina\nhow are you?")
        self.assertEqual(mina.read_lines(2), ["dora:hi mina", "dora:how are you?"])

        mina.close()
        left = self.frame(dora)
        self.assertEqual((left["type"], left["content"]), ("system", "mina has left the room"))

    def test_tcp_messages_in_history(self) -> None:
        """TCP messages are stored and appear in GET /history/{room} with
        the TCP client's name."""
        self.server.register("dora", "dora-secret")
        mina = self.tcp_join("mina")
        for text in ("one", "two"):
            mina.send_line(text)
        self.assertEqual(mina.read_lines(2), ["~mina:one", "~mina:two"])
        history = self.server.history("lounge", ("dora", "dora-secret"))
        self.assertEqual(
            [(m["nickname"], m["content"], m["chat_room"]) for m in history],
            [("mina", "one", "lounge"), ("mina", "two", "lounge")],
        )
        self.assertTrue(all(m["id"] > 0 for m in history))

    def test_mychat_client_in_same_room(self) -> None:
        """A /mychat client shares the room with TCP and /ws members."""
        dora = self.room_member("dora")
        tom = self.tcp_join("tom")
        self.frame(dora)  # tom joined
        mychat = self.websocket("/mychat")
        mychat.send(handshake("mia"))
        self.frame(dora)  # mia joined
        mychat.send("hi from mychat")
        self.assertEqual(mychat.recv(timeout=TIMEOUT), "~mia:hi from mychat\n")
        self.assertEqual(tom.read_line(), "~mia:hi from mychat")
        self.assertEqual(self.frame(dora)["nickname"], "mia")
        tom.send_line("hi from tcp")
        self.assertEqual(tom.read_line(), "~tom:hi from tcp")
        self.assertEqual(mychat.recv(timeout=TIMEOUT), "~tom:hi from tcp\n")
        dora.send(json.dumps({"content": "hi from ws"}))
        self.assertEqual(mychat.recv(timeout=TIMEOUT), "dora:hi from ws\n")
        self.assertEqual(tom.read_line(), "dora:hi from ws")

    def test_lines_with_handshake_survive_restart(self) -> None:
        """Lines sent in the same packet as the handshake are posted, and
        they are still in the history after a restart."""
        self.server.register("dora", "dora-secret")
        mina = self.tcp()
        mina.send((handshake("mina") + "\nfirst\nsecond\n").encode())
        self.assertEqual(mina.read_lines(2), ["~mina:first", "~mina:second"])
        mina.send_line("/quit")
        self.assertEqual(mina.read_until_closed(), b"*** bye\n")
        self.server.restart()
        history = self.server.history("lounge", ("dora", "dora-secret"))
        self.assertEqual([m["content"] for m in history], ["first", "second"])

    def test_shutdown_says_goodbye(self) -> None:
        """SIGTERM closes TCP clients with a goodbye line; twistd exits
        cleanly."""
        mina = self.tcp_join("mina")
        mina.send_line("/who")
        self.assertEqual(mina.read_line(), "*** in lounge: mina")
        self.assertIn(self.server.stop(), CLEAN_EXITS)
        self.assertEqual(mina.read_until_closed(), b"*** server shutting down, bye\n")


class MaChatClientEndToEndTests(LineEndToEndCase):
    """What MaChat's own ``chattcpclient`` does, found by running it
    unchanged against parkchat: it writes the handshake with no newline
    and then waits for its user to type."""

    def test_handshake_without_newline(self) -> None:
        """The listening client is in the room at once (a /ws member sees it
        join) and receives the room's messages before it says anything;
        it used to be left out until its first line, and closed after
        ``--handshake-timeout`` if it stayed silent."""
        dora = self.room_member("dora")
        mina = self.tcp()
        mina.send(handshake("mina").encode("utf-8"))
        self.assertEqual(self.frame(dora)["content"], "mina has joined the room")
        tom = self.tcp_join("tom")
        self.frame(dora)  # tom joined
        tom.send_line("hi mina")
        self.assertEqual(mina.read_line(), "~tom:hi mina")
        mina.send_line("hi tom")
        self.assertEqual(mina.read_line(), "~mina:hi tom")
        self.assertEqual(tom.read_lines(2), ["~tom:hi mina", "~mina:hi tom"])


class IdentityEndToEndTests(LineEndToEndCase):
    """Bad handshakes and registered users over TCP."""

    def assertRefused(self, client: LineSocket, code: str) -> str:
        """One error line, then the server closes the socket."""
        rest = client.read_until_closed().decode()
        lines = rest.splitlines()
        self.assertEqual(len(lines), 1, rest)
        self.assertTrue(lines[0].startswith(f"*** error ({code}): "), rest)
        self.assertTrue(rest.endswith("\n"))
        return lines[0]

    def test_bad_handshakes_closed(self) -> None:
        """Bad handshakes get one error line and the server closes the
        socket (recv returns b'' in time); nothing is left behind."""
        self.server.register("dora", "dora-secret")
        cases = [
            ("not json", "invalid_request"),
            ("[1, 2]", "invalid_request"),
            ('{"room": "lounge"}', "invalid_nickname"),
            ('{"name": "mina"}', "invalid_room"),
            (handshake("dora"), "unauthorized"),
            (handshake("dora", password="wrong"), "unauthorized"),
        ]
        for text, code in cases:
            client = self.tcp()
            client.send_line(text)
            self.assertRefused(client, code)

    def test_name_taken(self) -> None:
        """A guest name already in the room is refused; its holder carries on."""
        mina = self.tcp_join("mina")
        mina.send_line("still here")
        self.assertEqual(mina.read_line(), "~mina:still here")
        other = self.tcp_join("Mina")
        line = self.assertRefused(other, "invalid_request")
        self.assertIn("already taken", line)
        mina.send_line("still here")
        self.assertEqual(mina.read_line(), "~mina:still here")

    def test_non_utf8_and_long_lines(self) -> None:
        """Bytes that are not UTF-8 and over-long lines get error lines; the
        connection and the server carry on."""
        mina = self.tcp_join("mina")
        mina.send(b"caf\xe9\n" + b"x" * 9000 + b"\nok\n")
        self.assertEqual(
            mina.read_lines(3),
            [
                "*** error (invalid_request): line is not valid UTF-8; it was dropped",
                "*** error (invalid_request): line longer than 8192 bytes; it was dropped",
                "~mina:ok",
            ],
        )

    def test_registered_user_over_tcp(self) -> None:
        """A handshake with the right password speaks as the account; its
        messages are stored under the account's name."""
        self.server.register("Carol", "carol-secret")
        dora = self.room_member("dora")
        carol = self.tcp_join("carol", password="carol-secret")
        self.assertEqual(self.frame(dora)["content"], "Carol has joined the room")
        carol.send_line("signed in")
        self.assertEqual(carol.read_line(), "Carol:signed in")
        self.assertEqual(self.frame(dora)["nickname"], "Carol")
        history = self.server.history("lounge", ("dora", "dora-secret"))
        self.assertEqual([(m["nickname"], m["content"]) for m in history], [("Carol", "signed in")])
