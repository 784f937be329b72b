"""`vjepa posttrain --adapt-steps`: collected PointReach videos curated (real ffmpeg, Ray Data),
the encoder pretrained on them (Ray Train), post-training on the adapted encoder, the world
model holding it, the artifacts recorded, and a resumed run reusing the finished adaptation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from prefect import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

from flows.adapt import adapt_flow
from flows.cli import main
from modeling.checkpoints import load_encoder, save_model
from modeling.encoder import VisionEncoder, tiny
from tasks import storage
from tasks.planning.evaluate import load_planner_model
from tasks.robot.collect import CollectConfig, collect
from tasks.training.adapt import AdaptConfig
from tasks.training.launch import ScaleConfig
from tasks.training.posttrain_config import PosttrainConfig


def _states(path: str | Path) -> dict[str, torch.Tensor]:
    return load_encoder(path).state_dict()


def _inputs(folder: Path, seed: int) -> tuple[Path, Path]:
    """A seeded random-init tiny encoder and 4 collected PointReach episodes at 32 px."""
    torch.manual_seed(0)
    encoder = save_model(VisionEncoder(tiny()), folder / "encoder.safetensors")
    data = folder / "trajectories"
    collect(
        CollectConfig(
            "vjepa/PointReach-v0", 4, str(data), steps_per_episode=16, seed=seed,
            env_kwargs={"width": 32, "height": 32},
        )
    )  # fmt: skip
    return encoder, data


@pytest.mark.ray
def test_posttrain_on_an_adapted_encoder(
    ray_cluster: None, prefect_harness: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    encoder, data = _inputs(tmp_path, seed=3)
    output = tmp_path / "run"
    argv = [
        "posttrain", "--encoder", str(encoder), "--trajectories", str(data),
        "--output", str(output), "--steps", "3", "--batch-size", "2", "--stop-every", "0",
        "--checkpoint-every", "3", "--adapt-steps", "3", "--json",
    ]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    summary = json.loads(out.strip().splitlines()[-1])
    adapted = output / "adapt" / "pretrain" / "final" / "encoder.safetensors"
    assert summary["encoder"] == str(adapted) and "encoder adapted 3 steps" in out
    adaptation = summary["adaptation"]
    assert adaptation["steps"] == 3 and adaptation["input_encoder"] == str(encoder)
    assert adaptation["clips"] >= 4 and adaptation["curated"] == str(output / "adapt" / "curated")
    assert json.loads((output / "summary.json").read_text())["adaptation"] == adaptation
    assert json.loads((output / "adapt" / "adapt.json").read_text()) == adaptation

    before, after = _states(encoder), _states(adapted)
    assert before.keys() == after.keys()
    assert any(not torch.equal(before[key], after[key]) for key in before)
    bundle = load_planner_model(summary["world_model_dir"]).encoder.state_dict()
    assert all(torch.allclose(bundle[key], after[key]) for key in after)

    with get_client(sync_client=True) as client:
        keys = ArtifactFilter(key=ArtifactFilterKey(any_=["adapt-summary", "pretrain-summary"]))
        found = {artifact.key for artifact in client.read_artifacts(artifact_filter=keys)}
    assert found == {"adapt-summary", "pretrain-summary"}

    # resuming: the finished curation and pretraining are reused, not redone (the adaptation
    # subflow alone, as `--resume` runs it; post-training's own resume is tested elsewhere).
    stamp = adapted.stat().st_mtime_ns
    manifest = (output / "adapt" / "curated" / "manifest.json").stat().st_mtime_ns
    config = PosttrainConfig(str(encoder), str(data), str(output), resume=True)
    again = adapt_flow(config, AdaptConfig(steps=3), ScaleConfig())
    assert again.as_dict() == adaptation
    assert adapted.stat().st_mtime_ns == stamp
    assert (output / "adapt" / "curated" / "manifest.json").stat().st_mtime_ns == manifest


def test_bad_adapt_steps_fail_fast(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "posttrain", "--encoder", str(tmp_path / "e.safetensors"), "--trajectories",
        str(tmp_path), "--output", str(tmp_path / "out"), "--adapt-steps", "-1",
    ]  # fmt: skip
    assert main(argv) == 2
    assert "--adapt-steps" in capsys.readouterr().err


@pytest.mark.ray
@pytest.mark.s3
def test_adaptation_with_inputs_and_outputs_on_s3(
    ray_cluster: None,
    prefect_harness: None,
    s3_bucket: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    encoder, data = _inputs(tmp_path, seed=4)
    fs, _ = storage.filesystem(s3_bucket)
    bucket = s3_bucket.removeprefix("s3://")
    fs.put_file(str(encoder), f"{bucket}/models/encoder.safetensors")
    fs.put(str(data), f"{bucket}/trajectories", recursive=True)
    output = f"{s3_bucket}/runs/adapted"
    argv = [
        "posttrain", "--encoder", f"{s3_bucket}/models/encoder.safetensors",
        "--trajectories", f"{s3_bucket}/trajectories", "--output", output, "--steps", "2",
        "--batch-size", "2", "--stop-every", "0", "--adapt-steps", "2", "--json",
    ]  # fmt: skip
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    adapted = f"{output}/adapt/pretrain/final/encoder.safetensors"
    assert summary["encoder"] == adapted and summary["adaptation"]["steps"] == 2
    assert summary["adaptation"]["curated"] == f"{output}/adapt/curated"
    assert fs.exists(f"{bucket}/runs/adapted/adapt/curated/manifest.json")
    assert fs.exists(f"{bucket}/runs/adapted/adapt/adapt.json")
    local = tmp_path / "adapted.safetensors"
    fs.get_file(adapted.removeprefix("s3://"), str(local))
    before, after = _states(encoder), _states(local)
    assert any(not torch.equal(before[key], after[key]) for key in before)
    bundle = load_planner_model(summary["world_model_dir"]).encoder.state_dict()
    assert all(torch.allclose(bundle[key], after[key]) for key in after)
