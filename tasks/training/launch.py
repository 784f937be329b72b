"""Wire a `train_loop_per_worker` into a Ray Train `TorchTrainer` and run it.

Our checkpoints live under the job's output URI (`tasks.training.checkpoints`);
Ray Train's own run state goes to `OUTPUT/ray`. `FailureConfig` restarts the
worker group when a worker dies, and the loop resumes from our latest checkpoint.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from tasks import storage
from tasks.training.checkpoints import CheckpointStore
from tasks.training.job import STRATEGIES, STRATEGY_ENV


@dataclasses.dataclass(frozen=True)
class ScaleConfig:
    """How a job spreads over Ray Train workers; `strategy` is `ddp` or `fsdp` (see `job`)."""

    num_workers: int = 1
    use_gpu: bool = False
    cpus_per_worker: float = 1.0
    max_failures: int = 2
    strategy: str = "ddp"

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {self.strategy!r}; choose from {STRATEGIES}")

    @property
    def cpus(self) -> float:
        """CPUs the job's workers reserve together."""
        return self.num_workers * self.cpus_per_worker


def cluster_cpus() -> float:
    """CPUs of the connected Ray cluster (its current nodes)."""
    import ray

    return float(ray.cluster_resources().get("CPU", 0.0))


def side_by_side(scale: ScaleConfig, jobs: int) -> bool:
    """Whether `jobs` jobs of `scale` fit in the Ray cluster at once (a probe or VQA job on
    cached features trains with one CPU, so two of them use both cores of a laptop)."""
    return not scale.use_gpu and jobs * scale.cpus <= cluster_cpus()


# Jobs whose trained model FSDP may shard. Probe and post-training train small heads on a frozen
# encoder and score them on rank 0 alone after training, which a sharded module cannot do.
FSDP_JOBS = frozenset({"pretrain"})


def check_strategy(job: str, strategy: str) -> None:
    """A clear error for a strategy the job does not support."""
    if strategy == "fsdp" and job not in FSDP_JOBS:
        raise ValueError(
            f"--strategy fsdp is implemented for pretraining (vitl/vith/vitg encoders); {job} "
            "trains a small head on a frozen encoder: use --strategy ddp"
        )


IN_MEMORY_LIMIT = 1 << 30  # decoded bytes under which a dataset is held in the object store


def cache_if_small(dataset: Any, approx_bytes: int, limit: int = IN_MEMORY_LIMIT) -> Any:
    """Materialise a dataset that fits in memory, so each epoch reads blocks from the object store.

    A streamed dataset re-runs its read at every epoch (seconds each at the demo's scale, where
    an epoch is a handful of steps); a big one streams as usual. Either way rows keep the
    input's order (`ordering.keep_input_order`), so a seeded run repeats.
    """
    from tasks.training.ordering import keep_input_order

    keep_input_order()
    return dataset.materialize() if approx_bytes <= limit else dataset


def training_clips(
    uri: str,
    columns: Sequence[str] | None = None,
    keep: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]] | None = None,
    limit: int = IN_MEMORY_LIMIT,
) -> Any:
    """The curated clips a training job reads, as a Ray Dataset in the dataset's order, after
    the row stage `keep` (a Ray Data `map_batches` callable: filters, added label columns).

    A dataset whose decoded clips fit under `limit` is read in this process with pyarrow,
    passed through `keep` and put into Ray's object store whole (`ray.data.from_arrow`): on
    a small dataset the read and map tasks of Ray Data (worker processes, scheduling) cost
    far more than the read itself. A bigger one streams through `read_clips` as before.
    """
    import ray

    from tasks.clips import batch_table, decoded_bytes, read_clip_table, read_clips, table_batch
    from tasks.training.ordering import keep_input_order

    keep_input_order()
    if decoded_bytes(uri) > limit:
        clips = read_clips(uri, columns=columns)
        return clips.map_batches(keep) if keep is not None else clips
    table = read_clip_table(uri, columns=columns)
    if keep is not None:
        table = batch_table(keep(table_batch(table)), table.schema)
    if table.num_rows == 0:
        raise ValueError(f"no clip of {uri} is left to train on: check the labels' sources")
    return ray.data.from_arrow(table)


class ScaleError(ValueError):
    """The workers asked for cannot run on this Ray cluster."""


def check_resources(scale: ScaleConfig, datasets: dict[str, Any] | None) -> None:
    """A clear error instead of a silent hang: on a local Ray (no `RAY_ADDRESS`, so no autoscaler
    to add nodes) the workers must fit in the cluster, and a dataset that still has Ray Data
    work to do (one not materialised by `cache_if_small`) needs a CPU the workers leave free."""
    from ray.data.dataset import MaterializedDataset

    if os.environ.get("RAY_ADDRESS") or scale.use_gpu:
        return
    total, wanted = cluster_cpus(), scale.cpus
    streamed = sorted(
        name for name, data in (datasets or {}).items() if not isinstance(data, MaterializedDataset)
    )
    if wanted > total:
        raise ScaleError(
            f"{scale.num_workers} worker(s) x {scale.cpus_per_worker} CPUs need {wanted:g} CPUs; "
            f"this Ray cluster has {total:g}: lower --workers or --cpus-per-worker"
        )
    if streamed and wanted > total - 1:
        raise ScaleError(
            f"{scale.num_workers} worker(s) x {scale.cpus_per_worker} CPUs take {wanted:g} of the "
            f"{total:g} CPUs, leaving none for Ray Data to read {', '.join(streamed)}: "
            "lower --workers or --cpus-per-worker"
        )


class ExistingRunError(Exception):
    """The output already holds checkpoints and `--resume` was not given."""


def check_output(output_uri: str, resume: bool) -> int | None:
    """The step a run would resume from; refuses to mix runs without `resume`."""
    latest = CheckpointStore(output_uri).latest_step()
    if latest is not None and not resume:
        raise ExistingRunError(
            f"{output_uri} already holds a run (latest checkpoint at step {latest}); "
            "pass --resume to continue it or choose another --output"
        )
    return latest


def with_strategy(
    train_loop: Callable[[dict[str, Any]], None], strategy: str
) -> Callable[[dict[str, Any]], None]:
    """`train_loop` that first records `strategy` for the worker's `worker_context()`."""

    def train_loop_per_worker(config: dict[str, Any]) -> None:
        os.environ[STRATEGY_ENV] = strategy
        train_loop(config)

    return train_loop_per_worker


def fit(
    train_loop: Callable[[dict[str, Any]], None],
    loop_config: dict[str, Any],
    *,
    output_uri: str,
    name: str,
    scale: ScaleConfig,
    datasets: dict[str, Any] | None = None,
    unsplit: tuple[str, ...] = (),
) -> None:
    """Run `train_loop` on `scale.num_workers` Ray Train workers; raises if training fails.

    Each dataset is split across the workers except those named in `unsplit`
    (every worker sees all of those, e.g. a held-out set scored on rank 0).
    """
    check_strategy(name, scale.strategy)
    check_resources(scale, datasets)
    from ray.data import DataContext
    from ray.train import DataConfig, FailureConfig, LoggingConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    # The loop prints its own progress; Ray Data's per-epoch banners and bars would drown it.
    data_context = DataContext.get_current()
    data_context.enable_progress_bars = False
    data_context.print_on_execution_start = False
    data_context.execution_options.preserve_order = True  # the seed fixes the order (ordering.py)

    filesystem, path = storage.pyarrow_filesystem(storage.join(output_uri, "ray"))
    trainer = TorchTrainer(
        with_strategy(train_loop, scale.strategy),
        train_loop_config=loop_config,
        scaling_config=ScalingConfig(
            num_workers=scale.num_workers,
            use_gpu=scale.use_gpu,
            resources_per_worker={"CPU": scale.cpus_per_worker},
        ),
        run_config=RunConfig(
            name=name,
            storage_path=path,
            storage_filesystem=filesystem,
            failure_config=FailureConfig(max_failures=scale.max_failures),
            logging_config=LoggingConfig(log_level="WARNING"),  # type: ignore[call-arg]  # V2 RunConfig; stubs show V1
        ),
        datasets=datasets,
        dataset_config=DataConfig(
            datasets_to_split=[name for name in datasets or {} if name not in unsplit]
        ),
    )
    from tasks import progress

    with progress.relay():  # the loop's reports reach the CLI's progress display
        trainer.fit()
