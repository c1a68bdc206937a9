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

from collections import Counter
from collections.abc import Callable
from typing import Any

from twisted.application.service import Service
from twisted.cred.portal import Portal
from twisted.internet.defer import Deferred, TimeoutError, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from parkchat.accounts import Accounts, _encodable
from parkchat.auth import PasswordHasher, VerifiedCredentials, make_portal
from parkchat.bus.local import LocalBus
from parkchat.errors import (
    AuthenticationFailed,
    Banned,
    InvalidRequest,
    NotInRoom,
    RateLimited,
    TooManyAttempts,
    TooManyConnections,
    UnknownRecipient,
)
from parkchat.interfaces import IBus, IBusHandler, IChatService, IMessageStore, IParticipant
from parkchat.limits import ConnectionCounter, Limits, LoginThrottle, TokenBucketLimiter
from parkchat.metrics import ServiceMetrics
from parkchat.model import (
    CHAT,
    DELETED,
    JOINED,
    LEFT,
    Ban,
    DirectMessage,
    DisconnectReason,
    Message,
    StoredUser,
    User,
    format_timestamp,
    nickname_key,
    system_message,
    validate_content,
    validate_room,
)
from parkchat.recent import RecentMessages
from parkchat.rooms import Room
from parkchat.store.writer import GroupCommitWriter
from parkchat.tokens import LEEWAY, Revocations, TokenClaims

_log = Logger()
#: Moderation and account-security actions, one line each (the operator's
#: record of who was banned, kicked or deleted; never a password or token).
_moderation_log = Logger(namespace="parkchat.moderation")

#: The largest id a store can hold (SQL BIGINT); larger ones are refused, not sent to it.
MAX_ID = 2**63 - 1
#: Seconds the readiness check waits for the database to answer.
READY_TIMEOUT = 5.0
#: How long a message delivered by a resync is ignored if it also comes over
#: the bus (seconds): far longer than a publish takes to cross.
CAUGHT_UP_WINDOW = 60.0


def _message_id(name: str, value: object) -> int | None:
    """A page boundary: None or a message id a store can hold."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_ID:
        raise InvalidRequest(f"{name} must be a message id")
    return value


@implementer(IChatService, IBusHandler)
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
        single_session: bool = False,
        instance_id: str = "",
        recent_history: bool = True,
    ) -> None:
        self.setName("chat")
        #: Names this process among the instances sharing a bus; prefixes
        #: connection ids so that they are unique across instances.
        self.instance_id = instance_id
        self.store = store
        self.clock = clock
        self.limits = limits if limits is not None else Limits()
        self.accounts = Accounts(store, hasher, clock, credential_cache)
        self.portal: Portal = make_portal(self._login_for_cred)
        #: Counters and histograms for /metrics (parkchat.metrics).
        self.metrics = ServiceMetrics()
        self.writer = GroupCommitWriter(
            store.insert_messages, clock, on_batch=self.metrics.batch_done, on_stored=self._publish
        )
        self.bus: IBus = bus if bus is not None else LocalBus()
        self.bus.attach(self)
        #: A shared bus can lose events while it is down: rooms then remember
        #: the ids they delivered, for ``resync``.
        self._track_seen = bus is not None
        self._resyncing = False
        self._resync_again = False
        # (room, id) delivered by a resync, for a while: the same message may
        # still come over the bus (stored, then published, after the resync
        # read it) and must not be shown twice.
        self._caught_up: set[tuple[str, int]] = set()
        self._caught_up_expiry: IDelayedCall | None = None
        self._rooms: dict[str, Room] = {}
        self._connections: dict[IParticipant, set[str]] = {}
        self._rate = TokenBucketLimiter(clock, self.limits.rate_limit, self.limits.rate_burst)
        self._per_user = ConnectionCounter(self.limits.max_connections_per_user, "account")
        self._per_ip = ConnectionCounter(self.limits.max_connections_per_ip, "address")
        self.login_throttle = LoginThrottle(
            clock, self.limits.login_failures, self.limits.login_window
        )
        self._housekeeping = LoopingCall(self._prune)
        self._housekeeping.clock = clock
        self._stopping = False
        # connection ids (for "not back to the sender") and connections per account
        self._ids: dict[IParticipant, str] = {}
        self._next_id = 0
        self._by_user: dict[str, dict[IParticipant, None]] = {}
        self._bans: dict[int, Ban] = {}
        #: Tokens refused before their expiry; the TokenAuthority consults it.
        self.revocations = Revocations()
        self.single_session = single_session
        #: In-memory newest messages per room; only with one instance (see
        #: parkchat.recent), so not with a shared bus.
        self.recent: RecentMessages | None = (
            RecentMessages(self.limits.history_max) if recent_history else None
        )
        self._recent_loads: dict[str, list[Deferred[list[Message]]]] = {}
        self.metrics.watch(self)

    # -- lifecycle ---------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        self._stopping = False
        self._housekeeping.start(60, now=False)
        self.store.list_bans().addCallbacks(self._bans_loaded, self._bans_failed)
        Deferred.fromCoroutine(self._load_revocations())

    def _prune(self) -> None:
        self._rate.prune()
        self.login_throttle.prune()
        now = self.clock.seconds()
        self.revocations.prune(now)
        self.store.prune_revoked_tokens(int(now) - LEEWAY).addErrback(
            lambda f: _log.failure("pruning revoked tokens failed", f)
        )

    async def _load_revocations(self) -> None:
        """Revoked tokens and per-account cutoffs from the database: at
        start, and again after a bus outage (``resync``)."""
        try:
            tokens = await self.store.list_revoked_tokens(int(self.clock.seconds()) - LEEWAY)
            cutoffs = await self.store.list_token_cutoffs()
        except Exception:
            _log.failure("loading revoked tokens failed")
            return
        self.revocations.load(tokens, cutoffs)

    def _bans_loaded(self, bans: list[Ban]) -> None:
        self._bans.update({ban.user_id: ban for ban in bans})

    def _bans_failed(self, failure: Failure) -> None:
        _log.failure("loading the ban list failed", failure)

    def stopService(self) -> Deferred[None]:
        """Close every connection with a goodbye, store what is queued, then
        close the store. The listeners stop before this runs (they are added
        to the application after the service), so nobody new arrives."""
        super().stopService()
        self._stopping = True
        if self._housekeeping.running:
            self._housekeeping.stop()
        if self._caught_up_expiry is not None and self._caught_up_expiry.active():
            self._caught_up_expiry.cancel()
        for participant in list(self._connections):
            try:
                participant.disconnect(DisconnectReason.SHUTDOWN)
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
        self._check_account_connections(nickname_key(nickname))
        self._per_ip.check(self.limits.address_key(peer_host))

    def connect(self, participant: IParticipant) -> str:
        """Register a new connection and return its id, enforcing bans and the
        per-user and per-address limits (Banned, TooManyConnections). With the
        single-session policy, the account's older connections are closed."""
        existing = self._ids.get(participant)
        if existing is not None:
            return existing
        if participant.user_id is not None:
            self.check_not_banned(participant.user_id)
        key = nickname_key(participant.nickname)
        if self.single_session and participant.user_id is not None:
            for older in list(self._by_user.get(key, ())):
                self._force_out(older, DisconnectReason.REPLACED)
        address = self.limits.address_key(participant.peer_host)
        self._check_account_connections(key)
        self._per_ip.check(address)
        self._per_user.acquire(key)
        self._per_ip.acquire(address)
        self._connections[participant] = set()
        self._next_id += 1
        prefix = f"{self.instance_id}." if self.instance_id else ""
        connection_id = self._ids[participant] = f"{prefix}c{self._next_id}"
        self._by_user.setdefault(key, {})[participant] = None
        if self.single_session and participant.user_id is not None:
            # Older sessions on other instances close too.
            self._control({"kind": "session", "user_key": key, "keep": connection_id})
        self.bus.presence_changed()
        return connection_id

    def _check_account_connections(self, key: str) -> None:
        """The per-account connection limit over every instance: this one's
        connections plus those the others last announced (presence, shared
        within ~50 ms of a change, so a burst spread over instances may pass
        it by a few). With single sessions the limit is moot: a new login
        closes the older ones, wherever they are."""
        self._per_user.check(key)
        limit = self.limits.max_connections_per_user
        if not limit or self.single_session:
            return
        elsewhere = self.bus.remote_presence().get("connections", {}).get(key, 0)
        if elsewhere and self._per_user.count(key) + elsewhere >= limit:
            raise TooManyConnections(
                f"too many connections for this account (limit {limit}, on all servers)"
            )

    def disconnect(self, participant: IParticipant) -> None:
        """Forget a closed connection: it leaves all its rooms."""
        rooms = self._connections.pop(participant, None)
        if rooms is None:
            return
        key = nickname_key(participant.nickname)
        self._ids.pop(participant, None)
        mine = self._by_user.get(key)
        if mine is not None:
            mine.pop(participant, None)
            if not mine:
                del self._by_user[key]
        self._per_user.release(key)
        self._per_ip.release(self.limits.address_key(participant.peer_host))
        for name in list(rooms):
            self._leave_room(participant, name)
        self.bus.presence_changed()

    def _force_out(self, participant: IParticipant, reason: DisconnectReason) -> None:
        """Close a connection the server wants gone (ban, replaced session) and
        forget it now, whatever its transport does next."""
        try:
            participant.disconnect(reason)
        except Exception:
            _log.failure("closing {nickname} failed", nickname=participant.nickname)
        self.disconnect(participant)

    def connection_id(self, participant: IParticipant) -> str | None:
        return self._ids.get(participant)

    def connections_from(self, peer_host: str) -> int:
        """Open registered connections from one address."""
        return self._per_ip.count(self.limits.address_key(peer_host))

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    def connections_by_surface(self) -> dict[str, int]:
        """Registered connections per surface (``room_ws``, ``app_ws``,
        ``mychat``, ``tcp``), from their encoders; for metrics, at scrape time."""
        return dict(Counter(getattr(p.encoder, "surface", "other") for p in self._connections))

    @property
    def room_count(self) -> int:
        return len(self._rooms)

    # -- readiness ---------------------------------------------------------

    async def readiness(self, timeout: float = READY_TIMEOUT) -> dict[str, str]:
        """Whether this instance can serve: the database answers a trivial
        query within ``timeout`` seconds and, with a shared bus, the bus is
        live. ``status`` is ``ready`` or ``not_ready`` (then ``reason`` says
        why); details of a database error are logged, not returned."""
        report: dict[str, str] = {"status": "ready"}
        reasons: list[str] = []
        if self._stopping:
            reasons.append("shutting down")
        d = self.store.ping()
        d.addTimeout(timeout, self.clock)
        try:
            await d
            report["database"] = "ok"
        except TimeoutError:
            report["database"] = "timeout"
            reasons.append(f"database did not answer within {timeout:g} s")
        except Exception as e:
            _log.warn("readiness: database check failed: {error!r}", error=e)
            report["database"] = "error"
            reasons.append(f"database check failed ({type(e).__name__})")
        live = getattr(self.bus, "live", None)
        if live is None:
            report["bus"] = "local"
        elif live:
            report["bus"] = "ok"
        else:
            report["bus"] = "down"
            reasons.append("message bus (Redis) is not connected")
        if reasons:
            report["status"] = "not_ready"
            report["reason"] = "; ".join(reasons)
        return report

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
        self.bus.presence_changed()
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
        self.bus.presence_changed()
        if not self._stopping:
            # Even when the room is now empty here: with a shared bus, its
            # members on other instances must hear of the leave.
            self.bus.publish(
                room_name, system_message(room_name, participant.nickname, LEFT, self._now_ms())
            )
        if not len(room):
            del self._rooms[room_name]
            self.bus.unsubscribe(room_name)

    def kick(self, nickname: str, room_name: str, reason: str = "") -> int:
        """Take every connection of ``nickname`` out of a room, on every
        instance; return how many were removed here. Each is told through
        ``IParticipant.removed``."""
        kicked = self._kick_here(nickname, room_name, reason)
        self._control({"kind": "kick", "nickname": nickname, "room": room_name, "reason": reason})
        _moderation_log.info(
            "moderation: kicked {nickname} from {room} ({reason})",
            nickname=nickname,
            room=room_name,
            reason=reason,
            action="kick",
        )
        return kicked

    def _kick_here(self, nickname: str, room_name: str, reason: str) -> int:
        key = nickname_key(nickname)
        kicked = 0
        for participant in list(self._by_user.get(key, ())):
            if room_name in self._connections.get(participant, ()):
                self._leave_room(participant, room_name)
                kicked += 1
                try:
                    participant.removed(room_name, reason or "kicked by a moderator")
                except Exception:
                    _log.failure("telling {nickname} of a kick failed", nickname=nickname)
        return kicked

    def rooms_of(self, participant: IParticipant) -> frozenset[str]:
        return frozenset(self._connections.get(participant, ()))

    def members(self, room_name: str) -> list[str]:
        """Nicknames present in a room, on every instance (others' as last
        shared through the bus)."""
        here = self.local_members(room_name)
        remote = self.bus.remote_presence()["rooms"].get(room_name, ())
        return list(dict.fromkeys([*here, *remote]))

    def local_members(self, room_name: str) -> list[str]:
        """Nicknames present in a room on this instance."""
        room = self._rooms.get(room_name)
        return room.nicknames() if room is not None else []

    def name_in_room(self, room_name: str, nickname: str) -> bool:
        """Whether someone called ``nickname`` (case-insensitively) is in the room."""
        room = self._rooms.get(room_name)
        if room is None:
            return False
        key = nickname_key(nickname)
        return any(nickname_key(p.nickname) == key for p in room)

    def room_names(self) -> list[str]:
        return sorted(self._rooms)

    def room_sizes(self) -> dict[str, int]:
        """Rooms with members on this instance and how many connections each has."""
        return {name: len(room) for name, room in sorted(self._rooms.items())}

    def active_rooms(self, participant: IParticipant, limit: int = 100) -> list[tuple[str, int]]:
        """Rooms with people in them on any instance and how many distinct
        people each has, busiest first (then by name), at most ``limit``:
        the room directory. Rooms are public by name in parkchat (anyone may
        join any name), so listing them reveals nothing a join would not.
        It walks every room, so it counts against the asker's rate limit."""
        self._consume_rate(participant)
        remote = self.bus.remote_presence()["rooms"]
        names = set(self._rooms) | {name for name, people in remote.items() if people}
        counted = [(name, self.member_count(name)) for name in names]
        counted.sort(key=lambda item: (-item[1], item[0]))
        return [item for item in counted if item[1] > 0][:limit]

    def member_count(self, room_name: str) -> int:
        """Distinct people in a room (GarinChat's ``totalUsers``). Asked once
        per /ws room event, so the one-instance case costs no walk over the
        members."""
        if not self.bus.remote_presence()["rooms"].get(room_name):
            room = self._rooms.get(room_name)
            return room.distinct_count() if room is not None else 0
        return len(self.members(room_name))

    def online_users(self) -> list[User]:
        """Accounts with at least one open connection on any instance, by id."""
        seen: dict[int, User] = {
            int(user_id): User(int(user_id), nickname)
            for user_id, nickname in self.bus.remote_presence()["users"].values()
        }
        for participants in self._by_user.values():
            for p in participants:
                if p.user_id is not None:
                    seen[p.user_id] = User(p.user_id, p.nickname)
                    break
        return [seen[k] for k in sorted(seen)]

    def is_online(self, nickname: str) -> bool:
        key = nickname_key(nickname)
        return key in self._by_user or key in self.bus.remote_presence()["users"]

    # -- the bus: events from every instance -------------------------------

    def presence_snapshot(self) -> dict[str, Any]:
        """What this instance shares of its presence (IBusHandler)."""
        users: dict[str, list[Any]] = {}
        connections: dict[str, int] = {}
        for key, participants in self._by_user.items():
            for p in participants:
                if p.user_id is not None:
                    users[key] = [p.user_id, p.nickname]
                    # Lets the others apply the per-account connection limit
                    # to the whole deployment (a key of its own: instances of
                    # an older version read "users" as [id, nickname] pairs).
                    connections[key] = len(participants)
                    break
        rooms = {name: room.nicknames() for name, room in self._rooms.items()}
        return {"users": users, "rooms": rooms, "connections": connections}

    def _control(self, event: dict[str, Any]) -> None:
        """Publish an instance-wide event, stamped with this instance."""
        event["instance"] = self.instance_id
        self.bus.publish_control(event)

    def control(self, event: dict[str, Any]) -> None:
        """An instance-wide event from the bus (IBusHandler). Kicks, bans and
        session takeovers were already applied where they were made; direct
        messages are delivered wherever the recipient is connected."""
        kind = event.get("kind")
        try:
            if kind == "dm":
                self._deliver_direct(event)
                return
            if event.get("instance") == self.instance_id:
                return
            if kind == "resync":
                self.resync()
            elif kind == "kick":
                self._kick_here(event["nickname"], event["room"], event.get("reason", ""))
            elif kind == "ban":
                ban = Ban(
                    event["user_id"],
                    event["nickname"],
                    event["reason"],
                    event["created_ms"],
                    event["expires_ms"],
                )
                self._apply_ban(ban)
            elif kind == "unban":
                self._bans.pop(event["user_id"], None)
            elif kind == "revoke":
                self.revocations.revoke(event["token_id"], int(event["expires_s"]))
                self._close_account_here(
                    event["user_id"],
                    event["nickname"],
                    DisconnectReason.TOKEN_REVOKED,
                    event["token_id"],
                )
            elif kind == "cutoff":
                self.revocations.cut_off(event["user_id"], int(event["before_ms"]))
                # A new password: this instance may still hold the old one
                # as verified (the credential cache).
                self.accounts.cache.forget(nickname_key(event["nickname"]))
                if event.get("close"):
                    self._close_account_here(
                        event["user_id"], event["nickname"], DisconnectReason.LOGGED_OUT
                    )
            elif kind == "session":
                for p in list(self._by_user.get(event["user_key"], ())):
                    if p.user_id is not None and self._ids.get(p) != event["keep"]:
                        self._force_out(p, DisconnectReason.REPLACED)
        except (KeyError, TypeError, ValueError):
            _log.failure("malformed control event {event!r}", event=event)

    # -- messages ----------------------------------------------------------

    def post(self, participant: IParticipant, room_name: str, content: object) -> Deferred[Message]:
        """Store a chat message, then deliver it to the room.

        Raises at once for bad content, a room not joined, or a spent rate
        limit; the Deferred fires with the stored message (id set) after it is
        committed and delivered, or fails with StorageFailed.
        """
        return self.writer.submit(self._new_post(participant, room_name, content))

    def post_quietly(
        self,
        participant: IParticipant,
        room_name: str,
        content: object,
        failed: Callable[[Failure], object],
    ) -> None:
        """``post`` for a sender that needs no result, only to hear of a
        failure after the fact (``failed`` gets a Failure, StorageFailed when
        the store refused): no Deferred per message on the hot path."""
        self.writer.submit_quietly(self._new_post(participant, room_name, content), failed)

    def _new_post(self, participant: IParticipant, room_name: str, content: object) -> Message:
        room = self._rooms.get(room_name)
        if room is None or participant not in room:
            raise NotInRoom(f"not in room {room_name!r}")
        self.metrics.messages_received += 1
        content = validate_content(content, self.limits.max_content_length)
        self._consume_rate(participant)
        return Message(
            room=room_name,
            nickname=participant.nickname,
            content=content,
            timestamp_ms=self._now_ms(),
            user_id=participant.user_id,
            origin=self._ids.get(participant),
        )

    def _consume_rate(self, participant: IParticipant) -> None:
        try:
            self._rate.consume(nickname_key(participant.nickname))
        except RateLimited:
            self.metrics.rate_limited += 1
            raise

    def notify(self, participant: IParticipant, room_name: str, kind: str) -> None:
        """Publish an ephemeral room event (e.g. typing) from a member: not
        stored, not rate-limited here; surfaces that do not show ``kind``
        skip it (their encoders return None)."""
        room = self._rooms.get(room_name)
        if room is None or participant not in room:
            raise NotInRoom(f"not in room {room_name!r}")
        self.bus.publish(
            room_name,
            Message(
                room=room_name,
                nickname=participant.nickname,
                content="",
                timestamp_ms=self._now_ms(),
                type=kind,
                origin=self._ids.get(participant),
            ),
        )

    def _publish(self, message: Message) -> Message:
        if self.recent is not None:
            self.recent.add(message)
        self.bus.publish(message.room, message)
        return message

    def deliver(self, room_name: str, message: Message) -> None:
        """The bus hands every event of a room this instance serves to here
        (IBusHandler)."""
        room = self._rooms.get(room_name)
        if room is None:
            return
        if self._track_seen and message.id and message.type == CHAT:
            if self._caught_up and (room_name, message.id) in self._caught_up:
                self._caught_up.discard((room_name, message.id))
                return
            room.saw(message.id)
        failed = room.broadcast(message)
        self.metrics.deliveries += room.last_delivered
        for member in failed:
            self._force_out(member, DisconnectReason.DELIVERY_FAILED)

    async def delete_message(self, message_id: object) -> str | None:
        """Remove a stored message (moderation): from the database, from this
        instance's recent-history cache, and from the screens of the room's
        members on every instance that show such events (``deleted`` on
        /ws). The name of its room, or None if there was no such message."""
        if isinstance(message_id, bool) or not isinstance(message_id, int):
            raise InvalidRequest('"id" must be a message id')
        if not 0 < message_id <= MAX_ID:
            return None
        room = await self.store.delete_message(message_id)
        if room is None:
            return None
        if self.recent is not None:
            self.recent.remove(room, message_id)
        _moderation_log.info(
            "moderation: deleted message {id} from {room}",
            id=message_id,
            room=room,
            action="delete",
        )
        notice = Message(
            room=room,
            nickname="",
            content="",
            timestamp_ms=self._now_ms(),
            type=DELETED,
            id=message_id,
        )
        self.bus.publish(room, notice)
        return room

    def bus_recovered(self) -> None:
        """The bus carries events between instances again after an outage
        (IBusHandler): messages stored meanwhile reached only the members on
        the instance that stored them. Catch up here, and ask every other
        instance to do the same for this one's messages."""
        self._control({"kind": "resync"})
        self.resync()

    def resync(self) -> None:
        """Deliver to local members the stored messages of their rooms that
        never reached this instance: each room's messages above the oldest id
        it remembers delivering (``rooms.SEEN`` of them), minus those it did
        deliver, in id order; and reload the stored bans, closing banned
        accounts' connections here. Runs one pass at a time; a request during
        a pass makes one more pass after it."""
        if self._resyncing:
            self._resync_again = True
            return
        self._resyncing = True  # before the pass: it may finish at once
        Deferred.fromCoroutine(self._resync()).addErrback(
            lambda failure: _log.failure("resync failed", failure)
        )

    async def _resync(self) -> None:
        try:
            again = True
            while again and not self._stopping:
                self._resync_again = False
                await self._resync_bans()
                await self._load_revocations()
                delivered = 0
                for name in list(self._rooms):
                    delivered += await self._resync_room(name)
                if delivered:
                    _log.info("resync: delivered {count} missed messages", count=delivered)
                again = self._resync_again
        finally:
            self._resyncing = False

    async def _resync_bans(self) -> None:
        """Bans and unbans made on another instance during the outage did
        not cross either; they are stored, so take the list from there."""
        try:
            bans = await self.store.list_bans()
        except Exception:
            _log.failure("resync: reading the ban list failed")
            return
        self._bans = {ban.user_id: ban for ban in bans}
        now = self._now_ms()
        for ban in bans:
            if ban.active(now):
                self._apply_ban(ban)

    async def _resync_room(self, name: str) -> int:
        room = self._rooms.get(name)
        floor = room.seen_floor() if room is not None else None
        if floor is None:
            return 0
        try:
            stored = await self.store.recent_messages(name, self.limits.history_max, None, floor)
        except Exception:
            _log.failure("resync: reading {room} failed", room=name)
            return 0
        room = self._rooms.get(name)  # it may have emptied meanwhile
        if room is None:
            return 0
        missed = room.unseen(stored)
        for message in missed:
            self.deliver(name, message)
            self._caught_up.add((name, message.id))
        if missed:
            if self._caught_up_expiry is not None and self._caught_up_expiry.active():
                self._caught_up_expiry.cancel()
            self._caught_up_expiry = self.clock.callLater(CAUGHT_UP_WINDOW, self._caught_up.clear)
        return len(missed)

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
        limit, before, after = self._page(limit, before, after)
        if self.recent is None or before is not None or after is not None:
            return self.store.recent_messages(room_name, limit, before, after)
        cached = self.recent.get(room_name, limit)
        if cached is not None:
            return succeed(cached)
        return self._load_recent(room_name).addCallback(lambda window: window[-limit:])

    def _page(
        self, limit: object, before: object, after: object
    ) -> tuple[int, int | None, int | None]:
        """A page request (``limit`` messages before or after a message id)
        checked against the history limits."""
        if limit is None:
            limit = self.limits.history_default
        if isinstance(limit, bool) or not isinstance(limit, int):
            raise InvalidRequest("limit must be an integer")
        if not 1 <= limit <= self.limits.history_max:
            raise InvalidRequest(f"limit must be between 1 and {self.limits.history_max}")
        return limit, _message_id("before", before), _message_id("after", after)

    def _load_recent(self, room_name: str) -> Deferred[list[Message]]:
        """Load a room's newest messages into ``recent``; concurrent readers
        of the same room share one query."""
        d: Deferred[list[Message]] = Deferred()
        waiting = self._recent_loads.get(room_name)
        if waiting is not None:
            waiting.append(d)
            return d
        self._recent_loads[room_name] = [d]
        assert self.recent is not None
        self.recent.loading(room_name)
        recent = self.recent

        def loaded(stored: list[Message]) -> None:
            window = recent.fill(room_name, stored)
            for waiter in self._recent_loads.pop(room_name, []):
                waiter.callback(window)

        def failed(failure: Failure) -> None:
            recent._loading.pop(room_name, None)
            for waiter in self._recent_loads.pop(room_name, []):
                waiter.errback(failure)

        self.store.recent_messages(room_name, self.limits.history_max).addCallbacks(loaded, failed)
        return d

    def history_version(self, room_name: str) -> int | None:
        """A number that changes whenever the cached newest messages of a room
        change, or None when they are not cached (for response caches)."""
        if self.recent is None or self.recent.get(room_name, 1) is None:
            return None
        return self.recent.version(room_name)

    # -- direct messages ---------------------------------------------------

    async def send_direct(
        self, participant: IParticipant, to: object, content: object
    ) -> DirectMessage:
        """Store a direct message to an account (by id or nickname) and hand it
        to every connection of the recipient that takes direct messages. If
        none does, it waits for ``offline_messages``."""
        if participant.user_id is None:
            raise InvalidRequest("direct messages need a registered account")
        content = validate_content(content, self.limits.max_content_length)
        name = self._account_name(to)
        self._consume_rate(participant)
        recipient = await self._account(name)
        now = self._now_ms()
        message_id, seq = await self.store.insert_direct(
            participant.user_id, recipient.id, content, now, False
        )
        message = DirectMessage(
            message_id,
            participant.user_id,
            participant.nickname,
            recipient.id,
            recipient.nickname,
            content,
            now,
            seq=seq,
        )
        self._control(
            {
                "kind": "dm",
                "id": message.id,
                "from_user_id": message.from_user_id,
                "from": message.from_nickname,
                "to_user_id": message.to_user_id,
                "to": message.to_nickname,
                "content": message.content,
                "timestamp_ms": message.timestamp_ms,
                "seq": message.seq,
            }
        )
        return message

    @staticmethod
    def _account_name(to: object) -> int | str:
        """``to`` if it names an account by user id or nickname that a store
        could hold."""
        if isinstance(to, bool) or not isinstance(to, int | str) or to == "":
            raise InvalidRequest("name the other account by user id or nickname")
        if not (0 < to <= MAX_ID if isinstance(to, int) else _encodable(to)):
            raise UnknownRecipient(f"no account {to!r}")  # no store could hold it
        return to

    async def _account(self, to: int | str) -> StoredUser:
        recipient = await (
            self.store.get_user_by_id(to) if isinstance(to, int) else self.store.get_user(to)
        )
        if recipient is None:
            raise UnknownRecipient(f"no account {to!r}")
        return recipient

    async def direct_history(
        self,
        participant: IParticipant,
        other: object,
        limit: int | None = None,
        before: object = None,
    ) -> tuple[StoredUser, list[DirectMessage]]:
        """The other account, and the direct messages between it and the
        participant's account (both ways), oldest first: the newest
        ``limit`` (default 50), or those before the message id ``before``."""
        if participant.user_id is None:
            raise InvalidRequest("direct messages need a registered account")
        name = self._account_name(other)
        size, older_than, _ = self._page(limit, before, None)
        account = await self._account(name)
        messages = await self.store.direct_history(
            participant.user_id, account.id, size, older_than
        )
        return account, messages

    def _deliver_direct(self, event: dict[str, Any]) -> None:
        """Hand a direct message to this instance's connections of the
        recipient's account; mark it delivered if one took it. Until then it
        waits for ``offline_messages``."""
        message = DirectMessage(
            event["id"],
            event["from_user_id"],
            event["from"],
            event["to_user_id"],
            event["to"],
            event["content"],
            event["timestamp_ms"],
            # An instance of an older parkchat sends no seq.
            seq=event.get("seq", 0),
        )
        delivered = False
        for target in list(self._by_user.get(nickname_key(message.to_nickname), ())):
            if target.user_id != message.to_user_id:
                continue  # a guest or external-token user sharing the name
            try:
                delivered = target.direct(message) or delivered
            except Exception:
                _log.failure("direct delivery to {nickname} failed", nickname=target.nickname)
        if delivered:
            # Stored first, marked after: a crash in between redelivers it
            # through get_offline rather than losing it.
            self.store.mark_delivered([message.id]).addErrback(
                lambda f: _log.failure("marking a direct message delivered failed", f)
            )

    async def offline_messages(
        self, participant: IParticipant, limit: int = 500
    ) -> list[DirectMessage]:
        """Direct messages that arrived while the account was away, oldest
        first; they are marked delivered once handed over."""
        if participant.user_id is None:
            raise InvalidRequest("offline messages need a registered account")
        messages: list[DirectMessage] = await self.store.pending_direct(participant.user_id, limit)
        if messages:
            await self.store.mark_delivered([m.id for m in messages])
        return messages

    # -- moderation --------------------------------------------------------

    def check_not_banned(self, user_id: int) -> None:
        ban = self._bans.get(user_id)
        if ban is not None and ban.active(self._now_ms()):
            until = "" if ban.expires_ms is None else f" until {format_timestamp(ban.expires_ms)}"
            reason = f": {ban.reason}" if ban.reason else ""
            raise Banned(f"this account is banned{until}{reason}")

    async def admit_token(self, nickname: str, user_id: int | None) -> None:
        """Checks for a connection that authenticated with a token: a
        parkchat account must not be banned; a name from an external token
        must not belong to a registered account (or it would speak as them
        and slip past their ban)."""
        if user_id is not None:
            self.check_not_banned(user_id)
        elif await self.account_exists(nickname):
            raise AuthenticationFailed(
                f"{nickname} is a registered account: log in with its password"
            )

    async def ban(self, nickname: str, reason: str = "", duration: float | None = None) -> Ban:
        """Ban an account (optionally for ``duration`` seconds): its logins and
        connections are refused and its live connections closed."""
        user = await self.store.get_user(nickname)
        if user is None:
            raise UnknownRecipient(f"no account {nickname!r}")
        now = self._now_ms()
        expires = None if duration is None else now + int(duration * 1000)
        await self.store.set_ban(user.id, reason, now, expires)
        ban = Ban(user.id, user.nickname, reason, now, expires)
        self._apply_ban(ban)
        _moderation_log.info(
            "moderation: banned {nickname} until {until} ({reason})",
            nickname=ban.nickname,
            until="lifted" if expires is None else format_timestamp(expires),
            reason=reason,
            action="ban",
        )
        self._control(
            {
                "kind": "ban",
                "user_id": ban.user_id,
                "nickname": ban.nickname,
                "reason": ban.reason,
                "created_ms": ban.created_ms,
                "expires_ms": ban.expires_ms,
            }
        )
        return ban

    def _apply_ban(self, ban: Ban) -> None:
        self._bans[ban.user_id] = ban
        self._close_account_here(ban.user_id, ban.nickname, DisconnectReason.BANNED)

    async def unban(self, nickname: str) -> bool:
        user = await self.store.get_user(nickname)
        if user is None:
            raise UnknownRecipient(f"no account {nickname!r}")
        self._bans.pop(user.id, None)
        removed: bool = await self.store.remove_ban(user.id)
        self._control({"kind": "unban", "user_id": user.id})
        _moderation_log.info(
            "moderation: unbanned {nickname}", nickname=user.nickname, action="unban"
        )
        return removed

    def bans(self) -> list[Ban]:
        now = self._now_ms()
        return [b for b in sorted(self._bans.values(), key=lambda b: b.user_id) if b.active(now)]

    # -- accounts ----------------------------------------------------------

    def register(self, nickname: object, password: object) -> Deferred[User]:
        return Deferred.fromCoroutine(self.accounts.register(nickname, password))

    def account_exists(self, nickname: str) -> Deferred[bool]:
        """Whether ``nickname`` belongs to a registered account (guests may not
        take such names)."""
        return self.store.get_user(nickname).addCallback(lambda user: user is not None)

    def list_accounts(self, limit: int, after_id: int = 0) -> Deferred[list[User]]:
        """Accounts by id (the admin API's user list)."""
        return self.store.list_users(limit, after_id)

    def authenticate(self, nickname: str, password: str) -> Deferred[User]:
        """Check a password and refuse banned accounts."""
        return self.accounts.authenticate(nickname, password).addCallback(self._not_banned)

    async def login(self, nickname: str, password: str, peer_host: str = "") -> User:
        """``authenticate`` behind the failed-login throttle: too many failures
        for the account or from the address answer TooManyAttempts (429)
        without even checking the password."""
        account = ("account", nickname_key(nickname) if nickname else "")
        keys: tuple[tuple[str, str], ...] = (account,)
        if self.limits.address_key(peer_host) is not None:  # not a proxy's own address
            keys += (("address", peer_host),)
        wait = self.login_throttle.retry_after(*keys)
        if wait > 0:
            self.metrics.login_throttled += 1
            raise TooManyAttempts(f"too many failed logins: try again in {int(wait) + 1} seconds")
        try:
            user: User = await self.authenticate(nickname, password)
        except AuthenticationFailed:
            self.metrics.auth_failures["password"] += 1
            self.login_throttle.failed(*keys)
            raise
        self.login_throttle.succeeded(keys[0])
        return user

    def _login_for_cred(self, nickname: str, password: str, peer_host: str) -> Deferred[User]:
        return Deferred.fromCoroutine(self.login(nickname, password, peer_host))

    def _not_banned(self, user: User) -> User:
        self.check_not_banned(user.id)
        return user

    def change_password(self, nickname: str, password: object) -> Deferred[None]:
        """Set a new password; the account's tokens issued until now stop
        working (whoever knew the old password may hold one), and every
        instance forgets the old password's cached verification. Open
        connections stay: they proved the password when they opened."""
        return Deferred.fromCoroutine(self._change_password(nickname, password))

    async def _change_password(self, nickname: str, password: object) -> None:
        await self.accounts.change_password(nickname, password)
        user = await self.store.get_user(nickname)
        if user is not None:
            await self._cut_off_tokens(user.id, user.nickname, close=False)
            _moderation_log.info(
                "account: new password for {nickname}", nickname=user.nickname, action="password"
            )

    # -- tokens ----------------------------------------------------------------

    async def logout(self, claims: TokenClaims, everywhere: bool = False) -> None:
        """Revoke the token ``claims`` came from; with ``everywhere``, every
        token of its account issued until now, and close the account's
        connections on every instance. Tokens of an external auth service
        are revoked there, not here."""
        if claims.user_id is None:
            raise InvalidRequest("tokens of the external auth service cannot be revoked here")
        if everywhere or claims.token_id is None:
            await self._cut_off_tokens(claims.user_id, claims.nickname, close=True)
            return
        await self.store.revoke_token(claims.token_id, claims.expires_at)
        self.revocations.revoke(claims.token_id, claims.expires_at)
        self._close_account_here(
            claims.user_id, claims.nickname, DisconnectReason.TOKEN_REVOKED, claims.token_id
        )
        self._control(
            {
                "kind": "revoke",
                "token_id": claims.token_id,
                "expires_s": claims.expires_at,
                "user_id": claims.user_id,
                "nickname": claims.nickname,
            }
        )

    async def _cut_off_tokens(self, user_id: int, nickname: str, *, close: bool) -> None:
        before_ms = self._now_ms()
        await self.store.set_token_cutoff(user_id, before_ms)
        self.revocations.cut_off(user_id, before_ms)
        if close:
            self._close_account_here(user_id, nickname, DisconnectReason.LOGGED_OUT)
        self._control(
            {
                "kind": "cutoff",
                "user_id": user_id,
                "nickname": nickname,
                "before_ms": before_ms,
                "close": close,
            }
        )

    def _close_account_here(
        self, user_id: int, nickname: str, reason: DisconnectReason, token_id: str | None = None
    ) -> None:
        """Close this instance's connections of an account (ban, log out
        everywhere), or with ``token_id`` only those that authenticated with
        that token (revoked: a copy of it in other hands must not stay
        connected)."""
        for participant in list(self._by_user.get(nickname_key(nickname), ())):
            if participant.user_id != user_id:
                continue  # a guest or external-token user sharing the name
            if token_id is None or getattr(participant, "token_id", None) == token_id:
                self._force_out(participant, reason)

    def _now_ms(self) -> int:
        return int(self.clock.seconds() * 1000)
