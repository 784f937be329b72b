"""The demo's probe stage: the two encoders of a label probed side by side when the CPUs allow."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from prefect import flow

from flows.demo_config import DemoConfig
from flows.pipeline import _probes
from flows.stages import Stages
from tasks.training.launch import ScaleConfig, side_by_side
from tasks.training.probe import probe_name
from tasks.training.summaries import ProbeSummary

pytestmark = [pytest.mark.ray]


def test_side_by_side_only_when_the_cluster_has_the_cpus(ray_cluster: None) -> None:
    assert side_by_side(ScaleConfig(), 2)  # the shared test cluster has 2 CPUs
    assert not side_by_side(ScaleConfig(cpus_per_worker=2), 2)
    assert not side_by_side(ScaleConfig(num_workers=2), 2)
    assert not side_by_side(ScaleConfig(use_gpu=True), 1)


def test_probe_names_in_progress_lines() -> None:
    assert probe_name("random:tiny") == "random:tiny"
    assert probe_name("s3://bucket/run/final/encoder.safetensors") == "encoder.safetensors"
    assert probe_name("/models/vitl-hf/") == "vitl-hf"


@pytest.mark.slow  # ~105 s (four real probe jobs); stage reuse itself: tests/flows/test_stages.py
def test_probe_stage_probes_both_encoders(
    curated_dir: Path, sample_dir: Path, tmp_path: Path, prefect_harness: None
) -> None:
    shutil.copytree(curated_dir, tmp_path / "curated")
    config = DemoConfig(
        workdir=str(tmp_path),
        probe_steps=3,
        probe_lrs=(1e-3,),
        probe_heads=1,
        probe_labels=("shape",),
    )

    def stages(pretrained: str = "p") -> Stages:
        runs = Stages(str(tmp_path), force=config.forced, announce=lambda line: None)
        runs.digests.update(curate="c", videos="v", pretrain=pretrained)  # the upstream digests
        return runs

    @flow
    def stage(runs: Stages) -> dict[str, dict[str, ProbeSummary]]:
        labels = str(sample_dir / "labels.parquet")
        return _probes(config, "random:small", labels, ScaleConfig(), runs)

    first = stages()
    results = stage(first)
    assert [o.reused for o in first.outcomes] == [False, False]
    assert set(results) == {"shape"} and set(results["shape"]) == {"pretrained", "random"}
    for name, summary in results["shape"].items():
        assert summary.steps == 3 and summary.heldout_clips > 0
        assert summary.label_column == "shape"
        assert Path(summary.probe_checkpoint).is_file()
        assert (tmp_path / f"probe-shape-{name}" / "summary.json").is_file()
    assert results["shape"]["pretrained"].encoder == "random:small"
    assert results["shape"]["random"].encoder == "random:tiny"

    # Unchanged inputs: both probes are reused (and verified), nothing trains.
    again = stages()
    assert stage(again) == results and again.reused == [
        "probe-shape-pretrained",
        "probe-shape-random",
    ]
    # A new pretrained encoder (its digest changed): only the probe of that encoder runs.
    newer = stages(pretrained="p2")
    stage(newer)
    assert newer.reused == ["probe-shape-random"]
