"""Reader of a curated clip dataset: a Ray Dataset of shard rows and float video batches.

A curated dataset is what `vjepa curate` writes (see docs/data-contracts.md):
`manifest.json` plus parquet shards whose `frames` column holds uint8 clips
laid out `(T, H, W, C)`. Training code opens it with `read_clips(uri)`, passes
the dataset to Ray Train, and turns each worker's batches into model input with
`collate_clips` (or iterates with `iter_clip_batches`):

    dataset = read_clips("s3://bucket/curated")
    # in train_loop_per_worker:
    shard = ray.train.get_dataset_shard("train")
    for batch in iter_clip_batches(shard, batch_size=8):
        video = batch["video"]  # (B, C, T, H, W) float32 in [0, 1]

Pixels are scaled to [0, 1]; pass `mean`/`std` (e.g. `modeling.preprocess.IMAGENET_MEAN` and `IMAGENET_STD`,
what V-JEPA 2 normalises with) to get normalised values instead.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch

from tasks import storage

CLIP_COLUMNS = ["clip_id", "source", "start_s", "end_s", "shape", "frames"]
HASH_CHUNK = 8 << 20
HASH_THREADS = 4


def read_manifest(uri: str) -> dict[str, Any]:
    """The `manifest.json` of the curated dataset at `uri` (local folder or s3:// prefix)."""
    fs, path = storage.filesystem(storage.join(uri, "manifest.json"))
    if not fs.exists(path):
        raise FileNotFoundError(f"no curated dataset at {uri} (manifest.json is missing)")
    with fs.open(path, "rb") as handle:
        return dict(json.load(handle))


def shard_paths(uri: str, manifest: dict[str, Any] | None = None) -> list[str]:
    """Filesystem paths (no scheme) of the shards listed in the manifest, in order."""
    manifest = manifest or read_manifest(uri)
    _, root = storage.filesystem(uri)
    return [f"{root.rstrip('/')}/{shard['path']}" for shard in manifest["shards"]]


class ShardMismatch(ValueError):
    """A shard the manifest lists is missing or does not hold the bytes the manifest promises."""


def _sha256(fs: Any, path: str) -> str:
    digest = hashlib.sha256()
    with fs.open(path, "rb") as handle:
        while chunk := handle.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify_shards(uri: str, manifest: dict[str, Any] | None = None) -> None:
    """Check every shard the manifest lists against the SHA-256 it records (a shard without one,
    from an older writer, is only checked to exist); raises `ShardMismatch` naming the shards."""
    manifest = manifest or read_manifest(uri)
    fs, _ = storage.filesystem(uri)
    paths = shard_paths(uri, manifest)

    def problem(path: str, shard: dict[str, Any]) -> str:
        if not fs.exists(path):
            return f"{shard['path']} is missing"
        expected = shard.get("sha256")
        if expected and _sha256(fs, path) != expected:
            return f"{shard['path']} does not match its SHA-256 in the manifest"
        return ""

    with ThreadPoolExecutor(max_workers=HASH_THREADS) as pool:  # hashlib releases the GIL
        problems = [p for p in pool.map(problem, paths, manifest["shards"]) if p]
    if problems:
        raise ShardMismatch(
            f"the curated dataset at {uri} is not what its manifest promises: "
            + "; ".join(problems[:5])
            + (f" (and {len(problems) - 5} more)" if len(problems) > 5 else "")
        )


def read_clips(
    uri: str, columns: Sequence[str] | None = None, verify: bool = True, **read_args: Any
) -> Any:
    """The curated dataset as a Ray Dataset, one row per clip (`columns` defaults to CLIP_COLUMNS).

    `verify` first checks every shard against the manifest's checksums (`verify_shards`: one
    extra read of the shards, in threads); turn it off only for datasets checked already."""
    import ray

    manifest = read_manifest(uri)
    if not manifest["shards"]:
        raise ValueError(f"the curated dataset at {uri} has no clips")
    if verify:
        verify_shards(uri, manifest)
    return ray.data.read_parquet(
        shard_paths(uri, manifest),
        filesystem=storage.pyarrow_filesystem(uri)[0],
        columns=list(columns or CLIP_COLUMNS),
        **read_args,
    )


def read_clip_table(uri: str, columns: Sequence[str] | None = None, verify: bool = True) -> Any:
    """Every clip of the dataset as one `pyarrow.Table` read in this process, in shard order
    (`verify` as in `read_clips`). For datasets that fit in memory."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    manifest = read_manifest(uri)
    if not manifest["shards"]:
        raise ValueError(f"the curated dataset at {uri} has no clips")
    if verify:
        verify_shards(uri, manifest)
    filesystem = storage.pyarrow_filesystem(uri)[0]
    wanted = list(columns or CLIP_COLUMNS)
    return pa.concat_tables(
        pq.read_table(path, columns=wanted, filesystem=filesystem)
        for path in shard_paths(uri, manifest)
    )


def table_batch(table: Any) -> dict[str, np.ndarray]:
    """A `pyarrow.Table` as the numpy batch Ray Data stages take (binary and list columns as
    object arrays)."""
    return {name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names}


def batch_table(batch: dict[str, np.ndarray], schema: Any = None) -> Any:
    """A numpy batch back to a `pyarrow.Table`; columns named in `schema` keep its types."""
    import pyarrow as pa

    arrays = {}
    for name, values in batch.items():
        kind = schema.field(name).type if schema is not None and name in schema.names else None
        items = list(values) if values.dtype.kind == "O" else values
        arrays[name] = pa.array(items, type=kind)
    return pa.table(arrays)


def clips_to_array(frames: Sequence[bytes] | np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Binary clips (one per row) -> uint8 array `(B, T, H, W, C)`."""
    shape = tuple(int(size) for size in shape)
    out = np.empty((len(frames), *shape), dtype=np.uint8)  # (B, T, H, W, C), writable
    for index, clip in enumerate(frames):
        out[index] = np.frombuffer(clip, dtype=np.uint8).reshape(shape)
    return out


def collate_clips(
    batch: dict[str, np.ndarray],
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    device: str | torch.device = "cpu",
) -> dict[str, Any]:
    """A numpy batch of shard rows -> `{"video": (B, C, T, H, W) float32, "clip_id": [...]}`."""
    shapes = {tuple(int(x) for x in shape) for shape in batch["shape"]}
    if len(shapes) != 1:
        raise ValueError(f"clips of different shapes in one batch: {sorted(shapes)}")
    clips = torch.from_numpy(clips_to_array(batch["frames"], shapes.pop()))  # (B, T, H, W, C)
    clips = clips.to(device).permute(0, 4, 1, 2, 3)  # (B, C, T, H, W) uint8, a strided view
    video = torch.empty(clips.shape, dtype=torch.float32, device=clips.device)
    torch.div(clips, 255.0, out=video)  # (B, C, T, H, W): layout change + float + scale, one pass
    if mean is not None and std is not None:
        mean_t = torch.tensor(mean, device=video.device).view(1, -1, 1, 1, 1)  # (1, C, 1, 1, 1)
        std_t = torch.tensor(std, device=video.device).view(1, -1, 1, 1, 1)  # (1, C, 1, 1, 1)
        video = video.sub_(mean_t).div_(std_t)  # (B, C, T, H, W)
    return {"video": video, "clip_id": [str(x) for x in batch["clip_id"]]}


def iter_clip_batches(
    dataset: Any,
    batch_size: int,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    shuffle_buffer: int | None = None,
    drop_last: bool = False,
) -> Iterator[dict[str, Any]]:
    """Float video batches from a Ray Dataset or `DataIterator` (e.g. `get_dataset_shard`)."""
    batches = dataset.iter_batches(
        batch_size=batch_size,
        batch_format="numpy",
        local_shuffle_buffer_size=shuffle_buffer,
        drop_last=drop_last,
    )
    for batch in batches:
        yield collate_clips(batch, mean=mean, std=std)


def decoded_bytes(uri: str, manifest: dict[str, Any] | None = None) -> int:
    """Size of every clip of the dataset once decoded (uint8), from its manifest."""
    manifest = manifest or read_manifest(uri)
    clip_bytes = int(np.prod(manifest["clip"]["shape"]))
    return clip_bytes * int(manifest["counts"]["num_clips"])
