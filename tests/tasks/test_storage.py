"""Storage helpers against local disk and the loopback S3 server."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks import storage


def test_join_keeps_scheme() -> None:
    assert storage.join("s3://bucket/prefix/", "a", "b.txt") == "s3://bucket/prefix/a/b.txt"
    assert storage.join("/tmp/x", "a") == "/tmp/x/a"


def test_local_roundtrip(tmp_path: Path) -> None:
    fs, path = storage.filesystem(str(tmp_path / "f.txt"))
    with fs.open(path, "wb") as handle:
        handle.write(b"hello")
    assert (tmp_path / "f.txt").read_bytes() == b"hello"
    assert storage.unstrip(fs, path) == path


@pytest.mark.s3
def test_s3_roundtrip(s3_bucket: str) -> None:
    uri = storage.join(s3_bucket, "dir", "f.txt")
    fs, path = storage.filesystem(uri)
    with fs.open(path, "wb") as handle:
        handle.write(b"hello s3")
    fs2, path2 = storage.filesystem(uri)
    fs2.invalidate_cache()
    with fs2.open(path2, "rb") as handle:
        assert handle.read() == b"hello s3"
    assert storage.unstrip(fs, path) == uri
