"""Ray Train wiring: a real TorchTrainer, a killed worker, resume from our checkpoints."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import cloudpickle
import numpy as np
import pytest
import torch

from tasks.training.checkpoints import CheckpointStore
from tasks.training.launch import ScaleConfig, fit
from tasks.training.loop import LoopConfig, run_loop

pytestmark = pytest.mark.ray
cloudpickle.register_pickle_by_value(sys.modules[__name__])


class RegressionJob:
    """Least squares on a fixed linear target; sleeps a little so a test can kill it mid-run."""

    def __init__(self, sleep: float) -> None:
        torch.manual_seed(0)
        self.model = torch.nn.Linear(4, 1)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.1)
        self.sleep = sleep

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])

    def train_step(self, batch: Any, step: int) -> dict[str, float]:
        time.sleep(self.sleep)
        loss = torch.nn.functional.mse_loss(
            self.model(batch["x"].float()).squeeze(-1), batch["y"].float()
        )
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return {"loss": float(loss), "pid": float(os.getpid())}


def regression_loop(config: dict[str, Any]) -> None:
    import ray.train

    shard = ray.train.get_dataset_shard("train")
    run_loop(
        RegressionJob(config["sleep"]),
        lambda epoch: shard.iter_torch_batches(batch_size=16),
        CheckpointStore(config["output"]),
        LoopConfig(total_steps=config["steps"], checkpoint_every=config["every"], log_every=5),
        is_writer=ray.train.get_context().get_world_rank() == 0,
        report=ray.train.report,
    )


def _dataset() -> Any:
    import ray.data

    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype(np.float32)
    y = x @ np.array([1.0, -2.0, 0.5, 3.0], dtype=np.float32)
    return ray.data.from_items([{"x": x[i], "y": y[i]} for i in range(64)])


DEFAULT_SCALE = ScaleConfig(num_workers=1, max_failures=2)


def _run(
    output: str,
    steps: int,
    sleep: float = 0.0,
    scale: ScaleConfig = DEFAULT_SCALE,
    dataset: Any = None,
) -> None:
    fit(
        regression_loop,
        {"output": output, "steps": steps, "every": 10, "sleep": sleep},
        output_uri=output,
        name="regression",
        scale=scale,
        datasets={"train": _dataset() if dataset is None else dataset},
    )


def test_trains_and_resumes(ray_cluster: None, tmp_path: Path) -> None:
    output = str(tmp_path / "run")
    _run(output, steps=20)
    store = CheckpointStore(output)
    assert store.latest_step() == 20
    _run(output, steps=40)  # a second job on the same output continues at step 20
    losses = [row["loss"] for row in store.metrics()]
    assert [row["step"] for row in store.metrics()] == list(range(1, 41))
    assert np.mean(losses[-5:]) < 0.1 * np.mean(losses[:5])
    assert store.load()["position"]["step"] == 40


def test_killed_worker_resumes_without_lost_or_repeated_steps(
    ray_cluster: None, s3_bucket: str
) -> None:
    output = f"{s3_bucket}/killed"
    store = CheckpointStore(output)
    runner = threading.Thread(target=_run, args=(output, 60, 0.05))
    runner.start()
    deadline = time.monotonic() + 120
    while (store.latest_step() or 0) < 20 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert (store.latest_step() or 0) >= 20, "training made no progress"
    worker_pid = int(store.metrics()[-1]["pid"])  # the job records its worker's pid
    assert worker_pid != os.getpid()
    os.kill(worker_pid, signal.SIGKILL)
    runner.join(timeout=180)
    assert not runner.is_alive()
    rows = store.metrics()
    assert [row["step"] for row in rows] == list(range(1, 61))
    assert len({row["pid"] for row in rows}) == 2, "the worker was not replaced"
    assert store.latest_step() == 60


def test_a_worker_may_take_every_cpu_when_the_data_is_materialised(
    ray_cluster: None, tmp_path: Path
) -> None:
    output = str(tmp_path / "all-cpus")
    _run(output, steps=10, scale=ScaleConfig(num_workers=1, cpus_per_worker=2))  # from_items
    assert [row["step"] for row in CheckpointStore(output).metrics()] == list(range(1, 11))


@pytest.mark.parametrize(
    ("workers", "cpus", "message"),
    [
        (1, 2.0, "leaving none for Ray Data to read train"),  # used to hang with no message
        (3, 1.0, "need 3 CPUs; this Ray cluster has 2"),
    ],
)
def test_workers_that_cannot_run_are_a_clear_error(
    ray_cluster: None, tmp_path: Path, workers: int, cpus: float, message: str
) -> None:
    streamed = _dataset().map_batches(lambda batch: batch)  # Ray Data work left to do
    scale = ScaleConfig(num_workers=workers, cpus_per_worker=cpus)
    with pytest.raises(ValueError, match=message):
        _run(str(tmp_path / "refused"), steps=10, scale=scale, dataset=streamed)
    assert CheckpointStore(str(tmp_path / "refused")).latest_step() is None
