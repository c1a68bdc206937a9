"""Settings: defaults, the CLI > env > file > default merge, and bad values."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

from twisted.trial.unittest import TestCase

from parkchat.config import (
    SETTINGS,
    SETTINGS_BY_NAME,
    ConfigError,
    Settings,
    endpoint_description,
    resolve,
)


class ConfigTestCase(TestCase):
    def toml(self, text: str) -> str:
        """Write ``text`` to a new TOML file and return its path."""
        path = Path(self.mktemp())
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return str(path)

    def assertConfigError(self, *names: str, **kwargs: object) -> ConfigError:
        """resolve(**kwargs) fails with one line naming each of ``names``;
        the environment is empty unless given."""
        kwargs.setdefault("environ", {})
        error = self.assertRaises(ConfigError, resolve, **kwargs)
        message = str(error)
        for name in names:
            self.assertIn(name, message)
        self.assertNotIn("\n", message)
        return error


class DefaultsTests(ConfigTestCase):
    """Nothing given anywhere."""

    def test_defaults(self) -> None:
        """With no CLI value, environment or file, every setting has its
        documented default, and each is reported as coming from "default"."""
        settings = resolve({}, {})
        self.assertEqual(settings, Settings())
        self.assertEqual(settings.port, ("tcp:8080",))
        self.assertEqual(settings.db, "chat.db")
        self.assertEqual(settings.bcrypt_rounds, 12)
        self.assertEqual(settings.rate_limit, 10.0)
        self.assertEqual(settings.max_connections_per_user, 20)
        self.assertEqual(settings.max_connections_per_ip, 1000)
        self.assertIs(settings.access_log, True)
        self.assertEqual(dict(settings.sources), {s.name: "default" for s in SETTINGS})

    def test_table_matches_settings(self) -> None:
        """SETTINGS and the Settings dataclass agree on names and defaults, so
        no option can be documented with one default and run with another."""
        defaults = {f.name: f.default for f in fields(Settings) if f.name != "sources"}
        self.assertEqual(defaults, {s.name: s.default for s in SETTINGS})

    def test_none_on_cli_means_not_given(self) -> None:
        """A CLI value of None (an option not given) does not hide the
        environment."""
        settings = resolve({"db": None}, {"PARKCHAT_DB": "env.db"})
        self.assertEqual(settings.db, "env.db")

    def test_option_names(self) -> None:
        """Each setting ``foo_bar`` is the option ``--foo-bar``, the variable
        ``PARKCHAT_FOO_BAR`` and the TOML key ``foo_bar``."""
        setting = SETTINGS_BY_NAME["max_connections_per_ip"]
        self.assertEqual(setting.option, "max-connections-per-ip")
        self.assertEqual(setting.env, "PARKCHAT_MAX_CONNECTIONS_PER_IP")


class PrecedenceTests(ConfigTestCase):
    """CLI > env > file > default."""

    def test_scalar(self) -> None:
        """A scalar setting takes the value of the highest layer that has it."""
        path = self.toml("rate_limit = 5\n")
        env = {"PARKCHAT_RATE_LIMIT": "3"}
        cli = {"rate_limit": "1"}
        self.assertEqual(resolve({}, {}, path).rate_limit, 5.0)
        self.assertEqual(resolve({}, env, path).rate_limit, 3.0)
        self.assertEqual(resolve(cli, env, path).rate_limit, 1.0)
        self.assertEqual(resolve(cli, {}, None).rate_limit, 1.0)
        settings = resolve(cli, env, path)
        self.assertEqual(settings.sources["rate_limit"], "cli")
        self.assertEqual(resolve({}, env, path).sources["rate_limit"], "env")
        self.assertEqual(resolve({}, {}, path).sources["rate_limit"], "file")

    def test_layers_mix(self) -> None:
        """Different settings can come from different layers at once."""
        path = self.toml('db = "file.db"\nbcrypt_rounds = 5\nrate_limit = 2\n')
        settings = resolve({"db": "cli.db"}, {"PARKCHAT_BCRYPT_ROUNDS": "6"}, path)
        self.assertEqual(
            (settings.db, settings.bcrypt_rounds, settings.rate_limit, settings.ping_timeout),
            ("cli.db", 6, 2.0, 20.0),
        )

    def test_port(self) -> None:
        """``port`` is a list in TOML, comma-separated in PARKCHAT_PORT and
        repeated on the command line; the highest layer replaces (does not
        extend) the lower ones, and bare ports become tcp: endpoints."""
        path = self.toml('port = [8081, "tcp:8082:interface=127.0.0.1"]\n')
        env = {"PARKCHAT_PORT": "8083, unix:/tmp/chat.sock"}
        cli = {"port": ["8084", "tcp:8085"]}
        self.assertEqual(resolve({}, {}, path).port, ("tcp:8081", "tcp:8082:interface=127.0.0.1"))
        self.assertEqual(resolve({}, env, path).port, ("tcp:8083", "unix:/tmp/chat.sock"))
        self.assertEqual(resolve(cli, env, path).port, ("tcp:8084", "tcp:8085"))

    def test_irc(self) -> None:
        """``irc`` is off by default and set like ``port`` (a TOML list,
        PARKCHAT_IRC comma-separated, --irc repeated); the server name and
        MOTD file have their own keys."""
        self.assertEqual(resolve({}, {}).irc, ())
        path = self.toml('irc = ["6667"]\nirc_server_name = "irc.example.org"\n')
        env = {"PARKCHAT_IRC": "ssl:6697:privateKey=k.pem, tcp:6667", "PARKCHAT_IRC_MOTD": "m"}
        self.assertEqual(resolve({}, {}, path).irc, ("tcp:6667",))
        self.assertEqual(resolve({}, {}, path).irc_server_name, "irc.example.org")
        settings = resolve({"irc": ["7000"]}, env, path)
        self.assertEqual(settings.irc, ("tcp:7000",))
        self.assertEqual(resolve({}, env, path).irc, ("ssl:6697:privateKey=k.pem", "tcp:6667"))
        self.assertEqual(settings.irc_motd, "m")

    def test_port_single_toml_string(self) -> None:
        """In TOML a single string is accepted for ``port`` as well as a list."""
        path = self.toml('port = "tcp:9002"\n')
        self.assertEqual(resolve({}, {}, path).port, ("tcp:9002",))

    def test_port_single_env_value(self) -> None:
        """PARKCHAT_PORT with one value gives one listener."""
        self.assertEqual(resolve({}, {"PARKCHAT_PORT": "9000"}).port, ("tcp:9000",))

    def test_parkchat_table(self) -> None:
        """Settings may sit under a top-level ``[parkchat]`` table."""
        path = self.toml('[parkchat]\nport = ["9001"]\nrate_limit = 0\naccess_log = false\n')
        settings = resolve({}, {}, path)
        self.assertEqual(settings.port, ("tcp:9001",))
        self.assertEqual(settings.rate_limit, 0.0)
        self.assertIs(settings.access_log, False)

    def test_config_path_from_env(self) -> None:
        """PARKCHAT_CONFIG names the file when no path is passed; an explicit
        path (--config) wins over it."""
        from_env = self.toml("bcrypt_rounds = 7\n")
        explicit = self.toml("bcrypt_rounds = 8\n")
        env = {"PARKCHAT_CONFIG": from_env}
        self.assertEqual(resolve({}, env).bcrypt_rounds, 7)
        self.assertEqual(resolve({}, env, explicit).bcrypt_rounds, 8)

    def test_unknown_env_ignored(self) -> None:
        """PARKCHAT_* variables this version does not know are ignored (they
        may belong to a newer version), as are unrelated variables."""
        settings = resolve(
            {},
            {"PARKCHAT_NO_SUCH_OPTION": "1", "PARKCHAT_": "x", "DB": "other.db", "PORT": "1"},
        )
        self.assertEqual(settings, Settings())

    def test_env_types(self) -> None:
        """Environment strings are converted to the setting's type."""
        settings = resolve(
            {},
            {
                "PARKCHAT_BCRYPT_ROUNDS": "10",
                "PARKCHAT_PING_INTERVAL": "2.5",
                "PARKCHAT_ACCESS_LOG": "no",
                "PARKCHAT_MAX_CONNECTIONS_PER_USER": "0",
            },
        )
        self.assertEqual(settings.bcrypt_rounds, 10)
        self.assertEqual(settings.ping_interval, 2.5)
        self.assertIs(settings.access_log, False)
        self.assertEqual(settings.max_connections_per_user, 0)

    def test_bool_spellings(self) -> None:
        """Booleans accept yes/no, true/false, on/off, 1/0 in any case."""
        for text in ("yes", "TRUE", "On", "1"):
            self.assertIs(resolve({"access_log": text}, {}).access_log, True, text)
        for text in ("no", "False", "OFF", "0"):
            self.assertIs(resolve({"access_log": text}, {}).access_log, False, text)


class BadValueTests(ConfigTestCase):
    """Every bad value is a ConfigError naming the option and the layer."""

    def test_bcrypt_rounds_too_low(self) -> None:
        """bcrypt_rounds below 4 is refused, in every layer, naming it."""
        self.assertConfigError("--bcrypt-rounds", "at least 4", cli={"bcrypt_rounds": "3"})
        self.assertConfigError(
            "PARKCHAT_BCRYPT_ROUNDS", "at least 4", cli={}, environ={"PARKCHAT_BCRYPT_ROUNDS": "3"}
        )
        path = self.toml("bcrypt_rounds = 3\n")
        self.assertConfigError("bcrypt_rounds", path, cli={}, environ={}, config_path=path)

    def test_bcrypt_rounds_too_high(self) -> None:
        """bcrypt_rounds above bcrypt's maximum (31) is refused."""
        self.assertConfigError("--bcrypt-rounds", "31", cli={"bcrypt_rounds": "32"})

    def test_negative_limits(self) -> None:
        """Negative limits are refused; 0 (off) is accepted."""
        for name in ("max_connections_per_user", "max_connections_per_ip", "rate_limit"):
            option = "--" + name.replace("_", "-")
            self.assertConfigError(option, "-1", cli={name: "-1"}, environ={})
            self.assertEqual(getattr(resolve({name: "0"}, {}), name), 0)

    def test_not_a_number(self) -> None:
        """Text where a number belongs is refused, quoting the value."""
        self.assertConfigError("--rate-limit", "'fast'", cli={"rate_limit": "fast"}, environ={})
        self.assertConfigError(
            "PARKCHAT_MAX_CONNECTIONS_PER_IP",
            "whole number",
            cli={},
            environ={"PARKCHAT_MAX_CONNECTIONS_PER_IP": "1.5"},
        )
        self.assertConfigError("--ping-interval", cli={"ping_interval": "nan"}, environ={})
        self.assertConfigError("--ping-interval", cli={"ping_interval": "inf"}, environ={})

    def test_toml_wrong_types(self) -> None:
        """A TOML value of the wrong type (a string or a boolean for a number,
        a table for a port list) is refused, naming the key."""
        for text, key in [
            ('bcrypt_rounds = "many"\n', "bcrypt_rounds"),
            ("bcrypt_rounds = true\n", "bcrypt_rounds"),
            ("max_connections_per_ip = 1.5\n", "max_connections_per_ip"),
            ("port = { a = 1 }\n", "port"),
            ("port = []\n", "port"),
            ('db = ""\n', "db"),
        ]:
            path = self.toml(text)
            self.assertConfigError(key, cli={}, environ={}, config_path=path)

    def test_bad_bool(self) -> None:
        """'maybe' is neither yes nor no."""
        error = self.assertConfigError(
            "PARKCHAT_ACCESS_LOG", "'maybe'", cli={}, environ={"PARKCHAT_ACCESS_LOG": "maybe"}
        )
        self.assertIn("yes or no", str(error))

    def test_ping_timeout_zero(self) -> None:
        """A zero pong timeout would drop every connection: refused."""
        self.assertConfigError("--ping-timeout", cli={"ping_timeout": "0"}, environ={})

    def test_bad_ports(self) -> None:
        """A port that is neither a number in range nor an endpoint string is
        refused; an empty PARKCHAT_PORT is refused too."""
        self.assertConfigError("--port", "70000", cli={"port": ["70000"]}, environ={})
        self.assertConfigError("--port", "'eighty'", cli={"port": ["eighty"]}, environ={})
        self.assertConfigError("PARKCHAT_PORT", cli={}, environ={"PARKCHAT_PORT": " , "})

    def test_bad_value_below_good_one_is_not_read(self) -> None:
        """A bad value in a lower layer does not matter when a higher layer
        sets the option."""
        path = self.toml("bcrypt_rounds = 3\n")
        settings = resolve({"bcrypt_rounds": "5"}, {"PARKCHAT_BCRYPT_ROUNDS": "x"}, path)
        self.assertEqual(settings.bcrypt_rounds, 5)

    def test_unknown_toml_key(self) -> None:
        """A TOML key that is not a setting is an error naming it (a typo in
        a file must not be silently ignored), also inside [parkchat]."""
        for text in ("bcrypt_round = 5\nrate_limt = 1\n", "[parkchat]\nbogus = 1\n"):
            path = self.toml(text)
            error = self.assertConfigError(path, cli={}, environ={}, config_path=path)
            self.assertIn("unknown", str(error))
        path = self.toml("bcrypt_round = 5\nrate_limt = 1\n")
        self.assertConfigError("bcrypt_round", "rate_limt", cli={}, config_path=path)

    def test_invalid_toml(self) -> None:
        """A file that is not TOML is a ConfigError naming the file."""
        path = self.toml("port = [8080\n")
        error = self.assertConfigError(path, cli={}, environ={}, config_path=path)
        self.assertIn("not valid TOML", str(error))

    def test_missing_file(self) -> None:
        """A config file that cannot be read is a ConfigError naming it."""
        path = self.mktemp()
        error = self.assertConfigError(path, cli={}, environ={}, config_path=path)
        self.assertIn("cannot read", str(error))

    def test_missing_file_from_env(self) -> None:
        """A PARKCHAT_CONFIG naming a missing file is an error too."""
        path = self.mktemp()
        self.assertConfigError(path, cli={}, environ={"PARKCHAT_CONFIG": path})


class EndpointDescriptionTests(TestCase):
    """endpoint_description: bare ports and endpoint strings."""

    def test_bare_port(self) -> None:
        """A bare port number means TCP on every interface."""
        self.assertEqual(endpoint_description("8080"), "tcp:8080")
        self.assertEqual(endpoint_description(8080), "tcp:8080")
        self.assertEqual(endpoint_description(" 0 "), "tcp:0")

    def test_endpoint_string_unchanged(self) -> None:
        """An endpoint string is passed through as given."""
        for text in (
            "tcp:8080:interface=127.0.0.1",
            "ssl:8443:privateKey=key.pem",
            "systemd:domain=INET:index=0",
            "unix:/run/parkchat.sock",
        ):
            self.assertEqual(endpoint_description(text), text)

    def test_bad(self) -> None:
        """Empty text, booleans, out-of-range ports and words are refused."""
        for value in ("", "   ", True, "65536", "http", "-1"):
            self.assertRaises(ValueError, endpoint_description, value)


GOOD_SECRET = "kq3VxN8p2LmZ7rT4wY9bC1dF6gH0jS5uE2aQ8nM4"


class SecretFileTests(ConfigTestCase):
    """Every secret option has a file form (issue 15, item 13)."""

    def secret_file(self, text: str | bytes) -> str:
        path = Path(self.mktemp())
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
        return str(path)

    def test_every_secret_has_a_file_form(self) -> None:
        """The SECRET options and the URLs that can carry a password."""
        with_file = {s.name for s in SETTINGS if s.file_form}
        secrets = {s.name for s in SETTINGS if s.metavar == "SECRET"}
        self.assertEqual(with_file, secrets | {"db", "redis"})
        self.assertIn("admin_token", with_file)

    def test_cli_env_and_toml_forms(self) -> None:
        """``--x-file``, ``PARKCHAT_X_FILE`` and TOML ``x_file`` read the file,
        without its trailing newline."""
        path = self.secret_file(GOOD_SECRET + "\n")
        self.assertEqual(resolve({"admin_token_file": path}, {}).admin_token, GOOD_SECRET)
        settings = resolve({}, {"PARKCHAT_TOKEN_SECRET_FILE": path})
        self.assertEqual(settings.token_secret, GOOD_SECRET)
        self.assertEqual(settings.sources["token_secret"], "env")
        config = self.toml(f'metrics_token_file = "{path}"\n')
        self.assertEqual(resolve({}, {}, config).metrics_token, GOOD_SECRET)
        crlf = self.secret_file(GOOD_SECRET + "\r\n")
        self.assertEqual(resolve({"admin_token_file": crlf}, {}).admin_token, GOOD_SECRET)

    def test_database_url_from_a_file(self) -> None:
        url = "postgresql://parkchat:Zk81mqPwXv3s@db.internal:5432/parkchat"
        path = self.secret_file(url + "\n")
        self.assertEqual(resolve({}, {"PARKCHAT_DB_FILE": path}).db, url)
        redis = self.secret_file("redis://:Zk81mqPwXv3s@redis.internal:6379/0\n")
        self.assertEqual(
            resolve({"redis_file": redis}, {}).redis, "redis://:Zk81mqPwXv3s@redis.internal:6379/0"
        )

    def test_precedence_between_layers(self) -> None:
        """The command line's file beats the environment's value, which
        beats the TOML file's file form."""
        path = self.secret_file(GOOD_SECRET)
        other = "0" * 8 + GOOD_SECRET
        settings = resolve({"admin_token_file": path}, {"PARKCHAT_ADMIN_TOKEN": other})
        self.assertEqual(settings.admin_token, GOOD_SECRET)
        settings = resolve(
            {}, {"PARKCHAT_ADMIN_TOKEN": other}, self.toml(f'admin_token_file = "{path}"')
        )
        self.assertEqual(settings.admin_token, other)

    def test_both_forms_in_one_layer(self) -> None:
        path = self.secret_file(GOOD_SECRET)
        self.assertConfigError(
            "PARKCHAT_ADMIN_TOKEN",
            "PARKCHAT_ADMIN_TOKEN_FILE",
            "both",
            cli={},
            environ={"PARKCHAT_ADMIN_TOKEN": GOOD_SECRET, "PARKCHAT_ADMIN_TOKEN_FILE": path},
        )

    def test_unreadable_file(self) -> None:
        """A missing, empty or non-UTF-8 file is one clear line naming it."""
        missing = str(Path(self.mktemp()) / "nope")
        error = self.assertConfigError(
            "--admin-token-file", missing, "No such file", cli={"admin_token_file": missing}
        )
        self.assertNotIn(GOOD_SECRET, str(error))
        self.assertConfigError(
            "PARKCHAT_TOKEN_SECRET_FILE", "empty", cli={},
            environ={"PARKCHAT_TOKEN_SECRET_FILE": self.secret_file("\n")},
        )  # fmt: skip
        self.assertConfigError(
            "--admin-token-file", "UTF-8", cli={"admin_token_file": self.secret_file(b"\xff\xfe")}
        )

    def test_file_value_is_checked_like_any_other(self) -> None:
        """A short secret from a file is refused as from anywhere, and the
        message says which file; the secret is not echoed."""
        path = self.secret_file("short\n")
        error = self.assertConfigError(
            "--admin-token-file", path, "32 bytes", cli={"admin_token_file": path}
        )
        self.assertNotIn("'short'", str(error))


class PlaceholderSecretTests(ConfigTestCase):
    """Example placeholders are refused at start (issue 15, item 13)."""

    def test_placeholders_refused(self) -> None:
        for value in (
            "REPLACE-WITH-A-RANDOM-ADMIN-TOKEN",
            "REPLACE-WITH-AT-LEAST-32-RANDOM-BYTES-xxxxxxxxxxxxxxxx",
            "change-me-at-least-32-bytes-of-random-text-0000",
            "CHANGE_ME_CHANGE_ME_CHANGE_ME_CHANGE_ME",
            "changeme-changeme-changeme-changeme-1",
            "an-example-secret-that-is-long-enough-to-pass",
            "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "your-secret-goes-here-32-bytes-at-the-very-least",
        ):
            for name in ("admin_token", "token_secret", "external_jwt_secret", "metrics_token"):
                error = self.assertConfigError(f"--{name.replace('_', '-')}", "placeholder",
                                               cli={name: value})  # fmt: skip
                self.assertNotIn(value, str(error))

    def test_short_placeholders_refused_for_seed_secrets(self) -> None:
        """The seeds' secrets may be short, but not a placeholder."""
        for value in ("secret", "changeme", "CHANGE_ME", "example"):
            self.assertConfigError("--garinchat-secret", "placeholder",
                                   cli={"garinchat_secret": value})  # fmt: skip
        self.assertEqual(resolve({"garinchat_secret": "s3Kr1t"}, {}).garinchat_secret, "s3Kr1t")

    def test_placeholder_passwords_in_urls(self) -> None:
        self.assertConfigError(
            "PARKCHAT_DB", "placeholder", cli={},
            environ={"PARKCHAT_DB": "postgresql://parkchat:REPLACE-ME@db:5432/parkchat"},
        )  # fmt: skip
        self.assertConfigError(
            "--redis", "placeholder", cli={"redis": "redis://:changeme@redis:6379/0"}
        )
        self.assertEqual(
            resolve({"db": "postgresql://parkchat:Zk81mqPwXv3s@db/parkchat"}, {}).db,
            "postgresql://parkchat:Zk81mqPwXv3s@db/parkchat",
        )

    def test_real_secrets_accepted(self) -> None:
        """Random secrets (base64, hex, token_urlsafe) pass."""
        import secrets

        for value in (GOOD_SECRET, secrets.token_hex(32), secrets.token_urlsafe(48)):
            self.assertEqual(resolve({"admin_token": value}, {}).admin_token, value)

    def test_shipped_examples_are_refused_or_accepted_as_meant(self) -> None:
        """The Kubernetes example's placeholders are refused (applying it
        unchanged must not start a server with a public admin token), and
        the Docker example holds no secret at all any more."""
        root = Path(__file__).resolve().parent.parent
        k8s = (root / "deploy" / "k8s" / "secret.example.yaml").read_text()
        for key, option in (("token_secret", "token_secret"), ("admin_token", "admin_token"),
                            ("db_url", "db")):  # fmt: skip
            line = next(li for li in k8s.splitlines() if li.strip().startswith(f"{key}:"))
            value = line.split(":", 1)[1].strip().strip('"')
            self.assertConfigError("placeholder", cli={option: value})
        env = (root / "deploy" / "docker" / ".env.example").read_text()
        assignments = [li for li in env.splitlines() if "=" in li and not li.startswith("#")]
        self.assertFalse([li for li in assignments if "SECRET" in li or "TOKEN" in li
                          or "PASSWORD" in li])  # fmt: skip
