"""The seeded shuffle of training rows: fixed by the seed, blind to how rows are chunked."""

from __future__ import annotations

import numpy as np

from tasks.training.ordering import seeded_shuffle, shuffled_batches


def _chunks(ids: np.ndarray, size: int) -> list[dict[str, np.ndarray]]:
    """The same rows cut into blocks of `size` (as Ray Data's auto-detected block count does)."""
    out = []
    for start in range(0, len(ids), size):
        part = ids[start : start + size]
        clip_ids = np.empty(len(part), dtype=object)
        clip_ids[:] = [f"clip-{i}" for i in part]
        out.append({"index": part, "clip_id": clip_ids, "frames": np.stack([part] * 3, axis=1)})
    return out


def _order(batches: list[dict[str, np.ndarray]]) -> list[int]:
    return [int(i) for batch in batches for i in batch["index"]]


def test_order_depends_on_the_seed_not_on_block_sizes() -> None:
    ids = np.arange(50)
    runs = {
        size: list(shuffled_batches(_chunks(ids, size), 4, buffer_size=16, seed=7))
        for size in (1, 3, 8, 50)
    }
    orders = {size: _order(batches) for size, batches in runs.items()}
    assert len({tuple(order) for order in orders.values()}) == 1  # one order for every chunking
    first = orders[1]
    assert len(first) == 48 and len(set(first)) == 48 and first != sorted(first)  # 2 dropped
    other_seed = _order(list(shuffled_batches(_chunks(ids, 8), 4, buffer_size=16, seed=8)))
    assert other_seed != first
    batch = runs[3][0]
    assert batch["clip_id"].dtype == object and batch["frames"].shape == (4, 3)
    assert [f"clip-{i}" for i in batch["index"]] == list(batch["clip_id"])


def test_seeded_shuffle_keeps_every_row_once() -> None:
    rows = list(range(10))
    assert sorted(seeded_shuffle(rows, 4, 0)) == rows
    assert list(seeded_shuffle(rows, 4, 0)) == list(seeded_shuffle(iter(rows), 4, 0))
