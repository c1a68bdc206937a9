"""ChatService: the one object every protocol and resource talks to.

It speaks in domain verbs (join, leave, post, history, register,
authenticate), takes and returns plain values, and raises ``parkchat.errors``;
it never sees JSON, bytes on the wire or HTTP. The work is done by the
handlers of ``parkchat.handlers``, one per area, which ``parkchat.tap`` builds
and hands in (``build_chat_service``): the service owns the lifecycle (start,
housekeeping, a clean stop) and routes each verb and each bus event to the
handler of its area.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.application.service import Service
from twisted.cred.portal import Portal
from twisted.internet.defer import Deferred, TimeoutError
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall, deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from parkchat.events import (
    BanEvent,
    ControlEvent,
    CutoffEvent,
    DirectMessageEvent,
    DirectStateEvent,
    KickEvent,
    NameClaimedEvent,
    ResyncEvent,
    RevokeEvent,
    RoomStateEvent,
    SessionEvent,
    UnbanEvent,
)
from parkchat.handlers.accounts import AccountHandler
from parkchat.handlers.connections import ConnectionHandler
from parkchat.handlers.direct import DirectMessageHandler
from parkchat.handlers.edits import EditHandler
from parkchat.handlers.messages import MessageHandler
from parkchat.handlers.moderation import ModerationHandler
from parkchat.handlers.refresh import RefreshTokenHandler
from parkchat.handlers.resync import ResyncHandler
from parkchat.handlers.rooms import RoomHandler
from parkchat.handlers.search import SearchHandler, SearchPage
from parkchat.handlers.sessions import SessionHandler
from parkchat.handlers.state import StateHandler
from parkchat.handlers.topics import TopicHandler
from parkchat.interfaces import IBus, IBusHandler, IChatService, IParticipant, IStoreLifecycle
from parkchat.limits import Limits
from parkchat.metrics import ServiceMetrics
from parkchat.model import (
    CONNECTION_CLOSED,
    Ban,
    DirectMessage,
    DirectState,
    DisconnectReason,
    JoinResult,
    Message,
    MessageEdit,
    RoomState,
    RoomTopic,
    StoredUser,
    User,
    nickname_key,
)
from parkchat.tokens import Revocations, TokenClaims

__all__ = ["READY_TIMEOUT", "ChatService"]

_log = Logger()

#: Seconds the readiness check waits for the database to answer.
READY_TIMEOUT = 5.0
#: Seconds between housekeeping runs (idle rate buckets, old login failures,
#: expired token revocations).
HOUSEKEEPING_INTERVAL = 60
#: Seconds a shutdown waits for what is queued to be stored and delivered
#: (``--drain-timeout``).
DRAIN_TIMEOUT = 10.0
#: Seconds the closing handshakes get at least, even after a long drain.
CLOSE_GRACE = 1.0
#: Seconds between looks at whether every connection has closed.
CLOSE_POLL = 0.05


@implementer(IChatService, IBusHandler)
class ChatService(Service):
    """Rooms, connections, accounts and messages of one parkchat process.

    A façade: every verb is one handler's. Two run once per message and are
    the handlers' own bound methods, set in ``__init__``, so that the
    message path has no extra call: ``post_quietly`` (MessageHandler) and
    ``deliver`` (RoomHandler).
    """

    #: IChatService.post_quietly: ``MessageHandler.post_quietly``.
    post_quietly: Callable[[IParticipant, str, object, Callable[[Failure], object]], None]
    #: IBusHandler.deliver: ``RoomHandler.deliver``.
    deliver: Callable[[str, Message], None]

    def __init__(
        self,
        store: IStoreLifecycle,
        bus: IBus,
        clock: IReactorTime,
        *,
        connections: ConnectionHandler,
        rooms: RoomHandler,
        moderation: ModerationHandler,
        sessions: SessionHandler,
        accounts: AccountHandler,
        messages: MessageHandler,
        direct: DirectMessageHandler,
        resync: ResyncHandler,
        edits: EditHandler,
        search: SearchHandler,
        topics: TopicHandler,
        state: StateHandler,
        refresh: RefreshTokenHandler,
        metrics: ServiceMetrics,
        limits: Limits,
        portal: Portal,
        revocations: Revocations,
        instance_id: str = "",
        drain_timeout: float = DRAIN_TIMEOUT,
    ) -> None:
        self.setName("chat")
        #: Names this process among the instances sharing a bus; prefixes
        #: connection ids so that they are unique across instances.
        self.instance_id = instance_id
        self.store = store
        self.bus = bus
        self.clock = clock
        self._connections = connections
        self._rooms = rooms
        self._moderation = moderation
        self._sessions = sessions
        self._accounts = accounts
        self._messages = messages
        self._direct = direct
        self._resync = resync
        self._edits = edits
        self._search = search
        self._topics = topics
        self._state = state
        self._refresh = refresh
        self._metrics = metrics
        self._limits = limits
        self._portal = portal
        self._revocations = revocations
        self.drain_timeout = drain_timeout
        self.post_quietly = messages.post_quietly
        self.deliver = rooms.deliver
        # Control events from the bus, by type, to the handler that applies them.
        self._on_control: dict[type[ControlEvent], Callable[[Any], None]] = {
            DirectMessageEvent: direct.deliver,
            KickEvent: moderation.apply_kick,
            BanEvent: moderation.apply_ban,
            UnbanEvent: moderation.apply_unban,
            RevokeEvent: sessions.apply_revoke,
            CutoffEvent: sessions.apply_cutoff,
            SessionEvent: sessions.apply_session,
            ResyncEvent: resync.apply,
            RoomStateEvent: state.apply_room_state,
            DirectStateEvent: state.apply_direct_state,
            NameClaimedEvent: sessions.apply_name_claimed,
        }
        self._housekeeping = LoopingCall(self._prune)
        self._housekeeping.clock = clock
        self._stopping = False
        bus.attach(self)

    # What tap.py built for the whole process, readable where it is put
    # together (tap, tests). Adapters never read these: they get them by
    # constructor (parkchat.protocols.participant.AdapterContext).
    @property
    def metrics(self) -> ServiceMetrics:
        """Counters and histograms for /metrics (parkchat.metrics)."""
        return self._metrics

    @property
    def limits(self) -> Limits:
        return self._limits

    @property
    def portal(self) -> Portal:
        """twisted.cred over ``login`` (HTTP Basic auth)."""
        return self._portal

    @property
    def revocations(self) -> Revocations:
        """Tokens refused before their expiry; the TokenAuthority consults it."""
        return self._revocations

    # -- lifecycle ---------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        self._stopping = False
        self._messages.start_accepting()
        self._rooms.start()
        self._resync.start()
        self._housekeeping.start(HOUSEKEEPING_INTERVAL, now=False)
        self._moderation.load()
        Deferred.fromCoroutine(self._sessions.load())

    def _prune(self) -> None:
        self._messages.prune()
        self._accounts.prune()
        self._sessions.prune()
        self._refresh.prune()

    def stopService(self) -> Deferred[None]:
        """Drain, then close every connection with a goodbye and close the
        store. The listeners stop before this runs (the application stops
        its services one after the other, last added first), so nobody new
        arrives; the bus stops after it, so what is published here still
        crosses."""
        super().stopService()
        self._stopping = True
        if self._housekeeping.running:
            self._housekeeping.stop()
        self._resync.stop()
        return Deferred.fromCoroutine(self._drain())

    async def _drain(self) -> None:
        """Refuse new posts; store what is queued and deliver it (here every
        room is brought up to the store's position, so each sender has had
        its echo or ack); then say goodbye (1001 on WebSockets) and wait
        for the connections to close, so that nothing written is cut off.
        Each wait ends at ``drain_timeout`` seconds from the start (the
        closing handshakes get CLOSE_GRACE seconds at least; none with a
        drain timeout of 0)."""
        deadline = self.clock.seconds() + self.drain_timeout
        self._messages.stop_accepting()
        await self._until(self._messages.flush(), deadline, "storing queued messages")
        await self._until(self._rooms.settle(), deadline, "delivering stored messages")
        self._rooms.stop()
        for participant in self._connections.participants():
            try:
                participant.disconnect(DisconnectReason.SHUTDOWN)
            except Exception:
                _log.failure("closing {nickname} failed", nickname=participant.nickname)
        closing = max(deadline, self.clock.seconds() + CLOSE_GRACE) if self.drain_timeout else 0
        while self._connections.count and self.clock.seconds() < closing:
            await deferLater(self.clock, CLOSE_POLL, lambda: None)
        await self._messages.flush()
        await self.store.close()

    async def _until(self, d: Deferred[None], deadline: float, doing: str) -> None:
        d.addTimeout(max(0.0, deadline - self.clock.seconds()), self.clock)
        try:
            await d
        except TimeoutError:
            _log.warn("shutdown: {doing} did not finish within the drain timeout", doing=doing)
        except Exception:
            _log.failure("shutdown: {doing} failed", doing=doing)

    async def readiness(self, timeout: float = READY_TIMEOUT) -> dict[str, str]:
        """Whether this instance can serve its members, for load balancers
        and Kubernetes' readiness probe (docs/operations.md, "Health").

        ``status`` is ``ready``; ``degraded`` when it serves its own members
        but something shared is missing (the Redis bus is down: nothing
        crosses to other instances until it is back, and then the instances
        catch up); ``not_ready`` only when it cannot do its job: the
        database does not answer within ``timeout`` seconds, a write
        transaction cannot start (SQLite locked by another process, a
        read-only PostgreSQL), the last batch of messages failed to commit,
        or it is shutting down. ``reason`` says why when not ``ready``;
        details of a database error are logged, not returned."""
        report: dict[str, str] = {"status": "ready"}
        failed: list[str] = []
        if self._stopping:
            failed.append("shutting down")
        report["database"] = await self._check_store(timeout, failed)
        if self._messages.storing_fails and report["database"] == "ok":
            report["database"] = "failing"
            failed.append("the last messages could not be stored")
        live = self.bus_live
        report["bus"] = "local" if live is None else "ok" if live else "down"
        if failed:
            report["status"] = "not_ready"
            report["reason"] = "; ".join(failed)
        elif report["bus"] == "down":
            report["status"] = "degraded"
            report["reason"] = (
                "message bus (Redis) is not connected: serving this instance's members only"
            )
        return report

    async def _check_store(self, timeout: float, failed: list[str]) -> str:
        """``ok``, or what went wrong (appended to ``failed``): the database
        answers a query and would let a write transaction start."""
        checks = (
            (self.store.ping, "database check failed", "did not answer"),
            (self.store.check_writable, "database cannot start a write", "took no write"),
        )
        for check, failure, silence in checks:
            d = check()
            d.addTimeout(timeout, self.clock)
            try:
                await d
            except TimeoutError:
                failed.append(f"database {silence} within {timeout:g} s")
                return "timeout"
            except Exception as e:
                _log.warn("readiness: {failure}: {error!r}", failure=failure, error=e)
                failed.append(f"{failure} ({type(e).__name__})")
                return "error"
        return "ok"

    @property
    def bus_live(self) -> bool | None:
        """Whether the shared bus carries events now (None: no shared bus)."""
        live = getattr(self.bus, "live", None)
        return None if live is None else bool(live)

    # -- connections: cross-area sequences ---------------------------------

    def connect(self, participant: IParticipant) -> str:
        """Register a new connection and return its id, enforcing bans and the
        per-user and per-address limits (Banned, TooManyConnections). With the
        single-session policy, the account's older connections are closed."""
        existing = self._connections.connection_id(participant)
        if existing is not None:
            return existing
        if participant.user_id is not None:
            self._moderation.check_not_banned(participant.user_id)
        self._sessions.replace_older(participant)
        connection_id = self._connections.register(participant)
        self._sessions.started(participant, connection_id)
        return connection_id

    def disconnect(self, participant: IParticipant, reason: str = CONNECTION_CLOSED) -> None:
        """Forget a closed connection: it leaves all its rooms (the others
        are told it quit, and why: ``reason``)."""
        self._rooms.disconnect(participant, reason)

    def check_connection(self, nickname: str, peer_host: str) -> None:
        """Raise TooManyConnections if a new connection would pass a limit;
        lets a surface refuse before it upgrades or accepts anything."""
        self._connections.check(nickname, peer_host)

    def connection_id(self, participant: IParticipant) -> str | None:
        return self._connections.connection_id(participant)

    def connections_from(self, peer_host: str) -> int:
        return self._connections.connections_from(peer_host)

    def local_connections(self, nickname: str) -> list[IParticipant]:
        """This instance's connections under ``nickname`` (folded)."""
        return self._connections.of_account(nickname_key(nickname))

    @property
    def connection_count(self) -> int:
        return self._connections.count

    def connections_by_surface(self) -> dict[str, int]:
        return self._connections.by_surface()

    def online_users(self) -> list[User]:
        return self._connections.online_users()

    def is_online(self, nickname: str) -> bool:
        return self._connections.is_online(nickname)

    # -- rooms -------------------------------------------------------------

    def join(
        self, participant: IParticipant, room_name: str, since: int | None = None
    ) -> Deferred[JoinResult]:
        return self._rooms.join(participant, room_name, since)

    def leave(self, participant: IParticipant, room_name: str, reason: str = "") -> None:
        self._rooms.leave(participant, room_name, reason)

    def rooms_of(self, participant: IParticipant) -> frozenset[str]:
        return self._rooms.rooms_of(participant)

    def members(self, room_name: str) -> list[str]:
        return self._rooms.members(room_name)

    def local_members(self, room_name: str) -> list[str]:
        return self._rooms.local_members(room_name)

    def member_count(self, room_name: str) -> int:
        return self._rooms.member_count(room_name)

    def name_in_room(self, room_name: str, nickname: str) -> bool:
        return self._rooms.name_in_room(room_name, nickname)

    def room_names(self) -> list[str]:
        return self._rooms.room_names()

    def room_sizes(self) -> dict[str, int]:
        return self._rooms.room_sizes()

    @property
    def room_count(self) -> int:
        return self._rooms.room_count

    def active_rooms(self, participant: IParticipant, limit: int = 100) -> list[tuple[str, int]]:
        return self._rooms.active_rooms(participant, limit)

    # -- room messages -----------------------------------------------------

    def post(self, participant: IParticipant, room_name: str, content: object) -> Deferred[Message]:
        return self._messages.post(participant, room_name, content)

    def notify(self, participant: IParticipant, room_name: str, kind: str) -> None:
        self._messages.notify(participant, room_name, kind)

    def history(
        self,
        room_name: str,
        limit: int | None = None,
        before: int | None = None,
        after: int | None = None,
        *,
        after_seq: int | None = None,
        before_seq: int | None = None,
    ) -> Deferred[list[Message]]:
        return self._messages.history(
            room_name, limit, before, after, after_seq=after_seq, before_seq=before_seq
        )

    def history_version(self, room_name: str) -> int | None:
        return self._messages.history_version(room_name)

    async def delete_message(self, message_id: object) -> str | None:
        return await self._messages.delete_message(message_id)

    async def edit_message(
        self, participant: IParticipant, room_name: object, seq: object, body: object
    ) -> Message:
        return await self._edits.edit(participant, room_name, seq, body)

    async def delete_own_message(
        self, participant: IParticipant, room_name: object, seq: object
    ) -> Message:
        return await self._edits.delete(participant, room_name, seq)

    def message_edits(
        self, message_id: object, participant: IParticipant | None = None
    ) -> Deferred[list[MessageEdit]]:
        return self._edits.edits(message_id, participant)

    async def search(
        self,
        user_id: int | None,
        nickname: str,
        query: object,
        *,
        room: object = None,
        with_nickname: object = None,
        before: object = None,
        limit: object = None,
    ) -> SearchPage:
        return await self._search.search(
            user_id,
            nickname,
            query,
            room=room,
            with_nickname=with_nickname,
            before=before,
            limit=limit,
        )

    async def set_topic(
        self, participant: IParticipant, room_name: object, text: object
    ) -> RoomTopic | None:
        return await self._topics.set_topic(participant, room_name, text)

    async def room_topic(self, room_name: object) -> RoomTopic | None:
        return await self._topics.topic(room_name)

    # -- direct messages ---------------------------------------------------

    async def send_direct(
        self, participant: IParticipant, to: object, content: object
    ) -> DirectMessage:
        return await self._direct.send_direct(participant, to, content)

    async def direct_history(
        self,
        participant: IParticipant,
        other: object,
        limit: int | None = None,
        before: object = None,
        *,
        after_seq: object = None,
        before_seq: object = None,
    ) -> tuple[StoredUser, list[DirectMessage]]:
        return await self._direct.direct_history(
            participant, other, limit, before, after_seq=after_seq, before_seq=before_seq
        )

    async def offline_messages(
        self, participant: IParticipant, limit: int = 500
    ) -> list[DirectMessage]:
        return await self._direct.offline_messages(participant, limit)

    # -- moderation --------------------------------------------------------

    def check_not_banned(self, user_id: int) -> None:
        self._moderation.check_not_banned(user_id)

    async def ban(self, nickname: str, reason: str = "", duration: float | None = None) -> Ban:
        return await self._moderation.ban(nickname, reason, duration)

    async def unban(self, nickname: str) -> bool:
        return await self._moderation.unban(nickname)

    def bans(self) -> list[Ban]:
        return self._moderation.bans()

    def kick(self, nickname: str, room_name: str, reason: str = "") -> int:
        return self._moderation.kick(nickname, room_name, reason)

    def multi_instance(self) -> bool:
        return bool(self.instance_id)

    # -- accounts and sessions ---------------------------------------------

    def register(
        self, nickname: object, password: object, peer_host: str | None = None
    ) -> Deferred[User]:
        return self._accounts.register(nickname, password, peer_host)

    def account_exists(self, nickname: str) -> Deferred[bool]:
        return self._accounts.account_exists(nickname)

    def list_accounts(self, limit: int, after_id: int = 0) -> Deferred[list[User]]:
        return self._accounts.list_accounts(limit, after_id)

    def authenticate(self, nickname: str, password: str) -> Deferred[User]:
        return self._accounts.authenticate(nickname, password)

    async def login(self, nickname: str, password: str, peer_host: str = "") -> User:
        return await self._accounts.login(nickname, password, peer_host)

    async def admit_token(self, nickname: str, user_id: int | None) -> None:
        await self._accounts.admit_token(nickname, user_id)

    def change_password(self, nickname: str, password: object) -> Deferred[None]:
        return self._accounts.change_password(nickname, password)

    async def logout(self, claims: TokenClaims, everywhere: bool = False) -> None:
        await self._sessions.logout(claims, everywhere)

    async def issue_refresh_token(self, user: User) -> tuple[str, int]:
        return await self._refresh.issue(user)

    async def refresh_login(self, refresh_token: object) -> tuple[User, str, int]:
        return await self._refresh.refresh(refresh_token)

    async def revoke_refresh_token(self, refresh_token: object) -> bool:
        return await self._refresh.revoke(refresh_token)

    # -- account state -----------------------------------------------------

    async def account_state(
        self, participant: IParticipant
    ) -> tuple[list[RoomState], list[DirectState]]:
        return await self._state.account_state(participant)

    async def record_join(self, participant: IParticipant, room_name: str) -> None:
        await self._state.joined(participant, room_name)

    async def record_leave(self, participant: IParticipant, room_name: str) -> None:
        await self._state.left(participant, room_name)

    async def mark_read(
        self, participant: IParticipant, room: object, other: object, seq: object
    ) -> None:
        await self._state.mark_read(participant, room, other, seq)

    async def mute(self, participant: IParticipant, room: object, muted: object) -> None:
        await self._state.mute(participant, room, muted)

    async def open_direct(self, participant: IParticipant, other: object) -> None:
        await self._state.set_direct_open(participant, other, True)

    async def close_direct(self, participant: IParticipant, other: object) -> None:
        await self._state.set_direct_open(participant, other, False)

    # -- the bus (IBusHandler) ---------------------------------------------

    def control(self, event: ControlEvent) -> None:
        """An instance-wide event from the bus, handed to the handler of its
        type. Most were applied already where they were made, so the
        maker's own copy is skipped; direct messages are delivered wherever
        the recipient is connected, the maker included."""
        if event.APPLIED_AT_ORIGIN and event.instance == self.instance_id:
            return
        self._on_control[type(event)](event)

    def presence_snapshot(self) -> dict[str, Any]:
        return self._rooms.presence_snapshot()

    def presence_updated(self) -> None:
        """Close what a burst over several instances let past the
        per-account connection limit (``ConnectionHandler.excess``)."""
        for participant in self._connections.excess():
            self._rooms.force_out(participant, DisconnectReason.TOO_MANY_CONNECTIONS)

    def bus_recovered(self) -> None:
        self._resync.bus_recovered()

    def resync(self) -> None:
        """Catch up on what a bus outage kept from this instance (ResyncHandler)."""
        self._resync.resync()
