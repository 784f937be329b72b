"""`tasks.storage` is the top-level `storage` package (URI I/O below `tasks/` and `serving/`).

Kept so that `from tasks import storage` keeps working; new code imports `storage` itself.
"""

from __future__ import annotations

from storage import (
    S3_SCHEMES,
    cached_copy,
    download,
    exists,
    filesystem,
    is_remote,
    join,
    local_path,
    publish_folder,
    pyarrow_filesystem,
    read_bytes,
    storage_options,
    unstrip,
    upload_file,
    write_bytes,
)

__all__ = [
    "S3_SCHEMES",
    "cached_copy",
    "download",
    "exists",
    "filesystem",
    "is_remote",
    "join",
    "local_path",
    "publish_folder",
    "pyarrow_filesystem",
    "read_bytes",
    "storage_options",
    "unstrip",
    "upload_file",
    "write_bytes",
]
