"""PointReach: determinism, dynamics, rendering (position recoverable), registration."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import tasks.robot
from tasks.robot.collect import make_env
from tasks.robot.env import PointReachEnv, disc_centre


def _frame(env: gym.Env) -> np.ndarray:
    frame = env.render()
    assert isinstance(frame, np.ndarray)
    return frame


def _trajectory(env: gym.Env, seed: int, steps: int = 15) -> tuple[np.ndarray, np.ndarray]:
    observation, _ = env.reset(seed=seed)
    actions = np.random.default_rng(0).uniform(-1, 1, size=(steps, 2)).astype(np.float32)
    states, frames = [observation], [_frame(env)]
    for action in actions:
        observation, *_ = env.step(action)
        states.append(observation)
        frames.append(_frame(env))
    return np.stack(states), np.stack(frames)


def test_same_seed_same_episode_other_seed_differs() -> None:
    env = PointReachEnv(render_mode="rgb_array")
    states_a, frames_a = _trajectory(env, seed=3)
    states_b, frames_b = _trajectory(PointReachEnv(render_mode="rgb_array"), seed=3)
    states_c, _ = _trajectory(env, seed=4)
    np.testing.assert_array_equal(states_a, states_b)
    np.testing.assert_array_equal(frames_a, frames_b)
    assert not np.allclose(states_a[0], states_c[0])


def test_dynamics_are_position_plus_clipped_action_times_step() -> None:
    env = PointReachEnv()
    start, info = env.reset(seed=1)
    np.testing.assert_array_equal(start, info["state"])
    after, _, _, _, info = env.step(np.array([5.0, -0.5], dtype=np.float32))
    expected = start + np.array([1.0, -0.5], dtype=np.float32) * np.float32(0.05)
    np.testing.assert_allclose(after, expected, atol=1e-7)
    np.testing.assert_array_equal(after, info["state"])
    assert env.observation_space.contains(after)


def test_disc_stays_on_the_table() -> None:
    env = PointReachEnv()
    env.reset(seed=0)
    for _ in range(100):
        observation, *_ = env.step(np.array([1.0, 1.0], dtype=np.float32))
    limit = env.config.limit
    np.testing.assert_allclose(observation, [limit, limit], atol=1e-6)


@pytest.mark.parametrize(("width", "height"), [(64, 64), (128, 96)])
def test_render_shape_and_disc_centred_at_state(width: int, height: int) -> None:
    env = PointReachEnv(render_mode="rgb_array", width=width, height=height)
    rng = np.random.default_rng(5)
    for seed in range(10):
        env.reset(seed=seed)
        env.step(rng.uniform(-1, 1, size=2).astype(np.float32))
        frame = env.render()
        assert frame.shape == (height, width, 3)
        assert frame.dtype == np.uint8
        np.testing.assert_allclose(disc_centre(frame), env.position, atol=0.01)


def test_render_position_gives_goal_images_and_background_is_fixed() -> None:
    env = PointReachEnv()
    env.reset(seed=0)
    left, right = env.render_position((-0.5, 0.0)), env.render_position((0.5, 0.0))
    np.testing.assert_allclose(disc_centre(left), (-0.5, 0.0), atol=0.01)
    # Far from both discs the table pattern is identical.
    np.testing.assert_array_equal(left[:, 28:36], right[:, 28:36])
    assert len(np.unique(left[0:5, :, 0])) > 4  # the background has structure, not a flat colour


def test_reaching_the_goal_terminates_with_zero_reward() -> None:
    env = PointReachEnv()
    start, _ = env.reset(seed=2)
    env.reset(seed=2, options={"goal": start})
    _, reward, terminated, truncated, info = env.step(np.zeros(2, dtype=np.float32))
    assert terminated and not truncated
    assert reward == pytest.approx(0.0, abs=1e-6)
    np.testing.assert_allclose(info["goal"], start)


@pytest.mark.parametrize("kwargs", [{"width": 60}, {"height": 8}, {"radius": 0.7}])
def test_bad_geometry_is_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="PointReach"):
        PointReachEnv(**kwargs)  # type: ignore[arg-type]


def test_registered_with_gymnasium_and_by_module_class() -> None:
    assert tasks.robot.POINT_REACH_ID in gym.registry
    env = gym.make(tasks.robot.POINT_REACH_ID, render_mode="rgb_array", width=32, height=32)
    env.reset(seed=0)
    assert _frame(env).shape == (32, 32, 3)
    direct = make_env("tasks.robot.env:PointReachEnv")
    assert isinstance(direct, PointReachEnv)
    assert direct.render_mode == "rgb_array"
    by_gym_form = make_env("tasks.robot:vjepa/PointReach-v0")  # Gymnasium's module:EnvId
    assert isinstance(by_gym_form.unwrapped, PointReachEnv)
