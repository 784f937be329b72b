"""Quality stage: per-clip statistics (motion, brightness, contrast) and blank/frozen verdicts.

All statistics come from a luma image subsampled by `quality_stride` in both
directions, computed for the whole batch at once in numpy. Clips are never
removed here: a rejected clip gets `drop_reason` ("blank" or "frozen") so the
pipeline can still count every clip of a source before committing it.

- motion_score: mean |rgb(t+1) - rgb(t)| / 255 over the clip, in [0, 1]. RGB rather
  than luma so that a small object of a colour as bright as the background still
  counts as motion; a frozen stream (repeated frames) scores ~0.
- mean_intensity / std_intensity: mean and std of luma / 255 over the clip.
- blank: at least `blank_frame_fraction` of frames have luma std < `blank_std_threshold`.
- frozen: motion_score < `frozen_motion_threshold`.
"""

from __future__ import annotations

import numpy as np

from tasks.curation.config import CurationConfig

LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def clip_statistics(frames: np.ndarray, stride: int) -> dict[str, np.ndarray]:
    """Statistics of uint8 clips `(N, T, H, W, C)`; each output is `(N,)` float32."""
    sampled = frames[:, :, ::stride, ::stride, :].astype(np.float32)  # (N, T, h, w, C)
    luma = sampled @ LUMA  # (N, T, h, w)
    frame_std = luma.std(axis=(2, 3))  # (N, T)
    if sampled.shape[1] > 1:
        motion = np.abs(np.diff(sampled, axis=1)).mean(axis=(1, 2, 3, 4)) / 255.0  # (N,)
    else:
        motion = np.zeros(len(sampled), dtype=np.float32)
    return {
        "motion_score": motion.astype(np.float32),
        "mean_intensity": (luma.mean(axis=(1, 2, 3)) / 255.0).astype(np.float32),
        "std_intensity": (luma.std(axis=(1, 2, 3)) / 255.0).astype(np.float32),
        "frame_std": frame_std,  # (N, T), luma units 0-255
    }


class QualityStage:
    """Adds statistics and `drop_reason` to clip rows; end rows pass through untouched."""

    def __init__(self, config: CurationConfig) -> None:
        self.config = config

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        stats = clip_statistics(batch["frames"], self.config.quality_stride)
        frame_std = stats.pop("frame_std")  # (N, T)
        blank = (frame_std < self.config.blank_std_threshold).mean(
            axis=1
        ) >= self.config.blank_frame_fraction
        frozen = stats["motion_score"] < self.config.frozen_motion_threshold
        reasons = np.where(blank, "blank", np.where(frozen, "frozen", ""))
        reasons = np.where(batch["is_end"], "", reasons)
        return {**batch, **stats, "drop_reason": reasons}
