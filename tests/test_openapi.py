"""``docs/openapi.yaml`` against the server (issue 8, item 1).

``OpenApiDocumentTests`` checks the document itself: valid OpenAPI 3.1, every
reference resolves, every error answer is the ``{"error", "message"}`` JSON,
and its paths are exactly the REST resources ``make_site`` mounts.

``OpenApiConformanceTests`` starts a real ``twistd -n parkchat`` on loopback
(``tests.e2e_support.ParkchatProcess``, with an admin token and a registered
user) and lets schemathesis generate requests for every operation, valid
ones and invalid ones, a bounded number each. Every answer must be a status
the document lists for that operation (never a 5xx), with the documented
content type, body schema and headers. The search is derandomized, so CI
sees the same requests every run.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable

from parkchat.protocols.websocket import RoomSocketFactory
from parkchat.tokens import TokenAuthority
from parkchat.web.resources import ApiResource
from tests.e2e_support import ParkchatProcess, basic_auth
from tests.helpers import adapter_context, make_service, site_for

try:
    import schemathesis
    import yaml  # type: ignore[import-untyped]
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_headers_conformance,
        response_schema_conformance,
        status_code_conformance,
    )
    from schemathesis.specs.openapi.definitions import OPENAPI_31_VALIDATOR

    HAVE_SCHEMATHESIS = True
except ImportError:  # pragma: no cover - the test extra installs it
    HAVE_SCHEMATHESIS = False

SPEC = Path(__file__).resolve().parent.parent / "docs" / "openapi.yaml"
ADMIN_TOKEN = "admin-token-for-the-openapi-test-0123456789"
READER = ("openapi-reader", "correct horse battery staple")
#: Examples per operation and generation mode; about 1000 requests in all.
POSITIVE_EXAMPLES = 60
NEGATIVE_EXAMPLES = 40


def load_spec() -> dict[str, Any]:
    with SPEC.open(encoding="utf-8") as f:
        spec: dict[str, Any] = yaml.safe_load(f)
    return spec


def operations_of(schema: Any) -> list[Any]:
    """Every operation schemathesis finds; a definition it cannot use fails."""
    operations = []
    for result in schema.get_all_operations():
        if not hasattr(result, "ok"):
            raise AssertionError(f"unusable operation: {result.err()}")
        operations.append(result.ok())
    return operations


def resolve(spec: dict[str, Any], ref: str) -> Any:
    node: Any = spec
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for value in node.values() for r in refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in refs(value)]
    return []


class OpenApiDocumentTests(SynchronousTestCase):
    """The OpenAPI document on its own."""

    def setUp(self) -> None:
        if not HAVE_SCHEMATHESIS:
            self.skipTest("schemathesis (and PyYAML) are not installed")
        self.spec = load_spec()

    def test_valid_openapi_31(self) -> None:
        """The document validates against the OpenAPI 3.1 meta-schema and
        schemathesis loads every operation from it."""
        self.assertEqual(self.spec["openapi"], "3.1.0")
        errors = [str(e) for e in OPENAPI_31_VALIDATOR.iter_errors(self.spec)]
        self.assertEqual(errors, [])
        schema = schemathesis.openapi.from_path(SPEC)
        operations = operations_of(schema)
        self.assertEqual(len(operations), 19)

    def test_references_resolve(self) -> None:
        """Every ``$ref`` names something the document defines."""
        for ref in refs(self.spec):
            self.assertTrue(ref.startswith("#/"), ref)
            try:
                resolve(self.spec, ref)
            except KeyError:
                self.fail(f"{ref} does not resolve")

    def test_errors_are_documented_json(self) -> None:
        """Every 4xx/5xx answer of every operation is JSON with the Error
        schema; every operation that takes credentials documents its 401."""
        for path, item in self.spec["paths"].items():
            for method, operation in item.items():
                for status, response in operation["responses"].items():
                    if "$ref" in response:
                        response = resolve(self.spec, response["$ref"])
                    if int(status) < 400:
                        continue
                    schema = response["content"]["application/json"]["schema"]
                    self.assertEqual(schema, {"$ref": "#/components/schemas/Error"}, (path, status))
                if "security" in operation:
                    self.assertIn("401", operation["responses"], (method, path))
        error = self.spec["components"]["schemas"]["Error"]
        self.assertEqual(error["required"], ["error", "message"])

    def test_paths_match_the_site(self) -> None:
        """The document describes exactly the REST resources of the site."""
        service, _, clock = make_service()
        self.addCleanup(service.stopService)
        site = site_for(
            service,
            RoomSocketFactory(adapter_context(service), ping_interval=0, handshake_timeout=0),
            tokens=TokenAuthority(b"k" * 32, clock),
            admin_token=ADMIN_TOKEN,
            access_log=False,
        )
        served = set()
        for name, child in site.resource.children.items():
            if isinstance(child, ApiResource) and name != b"ws":
                served.add("/" + name.decode() + ("/{room}" if name == b"history" else ""))
                served.update(f"/{name.decode()}/{sub}" for sub in getattr(child, "subpaths", ()))
        for name, child in site.resource.children[b"admin"].children.items():
            served.add(getattr(child, "path_template", "/admin/" + name.decode()))
        self.assertEqual(set(self.spec["paths"]), served)
        for path, item in self.spec["paths"].items():
            resource_methods = {m.lower() for m in ("GET", "POST")}
            self.assertTrue(set(item) <= resource_methods, path)
            self.assertTrue(re.fullmatch(r"/[a-z/{}]+", path), path)


class OpenApiConformanceTests(SynchronousTestCase):
    """schemathesis against a live server on loopback."""

    def setUp(self) -> None:
        if not HAVE_SCHEMATHESIS:
            self.skipTest("schemathesis is not installed")
        # Throttling off: generated logins fail by the hundred, and 429 would
        # then hide every other answer of /history.
        self.server = ParkchatProcess(
            self.mktemp(),
            tcp=False,
            env={"PARKCHAT_ADMIN_TOKEN": ADMIN_TOKEN, "PARKCHAT_LOGIN_FAILURES": "0"},
        )
        self.server.start()
        self.addCleanup(self.server.stop)
        self.server.register(*READER)
        self.schema = schemathesis.openapi.from_path(SPEC)

    def headers_for(self, operation: Any) -> dict[str, str]:
        security = operation.definition.raw.get("security") or []
        schemes = {name for requirement in security for name in requirement}
        if "adminBearer" in schemes:
            return {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        if "basicAuth" in schemes and operation.path == "/password":
            # Its own account: the first valid request changes the password
            # (later ones are 401s, also documented); READER keeps its own.
            self.server.register("changer", "changer-password")
            return {"Authorization": basic_auth("changer", "changer-password")}
        if "basicAuth" in schemes:
            return {"Authorization": basic_auth(*READER)}
        if "tokenBearer" in schemes:
            # The first valid request revokes it: later ones are 401s, also documented.
            status, body = self.server.request(
                "/login", "POST", {"nickname": READER[0], "password": READER[1]}
            )
            self.assertEqual(status, 200, body)
            return {"Authorization": f"Bearer {json.loads(body)['token']}"}
        return {}

    def test_every_operation_conforms(self) -> None:
        """Generated requests, valid and invalid, get only documented
        statuses, content types, bodies and headers, and never a 5xx."""
        checks = [
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
            response_headers_conformance,
        ]
        base_url = self.server.url("").rstrip("/")
        failures: list[str] = []
        tried = 0
        for operation in operations_of(self.schema):
            headers = self.headers_for(operation)
            for mode, examples in (
                (GenerationMode.POSITIVE, POSITIVE_EXAMPLES),
                (GenerationMode.NEGATIVE, NEGATIVE_EXAMPLES),
            ):
                seen: list[str] = []
                run = _property(operation, mode, examples, _sender(base_url, headers, checks, seen))
                try:
                    run()
                except Unsatisfiable:
                    # Nothing to make invalid (GET /health has no parameters).
                    self.assertEqual(mode, GenerationMode.NEGATIVE, operation.label)
                except Exception as e:  # collect every operation's failures, then fail
                    failures.append(f"{operation.label} ({mode.value}): {e}")
                tried += len(seen)
        self.assertEqual(failures, [], "\n\n".join(failures) + "\n" + self.server.log_tail())
        self.assertGreater(tried, 100)
        if os.environ.get("OPENAPI_REPORT"):
            print(f"schemathesis: {tried} requests")


def _property(
    operation: Any, mode: Any, examples: int, send: Callable[[Any], None]
) -> Callable[[], None]:
    """A bounded, derandomized Hypothesis test of one operation in one mode."""

    @settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        send(case)

    result: Callable[[], None] = run
    return result


def _sender(
    base_url: str, headers: dict[str, str], checks: list[Any], seen: list[str]
) -> Callable[[Any], None]:
    """Send one generated case to the server and validate the answer."""

    def send(case: Any) -> None:
        seen.append(case.path)
        response = case.call(base_url=base_url, headers=headers, timeout=10)
        case.validate_response(response, checks=checks, headers=headers)

    return send
