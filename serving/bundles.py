"""Model files for replicas: local paths as they are, remote URIs (`s3://`) copied to a cache.

The copy is `storage.cached_copy`: made into a temporary folder and renamed into place, so
replicas that start together on one node never read a half-written bundle.
"""

from __future__ import annotations

from pathlib import Path

import storage
from modeling.world_model import (
    ENCODER_FILE,
    PREDICTOR_FILE,
    SPEC_FILE,
    WorldModel,
    load_world_model,
)

BUNDLE_FILES = (SPEC_FILE, ENCODER_FILE, PREDICTOR_FILE)


def local_path(uri: str, cache_dir: str, names: tuple[str, ...] = ()) -> Path:
    """A local path holding `uri` (a file, or a folder restricted to `names` if given)."""
    return storage.cached_copy(uri, cache_dir, names)


def fetch_world_model(uri: str, cache_dir: str) -> WorldModel:
    """Load a world model bundle from a local folder or a remote prefix."""
    return load_world_model(local_path(uri, cache_dir, BUNDLE_FILES))
