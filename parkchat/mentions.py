"""Mentions in room messages: ``@name``, ``@room`` and ``@here``; pure, no I/O.

A message is parsed when it is posted, and only when its body contains an
``@`` (most do not: the posting path pays one ``in`` for them). A name is
a mention if it is a member of the room now (on any instance) or a
registered account; the first is known when posting, the second only to
the store, which resolves the rest in the transaction that stores the
message (``IRoomMessageStore.insert_messages``). Until then a name that is
not a member is a *candidate*, marked with ``UNRESOLVED`` in front.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Final

from parkchat.model import nickname_key

#: Everyone who has joined the room / everyone in it now.
ROOM: Final = "@room"
HERE: Final = "@here"
SPECIAL: Final = {"room": ROOM, "here": HERE}

#: In front of a name the store must still find among the accounts.
UNRESOLVED: Final = "?"

#: Names looked at per message: a message listing a hundred names is not a
#: hundred notifications.
MAX_MENTIONS: Final = 20

# "@" not inside a word or an address (bob@example.org), then a nickname
# (parkchat.model.validate_nickname's characters).
_MENTION = re.compile(r"(?<![\w@.\-])@([^\W][\w.\-]*)")


def parse(content: str) -> list[str]:
    """The names after an ``@`` in ``content``, in order, each once
    (compared folded); trailing dots and hyphens are punctuation
    (``@alice.`` ends a sentence). At most ``MAX_MENTIONS``."""
    names: list[str] = []
    seen: set[str] = set()
    for match in _MENTION.finditer(content):
        name = match.group(1).rstrip(".-")
        key = nickname_key(name)
        if not name or key in seen:
            continue
        seen.add(key)
        names.append(name)
        if len(names) == MAX_MENTIONS:
            break
    return names


def candidates(content: str, member: Callable[[str], str | None]) -> tuple[str, ...]:
    """What ``Message.mentions`` holds before storing: ``@room``/``@here``,
    the nickname of each name that ``member`` (folded name -> nickname or
    None) finds in the room, and each other name as a candidate
    (``UNRESOLVED`` + name)."""
    found: list[str] = []
    for name in parse(content):
        key = nickname_key(name)
        special = SPECIAL.get(key)
        if special is not None:
            found.append(special)
            continue
        nickname = member(key)
        found.append(nickname if nickname is not None else UNRESOLVED + name)
    return tuple(found)


def resolve(
    mentions: Iterable[str], accounts: dict[str, tuple[int, str]]
) -> list[tuple[int | None, str]]:
    """``(user_id, name)`` of each mention: an account's (``accounts``:
    folded nickname -> (id, nickname)) with its id, a special or a guest
    member with None; candidates that are no account are dropped. Sorted by
    name (specials first), as history reads them back."""
    resolved: dict[str, tuple[int | None, str]] = {}
    for mention in mentions:
        if mention in (ROOM, HERE):
            resolved[mention] = (None, mention)
            continue
        candidate = mention.startswith(UNRESOLVED)
        name = mention[1:] if candidate else mention
        account = accounts.get(nickname_key(name))
        if account is not None:
            resolved[account[1]] = account
        elif not candidate:
            resolved[name] = (None, name)  # a guest in the room
    return [resolved[name] for name in sorted(resolved)]


def names_to_look_up(mentions: Iterable[str]) -> list[str]:
    """The folded names of ``mentions`` to look for among the accounts."""
    return [
        nickname_key(m[1:] if m.startswith(UNRESOLVED) else m)
        for m in mentions
        if m not in (ROOM, HERE)
    ]
