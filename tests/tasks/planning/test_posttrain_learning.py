"""The post-training proof on PointReach: the loss falls and, on held-out episodes, the AC
predictor's rollout error is below the "no change" baseline (copying the context frame)."""

from __future__ import annotations

import copy

import numpy as np

from tasks.planning.rollouts import MIN_ACTION_GAIN
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


def test_predictor_uses_its_actions_and_a_blind_one_scores_zero(
    trained_world_model: tuple[str, PosttrainJob, list],
) -> None:
    _, job, held = trained_world_model
    gain = job.heldout_errors(held)["shuffled_action_gain"]
    assert gain >= MIN_ACTION_GAIN, gain
    blind = copy.deepcopy(job)
    for parameter in blind.model.predictor.action_encoder.parameters():
        parameter.data.zero_()  # the action token is the same whatever the action
    assert abs(blind.heldout_errors(held)["shuffled_action_gain"]) < 1e-6
