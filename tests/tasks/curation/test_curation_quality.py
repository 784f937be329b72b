"""Quality statistics and blank/frozen verdicts on synthetic numpy clips."""

from __future__ import annotations

import numpy as np

from tasks.curation.config import CurationConfig
from tasks.curation.quality import QualityStage, clip_statistics


def _clips() -> np.ndarray:
    rng = np.random.default_rng(0)
    moving = rng.integers(0, 255, size=(4, 16, 16, 3), dtype=np.uint8)  # (T, H, W, C) noise
    frozen = np.repeat(moving[:1], 4, axis=0)  # same textured frame four times
    blank = np.full((4, 16, 16, 3), 12, dtype=np.uint8)
    return np.stack([moving, frozen, blank])  # (3, T, H, W, C)


def test_statistics_ranges() -> None:
    stats = clip_statistics(_clips(), stride=1)
    assert stats["motion_score"].shape == (3,)
    assert stats["motion_score"][0] > 0.2
    assert stats["motion_score"][1] == 0.0
    assert np.all((stats["mean_intensity"] >= 0) & (stats["mean_intensity"] <= 1))
    assert stats["std_intensity"][2] == 0.0


def test_verdicts_and_end_rows_pass_through() -> None:
    stage = QualityStage(CurationConfig(frames=4, size=16, quality_stride=2))
    batch = {"frames": _clips(), "is_end": np.array([False, False, True])}
    out = stage(batch)
    assert out["drop_reason"].tolist() == ["", "frozen", ""]  # the end row is never dropped
    batch["is_end"] = np.zeros(3, dtype=bool)
    assert stage(batch)["drop_reason"].tolist() == ["", "frozen", "blank"]
    assert out["motion_score"].dtype == np.float32
