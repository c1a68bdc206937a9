"""Direct messages between accounts, on every instance."""

from __future__ import annotations

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from parkchat.accounts import _encodable
from parkchat.errors import InvalidRequest, UnknownRecipient
from parkchat.events import DirectMessageEvent
from parkchat.handlers.connections import ConnectionHandler
from parkchat.handlers.messages import check_page, check_positions
from parkchat.interfaces import IAccountStore, IBus, IDirectMessageStore, IParticipant
from parkchat.limits import Limits, TokenBucketLimiter
from parkchat.model import MAX_ID, DirectMessage, StoredUser, nickname_key, validate_content

_log = Logger()


def account_name(to: object) -> int | str:
    """``to`` if it names an account by user id or nickname that a store
    could hold."""
    if isinstance(to, bool) or not isinstance(to, int | str) or to == "":
        raise InvalidRequest("name the other account by user id or nickname")
    if not (0 < to <= MAX_ID if isinstance(to, int) else _encodable(to)):
        raise UnknownRecipient(f"no account {to!r}")  # no store could hold it
    return to


class DirectMessageHandler:
    """A direct message is stored first (undelivered), then announced on the
    bus; every instance with a connection of the recipient that takes direct
    messages hands it over and marks it delivered. Until one does, it waits
    in the store for ``offline_messages``."""

    def __init__(
        self,
        store: IDirectMessageStore,
        users: IAccountStore,
        connections: ConnectionHandler,
        bus: IBus,
        clock: IReactorTime,
        limits: Limits,
        rate: TokenBucketLimiter,
        *,
        instance_id: str = "",
    ) -> None:
        self._store = store
        self._users = users
        self._connections = connections
        self._bus = bus
        self._clock = clock
        self._limits = limits
        self._rate = rate
        self._instance_id = instance_id

    async def send_direct(
        self, participant: IParticipant, to: object, content: object
    ) -> DirectMessage:
        """Store a direct message to an account (by id or nickname) and hand it
        to every connection of the recipient that takes direct messages."""
        if participant.user_id is None:
            raise InvalidRequest("direct messages need a registered account")
        content = validate_content(content, self._limits.max_content_length)
        name = account_name(to)
        self._rate.consume(nickname_key(participant.nickname))
        recipient = await self._account(name)
        now = int(self._clock.seconds() * 1000)
        message_id, seq = await self._store.insert_direct(
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
        self._bus.publish_control(DirectMessageEvent.of(message, self._instance_id))
        return message

    async def _account(self, to: int | str) -> StoredUser:
        recipient = await (
            self._users.get_user_by_id(to) if isinstance(to, int) else self._users.get_user(to)
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
        *,
        after_seq: object = None,
        before_seq: object = None,
    ) -> tuple[StoredUser, list[DirectMessage]]:
        """The other account, and the direct messages between it and the
        participant's account (both ways), oldest first: the newest
        ``limit`` (default 50), those before the message id ``before``, or
        by the conversation's positions: the first ``limit`` after
        ``after_seq``, the last before ``before_seq``."""
        if participant.user_id is None:
            raise InvalidRequest("direct messages need a registered account")
        name = account_name(other)
        size, older_than, _ = check_page(self._limits, limit, before, None)
        after, earlier = check_positions(after_seq, before_seq)
        account = await self._account(name)
        user_id = participant.user_id
        if after is not None:
            return account, await self._store.direct_messages_after(
                user_id, account.id, after, size
            )
        if earlier is not None:
            return account, await self._store.direct_messages_before(
                user_id, account.id, earlier, size
            )
        messages = await self._store.direct_history(user_id, account.id, size, older_than)
        return account, messages

    async def offline_messages(
        self, participant: IParticipant, limit: int = 500
    ) -> list[DirectMessage]:
        """Direct messages that arrived while the account was away, oldest
        first; they are marked delivered once handed over."""
        if participant.user_id is None:
            raise InvalidRequest("offline messages need a registered account")
        messages: list[DirectMessage] = await self._store.pending_direct(participant.user_id, limit)
        if messages:
            await self._store.mark_delivered([m.id for m in messages])
        return messages

    def deliver(self, event: DirectMessageEvent) -> None:
        """Hand a direct message (from any instance, this one included) to
        this instance's connections of the recipient's account; mark it
        delivered if one took it."""
        message = event.message
        delivered = False
        for target in self._connections.of_account(nickname_key(message.to_nickname)):
            if target.user_id != message.to_user_id:
                continue  # a guest or external-token user sharing the name
            try:
                delivered = target.direct(message) or delivered
            except Exception:
                _log.failure("direct delivery to {nickname} failed", nickname=target.nickname)
        if delivered:
            # Stored first, marked after: a crash in between redelivers it
            # through get_offline rather than losing it.
            self._store.mark_delivered([message.id]).addErrback(
                lambda f: _log.failure("marking a direct message delivered failed", f)
            )
