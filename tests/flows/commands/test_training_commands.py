"""`vjepa pretrain` and `vjepa probe` through the real CLI: every documented flag reaches the job."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flows.cli import main

pytestmark = [pytest.mark.ray]


def last_json(text: str) -> dict:
    return json.loads(text.strip().splitlines()[-1])


def test_pretrain_then_probe_commands(
    curated_dir: Path,
    sample_dir: Path,
    tmp_path: Path,
    prefect_harness: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    output = tmp_path / "pretrain"
    pretrain = [
        "pretrain",
        f"--data={curated_dir}",
        f"--output={output}",
        "--steps=2",
        "--batch-size=4",
        "--lr=2e-4",
        "--ema=0.996",
        "--ema-final=1.0",
        "--grad-clip=1.0",
        "--crop-scale",
        "0.6",
        "1.0",
        "--shuffle-buffer=16",
        "--json",
    ]
    assert main(pretrain) == 0
    captured = capsys.readouterr()
    summary = last_json(captured.out)
    assert summary["steps"] == 2 and Path(summary["encoder_checkpoint"]).is_file()
    # the Ray Train worker's progress reached the CLI's display (plain lines: not a terminal)
    assert "[pretrain] done: 2 steps" in captured.err and "loss" in captured.err
    assert (output / "logs" / "vjepa.log").is_file()

    probe = [
        "probe",
        f"--encoder={summary['encoder_checkpoint']}",
        f"--data={curated_dir}",
        f"--labels={sample_dir / 'labels.parquet'}",
        f"--output={tmp_path / 'probe'}",
        "--label-column=shape",  # a text column: class names, indexed in sorted order
        "--steps=2",
        "--heads=2",
        "--json",
    ]
    assert main(probe) == 0
    result = last_json(capsys.readouterr().out)
    assert 0.0 <= result["accuracy"] <= 1.0 and result["heldout_clips"] > 0
    assert result["heads_per_lr"] == 2 and result["accuracy_std"] >= 0.0
    assert result["label_column"] == "shape"
    assert result["classes"] == sorted(result["classes"]) and 2 <= len(result["classes"]) <= 3


def test_pretrain_rejects_a_bad_crop_scale(
    curated_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "pretrain",
            f"--data={curated_dir}",
            f"--output={tmp_path / 'x'}",
            "--crop-scale",
            "0.9",
            "0.5",
        ]
    )
    assert code == 2
    assert "crop_scale" in capsys.readouterr().err


def test_pretrain_with_more_cpus_than_the_cluster_has_is_a_usage_error(
    curated_dir: Path, tmp_path: Path, prefect_harness: None, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [f"--data={curated_dir}", f"--output={tmp_path / 'x'}", "--cpus-per-worker=3"]
    assert main(["pretrain", *args]) == 2
    assert "this Ray cluster has 2: lower --workers or --cpus-per-worker" in capsys.readouterr().err
    assert not (tmp_path / "x" / "checkpoints").exists()
