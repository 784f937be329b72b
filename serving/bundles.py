"""Model files for replicas: local paths as they are, remote URIs (`s3://`) copied to a cache.

`serving/` may not import `tasks`, so this holds its own two-line S3 endpoint rule (the same as
`tasks.storage`: `AWS_ENDPOINT_URL_S3` or `AWS_ENDPOINT_URL`). A copy is made into a temporary
folder and renamed into place, so replicas that start together on one node never read a
half-written bundle.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from fsspec.core import url_to_fs

from modeling.world_model import (
    ENCODER_FILE,
    PREDICTOR_FILE,
    SPEC_FILE,
    WorldModel,
    load_world_model,
)

BUNDLE_FILES = (SPEC_FILE, ENCODER_FILE, PREDICTOR_FILE)


def is_remote(uri: str) -> bool:
    return "://" in uri and not uri.startswith("file://")


def storage_options(uri: str) -> dict[str, Any]:
    if uri.startswith(("s3://", "s3a://")):
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        if endpoint:
            return {"client_kwargs": {"endpoint_url": endpoint}}
    return {}


def local_path(uri: str, cache_dir: str, names: tuple[str, ...] = ()) -> Path:
    """A local path holding `uri` (a file, or a folder restricted to `names` if given)."""
    if not is_remote(uri):
        path = Path(uri.removeprefix("file://")).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"{uri} does not exist")
        return path
    fs, remote = url_to_fs(uri, **storage_options(uri))
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
        # if another replica finished first, its copy is as good as ours
        with contextlib.suppress(OSError):
            staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


def fetch_world_model(uri: str, cache_dir: str) -> WorldModel:
    """Load a world model bundle from a local folder or a remote prefix."""
    return load_world_model(local_path(uri, cache_dir, BUNDLE_FILES))
