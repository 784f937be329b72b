"""Turn the `--input` URIs into a sorted list of video sources (local or `s3://`).

An input can be a file, a folder or `s3://` prefix (listed recursively, video
extensions only), or a glob. Inputs that match nothing become `MissingInput`s,
which end up as rows of `rejected.parquet` (stage `input`) rather than errors.
Each source carries a fingerprint (size plus mtime or ETag) so a changed file
gets a new resume key and a new dataset version.

Local folders are walked following symbolic links (each real folder once), as a
link given directly is followed; a broken link is a `MissingInput`. A path that
exists is never read as a glob, whatever characters it holds. A local name that
is not valid UTF-8 (old archives) becomes a `file://` URI with its bytes
percent-escaped, so it can be written to parquet and JSON; `local_path` gives
the name back for opening.
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import os
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, unquote_to_bytes

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
        items, problems = _expand(uri, suffixes)
        missing.extend(problems)
        for item in items:
            found.setdefault(item.source, item)
    return sorted(found.values(), key=lambda item: item.source), missing


def _expand(uri: str, suffixes: tuple[str, ...]) -> tuple[list[SourceItem], list[MissingInput]]:
    if not storage.is_remote(uri):
        uri = os.path.abspath(uri.removeprefix("file://"))
        if os.path.isdir(uri):
            return _from_local_folder(uri, suffixes)
    try:
        fs, path = storage.filesystem(uri)
        if storage.is_remote(uri):
            fs.invalidate_cache()  # listings are cached per process; inputs may have changed
        if fs.isfile(path):  # before the glob test: `clip [1].mp4` is a file, not a pattern
            return [_item(fs, path, fs.info(path))], []
        if fs.isdir(path):
            items, problem = _from_folder(fs, path, suffixes)
        elif any(char in path for char in GLOB_CHARS):
            items, problem = _from_glob(fs, uri, path)
        else:
            kind = "S3 object or prefix" if storage.is_remote(uri) else "file or folder"
            items, problem = [], f"no such {kind}"
    except (OSError, ValueError) as error:  # permissions, bad bucket names, endpoint down
        items, problem = [], f"cannot list input: {type(error).__name__}: {error}"
    return items, [MissingInput(display(uri), problem)] if problem else []


def _from_local_folder(
    root: str, suffixes: tuple[str, ...]
) -> tuple[list[SourceItem], list[MissingInput]]:
    """Video files under `root`, through symbolic links to files and folders (each real folder
    walked once, so a link loop ends); broken links are reported, not skipped."""
    items: list[SourceItem] = []
    broken: list[MissingInput] = []
    seen: set[str] = set()
    for folder, subfolders, names in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:
            subfolders[:] = []
            continue
        seen.add(real)
        subfolders.sort()
        for name in sorted(names):
            if not name.lower().endswith(suffixes):
                continue
            path = os.path.join(folder, name)
            try:
                stat = os.stat(path)  # follows the link
            except OSError:
                target = os.readlink(path) if os.path.islink(path) else "?"
                broken.append(MissingInput(display(path), f"broken symbolic link (to {target})"))
                continue
            items.append(_local_item(path, stat))
    if not items and not broken:
        problem = f"no video files ({', '.join(suffixes[:4])}, ...) under this folder"
        broken.append(MissingInput(display(root), problem))
    return items, broken


def _local_item(path: str, stat: os.stat_result) -> SourceItem:
    return SourceItem(display(path), stat.st_size, f"{stat.st_size}-{stat.st_mtime}")


def display(path: str) -> str:
    """`path` as a source string that is valid UTF-8: itself, or when the name is not valid
    UTF-8 a `file://` URI of its percent-escaped bytes (`local_path` undoes it)."""
    if storage.is_remote(path):
        return path
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:  # undecodable bytes, kept by Python as surrogate escapes
        return "file://" + quote(os.fsencode(path), safe="/")
    return path


def local_path(source: str) -> str:
    """The name to open for a source: `display`'s escaped form back to the file's real name."""
    if source.startswith("file://"):
        return os.fsdecode(unquote_to_bytes(source.removeprefix("file://")))
    return source


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
    source = display(storage.unstrip(fs, path))
    return SourceItem(source, size, f"{size}-{str(tag).strip(chr(34))}")
