"""Frozen-encoder features of curated clips, computed once and kept with each clip's span."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from modeling.encoder import VisionEncoder
from modeling.preprocess import normalize
from tasks.tables import SourceMatcher

SPAN_COLUMNS = ("clip_id", "source", "start_s", "end_s", "shape", "frames")


@dataclasses.dataclass(frozen=True)
class ClipFeatures:
    """Encoder tokens of M clips on one grid, and each clip's `(source, start, end)`."""

    features: torch.Tensor  # (M, N, De)
    grid: tuple[int, int, int]
    spans: list[tuple[str, float, float]]


@torch.no_grad()
def encode_clips(
    encoder: VisionEncoder, data: Any, device: torch.device, batch_size: int = 16
) -> ClipFeatures:
    """Tokens of every clip of a Ray Dataset or shard, in one pass of the frozen encoder."""
    from tasks.clips import collate_clips

    features, spans = [], []
    grid: tuple[int, int, int] | None = None
    encoder = encoder.eval().to(device)
    for batch in data.iter_batches(batch_size=batch_size, batch_format="numpy"):
        video = normalize(collate_clips(batch)["video"].to(device))  # (B, C, T, H, W)
        clip_grid = encoder.grid(video.shape)
        if grid is not None and clip_grid != grid:
            raise ValueError(f"clips of two token grids ({grid}, {clip_grid}): curate one size")
        grid = clip_grid
        features.append(encoder(video).float().cpu())  # (B, N, De)
        for source, start, end in zip(
            batch["source"], batch["start_s"], batch["end_s"], strict=True
        ):
            spans.append((str(source), float(start), float(end)))
    if grid is None:
        raise RuntimeError("no clip of the curated dataset has a question: check the sources")
    return ClipFeatures(torch.cat(features), grid, spans)


class KeepSources:
    """Ray Data stage: keep the clips whose source matches a key of `sources` (`tasks.tables`)."""

    def __init__(self, sources: set[str]) -> None:
        self.matcher = SourceMatcher(sources)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        keep = np.array([self.matcher.match(str(s)) is not None for s in batch["source"]], bool)
        return {name: value[keep] for name, value in batch.items()}
