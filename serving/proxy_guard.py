"""Hardening of Ray Serve's HTTP proxy: header limits, slow-header timeout, 503 for dead replicas.

Ray Serve runs uvicorn in its proxy actor with the `httptools` parser, which has no header size
limit and no timeout for a request whose headers never finish (slowloris), and answers 500 when
the ingress replica died (Serve's proxy sends nothing, uvicorn fills in a 500). None of that is
configurable through `HTTPOptions`. Serve's proxy callback
(`RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH`, set for the controller by `controller_options`
and inherited by the proxies it starts) returns one ASGI middleware, `ProxyGuard`, built inside
every proxy process. Its constructor installs `GuardedHttpToolsProtocol` as uvicorn's HTTP
protocol there (before uvicorn loads its config); at run time it turns "no response at all"
into a 503 with `Retry-After`.

The rules hold for every route of the app, as they sit in front of the ingress.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import TYPE_CHECKING, Any

from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from serving.metrics import INGRESS_HEADER

if TYPE_CHECKING:  # serving.config imports modeling (torch): not in every proxy process
    from serving.config import Limits, ServingConfig

UNAVAILABLE_DETAIL = "the service is restarting; retry"
CALLBACK_VARIABLE = "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH"
MAX_HEADER_VARIABLE = "VJEPA_SERVE_MAX_HEADER_BYTES"
HEADER_TIMEOUT_VARIABLE = "VJEPA_SERVE_HEADER_TIMEOUT_S"
READY_TIMEOUT_VARIABLE = "RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S"
PROXY_READY_TIMEOUT_S = 30.0


def _raw_response(status: int, reason: str, detail: str) -> bytes:
    body = json.dumps({"detail": detail, "field": None}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a bound on header bytes and on the time to send them.

    Bytes are counted as they arrive while a request's headers are incomplete, so a client can
    make the proxy hold at most `max_header_bytes` plus one read, never an unbounded header.
    The parsed request line and headers are counted too: a header block that ends inside the
    read that crosses the limit (just over it) is refused when it completes.
    """

    max_header_bytes = 64 * 1024
    header_timeout_s = 10.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # type: ignore[override]
        super().connection_made(transport)  # type: ignore[arg-type]
        self._header_timer: asyncio.TimerHandle | None = None
        self._start_headers()

    def _start_headers(self) -> None:
        self._in_headers = True
        self._header_bytes = 0
        self._parsed_bytes = 0  # request target + header names and values, as parsed
        self._refused = False  # refused at the end of its headers: no request cycle exists
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_late)

    def _stop_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _too_large(self) -> None:
        detail = f"request headers exceed the limit of {self.max_header_bytes} bytes"
        self._reject(431, "Request Header Fields Too Large", detail)

    def _reject(self, status: int, reason: str, detail: str) -> None:
        self._stop_header_timer()
        self._in_headers = False
        if not self.transport.is_closing():
            self.transport.write(_raw_response(status, reason, detail))
            self.transport.close()

    def _headers_late(self) -> None:
        self._header_timer = None
        if self._in_headers and not self.transport.is_closing():
            detail = f"request headers not received within {self.header_timeout_s:g} s"
            self._reject(408, "Request Timeout", detail)

    def data_received(self, data: bytes) -> None:
        if self.transport.is_closing():
            return
        if self._in_headers:
            self._header_bytes += len(data)
        super().data_received(data)
        if self._in_headers and self._header_bytes > self.max_header_bytes:
            self._too_large()

    def on_url(self, url: bytes) -> None:
        self._parsed_bytes += len(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._parsed_bytes += len(name) + len(value) + 4  # ": " and CRLF
        super().on_header(name, value)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if not self._in_headers:  # the next request on a kept-alive connection
            self._start_headers()

    def on_headers_complete(self) -> None:
        self._in_headers = False
        self._stop_header_timer()
        if self._parsed_bytes > self.max_header_bytes:
            self._refused = True
            self._too_large()  # no request cycle starts: the app never sees it
            return
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._refused:  # a refused request has no cycle to feed
            super().on_body(body)

    def on_message_complete(self) -> None:
        if not self._refused:
            super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_header_timer()
        super().connection_lost(exc)


def install_protocol(max_header_bytes: int, header_timeout_s: float) -> None:
    """Make uvicorn's `http="auto"` (what Serve's proxy uses) load the guarded protocol."""
    import uvicorn.config

    GuardedHttpToolsProtocol.max_header_bytes = max_header_bytes
    GuardedHttpToolsProtocol.header_timeout_s = header_timeout_s
    path = f"{__name__}:{GuardedHttpToolsProtocol.__name__}"
    uvicorn.config.HTTP_PROTOCOLS["auto"] = path
    uvicorn.config.HTTP_PROTOCOLS["httptools"] = path


class ProxyGuard:
    """ASGI middleware run by Serve in each proxy: "no app to answer" becomes a 503.

    Serve's proxy sends no response when the ingress replica died mid-request (uvicorn then
    answers a bare 500), and its own 404 while the app is not deployed (starting, or deleted
    during a shutdown: the app's route prefix is `/`, so it matches every path). Both become
    503 `Retry-After: 1`, which clients retry. Answers of the ingress carry `INGRESS_HEADER`.
    """

    def __init__(self, app: ASGIApp, max_header_bytes: int, header_timeout_s: float) -> None:
        install_protocol(max_header_bytes, header_timeout_s)
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, replaced = False, False

        async def tracking_send(message: Message) -> None:
            nonlocal started, replaced
            if message["type"] == "http.response.start":
                started = True
                replaced = message["status"] == 404 and not _from_ingress(message)
            if replaced:  # the proxy's own 404: no app deployed (starting or draining)
                if message["type"] == "http.response.start":
                    await _send_unavailable(send)
                return
            await send(message)

        await self.app(scope, receive, tracking_send)
        if not started:
            await _send_unavailable(send)


def _from_ingress(message: Message) -> bool:
    name = INGRESS_HEADER[0]
    return any(bytes(key).lower() == name for key, _ in message.get("headers", []))


async def _send_unavailable(send: Send) -> None:
    body = json.dumps({"detail": UNAVAILABLE_DETAIL, "field": None}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"retry-after", b"1"),
    ]
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def proxy_middlewares(max_header_bytes: int, header_timeout_s: float) -> list[Any]:
    """The `HTTPOptions.middlewares` that harden Serve's proxy."""
    guard = Middleware(
        ProxyGuard, max_header_bytes=max_header_bytes, header_timeout_s=header_timeout_s
    )
    return [guard]


def proxy_callback() -> list[Any]:
    """The proxy callback Serve calls in each proxy process (`CALLBACK_VARIABLE`).

    `HTTPOptions.middlewares` is gone from Serve; its proxy callback is the supported hook.
    The limits travel in `MAX_HEADER_VARIABLE` and `HEADER_TIMEOUT_VARIABLE`.
    """
    max_header, timeout = (
        os.environ.get(MAX_HEADER_VARIABLE),
        os.environ.get(HEADER_TIMEOUT_VARIABLE),
    )
    if max_header is None or timeout is None:  # set by hand without the limits: the defaults
        from serving.config import Limits

        defaults = Limits()
        max_header = max_header or str(defaults.max_header_bytes)
        timeout = timeout or str(defaults.header_timeout_s)
    return proxy_middlewares(int(max_header), float(timeout))


def proxy_environment(limits: Limits) -> dict[str, str]:
    """Variables that make Serve's proxies run `proxy_callback` with these limits."""
    return {
        CALLBACK_VARIABLE: f"{__name__}:{proxy_callback.__name__}",
        MAX_HEADER_VARIABLE: str(limits.max_header_bytes),
        HEADER_TIMEOUT_VARIABLE: str(limits.header_timeout_s),
    }


def controller_options(config: ServingConfig) -> dict[str, Any]:
    """Serve's `controller_options`: the proxies it starts inherit the controller's variables."""
    variables = {
        **proxy_environment(config.limits),
        # a proxy in a fresh worker (its own runtime env) may need more than Serve's 5 s to
        # answer the readiness check on a busy node; after three misses Serve kills it
        READY_TIMEOUT_VARIABLE: str(PROXY_READY_TIMEOUT_S),
    }
    return {"runtime_env": {"env_vars": variables}}


def logging_config(config: ServingConfig) -> dict[str, Any]:
    """Serve's logging config: per-request access logs only with `access_log` (`--access-log`)."""
    return {"enable_access_log": config.access_log}


def start_options(config: ServingConfig, port: int | None = None) -> dict[str, Any]:
    """Keyword arguments of `serve.start`: the guarded proxy and the access-log switch."""
    return {
        "http_options": {"host": config.host, "port": config.port if port is None else port},
        "logging_config": logging_config(config),
        "controller_options": controller_options(config),
    }
