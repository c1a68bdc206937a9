"""The checks a guest's name passes, on every surface that admits guests.

Written once so that the naming rules can change in one place: today they
are the line protocol's (``stream.py``): a valid nickname
(``model.validate_nickname``), guests allowed at all, never the name of a
registered account (``IChatService.account_exists``), and not a name
someone already has in the room being joined (``IChatService.name_in_room``).
"""

from __future__ import annotations

from parkchat.errors import AccountExists, AuthenticationFailed
from parkchat.interfaces import IChatService
from parkchat.model import validate_nickname


async def guest_name(service: IChatService, name: object, *, allow_guests: bool) -> str:
    """``name`` if a guest may use it (InvalidName, AuthenticationFailed when
    guests are not allowed, AccountExists for a registered account's name)."""
    nickname = validate_nickname(name)
    if not allow_guests:
        raise AuthenticationFailed("guests are not allowed here: log in with an account")
    if await service.account_exists(nickname):
        raise AccountExists(f"{nickname} is a registered account: log in with its password")
    return nickname


def guest_may_join(service: IChatService, room: str, nickname: str) -> bool:
    """Whether a guest called ``nickname`` may join ``room``: nobody of that
    name (folded) is in it. Accounts may be in a room several times."""
    return not service.name_in_room(room, nickname)
