"""Start-up of a command: boot Prefect's temporary API server while the command starts Ray.

Without `PREFECT_API_URL`, Prefect starts a temporary server (a uvicorn subprocess) the first
time a flow needs the API, and waits for it; Ray then starts only after that, so a short
command paid for both one after the other. `boot_prefect_early` starts that same server in a
background thread as soon as the command is known, and makes Prefect's own `start()` call wait
for the thread instead of starting a second one: the server and Ray boot side by side.

Ray itself is joined rather than started when one is running: `ray.init()` connects to the
cluster of the last `ray start` on this machine (or `RAY_ADDRESS`), see `tasks.runtime`.
"""

from __future__ import annotations

import os
import threading
from typing import Any

# The commands that run a Prefect flow (and so need the API).
PREFECT_COMMANDS = frozenset(
    {
        "align",
        "collect",
        "curate",
        "demo",
        "eval-planning",
        "eval-vqa",
        "make-tiny-lm",
        "posttrain",
        "pretrain",
        "probe",
    }
)
EARLY_ENV = "VJEPA_PREFECT_EARLY"  # "0" turns the background start off


def boot_prefect_early(command: str) -> bool:
    """Start Prefect's temporary server in the background when `command` will need it."""
    if command not in PREFECT_COMMANDS or os.environ.get(EARLY_ENV, "1") == "0":
        return False
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_ENABLED

    if PREFECT_API_URL.value() or not PREFECT_SERVER_EPHEMERAL_ENABLED.value():
        return False
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()  # the instance Prefect's clients use (port None)
    if server.running:
        return False
    _start_in_thread(server)
    return True


def _start_in_thread(server: Any) -> None:
    start = server.start
    failures: list[BaseException] = []

    def boot() -> None:
        try:
            start()
        except BaseException as error:  # re-raised (or retried) where Prefect waits
            failures.append(error)

    thread = threading.Thread(target=boot, name="prefect-server-boot", daemon=True)
    lock = threading.Lock()

    def wait(timeout: int | None = None) -> None:
        thread.join()
        with lock:  # Prefect's API client and its events client may both ask
            server.__dict__.pop("start", None)  # back to the class's method
            if failures:  # let Prefect try again in its own way, raising its own error
                failures.clear()
                server.running = False
                server.start(timeout)

    server.start = wait
    thread.start()
