"""Prefect flow behind `vjepa pretrain`: one Ray Train job, then a summary artifact."""

from __future__ import annotations

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.artifacts import publish_summary
from tasks.runtime import ensure_ray
from tasks.training.launch import ScaleConfig
from tasks.training.pretrain import PretrainConfig, run_pretrain
from tasks.training.summaries import PretrainSummary


@task(name="pretrain-job", cache_policy=NO_CACHE)
def pretrain_job(config: PretrainConfig, scale: ScaleConfig) -> PretrainSummary:
    """Run masked pretraining on Ray Train (joins `RAY_ADDRESS` or starts local Ray)."""
    ensure_ray()
    return run_pretrain(config, scale)


@flow(name="pretrain")
def pretrain_flow(config: PretrainConfig, scale: ScaleConfig) -> PretrainSummary:
    """Pretrain an encoder on a curated dataset; returns the job summary."""
    summary = pretrain_job(config, scale)
    note = f"Encoder: `{summary.encoder_checkpoint}`; loss curve: `{summary.loss_curve}`."
    publish_summary("pretrain-summary", "V-JEPA pretraining", summary.as_dict(), note)
    return summary
