"""The Ray Data pipeline end to end on good and bad files, and the driver's commit tracker."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from tasks.curation.config import CurationConfig
from tasks.curation.dataset import assemble_dataset
from tasks.curation.pipeline import (
    MAX_SOURCES_PER_TASK,
    CommitTracker,
    SourceStage,
    plan_curation,
    run_pending,
    task_sizes,
)
from tasks.curation.sources import SourceItem

EXPECTED_REJECTIONS = {
    "empty.mp4": "probe",
    "notes.mp4": "probe",
    "truncated.mp4": "probe",
    "audio_only.mp4": "probe",
    "picture.mkv": "filter",
    "too_short.mp4": "filter",
    "cut_midway.mp4": "decode",
    "black.mp4": "quality",
    "bars.mkv": "quality",
    "missing.mp4": "input",
}


@pytest.mark.ray
def test_pipeline_curates_good_and_rejects_bad(
    ray_cluster: None, small_config: CurationConfig, videos: dict[str, Path], tmp_path: Path
) -> None:
    root = videos["moving_mp4"].parent.parent
    inputs = [
        str(root / "good"),
        str(root / "bad"),
        str(root / "quality"),
        str(root / "missing.mp4"),
    ]
    plan = plan_curation(inputs, str(tmp_path), small_config)
    seen: list[int] = []
    results = run_pending(plan, lambda result, done, total: seen.append(done))
    assert seen == list(range(1, len(plan.sources) + 1))
    manifest = assemble_dataset(plan.output, small_config, plan.sources, plan.missing, results)

    rejected = {
        Path(row["source"]).name: row
        for row in pq.read_table(tmp_path / "rejected.parquet").to_pylist()
    }
    assert {name: row["stage"] for name, row in rejected.items()} == EXPECTED_REJECTIONS
    assert "blank" in rejected["black.mp4"]["reason"] and "frozen" in rejected["bars.mkv"]["reason"]
    assert all(row["reason"] for row in rejected.values())
    counts = manifest["counts"]
    assert counts["num_clips"] == 3 + 3  # two 3 s videos, one clip per second
    assert counts["num_sources"] == len(EXPECTED_REJECTIONS) + 2
    table = pq.read_table(tmp_path / manifest["shards"][0]["path"])
    clip = np.frombuffer(table["frames"][0].as_py(), np.uint8).reshape(table["shape"][0].as_py())
    assert clip.shape == (4, 32, 32, 3)

    again = plan_curation(inputs, str(tmp_path), small_config)
    assert again.pending == []  # everything committed: a rerun does no work
    assert (
        assemble_dataset(
            again.output, small_config, again.sources, again.missing, run_pending(again)
        )
        == manifest
    )


def test_tracker_commits_only_complete_sources(tmp_path: Path) -> None:
    config = CurationConfig()
    items = [SourceItem("/v/a.mp4", 1, "1-a"), SourceItem("/v/b.mp4", 1, "1-b")]
    plan = plan_curation([], str(tmp_path), config)
    plan = type(plan)(plan.output, config, items, [], {})
    key_a, key_b = (plan.key(item) for item in items)
    tracker = CommitTracker(plan)

    def rows(
        key: str, ids: list[str], end: int | None, part: str = "p", drop: str = ""
    ) -> dict[str, np.ndarray]:
        count = len(ids) + (end is not None)
        return {
            "key": np.array([key] * count),
            "is_end": np.array([False] * len(ids) + [True] * (end is not None)),
            "clip_id": np.array([*ids, ""][:count]),
            "part": np.array([part] * count),
            "drop_reason": np.array([drop] * count),
            "num_clips": np.array(
                [-1] * len(ids) + ([end] if end is not None else []), dtype=np.int32
            ),
            "error_stage": np.array([""] * count),
            "error_reason": np.array([""] * count),
            "note": np.array([""] * count),
        }

    tracker.observe(rows(key_a, [], 2))  # the end row can arrive before the clips
    tracker.observe(rows(key_b, ["b1"], None, drop="frozen"))
    assert tracker.results == {}
    tracker.observe(rows(key_a, ["a1", "a1"], None))  # a retried batch repeats a clip
    assert tracker.results == {}
    tracker.observe(rows(key_a, ["a2"], None, part="q"))
    assert tracker.results[key_a].clip_ids == ("a1", "a2") and tracker.results[key_a].parts == (
        "p",
        "q",
    )
    tracker.observe(rows(key_b, [], 1))
    assert (
        tracker.results[key_b].error_stage == "quality"
        and "1 frozen" in tracker.results[key_b].error_reason
    )
    assert tracker.unfinished() == []
    assert len(list((tmp_path / "_staging" / "done").iterdir())) == 2


@pytest.mark.parametrize(("sources", "workers"), [(24, 2), (8, 1), (7, 2), (1, 4), (5000, 8)])
def test_task_sizes_shrink_to_single_sources(sources: int, workers: int) -> None:
    sizes = task_sizes(sources, workers)
    assert sum(sizes) == sources and sizes == sorted(sizes, reverse=True)
    assert sizes[-1] == 1 and max(sizes) <= MAX_SOURCES_PER_TASK
    assert len(sizes) < sources or sources < 2 * workers + 2  # fewer task boundaries than sources
    assert task_sizes(24, 2) == [6, 5, 4, 3, 2, 1, 1, 1, 1]


def test_source_stage_hands_on_one_metadata_batch_per_source(
    small_config: CurationConfig, videos: dict[str, Path], tmp_path: Path
) -> None:
    paths = [videos["moving_mp4"], videos["empty"]]
    batch = {
        "source": np.array([str(p) for p in paths]),
        "key": np.array(["a", "b"]),
        "size": np.array([p.stat().st_size for p in paths]),
    }
    outputs = list(SourceStage(small_config.replace(clips_per_batch=2), str(tmp_path))(batch))
    assert [out["key"].tolist() for out in outputs] == [["a"] * 4, ["b"]]
    assert [out["is_end"].tolist()[-1] for out in outputs] == [True, True]
    assert "frames" not in outputs[0] and outputs[0]["part"][:3].tolist().count("") == 0


def _curated_rows(
    inputs: Path, output: Path, config: CurationConfig
) -> list[tuple[str, float, str]]:
    plan = plan_curation([str(inputs)], str(output), config)
    manifest = assemble_dataset(plan.output, config, plan.sources, plan.missing,
                                run_pending(plan))  # fmt: skip
    rows = []
    for shard in manifest["shards"]:
        table = pq.read_table(output / shard["path"], columns=["source", "start_s", "frames"])
        for row in table.to_pylist():
            name = str(Path(row["source"]).relative_to(inputs))
            rows.append((name, row["start_s"], hashlib.sha256(row["frames"]).hexdigest()))
    return rows


@pytest.mark.ray
def test_the_clip_order_is_the_same_wherever_the_videos_lie(
    ray_cluster: None, small_config: CurationConfig, videos: dict[str, Path], tmp_path: Path
) -> None:
    """The same videos in two folders: the same clips in the same order (training follows it)."""
    picked = ("moving_mp4", "moving_webm", "faststart")
    trees = (tmp_path / "first" / "videos", tmp_path / "second" / "nested" / "elsewhere")
    for tree in trees:
        for key in picked:
            (tree / "sub").mkdir(parents=True, exist_ok=True)
            target = tree / ("sub" if key == "moving_webm" else ".") / videos[key].name
            shutil.copyfile(videos[key], target)
    first = _curated_rows(trees[0], tmp_path / "out1", small_config)
    second = _curated_rows(trees[1], tmp_path / "out2", small_config)
    assert len(first) == 3 + 3 + 4 and first == second
    assert [name for name, _, _ in first] != sorted(name for name, _, _ in first)  # a mix
