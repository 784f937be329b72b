"""SIGKILL the real CLI halfway, run it again: the manifest equals an uninterrupted run's."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

NUM_VIDEOS = 8
CONFIG = {"fps": 4, "frames": 4, "size": 32, "min_short_side": 32, "rows_per_shard": 5}
REPO = Path(__file__).resolve().parents[3]


def _command(inputs: Path, output: Path, config_file: Path) -> list[str]:
    return [
        sys.executable, "-m", "flows.cli", "curate", "--input", str(inputs),
        "--output", str(output), "--config", str(config_file), "--json",
    ]  # fmt: skip


def _environment() -> dict[str, str]:
    """Join the test run's Ray cluster and Prefect API instead of starting new ones."""
    import ray
    from prefect.settings import PREFECT_API_URL

    return {
        **os.environ,
        "RAY_ADDRESS": ray.get_runtime_context().gcs_address,
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
    }


def _done(output: Path) -> int:
    folder = output / "_staging" / "done"
    return len(list(folder.glob("*.json"))) if folder.is_dir() else 0


def _start_and_kill(command: list[str], output: Path, logs: Path, env: dict[str, str]) -> int:
    """Start the CLI, SIGKILL its whole process group once 2 sources are committed."""
    with (logs / "killed.out").open("wb") as out, (logs / "killed.err").open("wb") as err:
        process = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=out, stderr=err, start_new_session=True
        )
        deadline = time.monotonic() + 180
        while _done(output) < 2 and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    return process.returncode


@pytest.mark.ray
def test_sigkill_then_resume_matches_clean_run(
    ray_cluster: None, prefect_harness: None, video_maker: Callable[..., Path], tmp_path: Path
) -> None:
    from flows.curate import curate_flow

    inputs = tmp_path / "inputs"
    for index in range(NUM_VIDEOS):  # ~0.3 s of decoding each, one at a time (workers = 1)
        video_maker(inputs / f"v{index}.mp4", size=f"{160 + 16 * index}x120", rate=25, seconds=5)
    config_file = tmp_path / "curate.json"
    config_file.write_text(json.dumps({**CONFIG, "workers": 1}))
    clean = curate_flow(inputs=[str(inputs)], output=str(tmp_path / "clean"), config=CONFIG)

    output, env = tmp_path / "resumed", _environment()
    returncode = _start_and_kill(_command(inputs, output, config_file), output, tmp_path, env)
    committed = _done(output)
    assert returncode == -signal.SIGKILL, (tmp_path / "killed.err").read_text()[-2000:]
    assert 0 < committed < NUM_VIDEOS and not (output / "manifest.json").exists()

    rerun = subprocess.run(
        _command(inputs, output, config_file),
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    summary = json.loads(rerun.stdout.strip().splitlines()[-1])
    assert summary["version"] == clean.version and summary["num_clips"] == clean.num_clips
    # committed sources were skipped
    assert f"[curate] started: {NUM_VIDEOS} sources ({committed} already done)" in rerun.stderr

    manifest = json.loads((output / "manifest.json").read_text())
    assert manifest == json.loads((tmp_path / "clean" / "manifest.json").read_text())
    for shard in manifest["shards"]:  # byte-identical shards: same clips, same order, none lost
        assert (output / shard["path"]).read_bytes() == (
            tmp_path / "clean" / shard["path"]
        ).read_bytes()
    assert manifest["counts"]["num_clips"] == NUM_VIDEOS * 5
