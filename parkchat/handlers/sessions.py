"""Sessions and tokens: logout, token cut-offs and revocations on every
instance, and the single-session policy."""

from __future__ import annotations

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from parkchat.auth import VerifiedCredentials
from parkchat.errors import InvalidRequest
from parkchat.events import CutoffEvent, NameClaimedEvent, RevokeEvent, SessionEvent
from parkchat.handlers.connections import ConnectionHandler
from parkchat.handlers.rooms import RoomHandler
from parkchat.interfaces import (
    IBus,
    IParticipant,
    IRefreshTokenStore,
    ISessionStore,
    ITokenStore,
)
from parkchat.model import DisconnectReason, name_skeleton, nickname_key
from parkchat.tokens import LEEWAY, Revocations, TokenClaims

_log = Logger()


class SessionHandler:
    """Keeps ``revocations`` (which the TokenAuthority consults) in step with
    the database and the other instances, closes the connections a logout
    ends, and with ``single_session`` lets an account's newest connection
    replace its older ones everywhere.

    "Newest" is decided by something ordered, not by which announcement
    arrives first: every connection of an account gets a session number
    from the store's per-account counter (``ISessionStore.next_session``,
    an atomic increment shared by all instances). An instance closes the
    account's connections whose number is lower than the highest it has
    seen; a connection whose number comes back lower than one already
    announced closes itself. Two logins at the same moment on two instances
    therefore leave exactly one session, the later-numbered, never none.
    """

    def __init__(
        self,
        store: ITokenStore,
        sessions: ISessionStore,
        connections: ConnectionHandler,
        rooms: RoomHandler,
        bus: IBus,
        clock: IReactorTime,
        revocations: Revocations,
        credentials: VerifiedCredentials,
        *,
        instance_id: str = "",
        single_session: bool = False,
        refresh_tokens: IRefreshTokenStore | None = None,
    ) -> None:
        self._store = store
        self._refresh_tokens = refresh_tokens
        self._sessions = sessions
        self._connections = connections
        self._rooms = rooms
        self._bus = bus
        self._clock = clock
        self._revocations = revocations
        self._credentials = credentials
        self._instance_id = instance_id
        self._single_session = single_session
        # Session numbers of this instance's account connections (those
        # whose number has come back), and the highest number announced per
        # account (folded nickname) from anywhere.
        self._numbers: dict[IParticipant, int] = {}
        self._highest: dict[str, int] = {}

    async def load(self) -> None:
        """Revoked tokens and per-account cutoffs from the database: at
        start, and again after a bus outage (resync)."""
        try:
            tokens = await self._store.list_revoked_tokens(int(self._clock.seconds()) - LEEWAY)
            cutoffs = await self._store.list_token_cutoffs()
        except Exception:
            _log.failure("loading revoked tokens failed")
            return
        self._revocations.load(tokens, cutoffs)

    def prune(self) -> None:
        """Forget revoked tokens that have expired anyway, here and stored;
        and the session numbers of accounts no longer connected here (the
        store's counter only grows, so a later login still outnumbers them)."""
        for participant in [p for p in self._numbers if not self._connections.connection_id(p)]:
            del self._numbers[participant]
        connected = {nickname_key(p.nickname) for p in self._numbers}
        self._highest = {k: n for k, n in self._highest.items() if k in connected}
        now = self._clock.seconds()
        self._revocations.prune(now)
        self._store.prune_revoked_tokens(int(now) - LEEWAY).addErrback(
            lambda f: _log.failure("pruning revoked tokens failed", f)
        )

    # -- single session --------------------------------------------------------

    def replace_older(self, participant: IParticipant) -> None:
        """Before an account's new connection registers: with the
        single-session policy, close its older ones here."""
        if self._single_session and participant.user_id is not None:
            for older in self._connections.of_account(nickname_key(participant.nickname)):
                self._rooms.force_out(older, DisconnectReason.REPLACED)

    def started(self, participant: IParticipant, connection_id: str) -> None:
        """After it registered: number the session, then the older ones on
        other instances close too (or this one, if a newer one was
        announced while its number was being drawn)."""
        if not self._single_session or participant.user_id is None:
            return
        self._sessions.next_session(participant.user_id).addCallbacks(
            self._numbered,
            self._not_numbered,
            callbackArgs=(participant, connection_id),
            errbackArgs=(participant, connection_id),
        )

    def _numbered(self, number: int, participant: IParticipant, connection_id: str) -> None:
        if self._connections.connection_id(participant) != connection_id:
            return  # closed (or replaced here) while its number was drawn
        key = nickname_key(participant.nickname)
        if number < self._highest.get(key, 0):
            self._rooms.force_out(participant, DisconnectReason.REPLACED)
            return
        self._numbers[participant] = number
        self._highest[key] = number
        self._bus.publish_control(
            SessionEvent(
                user_key=key, keep=connection_id, number=number, instance=self._instance_id
            )
        )

    def _not_numbered(
        self, failure: Failure, participant: IParticipant, connection_id: str
    ) -> None:
        """The store could not count: announce without a number, so that the
        others close every other connection of the account (unordered, but
        the newest here stays)."""
        _log.failure("numbering a session failed", failure)
        if self._connections.connection_id(participant) != connection_id:
            return
        self._bus.publish_control(
            SessionEvent(
                user_key=nickname_key(participant.nickname),
                keep=connection_id,
                instance=self._instance_id,
            )
        )

    # -- logout ------------------------------------------------------------------

    async def logout(self, claims: TokenClaims, everywhere: bool = False) -> None:
        """Revoke the token ``claims`` came from; with ``everywhere``, every
        token of its account issued until now, and close the account's
        connections on every instance. Tokens of an external auth service
        are revoked there, not here."""
        if claims.user_id is None:
            raise InvalidRequest("tokens of the external auth service cannot be revoked here")
        if everywhere or claims.token_id is None:
            await self.cut_off(claims.user_id, claims.nickname, close=True)
            return
        await self._store.revoke_token(claims.token_id, claims.expires_at)
        self._revocations.revoke(claims.token_id, claims.expires_at)
        self._rooms.close_account(
            claims.user_id, claims.nickname, DisconnectReason.TOKEN_REVOKED, claims.token_id
        )
        self._bus.publish_control(
            RevokeEvent(
                token_id=claims.token_id,
                expires_s=claims.expires_at,
                user_id=claims.user_id,
                nickname=claims.nickname,
                instance=self._instance_id,
            )
        )

    async def cut_off(self, user_id: int, nickname: str, *, close: bool) -> None:
        """Revoke every token of the account issued until now, on every
        instance, and all its refresh tokens; with ``close``, close its
        connections everywhere too."""
        before_ms = int(self._clock.seconds() * 1000)
        await self._store.set_token_cutoff(user_id, before_ms)
        if self._refresh_tokens is not None:
            await self._refresh_tokens.revoke_refresh_tokens(user_id)
        self._revocations.cut_off(user_id, before_ms)
        if close:
            self._rooms.close_account(user_id, nickname, DisconnectReason.LOGGED_OUT)
        self._bus.publish_control(
            CutoffEvent(
                user_id=user_id,
                nickname=nickname,
                before_ms=before_ms,
                close=close,
                instance=self._instance_id,
            )
        )

    # -- a guest's name registered -------------------------------------------------

    def claim_name(self, nickname: str) -> int:
        """An account was just registered as ``nickname``: close the
        connections without an account (guests, external-token users) whose
        names look like it, here now and on every other instance through
        the bus, each told why (``DisconnectReason.NAME_REGISTERED``).
        Returns how many were closed here."""
        skeleton = name_skeleton(nickname)
        closed = self._close_guests(skeleton)
        self._bus.publish_control(
            NameClaimedEvent(nickname=nickname, skeleton=skeleton, instance=self._instance_id)
        )
        return closed

    def apply_name_claimed(self, event: NameClaimedEvent) -> None:
        self._close_guests(event.skeleton)

    def _close_guests(self, skeleton: str) -> int:
        # A walk over this instance's connections: registrations are rare
        # (each costs a bcrypt), and name_skeleton is cached per name.
        guests = [
            p
            for p in self._connections.participants()
            if p.user_id is None and p.nickname and name_skeleton(p.nickname) == skeleton
        ]
        for guest in guests:
            self._rooms.force_out(guest, DisconnectReason.NAME_REGISTERED)
        return len(guests)

    # -- from the other instances ------------------------------------------------

    def apply_revoke(self, event: RevokeEvent) -> None:
        self._revocations.revoke(event.token_id, event.expires_s)
        self._rooms.close_account(
            event.user_id, event.nickname, DisconnectReason.TOKEN_REVOKED, event.token_id
        )

    def apply_cutoff(self, event: CutoffEvent) -> None:
        self._revocations.cut_off(event.user_id, event.before_ms)
        # A new password: this instance may still hold the old one as
        # verified (the credential cache).
        self._credentials.forget(nickname_key(event.nickname))
        if event.close:
            self._rooms.close_account(event.user_id, event.nickname, DisconnectReason.LOGGED_OUT)

    def apply_session(self, event: SessionEvent) -> None:
        """Another instance numbered a session of the account: close the
        connections here that it outnumbers. Those still waiting for their
        own number compare when it comes (``_numbered``)."""
        if event.number:
            self._highest[event.user_key] = max(self._highest.get(event.user_key, 0), event.number)
        for participant in self._connections.of_account(event.user_key):
            if participant.user_id is None:
                continue  # a guest or external-token user sharing the name
            if self._connections.connection_id(participant) == event.keep:
                continue
            mine = self._numbers.get(participant)
            if event.number and (mine is None or mine > event.number):
                continue  # newer than the announced one, or not numbered yet
            self._numbers.pop(participant, None)
            self._rooms.force_out(participant, DisconnectReason.REPLACED)
