"""``--seed-config``: starting from a seed's own configuration
(parkchat.seeds, through parkchat.config.resolve)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from twisted.trial.unittest import TestCase

from parkchat.config import ConfigError, resolve
from parkchat.seeds import read_dotenv


class SeedCase(TestCase):
    def setUp(self) -> None:
        self.dir = Path(self.mktemp()).resolve()
        self.dir.mkdir(parents=True)
        cwd = os.getcwd()
        os.chdir(self.dir)
        self.addCleanup(os.chdir, cwd)

    def write(self, name: str, text: str) -> str:
        path = self.dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return str(path)


class GarinChatTests(SeedCase):
    ENV = {
        "ALLOWED_ORIGINS": "https://garin.example,http://localhost:3000",
        "JWT_DECODE_SECRET": "shh",
        "PORT": "8090",
    }

    def test_environment(self) -> None:
        """The three variables become the GarinChat listener, its secret
        and its origins."""
        settings = resolve({"seed_config": ["garinchat"]}, self.ENV)
        self.assertEqual(settings.garinchat, ("tcp:8090",))
        self.assertEqual(settings.garinchat_secret, "shh")
        self.assertEqual(
            settings.garinchat_origins, ("https://garin.example", "http://localhost:3000")
        )
        self.assertEqual(settings.sources["garinchat"], "seed")

    def test_dotenv(self) -> None:
        """``.env`` in the working directory fills what the environment lacks
        (the environment wins, as with godotenv)."""
        self.write(
            ".env",
            "# GarinChat\nexport PORT=9000\nJWT_DECODE_SECRET='a b'\n"
            'ALLOWED_ORIGINS="https://x.example" # comment\n',
        )
        settings = resolve({"seed_config": ["garinchat"]}, {"PORT": "9100"})
        self.assertEqual(settings.garinchat, ("tcp:9100",))
        self.assertEqual(settings.garinchat_secret, "a b")
        self.assertEqual(settings.garinchat_origins, ("https://x.example",))

    def test_named_dotenv(self) -> None:
        path = self.write("deploy/garin.env", "PORT=1\nJWT_DECODE_SECRET=s\nALLOWED_ORIGINS=*\n")
        settings = resolve({"seed_config": [f"garinchat:{path}"]}, {})
        self.assertEqual(settings.garinchat, ("tcp:1",))

    def test_required(self) -> None:
        """The seed refuses to run without all three; so does this."""
        env = dict(self.ENV)
        del env["JWT_DECODE_SECRET"]
        error = self.assertRaises(ConfigError, resolve, {"seed_config": ["garinchat"]}, env)
        self.assertIn("garinchat: JWT_DECODE_SECRET is not set", str(error))

    def test_parkchat_settings_win(self) -> None:
        """The command line and PARKCHAT_* beat the seed's configuration."""
        env = {**self.ENV, "PARKCHAT_GARINCHAT_SECRET": "mine"}
        settings = resolve({"seed_config": ["garinchat"], "garinchat": ["tcp:1"]}, env)
        self.assertEqual((settings.garinchat, settings.garinchat_secret), (("tcp:1",), "mine"))

    def test_not_read_unless_asked(self) -> None:
        """Without --seed-config the generic names mean nothing."""
        settings = resolve({}, self.ENV)
        self.assertEqual((settings.garinchat, settings.garinchat_secret), ((), ""))


class GolangChatTests(SeedCase):
    def test_config_json(self) -> None:
        """``config/config.json``: port on hostName's interface; PORT wins
        and listens on every interface."""
        self.write(
            "config/config.json",
            json.dumps({"port": 9999, "hostName": "127.0.0.1", "logfilePath": "logs.log"}),
        )
        self.assertEqual(
            resolve({"seed_config": ["golang-chat"]}, {}).golang_chat,
            ("tcp:9999:interface=127.0.0.1",),
        )
        self.assertEqual(
            resolve({"seed_config": ["golang-chat"]}, {"PORT": "5000"}).golang_chat,
            ("tcp:5000",),
        )

    def test_missing_or_bad_file(self) -> None:
        error = self.assertRaises(ConfigError, resolve, {"seed_config": ["golang-chat"]}, {})
        self.assertIn("golang-chat: cannot read config/config.json", str(error))
        path = self.write("other.json", '{"port": "9999"}')
        error = self.assertRaises(
            ConfigError, resolve, {"seed_config": [f"golang-chat:{path}"]}, {}
        )
        self.assertIn("expected a numeric port", str(error))


class LildengziTests(SeedCase):
    ENV = {
        "DB_URL": "postgres://u:p@db:5432/chat",
        "REDIS_ADDR": "cache:6380",
        "INSTANCE_ID": "server-2",
        "JWT_SECRET": "a-real-secret",
    }

    def test_environment(self) -> None:
        settings = resolve({"seed_config": ["lildengzi"]}, self.ENV)
        self.assertEqual(settings.db, "postgres://u:p@db:5432/chat")
        self.assertEqual(settings.redis, "redis://cache:6380/0")
        self.assertEqual(settings.lildengzi_secret, "a-real-secret")

    def test_default_secret_refused(self) -> None:
        """The seed's default JWT_SECRET, given or left unset, is refused
        with a message saying why."""
        for env in (
            {**self.ENV, "JWT_SECRET": "dev-secret-change-me"},
            {k: v for k, v in self.ENV.items() if k != "JWT_SECRET"},
        ):
            error = self.assertRaises(ConfigError, resolve, {"seed_config": ["lildengzi"]}, env)
            self.assertIn(
                "'dev-secret-change-me' is lildengzi's published default secret", str(error)
            )
            self.assertIn("JWT_SECRET", str(error))

    def test_db_required(self) -> None:
        env = {k: v for k, v in self.ENV.items() if k != "DB_URL"}
        error = self.assertRaises(ConfigError, resolve, {"seed_config": ["lildengzi"]}, env)
        self.assertIn("lildengzi: DB_URL is not set", str(error))
        settings = resolve({"seed_config": ["lildengzi"], "db": "chat.db"}, env)
        self.assertEqual(settings.db, "chat.db")

    def test_redis_default(self) -> None:
        env = {k: v for k, v in self.ENV.items() if k != "REDIS_ADDR"}
        self.assertEqual(
            resolve({"seed_config": ["lildengzi"]}, env).redis, "redis://localhost:6379/0"
        )


class OptionTests(SeedCase):
    def test_unknown_seed(self) -> None:
        error = self.assertRaises(ConfigError, resolve, {"seed_config": ["parkchat-server"]}, {})
        self.assertIn("unknown seed 'parkchat-server'", str(error))

    def test_dotenv_syntax(self) -> None:
        path = self.write("x.env", "KEY=1\nnot a line\n")
        error = self.assertRaises(ValueError, read_dotenv, path)
        self.assertIn("x.env:2: expected KEY=VALUE", str(error))
