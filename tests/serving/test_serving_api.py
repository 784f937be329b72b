"""The HTTP API over real Ray Serve on loopback: plans, embeddings, models, and bad input.

One app per module (two models: one bundle on local disk, one on the loopback S3 server) with
a bearer token and a small body limit. Every malformed request must get a 4xx with a message
saying what is wrong, and `/healthz` must stay OK after each.
"""

from __future__ import annotations

import io
import pickle
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from pydantic import SecretStr

from serving.client import EmbeddingClient, PlannerClient, ServingError
from serving.codec import pack
from serving.config import Batching, Limits, ServingConfig

from .conftest import run_app, small_replicas

pytestmark = [pytest.mark.ray, pytest.mark.s3]
TOKEN = "test-token-0123456789"
LIMIT = 256 * 1024
HEADER_TIMEOUT_S = 2.0
AUTH = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/msgpack"}


def upload_bundle(folder: Path, endpoint: str) -> str:
    import boto3

    s3 = boto3.client("s3", endpoint_url=endpoint)
    s3.create_bucket(Bucket="serving-models")
    for path in folder.iterdir():
        s3.upload_file(str(path), "serving-models", f"cart/{path.name}")
    return "s3://serving-models/cart"


@pytest.fixture(scope="module")
def url(
    ray_cluster: None,
    s3_server: str,
    bundle_dir: Path,
    cart_bundle_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    config = ServingConfig(
        models={"arm": str(bundle_dir), "cart": upload_bundle(cart_bundle_dir, s3_server)},
        token=SecretStr(TOKEN),
        cache_dir=str(tmp_path_factory.mktemp("serve-cache")),
        limits=Limits(max_body_bytes=LIMIT, max_embed_frames=8, header_timeout_s=HEADER_TIMEOUT_S),
        batching=Batching(max_batch_size=16, wait_timeout_s=0.05),
        planner=small_replicas(),
        embedder=small_replicas(),
        ingress=small_replicas(num_cpus=0.05, max_ongoing_requests=256),
    )
    with run_app(config) as base:
        yield base


def image(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (64, 64, 3), dtype=np.uint8)


def plan_body(**overrides: object) -> dict[str, object]:
    body: dict[str, object] = {
        "frames": image(1)[None],
        "state": np.zeros(2, np.float32),
        "goal": image(2),
    }
    body.update(overrides)
    return {key: value for key, value in body.items() if value is not None}


def test_models_lists_both_embodiments_default_first(url: str) -> None:
    with PlannerClient(url, TOKEN) as client:
        described = client.models()
    assert described["default_model"] == "arm"
    assert [m["name"] for m in described["models"]] == ["arm", "cart"]
    assert [m["action_dim"] for m in described["models"]] == [2, 3]
    assert described["encoder"] == {"patch_size": 16, "tubelet_size": 2, "embed_dim": 192}


def test_plan_per_model_with_warm_start_and_seed(url: str) -> None:
    with PlannerClient(url, TOKEN) as client:
        arm = client.plan(image(1), np.zeros(2, np.float32), image(2), seed=5)
        again = client.plan(image(1), np.zeros(2, np.float32), image(2), seed=5)
        cart = client.plan(image(1)[None], np.zeros(3), image(2), model="cart")
        warm = client.plan(image(1), np.zeros(2), image(2), previous_plan=arm.actions)
    assert arm.actions.shape == (2, 2) and arm.model == "arm"
    np.testing.assert_array_equal(arm.actions, again.actions)
    assert cart.actions.shape == (2, 3) and cart.model == "cart"
    for result in (arm, cart, warm):
        assert np.all(np.abs(result.actions) <= 1.0) and np.isfinite(result.energy)
        assert result.energy_spread is not None and result.energy_spread > 0 and not result.noop
        assert result.server_ms >= result.plan_ms > 0


def test_plan_accepts_another_camera_size(url: str) -> None:
    # a 96x128 camera plans like the same scene rendered at the model's 64x64
    big = np.random.default_rng(3).integers(0, 255, (96, 128, 3), dtype=np.uint8)
    with PlannerClient(url, TOKEN) as client:
        result = client.plan(big, np.zeros(2, np.float32), big[None][0], seed=1)
    assert result.actions.shape == (2, 2) and np.isfinite(result.energy)


def test_concurrent_robots_share_one_batch(url: str) -> None:
    results: list[int] = []

    def robot(seed: int) -> None:
        with PlannerClient(url, TOKEN) as client:
            state = np.full(2, seed / 10, np.float32)
            results.append(client.plan(image(seed), state, image(seed + 1)).batch_size)

    threads = [threading.Thread(target=robot, args=(seed,)) for seed in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(results) == 8
    assert max(results) > 1, f"no cross-request batching happened: {results}"


def test_embed_single_batched_and_pooled(url: str) -> None:
    clip = np.stack([image(1), image(2)])  # (T=2, H, W, 3)
    with EmbeddingClient(url, TOKEN) as client:
        tokens = client.embed(clip)
        batch = client.embed(np.stack([clip, clip]))
        pooled = client.embed(clip, pool=True)
    assert tokens.shape == (16, 192) and tokens.dtype == np.float32
    assert batch.shape == (2, 16, 192)
    np.testing.assert_allclose(batch[0], tokens, atol=1e-5)
    np.testing.assert_allclose(pooled, tokens.mean(axis=0), atol=1e-5)


def truncated_npy() -> bytes:
    body = pack(plan_body())
    return body[: len(body) - 100]


def pickled_state() -> bytes:
    import msgpack

    message = msgpack.unpackb(pack(plan_body()))
    message["state"] = pickle.dumps(np.zeros(2, np.float32))
    return bytes(msgpack.packb(message))


def object_npy() -> bytes:
    import msgpack

    buffer = io.BytesIO()
    np.save(buffer, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    message = msgpack.unpackb(pack(plan_body()))
    message["state"] = buffer.getvalue()
    return bytes(msgpack.packb(message))


def npy_bomb() -> bytes:
    """`frames` whose header claims (100000, 100000, 3) uint8 (30 GB) followed by 10 bytes."""
    import msgpack

    buffer = io.BytesIO()
    header = {"descr": "|u1", "fortran_order": False, "shape": (100_000, 100_000, 3)}
    np.lib.format.write_array_header_1_0(buffer, header)
    message = msgpack.unpackb(pack(plan_body()))
    message["frames"] = buffer.getvalue() + b"\x00" * 10
    return bytes(msgpack.packb(message))


BAD_REQUESTS = {
    "npy bomb": (AUTH, npy_bomb(), 422, "claims shape"),
    "float64 state overflows float32": (
        AUTH,
        pack(plan_body(state=np.array([1e300, 0.0]))),
        422,
        "infinite",
    ),
    "float64 plan overflows float32": (
        AUTH,
        pack(plan_body(previous_plan=np.full((2, 2), -1e300))),
        422,
        "infinite",
    ),
    "float32 state overflows in the model": (
        AUTH,
        pack(plan_body(state=np.full(2, 3e38, np.float32))),
        422,
        "not finite",
    ),
    "wrong shape": (AUTH, pack(plan_body(goal=np.zeros((64, 64), np.uint8))), 422, "goal"),
    "wrong dtype": (AUTH, pack(plan_body(frames=np.zeros((1, 64, 64, 3)))), 422, "uint8"),
    "nan state": (AUTH, pack(plan_body(state=np.array([np.nan, 0.0]))), 422, "NaN"),
    "bad plan": (AUTH, pack(plan_body(previous_plan=np.zeros((5, 2)))), 422, "previous_plan"),
    "truncated body": (AUTH, truncated_npy(), 400, "msgpack"),
    "pickle bytes": (AUTH, pickled_state(), 422, "not a valid .npy"),
    "object array": (AUTH, object_npy(), 422, "not a valid .npy"),
    "not msgpack": (AUTH, b'{"frames": [1, 2]}', 400, "msgpack"),
    "empty body": (AUTH, b"", 400, "empty"),
    "unknown field": (AUTH, pack({**plan_body(), "extra": 1}), 422, "unknown field"),
    "unknown model": (AUTH, pack(plan_body(model="tank")), 404, "unknown model"),
    "json content type": (
        {**AUTH, "Content-Type": "application/json"},
        pack(plan_body()),
        415,
        "Content-Type",
    ),
    "no content type": (
        {"Authorization": AUTH["Authorization"]},
        pack(plan_body()),
        415,
        "nothing",
    ),
    "oversize body": (AUTH, b"\x00" * (LIMIT + 1), 413, "limit"),
    "missing token": ({"Content-Type": "application/msgpack"}, pack(plan_body()), 401, "missing"),
    "wrong token": (
        {**AUTH, "Authorization": "Bearer nope-nope-nope"},
        pack(plan_body()),
        401,
        "invalid",
    ),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_malformed_plan_requests_are_4xx_and_service_stays_healthy(url: str, case: str) -> None:
    headers, body, status, words = BAD_REQUESTS[case]
    response = httpx.post(f"{url}/v1/plan", content=body, headers=headers, timeout=60)
    assert response.status_code == status, response.text
    assert words in response.json()["detail"]
    assert httpx.get(f"{url}/healthz", timeout=10).json() == {"status": "ok"}


def test_malformed_embed_requests_are_4xx(url: str) -> None:
    for frames, words in [
        (np.zeros((3, 64, 64, 3), np.uint8), "tubelet"),
        (np.zeros((10, 64, 64, 3), np.uint8), "limit of 8"),
        (np.full((2, 64, 64, 3), 1.5, np.float32), "uint8"),
    ]:
        response = httpx.post(
            f"{url}/v1/embed", content=pack({"frames": frames}), headers=AUTH, timeout=60
        )
        assert response.status_code == 422 and words in response.json()["detail"]
    assert httpx.get(f"{url}/v1/models", timeout=10).status_code == 401


def test_client_surfaces_4xx_without_retrying(url: str) -> None:
    client = PlannerClient(url, "wrong-token-123", retries=3, backoff=5.0)
    with client, pytest.raises(ServingError, match="401") as caught:
        client.plan(image(1), np.zeros(2), image(2))
    assert caught.value.status == 401
    with PlannerClient(url, TOKEN) as client:  # and a good request still works afterwards
        assert client.plan(image(1), np.zeros(2), image(2)).actions.shape == (2, 2)


@pytest.mark.parametrize("path", ["/docs", "/redoc", "/openapi.json", "/v1/models"])
def test_every_path_but_healthz_needs_the_token(url: str, path: str) -> None:
    assert httpx.get(f"{url}{path}", timeout=30).status_code == 401
    wrong = {"Authorization": "Bearer nope-nope-nope"}
    assert httpx.get(f"{url}{path}", headers=wrong, timeout=30).status_code == 401
    allowed = httpx.get(f"{url}{path}", headers=AUTH, timeout=30)
    assert allowed.status_code == 200, allowed.text


@pytest.mark.parametrize("size", [1024 * 1024, 64 * 1024 + 4000], ids=["1MiB", "just-over"])
def test_oversized_headers_are_431_and_never_reach_the_app(url: str, size: int) -> None:
    # no token: the proxy must refuse it before any route (or the bearer check) sees it; just
    # over the 64 KiB limit, the headers end inside the read that crosses it
    headers = {"X-Padding": "a" * size}
    response = httpx.get(f"{url}/healthz", headers=headers, timeout=30)
    assert response.status_code == 431
    assert "limit" in response.json()["detail"]
    assert httpx.get(f"{url}/healthz", timeout=10).json() == {"status": "ok"}


def test_a_client_that_never_finishes_its_headers_is_cut_off(url: str) -> None:
    import socket
    import time

    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        started = time.monotonic()
        answer = b""
        while chunk := sock.recv(4096):  # b"" once the server closed the connection
            answer += chunk
        waited = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert waited < HEADER_TIMEOUT_S + 10


def serve_log_text() -> str:
    import ray

    logs = Path(ray._private.worker.global_worker.node.get_logs_dir_path()) / "serve"
    return "".join(path.read_text(errors="replace") for path in logs.glob("*.log"))


def test_access_logs_are_off_by_default(url: str) -> None:
    import time
    import uuid

    request_id = f"access-log-probe-{uuid.uuid4().hex}"
    headers = {**AUTH, "X-Request-ID": request_id}
    assert httpx.get(f"{url}/v1/models", headers=headers, timeout=30).status_code == 200
    assert httpx.get(f"{url}/healthz", headers=headers, timeout=30).status_code == 200
    time.sleep(2.0)  # log files are flushed asynchronously
    # an access line: "<request id> -- GET /healthz 200 1.2ms" (proxy and replica logs)
    access = [
        line for line in serve_log_text().splitlines() if request_id in line and "GET /" in line
    ]
    assert not access, access


def scrape_until(words: list[str], timeout: float = 90.0) -> str:
    """Ray's Prometheus text from this node's metrics port, once every line in `words` is there."""
    import time

    import ray

    port = ray._private.worker.global_worker.node.metrics_export_port
    deadline, text = time.monotonic() + timeout, ""
    while time.monotonic() < deadline:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        lines = [line for line in text.splitlines() if line.startswith("ray_vjepa_serve")]
        if all(any(all(w in line for w in word.split()) for line in lines) for word in words):
            return text
        time.sleep(2.0)
    ours = [line for line in text.splitlines() if "vjepa" in line]
    pytest.fail(f"metrics {words} not exported within {timeout}s; exported: {ours}")


def test_requests_latency_errors_and_batch_size_are_exported_per_route(url: str) -> None:
    with PlannerClient(url, TOKEN) as client:
        client.plan(image(1), np.zeros(2, np.float32), image(2))
    httpx.post(f"{url}/v1/plan", content=b"", headers=AUTH, timeout=30)  # a 400
    httpx.get(f"{url}/v1/models", timeout=30)  # a 401
    scrape_until(
        [
            'ray_vjepa_serve_requests_total route="/v1/plan" status="200"',
            'ray_vjepa_serve_request_errors_total route="/v1/plan" status="400"',
            'ray_vjepa_serve_request_errors_total route="other" status="401"',  # before routing
            'ray_vjepa_serve_request_latency_ms_bucket route="/v1/plan"',
            'ray_vjepa_serve_batch_size_bucket route="/v1/plan"',
        ]
    )


def test_an_unknown_path_is_still_the_ingress_404(url: str) -> None:
    # the proxy guard turns only the proxy's own 404 (no app deployed) into a 503
    response = httpx.get(f"{url}/v1/no-such-route", headers=AUTH, timeout=30)
    assert response.status_code == 404 and response.headers["x-vjepa-ingress"] == "1"
