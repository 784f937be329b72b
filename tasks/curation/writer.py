"""Writer stage and the shard schema: clip rows become Arrow IPC *parts* in the staging area.

The stage writes the kept clips of each source in a batch to
`OUTPUT/_staging/parts/<source key>/<first clip id>.arrow` (deterministic
names, so a retried batch overwrites rather than duplicates) and returns small
metadata rows without frames; the driver turns those into per-source commits.
The final shards (see `tasks.curation.dataset`) use the same schema as parts.

Clip layout: `frames` is `large_binary` holding the uint8 clip in C order with
shape `(T, H, W, C)` (RGB), recorded per row in `shape`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tasks import storage
from tasks.curation.config import CurationConfig

STAGING_DIR = "_staging"
# Parts are scratch space read back once by the assembly: uncompressed Arrow IPC costs
# the decode workers no CPU and is memory-mapped (zero-copy) when the assembly reads it.
PART_SUFFIX = ".arrow"
SHARD_SCHEMA = pa.schema(
    [
        ("clip_id", pa.string()),
        ("source", pa.string()),
        ("clip_index", pa.int32()),
        ("start_s", pa.float64()),
        ("end_s", pa.float64()),
        ("fps", pa.float64()),
        ("shape", pa.list_(pa.int32(), 4)),
        ("frames", pa.large_binary()),
        ("motion_score", pa.float32()),
        ("mean_intensity", pa.float32()),
        ("std_intensity", pa.float32()),
    ]
)
META_COLUMNS = (
    "source",
    "key",
    "is_end",
    "clip_id",
    "drop_reason",
    "num_clips",
    "error_stage",
    "error_reason",
    "note",
)


def frames_array(frames: np.ndarray) -> pa.LargeBinaryArray:
    """uint8 clips `(N, T, H, W, C)` as one binary value per clip, without copying the pixels."""
    frames = np.ascontiguousarray(frames)
    count = len(frames)
    clip_bytes = frames[0].nbytes if count else 0
    offsets = np.arange(count + 1, dtype=np.int64) * clip_bytes  # (N + 1,)
    buffers = [None, pa.py_buffer(offsets), pa.py_buffer(frames.reshape(-1))]
    return pa.LargeBinaryArray.from_buffers(pa.large_binary(), count, buffers)


def clip_table(batch: dict[str, np.ndarray], rows: np.ndarray, config: CurationConfig) -> pa.Table:
    """The shard-schema table of `batch` restricted to the row indices `rows`."""
    take = slice(None) if len(rows) == len(batch["clip_id"]) else rows
    count = len(rows)
    columns = {
        "clip_id": pa.array(batch["clip_id"][take].astype(str)),
        "source": pa.array(batch["source"][take].astype(str)),
        "clip_index": pa.array(batch["clip_index"][take], pa.int32()),
        "start_s": pa.array(batch["start_s"][take], pa.float64()),
        "end_s": pa.array(batch["end_s"][take], pa.float64()),
        "fps": pa.array(np.full(count, config.fps), pa.float64()),
        "shape": pa.array([list(config.clip_shape)] * count, pa.list_(pa.int32(), 4)),
        "frames": frames_array(batch["frames"][take]),
        "motion_score": pa.array(batch["motion_score"][take], pa.float32()),
        "mean_intensity": pa.array(batch["mean_intensity"][take], pa.float32()),
        "std_intensity": pa.array(batch["std_intensity"][take], pa.float32()),
    }
    return pa.table(columns, schema=SHARD_SCHEMA)


def write_parquet(table: pa.Table, sink: Any, compression: str) -> None:
    """Parquet with small row groups (readers stream); no dictionary or min/max stats for the
    multi-megabyte `frames` values, where they only cost CPU."""
    small = [name for name in table.column_names if name != "frames"]
    pq.write_table(
        table,
        sink,
        compression=compression,
        row_group_size=16,
        use_dictionary=small,
        write_statistics=small,
    )


def put_bytes(uri: str, data: bytes | pa.Buffer, durable: bool = False) -> None:
    """Write `data` at `uri` atomically: temp file + rename locally, one PUT on S3 (an object
    appears whole or not at all), so a killed writer never leaves a torn file behind.

    `durable` also fsyncs locally (commit markers): a marker must never survive a
    crash that its parts did not."""
    storage.write_atomic(uri, data, durable)


def write_part(table: pa.Table, uri: str) -> None:
    """Write `table` as an uncompressed Arrow IPC file to a local path or `s3://` URI, atomically
    (a part is whole or absent: a retried or concurrent writer never reads a torn one)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    put_bytes(uri, sink.getvalue())


def read_part(uri: str) -> pa.Table:
    """A part written by `write_part`: memory-mapped when local, one read when remote."""
    if not storage.is_remote(uri):
        return pa.ipc.open_file(pa.memory_map(uri)).read_all()
    fs, path = storage.filesystem(uri)
    return pa.ipc.open_file(pa.py_buffer(fs.cat_file(path))).read_all()


class PartWriterStage:
    """Writes kept clips as parts; returns one metadata row per input row (no frames)."""

    def __init__(self, config: CurationConfig, output: str) -> None:
        self.config = config
        self.output = output

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        keep = ~batch["is_end"] & (batch["drop_reason"] == "")
        parts = np.full(len(keep), "", dtype=object)
        for key in np.unique(batch["key"][keep]):
            rows = np.flatnonzero(keep & (batch["key"] == key))
            name = f"{batch['clip_id'][rows[0]]}{PART_SUFFIX}"
            relative = "/".join((STAGING_DIR, "parts", str(key), name))
            write_part(clip_table(batch, rows, self.config), storage.join(self.output, relative))
            parts[rows] = relative
        out = {column: batch[column] for column in META_COLUMNS}
        out["part"] = parts.astype(str)
        return out
