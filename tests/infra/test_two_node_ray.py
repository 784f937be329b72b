"""Beyond one process: a real two-node Ray cluster on loopback loses its worker node mid-job.

A head node and a worker node, each started with `ray start` on ports and a temp dir of their
own (so the test never touches anyone else's Ray), run `vjepa curate` and `vjepa pretrain
--workers 2` submitted through the Ray Jobs API. Each node has 3 logical CPUs and a training
worker takes 2, so the two workers must sit on different nodes. Halfway through each job the
worker node's raylet is SIGKILLed; the node is started again a few seconds later.

- Curation: the Ray Data tasks on the lost node are retried; the manifest equals the one of an
  undisturbed run on the same inputs (same clips, shards and checksums).
- Pretraining: Ray Train restarts the worker group from the last checkpoint once both workers
  fit again; the run finishes with every step's metrics row exactly once.

The timeline (kill, node back, first step after the restart) is printed (`-s` shows it).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from flows.local_serve import free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]

BIN = Path(sys.executable).parent
CPUS_PER_NODE = 3
CPUS_PER_WORKER = 2  # two of them never fit on one node
STEPS, CHECKPOINT_EVERY = 16, 2
# Ray's start-up waits (dashboard, its modules, the GCS port) stretched for a loaded 2-core box.
SLOW_START = {"RAY_DASHBOARD_STARTUP_TIMEOUT_S": "600",
              "RAY_DASHBOARD_SUBPROCESS_MODULE_WAIT_READY_TIMEOUT": "300",
              "RAY_gcs_server_port_wait_time_s": "300",
              "RAY_agent_register_timeout_ms": "300000"}  # fmt: skip
# Ray 2.60 turns token authentication on for `ray start` once ~/.ray/auth_token exists (any
# earlier local `ray.init()` writes it); the state and Jobs clients of this process would then
# get 401. Loopback-only test nodes: say the mode explicitly, for the nodes and this process.
AUTH = {"RAY_AUTH_MODE": "disabled"}


def _node_ports() -> list[str]:
    """Every port a node opens, chosen free now; worker ports from a random block of 200."""
    base = random.Random(os.getpid() + time.time_ns()).randrange(20_000, 29_000, 200)
    flags = ("--node-manager-port", "--object-manager-port", "--metrics-export-port",
             "--dashboard-agent-listen-port", "--dashboard-agent-grpc-port",
             "--runtime-env-agent-port")  # fmt: skip
    ports = [f"{flag}={free_port()}" for flag in flags]
    return [*ports, f"--min-worker-port={base}", f"--max-worker-port={base + 199}"]


def _our_pids(marker: str) -> list[int]:
    """Processes whose command line holds `marker` (our temp dir or one node's port)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if marker in command and int(entry.name) != os.getpid():
                pids.append(int(entry.name))
    return pids


@dataclass
class Cluster:
    """Our own head + worker node; `stop` kills only processes that carry our temp dir."""

    temp_dir: str
    gcs_port: int = field(default_factory=free_port)
    dashboard_port: int = field(default_factory=free_port)
    worker_manager_port: int = 0
    seen: set[str] = field(default_factory=set)  # node ids already started

    def _ray_start(self, *args: str) -> None:
        command = [str(BIN / "ray"), "start", f"--temp-dir={self.temp_dir}",
                   f"--num-cpus={CPUS_PER_NODE}", "--disable-usage-stats", *args]  # fmt: skip
        env = {**os.environ, **SLOW_START, **AUTH}
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=900, check=False, env=env
        )
        # `ray start` gives a raylet 30 s (not configurable) to register; on a loaded machine it
        # registers later, its processes still running: then wait for the node ourselves.
        late = "timed out during startup" in done.stdout + done.stderr
        assert done.returncode == 0 or late, done.stdout + done.stderr

    def wait_for_new_node(self, head: bool, timeout: float = 600.0) -> None:
        """Until a head / worker node not seen before is alive (the GCS's view)."""
        from ray.util.state import list_nodes

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):  # the dashboard may still be starting
                # filtered server-side, dead nodes count as "missing output" (an exception)
                alive = list_nodes(address=self.address, filters=[("state", "=", "ALIVE")],
                                   raise_on_missing_output=False)  # fmt: skip
                new = [n.node_id for n in alive if n.is_head_node == head]
                new = [node for node in new if node not in self.seen]
                if new:
                    self.seen.add(new[0])
                    return
            time.sleep(1.0)
        raise AssertionError(f"no new Ray node (head={head}) alive after {timeout} s")

    def start_head(self, attempts: int = 3) -> None:
        """Start the head; on a loaded machine its raylet may die starting: retry afresh."""
        for attempt in range(attempts):
            self.gcs_port, self.dashboard_port = free_port(), free_port()
            self._ray_start("--head", "--node-ip-address=127.0.0.1", f"--port={self.gcs_port}",
                            "--include-dashboard=true", "--dashboard-host=127.0.0.1",
                            f"--dashboard-port={self.dashboard_port}",
                            f"--ray-client-server-port={free_port()}", *_node_ports())  # fmt: skip
            try:
                self.wait_for_new_node(head=True, timeout=240.0)
                return
            except AssertionError:
                if attempt == attempts - 1:
                    raise
                self.stop()

    def start_worker(self, attempts: int = 3) -> float:
        """Start the worker node; returns when it has registered (monotonic time)."""
        for attempt in range(attempts):
            ports = _node_ports()
            self.worker_manager_port = int(ports[0].split("=")[1])
            self._ray_start(f"--address=127.0.0.1:{self.gcs_port}",
                            "--node-ip-address=127.0.0.1", *ports)  # fmt: skip
            try:
                self.wait_for_new_node(head=False, timeout=240.0)
                break
            except AssertionError:
                if attempt == attempts - 1:
                    raise
        return time.monotonic()

    def kill_worker_raylet(self) -> float:
        """SIGKILL the worker node's raylet (found by its own node-manager port)."""
        marker = f"--node_manager_port={self.worker_manager_port}"
        raylets = [pid for pid in _our_pids(marker) if "raylet" in _command(pid)]
        assert len(raylets) == 1, f"expected one raylet with {marker}, found {raylets}"
        os.kill(raylets[0], signal.SIGKILL)
        return time.monotonic()

    def stop(self) -> None:
        for pid in _our_pids(self.temp_dir):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    @property
    def address(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    temp = tempfile.mkdtemp(prefix="vj2n-", dir="/tmp")  # short: Ray's socket paths are limited
    nodes = Cluster(temp)
    saved = {name: os.environ.get(name) for name in AUTH}
    os.environ.update(AUTH)
    try:
        nodes.start_head()
        nodes.start_worker()
        yield nodes
    finally:
        nodes.stop()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture(scope="module")
def client(cluster: Cluster) -> object:
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(cluster.address)


def _submit(client: object, entrypoint: list[str], home: Path) -> str:
    env = {"PREFECT_HOME": str(home / "prefect"), "PYTHONUNBUFFERED": "1",
           "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "600"}  # fmt: skip
    return str(
        client.submit_job(  # type: ignore[attr-defined]
            entrypoint=" ".join(entrypoint), runtime_env={"env_vars": env}
        )
    )


def _wait(
    client: object, job: str, until: Callable[[], bool] | None = None, timeout: float = 900.0
) -> str:
    """Poll the job until it ends (its status) or until `until()` holds ("RUNNING")."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = str(client.get_job_status(job))  # type: ignore[attr-defined]
        if status.endswith(("SUCCEEDED", "FAILED", "STOPPED")):
            return status.rsplit(".", 1)[-1]
        if until is not None and until():
            return "RUNNING"
        time.sleep(0.5)
    raise AssertionError(f"job {job} still running after {timeout} s")


def _logs(client: object, job: str) -> str:
    return str(client.get_job_logs(job))  # type: ignore[attr-defined]


def _curate(client: object, videos: Path, output: Path, home: Path) -> str:
    command = [str(BIN / "vjepa"), "curate", "--input", str(videos), "--output", str(output),
               "--fps", "4", "--frames", "4", "--size", "64", "--json"]  # fmt: skip
    return _submit(client, command, home)


def _manifest(output: Path) -> dict[str, object]:
    manifest = json.loads((output / "manifest.json").read_text())
    for volatile in ("created_at", "seconds", "started_at", "finished_at"):
        manifest.pop(volatile, None)
    return manifest


def _replace_worker(cluster: Cluster, delay: float = 3.0) -> tuple[float, float]:
    killed = cluster.kill_worker_raylet()
    time.sleep(delay)
    return killed, cluster.start_worker()


@dataclass(frozen=True)
class CalmRun:
    videos: Path
    output: Path
    seconds: float


@pytest.fixture(scope="module")
def calm(cluster: Cluster, client: object, tmp_path_factory: pytest.TempPathFactory) -> CalmRun:
    """The undisturbed curation: the reference manifest and the pretraining data."""
    from tasks.sample_videos import write_sample_videos

    root = tmp_path_factory.mktemp("two-node")
    write_sample_videos(str(root / "videos"), count=8, seconds=3.0, seed=5)
    started = time.monotonic()
    job = _curate(client, root / "videos", root / "calm", root)
    assert _wait(client, job) == "SUCCEEDED", _logs(client, job)
    return CalmRun(root / "videos", root / "calm", time.monotonic() - started)


def test_curate_survives_a_lost_node(
    cluster: Cluster, client: object, calm: CalmRun, tmp_path: Path
) -> None:
    started = time.monotonic()
    job = _curate(client, calm.videos, tmp_path / "stormy", tmp_path)
    halfway = _wait(client, job, until=lambda: time.monotonic() - started > calm.seconds / 2)
    assert halfway == "RUNNING", _logs(client, job)
    killed, back = _replace_worker(cluster)
    assert _wait(client, job) == "SUCCEEDED", _logs(client, job)
    print(f"\n[two-node] curate: undisturbed {calm.seconds:.1f} s; raylet killed at "
          f"{killed - started:.1f} s, node back {back - killed:.1f} s later, finished "
          f"{time.monotonic() - started:.1f} s")  # fmt: skip
    assert _manifest(tmp_path / "stormy") == _manifest(calm.output)


def test_pretrain_resumes_after_a_lost_node(
    cluster: Cluster, client: object, calm: CalmRun, tmp_path: Path
) -> None:
    from tasks.training.checkpoints import CheckpointStore

    data, output = calm.output, tmp_path / "run"
    command = [str(BIN / "vjepa"), "pretrain", "--data", str(data), "--output", str(output),
               "--workers", "2", "--cpus-per-worker", str(CPUS_PER_WORKER),
               "--max-failures", "3", "--steps", str(STEPS), "--batch-size", "2",
               "--checkpoint-every", str(CHECKPOINT_EVERY), "--json"]  # fmt: skip
    started = time.monotonic()
    job = _submit(client, command, tmp_path)
    store = CheckpointStore(str(output))
    halfway = _wait(client, job, until=lambda: (store.latest_step() or 0) >= STEPS // 2)
    assert halfway == "RUNNING", _logs(client, job)
    before = store.latest_step() or 0
    killed, back = _replace_worker(cluster)
    progressed = _wait(client, job, until=lambda: (store.latest_step() or 0) > before)
    resumed = time.monotonic() if progressed == "RUNNING" else None
    status = _wait(client, job)
    logs = _logs(client, job)
    assert status == "SUCCEEDED", logs
    steps = [int(row["step"]) for row in store.metrics()]
    recovery = "n/a" if resumed is None else f"{resumed - killed:.1f} s"
    print(f"\n[two-node] pretrain: checkpoint {before} when the raylet was killed at "
          f"{killed - started:.1f} s; node back {back - killed:.1f} s later; next checkpoint "
          f"{recovery} after the kill; finished {time.monotonic() - started:.1f} s")  # fmt: skip
    assert steps == list(range(1, STEPS + 1)), steps  # no step lost, none repeated
    assert before < STEPS  # the kill really happened mid-run
    summary = json.loads(logs.strip().splitlines()[-1])
    assert summary["steps"] == STEPS
