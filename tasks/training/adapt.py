"""Domain-adaptive pretraining before post-training: continue pretraining the encoder on the
trajectory dataset's own camera videos, then post-train on the adapted encoder.

The settings live in `AdaptConfig` (one source for the defaults: the CLI, the flow and the
planning suite read them); `flows.adapt` runs curate -> pretrain as Prefect subflows, and the
planning suite trains in-process on clips cut from the collected episodes (`episode_clips`).

Pretraining continues from the given encoder with `--init` semantics (`tasks.training.pretrain_init`):
a run folder starts both encoders and the predictor. A bare encoder file has no pretraining
predictor, so `init_folder` writes one: the encoder beside a fresh predictor of the size the
pretraining job would build for its preset (`tasks.training.pretrain.initial_models`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tasks import storage
from tasks.training.summaries import AdaptSummary

__all__ = ["AdaptConfig", "AdaptSummary"]

ADAPT_FOLDER = "adapt"  # OUTPUT/adapt/{init,curated,pretrain}


@dataclasses.dataclass(frozen=True)
class AdaptConfig:
    """How the encoder is adapted; `steps` 0 turns adaptation off."""

    steps: int = 0
    # Clips of 8 frames (4 tubelets) at the control rate: trajectory episodes are short (30-40
    # control steps in the suite), so 16-frame clips would leave few per episode.
    frames: int = 8
    batch_size: int = 8
    # Fine-tuning, not pretraining from scratch: a short warmup (the pretrain CLI's suggested
    # 0.02) from the pretraining job's start_lr to its peak; the rest of the schedule is
    # PretrainConfig's.
    warmup_fraction: float = 0.02
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 0:
            raise ValueError(f"adaptation steps must be >= 0, got {self.steps}")
        if self.frames < 2 or self.frames % 2:
            raise ValueError(
                f"adaptation clip frames must be an even number >= 2, got {self.frames}"
            )
        if self.batch_size < 1:
            raise ValueError(f"adaptation batch size must be >= 1, got {self.batch_size}")

    @property
    def enabled(self) -> bool:
        return self.steps > 0


def adapt_uri(output: str, *parts: str) -> str:
    """OUTPUT/adapt/<parts>."""
    return storage.join(output, ADAPT_FOLDER, *parts)


def curation_settings(adapt: AdaptConfig, fps: float, size: int) -> dict[str, Any]:
    """`vjepa curate` settings for trajectory videos: clips at the model's control rate and
    frame size. Simulator renders are plain by design (a dot on a flat background has a luma
    std under the blank threshold) and the quality filters are for web video, so the blank and
    frozen filters are off: every frame of a recorded trajectory is one the encoder will see."""
    return {
        "fps": float(fps),
        "frames": adapt.frames,
        "size": int(size),
        "min_short_side": 16,
        "blank_std_threshold": 0.0,
        "frozen_motion_threshold": 0.0,
    }


def run_folder_of(encoder: str) -> str | None:
    """The run folder when `encoder` is a pretraining run's exported `final/encoder.safetensors`
    with its predictor beside it (continuing keeps that predictor), else None."""
    from tasks.training.pretrain_init import RUN_ENCODER, run_files

    if storage.is_remote(encoder):
        return None
    path = Path(storage.local_path(encoder))
    if not path.is_dir() and path.parts[-len(RUN_ENCODER) :] == RUN_ENCODER:
        path = path.parent.parent
    return str(path) if path.is_dir() and run_files(path) else None


def init_folder(encoder: str | Path, folder: str | Path, seed: int = 0) -> str:
    """A local run folder pretraining can continue from: `encoder` (any layout) re-saved as
    `final/encoder.safetensors` beside a fresh predictor (`final/predictor.safetensors`)."""
    from modeling import predictor as predictor_presets
    from modeling.checkpoints import load_encoder, save_model
    from modeling.predictor import Predictor
    from tasks.training.pretrain_init import RUN_ENCODER, RUN_PREDICTOR, preset_of

    model = load_encoder(encoder)
    torch.manual_seed(seed)
    width = model.config.width
    make = predictor_presets.tiny if preset_of(model.config) == "tiny" else predictor_presets.paper
    root = Path(folder)
    root.joinpath(*RUN_ENCODER).parent.mkdir(parents=True, exist_ok=True)
    save_model(model, root.joinpath(*RUN_ENCODER))
    save_model(Predictor(make(width)), root.joinpath(*RUN_PREDICTOR))
    return str(folder)


def episode_clips(
    uri: str, frames: int, fps: float, size: int, episodes: tuple[int, ...] | None = None
) -> torch.Tensor:
    """Clips `(N, C, T, H, W)` in [0, 1] cut from the dataset's episodes, half-overlapping
    (what the planning suite pretrains on in-process, without Ray Data and the curator)."""
    from tasks.robot.windows import WindowConfig, iter_windows

    config = WindowConfig(num_frames=frames, fps=fps, size=(size, size), shift=max(1, frames // 2))
    clips = [window["frames"] for window in iter_windows(uri, config, episodes)]
    if not clips:
        raise ValueError(f"{uri}: no episode is {frames} control steps long")
    video = torch.from_numpy(np.stack(clips))  # (N, T, H, W, C) uint8
    return video.permute(0, 4, 1, 2, 3).float().div(255.0)


def clip_batches(clips: torch.Tensor, batch_size: int, seed: int) -> Iterator[torch.Tensor]:
    """Shuffled batches forever, a new permutation per epoch (seeded)."""
    epoch = 0
    while True:
        order = torch.randperm(len(clips), generator=torch.Generator().manual_seed(seed + epoch))
        for start in range(0, len(order) - batch_size + 1, batch_size):
            yield clips[order[start : start + batch_size]]
        if len(order) < batch_size:
            yield clips[order]
        epoch += 1
