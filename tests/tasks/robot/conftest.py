"""Fixtures for the robot-data tests: one small PointReach dataset recorded once per run."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.robot.collect import CollectConfig, CollectSummary, collect

EPISODES = 3
STEPS = 20
SEED = 7


@pytest.fixture(scope="session")
def point_reach_config(tmp_path_factory: pytest.TempPathFactory) -> CollectConfig:
    output = tmp_path_factory.mktemp("robot") / "point_reach"
    return CollectConfig(
        env="vjepa/PointReach-v0",
        episodes=EPISODES,
        output=str(output),
        steps_per_episode=STEPS,
        fps=10,
        seed=SEED,
    )


@pytest.fixture(scope="session")
def point_reach_dataset(point_reach_config: CollectConfig) -> CollectSummary:
    """3 random-policy episodes of 20 steps at 10 fps, 64x64, on local disk."""
    summary = collect(point_reach_config)
    assert Path(summary.output, "meta", "info.json").exists()
    return summary
