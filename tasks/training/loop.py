"""The step loop every job shares: resume, data position, checkpoints, exactly-once metrics.

A job is an object with `state_dict`, `load_state_dict` and `train_step`; the
loop owns the step counter and the data position (epoch, batch within epoch),
saves both inside each checkpoint, and on start continues from the latest
committed checkpoint, skipping the batches the saved run already consumed.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

from tasks.training.checkpoints import CheckpointStore
from tasks.training.job import full_state


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


@dataclasses.dataclass
class Position:
    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0


def _batches_from(source: Callable[[int], Iterable[Any]], position: Position) -> Iterator[Any]:
    """Endless batches from `position` on; advances the epoch when one runs dry."""
    skip = position.batch_in_epoch
    while True:
        produced = False
        for index, batch in enumerate(source(position.epoch)):
            produced = True
            if index < skip:
                continue
            position.batch_in_epoch = index + 1
            yield batch
        if not produced:
            raise RuntimeError("the training data yielded no batch: is the dataset empty?")
        skip = 0
        position.epoch += 1
        position.batch_in_epoch = 0


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
) -> Position:
    """Train until `config.total_steps`; only the writer (rank 0) saves and prints."""
    position = restore(job, store)
    if is_writer and position.step:
        store.discard_after(position.step)
        print(f"[{config.name}] resuming at step {position.step}", file=sys.stderr, flush=True)
    pending: list[dict[str, Any]] = []
    batches = _batches_from(source, position)
    started, first_step = time.monotonic(), position.step
    while position.step < config.total_steps:
        batch = next(batches)
        metrics = job.train_step(batch, position.step)
        position.step += 1
        row = {"step": position.step, "epoch": position.epoch, **metrics}
        pending.append(row)
        if report is not None and position.step % config.log_every == 0:
            report(row)
        if is_writer and position.step % config.log_every == 0:
            rate = (position.step - first_step) / max(time.monotonic() - started, 1e-9)
            shown = " ".join(f"{k} {v:.4g}" for k, v in metrics.items())
            print(
                f"[{config.name}] step {position.step}/{config.total_steps} {shown} ({rate:.2f} steps/s)",
                file=sys.stderr,
                flush=True,
            )
        last = position.step == config.total_steps
        if last or position.step % config.checkpoint_every == 0:
            # Every rank builds the state: gathering FSDP shards is collective. The writer saves.
            state = {"job": full_state(job.state_dict()), "position": dataclasses.asdict(position)}
            if is_writer:
                store.save(position.step, state, pending)
            pending = []
    return position
