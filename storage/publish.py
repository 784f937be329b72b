"""Publishing so that readers never see half a result: the marker last, a local cache by rename.

`publish_folder` uploads a folder's files with the one readers trust (the marker) last, so a
reader that checks the marker first sees either nothing or the whole folder. `cached_copy`
gives a local path for a remote file or folder: it copies into a staging folder beside the
cache entry and renames it into place, so processes that start together on one node (Serve
replicas) never read a half-written copy.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import tempfile
from pathlib import Path

from storage.uri import filesystem, is_remote, join, local_path, upload_file


def publish_folder(local: str | Path, uri: str, marker: str | None = None) -> str:
    """Upload every file below the folder `local` under `uri`; `marker` (a path relative to
    `local`, e.g. the spec that readers open first) goes last. Returns `uri`."""
    root = Path(local)
    files = sorted(path.relative_to(root).as_posix() for path in root.rglob("*") if path.is_file())
    files.sort(key=lambda name: name == marker)  # stable: the marker moves to the end
    for name in files:
        upload_file(root / name, join(uri, *name.split("/")))
    return uri


def cached_copy(uri: str, cache_dir: str, names: tuple[str, ...] = ()) -> Path:
    """A local path holding `uri` (a file, or a folder restricted to `names` if given).

    A local `uri` (plain path or `file://`) is returned as it is; a remote one is copied once
    into `cache_dir` under a key of the URI and reused after that.
    """
    if not is_remote(uri):
        path = local_path(uri)
        if not path.exists():
            raise FileNotFoundError(f"{uri} does not exist")
        return path
    fs, remote = filesystem(uri)
    key = hashlib.sha256(uri.encode()).hexdigest()[:16]
    target = Path(cache_dir).expanduser() / key
    is_dir = fs.isdir(remote)
    if not is_dir and not fs.isfile(remote):
        raise FileNotFoundError(f"{uri} does not exist")
    final = target if is_dir else target / Path(remote).name
    if final.exists():
        return final
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=target.parent))
    try:
        if is_dir:
            for name in names or tuple(Path(p).name for p in fs.ls(remote, detail=False)):
                fs.get(f"{remote.rstrip('/')}/{name}", str(staging / name))
        else:
            fs.get(remote, str(staging / Path(remote).name))
        # if another process finished first, its copy is as good as ours
        with contextlib.suppress(OSError):
            staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final
