"""ChatService: the one object every protocol and resource talks to.

It holds the rooms of this process, the connections in them, the accounts and
the store. It speaks in domain verbs (join, leave, post, history, register,
authenticate), takes and returns plain values, and raises ``parkchat.errors``;
it never sees JSON, bytes on the wire or HTTP.

A chat message goes: ``post`` validates it and takes a rate-limit token, the
group-commit writer stores it with others in one transaction, and only then is
it published on the bus, which delivers it to the room's members (the sender
included) here and, with a shared bus, on every other instance.
"""

from __future__ import annotations

from twisted.application.service import Service
from twisted.cred.portal import Portal
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from parkchat.accounts import Accounts
from parkchat.auth import PasswordHasher, VerifiedCredentials, make_portal
from parkchat.bus.local import LocalBus
from parkchat.errors import InvalidRequest, NotInRoom
from parkchat.interfaces import IBus, IMessageStore, IParticipant
from parkchat.limits import ConnectionCounter, Limits, TokenBucketLimiter
from parkchat.model import (
    JOINED,
    LEFT,
    Message,
    User,
    nickname_key,
    system_message,
    validate_content,
    validate_room,
)
from parkchat.rooms import Room
from parkchat.store.writer import GroupCommitWriter

_log = Logger()

SHUTDOWN_REASON = "server shutting down"


class ChatService(Service):
    """Rooms, connections, accounts and messages of one parkchat process."""

    def __init__(
        self,
        store: IMessageStore,
        hasher: PasswordHasher,
        clock: IReactorTime,
        *,
        bus: IBus | None = None,
        limits: Limits | None = None,
        credential_cache: VerifiedCredentials | None = None,
    ) -> None:
        self.setName("chat")
        self.store = store
        self.clock = clock
        self.limits = limits if limits is not None else Limits()
        self.accounts = Accounts(store, hasher, clock, credential_cache)
        self.portal: Portal = make_portal(self.accounts.authenticate)
        self.writer = GroupCommitWriter(store.insert_messages, clock)
        self.bus: IBus = bus if bus is not None else LocalBus()
        self.bus.attach(self._deliver)
        self._rooms: dict[str, Room] = {}
        self._connections: dict[IParticipant, set[str]] = {}
        self._rate = TokenBucketLimiter(clock, self.limits.rate_limit, self.limits.rate_burst)
        self._per_user = ConnectionCounter(self.limits.max_connections_per_user, "account")
        self._per_ip = ConnectionCounter(self.limits.max_connections_per_ip, "address")
        self._housekeeping = LoopingCall(self._rate.prune)
        self._housekeeping.clock = clock
        self._stopping = False

    # -- lifecycle ---------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        self._stopping = False
        self._housekeeping.start(60, now=False)

    def stopService(self) -> Deferred[None]:
        """Close every connection with a goodbye, store what is queued, then
        close the store. The listeners stop before this runs (they are added
        to the application after the service), so nobody new arrives."""
        super().stopService()
        self._stopping = True
        if self._housekeeping.running:
            self._housekeeping.stop()
        for participant in list(self._connections):
            try:
                participant.disconnect(SHUTDOWN_REASON)
            except Exception:
                _log.failure("closing {nickname} failed", nickname=participant.nickname)
        return Deferred.fromCoroutine(self._drain())

    async def _drain(self) -> None:
        await self.writer.flush()
        await self.store.close()

    # -- connections -------------------------------------------------------

    def check_connection(self, nickname: str, peer_host: str) -> None:
        """Raise TooManyConnections if a new connection would pass a limit;
        lets a surface refuse before it upgrades or accepts anything."""
        self._per_user.check(nickname_key(nickname))
        self._per_ip.check(peer_host)

    def connect(self, participant: IParticipant) -> None:
        """Register a new connection, enforcing the per-user and per-address
        limits (TooManyConnections)."""
        if participant in self._connections:
            return
        key = nickname_key(participant.nickname)
        self._per_user.check(key)
        self._per_ip.check(participant.peer_host)
        self._per_user.acquire(key)
        self._per_ip.acquire(participant.peer_host)
        self._connections[participant] = set()

    def disconnect(self, participant: IParticipant) -> None:
        """Forget a closed connection: it leaves all its rooms."""
        rooms = self._connections.pop(participant, None)
        if rooms is None:
            return
        self._per_user.release(nickname_key(participant.nickname))
        self._per_ip.release(participant.peer_host)
        for name in list(rooms):
            self._leave_room(participant, name)

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    # -- rooms -------------------------------------------------------------

    def join(self, participant: IParticipant, room_name: str) -> Room:
        """Put ``participant`` in the room (made on first join) and tell every
        member, the joiner included."""
        room_name = validate_room(room_name)
        rooms = self._connections.get(participant)
        if rooms is None:
            raise InvalidRequest("connection is not registered")
        room = self._rooms.get(room_name)
        if room is None:
            room = self._rooms[room_name] = Room(room_name)
            self.bus.subscribe(room_name)
        elif participant in room:
            return room
        room.add(participant)
        rooms.add(room_name)
        self.bus.publish(
            room_name, system_message(room_name, participant.nickname, JOINED, self._now_ms())
        )
        return room

    def leave(self, participant: IParticipant, room_name: str) -> None:
        """Take ``participant`` out of the room and tell the others."""
        rooms = self._connections.get(participant)
        if rooms is None or room_name not in rooms:
            raise NotInRoom(f"not in room {room_name!r}")
        self._leave_room(participant, room_name)

    def _leave_room(self, participant: IParticipant, room_name: str) -> None:
        rooms = self._connections.get(participant)
        if rooms is not None:
            rooms.discard(room_name)
        room = self._rooms.get(room_name)
        if room is None or not room.remove(participant):
            return
        if not len(room):
            del self._rooms[room_name]
            self.bus.unsubscribe(room_name)
        elif not self._stopping:
            self.bus.publish(
                room_name, system_message(room_name, participant.nickname, LEFT, self._now_ms())
            )

    def rooms_of(self, participant: IParticipant) -> frozenset[str]:
        return frozenset(self._connections.get(participant, ()))

    def members(self, room_name: str) -> list[str]:
        """Nicknames present in a room on this instance."""
        room = self._rooms.get(room_name)
        return room.nicknames() if room is not None else []

    def room_names(self) -> list[str]:
        return sorted(self._rooms)

    # -- messages ----------------------------------------------------------

    def post(self, participant: IParticipant, room_name: str, content: object) -> Deferred[Message]:
        """Store a chat message, then deliver it to the room.

        Raises at once for bad content, a room not joined, or a spent rate
        limit; the Deferred fires with the stored message (id set) after it is
        committed and delivered, or fails with StorageFailed.
        """
        room = self._rooms.get(room_name)
        if room is None or participant not in room:
            raise NotInRoom(f"not in room {room_name!r}")
        content = validate_content(content, self.limits.max_content_length)
        self._rate.consume(nickname_key(participant.nickname))
        message = Message(
            room=room_name,
            nickname=participant.nickname,
            content=content,
            timestamp_ms=self._now_ms(),
            user_id=participant.user_id,
        )
        return self.writer.submit(message).addCallback(self._publish)

    def _publish(self, message: Message) -> Message:
        self.bus.publish(message.room, message)
        return message

    def _deliver(self, room_name: str, message: Message) -> None:
        """The bus hands every event of a room this instance serves to here."""
        room = self._rooms.get(room_name)
        if room is None:
            return
        for member in room.broadcast(message):
            self.disconnect(member)

    def history(
        self,
        room_name: str,
        limit: int | None = None,
        before: int | None = None,
        after: int | None = None,
    ) -> Deferred[list[Message]]:
        """The last ``limit`` messages of a room (default 50, at most the
        configured maximum), oldest first; paged with ``before``/``after`` ids."""
        room_name = validate_room(room_name)
        if limit is None:
            limit = self.limits.history_default
        if not 1 <= limit <= self.limits.history_max:
            raise InvalidRequest(f"limit must be between 1 and {self.limits.history_max}")
        for name, value in (("before", before), ("after", after)):
            if value is not None and value < 0:
                raise InvalidRequest(f"{name} must be a message id")
        return self.store.recent_messages(room_name, limit, before, after)

    # -- accounts ----------------------------------------------------------

    def register(self, nickname: object, password: object) -> Deferred[User]:
        return Deferred.fromCoroutine(self.accounts.register(nickname, password))

    def authenticate(self, nickname: str, password: str) -> Deferred[User]:
        return self.accounts.authenticate(nickname, password)

    def change_password(self, nickname: str, password: object) -> Deferred[None]:
        return Deferred.fromCoroutine(self.accounts.change_password(nickname, password))

    def _now_ms(self) -> int:
        return int(self.clock.seconds() * 1000)
