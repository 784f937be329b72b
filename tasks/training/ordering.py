"""Training data in an order fixed by the seed: Ray Data in file order, then our own shuffle.

Ray Data's `local_shuffle_buffer_size` shuffles per arriving block, so its order changes with
the block count it auto-detects (cluster CPUs, memory) and with the order blocks finish in.
Here Ray Data keeps its input order (`preserve_order`), and rows pass a seeded shuffle buffer
of our own that sees one row at a time: the clip order depends on the seed, the data and the
worker count alone, never on block sizes or timing.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")
Batch = dict[str, np.ndarray]


def keep_input_order() -> None:
    """Make Ray Data (this driver's context; Train ingest copies it) yield rows in file order."""
    from ray.data import DataContext

    DataContext.get_current().execution_options.preserve_order = True


def seeded_shuffle(rows: Iterable[T], buffer_size: int, seed: int) -> Iterator[T]:
    """`rows` through a shuffle buffer of `buffer_size` rows drawn by `random.Random(seed)`."""
    rng = random.Random(seed)
    buffer: list[T] = []
    for row in rows:
        if len(buffer) < buffer_size:
            buffer.append(row)
            continue
        index = rng.randrange(buffer_size)
        yield buffer[index]
        buffer[index] = row
    rng.shuffle(buffer)
    yield from buffer


def _rows(batches: Iterable[Batch]) -> Iterator[dict[str, Any]]:
    for batch in batches:
        count = len(next(iter(batch.values()))) if batch else 0
        for index in range(count):
            yield {key: column[index] for key, column in batch.items()}


def _stack(rows: list[dict[str, Any]], dtypes: dict[str, np.dtype[Any]]) -> Batch:
    out: Batch = {}
    for key, dtype in dtypes.items():
        if dtype.kind == "O":
            column = np.empty(len(rows), dtype=object)
            column[:] = [row[key] for row in rows]
            out[key] = column
        else:
            out[key] = np.stack([row[key] for row in rows])
    return out


def shuffled_batches(
    batches: Iterable[Batch], batch_size: int, buffer_size: int, seed: int
) -> Iterator[Batch]:
    """Re-batch numpy `batches` into `batch_size` rows after `seeded_shuffle` (last partial
    batch dropped), keeping every column's dtype."""
    dtypes: dict[str, np.dtype[Any]] = {}

    def recorded(source: Iterable[Batch]) -> Iterator[Batch]:
        for batch in source:
            dtypes.update({key: column.dtype for key, column in batch.items()})
            yield batch

    chunk: list[dict[str, Any]] = []
    for row in seeded_shuffle(_rows(recorded(batches)), max(1, buffer_size), seed):
        chunk.append(row)
        if len(chunk) == batch_size:
            yield _stack(chunk, dtypes)
            chunk = []
