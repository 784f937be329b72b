"""`vjepa serve`: flag validation, the Serve config file, and (slow) a real run until Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from flows.cli import main
from serving.config import ServingConfig


def test_config_out_writes_a_deployable_serve_config(tmp_path: Path) -> None:
    target = tmp_path / "serve.yaml"
    code = main(
        [
            "serve",
            "--checkpoint",
            "arm=s3://models/arm",
            "--checkpoint",
            "cart=/models/cart",
            "--replicas",
            "2",
            "--max-replicas",
            "6",
            "--port",
            "9000",
            "--config-out",
            str(target),
        ]
    )
    assert code == 0
    loaded = yaml.safe_load(target.read_text())
    assert loaded["http_options"]["port"] == 9000
    # proxies started from the file run the guard (header limits, 503 for a dead ingress)
    proxy_env = loaded["controller_options"]["runtime_env"]["env_vars"]
    assert proxy_env["RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH"] == (
        "serving.proxy_guard:proxy_callback"
    )
    assert loaded["logging_config"] == {"enable_access_log": False}
    application = loaded["applications"][0]
    assert application["import_path"] == "serving.app:app_builder"
    config = ServingConfig.model_validate(application["args"])
    assert list(config.models) == ["arm", "cart"]
    assert config.token_env == "VJEPA_SERVE_TOKEN"  # templates always carry auth
    planner = next(d for d in application["deployments"] if d["name"] == "Planner")
    assert planner["autoscaling_config"] == {
        "min_replicas": 2,
        "max_replicas": 6,
        "target_ongoing_requests": 16.0,
    }


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--checkpoint", "a=/x", "--checkpoint", "a=/y"], "given twice"),
        (["--checkpoint", "bad name=/x"], "model name"),
        (["--checkpoint", "a=/x", "--replicas", "0"], "--replicas"),
        (["--checkpoint", "a=/x", "--token-env", "VJEPA_TEST_UNSET_VAR"], "not set"),
        (["--checkpoint", "a=/does/not/exist"], "not a bundle"),
    ],
)
def test_bad_flags_exit_2_with_a_message(
    flags: list[str], words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    os.environ.pop("VJEPA_TEST_UNSET_VAR", None)
    assert main(["serve", *flags]) == 2
    assert words in capsys.readouterr().err


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.7", "::", "robots.example"])
def test_a_non_loopback_host_without_a_token_is_refused(
    host: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "--checkpoint", "a=/does/not/exist", "--host", host]) == 2
    error = capsys.readouterr().err
    assert "--token-env" in error and "--insecure" in error and "other machines" in error


@pytest.mark.parametrize(
    "flags", [["--host", "0.0.0.0", "--insecure"], ["--host", "127.0.0.1"], ["--host", "::1"]]
)
def test_loopback_or_insecure_hosts_pass_the_exposure_check(
    flags: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "--checkpoint", "a=/does/not/exist", *flags]) == 2
    assert "not a bundle" in capsys.readouterr().err  # the next check, so this one passed


def test_access_log_is_off_unless_asked(tmp_path: Path) -> None:
    from flows.cli import build_parser
    from flows.commands.serve import build_config

    parser = build_parser()
    quiet = build_config(parser.parse_args(["serve", "--checkpoint", "a=/x"]), for_file=False)
    loud = parser.parse_args(["serve", "--checkpoint", "a=/x", "--access-log"])
    assert not quiet.access_log and build_config(loud, for_file=False).access_log


@pytest.mark.slow
@pytest.mark.ray
def test_serve_runs_until_interrupted(ray_cluster: None, tmp_path: Path) -> None:
    import ray
    import torch

    from modeling.ac_predictor import ACPredictor, ac_tiny
    from modeling.encoder import VisionEncoder, tiny
    from modeling.world_model import WorldModel, WorldModelSpec, save_world_model
    from serving.client import PlannerClient

    spec = WorldModelSpec(
        64, 2, 2, (-1.0, -1.0), (1.0, 1.0), cem={"num_samples": 8, "num_elites": 2}
    )
    torch.manual_seed(0)
    model = WorldModel(VisionEncoder(tiny()), ACPredictor(ac_tiny(action_dim=2, state_dim=2)), spec)
    bundle = save_world_model(tmp_path / "arm", model)
    port = 18000 + os.getpid() % 1000
    env = {
        **os.environ,
        "RAY_ADDRESS": ray.get_runtime_context().gcs_address,
        "VJEPA_SERVE_TOKEN": "cli-token-123456",
    }
    command = [sys.executable, "-m", "flows.cli", "serve", "--checkpoint", f"arm={bundle}"]
    command += ["--port", str(port), "--num-cpus", "0.25", "--token-env", "VJEPA_SERVE_TOKEN"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + 180
        line = ""
        while "serving arm" not in line and time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line and process.poll() is not None:
                break
        assert "serving arm" in line
        frame = np.zeros((64, 64, 3), np.uint8)
        with PlannerClient(f"http://127.0.0.1:{port}", "cli-token-123456") as client:
            assert client.plan(frame, np.zeros(2), frame).actions.shape == (2, 2)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
