"""The whole story through the commands, on Ray: collect PointReach, post-train with per-step
encoding on Ray Train, beat "no change" on held-out episodes, then plan better than random."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from flows.cli import main
from modeling.checkpoints import save_model
from modeling.encoder import VisionEncoder, tiny
from tasks.robot.collect import CollectConfig, collect


def _last_json(capsys: pytest.CaptureFixture[str]) -> dict:
    return dict(json.loads(capsys.readouterr().out.strip().splitlines()[-1]))


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.timeout(2400)
def test_collect_posttrain_plan(
    ray_cluster: None, prefect_harness: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    torch.manual_seed(0)
    encoder = save_model(VisionEncoder(tiny()), tmp_path / "encoder.safetensors")
    data = tmp_path / "reach"
    collect(CollectConfig("vjepa/PointReach-v0", 40, str(data), steps_per_episode=20))
    argv = ["posttrain", "--encoder", str(encoder), "--trajectories", str(data)]
    argv += ["--output", str(tmp_path / "ac"), "--fps", "5", "--frames", "3", "--steps", "1000"]
    assert main([*argv, "--batch-size", "16", "--lr", "3e-3", "--json"]) == 0
    summary = _last_json(capsys)
    print("posttrain", {k: v for k, v in summary.items() if k.startswith(("heldout", "final"))})
    # the residual predictor starts at "no change": its first loss is already the copy error
    assert summary["final_loss"] < 0.8 * summary["first_loss"]
    assert summary["heldout_rollout_error"] < summary["heldout_copy_error"]
    bundle = summary["world_model_dir"]
    plan = ["eval-planning", "--env", "vjepa/PointReach-v0", "--checkpoint", bundle]
    assert main([*plan, "--episodes", "20", "--output", str(tmp_path / "eval"), "--json"]) == 0
    result = _last_json(capsys)
    print("planning", {k: v for k, v in result.items() if not k.endswith("episodes")})
    assert result["mean_final_distance"] < result["random_mean_final_distance"]
    assert result["success_rate"] > result["random_success_rate"]
