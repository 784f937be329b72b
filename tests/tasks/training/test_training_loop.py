"""The shared step loop: checkpoints, resume at the saved step and data position, metrics once."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from tasks.training.checkpoints import CheckpointStore
from tasks.training.launch import ExistingRunError, check_output
from tasks.training.loop import LoopConfig, Prefetcher, run_loop


class CountingJob:
    """Records which batches it saw; its state is the running sum."""

    def __init__(self) -> None:
        self.total = torch.zeros(())
        self.seen: list[int] = []

    def state_dict(self) -> dict[str, Any]:
        return {"total": self.total.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.total = state["total"]

    def train_step(self, batch: Any, step: int) -> dict[str, float]:
        self.seen.append(int(batch))
        self.total += batch
        return {"total": float(self.total)}


def source(epoch: int) -> list[int]:
    return [epoch * 100 + i for i in range(7)]


def test_runs_to_the_end_with_metrics_once(tmp_path: Path) -> None:
    store = CheckpointStore(str(tmp_path))
    job = CountingJob()
    position = run_loop(job, source, store, LoopConfig(total_steps=17, checkpoint_every=5))
    assert position.step == 17 and (position.epoch, position.batch_in_epoch) == (2, 3)
    assert store.committed_steps() == [10, 15, 17]  # keeps the last 3
    assert [row["step"] for row in store.metrics()] == list(range(1, 18))
    assert job.seen == [*range(7), *range(100, 107), 200, 201, 202]


def test_resume_continues_at_saved_step_and_data_position(tmp_path: Path) -> None:
    uninterrupted = CountingJob()
    run_loop(
        uninterrupted,
        source,
        CheckpointStore(str(tmp_path / "a")),
        LoopConfig(total_steps=12, checkpoint_every=4),
    )

    store = CheckpointStore(str(tmp_path / "b"))
    first = CountingJob()
    run_loop(first, source, store, LoopConfig(total_steps=9, checkpoint_every=4))
    assert store.latest_step() == 9
    with pytest.raises(ExistingRunError, match="--resume"):
        check_output(str(tmp_path / "b"), resume=False)
    assert check_output(str(tmp_path / "b"), resume=True) == 9
    second = CountingJob()
    run_loop(second, source, store, LoopConfig(total_steps=12, checkpoint_every=4))
    assert second.seen == uninterrupted.seen[9:]
    assert float(second.total) == float(uninterrupted.total)
    assert [row["step"] for row in store.metrics()] == list(range(1, 13))


def test_crash_between_checkpoints_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    store = CheckpointStore(str(tmp_path))

    class Crashing(CountingJob):
        def train_step(self, batch: Any, step: int) -> dict[str, float]:
            if step == 7:
                raise RuntimeError("worker died")
            return super().train_step(batch, step)

    with pytest.raises(RuntimeError):
        run_loop(Crashing(), source, store, LoopConfig(total_steps=10, checkpoint_every=5))
    # A half-written checkpoint (no marker) and a stray metrics segment from the crash.
    store.fs.makedirs(f"{store.root}/checkpoints/step_00000006", exist_ok=True)
    store.fs.pipe_file(f"{store.root}/metrics/step_00000006.jsonl", b'{"step": 6}\n')
    assert store.latest_step() == 5
    run_loop(CountingJob(), source, store, LoopConfig(total_steps=10, checkpoint_every=5))
    assert [row["step"] for row in store.metrics()] == list(range(1, 11))


def test_empty_data_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="no batch"):
        run_loop(
            CountingJob(),
            lambda epoch: [],
            CheckpointStore(str(tmp_path)),
            LoopConfig(total_steps=3),
        )


def test_prefetched_and_inline_reads_train_the_same(tmp_path: Path) -> None:
    runs = []
    for prefetch in (0, 3):
        job = CountingJob()
        store = CheckpointStore(str(tmp_path / f"prefetch{prefetch}"))
        config = LoopConfig(total_steps=16, checkpoint_every=5, prefetch=prefetch)
        position = run_loop(job, source, store, config)
        runs.append((job.seen, dataclasses.astuple(position), store.load()["position"]))
    assert runs[0] == runs[1]
    assert runs[1][2] == {"step": 16, "epoch": 2, "batch_in_epoch": 2}


def test_prefetcher_keeps_order_raises_errors_and_stops() -> None:
    def items() -> Iterator[int]:
        yield from range(5)
        raise ValueError("bad shard")

    prefetcher = Prefetcher(items(), depth=2)
    assert [next(prefetcher) for _ in range(5)] == list(range(5))
    with pytest.raises(ValueError, match="bad shard"):
        next(prefetcher)
    endless = Prefetcher(itertools.count(), depth=2)
    assert next(endless) == 0
    endless.close()  # the thread waits on a full queue; close ends it
    assert not endless._thread.is_alive()
    assert list(Prefetcher(iter([1, 2]), depth=4)) == [1, 2]
