"""3D RoPE: layout equal to the official / transformers rotation, positions, axis switches."""

from __future__ import annotations

import pytest
import torch

from modeling.rope import (
    apply_rope,
    axis_dim,
    grid_positions,
    positions_of,
    rope_for_grid,
    rope_for_indices,
    rope_tables,
    rotate_axis,
)


def reference_rotate(x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Per-axis rotation then concatenation, as transformers' VJEPA2RopeAttention does it."""
    from transformers.models.vjepa2.modeling_vjepa2 import rotate_queries_or_keys

    dim = axis_dim(x.shape[-1])
    parts = []
    for axis in range(3):
        chunk = x[..., axis * dim : (axis + 1) * dim]
        parts.append(rotate_queries_or_keys(chunk, pos=positions[..., axis].to(x.dtype)))
    parts.append(x[..., 3 * dim :])
    return torch.cat(parts, dim=-1)


@pytest.mark.parametrize(("head_dim", "expected"), [(64, 20), (48, 16), (32, 10), (88, 28), (6, 2)])
def test_axis_dim(head_dim: int, expected: int) -> None:
    assert axis_dim(head_dim) == expected


@pytest.mark.parametrize("head_dim", [48, 64, 32])
def test_full_grid_matches_transformers_rotation(head_dim: int) -> None:
    torch.manual_seed(0)
    grid = (3, 2, 4)
    x = torch.randn(2, 3, 24, head_dim)  # (B, H, N, hd)
    ours = apply_rope(x, rope_for_grid(grid, head_dim))
    reference = reference_rotate(x, grid_positions(grid))
    assert torch.allclose(ours, reference, atol=1e-6)
    if head_dim == 64:  # leftover channels 60..63 pass through untouched
        assert torch.equal(ours[..., 60:], x[..., 60:])


def test_subset_rotated_by_true_positions() -> None:
    torch.manual_seed(1)
    grid, head_dim = (4, 3, 5), 64
    indices = torch.tensor([[0, 7, 33, 59], [2, 3, 40, 41]])  # (B, K)
    x = torch.randn(2, 2, 4, head_dim)
    ours = apply_rope(x, rope_for_indices(indices, grid, head_dim))
    full = apply_rope(torch.randn(1, 2, 60, head_dim), rope_for_grid(grid, head_dim))
    assert full.shape == (1, 2, 60, head_dim)
    reference = reference_rotate(x, positions_of(indices, grid).unsqueeze(1))
    assert torch.allclose(ours, reference, atol=1e-6)


def test_positions_of_inverts_flat_index_on_non_square_grid() -> None:
    grid = (3, 4, 6)
    positions = grid_positions(grid)
    t, h, w = positions.unbind(-1)
    assert positions.shape == (72, 3)
    assert torch.equal(t * 24 + h * 6 + w, torch.arange(72))
    assert positions[-1].tolist() == [2, 3, 5]


def test_rotate_axes_switch_leaves_channels_untouched() -> None:
    torch.manual_seed(2)
    head_dim = 64
    dim = axis_dim(head_dim)
    positions = torch.tensor([[3.0, 2.0, 1.0], [5.0, 4.0, 0.5]])  # (N, 3), float ok
    time_only = torch.tensor([[True, False, False], [True, False, False]])
    x = torch.randn(1, 2, 2, head_dim)
    rotated = apply_rope(x, rope_tables(positions, head_dim, rotate_axes=time_only))
    assert torch.equal(rotated[..., dim:], x[..., dim:])
    expected_time = rotate_axis(x[..., :dim], positions[:, 0])
    assert torch.allclose(rotated[..., :dim], expected_time, atol=1e-6)
    nothing = apply_rope(x, rope_tables(positions, head_dim, rotate_axes=time_only & False))
    assert torch.equal(nothing, x)


def test_position_zero_is_identity_and_dtype_follows_input() -> None:
    x = torch.randn(1, 1, 1, 48, dtype=torch.float64)
    tables = rope_tables(torch.zeros(1, 3), 48, dtype=torch.float64)
    assert torch.equal(apply_rope(x, tables), x)
    assert apply_rope(x.float(), tables).dtype == torch.float32


@pytest.mark.parametrize(("head_dim", "message"), [(63, "even"), (4, "too small")])
def test_bad_head_dim_is_a_clear_error(head_dim: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        rope_tables(torch.zeros(2, 3), head_dim)


def test_positions_need_three_columns() -> None:
    with pytest.raises(ValueError, match="3"):
        rope_tables(torch.zeros(2, 2), 64)
