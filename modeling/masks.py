"""Multi-block 3D masks for V-JEPA pretraining: which tokens the encoder sees, which it predicts.

For a token grid `(T', H', W')` (tokens ordered t, h, w) a mask spec samples `num_blocks` boxes
per clip; the target is the union of the boxes and the context is its complement. As in the
official collator (`src/masks/multiseq_multiblock3d.py`):

- the block *size* (temporal extent, spatial scale, aspect ratio) is drawn once per batch and
  spec, the block *positions* once per clip and block;
- a sample whose boxes cover the whole grid is redrawn (the context may not be empty);
- every clip's sorted index list is cut to the batch minimum (keeping the first entries), so the
  batch stacks into `(B, K)` context and `(B, M)` target LongTensors.

Each spec of a `MaskConfig` yields its own (context, target) pair: the V-JEPA 2 default has one
pair from 8 small blocks (spatial scale 0.15) and one from 2 large blocks (scale 0.7), both
spanning the full clip in time. Everything is drawn from one `torch.Generator`, so a seed fixes
the masks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

Grid = tuple[int, int, int]
Box = tuple[int, int, int, int, int, int]  # (t0, h0, w0, t_len, h_len, w_len)

MAX_DRAWS = 100


@dataclass(frozen=True)
class BlockMaskSpec:
    """One family of target blocks; the ranges are sampled uniformly."""

    num_blocks: int
    spatial_scale: tuple[float, float]
    temporal_scale: tuple[float, float] = (1.0, 1.0)
    aspect_ratio: tuple[float, float] = (0.75, 1.5)

    def __post_init__(self) -> None:
        if self.num_blocks < 1:
            raise ValueError(f"num_blocks must be >= 1, got {self.num_blocks}")
        for name in ("spatial_scale", "temporal_scale", "aspect_ratio"):
            low, high = getattr(self, name)
            if not 0 < low <= high:
                raise ValueError(f"{name} must satisfy 0 < low <= high, got {(low, high)}")
        if self.spatial_scale[1] > 1 or self.temporal_scale[1] > 1:
            raise ValueError("spatial_scale and temporal_scale must not exceed 1")


def _default_specs() -> tuple[BlockMaskSpec, ...]:
    return (
        BlockMaskSpec(num_blocks=8, spatial_scale=(0.15, 0.15)),
        BlockMaskSpec(num_blocks=2, spatial_scale=(0.7, 0.7)),
    )


@dataclass(frozen=True)
class MaskConfig:
    """The mask families of one training step (V-JEPA 2: 8 x 0.15 and 2 x 0.7, full time)."""

    specs: tuple[BlockMaskSpec, ...] = _default_specs()


@dataclass(frozen=True)
class MaskPair:
    """Context and target token indices of a batch, each row sorted ascending."""

    context: torch.Tensor  # (B, K) int64
    target: torch.Tensor  # (B, M) int64


def _uniform(low: float, high: float, generator: torch.Generator) -> float:
    return low + torch.rand(1, generator=generator).item() * (high - low)


def sample_block_size(spec: BlockMaskSpec, grid: Grid, generator: torch.Generator) -> Grid:
    """Block extent `(t, h, w)` in tokens, following the official rounding rules."""
    duration, height, width = grid
    t_len = max(1, int(duration * _uniform(*spec.temporal_scale, generator)))
    area = int(height * width * _uniform(*spec.spatial_scale, generator))
    aspect = _uniform(*spec.aspect_ratio, generator)
    h_len = min(height, max(1, round(math.sqrt(area * aspect))))
    w_len = min(width, max(1, round(math.sqrt(area / aspect))))
    return t_len, h_len, w_len


def sample_block_starts(
    size: Grid, grid: Grid, shape: tuple[int, ...], generator: torch.Generator
) -> torch.Tensor:
    """Uniform block corners `(*shape, 3)` (t, h, w) such that every block fits the grid."""
    starts = [
        torch.randint(0, extent - length + 1, shape, generator=generator)
        for extent, length in zip(grid, size, strict=True)
    ]
    return torch.stack(starts, dim=-1)  # (*shape, 3)


def boxes_to_mask(starts: torch.Tensor, size: Grid, grid: Grid) -> torch.Tensor:
    """Boolean target mask `(B, T'*H'*W')` of the union of the boxes `starts (B, n, 3)`."""
    inside = []
    for axis, (extent, length) in enumerate(zip(grid, size, strict=True)):
        coords = torch.arange(extent)  # (E,)
        start = starts[..., axis, None]  # (B, n, 1)
        inside.append((coords >= start) & (coords < start + length))  # (B, n, E)
    in_t, in_h, in_w = inside
    covered = in_t[..., :, None, None] & in_h[..., None, :, None] & in_w[..., None, None, :]
    return covered.any(dim=1).flatten(1)  # (B, T'*H'*W')


def _draw_target_masks(
    spec: BlockMaskSpec, batch_size: int, grid: Grid, size: Grid, generator: torch.Generator
) -> torch.Tensor:
    """Target masks `(B, N)`; clips whose blocks cover everything are redrawn."""
    starts = sample_block_starts(size, grid, (batch_size, spec.num_blocks), generator)
    masks = boxes_to_mask(starts, size, grid)  # (B, N)
    for _ in range(MAX_DRAWS):
        full = masks.all(dim=1)  # (B,)
        if not bool(full.any()):
            return masks
        redraw = sample_block_starts(size, grid, (int(full.sum()), spec.num_blocks), generator)
        masks[full] = boxes_to_mask(redraw, size, grid)
    raise ValueError(f"blocks of size {size} always cover the whole grid {grid}; lower the scale")


def _stack_truncated(rows: list[torch.Tensor]) -> torch.Tensor:
    keep = min(len(row) for row in rows)
    return torch.stack([row[:keep] for row in rows])  # (B, keep)


def sample_mask_pair(
    spec: BlockMaskSpec, batch_size: int, grid: Grid, generator: torch.Generator
) -> MaskPair:
    """Context/target indices of one mask family for a batch of clips on `grid`."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if len(grid) != 3 or min(grid) < 1:
        raise ValueError(f"grid must be three positive sizes (T', H', W'), got {grid}")
    size = sample_block_size(spec, grid, generator)
    masks = _draw_target_masks(spec, batch_size, grid, size, generator)  # (B, N)
    context = [torch.nonzero(~row).flatten() for row in masks]
    target = [torch.nonzero(row).flatten() for row in masks]
    return MaskPair(context=_stack_truncated(context), target=_stack_truncated(target))


def generate_masks(
    config: MaskConfig,
    batch_size: int,
    grid: Grid,
    generator: torch.Generator | None = None,
    seed: int | None = None,
) -> list[MaskPair]:
    """One `MaskPair` per spec of `config`; pass a generator or a seed for reproducible masks."""
    if generator is None:
        generator = torch.Generator()
        if seed is None:
            generator.seed()  # fresh entropy: unseeded calls differ
        else:
            generator.manual_seed(seed)
    elif seed is not None:
        raise ValueError("pass either a generator or a seed, not both")
    return [sample_mask_pair(spec, batch_size, grid, generator) for spec in config.specs]
