"""Bearer-token check for the ingress: constant-time compare, 401 with a clear reason.

`BearerGuard` applies the check to every path of the ingress app except `/healthz` (FastAPI's
`/docs`, `/redoc` and `/openapi.json` included), so a new route cannot forget it. The token is
read from the app's state (`app.state.bearer_token`), set by the ingress at start.
"""

from __future__ import annotations

import hmac
import json
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from serving.codec import RequestError

SCHEME = "bearer"
PUBLIC_PATHS = frozenset({"/healthz"})


def check_bearer(authorization: str | None, expected: str | None) -> None:
    """Accept the request when auth is off or the `Authorization: Bearer <token>` matches.

    The comparison is constant-time (`hmac.compare_digest`) so response timing does not reveal
    how much of a guessed token was right.
    """
    if expected is None:
        return
    if not authorization:
        raise RequestError(
            401, "missing Authorization header; send 'Authorization: Bearer <token>'"
        )
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != SCHEME or not token.strip():
        raise RequestError(401, "the Authorization header must be 'Bearer <token>'")
    if not hmac.compare_digest(token.strip().encode(), expected.encode()):
        raise RequestError(401, "invalid bearer token")


def _authorization(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name.lower() == b"authorization":
            return bytes(value).decode("latin-1")
    return None


class BearerGuard:
    """ASGI middleware: the bearer check on every HTTP path but `PUBLIC_PATHS`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("path") not in PUBLIC_PATHS:
            app: Any = scope.get("app")
            expected = getattr(getattr(app, "state", None), "bearer_token", None)
            try:
                check_bearer(_authorization(scope), expected)
            except RequestError as error:
                await _send_401(send, error)
                return
        await self.app(scope, receive, send)


async def _send_401(send: Send, error: RequestError) -> None:
    body = json.dumps(error.payload()).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"www-authenticate", b"Bearer"),
    ]
    await send({"type": "http.response.start", "status": 401, "headers": headers})
    await send({"type": "http.response.body", "body": body})
