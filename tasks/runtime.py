"""Joining or starting Ray for commands run from a shell or a Prefect worker."""

from __future__ import annotations

import logging
import os

# Ray Train V2 re-routes `print` in its workers through the root logger and, because Ray
# already wraps the workers' stderr, prints it as well: every progress line reached the
# driver twice. Our jobs print plain progress lines, so the patch is switched off (Ray
# propagates this variable from the driver to the train controller and its workers).
PRINT_PATCH_ENV = "RAY_TRAIN_ENABLE_PRINT_PATCH"
LOG_TO_DRIVER_ENV = "VJEPA_LOG_TO_DRIVER"
JOIN_ENV = "VJEPA_RAY_JOIN"  # "0": always start a private local Ray (shared machines, CI)
# Without a dashboard there is no State API; Ray Train's placement-group cleaner asks it
# whether the controller is alive every second and logs a warning each time it cannot.
NOISY_LOGGERS = ("ray.train.v2._internal.execution.controller.placement_group_cleaner",)


# Ray Train logs every `report` call ("Reporting training result N: TrainingReport(...)") at
# INFO under a logger named by its file's path; our jobs print their own progress lines.
CHATTY_TRAIN_FILE = ("train", "v2", "_internal", "execution", "context.py")


def quiet_ray_workers() -> None:
    """Worker setup hook: silence the known, harmless noise of a dashboard-less Ray."""
    import ray

    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    chatty = os.path.join(os.path.dirname(ray.__file__), *CHATTY_TRAIN_FILE)
    logging.getLogger(chatty).setLevel(logging.WARNING)


def ensure_ray(log_to_driver: bool | None = None) -> bool:
    """Start (or join, when `RAY_ADDRESS` is set) Ray unless it is running; True if started here.

    Locally Ray gets every core of the machine and no dashboard; in a cluster the
    address comes from `RAY_ADDRESS` (KubeRay sets it in RayJob submitters). Without it,
    `ray.init()` joins the cluster of the last `ray start` on this machine, if one runs
    (`VJEPA_RAY_JOIN=0` starts a private one instead).
    A local start that misses Ray's fixed 30 s registration window (a busy machine) is
    retried once.
    """
    import ray

    if ray.is_initialized():
        return False
    if log_to_driver is None:  # the CLI turns it off unless --verbose (flows/console.py)
        log_to_driver = os.environ.get(LOG_TO_DRIVER_ENV, "1") != "0"
    os.environ.setdefault(PRINT_PATCH_ENV, "0")
    if os.environ.get("RAY_ADDRESS"):
        ray.init(log_to_driver=log_to_driver)
        return True
    runtime_env = {"worker_process_setup_hook": f"{__name__}.quiet_ray_workers"}
    # None: Ray joins the last `ray start` cluster of this machine; "local": a private one. Ray
    # joins the address its `ray_current_cluster` file names without checking it answers, and a
    # killed head leaves that file behind (Ray then retries its GCS forever): join live ones only.
    joining = os.environ.get(JOIN_ENV, "1") != "0" and last_ray_start_is_alive()
    address = None if joining else "local"
    for attempt in range(2):
        try:
            ray.init(
                address=address,
                include_dashboard=False,
                log_to_driver=log_to_driver,
                runtime_env=runtime_env,
            )
            return True
        except Exception as error:
            if attempt or "timed out during startup" not in str(error):
                raise
            ray.shutdown()
            _kill_own_ray_processes()  # the half-started node's GCS and raylet
            from tasks.progress import warn

            warn("Ray did not start within its 30 s window (a busy machine); trying once more")
    return True


def last_ray_start_is_alive(timeout_s: float = 1.0) -> bool:
    """Whether the cluster of this machine's last `ray start` (Ray's `ray_current_cluster`
    file in its temp folder) accepts a connection on its GCS port."""
    import socket
    import tempfile

    root = os.environ.get("RAY_TMPDIR") or tempfile.gettempdir()
    try:
        with open(os.path.join(root, "ray", "ray_current_cluster")) as handle:
            host, _, port = handle.read().strip().rpartition(":")
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            return True
    except (OSError, ValueError):
        return False


def _kill_own_ray_processes() -> None:
    """Kill the Ray processes this process started (a failed start leaves them running)."""
    try:
        import psutil  # installed with peft/accelerate (the VQA stack)
    except ImportError:
        return
    for child in psutil.Process().children(recursive=True):
        try:
            if any(f"{os.sep}ray{os.sep}" in part for part in child.cmdline()):
                child.kill()
        except psutil.Error:
            continue


def local_uri(uri: str) -> str:
    """Absolute form of a local path (Ray workers do not share the driver's cwd); URIs unchanged."""
    if "://" in uri:
        return uri
    return os.path.abspath(os.path.expanduser(uri))
