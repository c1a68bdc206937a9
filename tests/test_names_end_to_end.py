"""Names and guests against a real server process (issue 15, items 1, 2, 5
and 9): a registered name ends the guest that held it, look-alike names are
refused, guests are marked, bidi controls stay on their own line.

Each test starts ``twistd -n parkchat`` on free loopback ports with a fresh
SQLite database (``tests.e2e_support``) and talks to it with blocking TCP
sockets and the ``websockets`` sync client, as the clients of each surface
do; every wait is bounded, the server is stopped and the sockets closed in
cleanups.
"""

from __future__ import annotations

import json
from contextlib import ExitStack
from typing import Any

from twisted.trial.unittest import TestCase

from websockets.sync.client import ClientConnection, connect

from tests.e2e_support import LineSocket, ParkchatProcess, basic_auth

TIMEOUT = 5.0
#: "alice" with a Cyrillic a (U+0430) for its first letter.
CYRILLIC_ALICE = "\u0430lice"


def handshake(name: str, room: str = "lounge", **extra: Any) -> str:
    return json.dumps({"name": name, "room": room, **extra})


class NamesEndToEndCase(TestCase):
    def setUp(self) -> None:
        self.server = ParkchatProcess(self.mktemp(), irc=True)
        self.server.start()
        self.addCleanup(self.server.stop)

    def tcp_join(self, name: str, room: str = "lounge", **extra: Any) -> LineSocket:
        client = LineSocket(self.server.tcp_address, timeout=TIMEOUT)
        self.addCleanup(client.close)
        client.send_line(handshake(name, room, **extra))
        return client

    def irc(self) -> LineSocket:
        client = LineSocket(self.server.irc_address, timeout=TIMEOUT)
        self.addCleanup(client.close)
        return client

    def websocket(self, path: str, auth: tuple[str, str]) -> ClientConnection:
        stack = ExitStack()
        self.addCleanup(stack.close)
        ws: ClientConnection = stack.enter_context(
            connect(
                self.server.ws_url(path),
                additional_headers={"Authorization": basic_auth(*auth)},
                open_timeout=TIMEOUT,
                close_timeout=TIMEOUT,
            )
        )
        return ws

    def frame(self, ws: ClientConnection) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(ws.recv(timeout=TIMEOUT))
        return result

    def register(self, nickname: str, password: str) -> tuple[int, dict[str, Any]]:
        status, body = self.server.request(
            "/register", "POST", {"nickname": nickname, "password": password}
        )
        return status, json.loads(body)


class GuestTakeoverEndToEndTests(NamesEndToEndCase):
    """Item 1: registering a name a connected guest holds."""

    def test_registering_a_tcp_guests_name_ends_the_guest(self) -> None:
        """The reported case: TCP guest ``zed`` is connected, ``POST
        /register zed`` answers 201, and the guest is told why and
        disconnected before that answer; what it sends next reaches nobody
        as zed and is not in /history. Its earlier message stays marked as a
        guest's."""
        mina = self.tcp_join("mina")
        zed = self.tcp_join("zed")
        zed.send_line("before")
        self.assertEqual(zed.read_line(), "~zed:before")
        self.assertEqual(mina.read_line(), "~zed:before")

        status, body = self.register("zed", "zed-secret")
        self.assertEqual(status, 201, body)

        self.assertEqual(
            zed.read_lines(2),
            [
                "*** error (name_registered): this name is now a registered account's: "
                "reconnect under another name, or log in with the account's password",
                "*** disconnected: the name was registered as an account",
            ],
        )
        self.assertEqual(zed.read_until_closed(), b"")
        try:
            zed.send_line("i am zed now")
        except OSError:
            pass  # the socket is closed: exactly the point
        mina.assert_quiet(0.5)

        history = self.server.history("lounge", ("zed", "zed-secret"))
        self.assertEqual(
            [(m["nickname"], m["content"], m.get("guest")) for m in history],
            [("zed", "before", True)],
        )

        # The account speaks as zed, unmarked.
        account = self.tcp_join("zed", password="zed-secret")
        account.send_line("the real zed")
        self.assertEqual(account.read_line(), "zed:the real zed")
        self.assertEqual(mina.read_line(), "zed:the real zed")

    def test_registering_a_look_alike_ends_an_irc_guest(self) -> None:
        """An IRC guest whose nick looks like the registered name (Cyrillic
        a) gets 436 ERR_NICKCOLLISION and ERROR, and is closed."""
        guest = self.irc()
        guest.send(f"NICK {CYRILLIC_ALICE}\r\nUSER a 0 * :A\r\n".encode())
        while " 001 " not in guest.read_line():
            pass
        status, _ = self.register("alice", "alice-secret")
        self.assertEqual(status, 201)
        rest = guest.read_until_closed().decode()
        lines = [line for line in (guest.buffer.decode() + rest).splitlines() if line]
        collision = [line for line in lines if " 436 " in line]
        self.assertEqual(len(collision), 1, lines)
        self.assertIn("[name_registered]", collision[0])
        self.assertTrue(lines[-1].startswith("ERROR :Closing link:"), lines)


class LookAlikeEndToEndTests(NamesEndToEndCase):
    """Item 2: names whose skeleton is taken are refused everywhere."""

    def test_register_refuses_a_look_alike_with_409(self) -> None:
        self.assertEqual(self.register("alice", "alice-secret")[0], 201)
        status, body = self.register(CYRILLIC_ALICE, "other-secret")
        self.assertEqual(status, 409)
        self.assertEqual(body["error"], "nickname_taken")
        self.assertIn("looks like the registered account 'alice'", body["message"])
        # Greek omicron in bob, digit one for l.
        self.assertEqual(self.register("bob", "bob-secret")[0], 201)
        self.assertEqual(self.register("b\u03bfb", "x-secret")[0], 409)
        self.assertEqual(self.register("a1ice", "x-secret")[0], 409)

    def test_tcp_guest_cannot_take_a_look_alike(self) -> None:
        self.assertEqual(self.register("alice", "alice-secret")[0], 201)
        guest = self.tcp_join(CYRILLIC_ALICE)
        line = guest.read_line()
        self.assertTrue(line.startswith("*** error (unauthorized): "), line)
        self.assertIn("registered account", line)
        self.assertEqual(guest.read_until_closed(), b"")

    def test_two_guests_that_look_alike_cannot_share_a_room(self) -> None:
        self.tcp_join("bob")
        twin = self.tcp_join("b\u03bfb")
        line = twin.read_line()
        self.assertIn("already taken in lounge", line)


class BidiEndToEndTests(NamesEndToEndCase):
    """Item 9: bidi controls in names and messages."""

    def test_names_with_bidi_or_zero_width_are_refused(self) -> None:
        for name in ("zed\u202e", "z\u200bed", "\u2066zed"):
            status, body = self.register(name, "some-secret")
            self.assertEqual(status, 400, name)
            self.assertIn("invisible or direction-changing", body["message"])
        guest = self.tcp_join("z\u200ded")
        self.assertIn("invisible or direction-changing", guest.read_line())

    def test_an_open_override_is_closed_on_its_line(self) -> None:
        """A message with an unclosed RLO reaches TCP members with the
        override closed (PDF) before the end of each line, so nothing after
        it on the terminal is reversed; /history stores it closed."""
        self.server.register("dora", "dora-secret")
        mina = self.tcp_join("mina")
        zed = self.tcp_join("zed")
        zed.send_line("\u202eevil")
        self.assertEqual(mina.read_line(), "~zed:\u202eevil\u202c")
        history = self.server.history("lounge", ("dora", "dora-secret"))
        self.assertEqual(history[-1]["content"], "\u202eevil\u202c")


class GuestMarkEndToEndTests(NamesEndToEndCase):
    """Guests are visible as guests where names are shown."""

    def test_room_socket_sees_guest_true(self) -> None:
        """A /ws/{room} account sees the TCP guest's join and message with
        ``"guest": true``, and its own without the key."""
        self.server.register("dora", "dora-secret")
        dora = self.websocket("/ws/lounge", ("dora", "dora-secret"))
        self.assertNotIn("guest", self.frame(dora))  # its own join
        mina = self.tcp_join("mina")
        self.assertTrue(self.frame(dora)["guest"])
        mina.send_line("hi")
        chat = self.frame(dora)
        self.assertEqual((chat["nickname"], chat["content"], chat["guest"]), ("mina", "hi", True))
        dora.send(json.dumps({"content": "hello"}))
        self.assertNotIn("guest", self.frame(dora))
        self.assertEqual(mina.read_lines(2), ["~mina:hi", "dora:hello"])
