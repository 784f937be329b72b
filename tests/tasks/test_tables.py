"""Side tables: parquet, CSV and JSON lines read alike; sources matched by full URI or file name."""

from __future__ import annotations

import json
from pathlib import Path

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tasks.tables import SourceMatcher, read_table
from tasks.training.probe import AttachLabels, read_labels

ROWS = [{"source": "/data/a.mp4", "label": "disc"}, {"source": "b clip.mp4", "label": "square"}]


def _write(path: Path, kind: str) -> str:
    if kind == "parquet":
        pq.write_table(pa.Table.from_pylist(ROWS), path)
    elif kind == "csv":
        lines = ["source,label", *(f"{row['source']},{row['label']}" for row in ROWS)]
        path.write_text("\n".join(lines) + "\n")
    else:
        path.write_text("".join(json.dumps(row) + "\n" for row in ROWS))
    return str(path)


@pytest.mark.parametrize(
    ("kind", "name"),
    [("parquet", "t.parquet"), ("csv", "t.csv"), ("jsonl", "t.jsonl"), ("jsonl", "t.json")],
)
def test_every_format_reads_the_same_rows(tmp_path: Path, kind: str, name: str) -> None:
    table = read_table(_write(tmp_path / name, kind), columns=("source", "label"))
    assert table.to_pylist() == ROWS


def test_format_sniffed_without_extension(tmp_path: Path) -> None:
    for kind in ("parquet", "jsonl", "csv"):
        uri = _write(tmp_path / f"labels-{kind}", kind)
        assert read_table(uri).column("source").to_pylist() == [r["source"] for r in ROWS]


def test_missing_column_and_file_are_clear_errors(tmp_path: Path) -> None:
    uri = _write(tmp_path / "t.csv", "csv")
    with pytest.raises(ValueError, match="lacks column"):
        read_table(uri, columns=("source", "answer"))
    with pytest.raises(FileNotFoundError, match="table not found"):
        read_table(str(tmp_path / "nope.csv"))


def test_table_on_s3(s3_bucket: str, tmp_path: Path) -> None:
    local = _write(tmp_path / "t.jsonl", "jsonl")
    fsspec.filesystem("s3").put(local, f"{s3_bucket}/meta/t.jsonl")
    assert read_table(f"{s3_bucket}/meta/t.jsonl").num_rows == 2


def test_matcher_full_uri_wins_then_file_name() -> None:
    matcher = SourceMatcher(["/data/a.mp4", "a.mp4", "b clip.mp4"])
    assert matcher.match("/data/a.mp4") == "/data/a.mp4"
    assert matcher.match("file:///data/a.mp4") == "/data/a.mp4"
    assert matcher.match("/elsewhere/a.mp4") == "a.mp4"
    assert matcher.match("s3://bucket/raw/b%20clip.mp4") == "b clip.mp4"
    assert matcher.match("s3://bucket/raw/c.mp4") is None


def test_probe_labels_from_csv_match_by_file_name(tmp_path: Path) -> None:
    labels = read_labels(_write(tmp_path / "labels.csv", "csv"), "label")
    assert labels == {"/data/a.mp4": 0, "b clip.mp4": 1}
    batch = {"source": pa.array(["/data/a.mp4", "s3://x/b clip.mp4", "/o/c.mp4"]).to_numpy(False)}
    out = AttachLabels(labels, set(labels))(batch)
    assert list(out["source"]) == ["/data/a.mp4", "s3://x/b clip.mp4"]
    assert list(out["label"]) == [0, 1]
