"""Moderation: bans and kicks, on every instance."""

from __future__ import annotations

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from parkchat.errors import Banned, UnknownRecipient
from parkchat.events import BanEvent, KickEvent, UnbanEvent
from parkchat.handlers.rooms import RoomHandler
from parkchat.interfaces import IAccountStore, IBus, IModerationStore
from parkchat.model import Ban, DisconnectReason, format_timestamp

_log = Logger()
#: Moderation and account-security actions, one line each (the operator's
#: record of who was banned, kicked or deleted; never a password or token).
moderation_log = Logger(namespace="parkchat.moderation")


class ModerationHandler:
    """Bans (stored, held in memory for the checks at every login and
    connection, announced to the other instances) and kicks (announced only:
    a kick is a moment, not state)."""

    def __init__(
        self,
        store: IModerationStore,
        users: IAccountStore,
        rooms: RoomHandler,
        bus: IBus,
        clock: IReactorTime,
        *,
        instance_id: str = "",
    ) -> None:
        self._store = store
        self._users = users
        self._rooms = rooms
        self._bus = bus
        self._clock = clock
        self._instance_id = instance_id
        self._bans: dict[int, Ban] = {}

    def load(self) -> None:
        """Read the stored bans (at start)."""
        self._store.list_bans().addCallbacks(self._loaded, self._load_failed)

    def _loaded(self, bans: list[Ban]) -> None:
        self._bans.update({ban.user_id: ban for ban in bans})

    def _load_failed(self, failure: Failure) -> None:
        _log.failure("loading the ban list failed", failure)

    async def reload(self) -> None:
        """After a bus outage: bans and unbans made on another instance
        meanwhile did not cross, but they are stored; take the list from
        there and close the connections of accounts banned meanwhile."""
        try:
            bans = await self._store.list_bans()
        except Exception:
            _log.failure("resync: reading the ban list failed")
            return
        self._bans = {ban.user_id: ban for ban in bans}
        now = self._now_ms()
        for ban in bans:
            if ban.active(now):
                self._apply(ban)

    def check_not_banned(self, user_id: int) -> None:
        """Raise Banned if the account is banned now."""
        ban = self._bans.get(user_id)
        if ban is not None and ban.active(self._now_ms()):
            until = "" if ban.expires_ms is None else f" until {format_timestamp(ban.expires_ms)}"
            reason = f": {ban.reason}" if ban.reason else ""
            raise Banned(f"this account is banned{until}{reason}")

    async def ban(self, nickname: str, reason: str = "", duration: float | None = None) -> Ban:
        """Ban an account (optionally for ``duration`` seconds): its logins and
        connections are refused and its live connections closed."""
        user = await self._users.get_user(nickname)
        if user is None:
            raise UnknownRecipient(f"no account {nickname!r}")
        now = self._now_ms()
        expires = None if duration is None else now + int(duration * 1000)
        await self._store.set_ban(user.id, reason, now, expires)
        ban = Ban(user.id, user.nickname, reason, now, expires)
        self._apply(ban)
        moderation_log.info(
            "moderation: banned {nickname} until {until} ({reason})",
            nickname=ban.nickname,
            until="lifted" if expires is None else format_timestamp(expires),
            reason=reason,
            action="ban",
        )
        self._bus.publish_control(BanEvent.of(ban, self._instance_id))
        return ban

    def _apply(self, ban: Ban) -> None:
        self._bans[ban.user_id] = ban
        self._rooms.close_account(ban.user_id, ban.nickname, DisconnectReason.BANNED)

    async def unban(self, nickname: str) -> bool:
        """Lift an account's ban; whether there was one."""
        user = await self._users.get_user(nickname)
        if user is None:
            raise UnknownRecipient(f"no account {nickname!r}")
        self._bans.pop(user.id, None)
        removed: bool = await self._store.remove_ban(user.id)
        self._bus.publish_control(UnbanEvent(user_id=user.id, instance=self._instance_id))
        moderation_log.info(
            "moderation: unbanned {nickname}", nickname=user.nickname, action="unban"
        )
        return removed

    def bans(self) -> list[Ban]:
        """The active bans, by account id."""
        now = self._now_ms()
        return [b for b in sorted(self._bans.values(), key=lambda b: b.user_id) if b.active(now)]

    def kick(self, nickname: str, room_name: str, reason: str = "") -> int:
        """Take every connection of ``nickname`` out of a room, on every
        instance; return how many were removed here. Each is told through
        ``IParticipant.removed``."""
        kicked = self._rooms.kick_here(nickname, room_name, reason)
        self._bus.publish_control(
            KickEvent(nickname=nickname, room=room_name, reason=reason, instance=self._instance_id)
        )
        moderation_log.info(
            "moderation: kicked {nickname} from {room} ({reason})",
            nickname=nickname,
            room=room_name,
            reason=reason,
            action="kick",
        )
        return kicked

    # -- from the other instances ------------------------------------------------

    def apply_ban(self, event: BanEvent) -> None:
        self._apply(event.ban)

    def apply_unban(self, event: UnbanEvent) -> None:
        self._bans.pop(event.user_id, None)

    def apply_kick(self, event: KickEvent) -> None:
        self._rooms.kick_here(event.nickname, event.room, event.reason)

    def _now_ms(self) -> int:
        return int(self._clock.seconds() * 1000)
