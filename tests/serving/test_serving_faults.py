"""A planner replica killed under load: every request still succeeds (client retry + Serve restart).

Bounded load test on loopback: a fixed number of robots each send a fixed number of plan
requests against a deadline; one Planner replica actor is `ray.kill`ed while they run. The
replica is found through Ray's named-actor list (`SERVE_REPLICA::<app>#<deployment>#<id>` in
the `serve` namespace), which works without the dashboard.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from serving.client import PlannerClient
from serving.config import Batching, ServingConfig

from .conftest import run_app, small_replicas

pytestmark = pytest.mark.ray
ROBOTS = 4
REQUESTS_PER_ROBOT = 25
DEADLINE_S = 240.0


@pytest.fixture(scope="module")
def url(ray_cluster: None, bundle_dir: Path) -> Iterator[str]:
    config = ServingConfig(
        models={"arm": str(bundle_dir)},
        batching=Batching(max_batch_size=8, wait_timeout_s=0.01),
        planner=small_replicas(num_replicas=2),
        embedder=small_replicas(num_cpus=0.05),
        ingress=small_replicas(num_cpus=0.05, max_ongoing_requests=256),
    )
    with run_app(config) as base:
        yield base


def planner_replicas() -> list[str]:
    import ray

    return [
        actor["name"]
        for actor in ray.util.list_named_actors(all_namespaces=True)
        if actor["namespace"] == "serve"
        and actor["name"].startswith("SERVE_REPLICA::vjepa#Planner#")
    ]


def kill_one_planner_replica() -> str:
    import ray

    name = planner_replicas()[0]
    ray.kill(ray.get_actor(name, namespace="serve"), no_restart=True)
    return name


def running_planner_replicas() -> int:
    from ray import serve
    from ray.serve.schema import ReplicaState

    deployment = serve.status().applications["vjepa"].deployments["Planner"]
    return int(deployment.replica_states.get(ReplicaState.RUNNING, 0))


def test_killed_replica_under_load_loses_no_request(url: str) -> None:
    assert len(planner_replicas()) == 2
    done = threading.Semaphore(0)
    successes: list[int] = []
    errors: list[str] = []
    retries: list[int] = []
    deadline = time.monotonic() + DEADLINE_S

    def robot(index: int) -> None:
        rng = np.random.default_rng(index)
        frame = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
        with PlannerClient(url, timeout=60, retries=8, backoff=0.25) as client:
            for _ in range(REQUESTS_PER_ROBOT):
                if time.monotonic() > deadline:
                    errors.append("deadline passed")
                    return
                try:
                    result = client.plan(frame, rng.normal(size=2), frame)
                    assert result.actions.shape == (2, 2)
                    successes.append(index)
                except Exception as error:  # recorded, so the test reports every failure
                    errors.append(f"{type(error).__name__}: {error}")
                done.release()
            retries.append(client.num_retries)

    threads = [threading.Thread(target=robot, args=(i,), daemon=True) for i in range(ROBOTS)]
    for thread in threads:
        thread.start()
    for _ in range(ROBOTS):  # let the load build up before the kill
        assert done.acquire(timeout=DEADLINE_S)
    killed = kill_one_planner_replica()
    done_before_kill = len(successes)
    for thread in threads:
        thread.join(timeout=max(1.0, deadline - time.monotonic()))
    assert not errors, errors
    assert len(successes) == ROBOTS * REQUESTS_PER_ROBOT
    assert done_before_kill < len(successes), "the kill came after the load had finished"
    print(f"done before kill {done_before_kill}, client retries {sum(retries)}")
    recovery = time.monotonic() + 120
    while running_planner_replicas() < 2 and time.monotonic() < recovery:
        time.sleep(0.5)
    assert running_planner_replicas() == 2, "Serve did not replace the killed replica"
    assert killed not in planner_replicas()


def replicas_of(deployment: str) -> list[str]:
    import ray

    prefix = f"SERVE_REPLICA::vjepa#{deployment}#"
    return [
        actor["name"]
        for actor in ray.util.list_named_actors(all_namespaces=True)
        if actor["namespace"] == "serve" and actor["name"].startswith(prefix)
    ]


def test_an_ingress_replica_killed_mid_request_answers_503_then_recovers(url: str) -> None:
    import socket

    import ray

    from serving.client import wait_healthy
    from serving.codec import pack

    frame = np.zeros((64, 64, 3), np.uint8)
    body = pack({"frames": frame, "state": np.zeros(2, np.float32), "goal": frame})
    host, port = url.removeprefix("http://").split(":")
    head = (
        f"POST /v1/plan HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/msgpack\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    (name,) = replicas_of("Ingress")
    with socket.create_connection((host, int(port)), timeout=60) as sock:
        sock.sendall(head + body[:100])  # the ingress is now waiting for the rest of the body
        time.sleep(1.0)
        ray.kill(ray.get_actor(name, namespace="serve"), no_restart=True)
        time.sleep(1.0)
        with contextlib.suppress(OSError):  # the proxy may already have answered and closed
            sock.sendall(body[100:])
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 503"), answer[:300]
    assert b"retry-after: 1" in rest.lower()
    wait_healthy(url, timeout=120)
    assert name not in replicas_of("Ingress")
