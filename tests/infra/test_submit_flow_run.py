"""vjepa-submit-flow-run against a real Ray head with its Jobs API and token auth (slow).

The Ray head runs in its own process group (start_new_session) and is killed as a group at the
end; it never touches another Ray instance on the machine (every port is a free one).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import INFRA

SCRIPT = INFRA / "docker/submit-flow-run.sh"
PORT_FLAGS = (
    "--port", "--dashboard-port", "--dashboard-agent-listen-port", "--dashboard-agent-grpc-port",
    "--metrics-export-port", "--runtime-env-agent-port", "--ray-client-server-port",
    "--node-manager-port", "--object-manager-port",
)  # fmt: skip


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the head's process group, SIGKILL whatever is left after 20 s."""
    for sig, wait in ((signal.SIGTERM, 20.0), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                os.killpg(process.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.5)


def wait_until_jobs_run(address: str, timeout: float = 120.0) -> None:
    """The Jobs API answers and a trivial job succeeds (the job agent registers late)."""
    from ray.job_submission import JobStatus, JobSubmissionClient

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            client = JobSubmissionClient(address)
            job = client.submit_job(entrypoint="true")
            while client.get_job_status(job) not in (JobStatus.SUCCEEDED, JobStatus.FAILED):
                time.sleep(0.5)
            return
        except Exception:  # not up yet: connection refused, "no available agent"
            time.sleep(1.0)
    raise TimeoutError(f"the Ray Jobs API at {address} did not run a job in {timeout}s")


@pytest.fixture(scope="module")
def ray_head() -> Iterator[dict[str, str]]:
    ray = shutil.which("ray") or str(Path(sys.executable).parent / "ray")
    ports = free_ports(len(PORT_FLAGS))
    temp_dir = tempfile.mkdtemp(prefix="rsub", dir="/tmp")  # short: Unix socket paths
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": uuid.uuid4().hex}
    command = [ray, "start", "--head", "--block", "--num-cpus", "1", "--include-dashboard", "true"]
    command += ["--disable-usage-stats", "--temp-dir", temp_dir]
    command += [str(x) for pair in zip(PORT_FLAGS, ports, strict=True) for x in pair]
    process = subprocess.Popen(
        command,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    address = f"http://127.0.0.1:{ports[1]}"
    saved = {key: os.environ.get(key) for key in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")}
    try:
        os.environ.update({key: env[key] for key in saved})
        wait_until_jobs_run(address)
        yield {**env, "RAY_JOBS_ADDRESS": address}
    finally:
        stop_group(process)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        shutil.rmtree(temp_dir, ignore_errors=True)


def run_script(env: dict[str, str], *command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), *command], env=env, capture_output=True, text=True, timeout=300
    )


@pytest.mark.slow
def test_flow_run_becomes_a_ray_job_with_its_id(ray_head: dict[str, str]) -> None:
    env = {**ray_head, "PREFECT__FLOW_RUN_ID": "run-1", "PREFECT_API_URL": "http://p:4200/api"}
    probe = (
        "import os; names = ('PREFECT__FLOW_RUN_ID', 'PREFECT_API_URL'); "
        "print('SEEN', *map(os.environ.get, names), bool(os.environ.get('RAY_ADDRESS')))"
    )
    done = run_script(env, sys.executable, "-c", probe)
    assert done.returncode == 0, done.stderr
    assert "SEEN run-1 http://p:4200/api True" in done.stdout + done.stderr


@pytest.mark.slow
def test_a_failed_job_fails_the_pod(ray_head: dict[str, str]) -> None:
    done = run_script({**ray_head, "PREFECT__FLOW_RUN_ID": "run-2"}, "false")
    assert done.returncode == 1


@pytest.mark.slow
def test_stopping_the_pod_stops_the_ray_job(ray_head: dict[str, str]) -> None:
    from ray.job_submission import JobStatus, JobSubmissionClient

    env = {**ray_head, "PREFECT__FLOW_RUN_ID": "run-3"}
    process = subprocess.Popen(
        ["bash", str(SCRIPT), "sleep", "600"], env=env, stdout=subprocess.PIPE, text=True
    )
    client = JobSubmissionClient(ray_head["RAY_JOBS_ADDRESS"])
    deadline = time.monotonic() + 60
    running: list[str] = []
    while not running and time.monotonic() < deadline:
        jobs = [
            j for j in client.list_jobs() if (j.submission_id or "").startswith("prefect-run-3")
        ]
        running = [str(j.submission_id) for j in jobs if j.status == JobStatus.RUNNING]
        time.sleep(0.5)
    assert running, "the job never started"
    process.send_signal(signal.SIGTERM)  # what Kubernetes does when Prefect cancels the run
    assert process.wait(timeout=60) == 143
    deadline = time.monotonic() + 60
    while client.get_job_status(running[0]) != JobStatus.STOPPED and time.monotonic() < deadline:
        time.sleep(0.5)
    assert client.get_job_status(running[0]) == JobStatus.STOPPED
