"""Input discovery: files, folders, globs, missing inputs, fingerprints."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.curation.config import VIDEO_EXTENSIONS
from tasks.curation.sources import discover_sources


def test_folder_glob_file_and_missing(tmp_path: Path) -> None:
    (tmp_path / "a" / "deep").mkdir(parents=True)
    for name in ("a/x.mp4", "a/deep/y.MKV", "a/notes.txt", "b.webm", "odd.bin"):
        (tmp_path / name).write_bytes(b"123")
    inputs = [
        str(tmp_path / "a"),
        str(tmp_path / "*.webm"),
        str(tmp_path / "odd.bin"),
        str(tmp_path / "a" / "x.mp4"),
    ]
    sources, missing = discover_sources(
        [*inputs, str(tmp_path / "nope"), str(tmp_path / "*.avi")], VIDEO_EXTENSIONS
    )
    names = [Path(item.source).relative_to(tmp_path).as_posix() for item in sources]
    assert names == [
        "a/deep/y.MKV",
        "a/x.mp4",
        "b.webm",
        "odd.bin",
    ]  # sorted, unique, explicit file kept
    assert [(Path(m.source).name, m.reason) for m in missing] == [
        ("nope", "no such file or folder"),
        ("*.avi", "the pattern matched no files"),
    ]
    assert all(item.size == 3 and item.fingerprint.startswith("3-") for item in sources)


def test_relative_paths_become_absolute_and_keys_track_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    video = tmp_path / "v.mp4"
    video.write_bytes(b"1")
    monkeypatch.chdir(tmp_path)
    (item,), _ = discover_sources(["v.mp4"], VIDEO_EXTENSIONS)
    assert item.source == str(video)
    video.write_bytes(b"22")
    (changed,), _ = discover_sources([str(video)], VIDEO_EXTENSIONS)
    assert changed.key("cfg") != item.key("cfg")
    assert item.key("cfg") != item.key("other-cfg")
