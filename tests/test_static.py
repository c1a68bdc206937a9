"""The browser client's files at ``/`` (parkchat.web.page), in memory.

Requests go over loopback HTTP (treq, a non-persistent pool) to the real
resource tree of ``make_site`` listening on ``127.0.0.1:0``: the files are
sent by ``twisted.web.static.File``'s producers, which need a real transport.
The page's own files are read to check that they satisfy the
Content-Security-Policy they are served with (no inline script or style, no
HTML built from strings).
"""

from __future__ import annotations

import configparser
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import treq
from twisted.internet import reactor
from twisted.trial.unittest import TestCase
from twisted.web.client import HTTPConnectionPool
from twisted.web.iweb import IResponse
from twisted.web.resource import IResource
from twisted.web.server import Site

from parkchat.web.page import STATIC_DIR, SiteRoot, StaticFiles, content_security_policy
from tests.helpers import make_service, site_for

ROOT = Path(__file__).resolve().parent.parent
#: The checkout's copy (in CI, STATIC_DIR is the installed package's copy).
SOURCE_STATIC = ROOT / "parkchat" / "web" / "static"
#: The page's ES modules: app.js is the entry point, the others its parts
#: (docs/browser.md, "How the page is built").
PAGE_MODULES = (
    "app.js",
    "account.js",
    "api.js",
    "client.js",
    "composer.js",
    "connection.js",
    "conversations.js",
    "direct.js",
    "dom.js",
    "drawer.js",
    "editing.js",
    "messagelog.js",
    "notify.js",
    "preferences.js",
    "render.js",
    "richtext.js",
    "rooms.js",
    "search.js",
    "session.js",
    "state.js",
    "view.js",
)
PAGE_FILES = ("index.html", *PAGE_MODULES, "style.css", "favicon.svg")


class LoopbackCase(TestCase):
    """Serve a resource on a free loopback port for the test."""

    def serve(self, resource: IResource) -> None:
        site = Site(resource)
        site.log = lambda request: None  # type: ignore[method-assign]
        port: Any = reactor.listenTCP(0, site, interface="127.0.0.1")  # type: ignore[attr-defined]
        self.addCleanup(port.stopListening)
        self.base = f"http://127.0.0.1:{port.getHost().port}"
        self.pool = HTTPConnectionPool(reactor, persistent=False)
        self.addCleanup(self.pool.closeCachedConnections)

    async def fetch(
        self, path: str, method: str = "GET", headers: dict[str, str] | None = None
    ) -> tuple[IResponse, bytes]:
        # treq would normalise "/../x" away: send the path exactly as given.
        response = await treq.request(
            method, (self.base + path).encode("ascii"), headers=headers or {}, pool=self.pool
        )
        return response, await treq.content(response)


class StubCase(LoopbackCase):
    def setUp(self) -> None:
        self.service, _, _ = make_service()
        self.addCleanup(self.service.stopService)
        self.serve(site_for(self.service).resource)

    def header(self, response: IResponse, name: str) -> str | None:
        values = response.headers.getRawHeaders(name)
        return values[0] if values else None


class PageTests(StubCase):
    async def test_index(self) -> None:
        """``GET /`` is the page, as UTF-8 HTML, never sniffed, revalidated
        on every use, with no referrer and no framing."""
        response, body = await self.fetch("/")
        self.assertEqual(response.code, 200)
        self.assertEqual(self.header(response, "Content-Type"), "text/html; charset=utf-8")
        self.assertIn(b'<script type="module" src="app.js"></script>', body)
        self.assertEqual(body, (STATIC_DIR / "index.html").read_bytes())
        self.assertEqual(self.header(response, "X-Content-Type-Options"), "nosniff")
        self.assertEqual(self.header(response, "Referrer-Policy"), "no-referrer")
        self.assertEqual(self.header(response, "Cache-Control"), "no-cache")
        self.assertEqual(self.header(response, "X-Frame-Options"), "DENY")
        self.assertIsNotNone(self.header(response, "Last-Modified"))

    async def test_index_html_is_the_same_page(self) -> None:
        response, body = await self.fetch("/index.html")
        self.assertEqual(response.code, 200)
        self.assertEqual(body, (await self.fetch("/"))[1])

    async def test_csp(self) -> None:
        """Scripts, styles and images from this origin only, WebSockets to
        this host only, nothing inline, no framing, forms go nowhere."""
        response, _ = await self.fetch("/")
        csp = self.header(response, "Content-Security-Policy")
        assert csp is not None
        host = self.base.removeprefix("http://")
        directives = {
            d.split()[0]: d.split()[1:] for d in (part.strip() for part in csp.split(";")) if d
        }
        self.assertEqual(directives["default-src"], ["'none'"])
        self.assertEqual(directives["script-src"], ["'self'"])
        self.assertEqual(directives["style-src"], ["'self'"])
        self.assertEqual(directives["img-src"], ["'self'"])
        self.assertEqual(directives["connect-src"], ["'self'", f"ws://{host}", f"wss://{host}"])
        self.assertEqual(directives["frame-ancestors"], ["'none'"])
        self.assertEqual(directives["form-action"], ["'none'"])
        self.assertEqual(directives["base-uri"], ["'none'"])
        self.assertNotIn("unsafe", csp)

    def test_csp_with_a_port_and_a_strange_host(self) -> None:
        self.assertIn(
            b"connect-src 'self' ws://localhost:8080 wss://localhost:8080",
            content_security_policy(b"localhost:8080"),
        )
        self.assertIn(b"ws://[::1]:8080", content_security_policy(b"[::1]:8080"))
        for host in (b"evil.test; script-src *", b"a b", b"", None, b"x'y"):
            self.assertTrue(content_security_policy(host).endswith(b"connect-src 'self'"), host)

    async def test_content_types(self) -> None:
        """JavaScript modules must be served as JavaScript (browsers refuse
        a module with another type when nosniff is set)."""
        for path, content_type in (
            *((f"/{name}", "text/javascript; charset=utf-8") for name in PAGE_MODULES),
            ("/style.css", "text/css; charset=utf-8"),
            ("/favicon.svg", "image/svg+xml"),
        ):
            response, body = await self.fetch(path)
            self.assertEqual(response.code, 200, path)
            self.assertEqual(self.header(response, "Content-Type"), content_type, path)
            self.assertEqual(self.header(response, "Cache-Control"), "no-cache", path)
            self.assertIsNotNone(self.header(response, "Content-Security-Policy"), path)
            self.assertEqual(body, (STATIC_DIR / path.lstrip("/")).read_bytes())

    async def test_head(self) -> None:
        response, body = await self.fetch("/app.js", "HEAD")
        self.assertEqual(response.code, 200)
        self.assertEqual(body, b"")
        self.assertEqual(self.header(response, "Content-Type"), "text/javascript; charset=utf-8")

    async def test_revalidation(self) -> None:
        """An unchanged file costs a 304."""
        response, _ = await self.fetch("/style.css")
        modified = self.header(response, "Last-Modified")
        assert modified is not None
        response, body = await self.fetch("/style.css", headers={"If-Modified-Since": modified})
        self.assertEqual((response.code, body), (304, b""))

    async def test_other_methods(self) -> None:
        response, _ = await self.fetch("/", "POST")
        self.assertEqual(response.code, 405)

    async def test_missing_files(self) -> None:
        """Unknown files, paths below a file and paths that try to leave the
        directory are a plain 404 that carries the same protective headers."""
        for path in (
            "/missing.js",
            "/app.js/more",
            "/../setup.cfg",
            "/%2e%2e/page.py",
            "/%2e%2e/%2e%2e/setup.cfg",
            "/..%2fpage.py",
            "/%2fetc%2fpasswd",
            "/static/app.js",
            "/nothing/",
        ):
            response, body = await self.fetch(path)
            self.assertEqual(response.code, 404, path)
            self.assertEqual(body, b"not found\n", path)
            self.assertEqual(self.header(response, "X-Content-Type-Options"), "nosniff", path)
            self.assertEqual(
                self.header(response, "Content-Type"), "text/plain; charset=utf-8", path
            )

    async def test_api_is_not_shadowed(self) -> None:
        """The API's paths are still the API."""
        response, body = await self.fetch("/health")
        self.assertEqual((response.code, body), (200, b"OK"))
        response, _ = await self.fetch("/register")
        self.assertEqual(response.code, 405)


class DirectoryTests(LoopbackCase):
    """A directory is never listed (nor redirected to), with or without a
    trailing slash; only ``index.html`` counts as an index."""

    def setUp(self) -> None:
        self.root = Path(self.mktemp())
        (self.root / "sub").mkdir(parents=True)
        (self.root / "sub" / "secret.txt").write_text("listed?")
        (self.root / "index.htm").write_text("<p>not an index here</p>")
        (self.root / "page.html").write_text("<p>hello</p>")
        self.serve(SiteRoot(StaticFiles(self.root)))

    async def get(self, path: str) -> tuple[int, bytes]:
        response, body = await self.fetch(path)
        return response.code, body

    async def test_no_listing(self) -> None:
        for path in ("/", "/sub", "/sub/"):
            status, body = await self.get(path)
            self.assertEqual(status, 404, path)
            self.assertNotIn(b"secret", body)
        self.assertEqual(await self.get("/sub/secret.txt"), (200, b"listed?"))
        self.assertEqual(await self.get("/page.html"), (200, b"<p>hello</p>"))


class _PageParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[dict[str, str | None]] = []
        self.inline: list[str] = []
        self.links: list[dict[str, str | None]] = []
        self.ids: list[str] = []
        self.labels: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if attributes.get("id"):
            self.ids.append(str(attributes["id"]))
        for name in attributes:
            if name.startswith("on") or name == "style":
                self.inline.append(f"<{tag} {name}=...>")
        if tag == "style":
            self.inline.append("<style>")
        if tag == "script":
            self.scripts.append(attributes)
            self._in_script = True
        if tag == "link":
            self.links.append(attributes)
        if tag == "label" and attributes.get("for"):
            self.labels.append(str(attributes["for"]))

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline.append("inline <script> content")


class PageSourceTests(TestCase):
    """The files satisfy the CSP they are served with, and are shipped."""

    def test_no_inline_script_or_style(self) -> None:
        parser = _PageParser()
        parser.feed((STATIC_DIR / "index.html").read_text(encoding="utf-8"))
        self.assertEqual(parser.inline, [])
        self.assertEqual(parser.scripts, [{"type": "module", "src": "app.js"}])
        for link in parser.links:
            href = str(link.get("href"))
            self.assertFalse(re.match(r"[a-z]+:|//", href), href)
            self.assertTrue((STATIC_DIR / href).is_file(), href)
        self.assertEqual(len(parser.ids), len(set(parser.ids)), "duplicate ids")
        for target in parser.labels:
            self.assertIn(target, parser.ids)

    def test_scripts_never_build_html_from_strings(self) -> None:
        """Everything goes in with textContent; nothing evaluates strings."""
        forbidden = re.compile(
            r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function|"
            r"setTimeout\(\s*[\"'`]|\.style\.|setAttribute\(\s*[\"']style"
        )
        for path in STATIC_DIR.glob("*.js"):
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if line.strip().startswith(("//", "/*", "*")):
                    continue  # comments may name what the code avoids
                self.assertIsNone(forbidden.search(line), f"{path.name}:{number}: {line.strip()}")

    def test_module_imports_exist(self) -> None:
        for path in STATIC_DIR.glob("*.js"):
            for target in re.findall(r'from\s+"\./([^"]+)"', path.read_text(encoding="utf-8")):
                self.assertTrue((STATIC_DIR / target).is_file(), f"{path.name} imports {target}")

    def test_every_module_is_listed_and_loaded(self) -> None:
        """The modules are the ones listed above (so their content type is
        checked), and every one is imported, directly or not, by app.js, the
        page's only script: none is dead, none is loaded some other way."""
        modules = sorted(p.name for p in SOURCE_STATIC.glob("*.js"))
        self.assertEqual(modules, sorted(PAGE_MODULES))
        reached: set[str] = set()
        todo = ["app.js"]
        while todo:
            name = todo.pop()
            if name in reached:
                continue
            reached.add(name)
            source = (SOURCE_STATIC / name).read_text(encoding="utf-8")
            todo += re.findall(r'from\s+"\./([^"]+)"', source)
        self.assertEqual(sorted(reached), modules)

    def test_no_module_level_state(self) -> None:
        """State lives in objects that app.js creates and hands around: no
        module has top-level ``let``/``var`` or a top-level mutable
        ``const`` (a Map, an array, an object that is not frozen), and only
        app.js runs anything when it is imported. (Top level is column 0:
        the modules are formatted that way.)"""
        mutable = re.compile(r"(export\s+)?(let|var)\b|(export\s+)?const\s+\w+\s*=\s*(new\b|\[|\{)")
        statement = re.compile(r"[A-Za-z_$][\w$.]*\s*\(")
        for name in PAGE_MODULES:
            lines = (SOURCE_STATIC / name).read_text(encoding="utf-8").splitlines()
            for number, line in enumerate(lines, 1):
                where = f"{name}:{number}: {line}"
                self.assertIsNone(mutable.match(line), where)
                if name != "app.js":
                    self.assertIsNone(statement.match(line), where)

    def test_every_file_is_shipped(self) -> None:
        """setup.cfg ships the directory (in CI, where parkchat is a normal
        install, STATIC_DIR is in site-packages and must hold every file)."""
        config = configparser.ConfigParser()
        config.read(ROOT / "setup.cfg")
        self.assertIn("static/*", config["options.package_data"]["parkchat.web"].split())
        source = sorted(p.name for p in SOURCE_STATIC.iterdir())
        for name in PAGE_FILES:
            self.assertIn(name, source)
        self.assertEqual(sorted(p.name for p in STATIC_DIR.iterdir()), source)


class TraversalTests(TestCase):
    """Path segments as twisted.web hands them over (already split on "/",
    then percent-decoded), straight to the resource tree: whatever the HTTP
    client does to ``..``, nothing outside the directory is reachable."""

    def test_escapes_are_not_found(self) -> None:
        from twisted.web.resource import getChildForRequest
        from twisted.web.test.requesthelper import DummyRequest

        from parkchat.web.page import PageNotFound

        root = SiteRoot()
        for segments in (
            [b".."],
            [b"..", b"setup.cfg"],
            [b"..", b"page.py"],
            [b"../page.py"],
            [b"..\\page.py"],
            [b"/etc/passwd"],
            [b"app.js", b"..", b"..", b"page.py"],
            [b"\xff"],
        ):
            resource = getChildForRequest(root, DummyRequest(list(segments)))
            self.assertIsInstance(resource, PageNotFound, segments)
        found = getChildForRequest(root, DummyRequest([b"app.js"]))
        self.assertIsInstance(found, StaticFiles)
        self.assertEqual(Path(found.path), STATIC_DIR / "app.js")
