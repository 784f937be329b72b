"""Post-training on a chosen camera / state / action feature of a LeRobot dataset.

A two-camera copy of a recorded dataset (the second camera is the first one colour-inverted by
ffmpeg) shows that `camera` picks the frames, that the choice reaches the world-model spec,
and that a missing key is an error listing the dataset's features.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from modeling.checkpoints import save_model
from modeling.encoder import VisionEncoder, tiny
from tasks.robot.collect import CollectConfig, collect
from tasks.robot.lerobot_read import LeRobotFormatError
from tasks.robot.windows import iter_windows
from tasks.training.job import WorkerContext
from tasks.training.posttrain import PosttrainJob
from tasks.training.posttrain_config import PosttrainConfig, describe_dataset

TOP = "observation.images.top"
WRIST = "observation.images.wrist"


def _add_inverted_camera(root: Path) -> None:
    """A second video feature: every video of `TOP` negated, same timing and metadata."""
    for source in sorted((root / "videos" / TOP).rglob("*.mp4")):
        target = root / "videos" / WRIST / source.relative_to(root / "videos" / TOP)
        target.parent.mkdir(parents=True, exist_ok=True)
        command = ["ffmpeg", "-v", "error", "-i", str(source), "-vf", "negate"]
        subprocess.run(
            [*command, "-c:v", "libx264", "-pix_fmt", "yuv420p", str(target)], check=True
        )
    info_path = root / "meta" / "info.json"
    info = json.loads(info_path.read_text())
    info["features"][WRIST] = info["features"][TOP]
    info_path.write_text(json.dumps(info))
    for path in (root / "meta" / "episodes").rglob("*.parquet"):
        table = pq.read_table(path)
        for name in list(table.column_names):
            if name.startswith(f"videos/{TOP}/"):
                wrist_name = name.replace(TOP, WRIST)
                table = table.append_column(wrist_name, table.column(name))
        pq.write_table(table, path)


@pytest.fixture(scope="module")
def two_cameras(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("posttrain-features")
    torch.manual_seed(0)
    encoder = save_model(VisionEncoder(tiny()), root / "encoder.safetensors")
    data = root / "trajectories"
    collect(CollectConfig("vjepa/PointReach-v0", 4, str(data), steps_per_episode=6, seed=5))
    _add_inverted_camera(data)
    return encoder, data


def _config(inputs: tuple[Path, Path], **values: object) -> PosttrainConfig:
    encoder, data = inputs
    return PosttrainConfig(str(encoder), str(data), "unused", frames=2, rollout_steps=1, **values)  # type: ignore[arg-type]


def test_camera_picks_the_frames_and_is_recorded_in_the_spec(
    two_cameras: tuple[Path, Path],
) -> None:
    default = describe_dataset(_config(two_cameras))
    assert default.camera == TOP  # the first video feature, as before
    config = _config(two_cameras, camera=WRIST)
    facts = describe_dataset(config)
    assert facts.keys() == (WRIST, "observation.state", "action")
    episode = facts.train_episodes[:1]
    top = next(iter_windows(str(two_cameras[1]), default.windows(config), episode))
    wrist = next(iter_windows(str(two_cameras[1]), facts.windows(config), episode, *facts.keys()))
    np.testing.assert_array_equal(top["states"], wrist["states"])
    inverted = 255 - top["frames"].astype(int)
    assert np.abs(wrist["frames"].astype(int) - inverted).mean() < 6  # the negated camera
    assert np.abs(wrist["frames"].astype(int) - top["frames"].astype(int)).mean() > 50
    spec = PosttrainJob(config, facts, WorkerContext.local(), two_cameras[0]).spec()
    assert (spec.camera, spec.state_key, spec.action_key) == (WRIST, "observation.state", "action")


def test_state_and_action_keys_choose_the_columns(
    two_cameras: tuple[Path, Path], tmp_path: Path
) -> None:
    data = tmp_path / "renamed"
    shutil.copytree(two_cameras[1], data)
    for path in (data / "data").rglob("*.parquet"):
        table = pq.read_table(path)
        zeros = np.zeros((table.num_rows, 1))
        for source, name in (("observation.state", "obs.ee"), ("action", "act.delta")):
            padded = np.concatenate(  # a zero-padded dim, as LeRobot arms often record
                [np.asarray(table.column(source).to_pylist()), zeros], axis=1
            ).astype(np.float32)
            column = pa.FixedSizeListArray.from_arrays(pa.array(padded.reshape(-1)), 3)
            table = table.append_column(name, column)
        pq.write_table(table, path)
    info = json.loads((data / "meta/info.json").read_text())
    info["features"]["obs.ee"] = {**info["features"]["observation.state"], "shape": [3]}
    info["features"]["act.delta"] = {**info["features"]["action"], "shape": [3]}
    (data / "meta/info.json").write_text(json.dumps(info))
    (data / "meta/stats.json").unlink()  # bounds from the data columns
    inputs = (two_cameras[0], data)
    facts = describe_dataset(_config(inputs, state_key="obs.ee", action_key="act.delta"))
    assert (facts.state_key, facts.action_key, facts.action_dim) == ("obs.ee", "act.delta", 3)
    assert facts.state_dim == 3 and facts.action_scale is not None
    np.testing.assert_allclose(facts.action_scale, (0.05, 0.05, 0.0), atol=0.01)  # padded: 0
    with pytest.raises(LeRobotFormatError, match=r"no state feature 'joints'.*'obs.ee'"):
        describe_dataset(_config(inputs, state_key="joints"))
    with pytest.raises(LeRobotFormatError, match=rf"no video feature 'side'.*'{WRIST}'"):
        describe_dataset(_config(inputs, camera="side"))
