"""Video augmentation for pretraining: random resized crop and horizontal flip, on tensors.

Works on a batch `(B, C, T, H, W)` in place of the official per-clip PIL/numpy
transforms: one crop box per clip, shared by all its frames, resized back to the
clip's size so the token grid stays the same.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentConfig:
    scale: tuple[float, float] = (0.3, 1.0)
    aspect_ratio: tuple[float, float] = (0.75, 1.35)
    flip_probability: float = 0.5


def _crop_box(
    height: int, width: int, config: AugmentConfig, generator: torch.Generator
) -> tuple[int, int, int, int]:
    """`(top, left, crop_height, crop_width)` of a random crop with the configured area and shape."""
    area = height * width
    for _ in range(10):
        target = area * float(torch.empty(1).uniform_(*config.scale, generator=generator))
        log_low, log_high = (math.log(r) for r in config.aspect_ratio)
        aspect = math.exp(float(torch.empty(1).uniform_(log_low, log_high, generator=generator)))
        crop_w = round(math.sqrt(target * aspect))
        crop_h = round(math.sqrt(target / aspect))
        if 0 < crop_w <= width and 0 < crop_h <= height:
            top = int(torch.randint(0, height - crop_h + 1, (1,), generator=generator))
            left = int(torch.randint(0, width - crop_w + 1, (1,), generator=generator))
            return top, left, crop_h, crop_w
    return 0, 0, height, width


def random_resized_crop_flip(
    video: torch.Tensor, config: AugmentConfig, generator: torch.Generator
) -> torch.Tensor:
    """Augment each clip of `video (B, C, T, H, W)`; returns the same shape."""
    height, width = video.shape[-2:]
    clips = []
    for clip in video:  # (C, T, H, W)
        top, left, crop_h, crop_w = _crop_box(height, width, config, generator)
        crop = clip[:, :, top : top + crop_h, left : left + crop_w]  # (C, T, h, w)
        crop = F.interpolate(crop, size=(height, width), mode="bilinear", align_corners=False)
        if float(torch.rand(1, generator=generator)) < config.flip_probability:
            crop = crop.flip(-1)
        clips.append(crop)
    return torch.stack(clips)  # (B, C, T, H, W)
