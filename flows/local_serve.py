"""The demo's Serve application on a free loopback port, with a fresh bearer token.

Planning (`flows.pipeline`) serves the world model; the VQA stage (`flows.demo_vqa`) serves it
with the aligned VQA model beside it, as one application, and asks a question over HTTP.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

TOKEN_ENV = "VJEPA_DEMO_TOKEN"


def free_port() -> int:
    with socket.socket() as probe_socket:
        probe_socket.bind(("127.0.0.1", 0))
        return int(probe_socket.getsockname()[1])


@contextmanager
def served(bundle: str, vqa_model: str | None = None) -> Iterator[str]:
    """Serve `bundle` (and `/v1/vqa` with `vqa_model`) on loopback; yields the URL."""
    from pydantic import SecretStr
    from ray import serve

    from serving.app import APP_NAME, build_app
    from serving.config import ServingConfig
    from serving.proxy_guard import start_options

    port = free_port()
    # The client reads the token from the driver's environment; the replicas get the value itself
    # (Ray started before it existed, so their environment lacks it).
    token = secrets.token_urlsafe(24)
    os.environ[TOKEN_ENV] = token
    values: dict[str, Any] = {"models": {"demo": bundle}, "port": port, "planner": {"num_cpus": 1}}
    if vqa_model is not None:
        # the planner idles while the VQA stage asks: both fit on a 2-CPU laptop's Ray
        values |= {"planner": {"num_cpus": 0.25}, "vqa": {"model": vqa_model}}
    config = ServingConfig.model_validate(values).model_copy(update={"token": SecretStr(token)})
    serve.start(**start_options(config, port))  # the guarded proxy, as `vjepa serve` runs it
    try:
        serve.run(build_app(config), name=APP_NAME, route_prefix="/")
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()
