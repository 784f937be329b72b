"""`vjepa serve` stopped with SIGTERM under load: requests finish or get 503, exit 0, no Ray left.

A real `vjepa serve` subprocess with a Ray of its own (so the test can check that every process
it started is gone afterwards), bounded loopback load from a few robots, SIGTERM in the middle.
The token variable ends with a newline, as a Kubernetes secret made `--from-file` does.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import psutil
import pytest
import torch

from serving.codec import pack

ROBOTS = 3
MAX_REQUESTS_PER_ROBOT = 200
TOKEN = "sigterm-token-123456"


def tiny_bundle(folder: Path) -> Path:
    from modeling.ac_predictor import ACPredictor, ac_tiny
    from modeling.encoder import VisionEncoder, tiny
    from modeling.world_model import WorldModel, WorldModelSpec, save_world_model

    spec = WorldModelSpec(
        64, 2, 2, (-1.0, -1.0), (1.0, 1.0), cem={"num_samples": 8, "num_elites": 2}
    )
    torch.manual_seed(0)
    predictor = ACPredictor(ac_tiny(action_dim=2, state_dim=2))
    return save_world_model(folder, WorldModel(VisionEncoder(tiny()), predictor, spec))


@dataclass(frozen=True)
class Outcome:
    started: float
    result: str  # an HTTP status, or the exception's type name


def robot_load(url: str, stop: threading.Event, outcomes: list[Outcome]) -> None:
    frame = np.zeros((64, 64, 3), np.uint8)
    body = pack({"frames": frame, "state": np.zeros(2, np.float32), "goal": frame})
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/msgpack"}
    with httpx.Client(timeout=60) as client:
        for _ in range(MAX_REQUESTS_PER_ROBOT):
            if stop.is_set():
                return
            started = time.monotonic()
            try:
                result = str(
                    client.post(f"{url}/v1/plan", content=body, headers=headers).status_code
                )
            except httpx.HTTPError as error:
                result = type(error).__name__
            outcomes.append(Outcome(started, result))
            if result != "200":
                time.sleep(0.05)


def wait_for_line(process: subprocess.Popen[str], words: str, timeout: float) -> None:
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if words in line:
            return
        if not line and process.poll() is not None:
            break
    pytest.fail(f"no {words!r} from vjepa serve (exit code {process.poll()})")


@pytest.mark.ray
def test_sigterm_under_load_drains_and_exits_0(tmp_path: Path) -> None:
    bundle = tiny_bundle(tmp_path / "arm")
    port = 19000 + os.getpid() % 1000
    env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
    env["VJEPA_SERVE_TOKEN"] = TOKEN + "\n"
    env["RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S"] = "60"  # a slow start on a busy 2-core machine
    command = [sys.executable, "-m", "flows.cli", "serve", "--checkpoint", f"arm={bundle}"]
    command += ["--port", str(port), "--num-cpus", "0.25", "--token-env", "VJEPA_SERVE_TOKEN"]
    stderr_path = tmp_path / "serve.stderr"
    with stderr_path.open("w") as stderr:
        process = subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True
        )
    try:
        wait_for_line(process, "serving arm", timeout=300)
        started_processes = psutil.Process(process.pid).children(recursive=True)
        stop, outcomes = threading.Event(), []
        url = f"http://127.0.0.1:{port}"
        robots = [
            threading.Thread(target=robot_load, args=(url, stop, outcomes), daemon=True)
            for _ in range(ROBOTS)
        ]
        for robot in robots:
            robot.start()
        deadline = time.monotonic() + 120
        while sum(o.result == "200" for o in outcomes) < 2 * ROBOTS:
            assert time.monotonic() < deadline, f"no load built up: {outcomes[-5:]}"
            time.sleep(0.1)
        terminated = time.monotonic()
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=120)
        stop.set()
        for robot in robots:
            robot.join(timeout=70)
        _, alive = psutil.wait_procs(started_processes, timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    last_lines = stderr_path.read_text().strip().splitlines()[-5:]
    before = [o.result for o in outcomes if o.started < terminated]
    after = [o.result for o in outcomes if o.started >= terminated]
    print(f"exit code {code}; last lines: {last_lines}")
    print(
        f"requests before SIGTERM: {sorted(set(before))} x{len(before)}, after: {sorted(set(after))} x{len(after)}"
    )
    assert code == 0, last_lines
    assert set(before) <= {"200", "503"}, before  # in flight at SIGTERM: finished or 503
    assert "500" not in after, after
    assert not alive, f"left behind: {[p.name() for p in alive if p.is_running()]}"
    assert last_lines[-1] == "stopped"
