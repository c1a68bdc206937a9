"""Property tests with Hypothesis: hostile input against every parser and
state machine (issue 8, item 1).

Each property feeds generated input to one surface and checks the promises
of MISSION "Protection and correctness": nothing but a ``ChatError`` (or a
``ConfigError``) comes out of a parser; a connection handler never raises or
logs an unhandled error; a connection is closed only by the documented policy
(after an error line, or with a documented close code); a closed connection
leaves no participant behind; and another user's rooms, membership and
messages are unchanged.

Everything runs in memory on a ``Clock``, as the other unit tests do: the TCP
line protocol over a ``StringTransport``, ``/ws`` through the real site over
``iosim`` (the fixture of ``tests/test_app_socket.py``), REST bodies through
``treq.testing.StubTreq``. Example counts are bounded and the search is
derandomized (no example database), so the run is deterministic and takes
seconds; ``FUZZ_SCALE`` multiplies every count for a longer local run.
"""

from __future__ import annotations

import itertools
import json
import os
import string
from collections.abc import Callable
from dataclasses import fields
from datetime import date, datetime, time
from typing import Any

from treq.testing import StubTreq
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import ILogObserver, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from parkchat import config
from parkchat.errors import (
    ContentTooLong,
    InvalidContent,
    InvalidName,
    InvalidRoom,
)
from parkchat.limits import Limits
from parkchat.model import (
    MAX_NICKNAME_LENGTH,
    MAX_ROOM_LENGTH,
    nickname_key,
    validate_content,
    validate_nickname,
    validate_room,
)
from parkchat.protocols.line import LineChatFactory, LineChatProtocol
from parkchat.protocols.stream import StreamOptions
from parkchat.protocols.websocket import RoomSocketFactory
from parkchat.tokens import TokenAuthority
from tests.helpers import FakeParticipant, adapter_context, make_service, site_for
from tests.test_app_socket import AppSocketCase
from tests.test_websocket import RecordingClient

#: Multiplies every example count (e.g. FUZZ_SCALE=20 for a long local run).
SCALE = max(1, int(os.environ.get("FUZZ_SCALE", "1")))


def fuzz(examples: int) -> Callable[[Any], Any]:
    """Deterministic, bounded Hypothesis settings for one property."""
    return settings(
        max_examples=examples * SCALE,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# -- strategies ------------------------------------------------------------------

#: Any code point, lone surrogates included (JSON "\\ud800" decodes to one).
any_char = st.characters(codec=None, exclude_categories=())
any_text = st.text(any_char, max_size=80)
#: Short strings that hit the edges of the rules, mixed with random text.
edge_text = st.sampled_from(
    [
        "",
        " ",
        "lobby",
        "lobby ",
        " lobby",
        "Lobby",
        "a:b",
        "a b",
        "_x",
        "-x",
        ".x",
        "x" * 32,
        "x" * 33,
        "r" * 64,
        "r" * 65,
        "caf\u00e9",
        "\u0130",
        "\ufb01",
        "a\nb",
        "a\tb",
        "a\x00b",
        "a\x7fb",
        "\u200b",
        "\ud800",
        "\U0001f600",
        "\u202e",
    ]
)
names = edge_text | any_text
big_ints = st.integers(min_value=-(2**70), max_value=2**70)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-5, max_value=300)
    | big_ints
    | st.floats(allow_nan=True, allow_infinity=True)
    | names
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(names, children, max_size=4),
    max_leaves=8,
)


def json_bytes(value: Any, ensure_ascii: bool) -> bytes:
    """``value`` as JSON; lone surrogates become invalid UTF-8 when not escaped."""
    return json.dumps(value, ensure_ascii=ensure_ascii).encode("utf-8", "surrogatepass")


@implementer(ILogObserver)
class LogWatch:
    """Collects logged failures and errors (what trial would fail the test
    for) so that each example can fail on its own and Hypothesis can shrink."""

    def __init__(self) -> None:
        self.errors: list[dict[str, Any]] = []

    def __call__(self, event: dict[str, Any]) -> None:
        if event.get("log_failure") is not None or event.get("isError"):
            self.errors.append(event)

    def take(self) -> list[str]:
        found, self.errors = self.errors, []
        return [
            str(e["log_failure"].getTraceback()) if e.get("log_failure") else str(e) for e in found
        ]


def watch_logs(case: SynchronousTestCase) -> LogWatch:
    watch = LogWatch()
    globalLogPublisher.addObserver(watch)
    case.addCleanup(globalLogPublisher.removeObserver, watch)
    return watch


# -- naming rules ------------------------------------------------------------------


class NamingRuleFuzzTests(SynchronousTestCase):
    """``validate_room``, ``validate_nickname``, ``validate_content``: any
    value gives the value back or a ChatError of the right kind."""

    @fuzz(500)
    @given(json_values | any_text)
    def test_room(self, value: Any) -> None:
        """A room is returned unchanged (1-64 characters, no control
        characters, no outer white space) or InvalidRoom is raised."""
        try:
            room = validate_room(value)
        except InvalidRoom as e:
            self.assertTrue(e.message)
            return
        self.assertIs(room, value)
        self.assertTrue(1 <= len(room) <= MAX_ROOM_LENGTH)
        self.assertEqual(room, room.strip())
        room.encode("utf-8")  # no lone surrogates: every surface can send it

    @fuzz(500)
    @given(json_values | any_text)
    def test_nickname(self, value: Any) -> None:
        """A nickname is returned unchanged (1-32 characters, no ':' or white
        space, encodable) or InvalidName is raised; its key never fails."""
        try:
            name = validate_nickname(value)
        except InvalidName as e:
            self.assertTrue(e.message)
            return
        self.assertIs(name, value)
        self.assertTrue(1 <= len(name) <= MAX_NICKNAME_LENGTH)
        self.assertFalse(any(ch == ":" or ch.isspace() for ch in name), name)
        name.encode("utf-8")
        nickname_key(name)

    @fuzz(500)
    @given(json_values | any_text | st.text(any_char, min_size=90, max_size=400), big_ints)
    def test_content(self, value: Any, max_length: int) -> None:
        """Content is returned unchanged (a non-blank string within the limit,
        encodable; bidi controls left open are closed) or InvalidContent /
        ContentTooLong is raised."""
        max_length = max(1, abs(max_length) % 200)
        try:
            content = validate_content(value, max_length)
        except ContentTooLong:
            self.assertIsInstance(value, str)
            self.assertGreater(len(value), max_length)
            return
        except InvalidContent as e:
            self.assertTrue(e.message)
            return
        bidi = sum(1 for c in value if "\u202a" <= c <= "\u202e" or "\u2066" <= c <= "\u2069")
        if not bidi:
            self.assertIs(content, value)
        # Embeddings, overrides and isolates left open are closed (and stray
        # closers dropped): at most one closer per opener is added.
        self.assertTrue(content.strip())
        self.assertLessEqual(len(content), max_length + bidi)
        content.encode("utf-8")


# -- configuration ---------------------------------------------------------------------

SETTING_NAMES = [s.name for s in config.SETTINGS]


def toml_value(value: Any) -> str:
    """A TOML rendering of ``value`` (tomllib can read but not write)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value:
            return "nan"
        if value in (float("inf"), float("-inf")):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, str):
        return json.dumps(value)  # JSON's escapes are TOML's (bad ones fail to parse)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        items = ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items())
        return "{" + items + "}"
    raise TypeError(value)


toml_scalars = (
    st.booleans()
    | st.integers(min_value=-5, max_value=100_000)
    | big_ints
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.datetimes()
    | st.dates()
    | st.times()
    | st.sampled_from(["8080", "tcp:0", "yes", "off", "*", "https://a.example", "x" * 40, ""])
    | any_text
)
toml_values = st.recursive(
    toml_scalars,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.text(string.ascii_letters, max_size=5), children, max_size=2)
    ),
    max_leaves=5,
)
setting_keys = st.sampled_from(SETTING_NAMES) | st.text(string.ascii_lowercase + "_", max_size=12)
env_text = st.text(st.characters(codec=None, exclude_categories=(), exclude_characters="\x00"))
env_values = (
    st.sampled_from(["", "0", "1", "-1", "8080", "tcp:0", "yes", "nan", "inf", "1e400", "*"])
    | env_text
)


class ConfigFuzzTests(SynchronousTestCase):
    """``config.resolve`` over random command-line values, environment
    variables and TOML files: Settings or ConfigError, nothing else."""

    def setUp(self) -> None:
        self.path = self.mktemp()

    @fuzz(400)
    @example(  # found by this test: a huge TOML integer overflowed float()
        file_values={"rate_limit": 10**400},
        table=False,
        garbage=None,
        env={},
        cli={},
        use_file=True,
    )
    @given(
        file_values=st.dictionaries(setting_keys, toml_values, max_size=4),
        table=st.booleans(),
        garbage=st.none() | st.text(max_size=40),
        env=st.dictionaries(
            st.sampled_from([s.env for s in config.SETTINGS] + ["PARKCHAT_CONFIG"]),
            env_values,
            max_size=4,
        ),
        cli=st.dictionaries(
            st.sampled_from(SETTING_NAMES),
            env_values | st.lists(env_values, max_size=3),
            max_size=2,
        ),
        use_file=st.booleans(),
    )
    def test_resolve(
        self,
        file_values: dict[str, Any],
        table: bool,
        garbage: str | None,
        env: dict[str, str],
        cli: dict[str, Any],
        use_file: bool,
    ) -> None:
        """Whatever the layers hold, resolve returns Settings of the declared
        types or raises ConfigError naming where the bad value came from."""
        if garbage is not None:
            text = garbage
        else:
            body = "".join(f"{k} = {toml_value(v)}\n" for k, v in file_values.items())
            text = ("[parkchat]\n" + body) if table else body
        with open(self.path, "w", encoding="utf-8", errors="surrogatepass") as f:
            f.write(text)
        try:
            settings_ = config.resolve(cli, env, self.path if use_file else None)
        except config.ConfigError as e:
            self.assertTrue(str(e))
            return
        for f_ in fields(settings_):
            if f_.name == "sources":
                continue
            value = getattr(settings_, f_.name)
            default = config.SETTINGS_BY_NAME[f_.name].default
            if isinstance(default, tuple):
                self.assertIsInstance(value, tuple)
            else:
                self.assertIsInstance(value, type(default), f_.name)


# -- the TCP line protocol ---------------------------------------------------------------

LINE_LIMIT = 4096
ALICE_PW = "alice-pw"
PEER = "10.0.0.7"
line_commands = st.sampled_from(
    [
        b"/who",
        b"/help",
        b"/join dev",
        b"/join lobby",
        b"/join  ",
        b"/JOIN other",
        b"/history",
        b"/history 3",
        b"/history 0",
        b"/history -1",
        b"/history x",
        b"/history 99999999999999999999999",
        b"/notices on",
        b"/notices off",
        b"/notices maybe",
        b"/quit",
        b"//hi",
        b"/nope",
        b"",
        b"\r",
    ]
)
handshakes = (
    st.fixed_dictionaries(
        {},
        optional={
            "name": st.sampled_from(["mina", "Mina", "bob", "BOB", "alice"]) | names | json_values,
            "room": st.sampled_from(["dev", "lobby"]) | names | json_values,
            "password": st.sampled_from([ALICE_PW, "wrong"]) | json_values,
            "notices": st.booleans() | json_values,
            "token": any_text | json_values,
        },
    )
    | json_values
)


@st.composite
def line_pieces(draw: st.DrawFn) -> bytes:
    kind = draw(st.integers(0, 8))
    if kind <= 1:  # a handshake, sometimes over several lines, sometimes cut short
        value = draw(handshakes)
        data = json_bytes(value, draw(st.booleans()))
        if draw(st.booleans()):
            data = json.dumps(value, indent=1).encode("utf-8", "surrogatepass")
        if draw(st.booleans()):
            data = data[: draw(st.integers(0, len(data)))]
        return data + draw(st.sampled_from([b"\n", b"\r\n", b"", b" "]))
    if kind == 2:
        return draw(line_commands) + draw(st.sampled_from([b"\n", b"\r\n", b" x\n"]))
    if kind == 3:
        return draw(st.binary(max_size=40))
    if kind == 4:  # a line at, just over or far over the limit
        size = draw(st.integers(LINE_LIMIT - 3, LINE_LIMIT * 3))
        return b"x" * size + draw(st.sampled_from([b"\n", b"\r\n", b""]))
    if kind == 5:  # nesting deeper than the JSON parser's recursion limit
        return draw(st.sampled_from([b"[", b"{", b'{"a":'])) * draw(st.integers(1, 3000)) + b"\n"
    if kind == 6:
        return draw(st.sampled_from([b"\xff\xfe\n", b"\xc3\n", b"\xed\xa0\x80\n", b"\x00\n"]))
    return draw(any_text).encode("utf-8", "surrogatepass") + b"\n"


CLOSING_NOTICES = ("*** error (", "*** bye", "*** disconnected: ", "*** removed from ")


class LineProtocolFuzzTests(SynchronousTestCase):
    """The TCP line protocol fed arbitrary bytes, cut anywhere."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_757_345_400)
        self.service, self.store, _ = make_service(
            clock=self.clock, limits=Limits(rate_limit=50, rate_burst=50, max_content_length=100)
        )
        self.factory = LineChatFactory(
            adapter_context(self.service, self.clock),
            StreamOptions(max_line_length=LINE_LIMIT, handshake_timeout=10, idle_timeout=300),
        )
        self.successResultOf(self.service.register("alice", ALICE_PW))
        bob = self.successResultOf(self.service.register("bob", "bob-pw"))
        # The bystander: a registered user in "dev" who has said something.
        self.bob = FakeParticipant("bob", user_id=bob.id, peer_host="10.0.0.1")
        self.service.connect(self.bob)
        self.service.join(self.bob, "dev")
        posted = self.service.post(self.bob, "dev", "bob was here")
        self.clock.advance(0)  # the group commit
        self.successResultOf(posted)
        self.bob_history = self.bob_messages()
        self.logs = watch_logs(self)
        self.addCleanup(self.service.stopService)

    def bob_messages(self) -> list[tuple[int, str]]:
        history = self.successResultOf(self.store.recent_messages("dev", 200, None, None))
        return [(m.id, m.content) for m in history if m.nickname == "bob"]

    @fuzz(500)
    @example(  # found by this test: nesting past the JSON parser's recursion limit
        pieces=[b"[" * 3000 + b"\n", b'{"name": "mina", "room": "dev"}\n'], cuts=[], pauses=[]
    )
    @given(
        pieces=st.lists(line_pieces(), min_size=1, max_size=8),
        cuts=st.lists(st.integers(0, 10**6), max_size=6),
        pauses=st.lists(st.sampled_from([0.0, 0.0, 0.0, 1.0, 11.0]), max_size=6),
    )
    def test_arbitrary_bytes(
        self, pieces: list[bytes], cuts: list[int], pauses: list[float]
    ) -> None:
        """No exception escapes, nothing is logged as an error, the server
        sends only whole UTF-8 lines, closes only right after an error,
        ``bye`` or ``disconnected`` line, forgets the connection when it is
        lost, and bob's room, membership and messages stay as they were."""
        data = b"".join(pieces)
        points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
        chunks = [data[a:b] for a, b in itertools.pairwise(points)] or [b""]
        calls_before = len(self.clock.getDelayedCalls())
        transport = StringTransport(peerAddress=IPv4Address("TCP", PEER, 40001))
        protocol = self.factory.buildProtocol(transport.getPeer())
        assert isinstance(protocol, LineChatProtocol)
        protocol.makeConnection(transport)
        self.bob.received.clear()
        for i, chunk in enumerate(chunks):
            if transport.disconnecting:
                break  # a closing TCP transport stops reading
            protocol.dataReceived(chunk)
            self.clock.advance(pauses[i] if i < len(pauses) else 0.0)
        self.clock.advance(0)
        output = transport.value()
        text = output.decode("utf-8")  # never invalid UTF-8 on the wire
        self.assertTrue(not text or text.endswith("\n"), text[-200:])
        if transport.disconnecting:
            last = text.splitlines()[-1] if text else ""
            self.assertTrue(last.startswith(CLOSING_NOTICES), f"closed after {last!r}")
            session = protocol.session
            assert session is not None
            if session.room is not None:  # past the handshake, errors never close
                self.assertFalse(last.startswith("*** error ("), last)

        protocol.connectionLost(Failure(ConnectionDone()))
        self.clock.advance(0)
        self.assertEqual(self.service.connection_count, 1)
        self.assertEqual(self.service.connections_from(PEER), 0)
        self.assertEqual(self.service.room_sizes(), {"dev": 1})
        self.assertEqual(self.service.rooms_of(self.bob), frozenset({"dev"}))
        self.assertEqual(
            len(self.clock.getDelayedCalls()), calls_before, self.clock.getDelayedCalls()
        )
        self.assertEqual(self.bob.disconnected, [])
        self.assertEqual(self.bob.removals, [])
        for message in self.bob.received:
            self.assertNotEqual((message.type, message.nickname), ("chat", "bob"))
        self.assertEqual(self.bob_messages(), self.bob_history)
        self.assertEqual(self.logs.take(), [])


# -- the /ws JSON dispatcher ----------------------------------------------------------

FRAME_TYPES = [
    "auth",
    "join",
    "message",
    "userleave",
    "leave",
    "history",
    "who",
    "rooms",
    "typing",
    "ping",
    "chat",
    "get_online_list",
    "get_offline",
    "state",
    "read",
    "mute",
    "open_direct",
    "close_direct",
    "nope",
    "__init__",
    "_reply",
]
frame_fields = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(FRAME_TYPES) | json_values,
        "id": json_values,
        "room": st.sampled_from(["lobby", "dev", "side"]) | names | json_values,
        "body": st.sampled_from(["hello", " ", ""]) | names | json_values,
        "content": names | json_values,
        "username": st.sampled_from(["carol", "Carol", "alice"]) | json_values,
        "last_id": st.integers(-2, 5) | big_ints | json_values,
        "limit": st.integers(-1, 300) | json_values,
        "before": st.integers(-1, 5) | big_ints | json_values,
        "after": st.integers(-1, 5) | big_ints | json_values,
        "to": st.sampled_from(["alice", "nobody", 1, 2, 0, -1]) | big_ints | json_values,
        "to_user_id": st.integers(-1, 5) | big_ints | json_values,
        "token": any_text | json_values,
        "seq": st.integers(-1, 5) | big_ints | json_values,
        "with": st.sampled_from(["alice", "nobody", 1, 0]) | json_values,
        "muted": st.booleans() | json_values,
    },
)


@st.composite
def ws_frames(draw: st.DrawFn) -> tuple[bytes, bool]:
    """A frame's payload and whether it is binary."""
    kind = draw(st.integers(0, 9))
    if kind <= 5:
        return json_bytes(draw(frame_fields), draw(st.booleans())), False
    if kind == 6:
        return json_bytes(draw(json_values), draw(st.booleans())), False
    if kind == 7:
        return draw(st.sampled_from([b"[", b"{", b'{"a":'])) * draw(st.integers(1, 3000)), False
    if kind == 8:
        return draw(st.binary(max_size=40)), draw(st.booleans())
    return draw(any_text).encode("utf-8", "surrogatepass"), False


ERROR_CODES = {
    "invalid_request",
    "unknown_type",
    "not_authenticated",
    "unauthorized",
    "banned",
    "too_many_connections",
    "not_in_room",
    "invalid_room",
    "invalid_content",
    "content_too_long",
    "rate_limited",
    "unknown_recipient",
    "busy",
}
#: Close codes a fuzzed connection may get: 1007 for text that is not UTF-8,
#: 1008 for a refused ``auth`` (before authentication only), 1009 too big.
ALWAYS_ALLOWED_CLOSES = {1007, 1009}


class AppSocketFuzzTests(AppSocketCase):
    """``/ws`` fed arbitrary frames: JSON of every shape, fields of every
    type, non-JSON, binary, deeply nested and not UTF-8."""

    users = ("alice", "bob", "carol")

    def setUp(self) -> None:
        super().setUp()
        # The bystander: alice in lobby, with a stored message.
        self.alice = self.joined("alice", "lobby")
        self.post(self.alice, "alice was here")
        self.alice.take()
        self.alice_history = self.alice_messages()
        self.baseline = self.service.connection_count
        self.logs = watch_logs(self)

    def alice_messages(self) -> list[tuple[int, str]]:
        history = self.successResultOf(self.store.recent_messages("lobby", 200, None, None))
        return [(m.id, m.content) for m in history if m.nickname == "alice"]

    def drive(self, client: RecordingClient, frames: list[tuple[bytes, bool]]) -> None:
        """Send the frames one by one, checking every reply and close."""
        for payload, binary in frames:
            if client.closed is not None:
                break
            was_authenticated = self.is_authenticated(client)
            client.sendMessage(payload, isBinary=binary)
            self.settle()
            for frame in client.take():
                self.assertIsInstance(frame, dict)
                self.assertIsInstance(frame.get("type"), str, frame)
                if frame["type"] == "error":
                    self.assertIn(frame["code"], ERROR_CODES, frame)
            self.assertEqual(self.logs.take(), [])
            if client.closed is not None:
                allowed = set(ALWAYS_ALLOWED_CLOSES)
                if not was_authenticated:
                    allowed |= {1008, 4003}
                self.assertIn(client.close_code, allowed, (payload[:200], client.closed))

    def is_authenticated(self, client: RecordingClient) -> bool:
        return bool(self.service.local_connections("carol"))

    def finish(self, client: RecordingClient) -> None:
        """Close the fuzzed connection; check nothing of it remains and alice
        is untouched."""
        if client.closed is None and client.transport is not None:
            client.transport.loseConnection()
        self.settle()
        self.pumps = [p for p in self.pumps if p.client is not client]
        self.clients.remove(client)
        self.assertEqual(self.service.connection_count, self.baseline)
        self.assertFalse(self.service.is_online("carol"))
        self.assertEqual(self.service.room_sizes(), {"lobby": 1})
        self.assertIsNone(self.alice.closed)
        for frame in self.alice.take():
            self.assertIn(frame["type"], ("join", "userleave", "message", "typing", "chat"))
            self.assertNotEqual(frame.get("username", frame.get("from")), "alice", frame)
        self.assertEqual(self.alice_messages(), self.alice_history)
        self.assertEqual(self.logs.take(), [])

    @fuzz(250)
    @example([(b"[" * 3000, False), (b'{"type": "ping"}', False)])  # found: RecursionError
    @example([(b'{"type": "ping", "id": "\\ud800"}', False)])  # found: lone surrogate echoed
    @given(st.lists(ws_frames(), min_size=1, max_size=6))
    def test_authenticated_frames(self, frames: list[tuple[bytes, bool]]) -> None:
        """An authenticated connection answers every frame with replies or
        error frames of documented codes, never crashes or logs an error,
        stays open except for 1007/1009, and leaves alice as she was."""
        client = self.login("carol")
        self.drive(client, frames)
        self.finish(client)

    @fuzz(200)
    @example([(b'{"type": "auth", "body": "x", "id": "\\udfff"}', False)], True)
    @given(st.lists(ws_frames(), min_size=1, max_size=5), st.booleans())
    def test_frames_before_auth(self, frames: list[tuple[bytes, bool]], then_auth: bool) -> None:
        """Before authentication the same holds; a refused ``auth`` may close
        with 1008; a valid ``auth`` afterwards still works if open."""
        client = self.open()
        self.assertTrue(client.opened)
        self.drive(client, frames)
        if then_auth and client.closed is None and not self.is_authenticated(client):
            client.send_json({"type": "auth", "body": self.token("carol")})
            self.settle()
            replies = client.take()
            if client.closed is None:
                # An account's connection is told its state right after ready.
                self.assertEqual([r["type"] for r in replies], ["ready", "state"], replies)
        self.finish(client)


# -- REST bodies ---------------------------------------------------------------------

REGISTER_STATUSES = {201, 400, 409}
LOGIN_STATUSES = {200, 400, 401, 403, 429}


@st.composite
def request_bodies(draw: st.DrawFn) -> bytes:
    kind = draw(st.integers(0, 5))
    if kind <= 2:
        value = draw(
            st.fixed_dictionaries(
                {},
                optional={
                    "nickname": st.sampled_from(["dave", "alice", "Alice"]) | names | json_values,
                    "username": names | json_values,
                    "password": st.sampled_from([ALICE_PW, "x"]) | names | json_values,
                },
            )
            | json_values
        )
        return json_bytes(value, draw(st.booleans()))
    if kind == 3:
        return draw(st.binary(max_size=80))
    if kind == 4:
        return draw(st.sampled_from([b"[", b"{", b'{"a":'])) * draw(st.integers(1, 3000))
    return b'{"nickname": "' + b"n" * draw(st.integers(60_000, 70_000)) + b'"}'


class RestBodyFuzzTests(SynchronousTestCase):
    """``POST /register`` and ``POST /login`` with arbitrary bodies."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_757_345_400)
        self.service, _, _ = make_service(clock=self.clock, limits=Limits(login_failures=0))
        self.successResultOf(self.service.register("alice", ALICE_PW))
        site = site_for(
            self.service,
            RoomSocketFactory(
                adapter_context(self.service, self.clock), ping_interval=0, handshake_timeout=0
            ),
            tokens=TokenAuthority(b"k" * 32, self.clock),
            access_log=False,
        )
        self.treq: Any = StubTreq(site.resource)
        self.logs = watch_logs(self)
        self.addCleanup(self.service.stopService)

    def call(self, path: str, body: bytes, content_type: str | None) -> tuple[int, bytes, str]:
        headers = {"Content-Type": content_type} if content_type else {}
        d = self.treq.post(f"http://parkchat.test{path}", data=body, headers=headers)
        self.treq.flush()
        response = self.successResultOf(d)
        content = self.successResultOf(response.content())
        kind = response.headers.getRawHeaders("content-type", [""])[0]
        return response.code, content, kind

    def check(self, path: str, body: bytes, content_type: str | None, allowed: set[int]) -> None:
        status, content, kind = self.call(path, body, content_type)
        self.assertIn(status, allowed, content[:300])
        self.assertTrue(kind.startswith("application/json"), kind)
        answer = json.loads(content)
        if status >= 400:
            self.assertEqual(set(answer), {"error", "message"}, answer)
            self.assertIsInstance(answer["error"], str)
            self.assertIsInstance(answer["message"], str)
        self.assertEqual(self.logs.take(), [])

    @fuzz(300)
    @example(b"[" * 3000, "application/json")  # found by this test: RecursionError, 500
    @given(request_bodies(), st.sampled_from([None, "application/json", "text/plain"]))
    def test_register(self, body: bytes, content_type: str | None) -> None:
        """/register answers 201, 400 or 409 with the documented JSON, never 500."""
        self.check("/register", body, content_type, REGISTER_STATUSES)

    @fuzz(300)
    @example(b'{"nickname": "\\ud800", "password": "x"}', "application/json")
    @given(request_bodies(), st.sampled_from([None, "application/json"]))
    def test_login(self, body: bytes, content_type: str | None) -> None:
        """/login answers 200, 400, 401, 403 or 429 with the documented JSON,
        never 500."""
        self.check("/login", body, content_type, LOGIN_STATUSES)
