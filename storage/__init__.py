"""URI-addressed storage below `tasks/` and `serving/`: local paths, `file://` and `s3://`.

The one place that turns a URI into a filesystem and copies files and folders up and down.
`file://URI` and a plain path are the same local file everywhere (`is_remote` is false for
both, `local_path` strips the scheme). S3 endpoint and credentials come from the standard AWS
environment variables (`AWS_ENDPOINT_URL[_S3]`, `AWS_ACCESS_KEY_ID`, ...), read when a
filesystem is opened, never at import. Imports fsspec (and s3fs through it) only.
"""

from storage.digests import files_below, sha256
from storage.publish import cached_copy, publish_folder
from storage.uri import (
    S3_SCHEMES,
    download,
    exists,
    filesystem,
    is_remote,
    join,
    local_path,
    pyarrow_filesystem,
    read_bytes,
    relative_names,
    remove,
    storage_options,
    unstrip,
    upload_file,
    write_atomic,
    write_bytes,
)

__all__ = [
    "S3_SCHEMES",
    "cached_copy",
    "download",
    "exists",
    "files_below",
    "filesystem",
    "is_remote",
    "join",
    "local_path",
    "publish_folder",
    "pyarrow_filesystem",
    "read_bytes",
    "relative_names",
    "remove",
    "sha256",
    "storage_options",
    "unstrip",
    "upload_file",
    "write_atomic",
    "write_bytes",
]
