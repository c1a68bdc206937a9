"""``GET /metrics``: the Prometheus text exposition, optionally behind a token.

``prometheus_client.twisted.MetricsResource`` renders in the reactor's WSGI
thread pool; parkchat's collector reads live service state (connections,
rooms), which only the reactor thread may touch, so the text is rendered here
on the reactor thread instead (a scrape costs well under a millisecond).
"""

from __future__ import annotations

import hmac

from twisted.web.resource import Resource
from twisted.web.server import Request

from parkchat.metrics import CONTENT_TYPE, ServiceMetrics

REALM = "parkchat-metrics"


class MetricsResource(Resource):
    """The metrics of one service; with ``token``, only for ``Authorization:
    Bearer <token>`` (401 otherwise)."""

    isLeaf = True

    def __init__(self, metrics: ServiceMetrics, token: str | None = None) -> None:
        super().__init__()
        self._metrics = metrics
        self._token = token.encode("utf-8") if token else None

    def _authorized(self, request: Request) -> bool:
        if self._token is None:
            return True
        raw = request.getHeader(b"authorization") or b""
        scheme, _, value = raw.partition(b" ")
        return scheme.lower() == b"bearer" and hmac.compare_digest(value.strip(), self._token)

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"Cache-Control", b"no-store")
        if not self._authorized(request):
            request.setResponseCode(401)
            request.setHeader(b"WWW-Authenticate", f'Bearer realm="{REALM}"'.encode("ascii"))
            request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
            return b"metrics need a bearer token\n"
        request.setHeader(b"Content-Type", CONTENT_TYPE)
        return self._metrics.render()

    render_HEAD = render_GET


def metrics_root(metrics: ServiceMetrics, token: str | None = None) -> Resource:
    """The resource tree of a metrics-only listener: just ``/metrics``."""
    root = Resource()
    root.putChild(b"metrics", MetricsResource(metrics, token))
    return root
