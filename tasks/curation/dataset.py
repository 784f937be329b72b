"""Per-source commits and the final dataset: shards, `rejected.parquet`, `manifest.json`.

A source is committed by writing `OUTPUT/_staging/done/<key>.json` *after* its
parts; a rerun loads these markers and skips those sources. The final
assembly depends only on the committed results, never on timing: kept clips are
sorted by a hash of their source's name (relative to the sources' shared folder)
and span, and cut into shards of `rows_per_shard` rows, so an interrupted-and-resumed
run writes byte-identical shards and an equal manifest, and the clip order is the
same wherever the videos lie.
Assembly holds the kept clips of the run in memory (fine for one machine's
worth of clips; a cluster-scale dataset would sort with Ray Data instead).

Publication is atomic: a version's shards go to their own folder
`OUTPUT/shards/<version>/`, then `manifest.json` is swapped in one atomic write,
and only then are other versions' shards removed. A run killed while writing
shards leaves the previous manifest and every shard it lists untouched; readers
trust only the manifest and check each shard's SHA-256 against it
(`tasks.clips.read_clips`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import posixpath
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tasks import storage
from tasks.curation.config import CurationConfig
from tasks.curation.sources import MissingInput, SourceItem
from tasks.curation.writer import (
    SHARD_SCHEMA,
    STAGING_DIR,
    put_bytes,
    read_part,
    write_parquet,
)

FORMAT = "vjepa-curated-clips/1"
MANIFEST = "manifest.json"
REJECTED = "rejected.parquet"
SHARDS_DIR = "shards"
IO_THREADS = 4
REJECTED_SCHEMA = pa.schema(
    [("source", pa.string()), ("stage", pa.string()), ("reason", pa.string())]
)


@dataclasses.dataclass(frozen=True)
class SourceResult:
    """What one source produced: its committed parts and kept clip ids, or why it was rejected."""

    source: str
    key: str
    fingerprint: str
    parts: tuple[str, ...] = ()  # relative to OUTPUT
    clip_ids: tuple[str, ...] = ()
    dropped: dict[str, int] = dataclasses.field(default_factory=dict)
    error_stage: str = ""
    error_reason: str = ""
    notes: tuple[str, ...] = ()  # conversions made (deinterlaced, tone-mapped, 10-bit to 8-bit)

    @property
    def rejected(self) -> bool:
        return bool(self.error_stage)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> SourceResult:
        values = json.loads(text)
        values["parts"], values["clip_ids"] = tuple(values["parts"]), tuple(values["clip_ids"])
        values["notes"] = tuple(values.get("notes", ()))  # commits of older runs have none
        return cls(**values)


def done_uri(output: str, key: str = "") -> str:
    folder = storage.join(output, STAGING_DIR, "done")
    return storage.join(folder, f"{key}.json") if key else folder


def commit_source(output: str, result: SourceResult) -> None:
    """Mark a source done; its parts must already be written."""
    put_bytes(done_uri(output, result.key), result.to_json().encode(), durable=True)


def load_committed(output: str) -> dict[str, SourceResult]:
    """Every committed source result under `output`, by key."""
    fs, folder = storage.filesystem(done_uri(output))
    if storage.is_remote(output):
        fs.invalidate_cache()
    if not fs.isdir(folder):
        return {}
    paths = [p for p in fs.ls(folder, detail=False) if p.endswith(".json")]
    contents = fs.cat(paths) if paths else {}
    results = (SourceResult.from_json(contents[p]) for p in paths)
    return {result.key: result for result in results}


def _committed_clips(output: str, results: Iterable[SourceResult]) -> tuple[pa.Table, pa.Array]:
    """All kept clips (parts memory-mapped where possible) and their order: by a hash of each
    clip's source name relative to the sources' shared folder and its span (a pseudo-random
    mix of sources), so the clip order, and the training order the seed makes from it, is the
    same wherever the videos lie (clip ids hash the full source URI)."""
    uris = [storage.join(output, part) for result in results for part in result.parts]
    with ThreadPoolExecutor(max_workers=IO_THREADS) as pool:
        table = pa.concat_tables([SHARD_SCHEMA.empty_table(), *pool.map(read_part, uris)])
    sources = table["source"].to_pylist()
    names = storage.relative_names(sources)
    spans = zip(sources, table["start_s"].to_pylist(), table["end_s"].to_pylist(), strict=True)
    mix = [
        hashlib.sha256(f"{names[source]}#{start:.6f}-{end:.6f}".encode()).hexdigest()
        for source, start, end in spans
    ]
    keys = pa.table({"mix": pa.array(mix, pa.string()), "clip_id": table["clip_id"]})
    # Only the order is computed here; each shard gathers its own rows (`_gather`).
    order = [("mix", "ascending"), ("clip_id", "ascending")]
    return table, pc.sort_indices(keys, sort_keys=order)


def _gather(table: pa.Table, indices: pa.Array) -> pa.Table:
    """The rows `indices` of `table`. The multi-megabyte `frames` values are referenced as
    one-row slices, not copied: a `take` would copy them out of the memory-mapped parts page
    fault by page fault, which cost more CPU than compressing them."""
    frames = table["frames"]
    chunks = [chunk for row in indices.to_pylist() for chunk in frames.slice(row, 1).chunks]
    columns = [
        pa.chunked_array(chunks, frames.type) if name == "frames" else table[name].take(indices)
        for name in table.column_names
    ]
    return pa.Table.from_arrays(columns, schema=table.schema)


def _write_shard(
    output: str, folder: str, index: int, chunk: pa.Table, compression: str
) -> dict[str, Any]:
    sink = pa.BufferOutputStream()
    write_parquet(chunk, sink, compression)
    data = sink.getvalue()  # pa.Buffer: no copy
    relative = f"{folder}/shard-{index:05d}.parquet"
    put_bytes(storage.join(output, relative), data)
    return {"path": relative, "rows": chunk.num_rows, "sha256": hashlib.sha256(data).hexdigest()}


def _write_shards(
    output: str, table: pa.Table, order: pa.Array, config: CurationConfig, version: str
) -> list[dict[str, Any]]:
    """The shards of `version` in their own folder; nothing a published manifest lists changes."""
    size, compression = config.rows_per_shard, config.shard_compression
    folder = f"{SHARDS_DIR}/{version}"

    def write(index: int, start: int) -> dict[str, Any]:
        chunk = _gather(table, order.slice(start, size))
        return _write_shard(output, folder, index, chunk, compression)

    with ThreadPoolExecutor(max_workers=IO_THREADS) as pool:  # pyarrow and hashlib release the GIL
        futures = [
            pool.submit(write, index, start)
            for index, start in enumerate(range(0, table.num_rows, size))
        ]
        return [future.result() for future in futures]


def _remove_other_versions(output: str, version: str) -> None:
    """After the manifest swap: shards of earlier versions (and of the older flat layout)."""
    fs, folder = storage.filesystem(storage.join(output, SHARDS_DIR))
    if storage.is_remote(output):
        fs.invalidate_cache()
    if not fs.isdir(folder):
        return
    for path in fs.ls(folder, detail=False):
        if posixpath.basename(path.rstrip("/")) != version:
            fs.rm(path, recursive=True)


def rejected_table(missing: Iterable[MissingInput], results: Iterable[SourceResult]) -> pa.Table:
    """One row per input that produced nothing: (source, stage, reason), sorted by source."""
    rows = [{"source": m.source, "stage": "input", "reason": m.reason} for m in missing]
    rows += [
        {"source": r.source, "stage": r.error_stage, "reason": r.error_reason}
        for r in results
        if r.rejected
    ]
    rows.sort(key=lambda row: (row["source"], row["stage"]))
    return pa.Table.from_pylist(rows, schema=REJECTED_SCHEMA)


def dataset_version(config: CurationConfig, clip_ids: Iterable[str], inputs: Iterable[str]) -> str:
    """Changes when the output config, the set of clips or any input (or its fingerprint) changes."""
    payload = {"config": config.fingerprint(), "clips": sorted(clip_ids), "inputs": sorted(inputs)}
    return hashlib.sha256(json.dumps(payload).encode()).hexdigest()[:16]


def assemble_dataset(
    output: str,
    config: CurationConfig,
    sources: list[SourceItem],
    missing: list[MissingInput],
    results: dict[str, SourceResult],
) -> dict[str, Any]:
    """Write shards, `rejected.parquet` and (last) `manifest.json`; returns the manifest."""
    ordered = [results[source.key(config.fingerprint())] for source in sources]
    kept = [result for result in ordered if not result.rejected]
    table, order = _committed_clips(output, kept)
    clip_ids = table["clip_id"].take(order).to_pylist()
    if len(clip_ids) != len(set(clip_ids)):
        raise RuntimeError("duplicate clip ids in the committed parts; staging area is corrupt")
    inputs = [f"{s.source}\n{s.fingerprint}" for s in sources] + [
        f"{m.source}\nmissing" for m in missing
    ]
    version = dataset_version(config, clip_ids, inputs)
    shards = _write_shards(output, table, order, config, version)
    rejected = rejected_table(missing, ordered)
    buffer = io.BytesIO()
    pq.write_table(rejected, buffer)
    put_bytes(storage.join(output, REJECTED), buffer.getvalue())
    dropped = {
        reason: sum(r.dropped.get(reason, 0) for r in ordered) for reason in ("blank", "frozen")
    }
    manifest = {
        "format": FORMAT,
        "version": version,
        "config": config.to_dict(output_only=True),
        "clip": {
            "layout": "THWC",
            "dtype": "uint8",
            "shape": list(config.clip_shape),
            "fps": config.fps,
        },
        "counts": {
            "num_sources": len(sources) + len(missing),
            "num_clips": table.num_rows,
            "num_rejected": rejected.num_rows,
            "num_dropped_blank": dropped["blank"],
            "num_dropped_frozen": dropped["frozen"],
        },
        "shards": shards,
        "rejected": {"path": REJECTED, "rows": rejected.num_rows},
        "notes": {result.source: list(result.notes) for result in ordered if result.notes},
    }
    put_bytes(
        storage.join(output, MANIFEST),
        (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode(),
    )  # the swap: readers see the old version whole until here, the new one whole after it
    _remove_other_versions(output, version)
    return manifest
