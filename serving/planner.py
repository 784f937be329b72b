"""The planner deployment: world models loaded once per replica, robots batched across requests.

`@serve.batch` collects the requests that arrive within a few milliseconds (up to
`max_batch_size`); `BatchMerger` joins the batches that queued up while the model was busy, and
`FleetPlanner` turns the merged batch into one `WorldModel.plan` call per model. Planning runs in
a worker thread so the replica keeps accepting the next requests meanwhile. `max_batch_size=1`
(batching disabled) plans every request on its own: the baseline of the serving benchmark.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from ray import serve

from serving.bundles import fetch_world_model
from serving.config import Batching, ServingConfig
from serving.fleet import FleetPlanner
from serving.merging import BatchMerger
from serving.schemas import ModelInfo, PlanRequest, PlanResult

DEFAULT_BATCHING = Batching()

Job = tuple[PlanRequest, float]  # the request and when it reached the replica (perf_counter)


def configure_batch(method: Any, max_batch_size: int, wait_timeout_s: float) -> None:
    """Apply the configured size and wait to a `@serve.batch` method (typed loosely by Ray)."""
    method.set_max_batch_size(max_batch_size)
    method.set_batch_wait_timeout_s(wait_timeout_s)


def configure_torch(threads: int | None) -> torch.device:
    """Intra-op threads of this replica (Ray already sets it from num_cpus if left None).

    Returns the device the replica's models run on: the GPU when Ray gave the replica one
    (`num_gpus` > 0 makes Ray set `CUDA_VISIBLE_DEVICES`), else the CPU.
    """
    if threads is not None:
        torch.set_num_threads(threads)
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


@serve.deployment(name="Planner")
class PlannerDeployment:
    """Fleet CEM planning over the configured world models."""

    def __init__(self, config: ServingConfig) -> None:
        device = configure_torch(config.torch_threads)
        models = {
            name: fetch_world_model(uri, config.cache_dir) for name, uri in config.models.items()
        }
        self.fleet = FleetPlanner(models, device)
        batching = config.batching
        configure_batch(self._plan_batch, batching.effective_batch_size, batching.wait_timeout_s)
        self.merger = BatchMerger(self._plan_now, batching.effective_batch_size)

    def describe(self) -> dict[str, ModelInfo]:
        """The served models, default first."""
        return dict(self.fleet.infos)

    async def plan(self, request: PlanRequest) -> PlanResult:
        """Plan for one robot; joins whatever batch is forming."""
        return await self._plan_batch((request, time.perf_counter()))

    # several formed batches may wait at once: the merger runs them together; the size and wait
    # are `Batching`'s defaults here and the replica's own settings after `configure_batch`
    @serve.batch(
        max_batch_size=DEFAULT_BATCHING.max_batch_size,
        batch_wait_timeout_s=DEFAULT_BATCHING.wait_timeout_s,
        max_concurrent_batches=16,
    )
    async def _plan_batch(self, jobs: list[Job]) -> list[PlanResult]:
        return await self.merger.submit(jobs)

    def _plan_now(self, jobs: list[Job]) -> list[PlanResult]:
        started = time.perf_counter()
        results = self.fleet([request for request, _ in jobs])
        return [
            result.model_copy(update={"queue_ms": (started - arrived) * 1000})
            for result, (_, arrived) in zip(results, jobs, strict=True)
        ]
