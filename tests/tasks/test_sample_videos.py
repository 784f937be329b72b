"""Sample videos are real, decodable files whose motion matches their labels."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from flows.cli import main
from tasks import sample_videos as sv


def _probe(path: str) -> dict:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-print_format", "json", "-show_streams", "-show_format", path],
        capture_output=True,
        check=True,
    )
    return json.loads(out.stdout)


def test_specs_are_balanced_and_deterministic() -> None:
    specs = sv.make_specs(8, seed=3)
    assert specs == sv.make_specs(8, seed=3)
    assert [s.direction for s in specs].count("left") == 2
    assert {s.suffix for s in specs} == {".mp4", ".webm", ".mkv"}


@pytest.mark.parametrize("direction", sv.DIRECTIONS)
def test_rendered_shape_moves_in_labelled_direction(direction: str) -> None:
    spec = sv.VideoSpec("x.mp4", direction, "square", "red", ".mp4", 10, 160, 120, 0.5, seed=1)
    frames = sv.render_frames(spec)
    assert frames.shape == (5, 120, 160, 3) and frames.dtype == np.uint8

    def centre(frame: np.ndarray) -> np.ndarray:
        # Circular mean: the shape wraps around the borders.
        ys, xs = np.nonzero(np.all(frame == sv.COLOURS["red"], axis=-1))
        angles = [2 * np.pi * xs / 160, 2 * np.pi * ys / 120]
        return np.array([np.angle(np.exp(1j * a).mean()) for a in angles])

    delta = centre(frames[1]) - centre(frames[0])
    step = np.angle(np.exp(1j * delta)) * np.array([160, 120]) / (2 * np.pi)
    expected = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}[direction]
    assert np.sign(np.round(step)).tolist() == list(expected)


def test_cli_writes_decodable_videos_and_labels(tmp_path: Path) -> None:
    out = tmp_path / "videos"
    code = main(
        ["sample-videos", "--output", str(out), "--count", "3", "--seconds", "1", "--with-defects"]
    )
    assert code == 0
    labels = pq.read_table(out / sv.LABELS_FILE).to_pylist()
    assert [row["video"] for row in labels] == [
        f"sample_{i:04d}{s}" for i, s in enumerate([".mp4", ".webm", ".mkv"])
    ]
    codecs = {}
    for row in labels:
        info = _probe(row["source"])
        video = next(s for s in info["streams"] if s["codec_type"] == "video")
        assert (int(video["width"]), int(video["height"])) == (row["width"], row["height"])
        assert abs(float(info["format"]["duration"]) - 1.0) < 0.2
        codecs[row["video"][-4:]] = video["codec_name"]
    assert codecs == {".mp4": "h264", "webm": "vp9", ".mkv": "h264"}
    assert (out / "defect_empty.mp4").stat().st_size == 0
    assert len(list(out.glob("defect_*"))) == 4


@pytest.mark.s3
def test_writes_to_s3(s3_bucket: str) -> None:
    from tasks import storage

    paths = sv.write_sample_videos(f"{s3_bucket}/samples", count=1, seconds=0.5)
    assert paths == [f"{s3_bucket}/samples/sample_0000.mp4"]
    fs, root = storage.filesystem(f"{s3_bucket}/samples")
    assert sorted(p.rsplit("/", 1)[-1] for p in fs.ls(root)) == [
        "labels.parquet",
        "qa.parquet",
        "sample_0000.mp4",
    ]
