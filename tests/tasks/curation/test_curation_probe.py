"""Probe and filter stages on real files: facts for good videos, readable reasons for bad ones."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from tasks.curation.config import CurationConfig
from tasks.curation.probe import FilterStage, ProbeStage


def _probe(config: CurationConfig, *paths: Path) -> dict[str, np.ndarray]:
    batch = {
        "source": np.array([str(p) for p in paths]),
        "size": np.array([p.stat().st_size for p in paths]),
    }
    return FilterStage(config)(ProbeStage(config)(batch))


def test_good_videos_have_facts(small_config: CurationConfig, videos: dict[str, Path]) -> None:
    out = _probe(small_config, videos["moving_mp4"], videos["moving_webm"])
    assert out["error_stage"].tolist() == ["", ""]
    assert out["codec"].tolist() == ["h264", "vp9"]
    assert out["width"].tolist() == [96, 64] and out["height"].tolist() == [64, 80]
    assert abs(float(out["duration_s"][0]) - 3.0) < 0.2
    assert out["source_fps"][0] == pytest.approx(12)


@pytest.mark.parametrize(
    ("name", "stage", "words"),
    [
        ("empty", "probe", "empty file (0 bytes)"),
        ("notes", "probe", "a text file, not a video"),
        ("truncated", "probe", "truncated"),
        ("audio_only", "probe", "no video stream (only audio: aac)"),
        ("picture", "filter", "a still image (png)"),
        ("too_short", "filter", "too short"),
    ],
)
def test_bad_inputs_get_reasons(
    small_config: CurationConfig, videos: dict[str, Path], name: str, stage: str, words: str
) -> None:
    out = _probe(small_config, videos[name])
    assert out["error_stage"].tolist() == [stage]
    assert words in str(out["error_reason"][0])


def test_filter_rules_on_facts() -> None:
    stage = FilterStage(
        CurationConfig(fps=4, frames=4, size=32, min_short_side=48, allowed_codecs=("h264",))
    )
    facts = {
        "codec": "h264",
        "container": "mov",
        "duration_s": 2.0,
        "width": 64,
        "height": 48,
        "source_fps": 25.0,
    }
    assert stage.check(facts) == ""
    assert "allow-list" in stage.check({**facts, "codec": "vp9"})
    assert "resolution too low: 64x40" in stage.check({**facts, "height": 40})
    assert "no known duration" in stage.check({**facts, "duration_s": math.nan})
    assert "too short: 0.50s" in stage.check({**facts, "duration_s": 0.5})
