"""Prefect flow behind `vjepa curate`: plan -> curate pending sources on Ray -> assemble -> summary.

The flow returns a typed `CurateSummary` (read from the manifest in `tasks.curation.summary`).

Thin on purpose: the work lives in `tasks.curation`; each step is a typed task
with retries and a timeout. Retrying is safe because sources are committed one
by one (`_staging/done/<key>.json`): a retried or re-launched run only redoes
sources without a commit, and the assembly is deterministic. Ray is joined if
it is already initialised, else started (honouring `RAY_ADDRESS`).
"""

from __future__ import annotations

import dataclasses
import os
import sys
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from tasks import storage
from tasks.curation.config import config_from_mapping
from tasks.curation.dataset import (
    REJECTED,
    SourceResult,
    assemble_dataset,
    load_committed,
)
from tasks.curation.lock import OutputLock
from tasks.curation.pipeline import CurationPlan, plan_curation, run_pending
from tasks.curation.summary import CurateSummary
from tasks.runtime import ensure_ray

ARTIFACT_KEY = "curate-summary"


@task(
    name="plan-curation",
    retries=2,
    retry_delay_seconds=2,
    timeout_seconds=600,
    cache_policy=NO_CACHE,
)
def plan_sources(inputs: list[str], output: str, config: dict[str, Any]) -> CurationPlan:
    """List the inputs and find the sources a previous run already committed."""
    plan = plan_curation(inputs, output, config_from_mapping(config))
    get_run_logger().info(
        "%d sources (%d already committed, %d pending), %d inputs matched nothing",
        len(plan.sources), len(plan.committed), len(plan.pending), len(plan.missing),
    )  # fmt: skip
    return plan


def _progress_line(result: SourceResult, done: int, total: int) -> None:
    if result.rejected:
        outcome = f"rejected at {result.error_stage}: {result.error_reason}"
    else:
        dropped = sum(result.dropped.values())
        outcome = f"{len(result.clip_ids)} clips" + (f" ({dropped} dropped)" if dropped else "")
        outcome += "".join(f"; {note}" for note in result.notes)
    print(f"[curate] {done}/{total} {result.source}: {outcome}", file=sys.stderr, flush=True)


@task(
    name="curate-sources",
    retries=1,
    retry_delay_seconds=5,
    timeout_seconds=24 * 3600,
    cache_policy=NO_CACHE,
)
def curate_sources(plan: CurationPlan) -> dict[str, SourceResult]:
    """Run the Ray Data pipeline over the sources without a commit; prints a line per source."""
    # A retry must not redo what the failed attempt already committed.
    committed = load_committed(plan.output)
    plan = dataclasses.replace(
        plan,
        committed={key: committed[key] for key in map(plan.key, plan.sources) if key in committed},
    )
    ensure_ray(log_to_driver=False)
    return run_pending(plan, _progress_line)


@task(
    name="assemble-dataset",
    retries=2,
    retry_delay_seconds=2,
    timeout_seconds=4 * 3600,
    cache_policy=NO_CACHE,
)
def assemble(plan: CurationPlan, results: dict[str, SourceResult]) -> dict[str, Any]:
    """Write the shards, rejected.parquet and manifest.json; returns the manifest."""
    return assemble_dataset(plan.output, plan.config, plan.sources, plan.missing, results)


@task(name="publish-curate-summary", cache_policy=NO_CACHE)
def publish_summary(summary: CurateSummary) -> str:
    """The run summary as the `curate-summary` markdown artifact; returns its id."""
    rows = "\n".join(f"| {key} | {value} |" for key, value in sorted(summary.counts.items()))
    markdown = (
        f"# Curated clips\n\nDataset `{summary.output}`, version `{summary.version}`, "
        f"clips of shape {summary.clip_shape} (T, H, W, C) at {summary.fps} fps "
        f"in {summary.num_shards} shards.\n\n| count | value |\n| --- | --- |\n{rows}\n\n"
        f"Rejected inputs are listed in `{REJECTED}` with the stage and reason."
    )
    artifact_id = create_markdown_artifact(
        key=ARTIFACT_KEY, markdown=markdown, description="vjepa curate summary"
    )
    return str(artifact_id)


@flow(name="curate")
def curate_flow(
    inputs: list[str], output: str, config: dict[str, Any] | None = None
) -> CurateSummary:
    """Curate `inputs` (files, folders, globs, s3:// prefixes) into a clip dataset at `output`.

    The run holds the output's lock throughout (`OutputLock`): a second run on the same output
    stops with `OutputLocked` instead of publishing a competing version."""
    if not storage.is_remote(output):
        output = os.path.abspath(output)
    with OutputLock(output) as lock:
        plan = plan_sources(inputs, output, dict(config or {}))
        results = curate_sources(plan)
        lock.check()  # publish only while the lock is still this run's
        manifest = assemble(plan, results)
    summary = CurateSummary.from_manifest(plan.output, manifest)
    publish_summary(summary)
    return summary
