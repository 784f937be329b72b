"""Prefect flow behind `vjepa pretrain`: one Ray Train job, then a summary artifact."""

from __future__ import annotations

from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.artifacts import publish_summary
from tasks.runtime import ensure_ray
from tasks.training.launch import ScaleConfig
from tasks.training.pretrain import PretrainConfig, run_pretrain


@task(name="pretrain-job", cache_policy=NO_CACHE)
def pretrain_job(config: PretrainConfig, scale: ScaleConfig) -> dict[str, Any]:
    """Run masked pretraining on Ray Train (joins `RAY_ADDRESS` or starts local Ray)."""
    ensure_ray()
    return run_pretrain(config, scale)


@flow(name="pretrain")
def pretrain_flow(config: PretrainConfig, scale: ScaleConfig) -> dict[str, Any]:
    """Pretrain an encoder on a curated dataset; returns the job summary."""
    summary = pretrain_job(config, scale)
    note = f"Encoder: `{summary['checkpoint']}`; loss curve: `{summary.get('loss_curve')}`."
    publish_summary("pretrain-summary", "V-JEPA pretraining", summary, note)
    return summary
