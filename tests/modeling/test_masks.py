"""Multi-block 3D masks: ratios, block geometry, disjointness, full temporal extent, seeding."""

from __future__ import annotations

import pytest
import torch

from modeling.masks import (
    BlockMaskSpec,
    MaskConfig,
    boxes_to_mask,
    generate_masks,
    sample_block_size,
    sample_block_starts,
    sample_mask_pair,
)

GRID = (8, 16, 16)
NUM_TOKENS = 8 * 16 * 16


def _generator(seed: int) -> torch.Generator:
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator


def test_default_config_is_the_paper_recipe() -> None:
    small, large = MaskConfig().specs
    assert (small.num_blocks, small.spatial_scale) == (8, (0.15, 0.15))
    assert (large.num_blocks, large.spatial_scale) == (2, (0.7, 0.7))
    for spec in (small, large):
        assert spec.temporal_scale == (1.0, 1.0)
        assert spec.aspect_ratio == (0.75, 1.5)


def test_target_ratio_in_expected_range_per_family() -> None:
    # batch of 1: no truncation, so the target is exactly the union of the blocks
    expected = [(0.45, 0.75), (0.70, 0.92)]
    generator = _generator(0)
    for spec, (low, high) in zip(MaskConfig().specs, expected, strict=True):
        ratios = [
            sample_mask_pair(spec, 1, GRID, generator).target.shape[1] / NUM_TOKENS
            for _ in range(64)
        ]
        mean_ratio = sum(ratios) / len(ratios)
        assert low < mean_ratio < high, (spec, mean_ratio)


def test_masks_partition_the_grid_and_stack_across_the_batch() -> None:
    pairs = generate_masks(MaskConfig(), batch_size=6, grid=GRID, seed=3)
    assert len(pairs) == 2
    for pair in pairs:
        assert pair.context.dtype == torch.int64 and pair.target.dtype == torch.int64
        assert pair.context.shape[0] == pair.target.shape[0] == 6
        assert pair.context.shape[1] > 0 and pair.target.shape[1] > 0
        assert pair.context.shape[1] + pair.target.shape[1] <= NUM_TOKENS
        for context, target in zip(pair.context, pair.target, strict=True):
            assert not set(context.tolist()) & set(target.tolist())
            assert bool((context.diff() > 0).all()) and bool((target.diff() > 0).all())
            assert int(context.max()) < NUM_TOKENS and int(target.max()) < NUM_TOKENS


def test_single_sample_covers_the_grid_exactly() -> None:
    pair = sample_mask_pair(MaskConfig().specs[0], 1, GRID, _generator(1))
    union = torch.cat([pair.context[0], pair.target[0]]).sort().values
    assert torch.equal(union, torch.arange(NUM_TOKENS))


def test_block_count_and_size() -> None:
    spec = BlockMaskSpec(num_blocks=3, spatial_scale=(0.1, 0.1), aspect_ratio=(1.0, 1.0))
    size = sample_block_size(spec, GRID, _generator(0))
    assert size == (8, 5, 5)  # int(256 * 0.1) = 25 tokens -> 5 x 5, full time
    starts = sample_block_starts(size, GRID, (4, spec.num_blocks), _generator(0))
    assert starts.shape == (4, 3, 3)
    masks = boxes_to_mask(starts, size, GRID)  # (4, N)
    block_tokens = 8 * 5 * 5
    for sample_starts, mask in zip(starts, masks, strict=True):
        singles = [boxes_to_mask(s[None, None], size, GRID)[0] for s in sample_starts]
        assert all(int(single.sum()) == block_tokens for single in singles)
        assert torch.equal(torch.stack(singles).any(dim=0), mask)
        assert block_tokens <= int(mask.sum()) <= spec.num_blocks * block_tokens


def test_blocks_span_the_full_temporal_extent() -> None:
    per_frame = 16 * 16
    generator = _generator(7)
    for spec in MaskConfig().specs:
        for _ in range(8):
            target = sample_mask_pair(spec, 1, GRID, generator).target[0]
            # a masked spatial position is masked in all 8 frames: tubes, not cubes
            counts = torch.bincount(target % per_frame, minlength=per_frame)
            assert set(counts.tolist()) <= {0, 8}
            assert int((counts == 8).sum()) > 0


def test_same_seed_same_masks_other_seed_differs() -> None:
    first = generate_masks(MaskConfig(), 4, GRID, seed=11)
    again = generate_masks(MaskConfig(), 4, GRID, generator=_generator(11))
    other = generate_masks(MaskConfig(), 4, GRID, seed=12)
    for a, b in zip(first, again, strict=True):
        assert torch.equal(a.context, b.context) and torch.equal(a.target, b.target)
    assert any(
        a.target.shape != c.target.shape or not torch.equal(a.target, c.target)
        for a, c in zip(first, other, strict=True)
    )


def test_bad_input_is_rejected_clearly() -> None:
    with pytest.raises(ValueError, match="num_blocks"):
        BlockMaskSpec(num_blocks=0, spatial_scale=(0.1, 0.1))
    with pytest.raises(ValueError, match="grid"):
        sample_mask_pair(MaskConfig().specs[0], 2, (8, 16), _generator(0))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cover the whole grid"):
        sample_mask_pair(
            BlockMaskSpec(1, (1.0, 1.0), aspect_ratio=(1.0, 1.0)), 1, GRID, _generator(0)
        )
    with pytest.raises(ValueError, match="either a generator or a seed"):
        generate_masks(MaskConfig(), 1, GRID, generator=_generator(0), seed=1)
