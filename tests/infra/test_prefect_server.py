"""prefect.yaml on a real Prefect server: `prefect server start` on loopback, a process worker
on the `vjepa-local` pool, the curate and pretrain deployments run on sample data, states and
artifacts read back through the API, and a failing run ends Failed with the platform's message.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, cast
from uuid import UUID

import httpx
import pytest

from flows.local_serve import free_port

if TYPE_CHECKING:
    from prefect.client.schemas.objects import FlowRun, State

REPO = Path(__file__).resolve().parents[2]
PREFECT = str(Path(sys.executable).with_name("prefect"))

pytestmark = [pytest.mark.slow]


def _wait_healthy(url: str, process: subprocess.Popen[bytes], seconds: float = 420) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, "prefect server exited"
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise TimeoutError(f"no healthy Prefect server at {url}")


def _cli(env: dict[str, str], *args: str) -> None:
    done = subprocess.run([PREFECT, *args], env=env, cwd=REPO, capture_output=True, timeout=300)
    output = (done.stdout + done.stderr).decode(errors="replace")
    assert done.returncode == 0, f"prefect {' '.join(args)} failed:\n{output[-3000:]}"


@pytest.fixture(scope="module")
def prefect_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A Prefect server of its own (own PREFECT_HOME and database) and a process worker."""
    home = tmp_path_factory.mktemp("prefect-home")
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": url,
        "PREFECT_SERVER_API_HOST": "127.0.0.1",
        "PREFECT_SERVER_API_PORT": str(port),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "VJEPA_HOME": str(REPO),
    }
    env.pop("RAY_ADDRESS", None)  # every flow run starts a Ray of its own
    logs = home / "logs"
    logs.mkdir()
    server = subprocess.Popen(
        [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=(logs / "server.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    worker = None
    try:
        _wait_healthy(url, server)
        _cli(env, "work-pool", "create", "vjepa-local", "--type", "process")
        _cli(env, "--no-prompt", "deploy", "-n", "curate-local", "-n", "pretrain-local")
        worker = subprocess.Popen(
            [PREFECT, "worker", "start", "--pool", "vjepa-local", "--limit", "1"],
            env=env,
            cwd=REPO,
            stdout=(logs / "worker.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        yield env
    finally:
        for process in (worker, server):
            if process is not None:
                process.terminate()
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()


def _run(name: str, parameters: dict) -> tuple[UUID, State]:
    """Run deployment `name` through the API, wait for it; its id and final state."""
    from prefect.deployments import run_deployment

    run = cast(
        "FlowRun", run_deployment(name, parameters=parameters, timeout=1200, poll_interval=3)
    )
    assert run.state is not None
    print(f"{name}: {run.state.type.value} {run.state.message!r}")
    return run.id, run.state


def _artifact_keys(flow_run_id: UUID) -> set[str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    return {artifact.key for artifact in found if artifact.key}


def test_curate_and_pretrain_deployments_on_a_real_server(
    prefect_env: dict[str, str], tmp_path: Path
) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from tasks.sample_videos import write_sample_videos

    videos, curated = tmp_path / "videos", tmp_path / "curated"
    write_sample_videos(str(videos), count=8, seconds=2.0, seed=1)
    with temporary_settings({PREFECT_API_URL: prefect_env["PREFECT_API_URL"]}):
        run_id, state = _run(
            "curate/curate-local",
            {
                "inputs": [str(videos)],
                "output": str(curated),
                "config": {"fps": 4, "frames": 4, "size": 64},
            },
        )
        assert state.is_completed(), state
        assert "curate-summary" in _artifact_keys(run_id)
        assert (curated / "manifest.json").is_file()

        config = {
            "data": str(curated),
            "output": str(tmp_path / "pretrain"),
            "steps": 2,
            "batch_size": 2,
        }
        run_id, state = _run(
            "pretrain/pretrain-local", {"config": config, "scale": {"num_workers": 1}}
        )
        assert state.is_completed(), state
        assert "pretrain-summary" in _artifact_keys(run_id)
        assert (tmp_path / "pretrain" / "final" / "encoder.safetensors").is_file()

        missing = str(tmp_path / "no-such-folder")
        config = {"data": missing, "output": str(tmp_path / "bad"), "steps": 2}
        _, state = _run("pretrain/pretrain-local", {"config": config, "scale": {"num_workers": 1}})
        assert state.is_failed(), state
        assert missing in str(state.message)  # the platform's own error, in the state
