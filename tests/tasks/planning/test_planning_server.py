"""`vjepa eval-planning --server`: the same closed loop through the real Ray Serve planner."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from flows.cli import main
from flows.local_serve import free_port
from serving.client import wait_healthy
from tasks.training.posttrain import PosttrainJob

TOKEN = "planning-test-token"


@pytest.fixture()
def planner_url(
    ray_cluster: None,
    trained_world_model: tuple[str, PosttrainJob, list],
    tmp_path: Path,
) -> Iterator[str]:
    """The serving app with the post-trained bundle on a loopback port, token required."""
    from ray import serve

    from serving.app import APP_NAME, build_app
    from serving.config import Replicas, ServingConfig

    small = Replicas(num_replicas=1, num_cpus=0.25, max_ongoing_requests=64)
    config = ServingConfig(
        models={"reach": trained_world_model[0]},
        token=SecretStr(TOKEN),
        cache_dir=str(tmp_path / "cache"),
        planner=small,
        embedder=small,
        ingress=Replicas(num_replicas=1, num_cpus=0.05, max_ongoing_requests=64),
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build_app(config), name=APP_NAME, route_prefix="/")
        wait_healthy(url)
        yield url
    finally:
        serve.shutdown()


@pytest.mark.ray
def test_eval_planning_through_the_server(
    planner_url: str,
    prefect_harness: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("PLANNER_TOKEN", TOKEN)
    argv = ["eval-planning", "--env", "vjepa/PointReach-v0", "--checkpoint", "served"]
    argv += ["--server", planner_url, "--token-env", "PLANNER_TOKEN", "--episodes", "4"]
    assert main([*argv, "--output", str(tmp_path / "eval"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    print("planning via server", {k: v for k, v in summary.items() if not k.endswith("episodes")})
    assert summary["action_repeat"] == 2  # the control rate came from /v1/models
    assert summary["mean_final_distance"] < summary["mean_initial_distance"]
    # Seeded requests: a second run through the same (now warm) replica repeats the first.
    assert main([*argv, "--output", str(tmp_path / "again"), "--json"]) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert again["planner_episodes"] == summary["planner_episodes"]
    monkeypatch.delenv("PLANNER_TOKEN")
    assert main(argv) == 2
    assert "PLANNER_TOKEN" in capsys.readouterr().err
