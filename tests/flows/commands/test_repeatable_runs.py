"""Same seed, data and one worker: `vjepa pretrain`, `probe` and `posttrain` repeat exactly.

Two runs of each command on the CPU must write identical loss-per-step metrics and identical
final weights (the clip order out of Ray Data is fixed by the seed: `tasks.training.ordering`).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from flows.cli import main
from tasks.training.checkpoints import CheckpointStore

pytestmark = [pytest.mark.ray, pytest.mark.slow]

TIMING = {"seconds", "time", "elapsed", "steps_per_second", "clips_per_second"}


def _metrics(output: Path) -> list[dict]:
    """Every metric row without its timings (losses, learning rate, norms per step)."""
    rows = CheckpointStore(str(output)).metrics()
    return [{k: v for k, v in row.items() if k not in TIMING and "second" not in k} for row in rows]


def _same_weights(first: Path, second: Path) -> None:
    left, right = load_file(str(first)), load_file(str(second))
    assert left.keys() == right.keys()
    for name in left:
        assert torch.equal(left[name], right[name]), f"{name} differs between the two runs"


def _twice(tmp_path: Path, name: str, argv: list[str]) -> tuple[Path, Path]:
    outputs = (tmp_path / f"{name}-a", tmp_path / f"{name}-b")
    for output in outputs:
        assert main([*argv, f"--output={output}", "--seed=3"]) == 0
    first, second = (_metrics(output) for output in outputs)
    assert first and first == second, f"{name}: the metrics lines differ"
    print(name, [round(row["loss"], 6) for row in first])
    return outputs


def test_same_seed_same_run(
    curated_dir: Path, sample_dir: Path, tmp_path: Path, prefect_harness: None
) -> None:
    from tasks.robot.collect import CollectConfig, collect

    common = ["--batch-size=4", "--checkpoint-every=2"]
    a, b = _twice(
        tmp_path,
        "pretrain",
        ["pretrain", f"--data={curated_dir}", "--steps=4", "--shuffle-buffer=8", *common],
    )
    for part in ("encoder", "predictor"):
        _same_weights(a / "final" / f"{part}.safetensors", b / "final" / f"{part}.safetensors")
    encoder = a / "final" / "encoder.safetensors"

    probe = ["probe", f"--encoder={encoder}", f"--data={curated_dir}", "--steps=4", "--heads=2"]
    a, b = _twice(
        tmp_path, "probe", [*probe, f"--labels={sample_dir / 'labels.parquet'}", "--batch-size=4"]
    )
    _same_weights(a / "final" / "probe.safetensors", b / "final" / "probe.safetensors")

    trajectories = tmp_path / "reach"
    collect(CollectConfig("vjepa/PointReach-v0", 6, str(trajectories), steps_per_episode=12))
    posttrain = ["posttrain", f"--encoder={encoder}", f"--trajectories={trajectories}"]
    a, b = _twice(tmp_path, "posttrain", [*posttrain, "--steps=4", "--frames=3", *common])
    for part in sorted(p.name for p in (a / "final" / "world_model").glob("*.safetensors")):
        _same_weights(a / "final" / "world_model" / part, b / "final" / "world_model" / part)
