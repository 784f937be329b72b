"""Bearer-token checks."""

from __future__ import annotations

import pytest

from serving.auth import check_bearer
from serving.codec import RequestError


def test_auth_off_accepts_anything() -> None:
    check_bearer(None, None)
    check_bearer("Bearer whatever", None)


def test_matching_token_passes_in_any_scheme_case() -> None:
    check_bearer("Bearer right-token", "right-token")
    check_bearer("bearer right-token", "right-token")


@pytest.mark.parametrize(
    ("header", "words"),
    [
        (None, "missing"),
        ("", "missing"),
        ("Basic dXNlcjpwYXNz", "Bearer <token>"),
        ("Bearer", "Bearer <token>"),
        ("Bearer wrong-token", "invalid"),
        ("Bearer right-token-but-longer", "invalid"),
    ],
)
def test_bad_headers_are_401(header: str | None, words: str) -> None:
    with pytest.raises(RequestError, match=words) as caught:
        check_bearer(header, "right-token")
    assert caught.value.status == 401
