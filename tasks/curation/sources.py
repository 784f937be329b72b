"""Turn the `--input` URIs into a sorted list of video sources (local or `s3://`).

An input can be a file, a folder or `s3://` prefix (listed recursively, video
extensions only), or a glob. Inputs that match nothing become `MissingInput`s,
which end up as rows of `rejected.parquet` (stage `input`) rather than errors.
Each source carries a fingerprint (size plus mtime or ETag) so a changed file
gets a new resume key and a new dataset version.
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import os
from collections.abc import Iterable
from typing import Any

from tasks import storage

GLOB_CHARS = ("*", "?", "[")


@dataclasses.dataclass(frozen=True)
class SourceItem:
    """One video to curate: its URI, size in bytes and content fingerprint."""

    source: str
    size: int
    fingerprint: str

    def key(self, config_fingerprint: str) -> str:
        """Resume key: changes when the file or the output-relevant config changes."""
        text = f"{self.source}\n{self.fingerprint}\n{config_fingerprint}"
        return hashlib.sha256(text.encode()).hexdigest()[:24]


@dataclasses.dataclass(frozen=True)
class MissingInput:
    """An `--input` that named nothing readable."""

    source: str
    reason: str


def discover_sources(
    inputs: Iterable[str], extensions: Iterable[str]
) -> tuple[list[SourceItem], list[MissingInput]]:
    """Expand `inputs` into unique sources (sorted) and the inputs that matched nothing."""
    suffixes = tuple(ext.lower() for ext in extensions)
    found: dict[str, SourceItem] = {}
    missing: list[MissingInput] = []
    for uri in inputs:
        items, problem = _expand(uri, suffixes)
        if problem:
            missing.append(MissingInput(uri, problem))
        for item in items:
            found.setdefault(item.source, item)
    return sorted(found.values(), key=lambda item: item.source), missing


def _expand(uri: str, suffixes: tuple[str, ...]) -> tuple[list[SourceItem], str]:
    if not storage.is_remote(uri):
        uri = os.path.abspath(uri.removeprefix("file://"))
    try:
        fs, path = storage.filesystem(uri)
        if storage.is_remote(uri):
            fs.invalidate_cache()  # listings are cached per process; inputs may have changed
        if any(char in path for char in GLOB_CHARS):
            return _from_glob(fs, uri, path)
        if fs.isdir(path):
            return _from_folder(fs, path, suffixes)
        if fs.isfile(path):
            return [_item(fs, path, fs.info(path))], ""
    except (OSError, ValueError) as error:  # permissions, bad bucket names, endpoint down
        return [], f"cannot list input: {type(error).__name__}: {error}"
    kind = "S3 object or prefix" if storage.is_remote(uri) else "file or folder"
    return [], f"no such {kind}"


def _from_glob(fs: Any, uri: str, path: str) -> tuple[list[SourceItem], str]:
    if storage.is_remote(uri):
        paths = [p for p in fs.glob(path) if fs.isfile(p)]
    else:
        paths = [p for p in glob.glob(path, recursive=True) if os.path.isfile(p)]
    if not paths:
        return [], "the pattern matched no files"
    return [_item(fs, p, fs.info(p)) for p in paths], ""


def _from_folder(fs: Any, path: str, suffixes: tuple[str, ...]) -> tuple[list[SourceItem], str]:
    listing = fs.find(path, detail=True)
    items = [
        _item(fs, name, info)
        for name, info in listing.items()
        if name.lower().endswith(suffixes) and info.get("type", "file") == "file"
    ]
    if not items:
        return [], f"no video files ({', '.join(suffixes[:4])}, ...) under this folder"
    return items, ""


def _item(fs: Any, path: str, info: dict[str, Any]) -> SourceItem:
    size = int(info.get("size") or 0)
    tag = info.get("ETag") or info.get("etag") or info.get("mtime") or info.get("LastModified")
    return SourceItem(storage.unstrip(fs, path), size, f"{size}-{str(tag).strip(chr(34))}")
