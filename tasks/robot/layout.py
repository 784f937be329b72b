"""The LeRobot dataset v3.0 layout: paths, `meta/info.json` features, statistics.

Mirrors what LeRobot's `LeRobotDataset` (codebase v3.0) writes and reads:

    meta/info.json                      schema, fps, path templates, totals
    meta/stats.json                     per-feature min/max/mean/std/count
    meta/tasks.parquet                  task text (index "task") -> task_index
    meta/episodes/chunk-000/file-000.parquet   one row per episode with offsets
    data/chunk-000/file-000.parquet     one row per frame (state, action, indices)
    videos/<video_key>/chunk-000/file-000.mp4  many episodes per file, back to back
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

CODEBASE_VERSION = "v3.0"
INFO_PATH = "meta/info.json"
STATS_PATH = "meta/stats.json"
TASKS_PATH = "meta/tasks.parquet"
EPISODES_DIR = "meta/episodes"
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
STATE_KEY = "observation.state"
ACTION_KEY = "action"
DEFAULT_VIDEO_KEY = "observation.images.top"
INDEX_FEATURES = ("frame_index", "episode_index", "index", "task_index")


@dataclass(frozen=True)
class DatasetSpec:
    """What a dataset holds: rate, vector sizes, one camera."""

    fps: int
    state_dim: int
    action_dim: int
    height: int
    width: int
    video_key: str = DEFAULT_VIDEO_KEY
    robot_type: str | None = None
    state_names: tuple[str, ...] | None = None
    action_names: tuple[str, ...] | None = None


@dataclass(frozen=True)
class ChunkLimits:
    """When to start a new file (size) and a new chunk folder (files per chunk), as LeRobot does."""

    chunks_size: int = 1000
    data_files_size_in_mb: float = 100
    video_files_size_in_mb: float = 200


def chunk_and_file(sequence: int, chunks_size: int) -> tuple[int, int]:
    """The (chunk_index, file_index) of the `sequence`-th file of a kind."""
    return sequence // chunks_size, sequence % chunks_size


def _vector_feature(dim: int, names: tuple[str, ...] | None) -> dict[str, Any]:
    return {"dtype": "float32", "shape": [dim], "names": list(names) if names else None}


def build_features(spec: DatasetSpec, codec: str, pix_fmt: str) -> dict[str, Any]:
    """The `features` block of `meta/info.json`."""
    video = {
        "dtype": "video",
        "shape": [spec.height, spec.width, 3],
        "names": ["height", "width", "channels"],
        "info": {
            "video.height": spec.height,
            "video.width": spec.width,
            "video.codec": codec,
            "video.pix_fmt": pix_fmt,
            "video.is_depth_map": False,
            "video.fps": spec.fps,
            "video.channels": 3,
            "has_audio": False,
        },
    }
    features: dict[str, Any] = {
        spec.video_key: video,
        STATE_KEY: _vector_feature(spec.state_dim, spec.state_names),
        ACTION_KEY: _vector_feature(spec.action_dim, spec.action_names),
        "timestamp": {"dtype": "float32", "shape": [1], "names": None},
    }
    for name in INDEX_FEATURES:
        features[name] = {"dtype": "int64", "shape": [1], "names": None}
    return features


def build_info(
    spec: DatasetSpec,
    limits: ChunkLimits,
    features: dict[str, Any],
    total_episodes: int,
    total_frames: int,
    total_tasks: int,
) -> dict[str, Any]:
    """The whole `meta/info.json` document."""
    return {
        "codebase_version": CODEBASE_VERSION,
        "robot_type": spec.robot_type,
        "total_episodes": total_episodes,
        "total_frames": total_frames,
        "total_tasks": total_tasks,
        "chunks_size": limits.chunks_size,
        "data_files_size_in_mb": limits.data_files_size_in_mb,
        "video_files_size_in_mb": limits.video_files_size_in_mb,
        "fps": spec.fps,
        "splits": {"train": f"0:{total_episodes}"},
        "data_path": DATA_PATH,
        "video_path": VIDEO_PATH,
        "features": features,
    }


# The quantiles LeRobot writes into meta/stats.json (its quantile normaliser needs them).
QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)
QUANTILE_NAMES = tuple(f"q{round(q * 100):02d}" for q in QUANTILES)


class RunningStats:
    """min/max/mean/std/count and q01..q99 of a feature, accumulated over batches of rows (N, D).

    Quantiles are exact per batch (one batch = one episode) and count-weighted means of the
    batch quantiles across batches: how LeRobot aggregates episode stats into `meta/stats.json`.
    """

    def __init__(self) -> None:
        self.count = 0
        self._sum: np.ndarray | None = None
        self._sum_sq: np.ndarray | None = None
        self._min: np.ndarray | None = None
        self._max: np.ndarray | None = None
        self._quantile_sum: np.ndarray | None = None  # (Q, D) count-weighted batch quantiles

    def update(self, values: np.ndarray) -> None:
        rows = np.asarray(values, dtype=np.float64).reshape(len(values), -1)  # (N, D)
        if len(rows) == 0:
            return
        if self._sum is None:
            self._sum = np.zeros(rows.shape[1])
            self._sum_sq = np.zeros(rows.shape[1])
            self._min = rows.min(axis=0)
            self._max = rows.max(axis=0)
        assert self._sum_sq is not None and self._min is not None and self._max is not None
        self._sum += rows.sum(axis=0)
        self._sum_sq += (rows * rows).sum(axis=0)
        self._min = np.minimum(self._min, rows.min(axis=0))
        self._max = np.maximum(self._max, rows.max(axis=0))
        quantiles = np.quantile(rows, QUANTILES, axis=0) * len(rows)  # (Q, D)
        self._quantile_sum = (
            quantiles if self._quantile_sum is None else self._quantile_sum + quantiles
        )
        self.count += len(rows)

    def as_dict(self, shape: tuple[int, ...] | None = None) -> dict[str, list[Any]]:
        """The statistics as JSON-ready lists, reshaped (images use (C, 1, 1) as LeRobot does)."""
        if self._sum is None:
            return {}
        assert self._sum_sq is not None and self._min is not None and self._max is not None
        mean = self._sum / self.count
        std = np.sqrt(np.maximum(self._sum_sq / self.count - mean * mean, 0.0))
        target = shape or mean.shape
        stats = {"min": self._min, "max": self._max, "mean": mean, "std": std}
        assert self._quantile_sum is not None
        for name, row in zip(QUANTILE_NAMES, self._quantile_sum / self.count, strict=True):
            stats[name] = row
        result: dict[str, list[Any]] = {k: v.reshape(target).tolist() for k, v in stats.items()}
        result["count"] = [self.count]
        return result


def image_rows(frames: np.ndarray) -> np.ndarray:
    """Pixels of frames (N, H, W, 3) uint8 as rows (M, 3) in [0, 1], subsampled on big frames."""
    step = max(1, int(np.sqrt(frames.shape[1] * frames.shape[2] / 4096)))
    pixels = frames[:, ::step, ::step, :].reshape(-1, 3)  # (M, 3)
    return pixels.astype(np.float32) / 255.0
