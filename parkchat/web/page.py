"""The browser client's files (MISSION section D), served at ``/``.

``StaticFiles`` is ``twisted.web.static.File`` over ``parkchat/web/static``
with the headers a page needs: a strict Content-Security-Policy that the page
satisfies (no inline script or style, scripts and styles only from this
origin, WebSockets only to this host), ``nosniff``, no referrer, no framing,
and ``Cache-Control: no-cache`` (browsers keep a copy and revalidate it with
``If-Modified-Since``, so a new version is picked up at once and an unchanged
one costs a 304). ``File`` already refuses paths that leave the directory
(``..``, absolute paths: ``InsecurePath`` -> 404); directory listings are
turned off here, and only ``index.html`` is an index.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from twisted.web import resource, static
from twisted.web.server import Request

#: Where the page's files live (package data, see setup.cfg).
STATIC_DIR = Path(__file__).resolve().parent / "static"

#: Content types by extension; the system's mime.types is not consulted, so
#: the answer does not depend on the machine (``.js`` must be a JavaScript
#: type or the browser refuses to run it as a module).
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".txt": "text/plain; charset=utf-8",
}

#: A Host header that can be put into the CSP as it is: a name or an IPv4
#: or bracketed IPv6 address, and an optional port.
_SAFE_HOST = re.compile(r"\A(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?\Z")

_CSP_FIXED = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def content_security_policy(host: bytes | None) -> bytes:
    """The page's CSP. ``connect-src`` names this host's ``ws:``/``wss:``
    URLs (CSP 2 browsers do not count them as ``'self'``); a Host header
    that does not look like a host leaves just ``'self'``."""
    connect = "'self'"
    name = (host or b"").decode("latin-1").strip()
    if _SAFE_HOST.match(name):
        connect += f" ws://{name} wss://{name}"
    return f"{_CSP_FIXED}; connect-src {connect}".encode("ascii")


def set_security_headers(request: Request) -> None:
    """Headers every answer under ``/`` carries, errors included."""
    request.setHeader(
        b"Content-Security-Policy", content_security_policy(request.getHeader(b"host"))
    )
    request.setHeader(b"X-Content-Type-Options", b"nosniff")
    request.setHeader(b"Referrer-Policy", b"no-referrer")
    request.setHeader(b"X-Frame-Options", b"DENY")
    request.setHeader(b"Cross-Origin-Opener-Policy", b"same-origin")


class PageNotFound(resource.Resource):
    """A plain-text 404 for static paths that do not exist (or may not be
    served: directories, paths outside the directory)."""

    isLeaf = True

    def render(self, request: Request) -> bytes:
        set_security_headers(request)
        request.setResponseCode(404)
        request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
        request.setHeader(b"Cache-Control", b"no-store")
        return b"" if request.method == b"HEAD" else b"not found\n"


class StaticFiles(static.File):
    """``twisted.web.static.File`` with the page's headers, no directory
    listings and fixed content types."""

    contentTypes = dict(CONTENT_TYPES)
    indexNames = ["index.html"]
    childNotFound = PageNotFound()  # type: ignore[assignment]

    def __init__(
        self,
        path: str | Path = STATIC_DIR,
        defaultType: str = "application/octet-stream",
        *args: Any,
        **kwargs: Any,
    ) -> None:
        super().__init__(str(path), defaultType, *args, **kwargs)

    def getChild(self, path: bytes, request: Request) -> Any:
        """A path segment that no file can have (a NUL byte, which the
        operating system refuses with an error, or bytes that are not
        UTF-8) is a 404, not a 500 with a traceback in the log."""
        if b"\x00" in path or not _utf8(path):
            return self.childNotFound
        return super().getChild(path, request)

    def directoryListing(self) -> resource.Resource:
        return self.childNotFound

    def render(self, request: Request) -> Any:
        if self.isdir():
            # A directory is never a page: no listing, no redirect.
            return self.childNotFound.render(request)
        set_security_headers(request)
        request.setHeader(b"Cache-Control", b"no-cache")
        return super().render(request)


class SiteRoot(resource.Resource):
    """The root of the site: the API's children as usual, and every other
    path looked up among the page's files (``/`` is ``index.html``)."""

    def __init__(self, files: StaticFiles | None = None) -> None:
        super().__init__()
        self.files = files if files is not None else StaticFiles()

    def getChild(self, path: bytes, request: Request) -> Any:
        return self.files.getChild(path, request)


def _utf8(path: bytes) -> bool:
    try:
        path.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
