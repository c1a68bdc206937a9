"""The documentation agrees with the code: the configuration reference, the
example configuration file, the error codes and the systemd units."""

from __future__ import annotations

import re
from pathlib import Path

from twisted.trial import unittest

from parkchat import errors
from parkchat.config import SETTINGS, Settings, reference_markdown, resolve

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"

BEGIN = "<!-- BEGIN parkchat.config.reference_markdown() -->\n"
END = "<!-- END parkchat.config.reference_markdown() -->"

REGENERATE = (
    "docs/configuration.md is out of date; replace the block between the markers with "
    'the output of: python -c "from parkchat.config import reference_markdown; '
    "print(reference_markdown(), end='')\""
)


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def all_docs() -> str:
    """README.md and every Markdown file under docs/, as one text."""
    parts = [read(ROOT / "README.md")]
    parts += [read(p) for p in sorted(DOCS.rglob("*.md"))]
    return "\n".join(parts)


def chat_error_codes() -> set[str]:
    found: set[str] = set()
    todo: list[type[errors.ChatError]] = [errors.ChatError]
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if cls.__module__ == errors.__name__ and cls is not errors.ChatError:
            found.add(cls.code)
    return found


class ConfigurationReferenceTests(unittest.TestCase):
    def test_block_matches_code(self) -> None:
        """The generated block in docs/configuration.md is exactly
        ``reference_markdown()``."""
        text = read(DOCS / "configuration.md")
        self.assertEqual(text.count(BEGIN), 1, "BEGIN marker missing or repeated")
        self.assertEqual(text.count(END), 1, "END marker missing or repeated")
        block = text.split(BEGIN, 1)[1].split(END, 1)[0]
        self.assertEqual(block, reference_markdown(), REGENERATE)

    def test_reference_lists_every_setting(self) -> None:
        reference = reference_markdown()
        for setting in SETTINGS:
            with self.subTest(setting=setting.name):
                self.assertIn(f"`--{setting.option} ", reference)
                self.assertIn(f"`{setting.env}`", reference)
                self.assertIn(f"`{setting.name}`", reference)

    def test_every_option_is_documented(self) -> None:
        """Every option, and its environment variable, is named somewhere in
        README.md or docs/ (the reference table counts)."""
        text = all_docs()
        missing = [
            name
            for setting in SETTINGS
            for name in (f"--{setting.option}", setting.env)
            if not re.search(rf"{re.escape(name)}\b", text)
        ]
        missing += [name for name in ("--config", "PARKCHAT_CONFIG") if name not in text]
        self.assertEqual(missing, [], "not named in README.md or docs/*.md")

    def test_reference_is_markdown_table(self) -> None:
        """Each row has the five columns (a stray ``|`` would add one)."""
        rows = [line for line in reference_markdown().splitlines() if line.startswith("|")]
        file_forms = sum(1 for setting in SETTINGS if setting.file_form)
        self.assertEqual(len(rows), len(SETTINGS) + file_forms + 3)
        for row in rows:
            cells = re.split(r"(?<!\\)\|", row)
            self.assertEqual(len(cells), 7, row)


class ExampleConfigTests(unittest.TestCase):
    def test_example_file_resolves(self) -> None:
        """docs/parkchat.example.toml is accepted as it is, sets only known
        keys, and the values it sets are the ones used."""
        path = DOCS / "parkchat.example.toml"
        settings = resolve({}, {}, str(path))
        self.assertIsInstance(settings, Settings)
        self.assertEqual(settings.port, ("tcp:8080:interface=127.0.0.1",))
        self.assertEqual(settings.db, "chat.db")
        self.assertEqual(settings.sources["port"], "file")
        self.assertEqual(settings.sources["db"], "file")

    def test_environment_overrides_example_file(self) -> None:
        path = DOCS / "parkchat.example.toml"
        settings = resolve({}, {"PARKCHAT_RATE_LIMIT": "0"}, str(path))
        self.assertEqual(settings.rate_limit, 0)
        self.assertEqual(settings.sources["rate_limit"], "env")


class ProtocolDocTests(unittest.TestCase):
    def test_every_error_code_is_documented(self) -> None:
        text = read(DOCS / "protocol.md")
        missing = [code for code in sorted(chat_error_codes()) if f"`{code}`" not in text]
        self.assertEqual(missing, [], "error codes missing from docs/protocol.md")

    def test_close_codes_documented(self) -> None:
        text = read(DOCS / "protocol.md")
        missing = [code for code in ("1001", "1008", "1009") if f"`{code}`" not in text]
        self.assertEqual(missing, [], "close codes missing from docs/protocol.md")


class SystemdUnitTests(unittest.TestCase):
    def test_units_in_operations_doc_match_files(self) -> None:
        """The unit files shown in docs/operations.md are the ones shipped in
        deploy/systemd/, line for line."""
        text = read(DOCS / "operations.md")
        for name in ("parkchat.socket", "parkchat.service"):
            with self.subTest(unit=name):
                unit = read(ROOT / "deploy" / "systemd" / name)
                self.assertIn(f"```ini\n# /etc/systemd/system/{name}\n{unit}```", text)

    def test_service_uses_socket_activation(self) -> None:
        unit = read(ROOT / "deploy" / "systemd" / "parkchat.service")
        self.assertIn("--port systemd:domain=INET:index=0", unit)
        self.assertIn("--nodaemon --pidfile= --logfile=-", unit)


class ContinuousIntegrationTests(unittest.TestCase):
    def test_github_workflow_runs_the_ci_script(self) -> None:
        """.github/workflows/ci.yml runs .ci/run on pushes and pull requests,
        with PostgreSQL and Redis service containers, in Debian with its
        chromium (as .ci/run expects them)."""
        import yaml

        workflow = yaml.safe_load(read(ROOT / ".github" / "workflows" / "ci.yml"))
        triggers = workflow[True]  # YAML 1.1 reads the key "on" as true
        self.assertIn("push", triggers)
        self.assertIn("pull_request", triggers)
        job = workflow["jobs"]["ci"]
        self.assertEqual(sorted(job["services"]), ["postgres", "redis"])
        self.assertEqual(job["services"]["postgres"]["env"], {"POSTGRES_HOST_AUTH_METHOD": "trust"})
        script = "\n".join(step.get("run", "") for step in job["steps"])
        self.assertIn("bash .ci/run", script)
        self.assertIn("chromium", script)
        self.assertIn("bookworm", script)
