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
