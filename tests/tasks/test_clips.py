"""The curated-dataset reader: Ray Dataset of shard rows and float (B, C, T, H, W) batches."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from modeling.preprocess import IMAGENET_MEAN, IMAGENET_STD
from tasks.clips import collate_clips, iter_clip_batches, read_clips
from tasks.curation.config import CurationConfig
from tasks.curation.dataset import assemble_dataset
from tasks.curation.pipeline import plan_curation, run_pending
from tasks.sample_videos import write_sample_videos


def test_collate_layout_and_normalisation() -> None:
    clips = np.zeros((2, 4, 16, 16, 3), dtype=np.uint8)  # (B, T, H, W, C)
    clips[1, ..., 0] = 255  # second clip: pure red
    batch = {
        "frames": np.array([clip.tobytes() for clip in clips], dtype=object),
        "shape": np.array([[4, 16, 16, 3]] * 2),
        "clip_id": np.array(["a", "b"]),
    }
    out = collate_clips(batch)
    video = out["video"]
    assert video.shape == (2, 3, 4, 16, 16) and video.dtype == torch.float32
    assert float(video[1, 0].min()) == 1.0 and float(video[1, 1].max()) == 0.0
    normalised = collate_clips(batch, mean=IMAGENET_MEAN, std=IMAGENET_STD)["video"]
    assert float(normalised[0, 0, 0, 0, 0]) == pytest.approx(
        -IMAGENET_MEAN[0] / IMAGENET_STD[0], rel=1e-5
    )
    batch["shape"] = np.array([[4, 16, 16, 3], [2, 16, 16, 3]])
    with pytest.raises(ValueError, match="different shapes"):
        collate_clips(batch)


def test_missing_dataset_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"manifest\.json is missing"):
        read_clips(str(tmp_path))


@pytest.mark.ray
def test_reader_yields_training_batches(ray_cluster: None, tmp_path: Path) -> None:
    write_sample_videos(str(tmp_path / "videos"), count=2, seconds=3.0)
    config = CurationConfig(fps=4, frames=4, size=32, rows_per_shard=2)
    plan = plan_curation([str(tmp_path / "videos")], str(tmp_path / "curated"), config)
    manifest = assemble_dataset(plan.output, config, plan.sources, plan.missing, run_pending(plan))

    dataset = read_clips(str(tmp_path / "curated"))
    assert dataset.count() == manifest["counts"]["num_clips"] == 6
    batches = list(iter_clip_batches(dataset, batch_size=4))
    assert [b["video"].shape[0] for b in batches] == [4, 2]
    video = batches[0]["video"]
    assert video.shape[1:] == (3, 4, 32, 32) and video.dtype == torch.float32
    assert float(video.min()) >= 0.0 and float(video.max()) <= 1.0 and float(video.std()) > 0.01
    ids = [clip for batch in batches for clip in batch["clip_id"]]
    assert len(set(ids)) == 6


def _ordered_clips(count: int) -> Any:
    import ray.data

    rows = [
        {
            "clip_id": f"c{index:03d}",
            "shape": [2, 4, 4, 3],
            "frames": np.full((2, 4, 4, 3), index, dtype=np.uint8).tobytes(),
        }
        for index in range(count)
    ]
    return ray.data.from_items(rows)


def _first_batches(dataset: Any, shuffle_buffer: int | None, seed: int = 0) -> list[int]:
    from tasks.training.job import clip_batches

    epoch = clip_batches(dataset.iterator(), 4, seed=seed, shuffle_buffer=shuffle_buffer)
    first = next(iter(epoch(0)))  # (4, C, T, H, W); every pixel of clip i is i / 255
    return [round(float(clip[0, 0, 0, 0]) * 255) for clip in first]


@pytest.mark.ray
def test_clip_batches_shuffle_buffer_mixes_far_apart_clips(ray_cluster: None) -> None:
    dataset = _ordered_clips(128)
    near = _first_batches(dataset, None)  # default: 4 batches = 16 clips held
    far = _first_batches(dataset, 128)
    assert max(near) < 16 + 4 and max(far) >= 16
    assert _first_batches(dataset, 128) == far  # same seed and epoch: same order (resume)
    assert _first_batches(dataset, 128, seed=1) != far
