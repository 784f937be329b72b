"""Pixel preprocessing: frames to normalised video, and resizing camera images to a model's size."""

from __future__ import annotations

import pytest
import torch

from modeling.preprocess import IMAGENET_MEAN, frames_to_video, resize_frames


def test_frames_to_video_layout_and_normalisation() -> None:
    mean = torch.tensor(IMAGENET_MEAN) * 255
    frames = mean.round().to(torch.uint8).expand(2, 3, 16, 16, 3).contiguous()  # (B, T, H, W, 3)
    video = frames_to_video(frames)
    assert video.shape == (2, 3, 3, 16, 16)
    assert video.abs().max() < 0.02  # the mean colour normalises to ~0


def test_resize_keeps_the_centre_of_a_wide_image() -> None:
    # 32 x 96: short side 32 -> 64 scales by 2; the centre crop keeps the middle third
    wide = torch.zeros(32, 96, 3, dtype=torch.uint8)
    wide[:, 32:64] = 255  # the middle third is white
    out = resize_frames(wide, 64)
    assert out.shape == (64, 64, 3) and out.dtype == torch.uint8
    assert out[:, 2:-2].min() == 255  # all white away from the antialiased borders


def test_resize_leading_dims_and_identity() -> None:
    frames = torch.randint(0, 255, (2, 3, 48, 80, 3), dtype=torch.uint8)
    assert resize_frames(frames, 32).shape == (2, 3, 32, 32, 3)
    same = torch.randint(0, 255, (4, 64, 64, 3), dtype=torch.uint8)
    assert resize_frames(same, 64) is same


def test_resize_rejects_float_frames() -> None:
    with pytest.raises(ValueError, match="uint8"):
        resize_frames(torch.zeros(8, 8, 3), 16)
