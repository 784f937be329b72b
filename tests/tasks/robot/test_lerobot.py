"""LeRobot v3.0 layout: what the writer puts on disk, what the reader accepts and refuses, S3."""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tasks.robot.collect import CollectConfig, CollectSummary, collect
from tasks.robot.layout import ChunkLimits, DatasetSpec
from tasks.robot.lerobot import LeRobotFormatError, LeRobotReader, LeRobotWriter
from tasks.robot.video import EncoderSettings, VideoEncoder

VIDEO = "observation.images.top"


def test_info_json_follows_v3(point_reach_dataset: CollectSummary) -> None:
    info = json.loads(Path(point_reach_dataset.output, "meta", "info.json").read_text())
    assert info["codebase_version"] == "v3.0"
    assert (info["fps"], info["total_episodes"], info["total_frames"]) == (10, 3, 60)
    assert info["data_path"] == "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
    assert info["video_path"].startswith("videos/{video_key}/chunk-")
    features = info["features"]
    assert features[VIDEO]["dtype"] == "video"
    assert features[VIDEO]["shape"] == [64, 64, 3]
    assert features[VIDEO]["info"]["video.codec"] == "h264"
    assert features["observation.state"] == {"dtype": "float32", "shape": [2], "names": None}
    assert features["action"]["shape"] == [2]
    for name in ("timestamp", "frame_index", "episode_index", "index", "task_index"):
        assert name in features


def test_episodes_tasks_stats_and_data_rows(point_reach_dataset: CollectSummary) -> None:
    root = Path(point_reach_dataset.output)
    episodes = pq.read_table(root / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    assert [e["length"] for e in episodes] == [20, 20, 20]
    assert [e["dataset_from_index"] for e in episodes] == [0, 20, 40]
    # Episodes follow each other in the one video file: each starts where the last ended.
    starts = [e[f"videos/{VIDEO}/from_timestamp"] for e in episodes]
    ends = [e[f"videos/{VIDEO}/to_timestamp"] for e in episodes]
    assert starts == [0.0, 2.0, 4.0] and ends == [2.0, 4.0, 6.0]
    assert len(episodes[0][f"stats/{VIDEO}/mean"]) == 3
    tasks = pd.read_parquet(root / "meta/tasks.parquet")
    assert tasks.index.name == "task" and tasks["task_index"].tolist() == [0]
    stats = json.loads((root / "meta/stats.json").read_text())
    assert np.array(stats[VIDEO]["mean"]).shape == (3, 1, 1)
    assert stats["observation.state"]["count"] == [60]
    assert 0.0 < stats[VIDEO]["max"][0][0][0] <= 1.0
    _check_quantiles(stats, episodes, root)
    rows = pq.read_table(root / "data/chunk-000/file-000.parquet")
    assert rows.column("index").to_pylist() == list(range(60))
    assert rows.schema.field("observation.state").type == pa.list_(pa.float32(), 2)


def _check_quantiles(stats: dict, episodes: list[dict], root: Path) -> None:
    """q01..q99 as LeRobot writes them: exact per episode, count-weighted across episodes."""
    names = ("q01", "q10", "q50", "q90", "q99")
    assert np.array(stats[VIDEO]["q50"]).shape == (3, 1, 1)
    rows = pq.read_table(root / "data/chunk-000/file-000.parquet")
    states = np.asarray(rows.column("observation.state").to_pylist())  # (60, 2)
    first = states[:20]
    np.testing.assert_allclose(
        np.array([episodes[0][f"stats/observation.state/{name}"] for name in names]),
        np.quantile(first, [0.01, 0.1, 0.5, 0.9, 0.99], axis=0),
        rtol=1e-6,
    )
    per_episode = np.stack([np.quantile(states[i : i + 20], 0.5, axis=0) for i in (0, 20, 40)])
    np.testing.assert_allclose(stats["observation.state"]["q50"], per_episode.mean(axis=0))
    for low, high in itertools.pairwise(names):
        assert np.all(np.array(stats["action"][low]) <= np.array(stats["action"][high]))


def test_rollover_into_many_files_and_chunks(tmp_path: Path) -> None:
    limits = ChunkLimits(chunks_size=2, data_files_size_in_mb=0, video_files_size_in_mb=0)
    split_root = tmp_path / "split"
    config = CollectConfig(
        "vjepa/PointReach-v0", 3, str(split_root), steps_per_episode=5, seed=1, limits=limits
    )
    collect(config)
    assert (split_root / "data/chunk-001/file-000.parquet").exists()
    assert (split_root / f"videos/{VIDEO}/chunk-000/file-001.mp4").exists()
    assert (split_root / f"videos/{VIDEO}/chunk-001/file-000.mp4").exists()
    reader = LeRobotReader(str(split_root))
    config = CollectConfig(
        "vjepa/PointReach-v0", 3, str(tmp_path / "one"), steps_per_episode=5, seed=1
    )
    packed = LeRobotReader(collect(config).output)
    for index in range(3):
        split, joined = reader.read_episode(index), packed.read_episode(index)
        np.testing.assert_array_equal(split.states, joined.states)
        assert np.abs(split.frames.astype(int) - joined.frames.astype(int)).mean() < 4.0


def _foreign_dataset(root: Path) -> np.ndarray:
    """A dataset laid out by hand as LeRobot writes it: other keys, list columns, AV1, 20 fps."""
    key, fps, length = "observation.images.cam_high", 20, 12
    frames = np.zeros((2 * length, 80, 64, 3), dtype=np.uint8)  # (N, H, W, 3)
    for index in range(len(frames)):
        frames[index, :, : index + 1] = 200  # a bar whose width counts the frame
    video = root / f"videos/{key}/chunk-000/file-000.mp4"
    video.parent.mkdir(parents=True)
    av1 = EncoderSettings(codec="libsvtav1", crf=30, gop=2, preset="10")  # LeRobot's default codec
    with VideoEncoder(str(video), 64, 80, fps, av1) as encoder:
        encoder.write(frames)
    states = np.arange(2 * length * 3, dtype=np.float32).reshape(-1, 3)  # (N, 3)
    data = {
        "observation.state": pa.array(states.tolist(), pa.list_(pa.float32())),
        "action": pa.array(states[:, :1].tolist(), pa.list_(pa.float32())),
        "timestamp": pa.array(np.tile(np.arange(length) / fps, 2).astype(np.float32)),
        "frame_index": pa.array(np.tile(np.arange(length), 2)),
        "episode_index": pa.array(np.repeat([0, 1], length)),
    }
    (root / "data/chunk-000").mkdir(parents=True)
    pq.write_table(pa.table(data), root / "data/chunk-000/file-000.parquet")
    episodes = {
        "episode_index": [0, 1],
        "length": [length, length],
        "data/chunk_index": [0, 0],
        "data/file_index": [0, 0],
        f"videos/{key}/chunk_index": [0, 0],
        f"videos/{key}/file_index": [0, 0],
        f"videos/{key}/from_timestamp": [0.0, length / fps],
    }
    (root / "meta/episodes/chunk-000").mkdir(parents=True)
    pq.write_table(pa.table(episodes), root / "meta/episodes/chunk-000/file-000.parquet")
    features = {
        key: {"dtype": "video", "shape": [80, 64, 3]},
        "observation.state": {"dtype": "float32", "shape": [3]},
        "action": {"dtype": "float32", "shape": [1]},
    }
    info = {
        "codebase_version": "v3.0",
        "fps": fps,
        "features": features,
        "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
        "video_path": "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4",
    }
    (root / "meta/info.json").write_text(json.dumps(info))
    return states


def test_reads_a_foreign_v3_dataset(tmp_path: Path) -> None:
    states = _foreign_dataset(tmp_path)
    reader = LeRobotReader(str(tmp_path))
    assert reader.video_key == "observation.images.cam_high" and reader.fps == 20
    second = reader.read_episode(1)
    np.testing.assert_array_equal(second.states, states[12:])
    assert second.frames.shape == (12, 80, 64, 3) and second.actions.shape == (12, 1)
    widths = (second.frames[:, 40, :, 0] > 100).sum(axis=1)  # bar width = global frame + 1
    np.testing.assert_array_equal(widths, np.arange(13, 25))
    assert reader.read_episode(0, size=(16, 16)).frames.shape == (12, 16, 16, 3)


def _edit_info(root: Path, **changes: object) -> None:
    info = json.loads((root / "meta/info.json").read_text())
    info.update(changes)
    (root / "meta/info.json").write_text(json.dumps(info))


def test_reader_errors_name_the_file_and_the_fix(
    point_reach_dataset: CollectSummary, tmp_path: Path
) -> None:
    with pytest.raises(LeRobotFormatError, match=r"meta/info.json not found.*vjepa collect"):
        LeRobotReader(str(tmp_path))
    copy = tmp_path / "copy"
    shutil.copytree(point_reach_dataset.output, copy)
    with pytest.raises(
        LeRobotFormatError, match=r"no state feature 'obs.state'.*'action'.*--state-key"
    ):
        LeRobotReader(str(copy), state_key="obs.state")
    with pytest.raises(
        LeRobotFormatError,
        match=r"no video feature 'cam'.*all features: .*'observation.state'.*camera",
    ):
        LeRobotReader(str(copy), video_key="cam")
    _edit_info(copy, codebase_version="v2.1")
    with pytest.raises(LeRobotFormatError, match=r"v2.1.*convert_dataset_v21_to_v30"):
        LeRobotReader(str(copy))


def test_video_shorter_than_data_is_reported(
    point_reach_dataset: CollectSummary, tmp_path: Path
) -> None:
    copy = tmp_path / "short"
    shutil.copytree(point_reach_dataset.output, copy)
    video = copy / f"videos/{VIDEO}/chunk-000/file-000.mp4"
    with VideoEncoder(str(video), 64, 64, 10, EncoderSettings()) as encoder:
        encoder.write(np.zeros((50, 64, 64, 3), dtype=np.uint8))  # 50 of 60 frames
    reader = LeRobotReader(str(copy))
    assert reader.read_episode(1).frames.shape[0] == 20
    with pytest.raises(LeRobotFormatError, match=r"file-000.mp4: episode 2 .*shorter than"):
        reader.read_episode(2)


def test_writer_refuses_mismatched_episodes(tmp_path: Path) -> None:
    spec = DatasetSpec(fps=10, state_dim=2, action_dim=2, height=32, width=32)
    writer = LeRobotWriter(str(tmp_path / "w"), spec)
    frames = np.zeros((4, 32, 32, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="states"):
        writer.add_episode(frames, np.zeros((4, 3)), np.zeros((4, 2)), "t")
    with pytest.raises(ValueError, match="frames"):
        writer.add_episode(frames[:, :16], np.zeros((4, 2)), np.zeros((4, 2)), "t")
    writer.abort()


@pytest.mark.s3
def test_s3_round_trip(s3_bucket: str, point_reach_dataset: CollectSummary) -> None:
    uri = f"{s3_bucket}/robot/point_reach"
    config = CollectConfig("vjepa/PointReach-v0", 3, uri, steps_per_episode=20, seed=7)
    summary = collect(config)
    assert summary.frames == 60
    remote, local = LeRobotReader(uri), LeRobotReader(point_reach_dataset.output)
    assert remote.info["total_frames"] == 60
    for index in (0, 2):
        got, want = remote.read_episode(index), local.read_episode(index)
        np.testing.assert_array_equal(got.states, want.states)
        np.testing.assert_array_equal(got.actions, want.actions)
        np.testing.assert_array_equal(got.frames, want.frames)  # same encoder, same bytes
