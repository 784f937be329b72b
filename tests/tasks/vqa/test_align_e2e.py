"""End to end on real parts: sample videos -> curate -> make-tiny-lm -> align -> eval-vqa."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flows.cli import main


@pytest.mark.slow
@pytest.mark.ray
def test_align_then_eval_vqa_and_a_mismatched_encoder_exits_2(
    tmp_path: Path, ray_cluster: None, capsys: pytest.CaptureFixture[str]
) -> None:
    videos, curated = tmp_path / "videos", tmp_path / "curated"
    assert main(["sample-videos", "--output", str(videos), "--count", "8", "--seconds", "2"]) == 0
    curate = ["curate", "--input", str(videos), "--output", str(curated)]
    assert main([*curate, "--fps", "4", "--frames", "4", "--size", "32"]) == 0
    qa = str(videos / "qa.parquet")
    lm = tmp_path / "lm"
    assert main(["make-tiny-lm", "--corpus", qa, "--output", str(lm), "--steps", "5"]) == 0
    capsys.readouterr()
    align = ["align", "--encoder", "random:tiny", "--lm", str(lm), "--data", str(curated)]
    assert (
        main([*align, "--qa", qa, "--output", str(tmp_path / "run"), "--steps", "4", "--json"]) == 0
    )
    model = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["model"]
    assert json.loads(Path(model, "vlm.json").read_text())["image_size"] == 32  # the clips' side
    evaluate = ["eval-vqa", "--model", model, "--data", str(curated), "--qa", qa, "--json"]
    assert main(evaluate) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["num_questions"] > 0
    assert set(summary["per_type"]) == {"shape", "colour", "direction", "speed"}
    # one clip per video here: each type's phrasings share it (the demo's pass margin counts clips)
    assert all(
        0 < summary["clips_per_type"][k] < summary["questions_per_type"][k]
        for k in summary["per_type"]
    )
    assert 0.0 <= summary["accuracy"] <= 1.0 and 0.0 <= summary["majority_accuracy"] <= 1.0
    assert set(summary["seen_phrasing_per_type"]) == set(summary["per_type"])
    assert set(summary["heldout_phrasing_per_type"]) <= set(summary["per_type"])
    assert main([*evaluate[:-1], "--encoder", "random:tiny:1"]) == 2
    assert "trained for the encoder" in capsys.readouterr().err
