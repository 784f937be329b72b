"""Merge batches that wait for the model into one run, decided when the model becomes free.

Ray Serve's `@serve.batch` forms a batch from what arrived within its wait window and only then
waits for the previous batch to finish (`max_concurrent_batches`). Under load, requests that
trickle in while the model is busy are cut into many small batches that then run one after
another. `BatchMerger` sits behind `@serve.batch` (with several concurrent batches allowed): the
first waiter to get the model takes every pending batch (up to `max_items` robots) and runs
them together, so a batch holds everything that queued up while the previous one ran.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class BatchMerger(Generic[Item, Result]):
    """Run `run(items) -> results` on merged batches, one run at a time, FIFO."""

    def __init__(self, run: Callable[[list[Item]], list[Result]], max_items: int) -> None:
        if max_items < 1:
            raise ValueError("max_items must be >= 1")
        self.run = run
        self.max_items = max_items
        self._pending: list[tuple[Sequence[Item], asyncio.Future[list[Result]]]] = []
        self._lock: asyncio.Lock | None = None

    async def submit(self, items: Sequence[Item]) -> list[Result]:
        """Queue `items` and return their results once a (merged) run has covered them."""
        if self._lock is None:  # created on the loop that uses it
            self._lock = asyncio.Lock()
        future: asyncio.Future[list[Result]] = asyncio.get_running_loop().create_future()
        self._pending.append((items, future))
        while not future.done():
            async with self._lock:
                if not future.done():
                    await self._run_pending()
        return await future

    def _take(self) -> list[tuple[Sequence[Item], asyncio.Future[list[Result]]]]:
        taken: list[tuple[Sequence[Item], asyncio.Future[list[Result]]]] = []
        count = 0
        while self._pending and (not taken or count + len(self._pending[0][0]) <= self.max_items):
            entry = self._pending.pop(0)
            taken.append(entry)
            count += len(entry[0])
        return taken

    async def _run_pending(self) -> None:
        taken = self._take()
        merged = [item for items, _ in taken for item in items]
        try:
            results = await asyncio.to_thread(self.run, merged)
        except Exception as error:  # every request of the run gets the error
            for _, future in taken:
                future.set_exception(error)
            return
        start = 0
        for items, future in taken:
            future.set_result(results[start : start + len(items)])
            start += len(items)
