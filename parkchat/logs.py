"""Structured logs: one JSON object per line, for log collectors.

``twistd`` owns the log observer, so the JSON format is chosen the way twistd
supports: ``twistd --logger parkchat.logs.json_observer parkchat ...`` (which
``--log-format json`` arranges by itself), or, in a ``.tac`` file, the
``ILogObserver`` component of the application (see ``chat.tac``).

Each line holds ``time`` (ISO 8601, UTC), ``level``, ``namespace``, the
formatted ``message``, the event's own scalar fields (``nickname``, ``room``,
``peer`` ...) and, for failures, ``traceback``. Nothing that parkchat logs
carries a password or a token (``tests/test_logs.py`` checks it); the access
log's ``?token=`` is redacted before it becomes an event.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import IO, Any

from twisted.logger import FileLogObserver, ILogObserver, LogEvent, formatEvent

#: Keys parkchat writes itself; an event field of the same name is dropped.
_RESERVED = frozenset({"time", "level", "namespace", "message", "traceback"})


def event_as_json(event: LogEvent) -> str:
    """One log event as a JSON object (no newline)."""
    level = event.get("log_level")
    record: dict[str, Any] = {
        "time": datetime.fromtimestamp(event.get("log_time") or 0, UTC).isoformat(
            timespec="milliseconds"
        ),
        "level": level.name if level is not None else "info",
        "namespace": event.get("log_namespace", ""),
        "message": formatEvent(event),
    }
    for key, value in event.items():
        if key.startswith("log_") or key in _RESERVED:
            continue
        if value is None or isinstance(value, str | int | float | bool):
            record[key] = value
    failure = event.get("log_failure")
    if failure is not None:
        try:
            record["traceback"] = failure.getTraceback()
        except Exception:
            record["traceback"] = repr(failure)
    return json.dumps(record, ensure_ascii=False, default=repr)


def json_file_observer(out: IO[str]) -> ILogObserver:
    """An observer writing one JSON line per event to ``out``."""
    observer: ILogObserver = FileLogObserver(out, lambda event: event_as_json(event) + "\n")
    return observer


def json_observer() -> ILogObserver:
    """The observer factory for ``twistd --logger parkchat.logs.json_observer``:
    JSON lines on standard output."""
    return json_file_observer(sys.stdout)
