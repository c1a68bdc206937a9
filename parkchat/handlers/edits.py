"""Edits and deletions of room messages by their authors (and by
moderators), and the record of edits kept for moderators.

An author may edit or delete a message for ``edit_window`` seconds after
posting it (0: always); a moderator (``--moderators``) any time. An edit is
stored with the text it replaced (``message_edits``), then published as an
``edited`` room event carrying the message's id and seq: it takes no
position of its own and is delivered after the message it changes
(parkchat.handlers.delivery). A deletion goes the way of a moderator's
(``MessageHandler.delete_message``): a ``deleted`` room event.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime

from parkchat.errors import EditWindowPassed, Forbidden, InvalidRequest, NoSuchMessage
from parkchat.handlers.messages import MessageHandler
from parkchat.handlers.moderation import moderation_log
from parkchat.interfaces import IBus, IMessageEditStore, IParticipant
from parkchat.limits import Limits, TokenBucketLimiter
from parkchat.model import (
    EDITED,
    MAX_ID,
    Message,
    MessageEdit,
    Moderators,
    nickname_key,
    validate_content,
    validate_room,
)
from parkchat.recent import RecentMessages

#: ``--edit-window``: seconds an author may edit or delete a message.
EDIT_WINDOW = 900.0


def check_seq(seq: object) -> int:
    if isinstance(seq, bool) or not isinstance(seq, int) or not 0 < seq <= MAX_ID:
        raise InvalidRequest('"seq" must be the room position of a message (1 or more)')
    return seq


class EditHandler:
    """Edits and deletions of one's own room messages (any, for moderators)."""

    def __init__(
        self,
        store: IMessageEditStore,
        messages: MessageHandler,
        recent: RecentMessages | None,
        bus: IBus,
        clock: IReactorTime,
        limits: Limits,
        rate: TokenBucketLimiter,
        moderators: Moderators,
        *,
        edit_window: float = EDIT_WINDOW,
    ) -> None:
        self._store = store
        self._messages = messages
        self._recent = recent
        self._bus = bus
        self._clock = clock
        self._limits = limits
        self._rate = rate
        self._moderators = moderators
        self.edit_window = edit_window

    def _now_ms(self) -> int:
        return int(self._clock.seconds() * 1000)

    async def _own(self, participant: IParticipant, room: object, seq: object) -> Message:
        """The message of ``room`` at ``seq`` if ``participant`` may change
        it now: its author within the window, or a moderator."""
        room_name = validate_room(room)
        position = check_seq(seq)
        self._rate.consume(nickname_key(participant.nickname))
        message = await self._store.room_message(room_name, position)
        if message is None:
            raise NoSuchMessage(f"no message {position} in {room_name}")
        if self._moderators.includes(participant.nickname, participant.user_id):
            return message
        if participant.user_id is None or message.user_id != participant.user_id:
            raise Forbidden("only its author or a moderator may change this message")
        if self.edit_window > 0 and self._now_ms() - message.timestamp_ms > self.edit_window * 1000:
            raise EditWindowPassed(
                f"messages can be changed for {self.edit_window:g} seconds after they are sent"
            )
        return message

    async def edit(
        self, participant: IParticipant, room: object, seq: object, body: object
    ) -> Message:
        """Give a stored room message a new text; fires with the message as
        stored now (``edited_ms`` set) once every member has been sent the
        ``edited`` event. Raises NoSuchMessage, Forbidden,
        EditWindowPassed, or the content errors of a post."""
        content = validate_content(body, self._limits.max_content_length)
        message = await self._own(participant, room, seq)
        if content == message.content:
            return message  # nothing changes: nothing to record or tell
        edited = await self._store.edit_message(
            message.id, content, participant.user_id, participant.nickname, self._now_ms()
        )
        if edited is None:
            raise NoSuchMessage(f"message {message.seq} in {message.room} was deleted")
        if self._recent is not None:
            self._recent.replace(edited)
        if message.user_id is None or message.user_id != participant.user_id:
            moderation_log.info(
                "moderation: {moderator} edited message {id} of {author} in {room}",
                moderator=participant.nickname,
                id=message.id,
                author=message.nickname,
                room=message.room,
                action="edit",
            )
        self._bus.publish(
            edited.room,
            Message(
                room=edited.room,
                nickname=edited.nickname,
                content=edited.content,
                timestamp_ms=edited.timestamp_ms,
                type=EDITED,
                id=edited.id,
                # The edited message's position: delivered after it.
                seq=edited.seq,
                user_id=edited.user_id,
                edited_ms=edited.edited_ms,
            ),
        )
        return edited

    async def delete(self, participant: IParticipant, room: object, seq: object) -> Message:
        """Delete a stored room message (its author within the window, or a
        moderator); fires with the message as it was."""
        message = await self._own(participant, room, seq)
        removed = await self._messages.delete_message(
            message.id, by=participant.nickname, own=message.user_id == participant.user_id
        )
        if removed is None:
            raise NoSuchMessage(f"message {message.seq} in {message.room} was deleted")
        return message

    def edits(
        self, message_id: object, participant: IParticipant | None = None
    ) -> Deferred[list[MessageEdit]]:
        """The recorded edits of a message, oldest first (a Deferred): for
        the admin API (no ``participant``) or a moderator's connection;
        Forbidden for anyone else."""
        if participant is not None and not self._moderators.includes(
            participant.nickname, participant.user_id
        ):
            raise Forbidden("only moderators read the edits of messages")
        if isinstance(message_id, bool) or not isinstance(message_id, int):
            raise InvalidRequest("the message id must be a number")
        if not 0 < message_id <= MAX_ID:
            raise NoSuchMessage(f"no message {message_id}")
        return self._store.message_edits(message_id)
