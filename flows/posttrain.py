"""Prefect flow behind `vjepa posttrain`: one Ray Train job, then a summary artifact."""

from __future__ import annotations

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.artifacts import publish_summary
from tasks.runtime import ensure_ray
from tasks.training.launch import ScaleConfig
from tasks.training.posttrain import run_posttrain
from tasks.training.posttrain_inputs import PosttrainConfig
from tasks.training.summaries import PosttrainSummary

HEADLINE = (
    "job",
    "steps",
    "first_loss",
    "final_loss",
    "heldout_rollout_error",
    "heldout_copy_error",
    "heldout_ratio",
    "beats_copy_baseline",
    "world_model_dir",
    "loss_curve",
    "preset",
    "action_scale_r2",
)


@task(name="posttrain-job", cache_policy=NO_CACHE)
def posttrain_job(config: PosttrainConfig, scale: ScaleConfig) -> PosttrainSummary:
    """Run AC post-training on Ray Train (joins `RAY_ADDRESS` or starts local Ray)."""
    ensure_ray()
    return run_posttrain(config, scale)


@flow(name="posttrain")
def posttrain_flow(config: PosttrainConfig, scale: ScaleConfig) -> PosttrainSummary:
    """Post-train an action-conditioned predictor on robot trajectories; returns the summary."""
    summary = posttrain_job(config, scale)
    verdict = "below" if summary.beats_copy_baseline else "NOT below"
    note = (
        f"World model: `{summary.world_model_dir}`. Held-out {config.rollout_steps}-step rollout "
        f"error {summary.heldout_rollout_error:.4f} is {verdict} the no-change baseline "
        f"{summary.heldout_copy_error:.4f}."
    )
    values = summary.as_dict()
    headline = {key: values[key] for key in HEADLINE}
    headline["action_scale"] = summary.action_scale
    publish_summary("posttrain-summary", "V-JEPA 2-AC post-training", headline, note)
    return summary
