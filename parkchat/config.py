"""Settings: one table of every option, and the merge of command line,
environment and TOML file (CLI > env > file > default).

``tap.Options`` builds its command line from ``SETTINGS`` and
``docs/configuration.md`` is checked against it by a test, so an option
cannot exist in one place and be missing from another.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

ENV_PREFIX = "PARKCHAT_"


class ConfigError(ValueError):
    """A setting has a bad value; the message names it and says why."""


# -- converters: take a str (CLI, env) or a TOML value, return the value -----


def _int(minimum: int, maximum: int | None = None) -> Callable[[Any], int]:
    def convert(value: Any) -> int:
        if isinstance(value, bool):
            raise ValueError("expected a whole number")
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise ValueError(f"expected a whole number, got {value!r}") from None
        if number < minimum or (maximum is not None and number > maximum):
            upper = f" and at most {maximum}" if maximum is not None else ""
            raise ValueError(f"must be at least {minimum}{upper}, got {number}")
        return number

    return convert


def _float(minimum: float, *, exclusive: bool = False) -> Callable[[Any], float]:
    def convert(value: Any) -> float:
        if isinstance(value, bool):
            raise ValueError("expected a number")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"expected a number, got {value!r}") from None
        if number != number or number in (float("inf"), float("-inf")):
            raise ValueError("expected a finite number")
        if number < minimum or (exclusive and number == minimum):
            relation = "more than" if exclusive else "at least"
            raise ValueError(f"must be {relation} {minimum:g}, got {number:g}")
        return number

    return convert


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected yes or no, got {value!r}")


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError("expected a non-empty string")
    return value


def endpoint_description(value: Any) -> str:
    """A Twisted server endpoint string; a bare port number means ``tcp:PORT``."""
    text = str(value).strip() if not isinstance(value, bool) else ""
    if not text:
        raise ValueError("expected a port number or an endpoint string like tcp:8080")
    if text.isdigit():
        port = int(text)
        if not 0 <= port <= 65535:
            raise ValueError(f"port {port} is out of range")
        return f"tcp:{port}"
    if ":" not in text:
        raise ValueError(f"{text!r} is neither a port number nor an endpoint string")
    return text


@dataclass(frozen=True)
class Setting:
    name: str
    default: Any
    convert: Callable[[Any], Any]
    help: str
    metavar: str = "VALUE"
    repeatable: bool = False

    @property
    def option(self) -> str:
        return self.name.replace("_", "-")

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "port",
        ("tcp:8080",),
        endpoint_description,
        "HTTP + WebSocket listener: a port number or a Twisted endpoint string "
        "(tcp:8080:interface=127.0.0.1, ssl:8443:privateKey=key.pem, "
        "systemd:domain=INET:index=0). Repeatable.",
        "ENDPOINT",
        repeatable=True,
    ),
    Setting(
        "db",
        "chat.db",
        _text,
        "SQLite database file, or :memory: for a throw-away in-memory store.",
        "PATH",
    ),
    Setting("bcrypt_rounds", 12, _int(4, 31), "bcrypt cost for new passwords (4-31).", "N"),
    Setting(
        "bcrypt_threads",
        2,
        _int(1, 64),
        "Threads that run bcrypt, apart from the database threads.",
        "N",
    ),
    Setting(
        "rate_limit",
        10.0,
        _float(0),
        "Messages per second per user (token bucket); 0 turns the limit off.",
        "PER_S",
    ),
    Setting(
        "rate_burst",
        20.0,
        _float(1),
        "Messages a user may send at once before the rate limit applies.",
        "N",
    ),
    Setting(
        "max_connections_per_user", 20, _int(0), "Open connections per account; 0 = no limit.", "N"
    ),
    Setting(
        "max_connections_per_ip",
        1000,
        _int(0),
        "Open connections per client address; 0 = no limit.",
        "N",
    ),
    Setting(
        "max_content_length",
        4000,
        _int(1, 1_000_000),
        "Longest message content, in characters.",
        "CHARS",
    ),
    Setting(
        "max_frame_size",
        65536,
        _int(1024, 16 * 1024 * 1024),
        "Largest WebSocket message in bytes; larger ones close with 1009.",
        "BYTES",
    ),
    Setting(
        "ping_interval",
        30.0,
        _float(0),
        "Seconds between WebSocket heartbeat pings; 0 turns them off.",
        "SECONDS",
    ),
    Setting(
        "ping_timeout",
        20.0,
        _float(0, exclusive=True),
        "Seconds to wait for a pong before dropping the connection.",
        "SECONDS",
    ),
    Setting(
        "auth_cache_ttl",
        300.0,
        _float(0),
        "Seconds a verified password is remembered (no plaintext kept); 0 = off.",
        "SECONDS",
    ),
    Setting("auth_cache_size", 10000, _int(0), "Most verified passwords remembered at once.", "N"),
    Setting("access_log", True, _bool, "Log every HTTP request (yes/no).", "yes|no"),
)

SETTINGS_BY_NAME = {s.name: s for s in SETTINGS}


@dataclass(frozen=True)
class Settings:
    """The resolved configuration; tests build it directly."""

    port: tuple[str, ...] = ("tcp:8080",)
    db: str = "chat.db"
    bcrypt_rounds: int = 12
    bcrypt_threads: int = 2
    rate_limit: float = 10.0
    rate_burst: float = 20.0
    max_connections_per_user: int = 20
    max_connections_per_ip: int = 1000
    max_content_length: int = 4000
    max_frame_size: int = 65536
    ping_interval: float = 30.0
    ping_timeout: float = 20.0
    auth_cache_ttl: float = 300.0
    auth_cache_size: int = 10000
    access_log: bool = True
    #: Where each value came from ("default", "file", "env", "cli"), for --help-like reports.
    sources: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)


def _convert(setting: Setting, raw: Any, origin: str) -> Any:
    try:
        if setting.repeatable:
            items: Sequence[Any]
            if isinstance(raw, str):
                items = [part for part in (p.strip() for p in raw.split(",")) if part]
            elif isinstance(raw, list | tuple):
                items = raw
            else:
                raise ValueError("expected a list")
            if not items:
                raise ValueError("expected at least one value")
            return tuple(setting.convert(item) for item in items)
        return setting.convert(raw)
    except ValueError as e:
        raise ConfigError(f"{origin}: {e}") from None


def read_toml(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {path} is not valid TOML: {e}") from None
    data = data.get("parkchat", data) if isinstance(data.get("parkchat"), dict) else data
    unknown = sorted(set(data) - set(SETTINGS_BY_NAME))
    if unknown:
        raise ConfigError(f"config file {path}: unknown setting(s) {', '.join(unknown)}")
    return data


def resolve(
    cli: Mapping[str, Any],
    environ: Mapping[str, str] | None = None,
    config_path: str | None = None,
) -> Settings:
    """Merge the layers: ``cli`` holds only options given on the command line."""
    environ = os.environ if environ is None else environ
    path = config_path or environ.get(ENV_PREFIX + "CONFIG") or None
    file_values = read_toml(path) if path else {}
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for setting in SETTINGS:
        if setting.name in cli and cli[setting.name] is not None:
            raw, origin, source = cli[setting.name], f"--{setting.option}", "cli"
        elif setting.env in environ:
            raw, origin, source = environ[setting.env], setting.env, "env"
        elif setting.name in file_values:
            raw, origin, source = file_values[setting.name], f"{path}: {setting.name}", "file"
        else:
            values[setting.name] = setting.default
            sources[setting.name] = "default"
            continue
        values[setting.name] = _convert(setting, raw, origin)
        sources[setting.name] = source
    return Settings(**values, sources=sources)


assert {f.name for f in fields(Settings)} - {"sources"} == set(SETTINGS_BY_NAME), (
    "Settings and SETTINGS disagree"
)
