"""Input and output on S3 (loopback moto_server) give the same clips as on local disk."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tasks import storage
from tasks.curation.config import CurationConfig


def _clips(uri: str) -> dict[tuple[str, float], bytes]:
    """(file name, start second) -> clip bytes, over every shard of the dataset at `uri`."""
    fs, root = storage.filesystem(uri)
    shards = sorted(fs.glob(f"{root}/shards/*/*.parquet"))
    tables = []
    for path in shards:
        with fs.open(path, "rb") as handle:
            tables.append(pq.read_table(handle))
    rows = pa.concat_tables(tables).to_pylist()
    return {(row["source"].rsplit("/", 1)[-1], row["start_s"]): row["frames"] for row in rows}


@pytest.mark.ray
@pytest.mark.s3
def test_s3_in_and_out_matches_local(
    ray_cluster: None,
    prefect_harness: None,
    s3_bucket: str,
    small_config: CurationConfig,
    videos: dict[str, Path],
    tmp_path: Path,
) -> None:
    from flows.curate import curate_flow

    names = ("moving_mp4", "moving_webm", "notes")
    fs, _ = storage.filesystem(s3_bucket)
    for name in names:
        fs.put_file(
            str(videos[name]),
            storage.join(s3_bucket, "videos", videos[name].name).removeprefix("s3://"),
        )
    config = small_config.to_dict()

    remote = curate_flow(
        inputs=[
            storage.join(s3_bucket, "videos"),
            storage.join(s3_bucket, "videos", "missing.mp4"),
        ],
        output=storage.join(s3_bucket, "curated"),
        config=config,
    )
    local = curate_flow(
        inputs=[str(videos[name]) for name in names], output=str(tmp_path), config=config
    )

    assert remote.num_clips == local.num_clips == 6
    assert remote.manifest == storage.join(s3_bucket, "curated", "manifest.json")
    remote_clips, local_clips = _clips(storage.join(s3_bucket, "curated")), _clips(str(tmp_path))
    assert remote_clips.keys() == local_clips.keys() and remote_clips == local_clips
    with fs.open(storage.join(s3_bucket, "curated", "rejected.parquet"), "rb") as handle:
        rejected = {row["source"]: row for row in pq.read_table(handle).to_pylist()}
    assert rejected[storage.join(s3_bucket, "videos", "missing.mp4")]["stage"] == "input"
    assert (
        rejected[storage.join(s3_bucket, "videos", "notes.mp4")]["reason"]
        == "a text file, not a video"
    )
