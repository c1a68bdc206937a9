"""Starting from a seed's own configuration (``--seed-config SEED[:PATH]``).

An operator replacing one of the Go servers parkchat grew from can keep the
environment and files that server read. Each is read only when asked for by
name, since the variables are generic (``PORT``, ``DB_URL``...):

* ``garinchat[:PATH]`` (seed 002): ``ALLOWED_ORIGINS``, ``JWT_DECODE_SECRET``
  and ``PORT`` from the environment, else from the dotenv file PATH (default
  ``.env`` in the working directory, skipped if missing, as the seed does).
  All three are required, as the seed requires them. They become
  ``--garinchat-origins``, ``--garinchat-secret`` and ``--garinchat PORT``.
* ``golang-chat[:PATH]`` (seed 003): the JSON file PATH (default
  ``config/config.json``, required) with ``port`` and ``hostName``, and
  ``PORT`` from the environment, which wins: ``--golang-chat
  tcp:PORT:interface=HOST``, or ``tcp:PORT`` (all interfaces) with ``PORT``
  or an empty ``hostName``. ``logfilePath`` is not used (twistd's
  ``--logfile`` is).
* ``lildengzi[:PATH]`` (seed 004): ``DB_URL`` (required), ``REDIS_ADDR``
  (default ``localhost:6379``), ``INSTANCE_ID`` and ``JWT_SECRET`` from the
  environment, else from the dotenv file PATH if given. They become ``--db``,
  ``--redis redis://REDIS_ADDR/0`` and ``--lildengzi-secret``; the seed's
  default secret ``dev-secret-change-me`` is refused. ``INSTANCE_ID`` is not
  needed: parkchat names its instances itself. The seed's port is not
  configurable (8080): give ``--lildengzi`` for its listener.

What the command line, ``PARKCHAT_*`` variables or the TOML file set wins
over what a seed's configuration says (``parkchat.config.resolve``).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

SEEDS = ("garinchat", "golang-chat", "lildengzi")

GARINCHAT_DOTENV = ".env"
GOLANG_CHAT_CONFIG = os.path.join("config", "config.json")
LILDENGZI_DEFAULT_REDIS = "localhost:6379"


class SeedConfigError(ValueError):
    """A seed's configuration is missing something or cannot be read."""


@dataclass(frozen=True)
class SeedValue:
    """A parkchat setting's value taken from a seed's configuration."""

    #: Raw, as the environment or a file would give it (the setting converts it).
    raw: Any
    #: Where it came from, for error messages: ``--seed-config garinchat: PORT``.
    origin: str


def parse_seed_config(value: object) -> str:
    """A ``--seed-config`` value: ``SEED`` or ``SEED:PATH``."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"expected one of {', '.join(SEEDS)} (optionally :PATH)")
    text = value.strip()
    name = text.partition(":")[0]
    if name not in SEEDS:
        raise ValueError(f"unknown seed {name!r}: expected one of {', '.join(SEEDS)}")
    return text


_DOTENV_LINE = re.compile(r"\A\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_.]*)\s*=\s*(.*)\Z")


def read_dotenv(path: str) -> dict[str, str]:
    """``KEY=VALUE`` lines of a dotenv file as godotenv reads the common
    cases: ``export`` prefixes, ``#`` comments, single quotes (literal),
    double quotes (with ``\\n`` escapes), unquoted values ending at `` #``."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise SeedConfigError(f"cannot read {path}: {e.strerror}") from None
    values: dict[str, str] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _DOTENV_LINE.match(line)
        if match is None:
            raise SeedConfigError(f"{path}:{number}: expected KEY=VALUE")
        key, value = match.group(1), match.group(2).strip()
        quoted = _QUOTED.match(value)
        if quoted is not None and quoted.group(1) is not None:
            value = quoted.group(1)  # single quotes: literal
        elif quoted is not None:
            value = re.sub(r"\\(.)", _unescape, quoted.group(2))
        else:
            value = re.split(r"\s+#", value, maxsplit=1)[0].strip()
        values[key] = value
    return values


#: A quoted value, and whatever follows it (a comment): 'literal' or "escaped".
_QUOTED = re.compile(r"'([^']*)'|\"((?:[^\"\\]|\\.)*)\"")


def _unescape(match: re.Match[str]) -> str:
    return "\n" if match.group(1) == "n" else match.group(1)


def _lookup(
    environ: Mapping[str, str], dotenv: Mapping[str, str], name: str
) -> tuple[str, str] | None:
    """A variable from the environment, else the dotenv file (godotenv never
    overrides the environment); empty counts as unset, as in the seeds."""
    if environ.get(name):
        return environ[name], name
    if dotenv.get(name):
        return dotenv[name], f"{name} (dotenv file)"
    return None


def _garinchat(path: str | None, environ: Mapping[str, str]) -> dict[str, SeedValue]:
    dotenv_path = path or GARINCHAT_DOTENV
    dotenv = read_dotenv(dotenv_path) if path or os.path.exists(dotenv_path) else {}
    found: dict[str, SeedValue] = {}
    for variable, setting in (
        ("ALLOWED_ORIGINS", "garinchat_origins"),
        ("JWT_DECODE_SECRET", "garinchat_secret"),
        ("PORT", "garinchat"),
    ):
        hit = _lookup(environ, dotenv, variable)
        if hit is None:
            raise SeedConfigError(
                f"garinchat: {variable} is not set in the environment or {dotenv_path} "
                "(GarinChat-Server requires it)"
            )
        raw: Any = hit[0]
        if variable == "ALLOWED_ORIGINS":
            raw = [origin for origin in (o.strip() for o in raw.split(",")) if origin]
        found[setting] = SeedValue(raw, f"--seed-config garinchat: {hit[1]}")
    return found


def _golang_chat(path: str | None, environ: Mapping[str, str]) -> dict[str, SeedValue]:
    config_path = path or GOLANG_CHAT_CONFIG
    try:
        with open(config_path, encoding="utf-8") as f:
            config = json.load(f)
    except OSError as e:
        raise SeedConfigError(
            f"golang-chat: cannot read {config_path}: {e.strerror} (golang-chat requires it)"
        ) from None
    except ValueError as e:
        raise SeedConfigError(f"golang-chat: {config_path} is not valid JSON: {e}") from None
    if not isinstance(config, dict):
        raise SeedConfigError(f"golang-chat: {config_path} must hold a JSON object")
    # Go matches the keys case-insensitively.
    folded = {str(key).lower(): value for key, value in config.items()}
    origin = f"--seed-config golang-chat: {config_path}"
    if environ.get("PORT"):
        return {"golang_chat": SeedValue(environ["PORT"], "--seed-config golang-chat: PORT")}
    port, host = folded.get("port"), folded.get("hostname") or ""
    if isinstance(port, bool) or not isinstance(port, int) or not isinstance(host, str):
        raise SeedConfigError(f"golang-chat: {config_path}: expected a numeric port and a hostName")
    endpoint = f"tcp:{port}:interface={host}" if host else str(port)
    return {"golang_chat": SeedValue(endpoint, origin)}


def _lildengzi(path: str | None, environ: Mapping[str, str]) -> dict[str, SeedValue]:
    dotenv = read_dotenv(path) if path else {}
    found: dict[str, SeedValue] = {}
    db = _lookup(environ, dotenv, "DB_URL")
    if db is not None:
        found["db"] = SeedValue(db[0], f"--seed-config lildengzi: {db[1]}")
    redis = _lookup(environ, dotenv, "REDIS_ADDR")
    address, where = redis if redis is not None else (LILDENGZI_DEFAULT_REDIS, "REDIS_ADDR default")
    found["redis"] = SeedValue(f"redis://{address}/0", f"--seed-config lildengzi: {where}")
    secret = _lookup(environ, dotenv, "JWT_SECRET")
    if secret is not None:
        found["lildengzi_secret"] = SeedValue(secret[0], f"--seed-config lildengzi: {secret[1]}")
    else:
        # The seed falls back to its well-known default: refuse to start
        # with it rather than sign tokens anyone can forge.
        found["lildengzi_secret"] = SeedValue(
            "dev-secret-change-me",
            "--seed-config lildengzi: JWT_SECRET (unset; the seed's default)",
        )
    return found


#: Settings a seed's server cannot run without; missing ones are an error
#: unless parkchat's own configuration sets them.
REQUIRED = {"lildengzi": {"db": "DB_URL"}}

_LOADERS = {"garinchat": _garinchat, "golang-chat": _golang_chat, "lildengzi": _lildengzi}


def seed_settings(
    specs: tuple[str, ...], environ: Mapping[str, str], explicit: frozenset[str] = frozenset()
) -> dict[str, SeedValue]:
    """The parkchat settings the seeds named by ``specs`` configure.

    ``explicit`` names the settings parkchat's own configuration sets: those
    are not required of the seed's (they win over it anyway).
    """
    found: dict[str, SeedValue] = {}
    for spec in specs:
        name, _, path = spec.partition(":")
        values = _LOADERS[name](path or None, environ)
        for setting, variable in REQUIRED.get(name, {}).items():
            if setting not in values and setting not in explicit:
                raise SeedConfigError(
                    f"{name}: {variable} is not set (the seed requires it; or give "
                    f"--{setting.replace('_', '-')})"
                )
        found.update(values)
    return found
