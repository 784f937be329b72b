"""Per-route request metrics of the ingress, exported through Ray's Prometheus endpoint.

`RouteMetrics` is an ASGI middleware on the ingress app, so every route (present and future)
is counted the same way: requests by route and status, latency by route, errors (status >= 400)
by route and status. `record_batch_size` is called by routes whose answers come from a batched
call. Ray prefixes the names with `ray_` on each node's metrics export port (`/metrics`).
A request no route answered (a path nothing matches, or refused by the bearer check before
routing) is counted under the route `other`, so a scan cannot blow up the label set.
"""

from __future__ import annotations

import time
from functools import cache
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

LATENCY_BOUNDARIES_MS: list[float] = [
    1,
    2,
    5,
    10,
    20,
    50,
    100,
    200,
    500,
    1000,
    2000,
    5000,
    10000,
    30000,
]
BATCH_BOUNDARIES: list[float] = [1, 2, 4, 8, 16, 32, 64, 128, 256]
# on every answer of the ingress, so the proxy can tell its own answers (no app deployed) apart
INGRESS_HEADER = (b"x-vjepa-ingress", b"1")


class _Metrics:
    """The Ray metric objects, made once per replica process (never at import)."""

    def __init__(self) -> None:
        from ray.util.metrics import Counter, Histogram

        self.requests = Counter(
            "vjepa_serve_requests_total",
            description="HTTP requests answered by the ingress",
            tag_keys=("route", "status"),
        )
        self.errors = Counter(
            "vjepa_serve_request_errors_total",
            description="HTTP requests answered with a status >= 400",
            tag_keys=("route", "status"),
        )
        self.latency = Histogram(
            "vjepa_serve_request_latency_ms",
            description="ingress time from request to the end of the answer",
            boundaries=LATENCY_BOUNDARIES_MS,
            tag_keys=("route",),
        )
        self.batch_size = Histogram(
            "vjepa_serve_batch_size",
            description="requests served by the same batched model call",
            boundaries=BATCH_BOUNDARIES,
            tag_keys=("route",),
        )


@cache
def _metrics() -> _Metrics:
    return _Metrics()


def record_batch_size(route: str, size: int) -> None:
    """Record how many requests shared the model call that answered one on `route`."""
    _metrics().batch_size.observe(float(size), tags={"route": route})


def route_of(scope: Scope) -> str:
    """The route label: the path of the route that answered (set in `scope` by the router)."""
    route: Any = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "other"


class RouteMetrics:
    """ASGI middleware: count, time and classify every HTTP request by route."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # an exception that escapes the app ends as a 500

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                message = {**message, "headers": [*message.get("headers", []), INGRESS_HEADER]}
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            self._record(route_of(scope), status, started)

    @staticmethod
    def _record(route: str, status: int, started: float) -> None:
        metrics = _metrics()
        tags = {"route": route, "status": str(status)}
        metrics.requests.inc(1.0, tags=tags)
        if status >= 400:
            metrics.errors.inc(1.0, tags=tags)
        elapsed_ms = (time.perf_counter() - started) * 1000
        metrics.latency.observe(elapsed_ms, tags={"route": route})
