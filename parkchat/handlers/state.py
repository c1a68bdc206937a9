"""Account state: what follows an account from device to device.

The rooms an account has joined (on /ws, until it leaves them; a
disconnect is no leave), its conversations, and per room and conversation
its read marker and (rooms) whether it is muted, with unread and mention
counts computed by the store. Every change is published on the bus as a
``RoomStateEvent`` / ``DirectStateEvent`` and shown to every connection of
the account on every instance that shows account state
(``IAccountStateReceiver``: /ws), the one that made the change included.
Between changes, clients count what arrives themselves; the server's
counts are exact in ``account_state`` and in each pushed state.
"""

from __future__ import annotations

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from parkchat.errors import Forbidden, InvalidRequest, NotInRoom, UnknownRecipient
from parkchat.events import DirectStateEvent, RoomStateEvent
from parkchat.handlers.connections import ConnectionHandler
from parkchat.handlers.direct import account_name
from parkchat.interfaces import (
    IAccountStateReceiver,
    IAccountStateStore,
    IAccountStore,
    IBus,
    IParticipant,
)
from parkchat.model import (
    MAX_ID,
    DirectState,
    RoomState,
    StoredUser,
    nickname_key,
    validate_room,
)

_log = Logger()


def _account_of(participant: IParticipant) -> int:
    """The participant's account id; guests have no account state."""
    user_id: int | None = participant.user_id
    if user_id is None:
        raise Forbidden("rooms, conversations and read markers need a registered account")
    return user_id


def _seq(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_ID:
        raise InvalidRequest('"seq" must be a seq (an integer, 0 or more)')
    return value


class StateHandler:
    """Joined rooms, conversations, read markers and mutes per account,
    pushed to all of the account's connections everywhere."""

    def __init__(
        self,
        store: IAccountStateStore,
        users: IAccountStore,
        connections: ConnectionHandler,
        bus: IBus,
        clock: IReactorTime,
        *,
        instance_id: str = "",
    ) -> None:
        self._store = store
        self._users = users
        self._connections = connections
        self._bus = bus
        self._clock = clock
        self._instance_id = instance_id

    # -- reading -------------------------------------------------------------------

    async def account_state(
        self, participant: IParticipant
    ) -> tuple[list[RoomState], list[DirectState]]:
        """The account's rooms and conversations, with exact counts."""
        user_id = _account_of(participant)
        rooms = await self._store.account_rooms(user_id)
        directs = await self._store.account_directs(user_id)
        return rooms, directs

    # -- rooms ---------------------------------------------------------------------

    async def joined(self, participant: IParticipant, room: str) -> None:
        """Record a room the account joined (on a surface that follows
        accounts); its other connections hear of it if it is new to the
        account (the joining one has its ``joined`` answer). Guests: nothing."""
        if participant.user_id is None:
            return
        state = await self._store.add_account_room(
            participant.user_id, room, int(self._clock.seconds() * 1000)
        )
        if state is not None:
            self._publish_room(
                participant, state, skip=self._connections.connection_id(participant)
            )

    async def left(self, participant: IParticipant, room: str) -> None:
        """Forget a room the account left; its connections hear of it."""
        if participant.user_id is None:
            return
        if await self._store.remove_account_room(participant.user_id, room):
            self._publish_room(
                participant,
                RoomState(room, seq=0, read_seq=0, joined=False),
                skip=self._connections.connection_id(participant),
            )

    async def mark_read(
        self, participant: IParticipant, room: object, other: object, seq: object
    ) -> None:
        """Move a read marker forward (``room`` or the conversation with
        ``other``, by id or nickname); never back, clamped to the current
        seq. Nothing changes, and nobody hears, if it would not move."""
        user_id = _account_of(participant)
        position = _seq(seq)
        if (room is None) == (other is None):
            raise InvalidRequest('give either "room" or "with"')
        if room is not None:
            state = await self._store.mark_room_read(user_id, validate_room(room), position)
            if state is not None:
                self._publish_room(participant, state)
            return
        account = await self._account(other)
        direct = await self._store.mark_direct_read(user_id, account.id, position)
        if direct is not None:
            self._publish_direct(participant, direct)

    async def mute(self, participant: IParticipant, room: object, muted: object) -> None:
        """Mute or unmute one of the account's rooms."""
        user_id = _account_of(participant)
        if not isinstance(muted, bool):
            raise InvalidRequest('"muted" must be true or false')
        name = validate_room(room)
        state = await self._store.set_room_muted(user_id, name, muted)
        if state is None:
            raise NotInRoom(f"{name!r} is not one of this account's rooms")
        self._publish_room(participant, state)

    # -- conversations ---------------------------------------------------------------

    async def set_direct_open(self, participant: IParticipant, other: object, opened: bool) -> None:
        """Put a conversation in the account's list (even without messages),
        or take it out until its next message."""
        user_id = _account_of(participant)
        account = await self._account(other)
        state = await self._store.set_direct_open(user_id, account.id, opened)
        if state is None:
            raise UnknownRecipient(f"no account {other!r}")
        self._publish_direct(participant, state)

    async def _account(self, other: object) -> StoredUser:
        name = account_name(other)
        found = await (
            self._users.get_user_by_id(name)
            if isinstance(name, int)
            else self._users.get_user(name)
        )
        if found is None:
            raise UnknownRecipient(f"no account {other!r}")
        return found

    # -- pushing ---------------------------------------------------------------------

    def _publish_room(
        self, participant: IParticipant, state: RoomState, skip: str | None = None
    ) -> None:
        user_id = participant.user_id
        assert user_id is not None
        key = nickname_key(participant.nickname)
        self._bus.publish_control(
            RoomStateEvent.of(user_id, key, state, self._instance_id, skip or "")
        )

    def _publish_direct(self, participant: IParticipant, state: DirectState) -> None:
        user_id = participant.user_id
        assert user_id is not None
        self._bus.publish_control(
            DirectStateEvent.of(
                user_id, nickname_key(participant.nickname), state, self._instance_id
            )
        )

    def apply_room_state(self, event: RoomStateEvent) -> None:
        """A room state from the bus (any instance): to the account's
        connections here (but the one that joined or left)."""
        self._show(event.user_id, event.user_key, event.state, event.skip)

    def apply_direct_state(self, event: DirectStateEvent) -> None:
        """A conversation state from the bus: to the account's connections here."""
        self._show(event.user_id, event.user_key, event.state)

    def _show(
        self, user_id: int, user_key: str, state: RoomState | DirectState, skip: str = ""
    ) -> None:
        for target in self._connections.of_account(user_key):
            if target.user_id != user_id or not IAccountStateReceiver.providedBy(target):
                continue  # a guest sharing the name, or a surface without account state
            if skip and self._connections.connection_id(target) == skip:
                continue
            try:
                target.account_state(state)
            except Exception:
                _log.failure("showing account state to {nickname} failed", nickname=target.nickname)
