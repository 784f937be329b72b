"""Pixel preprocessing shared by training, evaluation and serving.

Models take float video `(B, C, T, H, W)` normalised with the ImageNet mean and
std, as the released V-JEPA 2 checkpoints expect. Frames arrive as uint8
`(B, T, H, W, C)` (decoded video, rendered robot images, request payloads).
"""

from __future__ import annotations

import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalize(video: torch.Tensor) -> torch.Tensor:
    """Float video in [0, 1] `(B, C, T, H, W)` -> normalised `(B, C, T, H, W)`."""
    if video.dim() != 5 or video.shape[1] != 3:
        raise ValueError(f"video must be (B, 3, T, H, W), got {tuple(video.shape)}")
    mean = torch.tensor(IMAGENET_MEAN, device=video.device, dtype=video.dtype).view(1, 3, 1, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=video.device, dtype=video.dtype).view(1, 3, 1, 1, 1)
    return (video - mean) / std


def frames_to_video(frames: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 frames `(B, T, H, W, 3)` -> normalised float video `(B, 3, T, H, W)`."""
    if frames.dim() != 5 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be (B, T, H, W, 3), got {tuple(frames.shape)}")
    if frames.dtype != torch.uint8:
        raise ValueError(f"frames must be uint8, got {frames.dtype}")
    video = frames.permute(0, 4, 1, 2, 3).to(dtype) / 255.0  # (B, 3, T, H, W)
    return normalize(video)


def resize_frames(frames: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 frames `(..., H, W, 3)` of any size -> uint8 `(..., size, size, 3)`.

    Short side to `size` (antialiased bilinear), then a centre crop of the long side, as
    curation does for videos. Frames already at `size` x `size` come back unchanged.
    """
    if frames.dim() < 3 or frames.shape[-1] != 3 or frames.dtype != torch.uint8:
        raise ValueError(
            f"frames must be uint8 (..., H, W, 3), got {frames.dtype} {tuple(frames.shape)}"
        )
    height, width = frames.shape[-3:-1]
    if height == width == size:
        return frames
    scale = size / min(height, width)
    new_h, new_w = max(size, round(height * scale)), max(size, round(width * scale))
    lead = frames.shape[:-3]
    images = frames.reshape(-1, height, width, 3).permute(0, 3, 1, 2).float()  # (B, 3, H, W)
    images = torch.nn.functional.interpolate(
        images, size=(new_h, new_w), mode="bilinear", antialias=True, align_corners=False
    )  # (B, 3, h, w)
    top, left = (new_h - size) // 2, (new_w - size) // 2
    images = images[:, :, top : top + size, left : left + size]  # (B, 3, size, size)
    out = images.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)  # (B, size, size, 3)
    return out.reshape(*lead, size, size, 3)
