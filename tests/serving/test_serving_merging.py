"""BatchMerger: batches that queue while the model is busy run together, in order, bounded."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from serving.merging import BatchMerger


class SlowDoubler:
    """Doubles numbers; the first run blocks until released, so others can queue behind it."""

    def __init__(self) -> None:
        self.runs: list[list[int]] = []
        self.release = threading.Event()

    def __call__(self, items: list[int]) -> list[int]:
        self.runs.append(list(items))
        if len(self.runs) == 1:
            self.release.wait(timeout=5)
        return [2 * item for item in items]


async def submit_while_busy(merger: BatchMerger[int, int], model: SlowDoubler) -> list[list[int]]:
    first = asyncio.create_task(merger.submit([0]))
    while not model.runs:  # the first run has started and holds the model
        await asyncio.sleep(0.001)
    others = [asyncio.create_task(merger.submit([i, i + 100])) for i in range(1, 6)]
    await asyncio.sleep(0.01)
    model.release.set()
    return [await first, *[await task for task in others]]


def test_batches_queued_during_a_run_are_merged_into_the_next() -> None:
    model = SlowDoubler()
    results = asyncio.run(submit_while_busy(BatchMerger(model, max_items=64), model))
    assert results == [[0]] + [[2 * i, 2 * (i + 100)] for i in range(1, 6)]
    assert [len(run) for run in model.runs] == [1, 10]  # one merged run, not five


def test_max_items_bounds_a_run_and_order_is_kept() -> None:
    model = SlowDoubler()
    asyncio.run(submit_while_busy(BatchMerger(model, max_items=4), model))
    assert [len(run) for run in model.runs] == [1, 4, 4, 2]
    assert [item for run in model.runs[1:] for item in run][:4] == [1, 101, 2, 102]


def test_a_failing_run_fails_every_request_in_it() -> None:
    def broken(items: list[int]) -> list[int]:
        time.sleep(0.01)
        raise RuntimeError("model exploded")

    async def go() -> list[BaseException | list[int]]:
        merger: BatchMerger[int, int] = BatchMerger(broken, max_items=8)
        return await asyncio.gather(*(merger.submit([i]) for i in range(3)), return_exceptions=True)

    outcomes = asyncio.run(go())
    assert all(isinstance(o, RuntimeError) and "exploded" in str(o) for o in outcomes)
    with pytest.raises(ValueError, match="max_items"):
        BatchMerger(broken, max_items=0)
