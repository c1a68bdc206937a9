"""The golang-chat dialect (seed 003) in memory: ``/chat`` frame by frame
(byte by byte: gorilla's ``WriteJSON`` ends each with a newline),
``/getAllMessages`` and the page's routes, on the main port and on a
``--golang-chat`` listener."""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.web.resource import getChildForRequest
from twisted.web.static import File
from twisted.web.test.requesthelper import DummyRequest

from parkchat.limits import Limits
from parkchat.model import Message
from parkchat.protocols.golangchat import NOTICE_NAME, REPLAY, ClientStamps
from parkchat.web.dialects import GolangChatPage
from tests.dialect_support import DialectCase, RawClient, header
from tests.helpers import FakeParticipant

STAMP = "3:05 PM"


def frame(user: str, body: str, stamp: str = STAMP) -> bytes:
    return (
        json.dumps(
            {"userName": user, "body": body, "timestamp": stamp}, separators=(",", ":")
        ).encode()
        + b"\n"
    )


class GolangCase(DialectCase):
    def connect(self, *, listener: bool = False, **kwargs: Any) -> RawClient:
        site = self.golang_chat_site if listener else self.main_site
        return self.websocket(site, "/chat", **kwargs)

    def say(self, client: RawClient, user: str, body: str, stamp: str = STAMP) -> None:
        client.send_json({"userName": user, "body": body, "timestamp": stamp})
        self.settle()

    def other(self, name: str = "ann") -> FakeParticipant:
        """Someone in the room on another surface."""
        participant = FakeParticipant(name)
        self.service.connect(participant)
        self.service.join(participant, "lobby")
        return participant

    def post(self, participant: FakeParticipant, text: str) -> Message:
        d = self.service.post(participant, "lobby", text)
        self.settle()
        message: Message = self.successResultOf(d)
        return message

    def server_frame(self, message: Message) -> bytes:
        return frame(message.nickname, message.content, message.timestamp)

    def assertRefused(self, client: RawClient, reason: str, stamp: str = STAMP) -> None:
        """The last frame before the close is the notice, in golang-chat's
        format; then the close, with 1008 and the reason."""
        notice = f"{reason}. You are disconnected: reload the page to try again."
        self.assertEqual(client.take()[-1:], [frame(NOTICE_NAME, notice, stamp)])
        self.assertEqual((client.close_code, client.close_reason), (1008, reason))


class ExchangeTests(GolangCase):
    """A working client sees exactly the seed's frames."""

    def test_nothing_before_the_first_message(self) -> None:
        """The seed reads a message before it sends anything."""
        client = self.connect()
        self.assertTrue(client.opened)
        self.assertEqual(client.take(), [])
        self.assertEqual(self.service.members("lobby"), [])

    def test_past_then_own_message(self) -> None:
        """The first message brings the room's past, oldest first, one
        frame each, then that message as everyone gets it, with the
        client's own timestamp string."""
        ann = self.other()
        old = [self.post(ann, text) for text in ("one", "two")]
        gus = self.connect()
        self.say(gus, "gus", "hello")
        self.assertEqual(
            gus.take(),
            [self.server_frame(old[0]), self.server_frame(old[1]), frame("gus", "hello")],
        )

    def test_everyone_gets_every_message(self) -> None:
        """Every message goes to everyone, the sender too, on the main port
        and on the listener alike."""
        gus = self.connect()
        self.say(gus, "gus", "")
        dot = self.connect(listener=True)
        self.say(dot, "dot", "")
        gus.take()
        dot.take()
        self.say(dot, "dot", "hi gus", "3:06 PM")
        self.assertEqual(gus.take(), [frame("dot", "hi gus", "3:06 PM")])
        self.assertEqual(dot.take(), [frame("dot", "hi gus", "3:06 PM")])

    def test_go_escaping(self) -> None:
        gus = self.connect()
        self.say(gus, "gus", "<i>&</i>", "")
        self.assertEqual(
            gus.take(),
            [
                b'{"userName":"gus","body":"\\u003ci\\u003e\\u0026\\u003c/i\\u003e","timestamp":""}\n'
            ],
        )

    def test_other_surfaces(self) -> None:
        """Messages from other surfaces arrive with the time they were
        stored; joins and leaves are not sent (golang-chat has none)."""
        gus = self.connect()
        self.say(gus, "gus", "")
        gus.take()
        ann = self.other()
        message = self.post(ann, "from elsewhere")
        self.service.disconnect(ann)
        self.settle()
        self.assertEqual(gus.take(), [self.server_frame(message)])
        self.assertEqual(message.timestamp, "2025-09-08T15:30:00.000Z")

    def test_past_keeps_client_stamps(self) -> None:
        """What is stored is a guest's message. The past shows the client's
        stamp where this instance remembers it, else the time the message
        was stored (other surfaces, or after a restart)."""
        gus = self.connect()
        self.say(gus, "gus", "kept")
        ann = self.other()
        elsewhere = self.post(ann, "from elsewhere")
        [stored, _] = self.successResultOf(self.service.history("lobby"))
        self.assertEqual((stored.nickname, stored.content, stored.user_id), ("gus", "kept", None))
        later = self.connect()
        self.say(later, "dot", "")
        self.assertEqual(later.take(), [frame("gus", "kept"), self.server_frame(elsewhere)])
        self.golang_chat.stamps = ClientStamps()  # what a restarted instance knows
        again = self.connect()
        self.say(again, "eve", "")
        self.assertEqual(again.take(), [self.server_frame(stored), self.server_frame(elsewhere)])

    def test_empty_body_not_posted(self) -> None:
        """An empty or blank body joins (the past is sent) but posts nothing."""
        gus = self.connect()
        self.say(gus, "gus", "")
        self.say(gus, "gus", "  \n ")
        self.assertEqual(gus.take(), [])
        self.assertEqual(self.service.members("lobby"), ["gus"])
        self.assertEqual(self.successResultOf(self.service.history("lobby")), [])

    def test_decoder_semantics(self) -> None:
        """As gorilla's ``ReadJSON``: keys in any case, the first JSON value
        counts (what follows is ignored), absent fields are empty."""
        gus = self.connect()
        gus.sendMessage(b'{"USERNAME":"gus","Body":"x"} trailing junk')
        self.settle()
        self.assertEqual(gus.take(), [frame("gus", "x", "")])

    def test_past_capped(self) -> None:
        """The past is the newest REPLAY messages (the seed sent them all
        and stopped serving anyone past 100)."""
        ann = self.other()
        for n in range(REPLAY + 5):
            self.service.post(ann, "lobby", f"m{n}")
        self.settle()
        gus = self.connect()
        self.say(gus, "gus", "")
        frames = gus.take()
        self.assertEqual(len(frames), REPLAY)
        self.assertEqual(json.loads(frames[0])["body"], "m5")

    def test_live_while_sending_the_past(self) -> None:
        """Messages arriving while the past is read are sent after it, and
        once only."""
        ann = self.other()
        first = self.post(ann, "before")
        pending: Deferred[list[Message]] = Deferred()
        self.patch(self.service, "history", lambda room, limit=None: pending)
        gus = self.connect()
        self.say(gus, "gus", "")
        during = self.post(ann, "during")
        self.assertEqual(gus.take(), [])
        after_read = self.post(ann, "after the read")
        pending.callback([first, during])
        self.settle()
        self.assertEqual(
            gus.take(),
            [self.server_frame(first), self.server_frame(during), self.server_frame(after_read)],
        )


class NameTests(GolangCase):
    """``userName`` is a guest's name, checked like every guest's."""

    def test_rename(self) -> None:
        """A message under another name renames the connection: the
        others see a leave and a join."""
        observer = self.other("observer")
        gus = self.connect()
        self.say(gus, "gus", "as gus")
        self.say(gus, "augustus", "as augustus")
        self.assertEqual(self.service.members("lobby"), ["observer", "augustus"])
        events = [(m.type, m.nickname, m.content) for m in observer.received]
        self.assertEqual(
            events[-4:],
            [
                ("chat", "gus", "as gus"),
                ("system", "gus", "gus has left the room"),
                ("system", "augustus", "augustus has joined the room"),
                ("chat", "augustus", "as augustus"),
            ],
        )

    def test_case_change_is_no_rename(self) -> None:
        gus = self.connect()
        self.say(gus, "gus", "one")
        self.say(gus, "GUS", "two")
        stored = self.successResultOf(self.service.history("lobby"))
        self.assertEqual([m.nickname for m in stored], ["gus", "gus"])
        self.assertIsNone(gus.closed)

    def test_refused_names(self) -> None:
        """An account's name, a name taken in the room, an empty name, a
        name with a space: the client is told why in a message it can show
        (the seed's page ignores close reasons), then closed with 1008 and
        the reason; nothing is posted."""
        self.account("alice")
        self.other("ann")
        for name, reason in (
            ("alice", "alice is a registered account's name"),
            ("Ann", "the name Ann is already taken in lobby"),
            ("", "nickname is required"),
            (
                "Gauri Shankar",
                "nickname may contain only letters, digits, '_', '-' and '.', "
                "and must start with a letter, digit or '_'",
            ),
        ):
            client = self.connect()
            self.say(client, name, "hi", "7:06 PM")
            self.assertRefused(client, reason, "7:06 PM")
        renamer = self.connect()
        self.say(renamer, "gus", "")
        self.say(renamer, "alice", "hi")
        self.assertEqual(renamer.close_code, 1008)
        self.assertEqual(self.successResultOf(self.service.history("lobby")), [])

    def test_guests_not_allowed(self) -> None:
        """With ``--allow-guests no`` golang-chat, all guests, is closed."""
        self.golang_chat.allow_guests = False
        gus = self.connect()
        self.say(gus, "gus", "hi")
        self.assertEqual((gus.close_code, gus.close_reason), (1008, "guests are not allowed here"))

    def test_names_checked_in_order(self) -> None:
        """Messages sent while the name is being checked wait for it."""
        pending: Deferred[bool] = Deferred()
        self.patch(self.service, "account_exists", lambda name: pending)
        gus = self.connect()
        self.say(gus, "gus", "one")
        self.say(gus, "gus", "two")
        self.assertEqual(self.service.members("lobby"), [])
        self.patch(self.service, "account_exists", lambda name: succeed(False))
        pending.callback(False)
        self.settle()
        stored = self.successResultOf(self.service.history("lobby"))
        self.assertEqual([m.content for m in stored], ["one", "two"])


class RefusalTests(GolangCase):
    def test_bad_frames_close(self) -> None:
        """Not JSON, not an object, a wrong type: closed with the reason."""
        for payload, reason in (
            (b"{oops", "frame is not valid JSON"),
            (b"[]", "frame must be a JSON object"),
            (b'{"userName":"gus","body":1}', '"body" must be a string'),
        ):
            client = self.connect()
            client.sendMessage(payload)
            self.settle()
            self.assertRefused(client, reason, "")

    def test_limits_close(self) -> None:
        gus = self.connect()
        self.say(gus, "gus", "x" * 4001)
        self.assertRefused(gus, "content is longer than 4000 characters")

    def test_kick(self) -> None:
        """A moderator's kick is shown too, then closes."""
        gus = self.connect()
        self.say(gus, "gus", "")
        self.service.kick("gus", "lobby", "spam")
        self.settle()
        self.assertEqual(gus.close_code, 1008)
        self.assertIn(NOTICE_NAME.encode(), gus.take()[-1])

    def test_shutdown(self) -> None:
        gus = self.connect()
        self.say(gus, "gus", "")
        self.successResultOf(self.service.stopService())
        self.settle()
        self.assertEqual(gus.close_code, 1001)


class RateTests(GolangCase):
    limits = Limits(rate_limit=1, rate_burst=2)

    def test_rate_limit_closes(self) -> None:
        gus = self.connect()
        for body in ("one", "two", "three"):
            self.say(gus, "gus", body)
        self.assertRefused(gus, "too many messages: slow down")


class HttpTests(GolangCase):
    def test_get_all_messages(self) -> None:
        """``{"Messages":[...]}`` and a newline, as text/plain, for any
        method, on the main port and the listener."""
        for site in (self.main_site, self.golang_chat_site):
            response, body = self.http(site, "GET", "/getAllMessages")
            self.assertEqual((response.code, body), (200, b'{"Messages":[]}\n'))
            self.assertEqual(header(response, "Content-Type"), "text/plain; charset=utf-8")
        gus = self.connect()
        self.say(gus, "gus", "hi")
        _, body = self.http(self.golang_chat_site, "POST", "/getAllMessages")
        self.assertEqual(body, b'{"Messages":[' + frame("gus", "hi").rstrip(b"\n") + b"]}\n")

    def test_foreign_origin(self) -> None:
        """Like gorilla's default check: another origin's page gets 403."""
        headers = {"Upgrade": "websocket", "Connection": "Upgrade", "Origin": "http://evil.test"}
        response, body = self.http(self.main_site, "GET", "/chat", headers=headers)
        self.assertEqual((response.code, body), (403, b"Forbidden\n"))

    def test_page_routes(self) -> None:
        """The page is at /messages on the main port, and at every path but
        the seed's own on the listener; its files are below /messages/."""
        for site, path in (
            (self.main_site, [b"messages"]),
            (self.main_site, [b"messages", b""]),
            (self.golang_chat_site, [b""]),
            (self.golang_chat_site, [b"anything", b"at", b"all"]),
        ):
            found = getChildForRequest(site.resource, DummyRequest(path))
            self.assertIsInstance(getattr(found, "page", found), GolangChatPage)
        for site in (self.main_site, self.golang_chat_site):
            found = getChildForRequest(site.resource, DummyRequest([b"messages", b"app.js"]))
            self.assertIsInstance(found, File)
