"""Closed-loop evaluation: the loop itself with an oracle planner, and the CLI/flow with the
post-trained world model, where CEM planning must beat random actions."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from flows.cli import main
from tasks.planning.evaluate import (
    EvalConfig,
    WorldModelPlanner,
    action_repeat,
    evaluate,
    goal_distances,
)
from tasks.robot.collect import make_env
from tasks.robot.env import PointReachEnv, disc_centre
from tasks.training.posttrain import PosttrainJob

ENV = "vjepa/PointReach-v0"


class OraclePlanner:
    """Reads the goal position off the goal image and heads straight for it (no model)."""

    def __init__(self) -> None:
        self.warm_starts = 0

    def plan(
        self, frame: np.ndarray, state: np.ndarray, goal: np.ndarray, previous_plan: Any = None
    ) -> np.ndarray:
        self.warm_starts += previous_plan is not None
        target = np.asarray(disc_centre(goal), dtype=np.float32)
        return np.clip((target - state) / 0.05, -1.0, 1.0)[None]  # (1, 2)


def test_loop_reaches_goals_with_an_oracle() -> None:
    planner = OraclePlanner()
    config = EvalConfig(ENV, "unused", episodes=3, tolerance=0.05, max_steps=30, goal_steps=20)
    summary = evaluate(config, planner, progress=None)
    assert summary["success_rate"] == 1.0
    assert summary["mean_final_distance"] <= 0.05
    assert len(summary["random_episodes"]) == 3 and planner.warm_starts > 0
    again = evaluate(config, OraclePlanner(), progress=None)
    assert again["random_mean_final_distance"] == summary["random_mean_final_distance"]


def test_action_repeat_follows_the_control_rate() -> None:
    env = make_env(ENV)
    assert action_repeat(env, 5.0, None) == 2
    assert action_repeat(env, 10.0, None) == 1
    assert action_repeat(env, None, None) == 1
    assert action_repeat(env, 5.0, 3) == 3
    with pytest.raises(ValueError, match="tolerance"):
        EvalConfig(ENV, "c", tolerance=0.0)


def test_success_dims_leave_the_other_state_dims_to_the_predictor() -> None:
    states = np.array([[0.0, 0.0, 5.0], [3.0, 4.0, -5.0]])  # (2, S): position, then a velocity
    goal = np.array([0.0, 0.0, 0.0])
    np.testing.assert_allclose(goal_distances(states, goal, (0, 1)), [0.0, 5.0])
    np.testing.assert_allclose(goal_distances(states, goal, None), [5.0, np.sqrt(50.0)])
    with pytest.raises(ValueError, match="outside the env's 3-dim state"):
        goal_distances(states, goal, (0, 3))
    for bad in ((), (-1,), (0, 0)):
        with pytest.raises(ValueError, match="distinct indices"):
            EvalConfig(ENV, "c", success_dims=bad)
    # The summary says which dims it used; on PointReach (state = position) dims 0,1 are all.
    config = EvalConfig(ENV, "unused", episodes=2, tolerance=0.05, max_steps=30, goal_steps=20)
    whole = evaluate(config, OraclePlanner(), progress=None)
    picked = evaluate(replace(config, success_dims=(0, 1)), OraclePlanner(), progress=None)
    assert (whole["success_dims"], picked["success_dims"]) == (None, [0, 1])
    assert picked["mean_initial_distance"] == whole["mean_initial_distance"] > 0.1
    one_axis = evaluate(replace(config, success_dims=(0,)), OraclePlanner(), progress=None)
    assert one_axis["mean_initial_distance"] < whole["mean_initial_distance"]


def test_planner_beats_random_actions(
    trained_world_model: tuple[str, PosttrainJob, list],
    prefect_harness: None,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bundle = trained_world_model[0]
    output = tmp_path / "eval"
    argv = ["eval-planning", "--env", ENV, "--checkpoint", bundle, "--episodes", "8"]
    assert main([*argv, "--output", str(output), "--json"]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out.strip().splitlines()[-1])
    print("planning", {k: v for k, v in summary.items() if not k.endswith("episodes")})
    assert summary["episodes"] == 8 and summary["action_repeat"] == 2
    assert summary["mean_final_distance"] < summary["random_mean_final_distance"]
    assert summary["mean_final_distance"] < summary["mean_initial_distance"]
    assert summary["success_rate"] >= summary["random_success_rate"]
    assert "[eval-planning] done: 8 episodes" in captured.err
    assert (output / "final_distance.png").stat().st_size > 0
    assert json.loads((output / "results.json").read_text())["episodes"] == 8


def test_planner_takes_camera_frames_of_any_size(
    trained_world_model: tuple[str, PosttrainJob, list],
) -> None:
    model = trained_world_model[1].model
    small, large = PointReachEnv(width=64, height=64), PointReachEnv(width=128, height=96)
    state, goal = np.array([0.2, -0.1], np.float32), np.array([-0.3, 0.4], np.float32)
    plans = [
        WorldModelPlanner(model, seed=3).plan(
            env.render_position(state), state, env.render_position(goal)
        )
        for env in (small, large)
    ]
    assert plans[0].shape == plans[1].shape == (model.spec.cem_config().horizon, 2)
    assert np.all(np.abs(plans[1]) <= 1.0)


def test_cli_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = ["eval-planning", "--env", ENV, "--checkpoint", str(tmp_path / "none")]
    assert main(missing) == 2
    assert "world model not found" in capsys.readouterr().err
    assert main(["eval-planning", "--env", "NoSuchEnv-v9", "--checkpoint", str(tmp_path)]) == 2
    assert "unknown env" in capsys.readouterr().err
    assert main([*missing, "--env-kwargs", "[1]"]) == 2
    assert "JSON object" in capsys.readouterr().err
    for bad, message in (("0,x", "comma-separated integers"), ("1,1", "distinct indices"),
                         ("0,2", "outside the env's 2-dim state")):  # fmt: skip
        assert main([*missing, "--success-dims", bad]) == 2
        assert message in capsys.readouterr().err


class NoisePlanner(WorldModelPlanner):
    """A `WorldModelPlanner` whose every plan is below the noise floor."""

    def __init__(self) -> None:
        self.calls: list[Any] = []
        self.last_spread, self.last_confident = 1e-5, False

    def plan(
        self, frame: np.ndarray, state: np.ndarray, goal: np.ndarray, previous_plan: Any = None
    ) -> np.ndarray:
        self.calls.append(previous_plan)
        return np.zeros((2, 2), dtype=np.float32)


def test_plans_below_the_noise_floor_are_no_ops_without_warm_start() -> None:
    planner = NoisePlanner()
    config = EvalConfig(
        ENV, "unused", episodes=2, tolerance=0.01, max_steps=4, goal_steps=30, cem={"horizon": 1}
    )
    summary = evaluate(config, planner, progress=None)
    assert len(planner.calls) == 8 and all(p is None for p in planner.calls)  # no warm start
    assert summary["noop_fraction"] == 1.0 and summary["mean_energy_spread"] == 1e-5
    assert summary["cem_overrides"] == {"horizon": 1}
    for row in summary["planner_episodes"]:
        assert row["final_distance"] == pytest.approx(row["initial_distance"])  # never moved
    with pytest.raises(ValueError, match="unknown CEM settings"):
        EvalConfig(ENV, "unused", cem={"samples": 3})
