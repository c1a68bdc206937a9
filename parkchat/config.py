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
from urllib.parse import unquote, urlsplit

from parkchat.errors import ChatError
from parkchat.model import validate_nickname, validate_room
from parkchat.proxies import parse_network
from parkchat.seeds import SeedConfigError, parse_seed_config, seed_settings
from parkchat.store import is_postgres_url

ENV_PREFIX = "PARKCHAT_"


class ConfigError(ValueError):
    """A setting has a bad value; the message names it and says why."""


# -- converters: take a str (CLI, env) or a TOML value, return the value -----


def _int(minimum: int, maximum: int | None = None) -> Callable[[Any], int]:
    def convert(value: Any) -> int:
        # int() would truncate a TOML float (1.5 -> 1) and accept True.
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError(f"expected a whole number, got {value!r}")
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
        except (TypeError, ValueError, OverflowError):  # OverflowError: a huge TOML integer
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


def _any_text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("expected a string")
    return value


#: Words that mark a value as a placeholder from an example file, looked
#: for in the value folded to lower-case letters and digits (so that
#: ``REPLACE-WITH-...``, ``replace_with`` and ``ReplaceWith`` all match).
PLACEHOLDER_WORDS = (
    "replacewith",
    "replaceme",
    "replacethis",
    "changeme",
    "changethis",
    "example",
    "placeholder",
    "yoursecret",
    "yourtoken",
    "yourpassword",
    "insertsecret",
    "notasecret",
    "dummysecret",
    "xxxxxxxx",
)
#: Whole values that are placeholders, however long the operator made them.
PLACEHOLDER_VALUES = frozenset(
    ("secret", "password", "token", "admin", "admintoken", "test", "default", "changeit")
)


def placeholder(value: str) -> bool:
    """Whether ``value`` is an obvious placeholder (``REPLACE-WITH-...``,
    ``changeme``, ``CHANGE_ME``, ``example``, ``secret``, ``xxxxxxxx``...)
    rather than a secret: example files ship such values, and a deployment
    that forgot to replace one must not start with a secret anyone can read
    in the examples."""
    folded = "".join(c for c in value.lower() if c.isalnum())
    if folded in PLACEHOLDER_VALUES:
        return True
    if len(set(folded)) == 1 and len(folded) >= 8:
        return True  # one character repeated: "xxxxxxxxxxxx", "0000000000"
    return any(word in folded for word in PLACEHOLDER_WORDS)


def _refuse_placeholder(value: str) -> str:
    if value and placeholder(value):
        raise ValueError(
            "looks like a placeholder from an example, not a secret: generate one, "
            "e.g. with: openssl rand -base64 48"
        )
    return value


def _secret(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("expected a string")
    if value and len(value.encode("utf-8")) < 32:
        raise ValueError("secrets must be at least 32 bytes long")
    return _refuse_placeholder(value)


def _any_secret(value: Any) -> str:
    """A secret of any length: a seed's, which its clients' tokens are
    signed with already (parkchat warns at start when it is short)."""
    if not isinstance(value, str):
        raise ValueError("expected a string")
    return value


#: lildengzi's default JWT secret: public, so tokens signed with it prove nothing.
LILDENGZI_DEFAULT_SECRET = "dev-secret-change-me"


def _lildengzi_secret(value: Any) -> str:
    text = _any_secret(value)
    if text == LILDENGZI_DEFAULT_SECRET:
        raise ValueError(
            f"{LILDENGZI_DEFAULT_SECRET!r} is lildengzi's published default secret: anyone "
            "could sign tokens with it; set JWT_SECRET (or --lildengzi-secret) to a secret "
            "of your own"
        )
    return _refuse_placeholder(text)


def _seed_secret(value: Any) -> str:
    """A seed's secret (any length), but not an example's placeholder."""
    return _refuse_placeholder(_any_secret(value))


def _db(value: Any) -> str:
    """``--db``: a path, ``:memory:`` or a PostgreSQL URL whose password is
    not an example's placeholder."""
    text = _text(value)
    if is_postgres_url(text):
        try:
            password = urlsplit(text).password
        except ValueError:
            password = None
        if password and placeholder(unquote(password)):
            raise ValueError(
                "the PostgreSQL URL's password looks like a placeholder from an example"
            )
    return text


def _room(value: Any) -> str:
    try:
        return validate_room(value)
    except ChatError as e:
        raise ValueError(e.message) from None


def _nickname(value: Any) -> str:
    try:
        return validate_nickname(value)
    except ChatError as e:
        raise ValueError(e.message) from None


def _origin(value: Any) -> str:
    text = str(value).strip().rstrip("/").lower()
    if text != "*" and "://" not in text:
        raise ValueError(f"{value!r} is not an origin like https://chat.example.com or *")
    return text


def _redis_url(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("expected a redis:// URL")
    if value and (not value.startswith("redis://") or len(value) <= len("redis://")):
        raise ValueError(f"{value!r} is not a redis://host:port/db URL")
    try:
        password = urlsplit(value).password if value else None
    except ValueError:
        password = None
    if password and placeholder(unquote(password)):
        raise ValueError("the Redis URL's password looks like a placeholder from an example")
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


def _server_name(value: Any) -> str:
    """An IRC server name: one word of letters, digits, ``.`` and ``-``
    (it stands in every reply's prefix), with a dot so that no client takes
    it for a nickname."""
    text = str(value).strip()
    if not text or "." not in text or not all(c.isalnum() or c in ".-" for c in text):
        raise ValueError(f"{value!r} is not a server name like irc.example.com")
    return text


def metrics_setting(value: Any) -> str:
    """``yes`` (on the HTTP port), ``no``, or an endpoint for a listener of its own."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    text = str(value).strip()
    if text.lower() in ("1", "true", "yes", "on"):
        return "yes"
    if text.lower() in ("0", "false", "no", "off"):
        return "no"
    try:
        return endpoint_description(text)
    except ValueError:
        raise ValueError(f"expected yes, no or an endpoint like tcp:9100, got {value!r}") from None


def _log_format(value: Any) -> str:
    text = str(value).strip().lower()
    if text not in ("text", "json"):
        raise ValueError(f"expected text or json, got {value!r}")
    return text


@dataclass(frozen=True)
class Setting:
    name: str
    default: Any
    convert: Callable[[Any], Any]
    help: str
    metavar: str = "VALUE"
    repeatable: bool = False
    #: Also settable from a file (``--x-file``, ``PARKCHAT_X_FILE``, TOML
    #: ``x_file``): secrets, for Docker and Kubernetes secret files.
    file_form: bool = False

    @property
    def option(self) -> str:
        return self.name.replace("_", "-")

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()

    @property
    def file_name(self) -> str:
        """The name of the file form (TOML key, ``cli`` key)."""
        return self.name + "_file"

    @property
    def file_option(self) -> str:
        return self.option + "-file"

    @property
    def file_env(self) -> str:
        return self.env + "_FILE"


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
        "tcp",
        (),
        endpoint_description,
        "Plain-TCP line-protocol listener (MaChat clients, nc, telnet), e.g. "
        "tcp:8989:interface=127.0.0.1. Repeatable; none by default.",
        "ENDPOINT",
        repeatable=True,
    ),
    Setting(
        "irc",
        (),
        endpoint_description,
        "IRC listener: IRC clients join rooms as #channels (docs/irc.md), e.g. "
        "tcp:6667:interface=127.0.0.1, or ssl:6697:privateKey=key.pem for IRC over TLS. "
        "Repeatable; none by default.",
        "ENDPOINT",
        repeatable=True,
    ),
    Setting(
        "garinchat",
        (),
        endpoint_description,
        "Listener speaking only GarinChat's WebSocket protocol (seed 002), on every "
        "path, e.g. tcp:8090. Repeatable; none by default (the main port speaks it "
        "on a WebSocket upgrade of /).",
        "ENDPOINT",
        repeatable=True,
    ),
    Setting(
        "irc_server_name",
        "irc.parkchat",
        _server_name,
        "The IRC server's name in replies and in every member's prefix (nick!nick@NAME).",
        "NAME",
    ),
    Setting(
        "irc_motd",
        "",
        _any_text,
        "File whose lines are the IRC message of the day; empty = none (numeric 422).",
        "PATH",
    ),
    Setting(
        "golang_chat",
        (),
        endpoint_description,
        "Listener speaking only golang-chat (seed 003): /chat, /getAllMessages and "
        "its page on every other path, e.g. tcp:9999. Repeatable; none by default "
        "(the main port serves /chat, /getAllMessages and /messages).",
        "ENDPOINT",
        repeatable=True,
    ),
    Setting(
        "lildengzi",
        (),
        endpoint_description,
        "Listener speaking only lildengzi's chat-server API (seed 004): POST /register, "
        "POST /login, GET /ws, e.g. tcp:8081. Repeatable; none by default.",
        "ENDPOINT",
        repeatable=True,
    ),
    Setting(
        "db",
        "chat.db",
        _db,
        "SQLite database file, :memory: for a throw-away in-memory store, or a "
        "PostgreSQL URL postgresql://user[:password]@host:port/dbname (needs the "
        "postgres extra; shared by every instance).",
        "DB",
        file_form=True,
    ),
    Setting(
        "db_pool_size",
        4,
        _int(1, 100),
        "PostgreSQL connections per instance (SQLite always uses one).",
        "N",
    ),
    Setting(
        "redis",
        "",
        _redis_url,
        "Redis URL (redis://host:6379/0, optionally ?prefix=NAME) that turns on "
        "multi-instance mode: rooms, direct messages, bans and presence shared "
        "with every instance on the same Redis and database; empty = one instance.",
        "URL",
        file_form=True,
    ),
    Setting(
        "presence_ttl",
        30.0,
        _float(3),
        "With --redis: seconds an instance's presence lives without renewal, so "
        "a crashed instance's users disappear within this time.",
        "SECONDS",
    ),
    Setting(
        "position_check",
        10.0,
        _float(0),
        "With --redis: seconds between checks of every local room's position in "
        "the database, so that a message the bus lost in a quiet room still "
        "arrives (within two periods); 0 = off.",
        "SECONDS",
    ),
    Setting(
        "resume_max",
        5000,
        _int(1, 1_000_000),
        "Most missed messages a client's resume (/ws join with last_seq, /ws/{room}?since=) "
        "is given; beyond it the newest this many, marked recovered: false.",
        "N",
    ),
    Setting(
        "drain_timeout",
        10.0,
        _float(0),
        "Seconds a shutdown (SIGTERM) waits for queued messages to be stored and "
        "delivered to (and acknowledged to) their senders before closing connections with 1001.",
        "SECONDS",
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
        "max_guests_per_ip",
        20,
        _int(0),
        "Open connections of guests (no account: a guest name, or an external token's) per "
        "client address, on top of --max-connections-per-ip; 0 = no limit.",
        "N",
    ),
    Setting(
        "guest_rate_per_ip",
        20.0,
        _float(0),
        "Messages per second that all guests from one client address may send together "
        "(token bucket), on top of each guest name's --rate-limit; 0 turns it off (so does "
        "--rate-limit 0).",
        "PER_S",
    ),
    Setting(
        "guest_burst_per_ip",
        40.0,
        _float(1),
        "Messages the guests from one client address may send at once before "
        "--guest-rate-per-ip applies.",
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
        "Seconds between WebSocket heartbeat pings, and of silence before an IRC "
        "client is sent PING; 0 turns them off.",
        "SECONDS",
    ),
    Setting(
        "ping_timeout",
        20.0,
        _float(0, exclusive=True),
        "Seconds to wait for a pong (on IRC: any line) before dropping the connection.",
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
    Setting(
        "allow_guests",
        True,
        _bool,
        "Let clients chat without an account (yes/no): line-protocol and IRC clients, and "
        "the GarinChat and golang-chat dialects, whose users are all guests; guests "
        "cannot take a registered nickname.",
        "yes|no",
    ),
    Setting(
        "max_line_length",
        8192,
        _int(64, 1024 * 1024),
        "Longest line-protocol line in bytes; longer lines get an error line.",
        "BYTES",
    ),
    Setting(
        "handshake_timeout",
        10.0,
        _float(0, exclusive=True),
        "Seconds a line-protocol client has to send its handshake (an IRC client: to register).",
        "SECONDS",
    ),
    Setting(
        "idle_timeout",
        3600.0,
        _float(0),
        "Seconds of silence after which a line-protocol client is disconnected; 0 = never.",
        "SECONDS",
    ),
    Setting(
        "token_secret",
        "",
        _secret,
        "HMAC secret (32+ bytes) that signs login tokens; shared by every "
        "instance. Empty: one is generated once and stored in the database. "
        "Prefer the environment variable to the command line.",
        "SECRET",
        file_form=True,
    ),
    Setting("token_lifetime", 86400.0, _float(60), "Seconds a login token stays valid.", "SECONDS"),
    Setting(
        "refresh_ttl",
        2592000,
        _int(60, 10 * 365 * 86400),
        'Seconds a refresh token (POST /login with "remember": true) stays valid; '
        "each use gives a new one for as long again.",
        "SECONDS",
    ),
    Setting(
        "external_jwt_secret",
        "",
        _secret,
        "Also accept HMAC-signed JWTs from a third-party auth service signed "
        "with this secret (32+ bytes); empty = off.",
        "SECRET",
        file_form=True,
    ),
    Setting(
        "external_jwt_claim",
        "username",
        _text,
        "The claim of an external JWT that holds the nickname.",
        "CLAIM",
    ),
    Setting(
        "auth_timeout",
        10.0,
        _float(0, exclusive=True),
        "Seconds a /ws connection without credentials has to send its auth frame.",
        "SECONDS",
    ),
    Setting(
        "join_timeout",
        0.0,
        _float(0),
        "Seconds an authenticated /ws connection has to join a room; 0 = no limit.",
        "SECONDS",
    ),
    Setting(
        "single_session",
        False,
        _bool,
        "One connection per account: a new login closes the older ones "
        "(close code 4004 on /ws) (yes/no).",
        "yes|no",
    ),
    Setting(
        "rate_limit_strict",
        False,
        _bool,
        "Disconnect a client that passes the rate limit instead of answering "
        "with an error (yes/no).",
        "yes|no",
    ),
    Setting(
        "login_failures",
        5,
        _int(0),
        "Failed logins allowed for one account from one address (an IPv6 /64) before "
        "its back-off starts (429 with the seconds to wait, doubling with each further "
        "failure); failures from other addresses never count, so nobody can lock "
        "a user out. 0 = no throttling.",
        "N",
    ),
    Setting(
        "login_failures_per_address",
        50,
        _int(0),
        "Failed logins allowed from one address (an IPv6 /64), whatever the accounts, "
        "before that address's back-off starts; 0 = not counted per address.",
        "N",
    ),
    Setting(
        "login_backoff",
        1.0,
        _float(0, exclusive=True),
        "Seconds of the first back-off after the allowed failed logins; each "
        "further failure doubles it.",
        "SECONDS",
    ),
    Setting(
        "login_backoff_max",
        900.0,
        _float(0, exclusive=True),
        "Longest back-off, in seconds.",
        "SECONDS",
    ),
    Setting(
        "login_window",
        300.0,
        _float(1),
        "Seconds after a back-off ends (or after the last failure, before any "
        "back-off) at which failed logins are forgotten.",
        "SECONDS",
    ),
    Setting(
        "registrations_per_address",
        10,
        _int(0),
        "New accounts one address (an IPv6 /64) may register an hour (POST /register, "
        "dialects; not /admin/register); 0 = no limit.",
        "N",
    ),
    Setting(
        "registrations_per_minute",
        60,
        _int(0),
        "New accounts registered a minute in all, so that a storm from many addresses "
        "cannot keep the bcrypt threads from logins (which go first anyway); 0 = no limit.",
        "N",
    ),
    Setting(
        "revoke_on_password_change",
        True,
        _bool,
        "A password change also closes the account's open connections on every "
        "instance, as log out everywhere does (its tokens stop working either way) (yes/no).",
        "yes|no",
    ),
    Setting(
        "allowed_origins",
        (),
        _origin,
        "Browser origins allowed to open WebSockets (e.g. https://chat.example.com); "
        "none = only the server's own origin; * = any. Repeatable.",
        "ORIGIN",
        repeatable=True,
    ),
    Setting(
        "moderators",
        (),
        _nickname,
        "Accounts that moderate in the chat itself: they edit and delete anyone's "
        "room messages at any time and may set topics under --topic-moderators-only. "
        "Repeatable; none by default (the admin API needs no account).",
        "NICKNAME",
        repeatable=True,
    ),
    Setting(
        "edit_window",
        900.0,
        _float(0),
        "Seconds during which authors may edit or delete their own room messages; "
        "0 = no limit. Moderators may at any time.",
        "SECONDS",
    ),
    Setting(
        "topic_moderators_only",
        False,
        _bool,
        "Only moderators (--moderators) set room topics; otherwise every member "
        "of a room may (yes/no).",
        "yes|no",
    ),
    Setting(
        "golang_chat_room",
        "lobby",
        _room,
        "The room golang-chat clients (seed 003, one room) chat in.",
        "ROOM",
    ),
    Setting(
        "garinchat_secret",
        "",
        _seed_secret,
        "HMAC secret of the third-party service that signs GarinChat users' JWTs "
        "(its JWT_DECODE_SECRET; any length, as the seed accepts); empty = GarinChat "
        "clients authenticate with parkchat login tokens only.",
        "SECRET",
        file_form=True,
    ),
    Setting(
        "garinchat_origins",
        (),
        _origin,
        "Browser origins allowed to open GarinChat sockets (its ALLOWED_ORIGINS); "
        "none = as --allowed-origins. Repeatable.",
        "ORIGIN",
        repeatable=True,
    ),
    Setting(
        "lildengzi_secret",
        "",
        _lildengzi_secret,
        "HMAC secret of lildengzi tokens (its JWT_SECRET, shared by every instance); "
        "empty = the token secret.",
        "SECRET",
        file_form=True,
    ),
    Setting(
        "seed_config",
        (),
        parse_seed_config,
        "Also read a seed's own configuration: garinchat[:DOTENV] (ALLOWED_ORIGINS, "
        "JWT_DECODE_SECRET, PORT), golang-chat[:CONFIG_JSON] (port, hostName, PORT), "
        "lildengzi[:DOTENV] (DB_URL, REDIS_ADDR, JWT_SECRET). Those generic names are "
        "read only when asked for here; parkchat's own settings win. Repeatable.",
        "SEED[:PATH]",
        repeatable=True,
    ),
    Setting(
        "trusted_proxies",
        (),
        parse_network,
        "Reverse proxies (addresses or networks, e.g. 10.0.0.0/8) whose X-Forwarded-For "
        "names the client; none = the header is ignored. Repeatable.",
        "NETWORK",
        repeatable=True,
    ),
    Setting(
        "admin_token",
        "",
        _secret,
        "Bearer token for the /admin API and parkchat-admin; empty = admin API off.",
        "SECRET",
        file_form=True,
    ),
    Setting("access_log", True, _bool, "Log every HTTP request (yes/no).", "yes|no"),
    Setting(
        "access_log_file",
        "",
        _any_text,
        "Write the access log to this file (combined log format, one line per "
        "request, written once per event-loop turn; rotates at 64 MiB keeping 8 "
        "old files) instead of the server log (much cheaper on a busy API, "
        "except under twistd -n logging to standard output, where the server log "
        "is written the same buffered way). Empty = the server log.",
        "PATH",
    ),
    Setting(
        "http_timeout",
        60.0,
        _float(0, exclusive=True),
        "Seconds an HTTP connection may sit idle or with a request half sent "
        "before it is closed (before a WebSocket upgrade; not after it).",
        "SECONDS",
    ),
    Setting(
        "http_head_timeout",
        10.0,
        _float(0, exclusive=True),
        "Seconds a client has in total, from connecting (on a kept-alive connection: "
        "from the first byte of its next request), to send a complete HTTP request "
        "head -- a WebSocket upgrade included -- however slowly the bytes trickle in; "
        "then 408 and the connection closes.",
        "SECONDS",
    ),
    Setting(
        "slow_client_timeout",
        30.0,
        _float(0),
        "Seconds a WebSocket or TCP client may leave its send buffer (64 KiB) full "
        "without reading before it is disconnected; 0 = no time limit.",
        "SECONDS",
    ),
    Setting(
        "max_send_buffer",
        4 * 1024 * 1024,
        _int(0),
        "Bytes waiting to be sent to one WebSocket or TCP client beyond which it "
        "is disconnected at once; 0 = no limit.",
        "BYTES",
    ),
    Setting(
        "log_format",
        "text",
        _log_format,
        "text: twistd's usual lines; json: one JSON object per line on standard "
        "output (under twistd the same as twistd --logger parkchat.logs.json_observer).",
        "text|json",
    ),
    Setting(
        "metrics",
        "yes",
        metrics_setting,
        "Prometheus metrics at /metrics: yes (on every --port listener), no, or "
        "an endpoint for a listener of their own (e.g. tcp:9100:interface=127.0.0.1).",
        "yes|no|ENDPOINT",
    ),
    Setting(
        "metrics_token",
        "",
        _secret,
        "Bearer token (32+ bytes) that /metrics then requires; empty = no token.",
        "SECRET",
        file_form=True,
    ),
)

SETTINGS_BY_NAME = {s.name: s for s in SETTINGS}


@dataclass(frozen=True)
class Settings:
    """The resolved configuration; tests build it directly."""

    port: tuple[str, ...] = ("tcp:8080",)
    tcp: tuple[str, ...] = ()
    irc: tuple[str, ...] = ()
    irc_server_name: str = "irc.parkchat"
    irc_motd: str = ""
    garinchat: tuple[str, ...] = ()
    golang_chat: tuple[str, ...] = ()
    lildengzi: tuple[str, ...] = ()
    db: str = "chat.db"
    db_pool_size: int = 4
    redis: str = ""
    presence_ttl: float = 30.0
    position_check: float = 10.0
    resume_max: int = 5000
    drain_timeout: float = 10.0
    bcrypt_rounds: int = 12
    bcrypt_threads: int = 2
    rate_limit: float = 10.0
    rate_burst: float = 20.0
    max_connections_per_user: int = 20
    max_connections_per_ip: int = 1000
    max_guests_per_ip: int = 20
    guest_rate_per_ip: float = 20.0
    guest_burst_per_ip: float = 40.0
    max_content_length: int = 4000
    max_frame_size: int = 65536
    ping_interval: float = 30.0
    ping_timeout: float = 20.0
    auth_cache_ttl: float = 300.0
    auth_cache_size: int = 10000
    allow_guests: bool = True
    max_line_length: int = 8192
    handshake_timeout: float = 10.0
    idle_timeout: float = 3600.0
    token_secret: str = field(default="", repr=False)
    token_lifetime: float = 86400.0
    refresh_ttl: int = 2592000
    external_jwt_secret: str = field(default="", repr=False)
    external_jwt_claim: str = "username"
    auth_timeout: float = 10.0
    join_timeout: float = 0.0
    single_session: bool = False
    rate_limit_strict: bool = False
    login_failures: int = 5
    login_failures_per_address: int = 50
    login_backoff: float = 1.0
    login_backoff_max: float = 900.0
    login_window: float = 300.0
    registrations_per_address: int = 10
    registrations_per_minute: int = 60
    revoke_on_password_change: bool = True
    allowed_origins: tuple[str, ...] = ()
    moderators: tuple[str, ...] = ()
    edit_window: float = 900.0
    topic_moderators_only: bool = False
    golang_chat_room: str = "lobby"
    garinchat_secret: str = field(default="", repr=False)
    garinchat_origins: tuple[str, ...] = ()
    lildengzi_secret: str = field(default="", repr=False)
    seed_config: tuple[str, ...] = ()
    trusted_proxies: tuple[str, ...] = ()
    admin_token: str = field(default="", repr=False)
    access_log: bool = True
    access_log_file: str = ""
    http_timeout: float = 60.0
    http_head_timeout: float = 10.0
    slow_client_timeout: float = 30.0
    max_send_buffer: int = 4 * 1024 * 1024
    log_format: str = "text"
    metrics: str = "yes"
    metrics_token: str = field(default="", repr=False)
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
            if not items and setting.default:
                raise ValueError("expected at least one value")
            return tuple(setting.convert(item) for item in items)
        return setting.convert(raw)
    except ValueError as e:
        raise ConfigError(f"{origin}: {e}") from None


#: TOML keys of the file forms (``admin_token_file``...).
FILE_KEYS = frozenset(s.file_name for s in SETTINGS if s.file_form)


def read_secret_file(path: Any, origin: str) -> str:
    """A setting's value from a file (a Docker or Kubernetes secret): the
    text without its trailing newline; a file that cannot be read, is not
    UTF-8 or is empty is a ConfigError naming where the path came from."""
    if not isinstance(path, str) or not path:
        raise ConfigError(f"{origin}: expected a file path")
    try:
        with open(path, "rb") as f:
            data = f.read(1024 * 1024 + 1)
    except OSError as e:
        raise ConfigError(f"{origin}: cannot read {path}: {e.strerror}") from None
    if len(data) > 1024 * 1024:
        raise ConfigError(f"{origin}: {path} is larger than 1 MiB")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{origin}: {path} is not UTF-8 text") from None
    text = text.removesuffix("\n").removesuffix("\r")
    if not text:
        raise ConfigError(f"{origin}: {path} is empty")
    return text


def _layer(
    setting: Setting,
    has_value: bool,
    value: Any,
    origin: str,
    has_file: bool,
    path: Any,
    file_origin: str,
) -> tuple[Any, str] | None:
    """The raw value one layer (command line, environment, TOML file) gives
    ``setting``, directly or through its file form; None if neither."""
    if has_value and has_file:
        raise ConfigError(f"{origin} and {file_origin} are both set: use one of them")
    if has_file:
        return read_secret_file(path, file_origin), f"{file_origin} ({path})"
    if has_value:
        return value, origin
    return None


def read_toml(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {path} is not valid TOML: {e}") from None
    data = data.get("parkchat", data) if isinstance(data.get("parkchat"), dict) else data
    unknown = sorted(set(data) - set(SETTINGS_BY_NAME) - FILE_KEYS)
    if unknown:
        raise ConfigError(f"config file {path}: unknown setting(s) {', '.join(unknown)}")
    return data


def _given(
    setting: Setting,
    cli: Mapping[str, Any],
    environ: Mapping[str, str],
    file_values: Mapping[str, Any],
    path: str | None,
) -> tuple[str, Any, str] | None:
    """The highest layer that sets ``setting`` (directly or through its file
    form): ``(source, raw value, origin)``; lower layers are not read, so a
    bad value below a good one does not matter."""
    form = setting.file_form
    layers: tuple[tuple[str, Callable[[], tuple[Any, str] | None]], ...] = (
        (
            "cli",
            lambda: _layer(
                setting,
                cli.get(setting.name) is not None,
                cli.get(setting.name),
                f"--{setting.option}",
                form and cli.get(setting.file_name) is not None,
                cli.get(setting.file_name),
                f"--{setting.file_option}",
            ),
        ),
        (
            "env",
            lambda: _layer(
                setting,
                setting.env in environ,
                environ.get(setting.env),
                setting.env,
                form and setting.file_env in environ,
                environ.get(setting.file_env),
                setting.file_env,
            ),
        ),
        (
            "file",
            lambda: _layer(
                setting,
                setting.name in file_values,
                file_values.get(setting.name),
                f"{path}: {setting.name}",
                form and setting.file_name in file_values,
                file_values.get(setting.file_name),
                f"{path}: {setting.file_name}",
            ),
        ),
    )
    for source, read in layers:
        found = read()
        if found is not None:
            return source, found[0], found[1]
    return None


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
        given = _given(setting, cli, environ, file_values, path)
        if given is None:
            values[setting.name] = setting.default
            sources[setting.name] = "default"
            continue
        source, raw, origin = given
        values[setting.name] = _convert(setting, raw, origin)
        sources[setting.name] = source
    if values["seed_config"]:
        _apply_seeds(values, sources, environ)
    return Settings(**values, sources=sources)


def _apply_seeds(
    values: dict[str, Any], sources: dict[str, str], environ: Mapping[str, str]
) -> None:
    """Fill the settings left at their defaults from the seeds' own
    configuration (``--seed-config``): a layer under the file."""
    explicit = frozenset(name for name, source in sources.items() if source != "default")
    try:
        seeded = seed_settings(values["seed_config"], environ, explicit)
    except SeedConfigError as e:
        raise ConfigError(f"--seed-config {e}") from None
    for name, value in seeded.items():
        if sources[name] == "default":
            values[name] = _convert(SETTINGS_BY_NAME[name], value.raw, value.origin)
            sources[name] = "seed"


assert {f.name for f in fields(Settings)} - {"sources"} == set(SETTINGS_BY_NAME), (
    "Settings and SETTINGS disagree"
)


def _format_default(setting: Setting) -> str:
    default = setting.default
    if isinstance(default, bool):
        return "yes" if default else "no"
    if isinstance(default, tuple):
        return ", ".join(str(item) for item in default)
    if isinstance(default, float):
        return f"{default:g}"
    return str(default)


def reference_markdown() -> str:
    """The option reference of ``docs/configuration.md`` as Markdown.

    One table row per entry of ``SETTINGS`` (command-line option, environment
    variable, TOML key, default, meaning), followed by the precedence rules.
    ``tests/test_docs.py`` checks that the document holds exactly this text,
    so the reference cannot drift from the code.
    """

    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = [
        "| option | environment variable | TOML key | default | meaning |",
        "|---|---|---|---|---|",
        "| `--config FILE` | `PARKCHAT_CONFIG` | — | none | TOML file with settings. |",
    ]
    for s in SETTINGS:
        default = f"`{cell(_format_default(s))}`" if _format_default(s) else "none"
        lines.append(
            f"| `{cell(f'--{s.option} {s.metavar}')}` | `{s.env}` | `{s.name}` "
            f"| {default} | {cell(s.help)} |"
        )
        if s.file_form:
            lines.append(
                f"| `--{s.file_option} PATH` | `{s.file_env}` | `{s.file_name}` | none "
                f"| `--{s.option}` read from a file (a Docker or Kubernetes secret). |"
            )
    repeatable = ", ".join(f"`--{s.option}`" for s in SETTINGS if s.repeatable)
    lines += [
        "",
        "Precedence, highest first: command line, environment, TOML file, default.",
        "Each option is resolved on its own, so the file may set some options, the",
        "environment others, and the command line override any of them.",
        "",
        f"- Repeatable options ({repeatable}) may be given several times on the",
        "  command line; in the environment they are one comma-separated value, in",
        "  the TOML file a list (a single string is accepted too). A layer replaces",
        "  the whole list of the layers below it; lists are never merged.",
        "- Yes/no options accept `yes`, `no`, `true`, `false`, `on`, `off`, `1` or",
        "  `0`; in TOML a boolean is accepted too.",
        "- The TOML keys may stand at the top level of the file or in a `[parkchat]`",
        "  table. A key the running version does not know is an error (a typo",
        f"  should not be silently ignored); an environment variable `{ENV_PREFIX}*`",
        "  it does not know is ignored.",
        "- The file is named by `--config`, or else by `PARKCHAT_CONFIG`.",
        "- The secrets and the URLs that may hold a password (`--db`, `--redis`)",
        "  have a file form: `--admin-token-file /run/secrets/admin_token`,",
        "  `PARKCHAT_ADMIN_TOKEN_FILE`, TOML `admin_token_file`. The file's text is",
        "  the value, without its trailing newline; a file that cannot be read, is",
        "  empty or is not UTF-8 stops the start. Within one layer, giving both",
        "  forms is an error; between layers the usual precedence applies.",
        "- A secret that is an obvious placeholder from an example (`REPLACE-WITH-…`,",
        "  `changeme`, `CHANGE_ME`, `example`, `secret`, `xxxxxxxx`…; also as the",
        "  password of a `--db` or `--redis` URL) stops the start with an error.",
        "- A bad value in any layer stops the start with a one-line error naming",
        "  the option, the variable or the file and key it came from.",
    ]
    return "\n".join(lines) + "\n"
