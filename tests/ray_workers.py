"""The Ray Train worker processes of this test run's own Ray cluster (for worker-kill tests).

Other sessions on a shared machine run Ray Train too: a worker counts only when this process
is among its ancestors (the test run started the cluster whose raylet forked it).
"""

from __future__ import annotations

import os


def _parent(pid: int) -> int:
    with open(f"/proc/{pid}/stat", "rb") as handle:
        # the command may hold spaces or parentheses: the parent pid follows the last ')'
        return int(handle.read().rsplit(b")", 1)[1].split()[1])


def _descends_from(pid: int, root: int) -> bool:
    while pid > 1:
        if pid == root:
            return True
        pid = _parent(pid)
    return False


def train_worker_pids() -> set[int]:
    """Pids of the live `RayTrainWorker` processes that descend from this process."""
    pids = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                if b"RayTrainWorker" in handle.read() and _descends_from(int(entry), os.getpid()):
                    pids.add(int(entry))
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
    return pids
