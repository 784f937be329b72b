"""URIs to filesystems, and copying single files and folders up and down (see `storage`)."""

from __future__ import annotations

import os
import posixpath
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import fsspec
from fsspec.core import url_to_fs

if TYPE_CHECKING:
    import pyarrow as pa

S3_SCHEMES = ("s3://", "s3a://")
FILE_SCHEME = "file://"


def is_remote(uri: str) -> bool:
    """True for a URI with a scheme other than `file://` (`s3://...`)."""
    return "://" in uri and not uri.startswith(FILE_SCHEME)


def local_path(uri: str) -> Path:
    """The local path of a plain path or `file://` URI (`~` expanded)."""
    if is_remote(uri):
        raise ValueError(f"not a local path: {uri}")
    return Path(uri.removeprefix(FILE_SCHEME)).expanduser()


def storage_options(uri: str) -> dict[str, Any]:
    """fsspec options for `uri`; for S3, the endpoint from `AWS_ENDPOINT_URL[_S3]`."""
    if uri.startswith(S3_SCHEMES):
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        options: dict[str, Any] = {}
        if endpoint:
            options["client_kwargs"] = {"endpoint_url": endpoint}
        return options
    return {}


def filesystem(uri: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """The filesystem that holds `uri` and the path inside it."""
    fs, path = url_to_fs(uri, **storage_options(uri))
    return fs, path


def join(base: str, *parts: str) -> str:
    """Join URI parts with `/`, keeping the scheme of `base`."""
    if "://" in base:
        return posixpath.join(base.rstrip("/"), *parts)
    return os.path.join(base, *parts)


def relative_names(uris: Iterable[str]) -> dict[str, str]:
    """Each URI relative to the deepest folder that all of them share (the file name when they
    share their folder). The names stay the same when the whole tree moves (another workdir,
    local to `s3://`), so seeded splits and orders made from them do too."""
    unique = sorted(set(uris))
    common: list[str] | None = None
    for uri in unique:
        folder = uri.rsplit("/", 1)[0].split("/") if "/" in uri else []
        if common is None:
            common = folder
            continue
        shared = 0
        while shared < min(len(common), len(folder)) and common[shared] == folder[shared]:
            shared += 1
        common = common[:shared]
    cut = len("/".join(common)) + 1 if common else 0
    return {uri: uri[cut:] for uri in unique}


def unstrip(fs: fsspec.AbstractFileSystem, path: str) -> str:
    """Give a path returned by `fs` (no scheme) back its URI form."""
    protocol = fs.protocol[0] if isinstance(fs.protocol, tuple | list) else fs.protocol
    if protocol in ("file", "local"):
        return path
    return f"{protocol}://{path}"


def exists(uri: str) -> bool:
    fs, path = filesystem(uri)
    return bool(fs.exists(path))


def _parent(fs: fsspec.AbstractFileSystem, path: str) -> None:
    parent = path.rstrip("/").rsplit("/", 1)[0] if "/" in path else ""
    if parent:
        fs.makedirs(parent, exist_ok=True)


def upload_file(local: str | Path, uri: str) -> str:
    """Copy a local file to `uri` (parent folders created); returns `uri`."""
    fs, path = filesystem(uri)
    _parent(fs, path)
    fs.put_file(str(local), path)
    return uri


def write_bytes(uri: str, data: bytes) -> str:
    """Write `data` as the file `uri` (parent folders created); returns `uri`."""
    fs, path = filesystem(uri)
    _parent(fs, path)
    fs.pipe_file(path, data)
    return uri


def read_bytes(uri: str) -> bytes:
    """The bytes of the file `uri`, read past any listing cache (another process may write it)."""
    fs, path = filesystem(uri)
    fs.invalidate_cache()
    return bytes(fs.cat_file(path))


def download(uri: str, folder: str | Path) -> Path:
    """A local copy of the file or folder `uri` inside `folder` (made if missing); a local
    `uri` is its own path.

    Raises FileNotFoundError when `uri` does not exist.
    """
    if not is_remote(uri):
        own = local_path(uri)
        if not own.exists():
            raise FileNotFoundError(f"not found: {uri}")
        return own
    fs, path = filesystem(uri)
    if not fs.exists(path):
        raise FileNotFoundError(f"not found: {uri}")
    Path(folder).mkdir(parents=True, exist_ok=True)
    local = Path(folder) / path.rstrip("/").rsplit("/", 1)[-1]
    if fs.isdir(path):
        fs.get(path, str(local), recursive=True)
    else:
        fs.get_file(path, str(local))
    return local


def pyarrow_filesystem(uri: str) -> tuple[Any, str]:
    """A pyarrow filesystem and path for `uri` (Ray Data readers, Ray Train's `storage_filesystem`).

    It wraps the fsspec filesystem of `filesystem(uri)`, so endpoint and credentials come from
    the same place for every reader and writer.
    """
    from pyarrow.fs import FSSpecHandler, PyFileSystem

    fs, path = filesystem(uri)
    return PyFileSystem(FSSpecHandler(fs)), path


def write_atomic(uri: str, data: bytes | pa.Buffer, durable: bool = False) -> str:
    """Write `data` at `uri` so that readers see the old file or the new one, never a torn one:
    a temporary file renamed into place locally, one PUT on S3. `durable` also fsyncs locally.
    Returns `uri`."""
    fs, path = filesystem(uri)
    if is_remote(uri):
        fs.pipe_file(path, bytes(data))
        return uri
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    temporary = f"{path}.tmp-{os.getpid()}-{threading.get_ident()}"
    with open(temporary, "wb") as handle:
        handle.write(data)
        if durable:
            handle.flush()
            os.fsync(handle.fileno())
    os.replace(temporary, path)
    return uri


def remove(uri: str) -> None:
    """Remove the file or folder `uri` (everything below it); nothing happens when it is absent."""
    fs, path = filesystem(uri)
    fs.invalidate_cache()
    if fs.exists(path):
        fs.rm(path, recursive=True)
