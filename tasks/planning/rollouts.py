"""Open-loop evaluation of a world model on recorded windows: rollout error vs "no change".

From the first frame of each window the AC predictor rolls forward with the recorded
actions (and states); its per-step L1 error against the encoder features of the frames
that really followed is compared with copying the first frame's features. A predictor
that learned the dynamics beats the copy; post-training reports both on held-out episodes.

Beating the copy is not enough: an action-independent average change beats it too. The
shuffled-action gain measures whether the actions matter: each window is rolled out again
with another window's actions (the batch rotated by one), and the rise of the error over
the true actions is divided by the copy error. About 0 means the predictor ignores its
actions, whatever its rollout error says.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import torch

from modeling.ac_predictor import ACPredictor

Window = dict[str, Any]
Tensors = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # features, actions, states
KEYS = ("frames", "states", "actions")
MIN_ACTION_GAIN = 0.05  # below this the predictor is treated as blind to its actions


def numpy_batches(windows: Iterable[Window], size: int) -> Iterator[dict[str, np.ndarray]]:
    """Stack window dicts (`frames`, `states`, `actions`) into batches of `size`; last may be short."""
    chunk: list[Window] = []
    for window in windows:
        chunk.append(window)
        if len(chunk) == size:
            yield {key: np.stack([w[key] for w in chunk]) for key in KEYS}
            chunk = []
    if chunk:
        yield {key: np.stack([w[key] for w in chunk]) for key in KEYS}


def shuffled(actions: torch.Tensor) -> torch.Tensor:
    """Each window gets the next window's actions (rotation by one along the batch)."""
    return actions.roll(1, dims=0)


def rollout_errors(
    predictor: ACPredictor, features: torch.Tensor, actions: torch.Tensor, states: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """`(B, T-1)` L1 errors of the rollout from frame 0 and of copying frame 0, per future step.

    `features (B, T*N, D)` layer-normed, `actions (B, T-1, A)`, `states (B, T, S)`.
    """
    tokens = predictor.config.tokens_per_frame
    steps = features.shape[1] // tokens
    target = features.unflatten(1, (steps, tokens))  # (B, T, N, D)
    context = features[:, :tokens]  # (B, N, D)
    predicted = predictor.rollout(context, states[:, : steps - 1], actions[:, : steps - 1])
    model = (predicted - target[:, 1:]).abs().mean(dim=(2, 3))  # (B, T-1)
    copy = (target[:, :1] - target[:, 1:]).abs().mean(dim=(2, 3))  # (B, T-1)
    return model, copy


@torch.no_grad()
def heldout_errors(
    predictor: ACPredictor,
    windows: Iterable[Window],
    to_tensors: Callable[[dict[str, np.ndarray]], Tensors],
    horizon: int,
    batch_size: int = 16,
) -> dict[str, Any]:
    """Mean errors over `windows`: headline over the first `horizon` steps, and per step."""
    model_sum: torch.Tensor | None = None
    copy_sum: torch.Tensor | None = None
    count, rise, rise_copy = 0, 0.0, 0.0
    for batch in numpy_batches(windows, batch_size):
        features, actions, states = to_tensors(batch)
        model, copy = rollout_errors(predictor, features, actions, states)  # (B, T-1) each
        if features.shape[0] > 1:  # a lone window has no other window's actions to take
            other, _ = rollout_errors(predictor, features, shuffled(actions), states)
            rise += float((other - model)[:, :horizon].sum())
            rise_copy += float(copy[:, :horizon].sum())
        model_sum = model.sum(0).cpu() if model_sum is None else model_sum + model.sum(0).cpu()
        copy_sum = copy.sum(0).cpu() if copy_sum is None else copy_sum + copy.sum(0).cpu()
        count += features.shape[0]
    if model_sum is None or copy_sum is None:
        raise ValueError("the held-out episodes are too short for one window")
    model_steps, copy_steps = (model_sum / count).tolist(), (copy_sum / count).tolist()
    return {
        "shuffled_action_gain": rise / rise_copy if rise_copy > 0 else 0.0,
        "heldout_rollout_error": float(np.mean(model_steps[:horizon])),
        "heldout_copy_error": float(np.mean(copy_steps[:horizon])),
        "heldout_rollout_error_per_step": model_steps,
        "heldout_copy_error_per_step": copy_steps,
        "heldout_windows": count,
    }
