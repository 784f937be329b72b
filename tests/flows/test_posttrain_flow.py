"""`vjepa posttrain` end to end on S3: inputs and outputs on the loopback S3 server, the Prefect
flow and its artifact, the `--json` contract, and bad input answered before any training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from flows.cli import main
from modeling.checkpoints import save_model
from modeling.encoder import VisionEncoder, tiny
from tasks import storage
from tasks.planning.evaluate import load_planner_model
from tasks.robot.collect import CollectConfig, collect


@pytest.fixture(scope="module")
def local_inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("posttrain-cli")
    torch.manual_seed(0)
    encoder = save_model(VisionEncoder(tiny()), root / "encoder.safetensors")
    data = root / "trajectories"
    collect(CollectConfig("vjepa/PointReach-v0", 4, str(data), steps_per_episode=8, seed=5))
    return encoder, data


@pytest.mark.ray
@pytest.mark.s3
def test_posttrain_on_s3_with_json(
    ray_cluster: None,
    prefect_harness: None,
    s3_bucket: str,
    local_inputs: tuple[Path, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    fs, _ = storage.filesystem(s3_bucket)
    bucket = s3_bucket.removeprefix("s3://")
    fs.put_file(str(local_inputs[0]), f"{bucket}/models/encoder.safetensors")
    fs.put(str(local_inputs[1]), f"{bucket}/trajectories", recursive=True)
    output = f"{s3_bucket}/runs/ac"
    argv = [
        "posttrain", "--encoder", f"{s3_bucket}/models/encoder.safetensors",
        "--trajectories", f"{s3_bucket}/trajectories", "--output", output,
        "--steps", "2", "--batch-size", "2", "--frames", "3", "--json",
    ]  # fmt: skip
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["steps"] == 2 and summary["world_model_dir"] == f"{output}/final/world_model"
    assert {"heldout_rollout_error", "heldout_copy_error", "final_loss"} <= set(summary)
    model = load_planner_model(summary["world_model_dir"])
    assert model.spec.state_dim == 2 and model.predictor.config.action_dim == 2
    assert fs.exists(f"{bucket}/runs/ac/loss.png") and fs.exists(f"{bucket}/runs/ac/summary.json")
    assert main(argv) == 2  # the output holds a run now
    assert "--resume" in capsys.readouterr().err


def test_bad_input_fails_fast(
    local_inputs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    encoder, data = (str(p) for p in local_inputs)
    base = ["posttrain", "--output", str(tmp_path / "out")]
    assert main([*base, "--encoder", str(tmp_path / "missing.pt"), "--trajectories", data]) == 2
    assert "encoder checkpoint not found" in capsys.readouterr().err
    assert main([*base, "--encoder", encoder, "--trajectories", str(tmp_path)]) == 2
    assert "meta/info.json" in capsys.readouterr().err
    assert main([*base, "--encoder", encoder, "--trajectories", data, "--frames", "1"]) == 2
    assert "frames" in capsys.readouterr().err
