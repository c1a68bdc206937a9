"""The MaChat stream protocol, independent of what carries its lines.

Wire protocol (also in docs/protocol.md, section B):

* The client's first JSON value is the handshake
  ``{"name": "Mina", "room": "devroom"}``, optionally with ``"password"`` to
  speak as a registered account and ``"notices": true`` to see join/leave
  notices. Anything after the handshake on the same line, and lines that arrive
  while it is being checked, are kept and posted afterwards.
* Every following line is a message; every member of the room, the sender
  included, receives ``name:text`` (a message with several lines arrives as
  several ``name:line`` lines, so nobody can forge a line from someone else).
* Lines from the server that are not messages start with ``*** `` (no nickname
  can), e.g. ``*** error (rate_limited): too many messages: slow down``.
* Edits, deletions and topics in the room are notice lines, always shown:
  ``*** bob edited #5: new text`` (``#5`` is the message's room position;
  further lines of the text follow as ``***   line``), ``*** message #5
  deleted``, ``*** bob set the topic: text`` (``cleared the topic``).
* ``/help``, ``/who``, ``/join ROOM``, ``/history [N]``, ``/topic [text]``,
  ``/notices on|off`` and ``/quit`` are commands; any other text, including
  unknown ``/words``, is a message, and ``//text`` sends ``/text``.

The plain-TCP listener (``line.py``) and the ``/mychat`` WebSocket
(``mychat.py``) carry the same ``StreamSession``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from zope.interface import implementer

from parkchat.errors import AuthenticationFailed, ChatError, InvalidRequest, NotInRoom
from parkchat.interfaces import IChatService, IEncoder, IParticipant
from parkchat.model import (
    CHAT,
    DELETED,
    EDITED,
    SYSTEM,
    TOPIC,
    DirectMessage,
    DisconnectReason,
    JoinResult,
    Message,
    RoomTopic,
    nickname_key,
    validate_nickname,
    validate_room,
)
from parkchat.protocols.participant import (
    CLOSE_GOING_AWAY,
    CLOSE_NORMAL,
    CLOSE_POLICY,
    AdapterContext,
    Goodbye,
    Participant,
)
from parkchat.tokens import TokenVerifier

NOTICE = "*** "

HELP = (
    "commands: /who (who is here), /join ROOM (move to another room), "
    "/history [N] (recent messages), /topic [text] (show or set the room's topic; "
    "/topic - clears it), /notices on|off (join/leave notices), /quit; //text sends /text"
)


#: Marks a guest's name on the line protocol (docs/line-protocol.md): no
#: nickname can start with it, so ``~zed:hi`` is never the account ``zed``.
GUEST_MARK = "~"


def render_lines(message: Message) -> bytes:
    """``nick:line\\n`` for every line of a chat message (``~nick:line`` from
    a guest); system notices, edits, deletions and topics as ``*** text`` (a
    guest's join or leave as ``*** ~nick has joined the room``). Computed
    once per message for all stream members."""
    mark = GUEST_MARK if message.guest else ""
    if message.type == CHAT:
        prefix = mark + message.nickname + ":"
        return "".join(f"{prefix}{line}\n" for line in message.content.split("\n")).encode()
    if message.type == EDITED:
        first, *rest = message.content.split("\n")
        lines = [f"{NOTICE}{message.nickname} edited #{message.seq}: {first}\n"]
        lines.extend(f"{NOTICE}  {line}\n" for line in rest)
        return "".join(lines).encode()
    if message.type == DELETED:
        return f"{NOTICE}message #{message.seq} deleted\n".encode()
    if message.type == TOPIC:
        if not message.content:
            return f"{NOTICE}{message.nickname} cleared the topic\n".encode()
        return f"{NOTICE}{message.nickname} set the topic: {message.content}\n".encode()
    return f"{NOTICE}{mark}{message.content}\n".encode()  # joins and leaves


#: The room events terminals show (joins and leaves only with notices on).
SHOWN_EVENTS = frozenset((CHAT, SYSTEM, EDITED, DELETED, TOPIC))


def topic_line(room: str, topic: RoomTopic | None) -> str:
    """What ``/topic`` (and a join) says of a room's topic."""
    if topic is None:
        return f"no topic in {room}"
    return f"topic of {room}: {topic.text} (set by {topic.nickname}, {topic.set_at})"


@implementer(IEncoder)
class LineEncoder:
    """The stream rendering as bytes, shared by every TCP member. Payloads are
    ``(is_notice, bytes)`` so each session can drop join/leave notices unless
    it asked for them, without a second encoding."""

    surface = "tcp"

    def encode(self, message: Message) -> tuple[bool, bytes] | None:
        if message.type not in SHOWN_EVENTS:
            return None  # typing notices are for apps, not terminals
        return (message.type == SYSTEM, render_lines(message))


@dataclass(frozen=True)
class StreamOptions:
    """Settings shared by every carrier of the stream protocol."""

    max_line_length: int = 8192
    handshake_timeout: float = 10.0
    idle_timeout: float = 3600.0
    allow_guests: bool = True
    #: Verifies ``"token"`` in the handshake; None: tokens are refused.
    tokens: TokenVerifier | None = None


class Carrier(Protocol):
    """What a StreamSession needs of the connection carrying it."""

    @property
    def peer_host(self) -> str:
        """The remote address."""

    def write_text(self, text: str) -> None:
        """Send one server line (no newline needed)."""

    def send_payload(self, payload: Any) -> None:
        """Send a payload made by this carrier's encoder."""

    def close(self, code: int = CLOSE_NORMAL) -> None:
        """Close the connection after pending output; ``code`` is the
        WebSocket close code for carriers that have one (1000 normal, 1001
        server going away, 1008 refused)."""


@implementer(IParticipant)
class StreamSession(Participant):
    """One MaChat client: handshake, then lines in, ``name:text`` out."""

    goodbyes = {
        **{
            reason: Goodbye(CLOSE_POLICY, f"disconnected: {reason.text}")
            for reason in DisconnectReason
        },
        DisconnectReason.SHUTDOWN: Goodbye(CLOSE_GOING_AWAY, "server shutting down, bye"),
    }

    def __init__(
        self,
        context: AdapterContext,
        carrier: Carrier,
        encoder: IEncoder,
        options: StreamOptions,
    ) -> None:
        self._context = context
        self.service: IChatService = context.service
        self.carrier = carrier
        self.surface: str = getattr(encoder, "surface", "other")
        self.encoder = encoder
        self.peer_host = carrier.peer_host
        self.nickname = ""
        self.user_id: int | None = None
        #: The login token the handshake proved, if any (its revocation closes it).
        self.token_id: str | None = None
        self.room: str | None = None
        self.notices = False
        self._allow_guests = options.allow_guests
        self._tokens = options.tokens
        self._max_handshake = options.max_line_length
        self._handshake = ""
        self._state = "handshake"  # -> "checking" -> "chatting" -> "closed"
        self._queued: list[str] = []
        self._posting: set[Deferred[Any]] = set()
        self._quitting = False
        self._idle_timeout = options.idle_timeout
        self.start_timer(
            options.handshake_timeout, self._timed_out, "no handshake received in time"
        )

    @property
    def context(self) -> AdapterContext:
        return self._context

    # -- input -------------------------------------------------------------

    def line_received(self, text: str) -> None:
        if self._state == "closed":
            return
        if self._state == "handshake":
            self._handshake_line(text)
        elif self._state == "checking":
            self._queued.append(text)
        else:
            self._touch()
            self._chat_line(text)

    def bad_input(self, error: ChatError) -> None:
        """The carrier could not make a line of what arrived (too long, not
        UTF-8): tell the client; before the handshake that ends the session."""
        if self._state == "handshake":
            self._refuse(error)
        else:
            self.send_error(error)

    def connection_lost(self) -> None:
        self._state = "closed"
        self.cancel_timer()
        self.service.disconnect(self)

    # -- handshake ---------------------------------------------------------

    def handshake_end(self, text: str) -> int:
        """How many characters of ``text`` (the start of a line whose newline
        has not arrived) complete a pending handshake object; 0 if none do.

        MaChat's own clients send the handshake without a newline and then
        wait for the user to type (the seed decodes the JSON value as soon as
        it is complete): a carrier that waited for the newline would leave a
        listening client out of the room, then close it for not sending a
        handshake. Only an object counts (a number could still grow); the
        carrier hands those characters to ``line_received`` and keeps the rest
        as the start of the next line.
        """
        if self._state != "handshake":
            return 0
        document = self._handshake + text
        start = len(document) - len(document.lstrip())
        if not document.startswith("{", start):
            return 0
        try:
            _, end = json.JSONDecoder().raw_decode(document, start)
        except (json.JSONDecodeError, RecursionError):
            return 0  # not complete yet (or never: the newline will tell)
        return max(end - len(self._handshake), 0)

    def _handshake_line(self, text: str) -> None:
        self._handshake += text + "\n"
        document = self._handshake.lstrip()
        if not document:
            self._handshake = ""
            return
        try:
            value, end = json.JSONDecoder().raw_decode(document)
        except RecursionError:  # nested deeper than the parser goes
            self._refuse(InvalidRequest("handshake is nested too deeply"))
            return
        except json.JSONDecodeError as e:
            incomplete = e.pos >= len(document.rstrip())
            if incomplete and len(self._handshake) < self._max_handshake:
                return  # a handshake spread over several lines
            self._refuse(
                InvalidRequest(
                    'handshake must be a JSON object like {"name": "Mina", "room": "devroom"}'
                )
            )
            return
        rest = document[end:].strip()
        if rest:
            self._queued.extend(rest.split("\n"))
        self._handshake = ""
        self._state = "checking"
        Deferred.fromCoroutine(self._check_handshake(value)).addErrback(self._refused)

    async def _check_handshake(self, value: object) -> None:
        # Read again now that the client has spoken: behind the PROXY
        # protocol (``--tcp haproxy:...``) the client's address is known only
        # once the proxy's header has arrived, after the connection opened.
        self.peer_host = self.carrier.peer_host
        if not isinstance(value, dict):
            raise InvalidRequest(
                'handshake must be a JSON object like {"name": "Mina", "room": "devroom"}'
            )
        name = validate_nickname(value.get("name"))
        room = validate_room(value.get("room"))
        notices = value.get("notices", False)
        if not isinstance(notices, bool):
            raise InvalidRequest('"notices" must be true or false')
        password = value.get("password")
        token = value.get("token")
        if token is not None:
            if self._tokens is None:
                raise InvalidRequest("token login is not available here; use a password")
            claims = self._tokens.verify(token)
            if nickname_key(claims.nickname) != nickname_key(name):
                raise AuthenticationFailed("the token belongs to another name")
            if claims.user_id is not None:
                self.service.check_not_banned(claims.user_id)
            self.nickname, self.user_id = claims.nickname, claims.user_id
            self.token_id = claims.token_id
        elif password is not None:
            if not isinstance(password, str):
                raise InvalidRequest('"password" must be a string')
            user = await self.service.login(name, password, self.peer_host)
            self.nickname, self.user_id = user.nickname, user.id
        else:
            if not self._allow_guests:
                raise AuthenticationFailed("guests are not allowed here: send a password")
            if await self.service.account_exists(name):
                raise AuthenticationFailed(f"{name} is a registered account: send its password")
            self.nickname = name
        if self._state == "closed":
            return
        if self.user_id is None and self.service.name_in_room(room, self.nickname):
            raise InvalidRequest(f"the name {self.nickname} is already taken in {room}")
        self.notices = notices
        self.service.connect(self)
        self.service.join(self, room).addCallback(self._joined, room)
        self.room = room
        self._state = "chatting"
        self._touch()
        queued, self._queued = self._queued, []
        for line in queued:
            if self._state != "chatting":
                break
            self._chat_line(line)

    def _refused(self, failure: Failure) -> None:
        if self._state == "closed":
            return
        self._refuse(self.chat_error(failure, "handshake"))

    def _refuse(self, error: ChatError) -> None:
        self.send_error(error)
        self._close(CLOSE_POLICY)

    # -- chatting ----------------------------------------------------------

    def _chat_line(self, text: str) -> None:
        if not text.strip():
            return  # blank lines are keep-alives for people at a prompt
        if text.startswith("//"):
            text = text[1:]
        elif text.startswith("/"):
            command, _, argument = text[1:].partition(" ")
            handler = getattr(self, "cmd_" + command.lower(), None)
            if handler is not None:
                try:
                    handler(argument.strip())
                except ChatError as e:
                    self.send_error(e)
                return
        assert self.room is not None
        try:
            d = self.service.post(self, self.room, text)
        except ChatError as e:
            self.send_error(e)
            return
        self._posting.add(d)
        d.addErrback(self._post_failed)
        d.addBoth(self._posted, d)

    def _posted(self, result: object, d: Deferred[Any]) -> None:
        self._posting.discard(d)
        if not self._posting and self._quitting:
            self.notice("bye")
            self._close()

    def _post_failed(self, failure: Failure) -> None:
        self.send_error(self.chat_error(failure, "posting"))

    def cmd_help(self, argument: str) -> None:
        self.notice(HELP)

    def cmd_who(self, argument: str) -> None:
        assert self.room is not None
        names = self.service.members(self.room)
        self.notice(f"in {self.room}: {', '.join(names)}")

    def cmd_join(self, argument: str) -> None:
        room = validate_room(argument)
        if room == self.room:
            return
        if self.user_id is None and self.service.name_in_room(room, self.nickname):
            raise InvalidRequest(f"the name {self.nickname} is already taken in {room}")
        old = self.room
        self.service.join(self, room).addCallback(self._joined, room)
        self.room = room
        if old is not None:
            try:
                self.service.leave(self, old)
            except NotInRoom:
                pass
        self.notice(f"you are now in {room}")

    def _joined(self, result: JoinResult, room: str) -> None:
        """A topic is shown on joining (a room without one says nothing)."""
        if result.topic is not None and self._state != "closed":
            self.notice(topic_line(room, result.topic))

    def cmd_topic(self, argument: str) -> None:
        """``/topic``: the room's topic; ``/topic text``: set it; ``/topic -``: clear it."""
        assert self.room is not None
        room = self.room
        if not argument:
            d = Deferred.fromCoroutine(self.service.room_topic(room))
            d.addCallback(lambda topic: self.notice(topic_line(room, topic)))
        else:
            text = "" if argument == "-" else argument
            d = Deferred.fromCoroutine(self.service.set_topic(self, room, text))
        d.addErrback(self._post_failed)

    def cmd_history(self, argument: str) -> None:
        assert self.room is not None
        try:
            limit = int(argument) if argument else 20
        except ValueError:
            raise InvalidRequest("usage: /history [N]") from None
        room = self.room
        d = self.service.history(room, limit=limit)

        def show(messages: list[Message]) -> None:
            if self._state != "chatting":
                return
            self.notice(f"last {len(messages)} messages in {room}:")
            for message in messages:
                encoded = self.encoder.encode(message)
                if encoded is not None:
                    self.carrier.send_payload(encoded[1])
            self.notice("end of history")

        d.addCallbacks(show, self._post_failed)

    def cmd_notices(self, argument: str) -> None:
        if argument.lower() not in ("on", "off"):
            raise InvalidRequest("usage: /notices on|off")
        self.notices = argument.lower() == "on"
        self.notice(f"join/leave notices {'on' if self.notices else 'off'}")

    def cmd_quit(self, argument: str) -> None:
        # Messages sent just before /quit are still being stored: let their
        # echoes reach the client before saying goodbye.
        self._quitting = True
        if not self._posting:
            self.notice("bye")
            self._close()

    # -- output ------------------------------------------------------------

    def notice(self, text: str) -> None:
        self.carrier.write_text(NOTICE + text)

    def write_error(self, error: ChatError, request_id: Any) -> None:
        self.carrier.write_text(f"{NOTICE}error ({error.code}): {error.message}")

    # -- IParticipant ------------------------------------------------------

    def send(self, payload: tuple[bool, Any]) -> None:
        is_notice, data = payload
        if is_notice and not self.notices:
            return
        self.carrier.send_payload(data)

    def removed(self, room: str, reason: str) -> None:
        self.notice(f"removed from {room}: {reason}")
        self._close()

    def direct(self, message: DirectMessage) -> bool:
        if self._state != "chatting":
            return False
        for line in message.content.split("\n"):
            self.notice(f"direct from {message.from_nickname}: {line}")
        return True

    def say_goodbye(self, goodbye: Goodbye, reason: DisconnectReason) -> None:
        if goodbye.line is not None:
            self.notice(goodbye.line)
        self._close(goodbye.code)

    # -- timers ------------------------------------------------------------

    def _touch(self) -> None:
        if self._idle_timeout > 0:
            self.start_timer(self._idle_timeout, self._timed_out, "idle for too long")
        else:
            self.cancel_timer()

    def _timed_out(self, why: str) -> None:
        self.notice(f"disconnected: {why}")
        self._close()

    def _close(self, code: int = CLOSE_NORMAL) -> None:
        if self._state == "closed":
            return
        self._state = "closed"
        self.cancel_timer()
        self.carrier.close(code)
