"""The step loop every job shares: resume, data position, checkpoints, exactly-once metrics.

A job is an object with `state_dict`, `load_state_dict` and `train_step`; the
loop owns the step counter and the data position (epoch, batch within epoch),
saves both inside each checkpoint, and on start continues from the latest
committed checkpoint, skipping the batches the saved run already consumed.
Batches are read a few ahead in a background thread (`LoopConfig.prefetch`);
the position counts the batches the steps consumed, not the ones read.
"""

from __future__ import annotations

import contextlib
import dataclasses
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Generic, Protocol, TypeVar, cast

from tasks import progress
from tasks.training.checkpoints import CheckpointStore
from tasks.training.job import full_state

Item = TypeVar("Item")


class Job(Protocol):
    """What the loop needs from a training job."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    def train_step(self, batch: Any, step: int) -> dict[str, float]: ...


@dataclasses.dataclass(frozen=True)
class LoopConfig:
    total_steps: int
    checkpoint_every: int = 50
    log_every: int = 10
    name: str = "train"
    prefetch: int = 2  # batches read ahead in a background thread; 0 reads in the loop's thread


@dataclasses.dataclass
class Position:
    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0


def indexed_batches(
    source: Callable[[int], Iterable[Any]], start: Position
) -> Iterator[tuple[int, int, Any]]:
    """Endless `(epoch, index in epoch, batch)` from `start` on, skipping what it consumed."""
    epoch, skip = start.epoch, start.batch_in_epoch
    while True:
        produced = False
        for index, batch in enumerate(source(epoch)):
            produced = True
            if index >= skip:
                yield epoch, index, batch
        if not produced:
            raise RuntimeError("the training data yielded no batch: is the dataset empty?")
        epoch, skip = epoch + 1, 0


class Prefetcher(Generic[Item]):
    """Runs an iterator in a background thread, up to `depth` items ahead of the consumer.

    Reading and collating the next batches (Ray Data fetches, shuffling, uint8 -> float) then
    overlaps the training step, which spends most of its time in torch kernels that release the
    GIL; the next epoch's read starts while the last batches of this one train. Items arrive in
    the iterator's order; an error in the thread is raised by `__next__`.
    """

    def __init__(self, items: Iterator[Item], depth: int = 2) -> None:
        self._queue: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._fill, args=(items,), name="batch-prefetch", daemon=True
        )
        self._thread.start()

    def _fill(self, items: Iterator[Item]) -> None:
        try:
            for item in items:
                if not self._put(("item", item)):
                    return
            self._put(("end", None))
        except BaseException as error:  # handed to the consumer, raised there
            self._put(("error", error))
        finally:
            close = getattr(items, "close", None)
            if callable(close):
                close()  # a generator's clean-up runs in the thread that ran it

    def _put(self, entry: tuple[str, Any]) -> bool:
        while not self._stop.is_set():
            with contextlib.suppress(queue.Full):
                self._queue.put(entry, timeout=0.1)
                return True
        return False

    def __iter__(self) -> Prefetcher[Item]:
        return self

    def __next__(self) -> Item:
        kind, value = self._queue.get()
        if kind == "error":
            raise value
        if kind == "end":
            raise StopIteration
        return cast(Item, value)

    def close(self) -> None:
        """Stop the thread. It may wait inside a read (the next epoch of a split dataset starts
        when every worker asks for it): a daemon thread, it is not waited for long."""
        self._stop.set()
        with contextlib.suppress(queue.Empty):
            while True:
                self._queue.get_nowait()
        self._thread.join(timeout=1)


def batch_stream(
    source: Callable[[int], Iterable[Any]], start: Position, prefetch: int
) -> Iterator[tuple[int, int, Any]] | Prefetcher[tuple[int, int, Any]]:
    """`indexed_batches`, read `prefetch` batches ahead in a thread (0: in the caller's thread)."""
    batches = indexed_batches(source, start)
    return Prefetcher(batches, prefetch) if prefetch > 0 else batches


def restore(job: Job, store: CheckpointStore) -> Position:
    """Load the latest committed checkpoint into `job`; the position to continue from."""
    step = store.latest_step()
    if step is None:
        return Position()
    state = store.load(step)
    job.load_state_dict(state["job"])
    return Position(**state["position"])


def run_loop(
    job: Job,
    source: Callable[[int], Iterable[Any]],
    store: CheckpointStore,
    config: LoopConfig,
    *,
    is_writer: bool = True,
    report: Callable[[dict[str, Any]], None] | None = None,
    should_stop: Callable[[int], bool] | None = None,
) -> Position:
    """Train until `config.total_steps`; only the writer (rank 0) saves and prints.

    `should_stop(step)` is asked after every step (a stopping rule; every rank must answer the
    same): True saves a checkpoint at that step and ends the loop before the cap.
    """
    position = restore(job, store)
    if is_writer and position.step:
        store.discard_after(position.step)
        print(f"[{config.name}] resuming at step {position.step}", file=sys.stderr, flush=True)
        progress.warn(f"{config.name} continues from its checkpoint at step {position.step}")
    if position.step >= config.total_steps:
        return position
    if is_writer:
        progress.report(config.name, position.step, config.total_steps, "step")
    batches = batch_stream(source, position, config.prefetch)
    try:
        _steps(job, batches, store, config, position, is_writer, report, should_stop)
    finally:
        if isinstance(batches, Prefetcher):
            batches.close()
    return position


def _steps(
    job: Job,
    batches: Iterator[tuple[int, int, Any]],
    store: CheckpointStore,
    config: LoopConfig,
    position: Position,
    is_writer: bool,
    report: Callable[[dict[str, Any]], None] | None,
    should_stop: Callable[[int], bool] | None = None,
) -> None:
    """The steps from `position` to `config.total_steps`; `position` follows the consumed batches."""
    pending: list[dict[str, Any]] = []
    started, first_step = time.monotonic(), position.step
    while position.step < config.total_steps:
        position.epoch, index, batch = next(batches)
        position.batch_in_epoch = index + 1
        metrics = job.train_step(batch, position.step)
        position.step += 1
        row = {"step": position.step, "epoch": position.epoch, **metrics}
        pending.append(row)
        if report is not None and position.step % config.log_every == 0:
            report(row)
        if is_writer:
            figures = {k: v for k, v in metrics.items() if "loss" in k} or dict(
                list(metrics.items())[:2]
            )
            progress.report(config.name, position.step, config.total_steps, "step", **figures)
        if is_writer and position.step % config.log_every == 0:
            rate = (position.step - first_step) / max(time.monotonic() - started, 1e-9)
            shown = " ".join(f"{k} {v:.4g}" for k, v in metrics.items())
            print(
                f"[{config.name}] step {position.step}/{config.total_steps} {shown} ({rate:.2f} steps/s)",
                file=sys.stderr,
                flush=True,
            )
        stop = should_stop is not None and should_stop(position.step)
        last = position.step == config.total_steps or stop
        if last or position.step % config.checkpoint_every == 0:
            # Every rank builds the state: gathering FSDP shards is collective. The writer saves.
            state = {"job": full_state(job.state_dict()), "position": dataclasses.asdict(position)}
            if is_writer:
                store.save(position.step, state, pending)
            pending = []
        if stop:
            return
