"""Rollouts and `collect`: policy, state extraction, alignment, fail-fast errors, round trip."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces

from tasks.robot.collect import (
    CollectConfig,
    CollectError,
    CollectSummary,
    RandomPolicy,
    check_env,
    collect,
    extract_state,
    make_env,
    make_policy,
    rollout,
    validate,
)
from tasks.robot.env import PointReachEnv, disc_centre
from tasks.robot.lerobot import LeRobotReader


class _NoStateInfo(gym.Wrapper):
    """PointReach without `info["state"]`: the state must come from the Box observation."""

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        observation, _ = self.env.reset(**kwargs)
        return observation, {}

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        observation, reward, terminated, truncated, _ = self.env.step(action)
        return observation, float(reward), terminated, truncated, {}


def test_random_policy_is_seeded_and_inside_the_box() -> None:
    box = spaces.Box(np.array([-1.0, 0.0], np.float32), np.array([1.0, 3.0], np.float32))
    first = RandomPolicy(box, seed=3)
    second = RandomPolicy(box, seed=3)
    actions = np.stack([first.act(None, {}) for _ in range(200)])
    np.testing.assert_array_equal(actions, np.stack([second.act(None, {}) for _ in range(200)]))
    assert np.all(actions >= box.low) and np.all(actions <= box.high)
    assert actions[:, 1].max() > 2.0  # the whole range is used
    with pytest.raises(ValueError, match="bounded"):
        RandomPolicy(spaces.Box(-np.inf, np.inf, shape=(2,)), seed=0)


def test_policy_by_module_class_and_unknown_policy() -> None:
    box = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
    policy = make_policy("tasks.robot.collect:RandomPolicy", box, 0)
    assert isinstance(policy, RandomPolicy)
    with pytest.raises(CollectError, match="unknown policy"):
        make_policy("greedy", box, 0)


def test_rollout_rows_align_state_action_next_state() -> None:
    env = make_env("vjepa/PointReach-v0")
    data = rollout(env, RandomPolicy(check_env(env), 0), steps=12, seed=5)
    assert data.frames.shape == (12, 64, 64, 3) and data.states.shape == (12, 2)
    assert data.actions.shape == (12, 2)
    # Row t: frame t shows state t; action t moves state t to state t + 1.
    limit = np.float32(1.0 - 0.16)
    moved = np.clip(data.states[:-1] + data.actions[:-1] * np.float32(0.05), -limit, limit)
    np.testing.assert_allclose(data.states[1:], moved, atol=1e-7)
    for frame, state in zip(data.frames, data.states, strict=True):
        np.testing.assert_allclose(disc_centre(frame), state, atol=0.01)


def test_state_from_info_then_box_observation_else_error() -> None:
    box = spaces.Box(-1.0, 1.0, shape=(2,))
    np.testing.assert_array_equal(extract_state([9, 9], {"state": [1, 2]}, box), [1, 2])
    np.testing.assert_array_equal(extract_state(np.ones((2, 1)), {}, box), [1, 1])
    with pytest.raises(CollectError, match="info\\['state'\\]"):
        extract_state({"a": 1}, {}, spaces.Dict({"a": spaces.Discrete(2)}))
    env = _NoStateInfo(PointReachEnv(render_mode="rgb_array"))
    data = rollout(env, RandomPolicy(check_env(env), 0), steps=3, seed=1)
    assert data.states.shape == (3, 2)


def test_non_box_action_space_is_refused() -> None:
    env = gym.make("CartPole-v1")
    with pytest.raises(CollectError, match="Box"):
        check_env(env)


def test_validate_names_the_problem(tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file.txt").write_text("x")
    with pytest.raises(FileExistsError, match="--overwrite"):
        validate(CollectConfig("vjepa/PointReach-v0", 1, str(tmp_path / "taken")))
    with pytest.raises(CollectError, match="unknown env"):
        validate(CollectConfig("NoSuchEnv-v0", 1, str(tmp_path / "new")))
    with pytest.raises(CollectError, match="Box"):
        validate(CollectConfig("CartPole-v1", 1, str(tmp_path / "new")))
    with pytest.raises(CollectError, match="episodes"):
        CollectConfig("vjepa/PointReach-v0", 0, str(tmp_path / "new"))


def test_round_trip_frames_within_codec_tolerance_states_actions_exact(
    point_reach_dataset: CollectSummary, point_reach_config: CollectConfig
) -> None:
    reader = LeRobotReader(point_reach_dataset.output)
    assert reader.episode_indices == [0, 1, 2]
    env = make_env(point_reach_config.env)
    policy = make_policy("random", check_env(env), point_reach_config.seed)
    renderer = PointReachEnv()
    for index in reader.episode_indices:
        episode = reader.read_episode(index)
        expected = rollout(env, policy, point_reach_config.steps_per_episode, 7 + index)
        np.testing.assert_array_equal(episode.states, expected.states)
        np.testing.assert_array_equal(episode.actions, expected.actions)
        assert episode.frames.shape == expected.frames.shape
        error = np.abs(episode.frames.astype(np.int16) - expected.frames.astype(np.int16))
        assert error.mean() < 4.0, f"episode {index}: mean abs error {error.mean():.2f}"
        for frame, state in zip(episode.frames, episode.states, strict=True):
            np.testing.assert_allclose(disc_centre(frame), state, atol=0.03)
        np.testing.assert_allclose(episode.timestamps, np.arange(20) / 10, atol=1e-6)
        assert episode.task == "vjepa/PointReach-v0 (random policy)"
    reference = renderer.render_position(episode.states[0])
    assert np.abs(episode.frames[0].astype(int) - reference).mean() < 4.0


def test_overwrite_replaces_and_progress_is_reported(tmp_path: Path) -> None:
    output = str(tmp_path / "data")
    seen: list[tuple[int, int]] = []
    first = collect(CollectConfig("vjepa/PointReach-v0", 2, output, steps_per_episode=4))
    assert first.frames == 8
    with pytest.raises(FileExistsError):
        collect(CollectConfig("vjepa/PointReach-v0", 1, output, steps_per_episode=4))
    config = CollectConfig("vjepa/PointReach-v0", 1, output, steps_per_episode=6, overwrite=True)
    second = collect(config, lambda done, total, _: seen.append((done, total)))
    assert seen == [(1, 1)]
    assert second.frames == 6
    assert LeRobotReader(output).episode_indices == [0]
