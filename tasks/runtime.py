"""Joining or starting Ray for commands run from a shell or a Prefect worker."""

from __future__ import annotations

import os


def ensure_ray(log_to_driver: bool = True) -> bool:
    """Start (or join, when `RAY_ADDRESS` is set) Ray unless it is running; True if started here.

    Locally Ray gets every core of the machine and no dashboard; in a cluster the
    address comes from `RAY_ADDRESS` (KubeRay sets it in RayJob submitters).
    """
    import ray

    if ray.is_initialized():
        return False
    if os.environ.get("RAY_ADDRESS"):
        ray.init(log_to_driver=log_to_driver)
    else:
        ray.init(include_dashboard=False, log_to_driver=log_to_driver)
    return True


def local_uri(uri: str) -> str:
    """Absolute form of a local path (Ray workers do not share the driver's cwd); URIs unchanged."""
    if "://" in uri:
        return uri
    return os.path.abspath(os.path.expanduser(uri))
