"""URI-addressed storage: local paths and `s3://` through fsspec/s3fs.

S3 endpoint and credentials come from the standard AWS environment variables
(`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
`AWS_DEFAULT_REGION`), read when a filesystem is opened, never at import.
"""

from __future__ import annotations

import os
import posixpath
from typing import Any

import fsspec
from fsspec.core import url_to_fs

S3_SCHEMES = ("s3://", "s3a://")


def is_remote(uri: str) -> bool:
    return "://" in uri and not uri.startswith("file://")


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
    if is_remote(base):
        return posixpath.join(base.rstrip("/"), *parts)
    return os.path.join(base, *parts)


def unstrip(fs: fsspec.AbstractFileSystem, path: str) -> str:
    """Give a path returned by `fs` (no scheme) back its URI form."""
    protocol = fs.protocol[0] if isinstance(fs.protocol, tuple | list) else fs.protocol
    if protocol in ("file", "local"):
        return path
    return f"{protocol}://{path}"


def pyarrow_filesystem(uri: str) -> tuple[Any, str]:
    """A pyarrow filesystem and path for `uri` (Ray Data readers, Ray Train's `storage_filesystem`).

    It wraps the fsspec filesystem of `filesystem(uri)`, so endpoint and credentials come from
    the same place for every reader and writer.
    """
    from pyarrow.fs import FSSpecHandler, PyFileSystem

    fs, path = filesystem(uri)
    return PyFileSystem(FSSpecHandler(fs)), path
