"""Ray Data wiring of the curation stages and the driver-side per-source commits.

`plan_curation` lists the inputs and splits them into committed and pending
sources. `run_pending` runs one Ray Data `map_batches` over the pending ones:
`SourceStage` chains the stages, decode (one ffmpeg per source that also
probes and filters) -> quality -> part writer, inside one call, so a source
travels through all of them in one worker process and its frames never become
Ray blocks (no conversion or copy between stages, nothing in the object store).
Each task runs one ffmpeg at a time (`num_cpus=1` per task, as many tasks as
CPUs) over a few sources (`task_sizes`: fewer task boundaries, where a worker
waits for Ray Data's scheduler), and hands on each source's metadata rows as
soon as the source is done. The driver streams those rows, counts each
source's clips against its end row, and commits the source once everything it
produced is written.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from tasks import progress as live
from tasks import storage
from tasks.curation.config import CurationConfig
from tasks.curation.dataset import SourceResult, commit_source, load_committed
from tasks.curation.decode import DecodeStage
from tasks.curation.quality import QualityStage
from tasks.curation.sources import MissingInput, SourceItem, discover_sources
from tasks.curation.writer import PartWriterStage

Progress = Callable[[SourceResult, int, int], None]
MAX_REJECTION_WARNINGS = 10  # beyond these, rejected.parquet lists the rest
MAX_SOURCES_PER_TASK = 16


@dataclasses.dataclass(frozen=True)
class CurationPlan:
    """The sources of a run, which are already committed, and which still need work."""

    output: str
    config: CurationConfig
    sources: list[SourceItem]
    missing: list[MissingInput]
    committed: dict[str, SourceResult]

    def key(self, item: SourceItem) -> str:
        return item.key(self.config.fingerprint())

    @property
    def pending(self) -> list[SourceItem]:
        return [item for item in self.sources if self.key(item) not in self.committed]


def plan_curation(inputs: list[str], output: str, config: CurationConfig) -> CurationPlan:
    """Discover the inputs and load the commits a previous (possibly killed) run left."""
    if not storage.is_remote(output):
        output = os.path.abspath(output)  # Ray workers may not share the driver's cwd
    sources, missing = discover_sources(inputs, config.video_extensions)
    keys = {item.key(config.fingerprint()) for item in sources}
    committed = {key: result for key, result in load_committed(output).items() if key in keys}
    return CurationPlan(output, config, sources, missing, committed)


class SourceStage:
    """Source rows in, writer metadata rows out (no frames): decode -> quality -> part writer."""

    def __init__(self, config: CurationConfig, output: str) -> None:
        self.decode = DecodeStage(config)
        self.quality = QualityStage(config)
        self.writer = PartWriterStage(config, output)

    def __call__(self, batch: dict[str, np.ndarray]) -> Iterator[dict[str, np.ndarray]]:
        parts: list[dict[str, np.ndarray]] = []
        for clips in self.decode(batch):
            parts.append(self.writer(self.quality(clips)))
            if clips["is_end"][-1]:  # the source is done: its metadata leaves in one piece
                yield {
                    column: np.concatenate([part[column] for part in parts]) for column in parts[0]
                }
                parts = []


@functools.lru_cache(maxsize=8)
def _stage(config: CurationConfig, output: str) -> SourceStage:
    """One stage instance per worker process and run (stages load their state once)."""
    return SourceStage(config, output)


def _curate(
    batch: dict[str, np.ndarray], config: CurationConfig, output: str
) -> Iterator[dict[str, np.ndarray]]:
    yield from _stage(config, output)(batch)


def task_sizes(num_sources: int, workers: int) -> list[int]:
    """Sources per Ray task, largest first (guided self-scheduling): every task boundary idles a
    worker for Ray Data's scheduling loop (it polls every 0.1 s) plus a dispatch, against
    0.3-1 s of decoding a short video, so early tasks take several sources; the last tasks take
    one each, so the workers still finish together."""
    sizes, remaining = [], num_sources
    while remaining:
        size = min(MAX_SOURCES_PER_TASK, max(1, math.ceil(remaining / (2 * workers))))
        sizes.append(size)
        remaining -= size
    return sizes


def build_dataset(plan: CurationPlan, workers: int) -> Any:
    """The lazy Ray Dataset of writer metadata rows for the pending sources."""
    import pyarrow as pa
    import ray

    items, blocks, start = plan.pending, [], 0
    for size in task_sizes(len(items), workers):  # one block per task
        chunk = items[start : start + size]
        start += size
        blocks.append(
            pa.table(
                {
                    "source": [item.source for item in chunk],
                    "key": [plan.key(item) for item in chunk],
                    "size": pa.array([item.size for item in chunk], pa.int64()),
                }
            )
        )
    dataset: Any = ray.data.from_arrow(blocks)
    # Each source's metadata leaves its task at once as a block of its own (no block is small
    # enough to wait for more rows), so the driver commits a source while its task goes on.
    dataset.context.target_max_block_size = 1
    # No backpressure on these blocks of a few hundred bytes: by default a task may run only 2
    # blocks ahead of the driver's reads and so stalls for a scheduling-loop round per source.
    dataset.context._max_num_blocks_in_streaming_gen_buffer = None
    return dataset.map_batches(
        _curate,
        fn_kwargs={"config": plan.config, "output": plan.output},
        batch_size=None,  # a task's sources in one call: the decoder starts each ffmpeg early
        num_cpus=1,
        compute=ray.data.TaskPoolStrategy(size=workers),
    )


@dataclasses.dataclass
class _Pending:
    item: SourceItem
    clips: dict[str, tuple[str, str]] = dataclasses.field(
        default_factory=dict
    )  # id -> (part, drop)
    end: tuple[int, str, str, str] | None = None  # (num_clips, error_stage, error_reason, note)

    @property
    def complete(self) -> bool:
        return self.end is not None and len(self.clips) == self.end[0]

    def result(self, key: str) -> SourceResult:
        assert self.end is not None
        _, stage, reason, note = self.end
        notes = tuple(note.split("; ")) if note else ()
        base = SourceResult(self.item.source, key, self.item.fingerprint, notes=notes)
        if stage:
            return dataclasses.replace(base, error_stage=stage, error_reason=reason)
        kept = sorted(clip for clip, (_, drop) in self.clips.items() if not drop)
        dropped = dict(Counter(drop for _, drop in self.clips.values() if drop))
        if not kept:
            detail = ", ".join(f"{count} {reason}" for reason, count in sorted(dropped.items()))
            reason = f"all {len(self.clips)} clips failed the quality filters ({detail})"
            return dataclasses.replace(
                base, dropped=dropped, error_stage="quality", error_reason=reason
            )
        parts = sorted({self.clips[clip][0] for clip in kept})
        return dataclasses.replace(base, parts=tuple(parts), clip_ids=tuple(kept), dropped=dropped)


class CommitTracker:
    """Collects writer metadata rows; commits each source when its end row and all clips are in."""

    def __init__(self, plan: CurationPlan, progress: Progress | None = None) -> None:
        self.plan = plan
        self.progress = progress
        self.pending = {plan.key(item): _Pending(item) for item in plan.pending}
        self.results: dict[str, SourceResult] = {}

    def observe(self, batch: dict[str, np.ndarray]) -> None:
        touched = set()
        for index in range(len(batch["key"])):
            key = str(batch["key"][index])
            state = self.pending[key]
            if batch["is_end"][index]:
                state.end = (
                    int(batch["num_clips"][index]),
                    str(batch["error_stage"][index]),
                    str(batch["error_reason"][index]),
                    str(batch["note"][index]),
                )
            else:
                state.clips[str(batch["clip_id"][index])] = (
                    str(batch["part"][index]),
                    str(batch["drop_reason"][index]),
                )
            touched.add(key)
        for key in sorted(touched):
            if key not in self.results and self.pending[key].complete:
                self._commit(key)

    def _commit(self, key: str) -> None:
        result = self.pending[key].result(key)
        commit_source(self.plan.output, result)
        self.results[key] = result
        done = len(self.plan.committed) + len(self.results)
        if self.progress is not None:
            self.progress(result, done, len(self.plan.sources))
        self._show(result, done)

    def _show(self, result: SourceResult, done: int) -> None:
        """The live display: the count, and a warning for the first rejected sources."""
        rejected = sum(r.rejected for r in self.results.values())
        if result.rejected and rejected <= MAX_REJECTION_WARNINGS:
            live.warn(f"rejected {result.source} at {result.error_stage}: {result.error_reason}")
        elif result.rejected and rejected == MAX_REJECTION_WARNINGS + 1:
            live.warn(
                "more sources were rejected; rejected.parquet lists every one with its reason"
            )
        clips = sum(len(r.clip_ids) for r in self.results.values())
        live.report(
            "curate", done, len(self.plan.sources), "source", clips=clips, rejected=rejected
        )

    def unfinished(self) -> list[str]:
        return sorted(
            state.item.source for key, state in self.pending.items() if key not in self.results
        )


def run_pending(plan: CurationPlan, progress: Progress | None = None) -> dict[str, SourceResult]:
    """Curate the pending sources on Ray; returns every committed result of the plan (old and new)."""
    if not plan.pending:
        return dict(plan.committed)
    import ray
    from ray.data import DataContext

    DataContext.get_current().enable_progress_bars = False  # one line per source instead
    workers = plan.config.workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
    tracker = CommitTracker(plan, progress)
    live.report("curate", len(plan.committed), len(plan.sources), "source")
    for batch in build_dataset(plan, workers).iter_batches(batch_size=None, batch_format="numpy"):
        tracker.observe(batch)
    unfinished = tracker.unfinished()
    if unfinished:
        raise RuntimeError(f"{len(unfinished)} sources did not finish: {', '.join(unfinished[:5])}")
    return {**plan.committed, **tracker.results}
