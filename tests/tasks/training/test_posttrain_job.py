"""Post-training job: episode split, a real Ray Train run with export and resume, bad input.

The learning proof (loss falls, held-out rollout error below the no-change baseline) runs
in `tests/tasks/planning/test_posttrain_learning.py`, beside the fixture that trains the
world model once per run for both it and the planning tests.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from modeling.checkpoints import save_model
from modeling.encoder import VisionEncoder, tiny
from modeling.world_model import load_world_model
from tasks.robot.collect import CollectConfig, collect
from tasks.robot.lerobot_read import LeRobotFormatError
from tasks.training.checkpoints import CheckpointStore
from tasks.training.job import WorkerContext
from tasks.training.launch import ExistingRunError, ScaleConfig
from tasks.training.posttrain import PosttrainJob, run_posttrain
from tasks.training.posttrain_config import PosttrainConfig, describe_dataset, split_episodes


@pytest.fixture(scope="module")
def small_run_inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(encoder file, 6-episode PointReach dataset) for the plumbing tests."""
    root = tmp_path_factory.mktemp("posttrain-inputs")
    torch.manual_seed(0)
    encoder = save_model(VisionEncoder(tiny()), root / "encoder.safetensors")
    data = root / "trajectories"
    collect(CollectConfig("vjepa/PointReach-v0", 6, str(data), steps_per_episode=10, seed=3))
    return encoder, data


def _config(inputs: tuple[Path, Path], output: str, **values: object) -> PosttrainConfig:
    encoder, data = inputs
    defaults: dict[str, object] = {"batch_size": 4, "frames": 3, "checkpoint_every": 3}
    return PosttrainConfig(str(encoder), str(data), output, **{**defaults, **values})  # type: ignore[arg-type]


def test_split_is_deterministic_and_disjoint() -> None:
    train, held = split_episodes(range(10), 0.2, seed=1)
    assert (train, held) == split_episodes(reversed(range(10)), 0.2, seed=1)
    assert len(held) == 2 and not set(train) & set(held)
    assert sorted(train + held) == list(range(10))
    assert split_episodes([4, 9], 0.9, seed=0)[0] != ()  # never everything held out
    with pytest.raises(ValueError, match="at least 2 episodes"):
        split_episodes([0], 0.2, seed=0)


def test_dataset_facts_from_the_recording(small_run_inputs: tuple[Path, Path]) -> None:
    facts = describe_dataset(_config(small_run_inputs, "unused", fps=5.0))
    assert (facts.image_size, facts.fps, facts.state_dim, facts.action_dim) == (64, 5.0, 2, 2)
    assert all(
        -1.0 <= low < high <= 1.0
        for low, high in zip(facts.action_low, facts.action_high, strict=True)
    )
    assert len(facts.heldout_episodes) == 1 and len(facts.train_episodes) == 5
    # PointReach moves 0.05 per env step and unit action; at 5 Hz a control step is 2 env steps
    assert facts.action_scale is not None and facts.action_scale_r2 > 0.9
    np.testing.assert_allclose(facts.action_scale, (0.1, 0.1), rtol=0.1)
    with pytest.raises(ValueError, match="not a whole multiple"):
        describe_dataset(_config(small_run_inputs, "unused", fps=3.0))


def test_action_bounds_without_stats_come_from_the_data(
    small_run_inputs: tuple[Path, Path], tmp_path: Path
) -> None:
    import shutil

    data = tmp_path / "no_stats"
    shutil.copytree(small_run_inputs[1], data)
    (data / "meta" / "stats.json").unlink()
    facts = describe_dataset(_config((small_run_inputs[0], data), "unused"))
    with_stats = describe_dataset(_config(small_run_inputs, "unused"))
    np.testing.assert_allclose(facts.action_low, with_stats.action_low, rtol=1e-6)
    np.testing.assert_allclose(facts.action_high, with_stats.action_high, rtol=1e-6)


@pytest.mark.ray
def test_trains_exports_and_resumes(
    ray_cluster: None, small_run_inputs: tuple[Path, Path], tmp_path: Path
) -> None:
    output = str(tmp_path / "run")
    summary = run_posttrain(_config(small_run_inputs, output, steps=3), ScaleConfig())
    assert summary.steps == 3 and CheckpointStore(output).latest_step() == 3
    model = load_world_model(summary.world_model_dir)
    assert model.spec.image_size == 64 and model.spec.action_dim == 2
    assert model.spec.control_fps == 10.0 and model.spec.cem_config().horizon >= 1
    assert model.spec.action_scale is not None and model.predictor.config.residual
    np.testing.assert_allclose(model.spec.action_scale, (0.05, 0.05), rtol=0.1)
    assert summary.heldout_windows > 0 and summary.heldout_copy_error > 0
    assert Path(str(summary.loss_curve)).stat().st_size > 0
    with pytest.raises(ExistingRunError, match="--resume"):
        run_posttrain(_config(small_run_inputs, output, steps=6), ScaleConfig())
    resumed = run_posttrain(_config(small_run_inputs, output, steps=6, resume=True), ScaleConfig())
    steps = [row["step"] for row in CheckpointStore(output).metrics()]
    assert resumed.steps == 6 and steps == list(range(1, 7))


def test_resume_refuses_a_checkpoint_of_the_other_head(small_run_inputs: tuple[Path, Path]) -> None:
    residual = _config(small_run_inputs, "run")
    facts = describe_dataset(residual)
    job = PosttrainJob(residual, facts, WorkerContext.local(), small_run_inputs[0])
    state = job.state_dict()
    assert state["residual"] is True
    job.load_state_dict(state)
    legacy = {key: value for key, value in state.items() if key != "residual"}
    with pytest.raises(ValueError, match=r"residual=False.*--no-residual"):
        job.load_state_dict(legacy)  # written before the option: a direct (official) head
    direct = _config(small_run_inputs, "run", residual=False)
    PosttrainJob(direct, facts, WorkerContext.local(), small_run_inputs[0]).load_state_dict(legacy)


def test_missing_encoder_is_a_clear_error(
    small_run_inputs: tuple[Path, Path], tmp_path: Path
) -> None:
    config = _config((tmp_path / "nope.safetensors", small_run_inputs[1]), str(tmp_path / "o"))
    with pytest.raises(FileNotFoundError, match="encoder checkpoint not found"):
        run_posttrain(config, ScaleConfig())


def test_trajectories_without_video_are_a_clear_error(
    small_run_inputs: tuple[Path, Path], tmp_path: Path
) -> None:
    import shutil

    data = tmp_path / "no_video"
    shutil.copytree(small_run_inputs[1], data)
    info_path = data / "meta" / "info.json"
    info = json.loads(info_path.read_text())
    info["features"] = {k: v for k, v in info["features"].items() if v["dtype"] != "video"}
    info_path.write_text(json.dumps(info))
    config = _config((small_run_inputs[0], data), str(tmp_path / "o"))
    with pytest.raises(LeRobotFormatError, match="no feature of dtype 'video'"):
        describe_dataset(config)


def test_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="rollout_steps"):
        PosttrainConfig("e", "t", "o", frames=3, rollout_steps=3)
    with pytest.raises(ValueError, match="preset"):
        PosttrainConfig("e", "t", "o", preset="huge")


def test_the_stopping_rule_ends_a_run_before_the_cap(
    ray_cluster: None, small_run_inputs: tuple[Path, Path], tmp_path: Path
) -> None:
    # the gain must rise by 10 (it cannot): the first evaluation (step 2) sets the best, the
    # second (step 4) is stale, and patience 1 stops there
    config = _config(
        small_run_inputs, str(tmp_path / "run"), steps=8, checkpoint_every=4,
        stop_every=2, stop_patience=1, stop_min_improvement=10.0, stop_min_gain=-1.0,
    )  # fmt: skip
    summary = run_posttrain(config, ScaleConfig())
    assert summary.steps == 4 and summary.stopped_early
    assert [step for step, _ in summary.gain_curve] == [2, 4]
    assert CheckpointStore(config.output).latest_step() == 4
    assert load_world_model(summary.world_model_dir).spec.shuffled_action_gain is not None
