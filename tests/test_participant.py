"""The participant base every adapter is built on (parkchat.protocols.participant):
each adapter's goodbye table, frame decoding, error replies, failure
translation and the timer, on the adapters themselves with fake transports.
How each surface shows all this end to end is in tests/test_surfaces.py and
the surface modules."""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from zope.interface.verify import verifyObject

from parkchat.errors import ChatError, ContentTooLong, InvalidRequest
from parkchat.interfaces import IParticipant
from parkchat.model import DisconnectReason, User
from parkchat.protocols.line import LineChatFactory, LineChatProtocol
from parkchat.protocols.participant import CLOSE_GOING_AWAY, CLOSE_POLICY, Participant
from parkchat.protocols.stream import StreamOptions, StreamSession
from parkchat.protocols.unified import (
    CLOSE_BANNED,
    CLOSE_LOGGED_OUT,
    CLOSE_NAME_REGISTERED,
    CLOSE_REPLACED,
    AppSocketFactory,
    AppSocketProtocol,
)
from parkchat.protocols.websocket import RoomSocketFactory, RoomSocketProtocol
from parkchat.tokens import TokenAuthority, TokenVerifier
from tests.helpers import adapter_context, make_service

ADDRESS = IPv4Address("TCP", "192.0.2.7", 40000)


class GoodbyeTableTests(TestCase):
    """Each adapter says how it ends a connection for every reason the
    service has, in one table."""

    def test_every_reason_in_every_table(self) -> None:
        """No reason is missing from any adapter's table."""
        for adapter in (RoomSocketProtocol, AppSocketProtocol, StreamSession):
            self.assertEqual(set(adapter.goodbyes), set(DisconnectReason), adapter)

    def test_close_codes(self) -> None:
        """Shutdown is 1001 everywhere; /ws has its own codes for bans,
        replaced sessions, logouts and a name registered under a guest; the
        rest is 1008."""
        self.assertEqual(
            {reason: g.code for reason, g in AppSocketProtocol.goodbyes.items()},
            {
                DisconnectReason.SHUTDOWN: CLOSE_GOING_AWAY,
                DisconnectReason.REPLACED: CLOSE_REPLACED,
                DisconnectReason.BANNED: CLOSE_BANNED,
                DisconnectReason.LOGGED_OUT: CLOSE_LOGGED_OUT,
                DisconnectReason.TOKEN_REVOKED: CLOSE_LOGGED_OUT,
                DisconnectReason.DELIVERY_FAILED: CLOSE_POLICY,
                DisconnectReason.NAME_REGISTERED: CLOSE_NAME_REGISTERED,
                DisconnectReason.TOO_MANY_CONNECTIONS: CLOSE_POLICY,
            },
        )
        for adapter in (RoomSocketProtocol, StreamSession):
            for reason, goodbye in adapter.goodbyes.items():
                expected = CLOSE_GOING_AWAY if reason is DisconnectReason.SHUTDOWN else CLOSE_POLICY
                self.assertEqual(goodbye.code, expected, (adapter, reason))

    def test_stream_goodbye_lines(self) -> None:
        """The stream surfaces say goodbye in a last line."""
        self.assertEqual(
            {reason: g.line for reason, g in StreamSession.goodbyes.items()},
            {
                DisconnectReason.SHUTDOWN: "server shutting down, bye",
                DisconnectReason.REPLACED: "disconnected: replaced by a newer session",
                DisconnectReason.BANNED: "disconnected: banned",
                DisconnectReason.LOGGED_OUT: "disconnected: logged out everywhere",
                DisconnectReason.TOKEN_REVOKED: "disconnected: logged out",
                DisconnectReason.DELIVERY_FAILED: "disconnected: delivery failed",
                DisconnectReason.NAME_REGISTERED: (
                    "disconnected: the name was registered as an account"
                ),
                DisconnectReason.TOO_MANY_CONNECTIONS: (
                    "disconnected: too many connections for this account"
                ),
            },
        )


class ParticipantCase(TestCase):
    """Adapters built by their real factories on a started service, with
    ``StringTransport`` under the TCP one."""

    def setUp(self) -> None:
        self.service, _, self.clock = make_service()
        self.addCleanup(self.service.stopService)
        self.context = adapter_context(self.service, self.clock)

    def line_session(self) -> tuple[StreamSession, StringTransport]:
        protocol = LineChatFactory(self.context, StreamOptions()).buildProtocol(ADDRESS)
        assert isinstance(protocol, LineChatProtocol)
        transport = StringTransport(peerAddress=ADDRESS)
        protocol.makeConnection(transport)
        assert protocol.session is not None
        return protocol.session, transport

    def room_protocol(self) -> RoomSocketProtocol:
        protocol = (
            RoomSocketFactory(self.context).bound(User(1, "alice"), "dev").buildProtocol(ADDRESS)
        )
        assert isinstance(protocol, RoomSocketProtocol)
        return protocol

    def app_protocol(self) -> AppSocketProtocol:
        tokens = TokenVerifier(TokenAuthority(b"k" * 32, self.clock))
        protocol = AppSocketFactory(self.context, tokens).bound(None).buildProtocol(ADDRESS)
        assert isinstance(protocol, AppSocketProtocol)
        return protocol

    def errors_sent(self) -> dict[tuple[str, str], int]:
        return {k: v for k, v in self.service.metrics.errors_sent.items() if v}


class ParticipantTests(ParticipantCase):
    def test_every_adapter_is_a_participant(self) -> None:
        """All three adapters are Participants providing IParticipant."""
        session, _ = self.line_session()
        for adapter in (session, self.room_protocol(), self.app_protocol()):
            self.assertIsInstance(adapter, Participant)
            self.assertTrue(verifyObject(IParticipant, adapter))

    def test_bound_factory_establishes(self) -> None:
        """The one-use factory hands what HTTP established to the protocol."""
        room = RoomSocketFactory(self.context).bound(User(3, "bob"), "café", "t-1")
        protocol = room.buildProtocol(ADDRESS)
        self.assertEqual(
            (protocol.nickname, protocol.user_id, protocol.room_name, protocol.token_id),
            ("bob", 3, "café", "t-1"),
        )
        self.assertIsNone(self.app_protocol().claims)

    def test_decode_frame(self) -> None:
        """A frame is UTF-8 JSON text holding an object; each surface names
        the object it wants."""
        room, app = self.room_protocol(), self.app_protocol()
        self.assertEqual(room.decode_frame(b'{"content": "h\xc3\xa9"}', False), {"content": "hé"})
        cases: list[tuple[bytes, bool, str]] = [
            (b'{"content": "x"}', True, "binary frames are not accepted; send JSON text"),
            (b"{content", False, "frame is not valid JSON"),
            (b"[" * 100_000, False, "frame is not valid JSON"),
            (b"\xef\xbb\xbf{}", False, "frame is not valid JSON"),
        ]
        for adapter in (room, app):
            for payload, binary, message in cases:
                with self.assertRaises(InvalidRequest) as caught:
                    adapter.decode_frame(payload, binary)
                self.assertEqual(caught.exception.message, message)
        for adapter, message in (
            (room, 'frame must be a JSON object like {"content": "..."}'),
            (app, 'frame must be a JSON object with a "type"'),
        ):
            with self.assertRaises(InvalidRequest) as caught:
                adapter.decode_frame(b"[1]", False)
            self.assertEqual(caught.exception.message, message)

    def test_decode_frame_not_utf8(self) -> None:
        """A message that is not UTF-8 (UTF-16 here, which ``json.loads``
        would accept from bytes) is handed to ``invalid_utf8``, which fails
        the connection, and decodes to None."""
        for adapter in (self.room_protocol(), self.app_protocol()):
            failed: list[UnicodeDecodeError] = []
            adapter.invalid_utf8 = failed.append  # type: ignore[method-assign]
            self.assertIsNone(adapter.decode_frame('{"type": "ping"}'.encode("utf-16"), False))
            self.assertEqual(len(failed), 1)
            self.assertEqual(failed[0].start, 0)

    def test_send_error_counted_per_surface(self) -> None:
        """Every error reply is counted under its adapter's surface."""
        session, transport = self.line_session()
        session.send_error(ContentTooLong("too long"))
        self.assertEqual(transport.value(), b"*** error (content_too_long): too long\n")
        self.assertEqual(self.errors_sent(), {("tcp", "content_too_long"): 1})

    def test_chat_error(self) -> None:
        """A ChatError reaches the client as it is; anything else is logged
        with its traceback and the client hears "internal error"."""
        session, _ = self.line_session()
        error = InvalidRequest("no")
        self.assertIs(session.chat_error(Failure(error), "posting"), error)
        events: list[dict[str, Any]] = []
        self.patch(StreamSession, "_log", Logger(observer=events.append))
        translated = session.chat_error(Failure(KeyError("bug")), "posting")
        self.assertEqual((type(translated), translated.message), (ChatError, "internal error"))
        [event] = events
        self.assertIsInstance(event["log_failure"].value, KeyError)

    def test_unexpected_post_failure_told(self) -> None:
        """A post failing with something other than a ChatError (a bug) is
        answered "internal error" on every surface (it used to be silent on
        the stream and room sockets)."""
        session, transport = self.line_session()
        session._post_failed(Failure(RuntimeError("bug")))
        self.assertEqual(transport.value(), b"*** error (error): internal error\n")
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_timer(self) -> None:
        """One timer per connection on the injected clock: a new one replaces
        the last, a cancelled one never fires."""
        session, _ = self.line_session()
        fired: list[str] = []
        session.start_timer(5, fired.append, "first")
        session.start_timer(10, fired.append, "second")
        self.clock.advance(9)
        self.assertEqual(fired, [])
        self.clock.advance(1)
        self.assertEqual(fired, ["second"])
        self.assertIsNone(session._timer)
        session.start_timer(1, fired.append, "third")
        session.cancel_timer()
        self.clock.advance(2)
        self.assertEqual(fired, ["second"])

    def test_disconnect_by_table(self) -> None:
        """``disconnect`` goes through the adapter's table: the stream's
        goodbye line, then the close."""
        session, transport = self.line_session()
        session.disconnect(DisconnectReason.BANNED)
        self.assertEqual(transport.value(), b"*** disconnected: banned\n")
        self.assertTrue(transport.disconnecting)
