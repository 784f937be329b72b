"""The defects a robustness run found, each with the test that failed before its fix: names that
are not UTF-8, symlinks inside folders, `[` in a path given directly, torn or mixed publication,
unchecked shard checksums, two runs on one output, torn parts, and a file of zeros."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tasks.clips import ShardMismatch, read_clips, verify_shards
from tasks.curation import dataset, writer
from tasks.curation.config import CurationConfig
from tasks.curation.dataset import SourceResult, assemble_dataset
from tasks.curation.lock import OutputLock, OutputLocked
from tasks.curation.pipeline import plan_curation, run_pending
from tasks.curation.sources import SourceItem, local_path

from .conftest import make_video
from .test_curation_codecs import decode

CONFIG = CurationConfig(fps=4, frames=4, size=32, min_short_side=32, rows_per_shard=2)


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder as old archives hold them: a Latin-1 name, links to a file, a folder and
    nowhere, and a file whose name holds glob characters."""
    root = tmp_path_factory.mktemp("archive")
    elsewhere = root / "elsewhere"
    make_video(elsewhere / "linked.mp4", seconds=2)
    make_video(elsewhere / "sub" / "in_linked_folder.mp4", seconds=2)
    inbox = root / "inbox"
    make_video(inbox / "plain.mp4", seconds=2)
    latin1 = os.path.join(os.fsencode(inbox), b"caf\xe9 1999.mp4")  # not valid UTF-8
    with open(latin1, "wb") as handle:
        handle.write((inbox / "plain.mp4").read_bytes())
    os.symlink(elsewhere / "linked.mp4", inbox / "link.mp4")
    os.symlink(elsewhere / "sub", inbox / "folder_link")
    os.symlink(inbox / "nowhere.mp4", inbox / "broken.mp4")
    os.symlink(inbox, inbox / "folder_link" / "loop")  # a link cycle must end
    make_video(root / "take [2].mp4", seconds=2)
    return root


@pytest.mark.ray
def test_archive_folder_curates_every_file_and_names_every_failure(
    ray_cluster: None, archive: Path, tmp_path: Path
) -> None:
    inputs = [str(archive / "inbox"), str(archive / "take [2].mp4")]
    plan = plan_curation(inputs, str(tmp_path), CONFIG)
    results = run_pending(plan)  # used to die on the Latin-1 name with a UnicodeEncodeError
    manifest = assemble_dataset(plan.output, CONFIG, plan.sources, plan.missing, results)
    escaped = "file://" + quote(os.fsencode(archive / "inbox") + b"/caf\xe9 1999.mp4", safe="/")
    curated = {result.source: len(result.clip_ids) for result in results.values()}
    assert curated == {
        escaped: 2,
        str(archive / "inbox" / "folder_link" / "in_linked_folder.mp4"): 2,
        str(archive / "inbox" / "link.mp4"): 2,
        str(archive / "inbox" / "plain.mp4"): 2,
        str(archive / "take [2].mp4"): 2,
    }
    assert local_path(escaped) == os.fsdecode(os.fsencode(archive / "inbox") + b"/caf\xe9 1999.mp4")
    rejected = pq.read_table(tmp_path / "rejected.parquet").to_pylist()
    assert rejected == [
        {
            "source": str(archive / "inbox" / "broken.mp4"),
            "stage": "input",
            "reason": f"broken symbolic link (to {archive / 'inbox' / 'nowhere.mp4'})",
        }
    ]
    assert manifest["counts"]["num_sources"] == 6 and manifest["counts"]["num_clips"] == 10


def _results(
    root: Path, config: CurationConfig, count: int = 3
) -> tuple[list[SourceItem], dict[str, SourceResult]]:
    """Committed parts of `count` clips for two sources under `config` (what a run stages)."""
    from .test_curation_writer import _batch

    sources = [SourceItem(f"/v/{name}.mp4", 10, f"10-{name}") for name in ("a", "b")]
    results = {}
    for item in sources:
        key = item.key(config.fingerprint())
        batch = _batch(item.source, key, count, ("",) * count)
        batch["frames"] = np.zeros((count + 1, *config.clip_shape), np.uint8) + len(item.source)
        out = writer.PartWriterStage(config, str(root))(batch)
        ids = tuple(sorted(str(x) for x in out["clip_id"][:count]))
        results[key] = SourceResult(item.source, key, item.fingerprint, (str(out["part"][0]),), ids)
    return sources, results


def test_killed_republication_keeps_the_published_version_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old_config = CurationConfig(fps=4, frames=2, size=16, rows_per_shard=2)
    new_config = old_config.replace(rows_per_shard=1)  # a rerun with a changed configuration
    sources, old = _results(tmp_path, old_config)
    published = assemble_dataset(str(tmp_path), old_config, sources, [], old)
    _, new = _results(tmp_path, new_config)
    real, calls = dataset._write_shard, []

    def killed_after_two(*args: object, **kwargs: object) -> dict[str, object]:
        calls.append(1)
        if len(calls) > 2:
            raise RuntimeError("killed while writing shards")
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(dataset, "_write_shard", killed_after_two)
    with pytest.raises(RuntimeError, match="killed"):
        assemble_dataset(str(tmp_path), new_config, sources, [], new)
    assert json.loads((tmp_path / "manifest.json").read_text()) == published
    verify_shards(str(tmp_path))  # every shard the old manifest lists is still the same bytes
    monkeypatch.setattr(dataset, "_write_shard", real)
    fresh = assemble_dataset(str(tmp_path), new_config, sources, [], new)
    assert [p.name for p in (tmp_path / "shards").iterdir()] == [fresh["version"]]
    verify_shards(str(tmp_path))


def test_reader_checks_the_checksums_the_manifest_promises(tmp_path: Path) -> None:
    config = CurationConfig(fps=4, frames=2, size=16, rows_per_shard=2)
    sources, results = _results(tmp_path, config)
    manifest = assemble_dataset(str(tmp_path), config, sources, [], results)
    shard = tmp_path / manifest["shards"][1]["path"]
    table = pq.read_table(shard)
    pq.write_table(table.slice(0, 1), shard)  # a valid parquet file, just not the promised one
    with pytest.raises(ShardMismatch, match=r"shard-00001.parquet does not match its SHA-256"):
        read_clips(str(tmp_path))
    shard.unlink()
    with pytest.raises(ShardMismatch, match=r"shard-00001.parquet is missing"):
        verify_shards(str(tmp_path))


def test_a_killed_part_write_leaves_no_torn_part(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = pa.ipc.new_file

    class DiesMidWrite:
        def __init__(self, sink: object, schema: pa.Schema) -> None:
            self.inner = real(sink, schema)  # the schema bytes are written at once

        def __enter__(self) -> DiesMidWrite:
            return self

        def __exit__(self, *args: object) -> None:
            return None

        def write_table(self, table: pa.Table) -> None:
            raise OSError("killed mid-write")

    monkeypatch.setattr(writer.pa.ipc, "new_file", DiesMidWrite)
    target = tmp_path / "_staging" / "parts" / "k" / "p.arrow"
    with pytest.raises(OSError, match="killed"):
        writer.write_part(pa.table({"x": [1, 2]}), str(target))
    assert not target.exists()  # a rerun never finds half a part under the final name


def _hold_lock_in_child(output: str) -> subprocess.Popen[bytes]:
    code = (
        "import sys, time; from tasks.curation.lock import OutputLock\n"
        f"lock = OutputLock({output!r}); lock.acquire(); print('held', flush=True); time.sleep(60)"
    )
    child = subprocess.Popen(
        [os.sys.executable, "-c", code], stdout=subprocess.PIPE, cwd=Path(__file__).parents[3]
    )
    assert child.stdout is not None and child.stdout.readline() == b"held\n"
    return child


def test_second_run_on_an_output_is_refused_until_the_holder_dies(tmp_path: Path) -> None:
    output = str(tmp_path / "out")
    child = _hold_lock_in_child(output)
    try:
        with pytest.raises(OutputLocked, match="another curation run is writing"):
            OutputLock(output).acquire()
    finally:
        child.kill()  # kill -9: the lock file stays behind
        child.wait()
    assert (tmp_path / "out" / "_staging" / "lock.json").exists()
    with OutputLock(output) as lock:  # its holder is gone from this host: taken over
        lock.check()
    assert not (tmp_path / "out" / "_staging" / "lock.json").exists()


@pytest.mark.s3
def test_lock_on_s3_is_exclusive_and_taken_over_once_stale(s3_bucket: str) -> None:
    output = f"{s3_bucket}/curated"
    first = OutputLock(output, heartbeat_s=3600)
    first.acquire()
    with pytest.raises(OutputLocked, match="another curation run is writing"):
        OutputLock(output).acquire()
    late = OutputLock(output, stale_after_s=0.0)  # as if the first run's heartbeat stopped
    late.acquire()
    with pytest.raises(OutputLocked, match="lost the lock"):
        first.check()  # the first run must not publish now
    assert not first._refresh()  # nor renew a lock that is no longer its own
    late.release()
    OutputLock(output).acquire()  # free again


def test_file_of_zeros_is_reported_as_such(tmp_path: Path) -> None:
    zeros = tmp_path / "camera_dump.mp4"
    with open(zeros, "wb") as handle:
        handle.truncate(5 * 1024**3)  # 5 GB, sparse: nothing is written to disk
    _, stage, reason, _ = decode(zeros, CONFIG)
    assert (stage, reason) == (
        "probe",
        "a file of zero bytes only (no data was ever written to it), not a video",
    )
    noise = tmp_path / "noise.mp4"
    noise.write_bytes(np.random.default_rng(0).integers(1, 255, 300_000, dtype=np.uint8).tobytes())
    _, stage, reason, _ = decode(noise, CONFIG)
    assert stage == "probe" and "moov" not in reason, reason
