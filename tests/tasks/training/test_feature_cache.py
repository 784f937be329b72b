"""Feature cache: one encoding per (encoder, dataset version, window shape), seeded batches."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tasks.training.feature_cache import (
    FeaturePool,
    cache_key,
    dataset_version,
    encode_pool,
    file_digest,
    load_or_encode,
)


def _windows(count: int) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    return [
        {
            "frames": rng.integers(0, 255, (4, 3, 8, 8, 3), dtype=np.uint8),
            "actions": rng.normal(size=(4, 2, 2)).astype(np.float32),
            "states": rng.normal(size=(4, 3, 2)).astype(np.float32),
        }
        for _ in range(count)
    ]


def _encode(batch: dict[str, np.ndarray]) -> np.ndarray:
    return batch["frames"].reshape(len(batch["frames"]), 3, -1).astype(np.float32) / 255.0


def test_pool_batches_are_seeded_full_and_cover_the_windows() -> None:
    pool = encode_pool(_encode, _windows(5))  # 20 windows
    assert len(pool) == 20 and pool.features.dtype == np.float16
    epoch = pool.batches(6, seed=3)
    first, again, other = list(epoch(0)), list(epoch(0)), list(epoch(1))
    assert len(first) == 3 and all(len(b["features"]) == 6 for b in first)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a["actions"], b["actions"])
    assert not np.array_equal(first[0]["actions"], other[0]["actions"])
    with pytest.raises(ValueError, match="fewer than one batch"):
        pool.batches(21, 0)


def test_load_or_encode_reuses_the_saved_pool(tmp_path: Path) -> None:
    calls = []

    def make() -> FeaturePool:
        calls.append(1)
        return encode_pool(_encode, _windows(2))

    uri = str(tmp_path / "cache" / "key.npz")
    pool, reused = load_or_encode(uri, make)
    again, reused_again = load_or_encode(uri, make)
    assert (reused, reused_again, len(calls)) == (False, True, 1)
    np.testing.assert_array_equal(pool.features, again.features)
    np.testing.assert_array_equal(pool.states, again.states)
    assert not (tmp_path / "cache" / "key.npz.partial").exists()


def test_key_follows_encoder_dataset_and_window_shape(tmp_path: Path) -> None:
    encoder = tmp_path / "encoder.bin"
    encoder.write_bytes(b"weights")
    meta = tmp_path / "data" / "meta"
    meta.mkdir(parents=True)
    (meta / "info.json").write_text(json.dumps({"total_frames": 10}))
    digest, version = file_digest(encoder), dataset_version(str(tmp_path / "data"))
    base = cache_key(digest, version, {"frames": 3})
    assert base == cache_key(digest, version, {"frames": 3})
    assert base != cache_key(digest, version, {"frames": 4})
    (meta / "info.json").write_text(json.dumps({"total_frames": 11}))  # the dataset changed
    assert base != cache_key(digest, dataset_version(str(tmp_path / "data")), {"frames": 3})
    encoder.write_bytes(b"other weights")
    assert base != cache_key(file_digest(encoder), version, {"frames": 3})
