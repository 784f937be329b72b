"""Post-training on features the frozen encoder computed once, cached by encoder and dataset.

The encoder is frozen during AC post-training, so encoding every window's frames at
every step repeats the same work (and on a CPU it is most of the step). Instead the
worker reads its shard of training windows once, encodes the frames with the job's
own `encode_frames`, and trains from the resulting `FeaturePool` (features in float16,
raw actions and states), drawing seeded batches per epoch. The pool is saved under a
key made of the encoder file's digest, the dataset's version (digest of its
`meta/info.json` and `meta/stats.json`) and everything that shapes a window (frames,
control rate, image size, feature keys, the episode split, the worker's rank), so a
rerun or resume with the same inputs skips the encoding, and any change re-encodes.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tasks import storage

Batch = dict[str, np.ndarray]


@dataclass(frozen=True)
class FeaturePool:
    """Every training window of one worker: features `(W, T*N, D)`, actions, states."""

    features: np.ndarray  # (W, T*N, D) float16
    actions: np.ndarray  # (W, T-1, A) float32, raw units
    states: np.ndarray  # (W, T, S) float32, raw units

    def __len__(self) -> int:
        return len(self.features)

    def batches(self, batch_size: int, seed: int) -> Callable[[int], Iterator[Batch]]:
        """Epoch -> full batches in a seeded order (the same epoch gives the same batches)."""
        if len(self) < batch_size:
            raise ValueError(
                f"{len(self)} training windows are fewer than one batch ({batch_size})"
            )

        def epoch(index: int) -> Iterator[Batch]:
            order = np.random.default_rng([seed, index]).permutation(len(self))
            for start in range(0, len(order) - batch_size + 1, batch_size):
                pick = np.sort(order[start : start + batch_size])
                yield {
                    "features": self.features[pick],
                    "actions": self.actions[pick],
                    "states": self.states[pick],
                }

        return epoch

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        np.savez(buffer, features=self.features, actions=self.actions, states=self.states)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> FeaturePool:
        with np.load(io.BytesIO(data)) as arrays:
            return cls(arrays["features"], arrays["actions"], arrays["states"])


def encode_pool(encode: Callable[[Batch], np.ndarray], batches: Iterable[Batch]) -> FeaturePool:
    """Run the frozen encoder once over `batches` of windows (`frames`, `actions`, `states`)."""
    features, actions, states = [], [], []
    for batch in batches:
        features.append(np.asarray(encode(batch), dtype=np.float16))  # (B, T*N, D)
        actions.append(np.asarray(batch["actions"], dtype=np.float32))
        states.append(np.asarray(batch["states"], dtype=np.float32))
    if not features:
        raise ValueError("no training windows to encode")
    return FeaturePool(np.concatenate(features), np.concatenate(actions), np.concatenate(states))


def file_digest(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def dataset_version(uri: str) -> str:
    """Digest of a LeRobot dataset's `meta/info.json` and `meta/stats.json` (what they say)."""
    fs, root = storage.filesystem(uri)
    digest = hashlib.sha256()
    for name in ("info.json", "stats.json"):
        path = storage.join(root, "meta", name)
        digest.update(fs.cat_file(path) if fs.exists(path) else b"-")
    return digest.hexdigest()


def cache_key(encoder_digest: str, dataset: str, shape: dict[str, Any]) -> str:
    """One name for one (encoder, dataset version, window shape) combination."""
    text = json.dumps({"encoder": encoder_digest, "dataset": dataset, **shape}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def load_or_encode(uri: str, make: Callable[[], FeaturePool]) -> tuple[FeaturePool, bool]:
    """The pool saved at `uri`, else `make()` saved there; True when it came from the cache."""
    fs, path = storage.filesystem(uri)
    if fs.exists(path):
        return FeaturePool.from_bytes(fs.cat_file(path)), True
    pool = make()
    parent = path.rsplit("/", 1)[0]
    fs.makedirs(parent, exist_ok=True)
    temporary = f"{path}.partial"
    with fs.open(temporary, "wb") as handle:  # written elsewhere, then moved: never half a file
        handle.write(pool.to_bytes())
    fs.mv(temporary, path)
    return pool, False
