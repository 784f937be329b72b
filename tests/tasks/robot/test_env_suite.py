"""The built-in env suite: registration, determinism by seed, frames, state, dynamics per env."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest

from tasks.robot import ENV_SUITE
from tasks.robot.collect import CollectConfig, collect, make_env
from tasks.robot.env import disc_centre
from tasks.robot.envs.arm import ArmReachEnv
from tasks.robot.envs.distractor import DistractorReachEnv
from tasks.robot.envs.pusher import DiscPushEnv


def _episode(env_id: str, seed: int, steps: int = 12) -> tuple[np.ndarray, np.ndarray]:
    env = make_env(env_id, {"width": 48, "height": 48})
    _, info = env.reset(seed=seed)
    rng = np.random.default_rng(0)
    states, frames = [info["state"]], [env.render()]
    for _ in range(steps):
        action = rng.uniform(env.action_space.low, env.action_space.high).astype(np.float32)
        _, _, _, _, info = env.step(action)
        states.append(info["state"])
        frames.append(env.render())
    env.close()
    return np.stack(states), np.stack(frames)


@pytest.mark.parametrize("env_id", ENV_SUITE)
def test_each_env_is_deterministic_by_seed_and_renders_frames(env_id: str) -> None:
    states_a, frames_a = _episode(env_id, seed=5)
    states_b, frames_b = _episode(env_id, seed=5)
    states_c, _ = _episode(env_id, seed=6)
    np.testing.assert_array_equal(states_a, states_b)
    np.testing.assert_array_equal(frames_a, frames_b)
    assert not np.allclose(states_a[0], states_c[0])
    assert frames_a.shape == (13, 48, 48, 3) and frames_a.dtype == np.uint8
    assert len({frame.tobytes() for frame in frames_a}) > 1  # the picture moves


def test_arm_actions_are_clipped_joint_deltas_and_the_tip_is_drawn() -> None:
    env = ArmReachEnv(render_mode="rgb_array")
    start, info = env.reset(seed=2)
    np.testing.assert_array_equal(start, info["state"])
    after, *_ = env.step(np.array([1.0, -0.05], dtype=np.float32))
    np.testing.assert_allclose(after - start, [0.2, -0.05], atol=1e-6)
    frame = env.render().astype(np.float32)
    _, tip = env.joints(after)
    col, row = (int(v) for v in ((tip + 1.0) / 2.0 * 64))
    assert frame[row, col, 0] > 200 and frame[row, col, 2] < 80  # the yellow tip disc


def test_arm_stays_inside_its_joint_limits() -> None:
    env = ArmReachEnv()
    env.reset(seed=0)
    for _ in range(40):
        angles, *_ = env.step(np.array([0.2, 0.2], dtype=np.float32))
    np.testing.assert_allclose(angles, env.config.limits, atol=1e-6)


def test_pusher_moves_the_object_only_by_contact() -> None:
    env = DiscPushEnv()
    _, info = env.reset(seed=3)
    state = info["state"]
    away = state[:2] - state[2:]  # from the object towards the pusher
    away = away / np.linalg.norm(away)
    for _ in range(3):  # moving away never touches the object
        _, _, _, _, info = env.step(away.astype(np.float32))
        np.testing.assert_array_equal(info["state"][2:], state[2:])
    for _ in range(12):  # moving towards it pushes it along
        _, _, _, _, info = env.step((-away).astype(np.float32))
    pushed = info["state"]
    assert np.linalg.norm(pushed[2:] - state[2:]) > 0.1
    gap = np.linalg.norm(pushed[:2] - pushed[2:])
    assert gap >= env.config.contact - 1e-5  # never overlapping


def test_pusher_cannot_squeeze_the_object_through_a_wall() -> None:
    env = DiscPushEnv()
    env.reset(seed=0, options={"goal": np.zeros(4)})
    env._pusher = np.array([0.3, 0.0], dtype=np.float32)
    env._object = np.array([0.6, 0.0], dtype=np.float32)
    for _ in range(20):
        _, _, _, _, info = env.step(np.array([1.0, 0.0], dtype=np.float32))
    pusher, obj = info["state"][:2], info["state"][2:]
    assert obj[0] == pytest.approx(1.0 - env.config.object_radius, abs=1e-5)
    assert np.linalg.norm(obj - pusher) == pytest.approx(env.config.contact, abs=1e-4)


def test_distractors_move_without_any_action_and_leave_the_state_alone() -> None:
    env = DistractorReachEnv(render_mode="rgb_array")
    _, info = env.reset(seed=4)
    first = env.render()
    for _ in range(3):
        _, _, _, _, after = env.step(np.zeros(2, dtype=np.float32))
    np.testing.assert_array_equal(after["state"], info["state"])
    assert np.abs(env.render().astype(int) - first.astype(int)).mean() > 1.0
    x, y = disc_centre(env.render())  # the distractors do not look like the disc
    np.testing.assert_allclose((x, y), info["state"], atol=0.03)


def test_suite_envs_record_with_collect(tmp_path: Any) -> None:
    for env_id in ENV_SUITE[1:]:
        summary = collect(
            CollectConfig(
                env=env_id,
                episodes=1,
                output=str(tmp_path / env_id.split("/")[1]),
                steps_per_episode=4,
            )
        )
        env = gym.make(env_id)
        assert summary.state_dim == env.observation_space.shape[0]
        assert summary.action_dim == 2 and summary.frames == 4
