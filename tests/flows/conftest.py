"""Fixtures for the flow tests: a small real curated dataset of the sample videos."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 sample videos (3 per direction) of 3 s with their labels."""
    from tasks.sample_videos import write_sample_videos

    folder = tmp_path_factory.mktemp("samples")
    write_sample_videos(str(folder), count=12, seconds=3.0, seed=5)
    return folder


@pytest.fixture(scope="session")
def curated_dir(
    sample_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
    ray_cluster: None,
    prefect_harness: None,
) -> Path:
    """The sample videos curated to 4-frame 64 px clips (one Prefect flow run on the shared Ray)."""
    from flows.curate import curate_flow

    output = tmp_path_factory.mktemp("curated")
    summary = curate_flow([str(sample_dir)], str(output), {"fps": 4, "frames": 4, "size": 64})
    assert summary.num_clips >= 12
    return output
