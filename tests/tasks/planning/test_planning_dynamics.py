"""Fitting the state's gain per unit of action from recorded rows (`tasks.planning.dynamics`)."""

from __future__ import annotations

import numpy as np
import pytest

from tasks.planning.dynamics import fit_action_scale


def _episodes(gain: np.ndarray, noise: float, seed: int = 0) -> tuple[np.ndarray, ...]:
    """Two episodes of 30 rows: state[t+1] = state[t] + gain * action[t] (+ noise)."""
    rng = np.random.default_rng(seed)
    states, actions, episodes = [], [], []
    for episode in range(2):
        action = rng.uniform(-1, 1, size=(30, 2))  # (T, A)
        steps = gain * action + noise * rng.normal(size=(30, 2))  # (T, A)
        start = rng.uniform(-5, 5, size=(1, 2))  # far apart: a crossing pair would spoil the fit
        state = np.concatenate([start, start + np.cumsum(steps, axis=0)[:-1]])  # (T, S)
        states.append(np.concatenate([state, np.ones((30, 1))], axis=1))  # an extra state dim
        actions.append(action)
        episodes.append(np.full(30, episode))
    return np.concatenate(states), np.concatenate(actions), np.concatenate(episodes)


def test_fit_recovers_the_gain_and_scales_it_to_the_control_rate() -> None:
    states, actions, episodes = _episodes(np.array([0.05, 0.2]), noise=0.0)
    fit = fit_action_scale(states, actions, episodes)
    assert fit.samples == 58  # 29 pairs per episode: none across the boundary
    assert fit.scale is not None
    np.testing.assert_allclose(np.array(fit.scale), np.array([0.05, 0.2]), rtol=1e-6)
    assert fit.r2 == pytest.approx(1.0)
    slower = fit_action_scale(states, actions, episodes, stride=2)
    assert slower.scale is not None
    np.testing.assert_allclose(np.array(slower.scale), np.array([0.1, 0.4]), rtol=1e-6)


def test_no_scale_when_the_rule_explains_little() -> None:
    states, actions, episodes = _episodes(np.array([0.01, 0.01]), noise=0.2)
    fit = fit_action_scale(states, actions, episodes)
    assert fit.scale is None and fit.r2 < 0.5
    too_few_state_dims = fit_action_scale(states[:, :1], actions, episodes)
    assert too_few_state_dims.scale is None
    with pytest.raises(ValueError, match="N rows"):
        fit_action_scale(states, actions[:-1], episodes)


def test_constant_action_dims_do_not_drop_the_fit() -> None:
    """Zero-padded action dims (common in LeRobot data) get gain 0; the moving dims are fitted."""
    states, actions, episodes = _episodes(np.array([0.05, 0.2]), noise=0.0)
    padded = np.concatenate([actions, np.zeros((len(actions), 1))], axis=1)  # (N, 3)
    noisy_state = np.random.default_rng(1).normal(size=(len(states), 1))  # moves on its own
    fit = fit_action_scale(np.concatenate([states, noisy_state], axis=1), padded, episodes)
    assert fit.scale is not None
    np.testing.assert_allclose(np.array(fit.scale), np.array([0.05, 0.2, 0.0]), atol=1e-6)
    assert fit.r2 == pytest.approx(1.0)
    all_constant = fit_action_scale(states, np.zeros_like(actions), episodes)
    assert all_constant.scale is None


def test_padded_action_dims_beyond_the_state_are_allowed() -> None:
    states, actions, episodes = _episodes(np.array([0.05, 0.2]), noise=0.0)
    padded = np.concatenate([actions, np.zeros((len(actions), 2))], axis=1)  # A=4 > S=3
    fit = fit_action_scale(states, padded, episodes)
    assert fit.scale is not None
    np.testing.assert_allclose(np.array(fit.scale), np.array([0.05, 0.2, 0.0, 0.0]), atol=1e-6)
    moving_beyond = padded.copy()
    moving_beyond[:, 3] = 1.0  # a dim that moves but has no state dim to move
    assert fit_action_scale(states, moving_beyond, episodes).scale is None
