"""The demo's report: one markdown page with tables and the PNG plots of every stage."""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flows.demo_vqa import DemoVQASummary
from flows.stages import StageOutcome
from tasks import storage
from tasks.curation.summary import CurateSummary
from tasks.planning.summary import PlanningSummary
from tasks.training.outputs import fetch_file, upload_file
from tasks.training.summaries import PosttrainSummary, PretrainSummary, ProbeSummary

if TYPE_CHECKING:
    from tasks.planning.diagnose import Diagnosis


@dataclasses.dataclass(frozen=True)
class DemoStages:
    """The results of every demo stage that the report shows."""

    curate: CurateSummary
    pretrain: PretrainSummary
    probes: Mapping[str, Mapping[str, ProbeSummary]]  # label -> encoder name -> summary
    posttrain: PosttrainSummary
    planning: PlanningSummary
    outcomes: Sequence[StageOutcome] = ()  # how each stage went in this run (reused or run)
    vqa: DemoVQASummary | None = None
    diagnosis: Diagnosis | None = None  # the quick diagnose-world-model subset


# How the report names the two encoders that every probe compares.
ENCODER_NAMES = {"pretrained": "pretrained", "random": "random init"}


def _figure(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)


def _table(header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(_figure(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def comparison_plot(stages: DemoStages, path: Path) -> None:
    """Bars: probe accuracy (pretrained vs random encoder), planning success (planner vs random)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(8, 3.2), dpi=100)
    probes = stages.probes
    labels = list(probes)
    width = 0.38
    for offset, (name, colour) in enumerate((("pretrained", "tab:blue"), ("random", "tab:gray"))):
        positions = [index + (offset - 0.5) * width for index in range(len(labels))]
        heights = [probes[label][name].accuracy for label in labels]
        errors = [probes[label][name].accuracy_std for label in labels]
        axes[0].bar(positions, heights, width, yerr=errors, color=colour, label=ENCODER_NAMES[name])
    axes[0].set_xticks(range(len(labels)), labels)
    axes[0].set_title("probe top-1 (held out)")
    axes[0].set_ylim(0, 1)
    axes[0].legend(fontsize=8)
    planning = stages.planning
    success = [planning.success_rate, planning.random_success_rate]
    axes[1].bar(["CEM planner", "random actions"], success, color=["tab:green", "tab:gray"])
    axes[1].set_title("planning success rate")
    axes[1].set_ylim(0, 1)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def _sections(stages: DemoStages) -> list[str]:
    curate, pretrain = stages.curate, stages.pretrain
    post, planning = stages.posttrain, stages.planning
    return [
        "## Curation\n\n"
        + _table(
            ("sources", "clips", "rejected", "dataset version"),
            [(curate.num_sources, curate.num_clips, curate.num_rejected, curate.version)],
        ),
        "## Pretraining\n\n"
        + _table(
            ("steps", "first loss", "final loss", "encoder"),
            [
                (
                    pretrain.steps,
                    pretrain.first_loss,
                    pretrain.final_loss,
                    pretrain.encoder_checkpoint,
                )
            ],
        )
        + "\n\n![pretraining loss](pretrain_loss.png)",
        "## Attentive probes (held-out clips)\n\n"
        + _table(
            ("label", "encoder", "top-1 (mean of heads)", "spread", "best lr", "held-out clips"),
            [
                (
                    label,
                    ENCODER_NAMES.get(name, name),
                    result.accuracy,
                    result.accuracy_std,
                    result.best_lr,
                    result.heldout_clips,
                )
                for label, pair in stages.probes.items()
                for name, result in pair.items()
            ],
        ),
        "## Action-conditioned post-training\n\n"
        + _table(
            (
                "steps",
                "final loss",
                "held-out rollout error",
                "copy-last-frame error",
                "shuffled-action gain",
                "action check",
            ),
            [
                (
                    post.steps,
                    post.final_loss,
                    post.heldout_rollout_error,
                    post.heldout_copy_error,
                    "n/a" if post.shuffled_action_gain is None else post.shuffled_action_gain,
                    "FAILED (ignores its actions)" if post.blind_to_actions else "passed",
                )
            ],
        )
        + "\n\n![post-training loss](posttrain_loss.png)",
        "## Closed-loop planning through the HTTP server\n\n"
        + _table(
            ("controller", "success rate", "mean final distance"),
            [
                ("CEM planner", planning.success_rate, planning.mean_final_distance),
                (
                    "random actions",
                    planning.random_success_rate,
                    planning.random_mean_final_distance,
                ),
            ],
        )
        + "\n\n![planning](planning.png)\n\n![comparison](comparison.png)",
    ]


VQA_COLUMNS = (
    "type", "questions", "clips", "aligned", "blind", "majority", "needs", "check",
    "seen phrasings", "held-out phrasing",
)  # fmt: skip


def _vqa_section(vqa: DemoVQASummary | None) -> list[str]:
    """Held-out VQA accuracy per question type: aligned vs blind vs majority, passed or not."""
    if vqa is None:
        return []
    rows: list[tuple[object, ...]] = [
        (
            kind,
            vqa.questions_per_type[kind],
            vqa.clips_per_type.get(kind, ""),
            vqa.per_type[kind],
            vqa.blind_per_type[kind],
            vqa.majority_per_type[kind],
            round(vqa.baseline(kind) + vqa.margin(kind), 3),
            "passed" if vqa.passed(kind) else "FAILED",
            vqa.seen_phrasing_per_type.get(kind, ""),
            vqa.heldout_phrasing_per_type.get(kind, ""),
        )
        for kind in sorted(vqa.per_type)
    ]
    total = sum(vqa.questions_per_type.values())
    overall = (vqa.accuracy, vqa.blind_accuracy, vqa.majority_accuracy)
    rows.append(("all", total, "", *overall, "", "", "", ""))
    return [
        "## Video question answering (held-out videos, exact match)\n\n"
        "A tiny LM aligned with the pretrained encoder, the same model trained blind (visual "
        "tokens removed), and the majority training answer. A type passes when the aligned "
        "accuracy is above 'needs': the better baseline plus two binomial standard errors of "
        "it over the type's held-out clips (a video's phrasings are not independent trials). "
        "The last two columns split the aligned accuracy: the phrasings training asked, and "
        "the held-out phrasing, which only held-out videos are asked (reading the video vs "
        "carrying the question over to new wording).\n\n"
        + _table(VQA_COLUMNS, rows)
        + _vqa_http_line(vqa)
    ]


def _vqa_http_line(vqa: DemoVQASummary) -> str:
    """The held-out question the aligned model answered through the HTTP server."""
    if not vqa.http_question:
        return ""
    return (
        f"\n\nThrough the HTTP server (`/v1/vqa`, served beside the planner): "
        f'"{vqa.http_question}" -> "{vqa.http_answer}" (expected "{vqa.http_expected}"); '
        f"application start {vqa.http_serve_seconds:.1f} s, request {vqa.http_request_ms:.0f} ms "
        f"({vqa.http_server_ms:.0f} ms in the server)."
    )


def _diagnosis_section(diagnosis: Diagnosis | None) -> list[str]:
    """`diagnose-world-model`'s verdicts on the demo's world model (its cheap subset)."""
    if diagnosis is None:
        return []
    rows = [
        (part.name, part.value, part.threshold, "passed" if part.passed else "FAILED", part.detail)
        for part in diagnosis.parts
    ]
    return [
        "## World-model diagnostics (`vjepa diagnose-world-model`, quick subset)\n\n"
        + _table(("part", "value", "threshold", "verdict", "what it measures"), rows)
        + f"\n\nFinding: {diagnosis.finding}"
    ]


def _stage_section(outcomes: Sequence[StageOutcome]) -> list[str]:
    """Which stages this run reused from an earlier run and which it ran (and why)."""
    if not outcomes:
        return []
    rows = [
        (o.stage, "reused" if o.reused else "ran", o.reason, round(o.seconds, 1), o.key[:12])
        for o in outcomes
    ]
    reused = sum(o.reused for o in outcomes)
    return [
        f"## Stages\n\n{reused} of {len(outcomes)} stages reused from an earlier run "
        "(`stages/<stage>.json`; `vjepa demo --rerun STAGE` or `--no-reuse` forces a run).\n\n"
        + _table(("stage", "this run", "why", "seconds", "key"), rows)
    ]


def write_report(output: str, stages: DemoStages) -> str:
    """Write `report.md` and its PNGs under `output`; returns the URI of `report.md`."""
    plots = {
        "pretrain_loss.png": stages.pretrain.loss_curve,
        "posttrain_loss.png": stages.posttrain.loss_curve,
        "planning.png": stages.planning.plot,
    }
    with tempfile.TemporaryDirectory(prefix="vjepa-report-") as scratch:
        folder = Path(scratch)
        (folder / "in").mkdir()
        for name, uri in plots.items():
            if uri:
                upload_file(fetch_file(uri, folder / "in"), storage.join(output, name))
        comparison_plot(stages, folder / "comparison.png")
        upload_file(folder / "comparison.png", storage.join(output, "comparison.png"))
        sections = [
            *_sections(stages),
            *_vqa_section(stages.vqa),
            *_diagnosis_section(stages.diagnosis),
            *_stage_section(stages.outcomes),
        ]
        text = "# V-JEPA 2 platform demo\n\n" + "\n\n".join(sections) + "\n"
        (folder / "report.md").write_text(text)
        return upload_file(folder / "report.md", storage.join(output, "report.md"))
