"""Prefect flows behind `vjepa make-tiny-lm`, `vjepa align` and `vjepa eval-vqa`."""

from __future__ import annotations

from prefect import flow, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from flows.artifacts import publish_summary
from tasks.runtime import ensure_ray
from tasks.training.launch import ScaleConfig
from tasks.vqa.align import AlignConfig, run_align
from tasks.vqa.evaluate import EvalVQAConfig, evaluate_vqa
from tasks.vqa.summaries import AlignSummary, VQAEvalSummary
from tasks.vqa.tiny_lm import TinyLMConfig, TinyLMSummary, make_tiny_lm


@task(name="make-tiny-lm", cache_policy=NO_CACHE)
def tiny_lm_job(config: TinyLMConfig) -> TinyLMSummary:
    """Tokenizer + small Llama trained on the QA corpus, saved with `save_pretrained`."""
    return make_tiny_lm(config)


@flow(name="make-tiny-lm")
def make_tiny_lm_flow(config: TinyLMConfig) -> TinyLMSummary:
    summary = tiny_lm_job(config)
    note = f"LM of {summary.num_parameters} parameters, loss {summary.first_loss:.3f} -> {summary.final_loss:.3f}."
    publish_summary("tiny-lm-summary", "Tiny language model", summary.as_dict(), note)
    return summary


@task(name="align-job", cache_policy=NO_CACHE)
def align_job(config: AlignConfig, scale: ScaleConfig) -> AlignSummary:
    """Train the projector (and the LM when asked) on Ray Train."""
    ensure_ray()
    return run_align(config, scale)


@flow(name="align")
def align_flow(config: AlignConfig, scale: ScaleConfig) -> AlignSummary:
    """Align a frozen encoder with an LM; the loss curve and summary become an artifact."""
    summary = align_job(config, scale)
    publish_align(summary)
    return summary


def publish_align(summary: AlignSummary) -> None:
    """An alignment run's summary as a Prefect artifact, with its headline in words."""
    curve = f"![align loss]({summary.loss_curve})" if summary.loss_curve else ""
    note = (
        f"{'Blind' if summary.blind else summary.projector} projector, LM {summary.lm_weights}: "
        f"loss {summary.first_loss} -> {summary.final_loss} over {summary.steps} steps. {curve}"
    )
    publish_summary("align-summary", "VQA alignment", summary.as_dict(), note)


@task(name="eval-vqa-job", cache_policy=NO_CACHE)
def eval_vqa_job(config: EvalVQAConfig) -> VQAEvalSummary:
    """Answer the held-out questions and score them against the majority baseline."""
    ensure_ray()
    return evaluate_vqa(config)


def accuracy_rows(summary: VQAEvalSummary) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = [
        {
            "type": kind,
            "questions": summary.questions_per_type[kind],
            "accuracy": round(accuracy, 3),
            "majority": round(summary.majority_per_type[kind], 3),
            "seen phrasings": _rounded(summary.seen_phrasing_per_type.get(kind)),
            "held-out phrasing": _rounded(summary.heldout_phrasing_per_type.get(kind)),
        }
        for kind, accuracy in sorted(summary.per_type.items())
    ]
    rows.append(
        {
            "type": "all",
            "questions": summary.num_questions,
            "accuracy": round(summary.accuracy, 3),
            "majority": round(summary.majority_accuracy, 3),
            "seen phrasings": "",
            "held-out phrasing": _rounded(summary.heldout_phrasing_accuracy),
        }
    )
    return rows


def _rounded(value: float | None) -> float | str:
    return "" if value is None else round(value, 3)


@flow(name="eval-vqa")
def eval_vqa_flow(config: EvalVQAConfig, key: str = "vqa-accuracy") -> VQAEvalSummary:
    """Evaluate a VQA model; the per-type accuracy table becomes an artifact."""
    summary = eval_vqa_job(config)
    publish_eval_vqa(config, summary, key)
    return summary


def publish_eval_vqa(config: EvalVQAConfig, summary: VQAEvalSummary, key: str) -> None:
    """The per-type accuracy table of an evaluation as a Prefect artifact."""
    create_table_artifact(
        key=key, table=accuracy_rows(summary), description=f"VQA accuracy of {config.model}"
    )
