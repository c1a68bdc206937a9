"""The composition root: ``twistd parkchat`` options, ``makeService``, the
twistd plugin run as a real process, and ``chat.tac``."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import IService, IServiceCollection, MultiService, loadApplication
from twisted.internet import endpoints
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import globalLogPublisher
from twisted.python import usage
from twisted.python.systemd import ListenFDs
from twisted.trial.unittest import TestCase
from twisted.web.server import Site

from parkchat import tap
from parkchat.config import SETTINGS, Settings
from parkchat.protocols import fastpath
from parkchat.protocols.fastpath import CHECKED_AUTOBAHN, CHECKED_TWISTED, Versions
from parkchat.protocols.irc import IrcFactory
from parkchat.protocols.line import LineChatFactory
from parkchat.protocols.policies import AddressLimitedFactory
from parkchat.service import ChatService
from parkchat.store.memory import MemoryStore
from parkchat.store.schema import latest_version
from parkchat.store.sqlite import SQLStore
from parkchat.tap import (
    Listener,
    Options,
    ThreadPoolService,
    freeze_startup_objects,
    makeService,
)
from parkchat.web.dialects import GarinChatSocket, GolangChatRoot, LildengziRoot

ROOT = Path(__file__).resolve().parent.parent
TWISTD = os.path.join(os.path.dirname(sys.executable), "twistd")
LOCAL = "tcp:0:interface=127.0.0.1"

#: The environment before any test patched it, without parkchat's variables
#: or a systemd socket hand-over, for child processes.
CLEAN_ENVIRON = {
    key: value for key, value in os.environ.items() if not key.startswith(("PARKCHAT_", "LISTEN_"))
}


def parse(*argv: str) -> Options:
    options = Options()
    options.parseOptions(list(argv))
    return options


class TapTestCase(TestCase):
    """Runs every test in a controlled environment: no PARKCHAT_* variables
    from the caller's shell, and no systemd sockets."""

    def setUp(self) -> None:
        self.environ: dict[str, str] = dict(CLEAN_ENVIRON)
        self.patch(os, "environ", self.environ)
        # The systemd endpoint reads LISTEN_FDS once, at import.
        self.patch(endpoints._SystemdParser, "_sddaemon", ListenFDs([]))

    def assertUsageError(self, *argv: str) -> str:
        """Parsing ``argv`` fails with a one-line UsageError; return it."""
        error = self.assertRaises(usage.UsageError, parse, *argv)
        message = str(error)
        self.assertTrue(message)
        self.assertNotIn("\n", message)
        self.assertNotIn("Traceback", message)
        return message


class OptionsTests(TapTestCase):
    """tap.Options: parsing, validation and the environment."""

    def test_defaults(self) -> None:
        """No arguments and no environment give the default settings."""
        self.assertEqual(parse().settings, Settings())

    def test_good_values(self) -> None:
        """Options are converted to typed settings."""
        settings = parse(
            "--db",
            ":memory:",
            "--bcrypt-rounds",
            "4",
            "--rate-limit",
            "0",
            "--max-connections-per-ip",
            "5",
            "--access-log",
            "no",
        ).settings
        assert settings is not None
        self.assertEqual(settings.db, ":memory:")
        self.assertEqual(settings.bcrypt_rounds, 4)
        self.assertEqual(settings.rate_limit, 0.0)
        self.assertEqual(settings.max_connections_per_ip, 5)
        self.assertIs(settings.access_log, False)
        self.assertEqual(settings.sources["db"], "cli")

    def test_every_setting_is_an_option(self) -> None:
        """Each entry of SETTINGS can be given as ``--<option>``."""
        options = Options()
        known = set(options.synonyms)
        for setting in SETTINGS:
            self.assertIn(setting.option, known)

    def test_repeated_port(self) -> None:
        """``--port`` may be repeated; bare ports become tcp: endpoints and
        the order is kept."""
        settings = parse("--port", "8080", "--port", LOCAL, "--port", "9090").settings
        assert settings is not None
        self.assertEqual(settings.port, ("tcp:8080", LOCAL, "tcp:9090"))

    def test_bad_values(self) -> None:
        """A bad value is a one-line UsageError naming the option."""
        for argv, expected in [
            (("--bcrypt-rounds", "2"), "--bcrypt-rounds"),
            (("--bcrypt-rounds", "twelve"), "--bcrypt-rounds"),
            (("--rate-limit", "-1"), "--rate-limit"),
            (("--max-connections-per-user", "-5"), "--max-connections-per-user"),
            (("--access-log", "maybe"), "--access-log"),
            (("--port", "http"), "--port"),
            (("--port", "70000"), "--port"),
        ]:
            self.assertIn(expected, self.assertUsageError(*argv))

    def test_unknown_option(self) -> None:
        """An option that does not exist is a UsageError."""
        self.assertUsageError("--no-such-option", "1")

    def test_bad_endpoint(self) -> None:
        """An endpoint string Twisted cannot parse is refused while parsing
        options, quoting it, instead of failing when the server starts."""
        for description in (
            "nonsense:8080",
            "tcp:http",
            "tcp:8080:colour=blue",
            "ssl:8443:privateKey=/no/such/key.pem",
        ):
            message = self.assertUsageError("--port", description)
            self.assertIn(repr(description), message)

    def test_systemd_outside_systemd(self) -> None:
        """A systemd endpoint without a socket from systemd is a UsageError
        that says why (not a bare IndexError)."""
        message = self.assertUsageError("--port", "systemd:domain=INET:index=0")
        self.assertIn("systemd", message)
        self.assertIn("socket", message)

    def test_environment(self) -> None:
        """PARKCHAT_* variables set options; the command line wins over them;
        unknown PARKCHAT_* variables are ignored."""
        self.environ.update(
            {
                "PARKCHAT_DB": ":memory:",
                "PARKCHAT_PORT": f"9000,{LOCAL}",
                "PARKCHAT_BCRYPT_ROUNDS": "5",
                "PARKCHAT_FROM_THE_FUTURE": "1",
            }
        )
        settings = parse("--bcrypt-rounds", "6").settings
        assert settings is not None
        self.assertEqual(settings.db, ":memory:")
        self.assertEqual(settings.port, ("tcp:9000", LOCAL))
        self.assertEqual(settings.bcrypt_rounds, 6)
        settings = parse("--port", "9100").settings
        assert settings is not None
        self.assertEqual(settings.port, ("tcp:9100",))

    def test_secret_file_options(self) -> None:
        """``--admin-token-file`` and friends are options of their own
        (``twistd parkchat --help`` lists them) that read the file."""
        path = Path(self.mktemp())
        path.write_text("kq3VxN8p2LmZ7rT4wY9bC1dF6gH0jS5uE2aQ8nM4\n")
        settings = parse("--db", ":memory:", "--admin-token-file", str(path)).settings
        assert settings is not None
        self.assertEqual(settings.admin_token, "kq3VxN8p2LmZ7rT4wY9bC1dF6gH0jS5uE2aQ8nM4")
        message = self.assertUsageError("--db", ":memory:", "--token-secret-file", "/no/such")
        self.assertIn("--token-secret-file", message)

    def test_bad_environment(self) -> None:
        """A bad value in the environment is a UsageError naming the variable."""
        self.environ["PARKCHAT_MAX_FRAME_SIZE"] = "huge"
        self.assertIn("PARKCHAT_MAX_FRAME_SIZE", self.assertUsageError())

    def test_systemd_from_environment(self) -> None:
        """Endpoints from PARKCHAT_PORT are checked like command-line ones."""
        self.environ["PARKCHAT_PORT"] = "systemd:domain=INET:index=0"
        self.assertIn("systemd", self.assertUsageError())

    def test_config_file(self) -> None:
        """``--config`` reads a TOML file, below the environment and the
        command line; a bad file is a UsageError naming it."""
        path = Path(self.mktemp())
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text('db = ":memory:"\nbcrypt_rounds = 7\nrate_limit = 3\n', encoding="utf-8")
        self.environ["PARKCHAT_RATE_LIMIT"] = "4"
        settings = parse("--config", str(path), "--bcrypt-rounds", "8").settings
        assert settings is not None
        self.assertEqual(
            (settings.db, settings.bcrypt_rounds, settings.rate_limit), (":memory:", 8, 4.0)
        )
        path.write_text("bcrypt_rounds = [\n", encoding="utf-8")
        self.assertIn(str(path), self.assertUsageError("--config", str(path)))


class MakeServiceTests(TapTestCase):
    """makeService: the service tree, inspected without starting it."""

    def make(self, *argv: str) -> tuple[MultiService, MemoryReactorClock]:
        reactor = MemoryReactorClock()
        top = makeService(parse(*argv), reactor)
        self.assertIsInstance(top, MultiService)
        assert isinstance(top, MultiService)
        return top, reactor

    def test_service_tree(self) -> None:
        """The tree is: the bcrypt thread pool, the ChatService named "chat",
        then one HTTP listener per --port, in the order given, each on its
        endpoint and serving the same web site."""
        top, reactor = self.make("--db", ":memory:", "--port", LOCAL, "--port", "9999")
        children = list(top)
        self.assertEqual(len(children), 4)
        self.assertIsInstance(children[0], ThreadPoolService)
        self.assertIsInstance(children[1], ChatService)
        self.assertEqual(children[1].name, "chat")
        self.assertIs(top.getServiceNamed("chat"), children[1])

        listeners = children[2:]
        for listener in listeners:
            self.assertIsInstance(listener, StreamServerEndpointService)
            assert isinstance(listener, StreamServerEndpointService)
            self.assertIsInstance(listener.endpoint, endpoints.TCP4ServerEndpoint)
            self.assertIs(listener.endpoint._reactor, reactor)
            # behind the per-address socket limit (parkchat.protocols.policies)
            self.assertIsInstance(listener.factory, AddressLimitedFactory)
            self.assertIsInstance(listener.factory.wrappedFactory, Site)
        self.assertEqual(
            [(s.endpoint._port, s.endpoint._interface) for s in listeners],
            [(0, "127.0.0.1"), (9999, "")],
        )
        self.assertEqual([s.name for s in listeners], [f"http:{LOCAL}", "http:tcp:9999"])
        self.assertIs(listeners[0].factory, listeners[1].factory)

    def test_default_port(self) -> None:
        """Without --port there is one listener, on tcp:8080."""
        top, _ = self.make("--db", ":memory:")
        [listener] = list(top)[2:]
        assert isinstance(listener, StreamServerEndpointService)
        self.assertEqual(listener.endpoint._port, 8080)

    def test_line_listeners_after_http(self) -> None:
        """``--tcp`` listeners come after the HTTP ones and serve the line
        protocol, not the web site."""
        top, _ = self.make("--db", ":memory:", "--port", LOCAL, "--tcp", "tcp:8989")
        children = list(top)
        self.assertEqual(len(children), 4)
        http, line = children[2], children[3]
        assert isinstance(http, StreamServerEndpointService)
        assert isinstance(line, StreamServerEndpointService)
        self.assertIsInstance(http.factory.wrappedFactory, Site)
        self.assertIsInstance(line.factory.wrappedFactory, LineChatFactory)
        self.assertEqual(line.endpoint._port, 8989)

    def test_irc_listeners(self) -> None:
        """``--irc`` (off by default) adds IRC listeners after the others,
        behind the per-address limit, on the shared context, with the
        registration and ping settings, the server name and the MOTD file."""
        top, _ = self.make("--db", ":memory:", "--port", LOCAL)
        self.assertEqual([s.name for s in list(top)[2:]], [f"http:{LOCAL}"])
        motd = Path(self.mktemp())
        motd.write_text("Welcome to the park\nBe kind\n", encoding="utf-8")
        top, _ = self.make(
            "--db", ":memory:", "--port", LOCAL, "--tcp", "tcp:8989",
            "--irc", "tcp:6667:interface=127.0.0.1", "--irc", "tcp:6668",
            "--irc-server-name", "chat.example.org", "--irc-motd", str(motd),
            "--handshake-timeout", "7", "--ping-interval", "45", "--allow-guests", "no",
        )  # fmt: skip
        _, line, irc1, irc2 = list(top)[2:]
        assert isinstance(irc1, StreamServerEndpointService)
        assert isinstance(irc2, StreamServerEndpointService)
        assert isinstance(line, StreamServerEndpointService)
        self.assertEqual(
            [irc1.name, irc2.name], ["irc:tcp:6667:interface=127.0.0.1", "irc:tcp:6668"]
        )
        factory = irc1.factory.wrappedFactory
        self.assertIsInstance(factory, IrcFactory)
        self.assertIs(irc2.factory.wrappedFactory, factory)
        self.assertIs(irc1.factory.address_limit, line.factory.address_limit)
        self.assertIs(factory.context, line.factory.wrappedFactory.context)
        options = factory.options
        self.assertEqual(options.server_name, "chat.example.org")
        self.assertEqual(options.motd, ("Welcome to the park", "Be kind"))
        self.assertEqual(
            (options.registration_timeout, options.ping_interval, options.allow_guests),
            (7, 45, False),
        )
        self.assertIsNotNone(options.tokens)

    def test_irc_bad_settings(self) -> None:
        """A bad --irc endpoint or server name is a usage error; a MOTD file
        that cannot be read stops the start with one line."""
        self.assertIn("--irc", self.assertUsageError("--irc", "nonsense"))
        self.assertIn("frob", self.assertUsageError("--irc", "frob:1"))
        self.assertIn("server name", self.assertUsageError("--irc-server-name", "no dots"))
        missing = self.mktemp()
        error = self.assertRaises(
            SystemExit, self.make, "--db", ":memory:", "--irc", "tcp:6667", "--irc-motd", missing
        )
        self.assertIn("cannot read the IRC MOTD", str(error))

    def test_hostile_client_settings(self) -> None:
        """--max-connections-per-ip limits sockets on every chat listener
        (one count shared by all), --slow-client-timeout and
        --max-send-buffer reach every WebSocket and TCP factory,
        --http-timeout the site."""
        top, _ = self.make(
            "--db", ":memory:", "--port", LOCAL, "--tcp", "tcp:8989",
            "--max-connections-per-ip", "7", "--slow-client-timeout", "5",
            "--max-send-buffer", "1000", "--http-timeout", "9",
        )  # fmt: skip
        http, line = list(top)[2:]
        assert isinstance(http, StreamServerEndpointService)
        assert isinstance(line, StreamServerEndpointService)
        self.assertIs(http.factory.address_limit, line.factory.address_limit)
        self.assertEqual(http.factory.address_limit.limit, 7)
        site = http.factory.wrappedFactory
        self.assertEqual(site.timeOut, 9)
        context = line.factory.wrappedFactory.context
        policy = context.slow_readers
        self.assertEqual((policy.timeout, policy.max_buffer), (5, 1000))
        ws_root = site.resource.children[b"ws"]
        self.assertIs(ws_root.app_factory.context, context)
        self.assertIs(ws_root.room_socket.factory.context, context)

    def test_adapters_share_one_context(self) -> None:
        """Every protocol factory gets the one AdapterContext (the service,
        its metrics, the reactor, one slow-reader policy, the trusted
        proxies) and its own limit values, by constructor."""
        top, reactor = self.make(
            "--db", ":memory:", "--port", LOCAL, "--tcp", "tcp:8989",
            "--trusted-proxies", "10.0.0.0/8", "--max-connections-per-ip", "3",
            "--rate-limit-strict", "yes",
        )  # fmt: skip
        http, line = list(top)[2:]
        assert isinstance(http, StreamServerEndpointService)
        assert isinstance(line, StreamServerEndpointService)
        service = top.getServiceNamed("chat")
        line_factory = line.factory.wrappedFactory
        context = line_factory.context
        self.assertIs(context.service, service)
        self.assertIs(context.metrics, service.metrics)
        self.assertIs(context.clock, reactor)
        self.assertTrue(context.trusted_proxies.trusts("10.1.2.3"))
        self.assertEqual(line_factory.max_connections_per_ip, 3)
        root = http.factory.wrappedFactory.resource
        ws_root = root.children[b"ws"]
        for factory in (
            ws_root.room_socket.factory,
            ws_root.app_factory,
            root.children[b"mychat"]._factory,
        ):
            self.assertIs(factory.context, context)
        self.assertTrue(ws_root.app_factory.rate_strict)
        self.assertIs(ws_root.portal, service.portal)

    def test_transport_paths_by_version(self) -> None:
        """The transport paths are chosen once, by the installed Twisted and
        Autobahn: on checked versions the fast ones, quietly; on others the
        public-API ones for every factory and the slow-reader policy, with
        one warning."""
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)

        def paths(versions: Versions) -> Any:
            self.patch(Versions, "installed", classmethod(lambda cls: versions))
            del events[:]
            top, _ = self.make("--db", ":memory:", "--tcp", "tcp:8989")
            warnings = [e for e in events if "fast paths" in e.get("log_format", "")]
            line = list(top)[-1]
            assert isinstance(line, StreamServerEndpointService)
            context = line.factory.wrappedFactory.context
            self.assertIs(context.slow_readers._buffered.__self__, context.paths)
            return context.paths, len(warnings)

        self.assertEqual(
            paths(Versions(CHECKED_TWISTED[0], CHECKED_AUTOBAHN[0])), (fastpath.FAST, 0)
        )
        self.assertEqual(paths(Versions("99.1.0", CHECKED_AUTOBAHN[0])), (fastpath.PLAIN, 1))

    def test_dialect_listeners(self) -> None:
        """``--garinchat``, ``--golang-chat`` and ``--lildengzi`` each add a
        listener of their own (after the HTTP and line ones), behind the
        per-address limit, serving only that dialect; the main site has the
        dialects whose paths are free, on the same factories."""
        top, _ = self.make(
            "--db", ":memory:", "--port", LOCAL, "--garinchat", "tcp:8090",
            "--golang-chat", "tcp:9999", "--lildengzi", "tcp:8081",
            "--golang-chat-room", "general",
        )  # fmt: skip
        http, garin, golang, lildengzi = list(top)[2:]
        names = [s.name for s in (garin, golang, lildengzi)]
        self.assertEqual(
            names, ["garinchat:tcp:8090", "golang-chat:tcp:9999", "lildengzi:tcp:8081"]
        )
        roots = []
        for listener in (garin, golang, lildengzi):
            assert isinstance(listener, StreamServerEndpointService)
            self.assertIs(listener.factory.address_limit, http.factory.address_limit)
            roots.append(listener.factory.wrappedFactory.resource)
        self.assertIsInstance(roots[0], GarinChatSocket)
        self.assertIsInstance(roots[1], GolangChatRoot)
        self.assertIsInstance(roots[2], LildengziRoot)
        main = http.factory.wrappedFactory.resource
        self.assertIs(main._garinchat._factory, roots[0]._factory)
        golang_chat = main.children[b"chat"]._factory
        self.assertIs(golang_chat, roots[1].children[b"chat"]._factory)
        self.assertEqual(golang_chat.room, "general")

    def test_lildengzi_default_secret(self) -> None:
        """The seed's default JWT secret is refused with a clear message."""
        message = self.assertUsageError("--lildengzi-secret", "dev-secret-change-me")
        self.assertIn("lildengzi's published default secret", message)

    def test_memory_db(self) -> None:
        """``--db :memory:`` uses the in-memory store and creates no file."""
        top, _ = self.make("--db", ":memory:", "--port", LOCAL)
        service = top.getServiceNamed("chat")
        self.assertIsInstance(service.store, MemoryStore)
        self.assertFalse(os.path.exists(":memory:"))

    def test_sqlite_db(self) -> None:
        """A db path opens the SQLite store, creating the file at the latest
        schema before any listener exists."""
        directory = Path(self.mktemp())
        directory.mkdir()
        path = directory / "chat.db"
        top, _ = self.make("--db", str(path), "--port", LOCAL)
        store = top.getServiceNamed("chat").store
        self.addCleanup(store.close)
        self.assertIsInstance(store, SQLStore)
        self.assertTrue(path.exists())
        conn = sqlite3.connect(path)
        self.addCleanup(conn.close)
        self.assertEqual(
            conn.execute("SELECT version FROM schema_version").fetchall(), [(latest_version(),)]
        )

    def test_db_in_missing_directory(self) -> None:
        """A db path in a directory that does not exist stops start-up with a
        clear message naming the database and the directory."""
        missing = Path(self.mktemp()) / "no-such-dir"
        path = str(missing / "chat.db")
        error = self.assertRaises(SystemExit, self.make, "--db", path, "--port", LOCAL)
        message = str(error.code)
        self.assertIn(path, message)
        self.assertIn("does not exist", message)
        self.assertNotIn("\n", message)
        self.assertFalse(missing.exists())

    def test_plain_dict_options(self) -> None:
        """makeService also accepts a plain options mapping (twistd's
        contract), using the defaults."""
        self.environ["PARKCHAT_DB"] = ":memory:"
        reactor = MemoryReactorClock()
        top = makeService({}, reactor)
        self.assertEqual(len(list(top)), 3)

    def test_start_and_stop(self) -> None:
        """Starting the tree listens on every port; stopping it stops the
        listeners and the chat service."""
        top, reactor = self.make("--db", ":memory:", "--port", LOCAL, "--port", "9999")
        top.startService()
        self.assertEqual(
            [(port, interface) for port, _, _, interface in reactor.tcpServers],
            [(0, "127.0.0.1"), (9999, "")],
        )
        self.successResultOf(top.stopService())
        self.assertFalse(top.running)
        self.assertFalse(top.getServiceNamed("chat").running)


class AccessLogPathTests(TestCase):
    def test_one_file_per_worker(self) -> None:
        """Under parkchat-workers every worker gets the same options; each
        writes (and rotates) an access-log file of its own."""
        self.assertEqual(tap.access_log_path("/var/log/a.log", {}), "/var/log/a.log")
        self.assertEqual(
            tap.access_log_path("/var/log/a.log", {"PARKCHAT_WORKER": "2"}),
            "/var/log/a.log.worker2",
        )
        self.assertIsNone(tap.access_log_path("", {"PARKCHAT_WORKER": "2"}))


class FreezeStartupObjectsTests(TestCase):
    def test_freezes_once_the_reactor_runs(self) -> None:
        """Built before the reactor runs (twistd): the objects are frozen
        when it runs, not before (start-up is not finished until then)."""
        reactor = MemoryReactorClock()
        frozen: list[bool] = []
        freeze_startup_objects(reactor, lambda: frozen.append(True))
        self.assertEqual(frozen, [])
        reactor.run()
        self.assertEqual(frozen, [True])

    def test_not_in_a_running_process(self) -> None:
        """Built in a running reactor (a test, an embedding program): the
        process's objects stay collectable."""
        reactor = MemoryReactorClock()
        reactor.running = True
        frozen: list[bool] = []
        freeze_startup_objects(reactor, lambda: frozen.append(True))
        self.assertEqual((frozen, reactor.whenRunningHooks), ([], []))

    def test_make_service_asks_for_it(self) -> None:
        reactor = MemoryReactorClock()
        makeService(Options(), reactor=reactor)
        hooks = [f for f, _, _ in reactor.whenRunningHooks]
        self.assertIn(tap._collect_and_freeze, hooks)


class TwistdTests(TestCase):
    """``twistd parkchat`` as a real process, bounded by a timeout."""

    def twistd(self, *argv: str) -> subprocess.CompletedProcess[str]:
        cwd = Path(self.mktemp())
        cwd.mkdir(parents=True)
        return subprocess.run(
            [TWISTD, *argv],
            cwd=cwd,
            env=CLEAN_ENVIRON,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def test_help_lists_every_option(self) -> None:
        """``twistd parkchat --help`` succeeds and documents every option of
        parkchat.config.SETTINGS with its environment variable."""
        result = self.twistd("parkchat", "--help")
        self.assertEqual(result.returncode, 0, result.stderr)
        for setting in SETTINGS:
            self.assertIn(f"--{setting.option}=", result.stdout)
            self.assertIn(setting.env, result.stdout.replace(" ", "").replace("\n", ""))
        self.assertIn("--config=", result.stdout)
        self.assertNotIn("Traceback", result.stdout + result.stderr)

    def test_bad_value_is_one_line(self) -> None:
        """``twistd parkchat --bcrypt-rounds 2`` exits non-zero with a single
        error line naming the option, and no traceback."""
        result = self.twistd("parkchat", "--bcrypt-rounds", "2")
        output = result.stdout + result.stderr
        self.assertNotEqual(result.returncode, 0)
        self.assertNotIn("Traceback", output)
        errors = [line for line in output.splitlines() if "got 2" in line]
        self.assertEqual(len(errors), 1, output)
        self.assertIn("--bcrypt-rounds", errors[0])
        self.assertIn("at least 4", errors[0])

    def test_systemd_outside_systemd(self) -> None:
        """A systemd endpoint outside systemd exits with the explanation, not
        a traceback."""
        result = self.twistd("parkchat", "--port", "systemd:domain=INET:index=0")
        output = result.stdout + result.stderr
        self.assertNotEqual(result.returncode, 0)
        self.assertNotIn("Traceback", output)
        self.assertIn("no socket was passed by systemd", output)

    def test_missing_db_directory(self) -> None:
        """A database in a missing directory stops twistd with a clear message
        and no traceback, before anything listens."""
        result = self.twistd(
            "--nodaemon",
            "--pidfile=",
            "--logfile=-",
            "parkchat",
            "--db",
            "/no/such/dir/chat.db",
            "--port",
            LOCAL,
        )
        output = result.stdout + result.stderr
        self.assertNotEqual(result.returncode, 0)
        self.assertNotIn("Traceback", output)
        self.assertIn("cannot open database /no/such/dir/chat.db", output)

    def test_tac_bad_setting_is_one_line(self) -> None:
        """``twistd -y chat.tac`` with a bad setting prints one error line and
        no "Unhandled Error" traceback before it (issue 15, item 7)."""
        env = dict(CLEAN_ENVIRON, PARKCHAT_DB=":memory:", PARKCHAT_BCRYPT_ROUNDS="1")
        cwd = Path(self.mktemp())
        cwd.mkdir(parents=True)
        result = subprocess.run(
            [TWISTD, "--nodaemon", "--pidfile=", "--logfile=-", "-y", str(ROOT / "chat.tac")],
            cwd=cwd, env=env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        output = result.stdout + result.stderr
        self.assertNotEqual(result.returncode, 0)
        self.assertNotIn("Traceback", output)
        self.assertNotIn("Unhandled Error", output)
        lines = [line for line in output.splitlines() if line.strip()]
        self.assertEqual(len(lines), 1, output)
        self.assertIn("PARKCHAT_BCRYPT_ROUNDS", lines[0])

    def test_locked_sqlite_is_one_line(self) -> None:
        """A SQLite file another process holds exclusively locked stops the
        start with one clear line and a non-zero status, no traceback
        (issue 15, item 7)."""
        db = os.path.abspath(os.path.join(self.mktemp(), "chat.db"))
        os.makedirs(os.path.dirname(db))
        holder = sqlite3.connect(db)
        holder.execute("CREATE TABLE t (x)")
        holder.commit()
        holder.execute("PRAGMA locking_mode = EXCLUSIVE")
        holder.execute("BEGIN EXCLUSIVE")
        self.addCleanup(holder.close)
        result = self.twistd(
            "--nodaemon", "--pidfile=", "--logfile=-", "parkchat", "--db", db, "--port", LOCAL
        )
        output = result.stdout + result.stderr
        self.assertNotEqual(result.returncode, 0)
        self.assertNotIn("Traceback", output)
        errors = [line for line in output.splitlines() if db in line]
        self.assertEqual(len(errors), 1, output)
        self.assertIn("locked", errors[0])

    def test_placeholder_secret_is_one_line(self) -> None:
        """The Kubernetes example's admin token is refused at start."""
        result = self.twistd(
            "parkchat",
            "--db",
            ":memory:",
            "--admin-token-file",
            str(self._file("REPLACE-WITH-A-RANDOM-ADMIN-TOKEN-xxxxxxxxxxxxxxxxxx\n")),
        )
        output = result.stdout + result.stderr
        self.assertNotEqual(result.returncode, 0)
        self.assertNotIn("Traceback", output)
        self.assertIn("--admin-token-file", output)
        self.assertIn("placeholder", output)
        self.assertNotIn("REPLACE-WITH", output)

    def _file(self, text: str) -> Path:
        path = Path(self.mktemp())
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path.resolve()

    def test_unwritable_access_log(self) -> None:
        """So does an access-log file that cannot be opened (it would
        otherwise fail only when the HTTP listener starts)."""
        db = os.path.abspath(os.path.join(self.mktemp(), "chat.db"))
        result = self.twistd(
            "--nodaemon",
            "--pidfile=",
            "--logfile=-",
            "parkchat",
            "--db",
            db,
            "--port",
            LOCAL,
            "--access-log-file",
            "/no/such/dir/access.log",
        )
        output = result.stdout + result.stderr
        self.assertNotEqual(result.returncode, 0)
        self.assertNotIn("Traceback", output)
        self.assertIn("cannot open access log /no/such/dir/access.log", output)


class ChatTacTests(TapTestCase):
    """``twistd -y chat.tac``."""

    def test_tac_builds_same_tree(self) -> None:
        """chat.tac evaluates, configured from PARKCHAT_* variables, into an
        application holding the same service tree as ``twistd parkchat``
        (the reactor is not started, nothing listens)."""
        self.environ.update({"PARKCHAT_DB": ":memory:", "PARKCHAT_PORT": LOCAL})
        application = loadApplication(str(ROOT / "chat.tac"), "python")
        [top] = list(IServiceCollection(application))
        self.assertIsInstance(top, MultiService)
        self.assertFalse(IService(application).running)
        children: list[Any] = list(top)
        self.assertEqual(
            [type(child) for child in children],
            [ThreadPoolService, ChatService, Listener],
        )
        self.assertEqual(children[1].name, "chat")
        self.assertIsInstance(children[1].store, MemoryStore)
        self.assertEqual(children[2].name, f"http:{LOCAL}")
        self.assertEqual(
            (children[2].endpoint._port, children[2].endpoint._interface), (0, "127.0.0.1")
        )
        self.assertFalse(children[2].running)

    def test_tac_with_the_example_config(self) -> None:
        """The README's ``PARKCHAT_CONFIG=docs/parkchat.example.toml twistd
        -n -y chat.tac`` builds from a checkout as written: its database
        is a file in the working directory, not in a system directory."""
        cwd = Path(self.mktemp()).resolve()
        cwd.mkdir(parents=True)
        previous = Path.cwd()
        os.chdir(cwd)
        self.addCleanup(os.chdir, previous)
        self.environ["PARKCHAT_CONFIG"] = str(ROOT / "docs" / "parkchat.example.toml")
        application = loadApplication(str(ROOT / "chat.tac"), "python")
        [top] = list(IServiceCollection(application))
        store = top.getServiceNamed("chat").store
        self.addCleanup(store.close)
        self.assertIsInstance(store, SQLStore)
        self.assertTrue((cwd / "chat.db").exists())

    def test_tac_bad_environment(self) -> None:
        """A bad PARKCHAT_* value makes chat.tac stop with one line naming it
        (SystemExit, which twistd does not report as an unhandled error)."""
        self.environ.update({"PARKCHAT_DB": ":memory:", "PARKCHAT_BCRYPT_ROUNDS": "1"})
        error = self.assertRaises(SystemExit, loadApplication, str(ROOT / "chat.tac"), "python")
        self.assertIn("PARKCHAT_BCRYPT_ROUNDS", str(error.code))
        self.assertTrue(str(error.code).startswith("parkchat: "))
