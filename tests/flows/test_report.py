"""The demo report: every probed label and both encoders appear, plots are written."""

from __future__ import annotations

from pathlib import Path

from flows.report import DemoStages, write_report
from flows.stages import StageOutcome
from tasks.curation.summary import CurateSummary
from tasks.planning.summary import PlanningSummary
from tasks.training.summaries import PosttrainSummary, PretrainSummary, ProbeSummary


def _probe(accuracy: float) -> ProbeSummary:
    return ProbeSummary(
        encoder="enc", steps=3, final_loss=0.5, accuracy=accuracy, accuracy_std=0.02,
        best_lr=1e-3, accuracies={}, accuracy_stds={}, head_accuracies={}, heads_per_lr=3,
        exported_head=0, probe_checkpoint="probe", loss_curve=None, train_clips=400,
        heldout_clips=144,
    )  # fmt: skip


def _posttrain(gain: float | None = 0.2) -> PosttrainSummary:
    return PosttrainSummary(
        steps=5, first_loss=0.3, final_loss=0.1, final_teacher_forcing=0.05, final_rollout=0.05,
        heldout_rollout_error=0.03, heldout_copy_error=0.04, heldout_rollout_error_per_step=[],
        heldout_copy_error_per_step=[], heldout_windows=10, heldout_ratio=0.75,
        beats_copy_baseline=True, action_scale_r2=0.9, train_episodes=[0], heldout_episodes=[1],
        world_model_dir="wm", loss_curve=None, preset="tiny", encoder="enc", trajectories="t",
        spec={}, shuffled_action_gain=gain,
    )  # fmt: skip


def _curate() -> CurateSummary:
    return CurateSummary(
        output="c", manifest="c/manifest.json", version="abc", num_sources=8, num_clips=24,
        num_rejected=1, num_shards=1, clip_shape=[8, 64, 64, 3], fps=4, counts={},
        shards=[], rejected="c/rejected.parquet",
    )  # fmt: skip


def _planning() -> PlanningSummary:
    return PlanningSummary(
        env="e", checkpoint="wm", episodes=2, steps=5, goal_steps=4, tolerance=0.1,
        action_repeat=1, success_rate=0.9, mean_final_distance=0.06, random_success_rate=0.3,
        random_mean_final_distance=0.38, mean_initial_distance=0.4, mean_planner_steps=3.0,
        mean_energy_spread=None, noop_fraction=0.0, cem_overrides={}, seconds=1.0,
        planner_episodes=[], random_episodes=[],
    )  # fmt: skip


def _stages(tmp_path: Path, posttrain: PosttrainSummary) -> DemoStages:
    return DemoStages(
        curate=_curate(),
        pretrain=PretrainSummary(
            steps=3,
            first_loss=0.5,
            final_loss=0.2,
            encoder_checkpoint="enc",
            predictor_checkpoint="pred",
            loss_curve=None,
            preset="tiny",
        ),
        probes={
            "shape": {"pretrained": _probe(0.71), "random": _probe(0.52)},
            "direction": {"pretrained": _probe(0.83), "random": _probe(0.86)},
        },
        posttrain=posttrain,
        planning=_planning(),
        outcomes=[
            StageOutcome("curate", True, "unchanged", 0.2, "a" * 64),
            StageOutcome("pretrain", False, "configuration or inputs changed", 30.0, "b" * 64),
        ],
    )


def test_report_lists_every_probe_label_for_both_encoders(tmp_path: Path) -> None:
    stages = _stages(tmp_path, _posttrain())
    report = Path(write_report(str(tmp_path / "report"), stages))
    text = report.read_text()
    rows = [line for line in text.splitlines() if line.startswith(("| shape", "| direction"))]
    assert len(rows) == 4
    assert "| shape | pretrained | 0.71 |" in text and "| direction | random init | 0.86 |" in text
    assert (report.parent / "comparison.png").stat().st_size > 1000
    assert "| 0.2000 | passed |" in text or "| 0.2 | passed |" in text


def test_report_marks_a_predictor_that_ignores_its_actions(tmp_path: Path) -> None:
    assert _posttrain(0.001).blind_to_actions and not _posttrain(None).blind_to_actions
    stages = _stages(tmp_path, _posttrain(0.001))
    text = Path(write_report(str(tmp_path / "blind"), stages)).read_text()
    assert "FAILED (ignores its actions)" in text


def test_report_says_which_stages_were_reused(tmp_path: Path) -> None:
    text = Path(write_report(str(tmp_path / "r"), _stages(tmp_path, _posttrain()))).read_text()
    assert "1 of 2 stages reused" in text
    assert "| curate | reused | unchanged |" in text
    assert "| pretrain | ran | configuration or inputs changed |" in text


def test_report_shows_the_world_model_diagnostics(tmp_path: Path) -> None:
    import dataclasses

    from tasks.planning.diagnose import Diagnosis, PartResult

    parts = [
        PartResult("representation", 0.59, 0.3, True, "energy vs distance"),
        PartResult("action_gain", 0.01, 0.05, False, "shuffled-action gain"),
    ]
    found = Diagnosis("e", "wm", parts, "fix the dynamics", {}, [], [])
    stages = dataclasses.replace(_stages(tmp_path, _posttrain()), diagnosis=found)
    text = Path(write_report(str(tmp_path / "d"), stages)).read_text()
    assert "## World-model diagnostics" in text and "Finding: fix the dynamics" in text
    assert "| representation | 0.59 | 0.3 | passed |" in text
    assert "| action_gain | 0.01 | 0.05 | FAILED |" in text
    plain = Path(write_report(str(tmp_path / "p"), _stages(tmp_path, _posttrain()))).read_text()
    assert "World-model diagnostics" not in plain


def test_report_shows_vqa_per_type_against_blind_and_majority(tmp_path: Path) -> None:
    import dataclasses

    from flows.demo_vqa import DemoVQASummary

    vqa = DemoVQASummary(
        model="m", blind_model="b", per_type={"colour": 1.0, "speed": 0.35},
        blind_per_type={"colour": 0.19, "speed": 0.35}, majority_per_type={"colour": 0.32,
        "speed": 0.47}, questions_per_type={"colour": 432, "speed": 432}, accuracy=0.67,
        blind_accuracy=0.27, majority_accuracy=0.39, seconds=1.0,
        clips_per_type={"colour": 108, "speed": 108}, http_question="What colour is it?",
        http_expected="red", http_answer="red", http_serve_seconds=9.5, http_request_ms=41.2,
        http_server_ms=30.0, seen_phrasing_per_type={"colour": 1.0, "speed": 0.4667},
        heldout_phrasing_per_type={"colour": 1.0, "speed": 0.2},
    )  # fmt: skip
    assert vqa.passed("colour") and not vqa.passed("speed")
    assert DemoVQASummary.from_dict(vqa.as_dict()) == vqa  # stage reuse reads it back
    stages = dataclasses.replace(_stages(tmp_path, _posttrain()), vqa=vqa)
    text = Path(write_report(str(tmp_path / "v"), stages)).read_text()
    assert "## Video question answering" in text
    assert "| colour | 432 | 108 | 1 | 0.19 | 0.32 | 0.41 | passed | 1 | 1 |" in text
    assert "| speed | 432 | 108 | 0.35 | 0.35 | 0.47 | 0.566 | FAILED | 0.4667 | 0.2 |" in text
    # a summary from before the split by phrasing leaves those cells empty
    older = dataclasses.replace(vqa, seen_phrasing_per_type={}, heldout_phrasing_per_type={})
    stages_older = dataclasses.replace(stages, vqa=older)
    older_text = Path(write_report(str(tmp_path / "o"), stages_older)).read_text()
    assert "| colour | 432 | 108 | 1 | 0.19 | 0.32 | 0.41 | passed |  |  |" in older_text
    assert '"What colour is it?" -> "red" (expected "red"); application start 9.5 s' in text
    plain = Path(write_report(str(tmp_path / "p"), _stages(tmp_path, _posttrain()))).read_text()
    assert "Video question answering" not in plain


def test_a_vqa_type_within_noise_of_its_baseline_does_not_pass() -> None:
    import dataclasses

    import pytest

    from flows.demo_vqa import DemoVQASummary

    # the last demo's direction figures: 0.222 against blind 0.208 on 144 held-out clips
    vqa = DemoVQASummary(
        model="m", blind_model="b", per_type={"direction": 0.222, "colour": 0.35},
        blind_per_type={"direction": 0.208, "colour": 0.17}, majority_per_type={
        "direction": 0.21, "colour": 0.23}, questions_per_type={"direction": 576, "colour": 576},
        accuracy=0.3, blind_accuracy=0.2, majority_accuracy=0.2, seconds=1.0,
        clips_per_type={"direction": 144, "colour": 144},
    )  # fmt: skip
    assert vqa.margin("direction") == pytest.approx(2 * (0.21 * 0.79 / 144) ** 0.5)
    assert not vqa.passed("direction")  # beat both, but by 0.012 < 0.068
    assert vqa.passed("colour")  # 0.35 > 0.23 + 0.070
    # a summary from before clip counts were recorded counts its questions
    older = dataclasses.replace(vqa, clips_per_type={})
    assert older.margin("direction") == pytest.approx(2 * (0.21 * 0.79 / 576) ** 0.5)
