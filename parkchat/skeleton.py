"""Confusable skeletons (Unicode Technical Standard #39, section 4): two
names that look alike have the same skeleton, e.g. ``alice`` and ``alice``
spelt with a Cyrillic a (U+0430), ``bob`` and ``bob`` with a Greek omicron
(U+03BF), ``rn`` and ``m``.

The data is Unicode's ``confusables.txt`` as the maintained
``confusable-homoglyphs`` package ships it (``confusables.json``), not a
table of our own. That file keeps each line of ``confusables.txt`` in both
directions (source -> prototype and prototype -> source) and drops which was
which; the direction is read back here: a character listing exactly one
other is a source mapped to it, one listing several is a prototype. Where
two characters list only each other (a prototype with one source), the
lower code point is taken as their common representative: a skeleton is only
ever compared with another, so any one representative per class does.
``confusables.txt`` writes right-to-left characters between two U+200E
marks for display; the marks are dropped.

Pure: no I/O after the table is built (once, on first use).
"""

from __future__ import annotations

import functools
import json
import unicodedata
from importlib import resources

#: Bounds the closure of the table (prototypes are fixed points in Unicode's
#: data; a chosen representative may take one more step).
_CLOSURE_ROUNDS = 4
_LRM = "\u200e"


#: The package whose data file is read (none of its code is used).
DATA_PACKAGE = "confusable_homoglyphs"


@functools.cache
def _table() -> dict[str, str]:
    """Each confusable character -> the string it looks like (its prototype)."""
    data = resources.files(DATA_PACKAGE).joinpath("confusables.json")
    with data.open(encoding="utf-8") as f:
        raw: dict[str, list[dict[str, str]]] = json.load(f)
    entries = {k.replace(_LRM, ""): [e["c"].replace(_LRM, "") for e in v] for k, v in raw.items()}
    table: dict[str, str] = {}
    for char, others in entries.items():
        if len(char) != 1 or len(others) != 1:
            continue  # a prototype of several (or a sequence): stays itself
        target = others[0]
        if target == char or not target:
            continue
        if len(target) == 1 and entries.get(target) == [char]:
            # A prototype with a single source: which is which is lost.
            low, high = sorted((char, target))
            table[high] = low
        else:
            table[char] = target
    for _ in range(_CLOSURE_ROUNDS):
        changed = False
        for char, target in table.items():
            mapped = "".join(table.get(c, c) for c in target)
            if mapped != target:
                table[char] = mapped
                changed = True
        if not changed:
            break
    return table


def load_confusables() -> None:
    """Read the data now (start-up), not on the first name checked."""
    _table()


def skeleton(text: str) -> str:
    """UTS #39 ``skeleton(X)``: NFD, each character replaced by its
    prototype, default-ignorable format characters (Cf: zero-width, bidi
    controls) removed, NFD again."""
    table = _table()
    decomposed = unicodedata.normalize("NFD", text)
    mapped = "".join(table.get(c, c) for c in decomposed if unicodedata.category(c) != "Cf")
    return unicodedata.normalize("NFD", mapped)
