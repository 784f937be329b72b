"""Prefect flow behind `vjepa posttrain`: optional domain adaptation of the encoder
(`flows.adapt`: curate the trajectories' videos, continue pretraining), one Ray Train job,
then a summary artifact."""

from __future__ import annotations

import dataclasses

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.artifacts import publish_summary
from tasks.runtime import ensure_ray
from tasks.training.adapt import AdaptConfig
from tasks.training.launch import ScaleConfig
from tasks.training.outputs import write_summary
from tasks.training.posttrain import run_posttrain
from tasks.training.posttrain_config import PosttrainConfig
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
    "shuffled_action_gain",
)


def blind_warning(summary: PosttrainSummary) -> str:
    """What to tell a user whose predictor ignores its actions."""
    return (
        f"the shuffled-action gain is {summary.shuffled_action_gain:.4f} (below 0.05): giving "
        "each held-out window another window's actions hardly changes the predictor's error, so "
        "it ignores the actions and planning with it will not beat random actions. Train longer "
        "(--steps), collect more episodes, or run `vjepa diagnose-world-model`."
    )


@task(name="posttrain-job", cache_policy=NO_CACHE)
def posttrain_job(config: PosttrainConfig, scale: ScaleConfig) -> PosttrainSummary:
    """Run AC post-training on Ray Train (joins `RAY_ADDRESS` or starts local Ray)."""
    ensure_ray()
    return run_posttrain(config, scale)


@flow(name="posttrain")
def posttrain_flow(
    config: PosttrainConfig, scale: ScaleConfig, adapt: AdaptConfig | None = None
) -> PosttrainSummary:
    """Post-train an action-conditioned predictor on robot trajectories; returns the summary.

    With `adapt.steps` > 0 the encoder is first adapted to the trajectories' videos (the
    `adapt-encoder` subflow) and post-training runs on the adapted encoder; the summary's
    `encoder` is then the adapted one and `adaptation` says what ran."""
    adaptation = None
    if adapt is not None and adapt.enabled:
        from flows.adapt import adapt_flow

        adaptation = adapt_flow(config, adapt, scale)
        config = dataclasses.replace(config, encoder=adaptation.encoder)
    summary = posttrain_job(config, scale)
    if adaptation is not None:
        summary = dataclasses.replace(summary, adaptation=adaptation)
        write_summary(config.output, summary)
    verdict = "below" if summary.beats_copy_baseline else "NOT below"
    note = (
        f"World model: `{summary.world_model_dir}`. Held-out {config.rollout_steps}-step rollout "
        f"error {summary.heldout_rollout_error:.4f} is {verdict} the no-change baseline "
        f"{summary.heldout_copy_error:.4f}."
    )
    if summary.blind_to_actions:
        note += f"\n\n**Warning:** {blind_warning(summary)}"
    values = summary.as_dict()
    headline = {key: values[key] for key in HEADLINE}
    headline["action_scale"] = summary.action_scale
    if adaptation is not None:
        headline["encoder"] = summary.encoder
        headline["adapt_steps"] = adaptation.steps
        note += (
            f"\n\nEncoder adapted first: {adaptation.steps} pretraining steps on "
            f"{adaptation.clips} clips of the trajectories' videos (from `{adaptation.input_encoder}`)."
        )
    publish_summary("posttrain-summary", "V-JEPA 2-AC post-training", headline, note)
    return summary
