"""The composition root: ``twistd parkchat`` options and ``makeService``.

This is the only module that chooses concrete classes and wires them together;
``chat.tac`` and the twistd plugin both come through here.
"""

from __future__ import annotations

import gc
import os
import secrets
import sys
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import IO, Any
from urllib.parse import urlsplit

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import IService, MultiService, Service
from twisted.internet import endpoints
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.error import CannotListenError
from twisted.logger import Logger
from twisted.python import usage
from twisted.python.threadpool import ThreadPool

from parkchat import __version__
from parkchat.accounts import Accounts
from parkchat.auth import PasswordHasher, VerifiedCredentials, make_portal
from parkchat.bus.local import LocalBus
from parkchat.bus.redis import RedisBus, RedisURLError
from parkchat.config import SETTINGS, ConfigError, Settings, resolve
from parkchat.handlers.accounts import AccountHandler
from parkchat.handlers.connections import ConnectionHandler
from parkchat.handlers.direct import DirectMessageHandler
from parkchat.handlers.edits import EDIT_WINDOW, EditHandler
from parkchat.handlers.messages import MessageHandler, stored_publisher
from parkchat.handlers.moderation import ModerationHandler
from parkchat.handlers.refresh import REFRESH_TTL, RefreshTokenHandler
from parkchat.handlers.resync import ResyncHandler
from parkchat.handlers.rooms import RoomHandler
from parkchat.handlers.search import SearchHandler
from parkchat.handlers.sessions import SessionHandler
from parkchat.handlers.state import StateHandler
from parkchat.handlers.topics import TopicHandler
from parkchat.interfaces import IBus, IMessageStore
from parkchat.limits import Limits, LoginThrottle, RegistrationThrottle, TokenBucketLimiter
from parkchat.metrics import ServiceMetrics
from parkchat.model import Moderators
from parkchat.protocols import fastpath
from parkchat.protocols.garinchat import GarinChatFactory, GarinChatTokens
from parkchat.protocols.golangchat import GolangChatFactory
from parkchat.protocols.irc import IrcFactory, IrcOptions
from parkchat.protocols.lildengzi import InsecureSecret, LildengziFactory, LildengziTokens
from parkchat.protocols.line import LineChatFactory
from parkchat.protocols.mychat import MyChatFactory
from parkchat.protocols.participant import AdapterContext
from parkchat.protocols.policies import AddressLimit, SlowReaderPolicy
from parkchat.protocols.stream import StreamOptions
from parkchat.protocols.unified import AppSocketFactory
from parkchat.protocols.websocket import RoomSocketFactory
from parkchat.proxies import TrustedProxies
from parkchat.recent import RecentMessages
from parkchat.service import ChatService
from parkchat.skeleton import load_confusables
from parkchat.store import is_postgres_url
from parkchat.store.memory import MemoryStore
from parkchat.store.schema import SchemaError
from parkchat.store.sqlite import load_or_create_setting as load_or_create_sqlite_setting
from parkchat.store.sqlite import open_sqlite
from parkchat.store.writer import GroupCommitWriter
from parkchat.tokens import ExternalTokenVerifier, Revocations, TokenAuthority, TokenVerifier
from parkchat.web.dialects import (
    GarinChatSocket,
    GolangChatRoot,
    LildengziRoot,
    golang_chat_children,
)
from parkchat.web.site import make_dialect_site, make_metrics_site, make_site
from parkchat.workers import WORKER_ENV

#: The twistd ``--logger`` factory of ``--log-format json``.
JSON_OBSERVER = "parkchat.logs.json_observer"
#: Shorter HMAC secrets get a warning (RFC 7518 section 3.2).
SHORT_SECRET_BYTES = 32

_log = Logger()


def _help(setting: Any) -> str:
    if setting.metavar == "SECRET":
        return f"{setting.help} [env {setting.env}]"
    default = setting.default
    if isinstance(default, tuple):
        default = ",".join(default)
    elif isinstance(default, bool):
        default = "yes" if default else "no"
    return f"{setting.help} [default: {default}; env {setting.env}]"


def _repeatable(name: str) -> Callable[[Any, str], None]:
    """An ``opt_<name>`` method: each use of a repeatable option adds a value."""

    def opt(self: Any, value: str) -> None:
        self._repeated.setdefault(name, []).append(value)

    opt.__doc__ = _help(next(s for s in SETTINGS if s.name == name))
    return opt


class Options(usage.Options):
    """``twistd parkchat`` options, generated from ``parkchat.config.SETTINGS``.

    Every option is also an environment variable ``PARKCHAT_<NAME>`` and a key
    of the TOML file given by ``--config``; the command line wins over the
    environment, which wins over the file.
    """

    synopsis = "[options]"
    longdesc = (
        "parkchat: rooms, accounts and history over WebSocket and HTTP. "
        "Every option can also be set as PARKCHAT_<OPTION> in the environment "
        "(e.g. PARKCHAT_MAX_CONNECTIONS_PER_IP=0) or as a key in the TOML file "
        "named by --config (e.g. max_connections_per_ip = 0); command line > "
        "environment > file > default."
    )
    optParameters: list[list[Any]] = [
        ["config", None, None, "TOML file with settings [env PARKCHAT_CONFIG]"],
    ] + [
        entry
        for s in SETTINGS
        if not s.repeatable
        for entry in (
            [[s.option, None, None, _help(s)]]
            + (
                [
                    [
                        s.file_option,
                        None,
                        None,
                        f"read --{s.option} from this file [env {s.file_env}]",
                    ]
                ]
                if s.file_form
                else []
            )
        )
    ]

    def __init__(self) -> None:
        super().__init__()
        self._repeated: dict[str, list[str]] = {}
        self.settings: Settings | None = None

    opt_port = _repeatable("port")
    opt_tcp = _repeatable("tcp")
    opt_irc = _repeatable("irc")
    opt_garinchat = _repeatable("garinchat")
    opt_golang_chat = _repeatable("golang_chat")
    opt_lildengzi = _repeatable("lildengzi")
    opt_allowed_origins = _repeatable("allowed_origins")
    opt_moderators = _repeatable("moderators")
    opt_garinchat_origins = _repeatable("garinchat_origins")
    opt_seed_config = _repeatable("seed_config")
    opt_trusted_proxies = _repeatable("trusted_proxies")

    def opt_version(self) -> None:
        """Print the parkchat version and exit."""
        print(f"parkchat {__version__}")
        sys.exit(0)

    def postOptions(self) -> None:
        cli: dict[str, Any] = {s.name: self.get(s.option) for s in SETTINGS if not s.repeatable}
        cli.update({s.file_name: self.get(s.file_option) for s in SETTINGS if s.file_form})
        cli.update(self._repeated)
        try:
            self.settings = resolve(cli, os.environ, self["config"])
        except ConfigError as e:
            raise usage.UsageError(str(e)) from None
        for description in listener_endpoints(self.settings):
            check_endpoint(description)
        if self.settings.metrics not in ("yes", "no"):
            check_endpoint(self.settings.metrics)
        self._choose_log_format(self.settings.log_format)

    def _choose_log_format(self, log_format: str) -> None:
        """Under twistd (the parent options), ``--log-format json`` means
        ``twistd --logger parkchat.logs.json_observer``: twistd installs the
        log observer, and this is the option it reads. An explicit
        ``--logger`` wins."""
        parent = getattr(self, "parent", None)
        if log_format != "json" or parent is None:
            return
        try:
            if parent["logger"] is None:
                parent["logger"] = JSON_OBSERVER
        except KeyError:
            pass  # not twistd's ServerOptions


def listener_endpoints(settings: Settings) -> tuple[str, ...]:
    """Every chat listener's endpoint string."""
    return (
        settings.port
        + settings.tcp
        + settings.irc
        + settings.garinchat
        + settings.golang_chat
        + settings.lildengzi
    )


class _ParseOnlyReactor:
    """Stands in for the reactor while endpoint strings are only being checked."""


def check_endpoint(description: str) -> None:
    """Raise UsageError if ``description`` is not a usable server endpoint."""
    try:
        endpoints.serverFromString(_ParseOnlyReactor(), description)
    except IndexError:
        if description.startswith("systemd:"):
            raise usage.UsageError(
                f"{description}: no socket was passed by systemd "
                "(socket activation works only under a systemd .socket unit)"
            ) from None
        raise usage.UsageError(f"bad endpoint {description!r}") from None
    except Exception as e:
        raise usage.UsageError(f"bad endpoint {description!r}: {e}") from None


class OrderedStop(MultiService):
    """A MultiService that stops its children one after the other, the last
    added first, each once the one before it has stopped (a MultiService
    stops them all at once): the listeners stop accepting, then the chat
    service drains (storing and delivering what is queued, through the
    bus), and only then does the bus go."""

    def stopService(self) -> Deferred[None]:
        Service.stopService(self)
        return Deferred.fromCoroutine(self._stop_children())

    async def _stop_children(self) -> None:
        for service in reversed(list(self)):
            try:
                await maybeDeferred(service.stopService)
            except Exception:
                _log.failure("stopping {service} failed", service=service.name)


class ThreadPoolService(Service):
    """Starts and stops a thread pool with the application."""

    def __init__(self, pool: ThreadPool) -> None:
        self.pool = pool

    def startService(self) -> None:
        super().startService()
        self.pool.start()

    def stopService(self) -> None:
        super().stopService()
        self.pool.stop()


def server_log_stream(options: Any, stdout: IO[str] | None = None) -> IO[str] | None:
    """The stream twistd will write the server log to as plain text, if it
    is standard output: under ``twistd -n`` without ``--logfile`` (or with
    ``--logfile -``), ``--logger`` or ``--syslog``, the same choice twistd's
    ``UnixAppLogger`` makes from the same options (``options.parent``). None
    otherwise (a log file twistd rotates, a custom observer, syslog, or not
    under twistd): the access log then goes through the log observers.

    Called from ``makeService``, before twistd starts logging and replaces
    ``sys.stdout``: the stream returned is the one twistd's observer writes.
    """
    parent = getattr(options, "parent", None)
    if parent is None:
        return None
    try:
        logger, logfile, nodaemon = parent["logger"], parent["logfile"], parent["nodaemon"]
        syslog = parent.get("syslog")
    except (KeyError, TypeError):
        return None  # not twistd's ServerOptions
    if logger is not None or syslog:
        return None
    if logfile == "-" or (nodaemon and not logfile):
        return stdout if stdout is not None else sys.stdout
    return None


def access_log_path(path: str, environ: Mapping[str, str]) -> str | None:
    """The access-log file of this process: ``path``, or under
    ``parkchat-workers`` ``path.workerN``, since every worker gets the same
    options and one file must not have several writers rotating it."""
    if not path:
        return None
    number = environ.get(WORKER_ENV)
    return f"{path}.worker{number}" if number else path


def check_access_log(path: str | None) -> None:
    """Stop with one line if the access-log file cannot be written: the site
    opens it only when its listener starts, where a failure would leave a
    running server with a traceback in its log and no HTTP port."""
    if path is None:
        return
    try:
        with open(path, "ab"):
            pass
    except OSError as e:
        raise SystemExit(f"parkchat: cannot open access log {path}: {e.strerror}") from None


def freeze_startup_objects(reactor: Any, freeze: Callable[[], None] | None = None) -> None:
    """Once the reactor runs, move every object that exists then (modules,
    classes, functions: some 100,000) out of the garbage collector's sight
    with ``gc.freeze()``.

    Such objects never become garbage, yet each full collection walked all
    of them: 70-90 ms with the reactor stopped, several times a minute under
    load, which alone set the p99 latency of the ingest benchmark (now
    25-35 ms pauses). Only when the application is built before the reactor
    runs (twistd, chat.tac, each worker): a process that is already running
    (a test, an embedding program) keeps its objects collectable.
    """
    if not getattr(reactor, "running", True):
        reactor.callWhenRunning(freeze if freeze is not None else _collect_and_freeze)


def _collect_and_freeze() -> None:
    gc.collect()
    gc.freeze()


def _postgres() -> ModuleType:
    """``parkchat.store.postgres``, imported only when ``--db`` asks for it
    (psycopg2 comes with the optional ``postgres`` extra)."""
    try:
        from parkchat.store import postgres
    except ImportError as e:
        raise SystemExit(
            f"parkchat: --db postgresql://... needs psycopg2 ({e}); "
            "install it with: pip install 'parkchat[postgres]'"
        ) from None
    return postgres


def _redacted(db: str) -> str:
    """``db`` without the password a PostgreSQL URL may carry, for messages."""
    if not is_postgres_url(db):
        return db
    url = urlsplit(db)
    if url.password is None:
        return db
    netloc = url.netloc.replace(f":{url.password}@", ":***@", 1)
    return url._replace(netloc=netloc).geturl()


def open_store(db: str, reactor: Any, pool_size: int = 4) -> IMessageStore:
    """The store ``--db`` names: ``:memory:``, a PostgreSQL URL (``pool_size``
    connections) or a SQLite file; schema created or upgraded first."""
    if db == ":memory:":
        return MemoryStore()
    try:
        if is_postgres_url(db):
            store: IMessageStore = _postgres().open_postgres(db, reactor, pool_size)
            return store
        return open_sqlite(db, reactor)
    except (OSError, SchemaError, Exception) as e:
        message = str(e).strip().replace(db, _redacted(db))
        raise SystemExit(f"parkchat: cannot open database {_redacted(db)}: {message}") from None


class Listener(StreamServerEndpointService):
    """A listening endpoint whose failure to listen (port taken, no
    permission) stops the start with one clear line instead of a traceback."""

    def __init__(self, description: str, factory: Any, reactor: Any) -> None:
        super().__init__(endpoints.serverFromString(reactor, description), factory)
        self.description = description
        # Fail inside privilegedStartService, before the reactor runs, as
        # twisted.application.strports.service does.
        self._raiseSynchronously = True

    def privilegedStartService(self) -> None:
        try:
            super().privilegedStartService()
        except CannotListenError as e:
            reason = getattr(e.socketError, "strerror", None) or str(e.socketError)
            raise SystemExit(f"parkchat: cannot listen on {self.description}: {reason}") from None


def read_motd(path: str) -> tuple[str, ...] | None:
    """The IRC message of the day from ``--irc-motd`` (None: no file), read
    once at start; a file that cannot be read stops the start."""
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return tuple(line.rstrip("\r\n") for line in f)
    except (OSError, UnicodeDecodeError) as e:
        raise SystemExit(f"parkchat: cannot read the IRC MOTD {path}: {e}") from None


def token_secret(settings: Settings) -> str:
    """The configured token secret, else the one stored with the data
    (generated on first start), else (``:memory:``) one for this process."""
    if settings.token_secret:
        return settings.token_secret
    if settings.db == ":memory:":
        return secrets.token_urlsafe(48)
    if is_postgres_url(settings.db):
        load_or_create_setting = _postgres().load_or_create_setting
    else:
        load_or_create_setting = load_or_create_sqlite_setting
    try:
        secret: str = load_or_create_setting(
            settings.db, "token_secret", lambda: secrets.token_urlsafe(48)
        )
    except Exception as e:
        # A database another process holds locked, or one gone away since
        # it was opened: one line, as for every other bad database.
        message = str(e).strip().replace(settings.db, _redacted(settings.db))
        raise SystemExit(
            f"parkchat: cannot read the token secret from the database "
            f"{_redacted(settings.db)}: {message}"
        ) from None
    return secret


def lildengzi_token_authority(
    secret: str, settings: Settings, reactor: Any, revocations: Revocations
) -> LildengziTokens:
    """lildengzi's tokens, signed with ``secret``: ``--lildengzi-secret``,
    else the token secret (shared by every instance either way)."""
    try:
        return LildengziTokens(
            secret.encode("utf-8"), reactor, settings.token_lifetime, revocations
        )
    except InsecureSecret as e:
        raise SystemExit(f"parkchat: {e}") from None


def warn_short_secrets(settings: Settings) -> None:
    """The seeds' secrets are taken at any length (their clients' tokens
    are signed with them already), with a warning when they are short."""
    for option, secret in (
        ("--garinchat-secret", settings.garinchat_secret),
        ("--lildengzi-secret", settings.lildengzi_secret),
    ):
        if secret and len(secret.encode("utf-8")) < SHORT_SECRET_BYTES:
            _log.warn(
                "{option} is shorter than {minimum} bytes: tokens signed with it can be "
                "guessed; use a longer secret when you can",
                option=option,
                minimum=SHORT_SECRET_BYTES,
            )


def build_chat_service(
    store: IMessageStore,
    hasher: PasswordHasher,
    clock: Any,
    *,
    limits: Limits | None = None,
    metrics: ServiceMetrics | None = None,
    bus: IBus | None = None,
    credential_cache: VerifiedCredentials | None = None,
    single_session: bool = False,
    instance_id: str = "",
    recent_history: bool = True,
    revocations: Revocations | None = None,
    position_check: float = 10.0,
    resume_max: int = 5000,
    drain_timeout: float = 10.0,
    moderators: tuple[str, ...] = (),
    edit_window: float = EDIT_WINDOW,
    topic_moderators_only: bool = False,
    refresh_ttl: int = REFRESH_TTL,
    revoke_on_password_change: bool = True,
) -> ChatService:
    """The chat service and its handlers (``parkchat.handlers``), each given
    its collaborators by constructor, lowest first.

    Without ``bus``, the in-process LocalBus; with one (a bus that can lose
    events), the rooms' positions are also checked against the store every
    ``position_check`` seconds (0: never). ``recent_history`` keeps the
    newest messages of rooms in memory (only correct when this instance
    sees every message: one instance). ``moderators`` are the accounts that
    edit and delete any message and may set topics under
    ``topic_moderators_only``; authors may edit and delete their own
    messages for ``edit_window`` seconds (0: always).
    """
    limits = limits if limits is not None else Limits()
    metrics = metrics if metrics is not None else ServiceMetrics()
    credentials = credential_cache if credential_cache is not None else VerifiedCredentials(clock)
    revocations = revocations if revocations is not None else Revocations()
    if bus is None:
        # Events cannot be lost in process: nothing to check.
        position_check = 0.0
        bus = LocalBus()
    rate = TokenBucketLimiter(
        clock, limits.rate_limit, limits.rate_burst, on_limited=metrics.rate_limit_hit
    )
    recent = RecentMessages(limits.history_max) if recent_history else None
    writer = GroupCommitWriter(
        store.insert_messages,
        clock,
        on_batch=metrics.batch_done,
        on_stored=stored_publisher(bus, recent),
    )

    connections = ConnectionHandler(
        bus, limits, instance_id=instance_id, single_session=single_session
    )
    rooms = RoomHandler(
        connections,
        bus,
        clock,
        metrics,
        rate,
        store,
        after_queued=writer.after_queued,
        resume_max=resume_max,
        topics=store,
    )
    moderation = ModerationHandler(store, store, rooms, bus, clock, instance_id=instance_id)
    sessions = SessionHandler(
        store,
        store,
        connections,
        rooms,
        bus,
        clock,
        revocations,
        credentials,
        instance_id=instance_id,
        single_session=single_session,
        refresh_tokens=store,
    )
    accounts = AccountHandler(
        store,
        Accounts(store, hasher, clock, credentials),
        moderation,
        sessions,
        LoginThrottle(
            clock,
            pair_failures=limits.login_failures,
            address_failures=limits.login_failures_per_address,
            backoff=limits.login_backoff,
            backoff_max=limits.login_backoff_max,
            forget_after=limits.login_window,
        ),
        metrics,
        limits,
        RegistrationThrottle(
            clock,
            per_address=limits.registrations_per_address,
            per_minute=limits.registrations_per_minute,
        ),
        revoke_on_password_change=revoke_on_password_change,
    )
    guest_rate = TokenBucketLimiter(
        clock,
        limits.guest_rate_per_ip,
        limits.guest_burst_per_ip,
        on_limited=metrics.rate_limit_hit,
    )
    messages = MessageHandler(
        store, writer, recent, connections, rooms, bus, clock, limits, metrics, rate, guest_rate
    )
    direct = DirectMessageHandler(
        store, store, connections, bus, clock, limits, rate, instance_id=instance_id
    )
    staff = Moderators(moderators)
    edits = EditHandler(
        store, messages, recent, bus, clock, limits, rate, staff, edit_window=edit_window
    )
    search = SearchHandler(
        store,
        store,
        rate,
        joined=store,
        present=lambda user_id, key: {
            room
            for member in connections.of_account(key)
            if member.user_id == user_id
            for room in rooms.rooms_of(member)
        },
    )
    topics = TopicHandler(
        store, rooms, bus, clock, rate, staff, moderators_only=topic_moderators_only
    )
    state = StateHandler(store, store, connections, bus, clock, instance_id=instance_id)
    refresh = RefreshTokenHandler(store, store, moderation, clock, ttl=refresh_ttl)
    resync = ResyncHandler(
        rooms,
        moderation,
        sessions,
        bus,
        clock,
        instance_id=instance_id,
        position_check=position_check,
    )
    service = ChatService(
        store,
        bus,
        clock,
        connections=connections,
        rooms=rooms,
        moderation=moderation,
        sessions=sessions,
        accounts=accounts,
        messages=messages,
        direct=direct,
        resync=resync,
        edits=edits,
        refresh=refresh,
        search=search,
        state=state,
        topics=topics,
        metrics=metrics,
        limits=limits,
        portal=make_portal(accounts.login_for_cred),
        revocations=revocations,
        instance_id=instance_id,
        drain_timeout=drain_timeout,
    )
    metrics.watch(service)
    return service


def makeService(options: Options | dict[str, Any], reactor: Any = None) -> IService:
    """Build the whole application: the chat service, the bcrypt threads and
    one listener per ``--port`` (HTTP), ``--tcp`` (line protocol) and
    ``--irc``."""
    if reactor is None:
        from twisted.internet import reactor as default_reactor

        reactor = default_reactor
    settings = options.settings if isinstance(options, Options) else None
    if settings is None:
        settings = Settings()
    top = OrderedStop()
    # Unicode's confusables table, read now rather than by the first name
    # checked on the event loop (some 30 ms, once).
    load_confusables()
    freeze_startup_objects(reactor)

    bcrypt_pool = ThreadPool(
        minthreads=0, maxthreads=settings.bcrypt_threads, name="parkchat-bcrypt"
    )
    ThreadPoolService(bcrypt_pool).setServiceParent(top)
    hasher = PasswordHasher.on_threadpool(reactor, bcrypt_pool, settings.bcrypt_rounds)

    access_log_file = access_log_path(settings.access_log_file, os.environ)
    check_access_log(access_log_file)
    server_log = server_log_stream(options)
    store = open_store(settings.db, reactor, settings.db_pool_size)
    bus: IBus | None = None
    instance_id = ""
    if settings.redis:
        instance_id = secrets.token_hex(4)
        try:
            redis_bus = RedisBus(
                settings.redis, reactor, reactor, instance_id, presence_ttl=settings.presence_ttl
            )
        except RedisURLError as e:
            raise SystemExit(f"parkchat: {e}") from None
        # Before the chat service: stopped after it, so goodbyes still cross.
        redis_bus.setServiceParent(top)
        bus = redis_bus
    trusted_proxies = TrustedProxies(settings.trusted_proxies)
    limits = Limits(
        max_content_length=settings.max_content_length,
        rate_limit=settings.rate_limit,
        rate_burst=settings.rate_burst,
        max_connections_per_user=settings.max_connections_per_user,
        max_connections_per_ip=settings.max_connections_per_ip,
        max_guests_per_ip=settings.max_guests_per_ip,
        guest_rate_per_ip=settings.guest_rate_per_ip,
        guest_burst_per_ip=settings.guest_burst_per_ip,
        rate_strict=settings.rate_limit_strict,
        login_failures=settings.login_failures,
        login_failures_per_address=settings.login_failures_per_address,
        login_backoff=settings.login_backoff,
        login_backoff_max=settings.login_backoff_max,
        login_window=settings.login_window,
        registrations_per_address=settings.registrations_per_address,
        registrations_per_minute=settings.registrations_per_minute,
        trusted_proxies=trusted_proxies,
    )
    metrics = ServiceMetrics()
    revocations = Revocations()
    service = build_chat_service(
        store,
        hasher,
        reactor,
        limits=limits,
        credential_cache=VerifiedCredentials(
            reactor, ttl=settings.auth_cache_ttl, max_entries=settings.auth_cache_size
        ),
        single_session=settings.single_session,
        bus=bus,
        instance_id=instance_id,
        recent_history=bus is None,
        metrics=metrics,
        revocations=revocations,
        position_check=settings.position_check,
        resume_max=settings.resume_max,
        drain_timeout=settings.drain_timeout,
        edit_window=settings.edit_window,
        moderators=settings.moderators,
        refresh_ttl=settings.refresh_ttl,
        topic_moderators_only=settings.topic_moderators_only,
        revoke_on_password_change=settings.revoke_on_password_change,
    )
    service.setServiceParent(top)

    own_secret = token_secret(settings)
    authority = TokenAuthority(
        own_secret.encode("utf-8"),
        reactor,
        settings.token_lifetime,
        revocations,
    )
    external = (
        ExternalTokenVerifier(
            settings.external_jwt_secret.encode("utf-8"), reactor, settings.external_jwt_claim
        )
        if settings.external_jwt_secret
        else None
    )
    tokens = TokenVerifier(authority, external, on_failure=metrics.token_failed)

    # The protocol adapters: each factory gets what it needs here, from the
    # context every adapter shares and its own settings; none reaches
    # through the service. The transport fast paths are chosen once, by the
    # installed Twisted and Autobahn (a warning if they were not checked).
    # Clients that stop reading are closed (every WebSocket and TCP client).
    paths = fastpath.choose()
    slow_readers = SlowReaderPolicy(
        reactor,
        settings.slow_client_timeout,
        settings.max_send_buffer,
        buffered=paths.buffered_bytes,
    )
    context = AdapterContext(
        service=service,
        metrics=metrics,
        clock=reactor,
        paths=paths,
        slow_readers=slow_readers,
        trusted_proxies=trusted_proxies,
    )
    ws_factory = RoomSocketFactory(
        context,
        max_message_size=settings.max_frame_size,
        ping_interval=settings.ping_interval,
        ping_timeout=settings.ping_timeout,
    )
    stream_options = StreamOptions(
        max_line_length=settings.max_line_length,
        handshake_timeout=settings.handshake_timeout,
        idle_timeout=settings.idle_timeout,
        allow_guests=settings.allow_guests,
        tokens=tokens,
    )
    mychat_factory = MyChatFactory(
        context,
        stream_options,
        max_message_size=settings.max_frame_size,
        ping_interval=settings.ping_interval,
        ping_timeout=settings.ping_timeout,
    )
    app_factory = AppSocketFactory(
        context,
        tokens,
        auth_timeout=settings.auth_timeout,
        join_timeout=settings.join_timeout,
        rate_strict=limits.rate_strict,
        max_message_size=settings.max_frame_size,
        ping_interval=settings.ping_interval,
        ping_timeout=settings.ping_timeout,
    )
    # The seed dialects (docs/dialects.md): on the main port where their
    # paths are free, and on listeners of their own.
    garinchat_factory = GarinChatFactory(
        context,
        GarinChatTokens(reactor, settings.garinchat_secret.encode("utf-8"), tokens),
        max_message_size=settings.max_frame_size,
        ping_interval=settings.ping_interval,
        ping_timeout=settings.ping_timeout,
        allow_guests=settings.allow_guests,
    )
    garinchat_origins = settings.garinchat_origins or settings.allowed_origins
    golang_chat_factory = GolangChatFactory(
        context,
        settings.golang_chat_room,
        max_message_size=settings.max_frame_size,
        ping_interval=settings.ping_interval,
        ping_timeout=settings.ping_timeout,
        allow_guests=settings.allow_guests,
    )
    lildengzi_tokens = lildengzi_token_authority(
        settings.lildengzi_secret or own_secret, settings, reactor, revocations
    )
    lildengzi_factory = LildengziFactory(
        context,
        lildengzi_tokens,
        ping_interval=settings.ping_interval,
        ping_timeout=settings.ping_timeout,
    )
    warn_short_secrets(settings)
    site = make_site(
        service,
        ws_factory,
        mychat_factory,
        portal=service.portal,
        history_default=limits.history_default,
        app_factory=app_factory,
        tokens=authority,
        allowed_origins=settings.allowed_origins,
        admin_token=settings.admin_token or None,
        access_log=settings.access_log,
        access_log_file=access_log_file,
        server_log=server_log,
        http_timeout=settings.http_timeout,
        head_timeout=settings.http_head_timeout,
        metrics=metrics if settings.metrics == "yes" else None,
        metrics_token=settings.metrics_token or None,
        trusted_proxies=trusted_proxies,
        garinchat=GarinChatSocket(garinchat_factory, garinchat_origins),
        golang_chat=golang_chat_children(golang_chat_factory, settings.allowed_origins),
    )
    # Listeners come last: MultiService stops children in reverse order, so
    # on shutdown they stop accepting before the service says goodbye.
    # Open sockets are counted per address on every chat listener from the
    # moment they are accepted, before any handshake (policies.py).
    per_address = AddressLimit(
        settings.max_connections_per_ip, trusted_proxies, metrics.connection_refused
    )
    http_factory = per_address.wrap(site)
    for description in settings.port:
        listener = Listener(description, http_factory, reactor)
        listener.setName(f"http:{description}")
        listener.setServiceParent(top)
    line_factory = LineChatFactory(
        context, stream_options, max_connections_per_ip=limits.max_connections_per_ip
    )
    limited_line_factory = per_address.wrap(line_factory)
    for description in settings.tcp:
        listener = Listener(description, limited_line_factory, reactor)
        listener.setName(f"tcp:{description}")
        listener.setServiceParent(top)
    if settings.irc:
        irc_factory = IrcFactory(
            context,
            IrcOptions(
                server_name=settings.irc_server_name,
                motd=read_motd(settings.irc_motd),
                registration_timeout=settings.handshake_timeout,
                ping_interval=settings.ping_interval,
                ping_timeout=settings.ping_timeout,
                allow_guests=settings.allow_guests,
                history_max=limits.history_max,
                tokens=tokens,
            ),
            max_connections_per_ip=limits.max_connections_per_ip,
        )
        limited_irc_factory = per_address.wrap(irc_factory)
        for description in settings.irc:
            listener = Listener(description, limited_irc_factory, reactor)
            listener.setName(f"irc:{description}")
            listener.setServiceParent(top)
    dialect_roots: list[tuple[str, tuple[str, ...], Any]] = [
        ("garinchat", settings.garinchat, GarinChatSocket(garinchat_factory, garinchat_origins)),
        (
            "golang-chat",
            settings.golang_chat,
            GolangChatRoot(golang_chat_factory, settings.allowed_origins),
        ),
        (
            "lildengzi",
            settings.lildengzi,
            LildengziRoot(service, lildengzi_factory, lildengzi_tokens),
        ),
    ]
    for name, descriptions, root in dialect_roots:
        if not descriptions:
            continue
        dialect_site = per_address.wrap(
            make_dialect_site(
                root,
                access_log=settings.access_log,
                server_log=server_log,
                http_timeout=settings.http_timeout,
                head_timeout=settings.http_head_timeout,
                trusted_proxies=trusted_proxies,
            )
        )
        for description in descriptions:
            listener = Listener(description, dialect_site, reactor)
            listener.setName(f"{name}:{description}")
            listener.setServiceParent(top)
    if settings.metrics not in ("yes", "no"):
        metrics_site = make_metrics_site(
            metrics, settings.metrics_token or None, settings.http_head_timeout
        )
        listener = Listener(settings.metrics, metrics_site, reactor)
        listener.setName(f"metrics:{settings.metrics}")
        listener.setServiceParent(top)
    return top
