"""The checks a guest's name passes, on every surface that admits guests.

Written once so that the naming rules can change in one place. Today they
are the line protocol's (``StreamSession``): guests allowed at all
(``--allow-guests``), a valid nickname (``model.validate_nickname``: no
invisible or direction-changing characters), never the name of a registered
account nor one that looks like it (``IChatService.account_exists``, by
``model.name_skeleton``: a guest must never pass as an account), and not a
name someone already has, or one that looks like it, in the room being
joined (``IChatService.name_in_room``).

A guest's name is only held while it is connected: an account registered
under it (or under a name that looks like it) later ends the guest's
connections on every instance (``SessionHandler.claim_name``).

IRC takes a guest's name at registration and checks the room at each JOIN
(``guest_name``, ``guest_may_join``); the dialects take name and room
together (``admit_guest``). Each surface renders the refusal its own way,
so the exceptions say which check failed.
"""

from __future__ import annotations

from parkchat.errors import AccountExists, AuthenticationFailed, InvalidRequest
from parkchat.interfaces import IChatService
from parkchat.model import validate_nickname


async def guest_name(service: IChatService, name: object, *, allow_guests: bool) -> str:
    """``name`` if a guest may use it: AuthenticationFailed when guests are
    not allowed, InvalidName for a name parkchat's rules refuse,
    AccountExists for a registered account's name."""
    if not allow_guests:
        raise AuthenticationFailed("guests are not allowed here")
    nickname = validate_nickname(name)
    if await service.account_exists(nickname):
        raise AccountExists(f"{nickname} is a registered account's name")
    return nickname


def guest_may_join(service: IChatService, room: str, nickname: str) -> bool:
    """Whether a guest called ``nickname`` may join ``room``: nobody of that
    name, nor of one that looks like it, is in it. Accounts may be in a room
    several times."""
    return not service.name_in_room(room, nickname)


async def admit_guest(
    service: IChatService, name: object, room: str, *, allow_guests: bool = True
) -> str:
    """``name`` as a guest may use it in ``room`` (``guest_name``, then
    InvalidRequest if the name is taken there).

    The room check comes after the account lookup (which waits for the
    store), so that it sees the room as it is when the caller joins: a caller
    connects and joins in the same turn as this returns.
    """
    nickname = await guest_name(service, name, allow_guests=allow_guests)
    if not guest_may_join(service, room, nickname):
        raise InvalidRequest(f"the name {nickname} is already taken in {room}")
    return nickname
