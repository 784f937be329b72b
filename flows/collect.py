"""Prefect flow behind `vjepa collect`: record env rollouts into a LeRobot v3.0 dataset.

Thin on purpose: one task does the rollouts and writing (`tasks.robot.collect`),
one publishes a markdown summary artifact (`collect-summary`).
"""

from __future__ import annotations

import sys

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from tasks import progress as live
from tasks.robot.collect import CollectConfig, CollectSummary, EpisodeData, collect

ARTIFACT_KEY = "collect-summary"


# No retries: a rerun over a half-written output is refused; rerun with overwrite instead.
@task(name="collect-episodes", cache_policy=NO_CACHE, retries=0)
def collect_episodes(config: CollectConfig) -> CollectSummary:
    """Roll out the policy and write the dataset; reports each episode (the log gets a line each)."""
    logger = get_run_logger()

    def progress(done: int, total: int, data: EpisodeData) -> None:
        line = (
            f"[collect] episode {done}/{total}: {len(data.frames)} frames, "
            f"reward {data.total_reward:.3f}{' (reached goal)' if data.terminated else ''}"
        )
        print(line, file=sys.stderr, flush=True)
        live.report("collect", done, total, "episode", reward=round(float(data.total_reward), 3))

    live.report("collect", 0, config.episodes, "episode")
    summary = collect(config, progress)
    logger.info(
        "recorded %d episodes (%d frames) into %s", summary.episodes, summary.frames, summary.output
    )
    return summary


@task(name="publish-collect-summary", cache_policy=NO_CACHE)
def publish_summary(summary: CollectSummary) -> str:
    """A markdown table of the collection, as the `collect-summary` artifact; returns its id."""
    rows = "\n".join(f"| {key} | {value} |" for key, value in summary.as_dict().items())
    markdown = (
        f"# Robot data collected\n\nLeRobot v3.0 dataset at `{summary.output}`.\n\n"
        f"| field | value |\n| --- | --- |\n{rows}\n"
    )
    artifact_id = create_markdown_artifact(
        key=ARTIFACT_KEY, markdown=markdown, description="vjepa collect summary"
    )
    return str(artifact_id)


@flow(name="collect")
def collect_flow(config: CollectConfig) -> CollectSummary:
    """Record `config.episodes` rollouts of its policy in its env; returns the summary.

    The defaults live in `CollectConfig` alone (the CLI and the demo build one)."""
    summary = collect_episodes(config)
    publish_summary(summary)
    return summary
