"""Content digests of files and folders at a URI: what a stage manifest records and verifies."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from storage.uri import filesystem, unstrip

CHUNK = 1 << 20


def files_below(uris: Iterable[str]) -> list[str]:
    """Every file named by `uris`: a file itself, a folder by all the files below it (sorted).

    Raises FileNotFoundError for a URI that does not exist."""
    found: list[str] = []
    for uri in uris:
        fs, path = filesystem(uri)
        fs.invalidate_cache()
        if fs.isdir(path):
            found += sorted(unstrip(fs, name) for name in fs.find(path))
        elif fs.isfile(path):
            found.append(uri)
        else:
            raise FileNotFoundError(f"not found: {uri}")
    return found


def sha256(uri: str) -> str:
    """The SHA-256 (hex) of the file `uri`, streamed in 1 MiB chunks."""
    fs, path = filesystem(uri)
    digest = hashlib.sha256()
    with fs.open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
