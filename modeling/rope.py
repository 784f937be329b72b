"""3D rotary position embedding (RoPE) laid out exactly as V-JEPA 2 computes it.

Each attention head of width `head_dim` is split into three equal, even parts of
`axis_dim(head_dim)` channels for the time (t), height (h) and width (w) axes, in
that order; the `head_dim - 3 * axis_dim` leftover channels are not rotated.

Within one axis part of `d` channels the released weights depend on two details
of the official code (`rotate_queries_or_keys` in facebookresearch/vjepa2,
`VJEPA2RopeAttention` in transformers), which this module reproduces:

* the frequencies are `1 / 10000 ** (j / (d / 2))` for `j = 0 .. d/2 - 1`, and the
  sin/cos vectors are the `d/2` values *concatenated twice* (`[f0..f(d/2-1), f0..]`),
  not interleaved;
* the rotation pairs *adjacent* channels: `(x0, x1) -> (-x1, x0)`.

So channel `k` of an axis part is paired with its neighbour but rotated by
frequency `k mod d/2`. Fixing that would break the checkpoints, so we keep it.

Positions are tensors of shape `(..., N, 3)` holding (t, h, w) per token, so a
subset of tokens (the masked context, or action/state tokens rotated along time
only) is rotated by its true position. The cos/sin tables for a token set are
computed once per forward and shared by every block (`RopeTables`).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

ROPE_THETA = 10000.0
NUM_AXES = 3


class RopeTables(NamedTuple):
    """cos and signed sin per token and channel, broadcastable to `(B, heads, N, head_dim)`.

    `sin` carries the rotation's sign (negated on even channels), so `apply_rope` is
    `x * cos + swap_pairs(x) * sin`; build tables with `rope_tables`, not by hand.
    """

    cos: Tensor  # (B or 1, 1, N, head_dim)
    sin: Tensor  # (B or 1, 1, N, head_dim), even channels negated


def axis_dim(head_dim: int) -> int:
    """Channels rotated per axis: the largest even number not above `head_dim // 3`."""
    return 2 * ((head_dim // 3) // 2)


def axis_frequencies(dim: int, device: torch.device | None = None) -> Tensor:
    """The `dim / 2` rotation frequencies of one axis part, in float32."""
    exponents = torch.arange(dim // 2, dtype=torch.float32, device=device) / (dim / 2.0)
    return 1.0 / ROPE_THETA**exponents  # (dim/2,)


def grid_positions(grid: tuple[int, int, int], device: torch.device | None = None) -> Tensor:
    """(t, h, w) of every token of a `grid = (T', H', W')` tubelet grid, in t, h, w order."""
    num_tokens = grid[0] * grid[1] * grid[2]
    return positions_of(torch.arange(num_tokens, device=device), grid)  # (N, 3)


def positions_of(indices: Tensor, grid: tuple[int, int, int]) -> Tensor:
    """(t, h, w) of flat token indices (t-major, then h, then w) on `grid`: `(..., K) -> (..., K, 3)`."""
    _, height, width = grid
    tokens_per_frame = height * width
    frame = indices // tokens_per_frame
    within = indices - frame * tokens_per_frame
    row = within // width
    column = within - row * width
    return torch.stack((frame, row, column), dim=-1)  # (..., K, 3)


def rope_tables(
    positions: Tensor,
    head_dim: int,
    rotate_axes: Tensor | None = None,
    dtype: torch.dtype = torch.float32,
) -> RopeTables:
    """cos/sin tables for tokens at `positions` `(..., N, 3)`.

    `rotate_axes` `(..., N, 3)` bool, optional, switches an axis off for a token
    (cos 1, sin 0): V-JEPA 2-AC rotates action/state tokens along time only.
    The angles are computed in float32 and cast to `dtype`.
    """
    if positions.shape[-1] != NUM_AXES:
        raise ValueError(
            f"positions must end with 3 (t, h, w) columns, got {tuple(positions.shape)}"
        )
    if head_dim % 2:
        raise ValueError(f"RoPE needs an even head dimension, got {head_dim}")
    dim = axis_dim(head_dim)
    if dim == 0:
        raise ValueError(f"head dimension {head_dim} is too small for 3D RoPE (needs >= 6)")
    omega = axis_frequencies(dim, positions.device)  # (dim/2,)
    angles = positions.to(torch.float32).unsqueeze(-1) * omega  # (..., N, 3, dim/2)
    cos = torch.cat((angles.cos(), angles.cos()), dim=-1)  # (..., N, 3, dim)
    sin = torch.cat((angles.sin(), angles.sin()), dim=-1)  # (..., N, 3, dim)
    if rotate_axes is not None:
        keep = rotate_axes.unsqueeze(-1)  # (..., N, 3, 1)
        cos = torch.where(keep, cos, torch.ones_like(cos))
        sin = torch.where(keep, sin, torch.zeros_like(sin))
    cos, sin = cos.flatten(-2), sin.flatten(-2)  # (..., N, 3 * dim)
    leftover = head_dim - NUM_AXES * dim
    if leftover:
        pad_shape = (*cos.shape[:-1], leftover)
        cos = torch.cat((cos, cos.new_ones(pad_shape)), dim=-1)  # (..., N, head_dim)
        sin = torch.cat((sin, sin.new_zeros(pad_shape)), dim=-1)  # (..., N, head_dim)
    sign = torch.ones(head_dim, device=sin.device)
    sign[0::2] = -1.0  # (-x1, x0) pairs: the minus goes on the even channel
    return RopeTables(cos.unsqueeze(-3).to(dtype), (sin * sign).unsqueeze(-3).to(dtype))


def rope_for_grid(
    grid: tuple[int, int, int],
    head_dim: int,
    device: torch.device | None = None,
    dtype: torch.dtype = torch.float32,
) -> RopeTables:
    """Tables for every token of a full clip grid: shape `(1, 1, N, head_dim)`."""
    return rope_tables(grid_positions(grid, device).unsqueeze(0), head_dim, dtype=dtype)


def rope_for_indices(
    indices: Tensor, grid: tuple[int, int, int], head_dim: int, dtype: torch.dtype = torch.float32
) -> RopeTables:
    """Tables for a per-sample token subset `indices` `(B, K)`: shape `(B, 1, K, head_dim)`."""
    return rope_tables(positions_of(indices, grid), head_dim, dtype=dtype)


def rotate_pairs(x: Tensor) -> Tensor:
    """`(x0, x1, x2, x3, ...) -> (-x1, x0, -x3, x2, ...)` along the last dimension."""
    pairs = x.unflatten(-1, (-1, 2))  # (..., D/2, 2)
    first, second = pairs.unbind(dim=-1)
    return torch.stack((-second, first), dim=-1).flatten(-2)  # (..., D)


def swap_pairs(x: Tensor) -> Tensor:
    """`(x0, x1, x2, x3, ...) -> (x1, x0, x3, x2, ...)` along the last dimension."""
    # two strided slices stacked: about twice as fast on CPU as `flip` on a size-2 axis
    return torch.stack((x[..., 1::2], x[..., 0::2]), dim=-1).flatten(-2)  # (..., D)


def apply_rope(x: Tensor, tables: RopeTables) -> Tensor:
    """Rotate queries or keys `(..., N, head_dim)` by their tokens' tables.

    Equal to `x * cos + rotate_pairs(x) * sin` of the official code; the sign lives in the
    table, which saves a negation and a temporary per call.
    """
    out = x * tables.cos.to(x.dtype)  # (..., N, head_dim)
    return out.addcmul_(swap_pairs(x), tables.sin.to(x.dtype))


def rotate_axis(x: Tensor, positions: Tensor) -> Tensor:
    """Rotate all channels of `x` `(..., N, d)` by one axis' positions `(..., N)` (reference form).

    The per-axis operation of the official code; `apply_rope` does all three axes
    at once. Useful for tests and for tokens that carry a single coordinate.
    """
    omega = axis_frequencies(x.shape[-1], x.device)  # (d/2,)
    angles = positions.to(torch.float32).unsqueeze(-1) * omega  # (..., N, d/2)
    cos = torch.cat((angles.cos(), angles.cos()), dim=-1).to(x.dtype)  # (..., N, d)
    sin = torch.cat((angles.sin(), angles.sin()), dim=-1).to(x.dtype)  # (..., N, d)
    return x * cos + rotate_pairs(x) * sin


def check_rope_heads(width: int, num_heads: int) -> int:
    """The head dim of `width` split in `num_heads`; an error unless 3D RoPE can rotate it."""
    if width % num_heads:
        raise ValueError(f"width {width} is not divisible by num_heads {num_heads}")
    head_dim = width // num_heads
    if head_dim % 2 or axis_dim(head_dim) == 0:
        raise ValueError(f"head dim {head_dim} must be even and >= 6 for 3D RoPE")
    return head_dim
