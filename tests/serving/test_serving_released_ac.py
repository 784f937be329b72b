"""Meta's released V-JEPA 2-AC layout -> `vjepa import-world-model` -> served, planned over HTTP.

The file is built like the official one (`src/hub/backbones.py`: `encoder` with
`module.backbone.` keys, `predictor` with `module.` keys and the always-built
`extrinsics_encoder`), with random weights and a TINY config of the same architecture.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import SecretStr

from flows.cli import main
from modeling.ac_predictor import ACPredictor, ac_tiny
from modeling.encoder import VisionEncoder, tiny
from modeling.world_model import load_world_model
from serving.client import PlannerClient
from serving.config import ServingConfig

from .conftest import run_app, small_replicas

TOKEN = "released-ac-token-0123456789"
DIMS = 7  # the paper's robot: 7-D end-effector state and 7-D delta actions


def released_modules() -> tuple[VisionEncoder, ACPredictor]:
    torch.manual_seed(7)
    encoder = VisionEncoder(tiny())
    config = ac_tiny(width=128, num_heads=2, mlp_hidden=512, action_dim=DIMS, state_dim=DIMS)
    return encoder.eval(), ACPredictor(config).eval()


def write_released_file(path: Path, extra: dict[str, torch.Tensor] | None = None) -> Path:
    """`{"encoder", "predictor", ...}` exactly as Meta's AC checkpoint lays them out."""
    encoder, predictor = released_modules()
    encoder_state = {f"module.backbone.{k}": v.clone() for k, v in encoder.state_dict().items()}
    encoder_state["module.backbone.pos_embed"] = torch.zeros(1, 16, 192)  # unused under RoPE
    predictor_state = {f"module.{k}": v.clone() for k, v in predictor.state_dict().items()}
    width = predictor.config.width
    predictor_state["module.extrinsics_encoder.weight"] = torch.randn(width, DIMS - 1)
    predictor_state["module.extrinsics_encoder.bias"] = torch.zeros(width)
    predictor_state.update(extra or {})
    payload = {"encoder": encoder_state, "predictor": predictor_state, "epoch": 315}
    torch.save(payload, path)
    return path


def test_defaults_are_the_papers_robot_and_the_weights_are_used(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_released_file(tmp_path / "vjepa2-ac-tiny.pt")
    assert main(["import-world-model", "--ac", str(source), "--output", str(tmp_path / "wm")]) == 0
    spec = json.loads((tmp_path / "wm" / "world_model.json").read_text())
    assert (spec["image_size"], spec["action_dim"], spec["state_dim"]) == (256, 7, 7)
    assert spec["control_fps"] == 4.0 and spec["action_high"] == [0.075] * 7
    assert spec["action_low"] == [-0.075] * 7
    assert spec["cem"] == {"num_samples": 800, "num_iterations": 10, "num_elites": 10, "horizon": 1}
    model = load_world_model(tmp_path / "wm")
    encoder, predictor = released_modules()
    for ours, theirs in ((model.encoder, encoder), (model.predictor, predictor)):
        for key, value in theirs.state_dict().items():
            assert torch.equal(ours.state_dict()[key], value), key
    assert "imported world model" in capsys.readouterr().out


def test_every_field_can_be_overridden(tmp_path: Path) -> None:
    source = write_released_file(tmp_path / "ac.pt")
    spec_json = json.dumps({"name": "franka-left", "camera": "observation.images.wrist"})
    args = ["--ac", str(source), "--output", str(tmp_path / "wm"), "--image-size", "64"]
    args += ["--fps", "5", "--action-bound", "0.05", "--cem", '{"num_samples": 64}']
    assert main(["import-world-model", *args, "--spec", spec_json]) == 0
    spec = json.loads((tmp_path / "wm" / "world_model.json").read_text())
    assert (spec["image_size"], spec["control_fps"], spec["name"]) == (64, 5.0, "franka-left")
    assert spec["action_high"] == [0.05] * 7 and spec["camera"] == "observation.images.wrist"
    assert spec["cem"]["num_samples"] == 64 and spec["cem"]["num_iterations"] == 10
    assert load_world_model(tmp_path / "wm").predictor.config.grid_height == 4  # 64 px / 16


def test_strict_loading_names_the_bad_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    extra = {"module.gripper_head.weight": torch.zeros(2)}
    source = write_released_file(tmp_path / "ac.pt", extra)
    assert main(["import-world-model", "--ac", str(source), "--output", str(tmp_path / "o")]) == 1
    assert "unexpected keys: gripper_head.weight" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    torch.save({"encoder": {}}, tmp_path / "encoder_only.pt")
    code = main(["import-world-model", "--ac", str(tmp_path / "encoder_only.pt"), "--output", "x"])
    assert code == 1 and "not a V-JEPA 2-AC checkpoint" in capsys.readouterr().err
    args = ["--ac", str(tmp_path / "ac.pt"), "--output", "x", "--spec", '{"action_dim": 3}']
    write_released_file(tmp_path / "ac.pt")
    assert main(["import-world-model", *args]) == 2  # a usage error: the weights say 7
    assert "action_dim 3 disagrees with the checkpoint's predictor (7)" in capsys.readouterr().err


@pytest.mark.ray
def test_imported_model_plans_over_http_like_in_process(ray_cluster: None, tmp_path: Path) -> None:
    source = write_released_file(tmp_path / "ac.pt")
    cem = '{"num_samples": 32, "num_iterations": 3, "num_elites": 4}'
    args = ["--ac", str(source), "--output", str(tmp_path / "wm"), "--image-size", "64"]
    assert main(["import-world-model", *args, "--cem", cem]) == 0
    rng = np.random.default_rng(0)
    frame, goal = rng.integers(0, 255, (2, 64, 64, 3), dtype=np.uint8)
    state = rng.normal(size=DIMS).astype(np.float32)  # a 7-D end-effector state
    config = ServingConfig(
        models={"franka": str(tmp_path / "wm")},
        token=SecretStr(TOKEN),
        cache_dir=str(tmp_path / "cache"),
        planner=small_replicas(),
        embedder=small_replicas(),
        ingress=small_replicas(num_cpus=0.05),
    )
    with run_app(config) as url, PlannerClient(url, TOKEN) as client:
        served = client.plan(frame, state, goal, seed=11)
    model = load_world_model(tmp_path / "wm")
    local = model.plan(
        torch.from_numpy(frame)[None, None],  # (1, 1, H, W, 3)
        torch.from_numpy(state)[None, None],  # (1, 1, 7)
        torch.from_numpy(goal)[None],  # (1, H, W, 3)
        generator=torch.Generator().manual_seed(11),
    )
    assert served.actions.shape == (1, DIMS)  # horizon 1, 7-D delta actions
    assert np.all(np.abs(served.actions) <= 0.075 + 1e-6)
    np.testing.assert_allclose(served.energy, float(local.energy[0]), rtol=1e-5)
    np.testing.assert_allclose(served.actions, local.plan[0].numpy(), rtol=1e-5, atol=1e-7)
