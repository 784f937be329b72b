"""`vjepa align` on real Ray Train: `--resume` continues at the saved step, and a killed
worker is replaced and the run resumes from its last checkpoint (no step lost or repeated)."""

from __future__ import annotations

import dataclasses
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from flows.cli import main
from tasks.training.checkpoints import CheckpointStore
from tasks.training.launch import ScaleConfig
from tasks.vqa.align import AlignConfig, run_align
from tasks.vqa.summaries import AlignSummary
from tests.ray_workers import train_worker_pids

pytestmark = [pytest.mark.slow, pytest.mark.ray]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> AlignConfig:
    root = tmp_path_factory.mktemp("align-inputs")
    videos, curated, lm = root / "videos", root / "curated", root / "lm"
    assert main(["sample-videos", "--output", str(videos), "--count", "8", "--seconds", "2"]) == 0
    curate = ["curate", "--input", str(videos), "--output", str(curated), "--fps", "4"]
    assert main([*curate, "--frames", "4", "--size", "32"]) == 0
    qa = str(videos / "qa.parquet")
    assert main(["make-tiny-lm", "--corpus", qa, "--output", str(lm), "--steps", "5"]) == 0
    return AlignConfig(
        "random:tiny", str(lm), str(curated), qa, "", batch_size=4, checkpoint_every=2, log_every=1
    )


def _steps(output: str) -> list[int]:
    return [int(row["step"]) for row in CheckpointStore(output).metrics()]


def test_resume_continues_without_repeating_a_step(
    ray_cluster: None, inputs: AlignConfig, tmp_path: Path
) -> None:
    output = str(tmp_path / "run")
    first = run_align(dataclasses.replace(inputs, output=output, steps=4), ScaleConfig())
    assert first.steps == 4 and _steps(output) == [1, 2, 3, 4]
    more = dataclasses.replace(inputs, output=output, steps=8, resume=True)
    assert run_align(more, ScaleConfig()).steps == 8
    assert _steps(output) == list(range(1, 9))


def test_a_killed_worker_resumes_from_the_last_checkpoint(
    ray_cluster: None, inputs: AlignConfig, tmp_path: Path
) -> None:
    output = str(tmp_path / "killed")
    config = dataclasses.replace(inputs, output=output, steps=200)
    store = CheckpointStore(output)
    before = train_worker_pids()
    result: dict[str, AlignSummary] = {}
    runner = threading.Thread(target=lambda: result.update(done=run_align(config, ScaleConfig())))
    runner.start()
    deadline = time.monotonic() + 300
    while (store.latest_step() or 0) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    victims = train_worker_pids() - before
    assert len(victims) == 1, f"expected one new training worker, found {victims}"
    os.kill(victims.pop(), signal.SIGKILL)
    runner.join(timeout=600)
    assert "done" in result, "the job did not finish after the worker was killed"
    assert result["done"].steps == 200
    assert _steps(output) == list(range(1, 201))
