"""Bearer-token check for the ingress: constant-time compare, 401 with a clear reason."""

from __future__ import annotations

import hmac

from serving.codec import RequestError

SCHEME = "bearer"


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
