"""Interop with the real `lerobot` library (0.4.4, its own environment), both directions.

* LeRobot's `LeRobotDataset` opens a dataset written by `vjepa collect`: same rows, the same
  decoded frames, and its quantile normaliser (QUANTILES, QUANTILE10) accepts `meta/stats.json`.
* The project's reader opens a dataset LeRobot recorded (two cameras, AV1, a zero-padded action
  dim): the same frames per camera as LeRobot decodes, the same rows, a working action-scale fit.

Marker `lerobot` (excluded by default: the environment takes minutes to build the first time):
`.venv/bin/pytest -m lerobot tests/tasks/robot/test_lerobot_interop.py`.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tasks.robot.collect import CollectConfig, collect
from tasks.robot.lerobot_read import LeRobotReader
from tasks.training.posttrain_config import PosttrainConfig, describe_dataset

pytestmark = pytest.mark.lerobot

ROOT = Path(__file__).resolve().parents[3]
SIDE = Path(__file__).with_name("lerobot_side.py")
CAMERAS = ("observation.images.top", "observation.images.wrist")


@pytest.fixture(scope="module")
def lerobot_python() -> str:
    """The python of the lerobot environment, built by infra/local/lerobot-env.sh if needed."""
    script = ROOT / "infra" / "local" / "lerobot-env.sh"
    done = subprocess.run([str(script)], capture_output=True, text=True, timeout=1800)
    if done.returncode:
        pytest.fail(f"{script} failed:\n{done.stderr[-3000:]}")
    return done.stdout.strip().splitlines()[-1]


def _lerobot(python: str, command: str, root: Path, out: Path) -> dict[str, np.ndarray]:
    done = subprocess.run(
        [python, str(SIDE), command, str(root), str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    with np.load(out) as arrays:
        return dict(arrays)


def _ours(root: Path, camera: str | None = None) -> dict[str, np.ndarray]:
    reader = LeRobotReader(str(root), camera)
    episodes = [reader.read_episode(index) for index in reader.episode_indices]
    return {
        "frames": np.concatenate([e.frames for e in episodes]),  # (N, H, W, 3)
        "states": np.concatenate([e.states for e in episodes]),  # (N, S)
        "actions": np.concatenate([e.actions for e in episodes]),  # (N, A)
        "episodes": np.concatenate([np.full(len(e.states), e.index) for e in episodes]),
    }


def test_lerobot_reads_what_collect_wrote(lerobot_python: str, tmp_path: Path) -> None:
    root = tmp_path / "collected"
    collect(CollectConfig("vjepa/PointReach-v0", 3, str(root), steps_per_episode=8, seed=2))
    theirs = _lerobot(lerobot_python, "read", root, tmp_path / "read.npz")
    ours = _ours(root)
    assert int(theirs["total_episodes"]) == 3
    for name in ("states", "actions", "episodes"):
        np.testing.assert_array_equal(theirs[name], ours[name])
    np.testing.assert_array_equal(theirs[f"frames/{CAMERAS[0]}"], ours["frames"])  # identical
    stats = json.loads((root / "meta" / "stats.json").read_text())["observation.state"]
    for mode, (low, high) in {"QUANTILES": ("q01", "q99"), "QUANTILE10": ("q10", "q90")}.items():
        lo, hi = np.array(stats[low]), np.array(stats[high])
        expected = (ours["states"] - lo) / (hi - lo) * 2 - 1  # LeRobot's quantile mapping
        np.testing.assert_allclose(theirs[f"normalised/{mode}"], expected, atol=1e-4)


def test_reader_decodes_what_lerobot_recorded(lerobot_python: str, tmp_path: Path) -> None:
    root = tmp_path / "recorded"
    theirs = _lerobot(lerobot_python, "write", root, tmp_path / "write.npz")
    info = json.loads((root / "meta" / "info.json").read_text())
    assert info["features"][CAMERAS[1]]["info"]["video.codec"] == "av1"  # LeRobot's default
    for camera in CAMERAS:
        ours = _ours(root, camera)
        np.testing.assert_array_equal(ours["frames"], theirs[f"frames/{camera}"])
        for name in ("states", "actions", "episodes"):
            np.testing.assert_array_equal(ours[name], theirs[name])
    config = PosttrainConfig("unused", str(root), "unused", camera=CAMERAS[1])
    facts = describe_dataset(config)
    assert facts.keys() == (CAMERAS[1], "observation.state", "action")
    assert (facts.image_size, facts.state_dim, facts.action_dim) == (64, 3, 4)
    assert facts.action_scale is not None  # the zero-padded action dim no longer drops the fit
    np.testing.assert_allclose(facts.action_scale, (0.1, 0.1, 0.1, 0.0), atol=1e-4)
