"""The storage package against local disk, `file://` URIs and the loopback S3 server."""

from __future__ import annotations

from pathlib import Path

import pytest

import storage
from tasks import storage as tasks_storage
from tasks.training.outputs import fetch_file


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


def test_tasks_storage_is_the_same_module_of_functions() -> None:
    assert tasks_storage.filesystem is storage.filesystem and tasks_storage.join is storage.join


def test_file_uri_is_local_everywhere(tmp_path: Path) -> None:
    """A `file://` URI is the same local file for every helper (the trainer's fetch_file used to
    look for a folder literally named `file:`)."""
    (tmp_path / "model.safetensors").write_bytes(b"weights")
    uri = f"file://{tmp_path}/model.safetensors"
    assert not storage.is_remote(uri) and storage.local_path(uri) == tmp_path / "model.safetensors"
    assert fetch_file(uri, tmp_path / "scratch") == tmp_path / "model.safetensors"
    assert storage.cached_copy(uri, str(tmp_path / "cache")) == tmp_path / "model.safetensors"
    assert storage.read_bytes(uri) == b"weights"
    written = storage.write_bytes(f"file://{tmp_path}/new/summary.json", b"{}")
    assert storage.local_path(written).read_bytes() == b"{}"
    with pytest.raises(FileNotFoundError):
        storage.download(f"file://{tmp_path}/missing", tmp_path)


@pytest.mark.s3
def test_folder_up_and_down_with_the_marker_last(
    s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    local = tmp_path / "bundle"
    (local / "sub").mkdir(parents=True)
    for name in ("a.bin", "spec.json", "sub/b.bin"):
        (local / name).write_bytes(name.encode())
    uri = storage.join(s3_bucket, "models", "bundle")
    uploaded: list[str] = []
    real_upload = storage.publish.upload_file

    def recorded(path: Path, target: str) -> str:  # the real upload, in order
        uploaded.append(target)
        return real_upload(path, target)

    monkeypatch.setattr(storage.publish, "upload_file", recorded)
    storage.publish_folder(local, uri, marker="spec.json")
    assert uploaded[-1] == f"{uri}/spec.json" and len(uploaded) == 3
    copy = storage.download(uri, tmp_path / "down")
    assert (copy / "sub" / "b.bin").read_bytes() == b"sub/b.bin"
    one = storage.download(f"{uri}/spec.json", tmp_path / "not" / "made" / "yet")  # a file too
    assert one.read_bytes() == b"spec.json"
    cached = storage.cached_copy(uri, str(tmp_path / "cache"), ("a.bin", "spec.json"))
    assert sorted(p.name for p in cached.iterdir()) == ["a.bin", "spec.json"]
    assert storage.cached_copy(uri, str(tmp_path / "cache")) == cached  # reused, not copied


def test_relative_names_drop_the_shared_folder_only() -> None:
    assert storage.relative_names(["/w/a/videos/x.mp4", "/w/a/videos/y.mp4"]) == {
        "/w/a/videos/x.mp4": "x.mp4",
        "/w/a/videos/y.mp4": "y.mp4",
    }
    nested = storage.relative_names(["s3://b/v/one/x.mp4", "s3://b/v/two/x.mp4"])
    assert nested == {"s3://b/v/one/x.mp4": "one/x.mp4", "s3://b/v/two/x.mp4": "two/x.mp4"}
    moved = storage.relative_names(["s3://b/v/one/x.mp4".replace("s3://b", "/tmp/c"),
                                    "/tmp/c/v/two/x.mp4"])  # fmt: skip
    assert sorted(moved.values()) == sorted(nested.values())
    assert storage.relative_names(["/only/clip.mp4"]) == {"/only/clip.mp4": "clip.mp4"}
    assert storage.relative_names(["a.mp4", "b/c.mp4"]) == {"a.mp4": "a.mp4", "b/c.mp4": "b/c.mp4"}
    assert storage.relative_names([]) == {}
