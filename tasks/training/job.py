"""Per-worker plumbing shared by the jobs: device, DDP wrapping, autocast, data shards.

Inside a Ray Train worker `worker_context()` reads rank, world size and device
from Ray Train; `WorkerContext.local()` gives the same interface in-process
(tests, benchmarks) without Ray.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from torch import nn


@dataclasses.dataclass
class WorkerContext:
    """Where this worker runs and how it talks to the others."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = dataclasses.field(default_factory=lambda: torch.device("cpu"))
    report: Callable[[dict[str, Any]], None] | None = None

    @property
    def is_writer(self) -> bool:
        return self.rank == 0

    def prepare(self, model: nn.Module) -> nn.Module:
        """Move to the device; wrap in DDP when there are several workers."""
        if self.world_size > 1:
            import ray.train.torch

            return ray.train.torch.prepare_model(model)
        return model.to(self.device)

    @classmethod
    def local(cls) -> WorkerContext:
        return cls(device=torch.device("cuda" if torch.cuda.is_available() else "cpu"))


def worker_context() -> WorkerContext:
    """The context of the current Ray Train worker."""
    import ray.train
    import ray.train.torch

    context = ray.train.get_context()
    return WorkerContext(
        rank=context.get_world_rank(),
        world_size=context.get_world_size(),
        device=ray.train.torch.get_device(),
        report=ray.train.report,
    )


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DDP/FSDP wrapper (or the module itself)."""
    inner = getattr(model, "module", None)
    return inner if isinstance(inner, nn.Module) else model


def autocast(device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast on CUDA; a no-op on CPU (fp32), where bf16 matmuls are slow."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def batches_from_shard(
    name: str, batch_size: int, seed: int = 0
) -> Callable[[int], Iterable[torch.Tensor]]:
    """Epoch -> float clip batches `(B, C, T, H, W)` from this worker's Ray Data shard."""
    import ray.train

    from tasks.clips import collate_clips

    shard = ray.train.get_dataset_shard(name)

    def epoch_batches(epoch: int) -> Iterator[torch.Tensor]:
        for batch in shard.iter_batches(
            batch_size=batch_size,
            batch_format="numpy",
            drop_last=True,
            local_shuffle_buffer_size=4 * batch_size,
            local_shuffle_seed=seed + epoch,
        ):
            yield collate_clips(batch)["video"]  # (B, C, T, H, W) in [0, 1]

    return epoch_batches
