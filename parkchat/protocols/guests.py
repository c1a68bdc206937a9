"""Admitting a guest name on the dialects, in one place.

GarinChat takes a name from its ``join`` frame and golang-chat from every
message, with no account behind either. Such a name goes through the checks
the line protocol makes of its guests (``StreamSession``): parkchat's naming
rules, no registered account's name (a guest must never speak as an
account), and no one of that name already in the room. Every dialect calls
``admit_guest``, so a change to what a guest may be called happens here for
all of them.
"""

from __future__ import annotations

from parkchat.errors import AuthenticationFailed, InvalidRequest
from parkchat.interfaces import IChatService
from parkchat.model import validate_nickname


async def admit_guest(
    service: IChatService, name: object, room: str, *, allow_guests: bool = True
) -> str:
    """``name`` as a guest may use it in ``room``, else a ChatError saying
    why (InvalidName, AuthenticationFailed, InvalidRequest). With
    ``allow_guests`` false (``--allow-guests no``) no guest is admitted.

    The room check comes after the account lookup (which waits for the
    store), so that it sees the room as it is when the caller joins: a caller
    connects and joins in the same turn as this returns.
    """
    if not allow_guests:
        raise AuthenticationFailed("guests are not allowed here")
    nickname = validate_nickname(name)
    if await service.account_exists(nickname):
        raise AuthenticationFailed(f"{nickname} is a registered account's name")
    if service.name_in_room(room, nickname):
        raise InvalidRequest(f"the name {nickname} is already taken in {room}")
    return nickname
