"""diagnose-world-model: a blind predictor is blamed on dynamics; a trained one uses its actions."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium
import numpy as np
import pytest
import torch

from flows.cli import main
from modeling.ac_predictor import ACPredictor, ac_tiny
from modeling.encoder import VisionEncoder, tiny
from modeling.world_model import WorldModel, WorldModelSpec, save_world_model
from tasks.planning.diagnose import (
    DiagnoseConfig,
    PartResult,
    Probe,
    action_gain,
    diagnose,
    finding,
    pooled_spearman,
    rank_threshold,
    spearman,
)
from tasks.planning.evaluate import load_planner_model
from tasks.robot.env import PointReachEnv
from tasks.training.posttrain import PosttrainJob

ENV = "vjepa/PointReach-v0"
SMALL = ["--goals", "2", "--walk-steps", "10", "--candidates", "16", "--windows", "8",
         "--episodes", "2", "--max-steps", "5"]  # fmt: skip


def test_spearman_orders_and_constant_sides_score_zero() -> None:
    values = np.arange(6.0)
    assert spearman(values, values**3) == pytest.approx(1.0)
    assert spearman(values, -values) == pytest.approx(-1.0)
    assert spearman(values, np.ones(6)) == 0.0


def _blind_model(folder: Path) -> Path:
    """An untrained residual predictor: it copies its input whatever the action."""
    torch.manual_seed(0)
    spec = WorldModelSpec(
        image_size=64, action_dim=2, state_dim=2, action_low=(-1.0, -1.0), action_high=(1.0, 1.0),
        cem={"num_samples": 16, "num_elites": 4, "num_iterations": 2, "horizon": 1},
    )  # fmt: skip
    predictor = ACPredictor(ac_tiny(action_dim=2, state_dim=2, residual=True))
    save_world_model(folder, WorldModel(VisionEncoder(tiny()), predictor, spec))
    return folder


def test_blind_predictor_fails_ranking_and_action_gain(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = _blind_model(tmp_path / "blind")
    output = tmp_path / "diagnosis"
    argv = ["diagnose-world-model", "--checkpoint", str(bundle), "--env", ENV]
    assert main([*argv, *SMALL, "--output", str(output), "--json"]) == 0
    printed = capsys.readouterr().out
    summary = json.loads(printed.strip().splitlines()[-1])
    parts = {part["name"]: part for part in summary["parts"]}
    assert parts["representation"]["passed"]  # PointReach frames order states by distance
    assert not parts["ranking"]["passed"] and not parts["action_gain"]["passed"]
    assert parts["action_gain"]["value"] == pytest.approx(0.0, abs=1e-6)
    assert summary["action_gain_ceiling"] > 0.5  # what perfect dynamics scores on PointReach
    assert "perfect dynamics scores" in parts["action_gain"]["detail"]
    assert summary["finding"].startswith("dynamics")
    assert "FAIL action_gain" in printed
    for name in ("energy_vs_distance.png", "predicted_vs_true.png", "diagnosis.json"):
        assert (output / name).stat().st_size > 0


def test_the_gain_ceiling_is_low_where_the_image_moves_on_its_own(tmp_path: Path) -> None:
    """Perfect dynamics on fresh windows: distractors and a scrolling grid that no action moves
    make most of the copy error, so even a perfect model's shuffled-action gain is small."""
    model = load_planner_model(str(_blind_model(tmp_path / "blind")))
    ceilings = {}
    for env in (ENV, "vjepa/DistractorReach-v0"):
        probe = Probe(DiagnoseConfig(env, "unused", goal_steps=2), model, 0)
        gain, ceilings[env] = action_gain(probe, 12)
        assert gain == pytest.approx(0.0, abs=1e-6)  # the blind predictor, whatever the env
    assert ceilings[ENV] > 0.5 and ceilings["vjepa/DistractorReach-v0"] < 0.5 * ceilings[ENV]


def test_success_dims_outside_the_state_stop_with_what_to_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = _blind_model(tmp_path / "blind")
    argv = ["diagnose-world-model", "--checkpoint", str(bundle), "--env", ENV, *SMALL]
    assert main([*argv, "--output", str(tmp_path / "d"), "--success-dims", "0,2"]) == 2
    assert "outside the env's 2-dim state" in capsys.readouterr().err
    assert not (tmp_path / "d" / "diagnosis.json").exists()


def test_trained_predictor_passes_the_action_checks(
    trained_world_model: tuple[str, PosttrainJob, list],
) -> None:
    config = DiagnoseConfig(ENV, trained_world_model[0], goals=2, walk_steps=10, candidates=32,
                            windows=32, episodes=2, max_steps=5)  # fmt: skip
    diagnosis = diagnose(config, load_planner_model(config.checkpoint))
    parts = {part.name: part for part in diagnosis.parts}
    print({name: part.value for name, part in parts.items()}, diagnosis.planner)
    assert parts["action_gain"].passed and parts["ranking"].value > 0.3


def test_ranking_threshold_follows_the_sample_size_and_pooling_weighs_flat_goals_little() -> None:
    # one-sided 5% critical Spearman: stricter for the demo's 4 x 16 than for the defaults' 4 x 64
    assert rank_threshold(64) == pytest.approx(0.2076, abs=1e-3)
    assert rank_threshold(256) == pytest.approx(0.1033, abs=1e-3)
    rng = np.random.default_rng(0)
    true = rng.normal(size=32)
    discriminating = list(zip(true, true + 0.1 * rng.normal(size=32), strict=True))
    flat_noise = list(zip(1e-3 * rng.normal(size=32), rng.normal(size=32) * 1e-3, strict=True))
    per_goal = np.mean([spearman(*np.asarray(g).T[::-1]) for g in (discriminating, flat_noise)])
    pooled = pooled_spearman([discriminating, flat_noise])
    assert pooled > rank_threshold(64) and pooled > per_goal + 0.2


def test_a_failed_part_is_never_summed_up_as_all_parts_pass() -> None:
    names = ("representation", "ranking", "action_gain", "planner")
    oracle = {"perfect_final_distance": 0.1, "random_final_distance": 0.3}
    passing = {name: PartResult(name, 1.0, 0.5, True, "") for name in names}
    assert finding(passing, oracle) == "all parts pass"
    for name in names:
        parts = {**passing, name: PartResult(name, 0.0, 0.5, False, "")}
        assert finding(parts, oracle) != "all parts pass", name
    weak = {**passing, "representation": PartResult("representation", 0.0, 0.5, False, "")}
    assert finding(weak, oracle).startswith("representation:")


class _FlippedViewPointReach(PointReachEnv):
    """PointReach whose frames come as a flipped view (negative strides), as MuJoCo renders."""

    def render(self) -> np.ndarray:
        frame = np.asarray(super().render())
        return np.flipud(np.ascontiguousarray(np.flipud(frame)))  # same pixels, strides < 0


def test_frames_rendered_as_flipped_views_are_diagnosed(tmp_path: Path) -> None:
    name = "vjepa-test/FlippedViewPointReach-v0"
    if name not in gymnasium.registry:
        gymnasium.register(id=name, entry_point=_FlippedViewPointReach, max_episode_steps=200)
    assert np.flipud(np.zeros((2, 2, 3))).strides[0] < 0  # what the env returns
    bundle = _blind_model(tmp_path / "blind")
    config = DiagnoseConfig(
        name, str(bundle), goals=1, walk_steps=4, candidates=8, windows=4, episodes=1, max_steps=2
    )
    parts = {part.name: part for part in diagnose(config, load_planner_model(str(bundle))).parts}
    assert set(parts) == {"representation", "ranking", "action_gain", "planner"}
    assert not parts["action_gain"].passed  # the blind model, diagnosed as before
