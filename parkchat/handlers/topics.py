"""Room topics: set by a member (by a moderator only, with
``--topic-moderators-only``), stored, and announced as a ``topic`` room
event on every instance. Each instance keeps the topic of its rooms on the
room itself (``Room.topic``: read with the room's cursor, then kept by the
topic events delivered there), so that a join reports the topic the
member's live events continue from."""

from __future__ import annotations

from twisted.internet.interfaces import IReactorTime

from parkchat.errors import Forbidden, NotInRoom
from parkchat.handlers.rooms import RoomHandler
from parkchat.interfaces import IBus, IParticipant, IRoomTopicStore
from parkchat.limits import TokenBucketLimiter
from parkchat.model import (
    TOPIC,
    Message,
    Moderators,
    RoomTopic,
    nickname_key,
    validate_room,
    validate_topic,
)


class TopicHandler:
    """Room topics."""

    def __init__(
        self,
        store: IRoomTopicStore,
        rooms: RoomHandler,
        bus: IBus,
        clock: IReactorTime,
        rate: TokenBucketLimiter,
        moderators: Moderators,
        *,
        moderators_only: bool = False,
    ) -> None:
        self._store = store
        self._rooms = rooms.by_name
        self._bus = bus
        self._clock = clock
        self._rate = rate
        self._moderators = moderators
        self.moderators_only = moderators_only

    async def set_topic(
        self, participant: IParticipant, room: object, text: object
    ) -> RoomTopic | None:
        """Set (or, with an empty text, clear) the topic of a room the
        participant is in; fires with the new topic (None: cleared) once
        stored and announced."""
        room_name = validate_room(room)
        topic_text = validate_topic(text)
        local = self._rooms.get(room_name)
        if local is None or participant not in local:
            raise NotInRoom(f"not in room {room_name!r}")
        if self.moderators_only and not self._moderators.includes(
            participant.nickname, participant.user_id
        ):
            raise Forbidden("only moderators set topics here")
        self._rate.consume(nickname_key(participant.nickname))
        topic = RoomTopic(topic_text, participant.nickname, int(self._clock.seconds() * 1000))
        await self._store.set_room_topic(room_name, topic)
        self._bus.publish(
            room_name,
            Message(
                room=room_name,
                nickname=topic.nickname,
                content=topic.text,
                timestamp_ms=topic.set_ms,
                type=TOPIC,
                user_id=participant.user_id,
            ),
        )
        return topic if topic.text else None

    async def topic(self, room: object) -> RoomTopic | None:
        """A room's topic: as this instance's members have it, or stored."""
        room_name = validate_room(room)
        local = self._rooms.get(room_name)
        if local is not None and local.cursor >= 0:
            topic: RoomTopic | None = local.topic
            return topic
        return await self._store.room_topic(room_name)
