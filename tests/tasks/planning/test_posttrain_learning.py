"""The post-training proof on PointReach: the loss falls and, on held-out episodes, the AC
predictor's rollout error is below the "no change" baseline (copying the context frame)."""

from __future__ import annotations

import numpy as np

from tasks.training.posttrain import PosttrainJob


def test_loss_falls(trained_world_model: tuple[str, PosttrainJob, list]) -> None:
    # The residual predictor starts as "no change" (its first losses are the copy error), so
    # falling by a fifth from there means it learned how actions move the features.
    losses = trained_world_model[1].losses  # type: ignore[attr-defined]
    assert np.mean(losses[-20:]) < 0.8 * np.mean(losses[:20]), losses[::50]


def test_heldout_rollout_beats_no_change(
    trained_world_model: tuple[str, PosttrainJob, list],
) -> None:
    _, job, held = trained_world_model
    errors = job.heldout_errors(held)
    print("held-out errors", errors)
    assert errors["heldout_windows"] >= 64
    assert errors["heldout_rollout_error"] < errors["heldout_copy_error"], errors
