"""Real Gymnasium packages: MuJoCo Reacher-v5 headless, state mappings, env frame rates,
namespaced ids that import their package, frame sizes that are not multiples of 16."""

from __future__ import annotations

import dataclasses
import json
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from flows.cli import main
from tasks.robot.collect import CollectConfig, CollectError, StateSpec, collect, make_env
from tasks.training import posttrain_config
from tasks.training.posttrain_config import PosttrainConfig, describe_dataset, model_image_size

pytest.importorskip("mujoco")

TOP_DOWN = {"distance": 0.75, "elevation": -90.0, "azimuth": 90.0, "lookat": [0.0, 0.0, 0.0]}
REACHER = {"width": 64, "height": 48, "default_camera_config": TOP_DOWN}
FINGERTIP = StateSpec(function="tasks.robot.state_maps:reacher_fingertip")


def test_reacher_renders_headless_with_the_fingertip_as_state() -> None:
    env = make_env("Reacher-v5", REACHER, FINGERTIP)
    observation, info = env.reset(seed=0)
    frame = np.asarray(env.render())
    assert frame.shape == (48, 64, 3) and frame.std() > 5  # a real picture, not a blank buffer
    np.testing.assert_allclose(info["state"], observation[4:6] + observation[8:10], atol=1e-6)
    _, _, _, _, info = env.step(np.ones(2, dtype=np.float32))
    assert info["state"].shape == (2,)
    again = make_env("Reacher-v5", REACHER, FINGERTIP)
    np.testing.assert_array_equal(again.reset(seed=0)[0], observation)  # deterministic by seed
    env.close()
    again.close()


def test_proprio_state_is_the_fingertip_then_the_joint_velocities() -> None:
    """Success on dims 0,1 of `reacher_proprio` is success on the fingertip state."""
    from tasks.planning.evaluate import EvalConfig, evaluate

    proprio = StateSpec(function="tasks.robot.state_maps:reacher_proprio")
    env = make_env("Reacher-v5", REACHER, proprio)
    observation, info = env.reset(seed=0)
    for _ in range(3):
        observation, _, _, _, info = env.step(np.ones(2, dtype=np.float32))
    np.testing.assert_allclose(info["state"][:2], observation[4:6] + observation[8:10], atol=1e-6)
    np.testing.assert_allclose(info["state"][2:], observation[6:8], atol=1e-6)
    assert np.abs(info["state"][2:]).max() > 0.1  # the arm is moving
    env.close()

    class Still:
        def plan(self, frame: Any, state: Any, goal: Any, previous_plan: Any = None) -> Any:
            return np.zeros((1, 2), dtype=np.float32)

    base = EvalConfig("Reacher-v5", "unused", episodes=2, max_steps=2, goal_steps=5,
                      env_kwargs=REACHER)  # fmt: skip
    runs = [
        evaluate(dataclasses.replace(base, state=state, success_dims=dims), Still(), progress=None)
        for state, dims in ((FINGERTIP, None), (proprio, (0, 1)), (proprio, None))
    ]
    finals = [[row["final_distance"] for row in run["planner_episodes"]] for run in runs]
    np.testing.assert_allclose(finals[1], finals[0], atol=1e-6)
    assert all(v > f for v, f in zip(finals[2], finals[0], strict=True))  # velocities counted


def test_collect_keeps_the_env_frame_rate_and_the_chosen_state(tmp_path: Path) -> None:
    summary = collect(
        CollectConfig("Reacher-v5", 1, str(tmp_path / "reacher"), steps_per_episode=6,
                      env_kwargs=REACHER, state=StateSpec(dims=(4, 5)))
    )  # fmt: skip
    assert summary.fps == 50  # Reacher-v5's render_fps (frame_skip 2, dt 0.01)
    assert summary.state_dim == 2 and summary.action_dim == 2
    assert (summary.image_height, summary.image_width) == (48, 64)


def test_state_spec_needs_exactly_one_way() -> None:
    with pytest.raises(CollectError, match="exactly one"):
        StateSpec()
    with pytest.raises(CollectError, match="module:function"):
        StateSpec(function="no_colon")


def test_namespaced_id_imports_its_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "toy_sims"
    package.mkdir()
    (package / "__init__.py").write_text(
        textwrap.dedent("""
        import gymnasium
        gymnasium.register(id="toy_sims/Reach-v0", entry_point="tasks.robot.env:PointReachEnv")
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "toy_sims" not in sys.modules
    env = make_env("toy_sims/Reach-v0")
    assert env.reset(seed=0)[1]["state"].shape == (2,)
    with pytest.raises(CollectError, match="unknown env"):
        make_env("no_such_package_here/Env-v0")


@pytest.fixture()
def fresh_notices(monkeypatch: pytest.MonkeyPatch) -> None:
    """No resize announced yet in this process (other tests may have announced theirs)."""
    monkeypatch.setattr(posttrain_config, "_RESIZES_SAID", set())


@pytest.mark.usefixtures("fresh_notices")
def test_frames_off_the_16_grid_take_the_serving_rule(capsys: pytest.CaptureFixture[str]) -> None:
    assert model_image_size(64, 64, None) == (64, True)
    assert model_image_size(48, 64, None) == (48, False)  # short side, centre crop: said once
    assert "serving rule" in capsys.readouterr().err
    assert model_image_size(75, 100, None) == (64, False)
    assert model_image_size(75, 100, 32) == (32, True)


@pytest.mark.usefixtures("fresh_notices")
def test_the_resize_is_said_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`vjepa posttrain` describes the dataset twice (the fail-fast check, then the run)."""
    data = tmp_path / "reacher"
    collect(CollectConfig("Reacher-v5", 2, str(data), steps_per_episode=4, env_kwargs=REACHER))
    config = PosttrainConfig(encoder="unused", trajectories=str(data), output=str(tmp_path / "o"))
    capsys.readouterr()
    first, second = describe_dataset(config), describe_dataset(config)
    assert first.image_size == second.image_size == 48
    assert capsys.readouterr().err.count("serving rule") == 1


def _collect_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    capsys.readouterr()
    assert main(["collect", "--episodes", "1", "--steps-per-episode", "3", "--json", *argv]) == 0
    return dict(json.loads(capsys.readouterr().out.strip().splitlines()[-1]))


@pytest.mark.usefixtures("prefect_harness")
def test_collect_cli_on_two_mujoco_envs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Reacher-v5 with --state-dims, Pusher-v5 with --state-fn: each at its own fps and size."""
    reacher = _collect_cli(["--env", "Reacher-v5", "--output", str(tmp_path / "r"),
                            "--state-dims", "4,5", "--env-kwargs", json.dumps(REACHER)],
                           capsys)  # fmt: skip
    assert (reacher["fps"], reacher["state_dim"], reacher["action_dim"]) == (50, 2, 2)
    assert (reacher["image_height"], reacher["image_width"]) == (48, 64)
    pusher = _collect_cli(["--env", "Pusher-v5", "--output", str(tmp_path / "p"), "--state-fn",
                           "tasks.robot.state_maps:pusher_fingertip", "--env-kwargs",
                           '{"width": 80, "height": 60}'], capsys)  # fmt: skip
    assert (pusher["fps"], pusher["state_dim"], pusher["action_dim"]) == (20, 3, 7)
    assert (pusher["image_height"], pusher["image_width"]) == (60, 80)
    frames = json.loads((tmp_path / "p" / "meta" / "info.json").read_text())["features"]
    assert frames["observation.images.top"]["shape"][:2] == [60, 80]


def _cli_json(argv: list[str], capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    capsys.readouterr()
    assert main([*argv, "--json"]) == 0
    return dict(json.loads(capsys.readouterr().out.strip().splitlines()[-1]))


PUSHER = {"width": 64, "height": 64}
END_TO_END = [
    pytest.param("Reacher-v5", REACHER, ["--state-fn", FINGERTIP.function or ""], 2, id="reacher"),
    pytest.param("Pusher-v5", PUSHER, ["--state-dims", "14,15,16"], 3, id="pusher"),
]


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.parametrize(("env", "kwargs", "state", "state_dim"), END_TO_END)
@pytest.mark.usefixtures("ray_cluster", "prefect_harness")
def test_collect_posttrain_eval_planning_cli(
    env: str,
    kwargs: dict[str, object],
    state: list[str],
    state_dim: int,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The three commands on a real MuJoCo env, with the state chosen on the command line."""
    import torch

    from modeling.checkpoints import save_model
    from modeling.encoder import VisionEncoder, tiny

    torch.manual_seed(0)
    encoder = save_model(VisionEncoder(tiny()), tmp_path / "encoder.safetensors")
    env_kwargs = ["--env-kwargs", json.dumps(kwargs)]
    collected = _cli_json(["collect", "--env", env, "--episodes", "3", "--steps-per-episode", "8",
                           "--output", str(tmp_path / "data"), *state, *env_kwargs], capsys)  # fmt: skip
    assert collected["state_dim"] == state_dim
    trained = _cli_json(["posttrain", "--encoder", str(encoder), "--trajectories",
                         str(tmp_path / "data"), "--output", str(tmp_path / "run"), "--steps", "3",
                         "--batch-size", "2", "--frames", "3", "--fps", "10"], capsys)  # fmt: skip
    cem = {"num_samples": 16, "num_iterations": 2, "num_elites": 4}
    evaluated = _cli_json(["eval-planning", "--env", env, "--checkpoint",
                           str(trained["world_model_dir"]), "--episodes", "2", "--max-steps", "2",
                           "--goal-steps", "3", "--output", str(tmp_path / "eval"),
                           "--cem", json.dumps(cem), *state, *env_kwargs], capsys)  # fmt: skip
    assert {"success_rate", "random_success_rate", "mean_final_distance"} <= set(evaluated)
    assert 0.0 <= float(str(evaluated["success_rate"])) <= 1.0
