"""Prefect flow behind `vjepa probe`: an attentive-probe sweep on a frozen encoder."""

from __future__ import annotations

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.artifacts import publish_summary
from tasks.runtime import ensure_ray
from tasks.training.launch import ScaleConfig
from tasks.training.probe import ProbeConfig, run_probe
from tasks.training.summaries import ProbeSummary


@task(name="probe-job", cache_policy=NO_CACHE)
def probe_job(config: ProbeConfig, scale: ScaleConfig) -> ProbeSummary:
    """Train a few probes per learning rate on Ray Train and score them on held-out clips."""
    ensure_ray()
    return run_probe(config, scale)


def publish_probe(config: ProbeConfig, summary: ProbeSummary) -> None:
    """The probe's summary as a Prefect artifact, with its headline in words."""
    note = (
        f"Encoder `{config.encoder}`: held-out top-1 {summary.accuracy:.3f} "
        f"+- {summary.accuracy_std:.3f} (mean and spread of {summary.heads_per_lr} probes "
        f"at lr {summary.best_lr}, {summary.heldout_clips} held-out clips)."
    )
    publish_summary("probe-summary", "Attentive probe", summary.as_dict(), note)


@flow(name="probe")
def probe_flow(config: ProbeConfig, scale: ScaleConfig) -> ProbeSummary:
    """Probe a frozen encoder; returns the summary with the best rate's mean held-out top-1."""
    summary = probe_job(config, scale)
    publish_probe(config, summary)
    return summary
