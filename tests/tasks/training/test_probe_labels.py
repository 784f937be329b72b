"""Labels tables for probing: integer class columns, text class columns, and bad tables."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tasks.training.probe import class_names, read_labels, split_sources


def _table(tmp_path: Path, **columns: list) -> str:
    path = tmp_path / "labels.parquet"
    pq.write_table(pa.table({"source": ["a.mp4", "b.mp4", "c.mp4", "d.mp4"], **columns}), path)
    return str(path)


def test_integer_columns_are_class_indices(tmp_path: Path) -> None:
    uri = _table(tmp_path, label=[3, 0, 1, 3])
    assert read_labels(uri, "label") == {"a.mp4": 3, "b.mp4": 0, "c.mp4": 1, "d.mp4": 3}
    assert class_names(uri, "label") is None


def test_text_columns_map_to_sorted_class_names(tmp_path: Path) -> None:
    uri = _table(tmp_path, shape=["square", "disc", "triangle", "disc"])
    assert class_names(uri, "shape") == ["disc", "square", "triangle"]
    labels = read_labels(uri, "shape")
    assert labels == {"a.mp4": 1, "b.mp4": 0, "c.mp4": 2, "d.mp4": 0}
    # the held-out split is stratified per class: both discs cannot land on one side only
    heldout = split_sources(labels, 0.5, seed=0)
    assert len(heldout & {"b.mp4", "d.mp4"}) == 1


def test_the_split_is_the_same_wherever_the_videos_lie() -> None:
    """Sources are hashed by their name in the folder they share, not by the full URI."""
    from tasks.vqa.qa import heldout_sources

    names = [f"clip_{i:03d}.mp4" for i in range(40)]
    for folders in (("/tmp/demo12/videos", "s3://bucket/runs/7/videos"), ("/a", "/b/c/d")):
        labels = [{f"{folder}/{name}": i % 3 for i, name in enumerate(names)} for folder in folders]
        probe = [{s.rsplit("/", 1)[1] for s in split_sources(lab, 0.25, 0)} for lab in labels]
        qa = [{s.rsplit("/", 1)[1] for s in heldout_sources(list(lab), 0.25, 0)} for lab in labels]
        assert probe[0] == probe[1] and qa[0] == qa[1] and len(qa[0]) == 10


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ([0, None, 1, 2], "empty for 1 row"),
        ([0, -1, 1, 2], "negative"),
        ([0.5, 1.0, 1.0, 2.0], "class indices or class names"),
    ],
)
def test_bad_label_columns_say_what_is_wrong(tmp_path: Path, values: list, message: str) -> None:
    uri = _table(tmp_path, label=values)
    with pytest.raises(ValueError, match=message):
        read_labels(uri, "label")


def test_missing_column_and_missing_table(tmp_path: Path) -> None:
    uri = _table(tmp_path, label=[0, 1, 0, 1])
    with pytest.raises(ValueError, match="lacks column"):
        read_labels(uri, "shape")
    with pytest.raises(FileNotFoundError, match="labels table not found"):
        read_labels(str(tmp_path / "nope.parquet"), "label")
