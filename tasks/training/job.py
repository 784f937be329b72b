"""Per-worker plumbing shared by the jobs: device, DDP/FSDP wrapping, autocast, data shards.

Inside a Ray Train worker `worker_context()` reads rank, world size and device
from Ray Train (and the data-parallel strategy `launch.fit` recorded);
`WorkerContext.local()` gives the same interface in-process (tests,
benchmarks) without Ray.

Strategies with several workers:

- `ddp` (default): Ray's `prepare_model` (DistributedDataParallel); every
  worker holds the whole model.
- `fsdp`: PyTorch FSDP2 `fully_shard`, one unit per transformer block (the
  children of every `nn.ModuleList`) and one for the root; meant for the
  vitl/vith/vitg presets. Parameters become `DTensor` shards. Checkpoints stay
  full and unsharded: `full_state` gathers a state dict (every rank must call
  it, in the same order), a sharded module's `load_state_dict` accepts a full
  one (each rank keeps its slice), and `load_optimizer_state` does the same for
  optimizer moments. A frozen module that follows a trained one (the EMA
  target) is sharded the same way with `prepare_frozen`, so the EMA update
  works shard by shard.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

STRATEGIES = ("ddp", "fsdp")
STRATEGY_ENV = "VJEPA_TRAIN_STRATEGY"  # set in each worker by `launch.fit`


@dataclasses.dataclass
class WorkerContext:
    """Where this worker runs and how it talks to the others."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = dataclasses.field(default_factory=lambda: torch.device("cpu"))
    report: Callable[[dict[str, Any]], None] | None = None
    strategy: str = "ddp"

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {self.strategy!r}; choose from {STRATEGIES}")

    @property
    def is_writer(self) -> bool:
        return self.rank == 0

    @property
    def sharded(self) -> bool:
        return self.strategy == "fsdp" and self.world_size > 1

    def prepare(self, model: nn.Module) -> nn.Module:
        """Move to the device; wrap in DDP or shard with FSDP when there are several workers."""
        if self.sharded:
            return shard_model(model.to(self.device), self.device)
        if self.world_size > 1:
            import ray.train.torch

            return ray.train.torch.prepare_model(model)
        return model.to(self.device)

    def prepare_frozen(self, model: nn.Module) -> nn.Module:
        """A module that is not trained but follows a prepared one (an EMA target).

        Under FSDP it is sharded like the trained module (same plan, so the
        shards line up) and drops its gathered weights after each forward;
        otherwise it is a plain module on the device.
        """
        if self.sharded:
            return shard_model(model.to(self.device), self.device, frozen=True)
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
        strategy=os.environ.get(STRATEGY_ENV, "ddp"),
    )


def shard_plan(model: nn.Module) -> list[nn.Module]:
    """FSDP units of `model`, inner first: each block of every `nn.ModuleList`, then the root."""
    units: list[nn.Module] = []
    for module in model.modules():
        if isinstance(module, nn.ModuleList):
            units.extend(block for block in module if any(True for _ in block.parameters()))
    return [*reversed(units), model]  # nested lists (found later) are sharded before their parents


def shard_model(model: nn.Module, device: torch.device, frozen: bool = False) -> nn.Module:
    """`fully_shard` each unit of `shard_plan(model)` over all workers (in place; returns `model`)."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    if device.type == "cuda":
        torch.cuda.set_device(device)
    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    *blocks, root = shard_plan(model)
    for block in blocks:
        fully_shard(block, mesh=mesh)
    # The root normally keeps its weights gathered from forward to backward; a frozen module
    # has no backward, so it reshards at once (its shards are what the EMA update reads).
    fully_shard(root, mesh=mesh, reshard_after_forward=True if frozen else None)
    root._register_load_state_dict_pre_hook(_shard_full_tensors, with_module=True)
    return model


def _shard_full_tensors(module: nn.Module, state: dict[str, Any], prefix: str, *_: Any) -> None:
    """Load-state-dict pre-hook: full tensors for sharded parameters become this rank's slice."""
    from torch.distributed.tensor import DTensor

    current = {**dict(module.named_parameters()), **dict(module.named_buffers())}
    for name, value in current.items():
        key = prefix + name
        if isinstance(value, DTensor) and key in state and not isinstance(state[key], DTensor):
            state[key] = _like(state[key], value)


def _like(full: torch.Tensor, shard: Any) -> Any:
    """`full` cut into the DTensor layout of `shard` (every rank holds `full`: no communication)."""
    from torch.distributed.tensor import distribute_tensor

    local = full.to(device=shard.device, dtype=shard.dtype)
    return distribute_tensor(local, shard.device_mesh, shard.placements, src_data_rank=None)


def full_state(state: Any) -> Any:
    """`state` (nested dicts/lists) with every DTensor gathered into a full CPU tensor.

    Collective under FSDP: every rank calls it with the same structure. Plain
    tensors and other values pass through untouched, so DDP and single-worker
    states are returned as they are.
    """
    from torch.distributed.tensor import DTensor

    if isinstance(state, DTensor):
        return state.full_tensor().cpu()
    if isinstance(state, Mapping):
        return {key: full_state(value) for key, value in state.items()}
    if isinstance(state, list | tuple):
        return type(state)(full_state(value) for value in state)
    return state


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """`optimizer.load_state_dict` that also accepts full moments for sharded (FSDP) parameters."""
    from torch.distributed.tensor import DTensor

    optimizer.load_state_dict(state)
    for group in optimizer.param_groups:
        for parameter in group["params"]:
            if not isinstance(parameter, DTensor):
                continue
            slots = optimizer.state.get(parameter, {})
            for key, value in slots.items():
                plain = isinstance(value, torch.Tensor) and not isinstance(value, DTensor)
                if plain and value.shape == parameter.shape:  # moments, not the scalar step
                    slots[key] = _like(value, parameter)


def gather_generator_states(generator: torch.Generator) -> list[torch.Tensor]:
    """Every rank's generator state, in rank order (collective: call it on every rank)."""
    state = generator.get_state()  # (K,) uint8
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [state]
    states: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(states, state)
    return [torch.as_tensor(s) for s in states]


def restore_generator(generator: torch.Generator, state: dict[str, Any], rank: int) -> None:
    """Give this rank its own saved generator state back.

    `state["generators"]` holds one state per rank; a rank it does not cover (the job now has
    more workers than the one that saved) keeps its fresh per-rank seed, so ranks never share
    a random stream after a resume. Older checkpoints carry rank 0's state only.
    """
    states = state.get("generators") or [state["generator"]]
    if rank < len(states):
        generator.set_state(states[rank])


def scalar(value: torch.Tensor) -> float:
    """A Python float of a (possibly DTensor) scalar, e.g. the norm `clip_grad_norm_` returns."""
    full = getattr(value, "full_tensor", None)
    return float(full() if callable(full) else value)


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DDP wrapper (or the module itself; FSDP2 shards in place)."""
    inner = getattr(model, "module", None)
    return inner if isinstance(inner, nn.Module) else model


def autocast(device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast on CUDA; a no-op on CPU (fp32), where bf16 matmuls are slow."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def batches_from_shard(
    name: str, batch_size: int, seed: int = 0, shuffle_buffer: int | None = None
) -> Callable[[int], Iterable[torch.Tensor]]:
    """Epoch -> float clip batches `(B, C, T, H, W)` from this worker's Ray Data shard."""
    import ray.train

    return clip_batches(ray.train.get_dataset_shard(name), batch_size, seed, shuffle_buffer)


def clip_batches(
    shard: Any, batch_size: int, seed: int = 0, shuffle_buffer: int | None = None
) -> Callable[[int], Iterable[Any]]:
    """Epoch -> float clip batches `(B, C, T, H, W)` in [0, 1] from a Ray `DataIterator`.

    Rows pass a shuffle buffer of `shuffle_buffer` clips (default 4 batches, never less than
    one batch) seeded by `seed + epoch` (`tasks.training.ordering`: one row at a time, so the
    order does not depend on Ray Data's block sizes), so a rerun or a resumed run sees the same
    clips in the same order. Curated shards keep a source's clips together: a small buffer
    puts neighbouring clips of the same few videos into every batch.
    """
    from tasks.clips import collate_clips
    from tasks.training.ordering import shuffled_batches

    size = max(batch_size, shuffle_buffer or 4 * batch_size)

    def epoch_batches(epoch: int) -> Iterator[torch.Tensor]:
        rows = shard.iter_batches(batch_size=batch_size, batch_format="numpy")
        for batch in shuffled_batches(rows, batch_size, size, seed + epoch):
            yield collate_clips(batch)["video"]  # (B, C, T, H, W) in [0, 1]

    return epoch_batches
