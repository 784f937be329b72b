"""Part writer, per-source commits and deterministic shard assembly (no Ray)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from tasks import storage
from tasks.curation.config import CurationConfig
from tasks.curation.dataset import SourceResult, assemble_dataset, commit_source, load_committed
from tasks.curation.decode import clip_id
from tasks.curation.sources import MissingInput, SourceItem
from tasks.curation.writer import PartWriterStage, frames_array, read_part

CONFIG = CurationConfig(fps=4, frames=2, size=16, rows_per_shard=2)


def _batch(source: str, key: str, count: int, drop: tuple[str, ...]) -> dict[str, np.ndarray]:
    """`count` clip rows of `source` then its end row, with `drop` as the clips' drop reasons."""
    starts = np.arange(count, dtype=np.float64) / 2
    frames = np.stack([np.full(CONFIG.clip_shape, i, dtype=np.uint8) for i in range(count + 1)])
    return {
        "source": np.array([source] * (count + 1)),
        "key": np.array([key] * (count + 1)),
        "is_end": np.array([False] * count + [True]),
        "clip_index": np.arange(count + 1, dtype=np.int32),
        "clip_id": np.array([clip_id(source, s, s + 0.5) for s in starts] + [""]),
        "start_s": np.append(starts, 0.0),
        "end_s": np.append(starts + 0.5, 0.0),
        "frames": frames,
        "num_clips": np.array([-1] * count + [count], dtype=np.int32),
        "error_stage": np.array([""] * (count + 1)),
        "error_reason": np.array([""] * (count + 1)),
        "note": np.array([""] * (count + 1)),
        "motion_score": np.ones(count + 1, dtype=np.float32),
        "mean_intensity": np.zeros(count + 1, dtype=np.float32),
        "std_intensity": np.zeros(count + 1, dtype=np.float32),
        "drop_reason": np.array([*drop, ""]),
    }


def test_frames_array_roundtrip() -> None:
    clips = np.arange(2 * 4, dtype=np.uint8).reshape(2, 2, 2, 1, 1)  # (N, T, H, W, C)
    array = frames_array(clips)
    assert [np.frombuffer(v, np.uint8).tolist() for v in array.to_pylist()] == [
        [0, 1, 2, 3],
        [4, 5, 6, 7],
    ]


def test_writer_keeps_only_good_clips(tmp_path: Path) -> None:
    out = PartWriterStage(CONFIG, str(tmp_path))(_batch("/v/a.mp4", "ka", 3, ("", "frozen", "")))
    assert "frames" not in out
    assert out["part"][1] == "" and out["part"][3] == ""  # dropped clip, end row
    table = read_part(str(tmp_path / str(out["part"][0])))
    assert table.num_rows == 2 and table["clip_index"].to_pylist() == [0, 2]
    clip = np.frombuffer(table["frames"][1].as_py(), np.uint8).reshape(table["shape"][1].as_py())
    assert clip.shape == CONFIG.clip_shape and int(clip[0, 0, 0, 0]) == 2


def _results(tmp_path: Path) -> tuple[list[SourceItem], dict[str, SourceResult]]:
    sources = [SourceItem(f"/v/{name}.mp4", 10, f"10-{name}") for name in ("a", "b", "c")]
    results = {}
    for item, count in zip(sources, (3, 2, 0), strict=True):
        key = item.key(CONFIG.fingerprint())
        if not count:
            results[key] = SourceResult(
                item.source, key, item.fingerprint, error_stage="probe", error_reason="bad"
            )
            continue
        out = PartWriterStage(CONFIG, str(tmp_path))(_batch(item.source, key, count, ("",) * count))
        ids = tuple(sorted(str(x) for x in out["clip_id"][:count]))
        results[key] = SourceResult(item.source, key, item.fingerprint, (str(out["part"][0]),), ids)
    return sources, results


def test_commit_and_assembly_are_deterministic(tmp_path: Path) -> None:
    sources, results = _results(tmp_path)
    for result in results.values():
        commit_source(str(tmp_path), result)
    assert load_committed(str(tmp_path)) == results
    (tmp_path / "shards").mkdir()
    (tmp_path / "shards" / "shard-00099.parquet").write_bytes(b"stale")
    missing = [MissingInput("/v/gone.mp4", "no such file or folder")]
    manifest = assemble_dataset(str(tmp_path), CONFIG, sources, missing, results)
    assert manifest["counts"]["num_clips"] == 5 and manifest["counts"]["num_rejected"] == 2
    assert [shard["rows"] for shard in manifest["shards"]] == [2, 2, 1]
    folder = tmp_path / "shards" / manifest["version"]  # the stale flat shard is gone
    assert [p.name for p in (tmp_path / "shards").iterdir()] == [manifest["version"]]
    assert sorted(p.name for p in folder.iterdir()) == [f"shard-0000{i}.parquet" for i in range(3)]
    rows = [r for s in manifest["shards"] for r in pq.read_table(tmp_path / s["path"]).to_pylist()]
    assert len({row["clip_id"] for row in rows}) == 5
    names = storage.relative_names(row["source"] for row in rows)
    mix = [  # the documented order (docs/data-contracts.md): independent of the sources' folder
        hashlib.sha256(
            f"{names[r['source']]}#{r['start_s']:.6f}-{r['end_s']:.6f}".encode()
        ).digest()
        for r in rows
    ]
    assert mix == sorted(mix) and set(names.values()) <= {"a.mp4", "b.mp4"}
    first = manifest["shards"][0]
    assert hashlib.sha256((tmp_path / first["path"]).read_bytes()).hexdigest() == first["sha256"]
    rejected = pq.read_table(tmp_path / "rejected.parquet").to_pylist()
    assert rejected == [
        {"source": "/v/c.mp4", "stage": "probe", "reason": "bad"},
        {"source": "/v/gone.mp4", "stage": "input", "reason": "no such file or folder"},
    ]
    again = assemble_dataset(str(tmp_path), CONFIG, sources, missing, results)
    assert again == manifest == json.loads((tmp_path / "manifest.json").read_text())
    changed = assemble_dataset(str(tmp_path), CONFIG, sources, [], results)
    assert changed["version"] != manifest["version"]  # the inputs changed
