"""The real `lerobot` library's side of the interop tests; runs in its own environment.

Run by `test_lerobot_interop.py` with the python of `infra/local/lerobot-env.sh` (lerobot 0.4.4,
CPU torch); it imports lerobot and numpy only, never the project.

    python lerobot_side.py read ROOT OUT.npz   # LeRobotDataset over a dataset the project wrote
    python lerobot_side.py write ROOT OUT.npz  # LeRobot records a two-camera dataset at ROOT

Both save what LeRobot itself decoded (frames uint8 (N, H, W, 3) per camera, states,
actions, episode indices) for the test to compare with the project's reader.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

CAMERAS = ("observation.images.top", "observation.images.wrist")
FPS = 10
SIZE = 64
EPISODES = 2
LENGTH = 12
GAIN = 0.1  # state[t+1] = state[t] + GAIN * action[t] on every dim


def _as_uint8(image: torch.Tensor) -> np.ndarray:
    """LeRobot's (C, H, W) float frame in [0, 1] -> (H, W, C) uint8."""
    return (image.permute(1, 2, 0).numpy() * 255.0).round().astype(np.uint8)


def _decode_all(dataset, cameras: list[str]) -> dict[str, np.ndarray]:  # type: ignore[no-untyped-def]
    rows = [dataset[index] for index in range(len(dataset))]
    out = {
        "states": np.stack([row["observation.state"].numpy() for row in rows]),
        "actions": np.stack([row["action"].numpy() for row in rows]),
        "episodes": np.array([int(row["episode_index"]) for row in rows]),
    }
    for camera in cameras:
        out[f"frames/{camera}"] = np.stack([_as_uint8(row[camera]) for row in rows])
    return out


def read(root: Path, out: Path) -> None:
    """Open the project's dataset with LeRobotDataset; normalise with LeRobot's processors."""
    from lerobot.configs.types import FeatureType, NormalizationMode, PolicyFeature
    from lerobot.datasets.lerobot_dataset import LeRobotDataset
    from lerobot.processor.converters import create_transition
    from lerobot.processor.core import TransitionKey
    from lerobot.processor.normalize_processor import NormalizerProcessorStep

    dataset = LeRobotDataset("vjepa/collected", root=root, video_backend="torchcodec")
    decoded = _decode_all(dataset, list(dataset.meta.video_keys))
    state_shape = tuple(dataset.meta.features["observation.state"]["shape"])
    features = {"observation.state": PolicyFeature(type=FeatureType.STATE, shape=state_shape)}
    for mode in (NormalizationMode.QUANTILES, NormalizationMode.QUANTILE10):
        step = NormalizerProcessorStep.from_lerobot_dataset(
            dataset, features, {FeatureType.STATE: mode}
        )
        states = torch.as_tensor(decoded["states"])
        transition = create_transition(observation={"observation.state": states})
        normalised = step(transition)[TransitionKey.OBSERVATION]["observation.state"]
        decoded[f"normalised/{mode.value}"] = normalised.numpy()
    np.savez(out, total_episodes=dataset.meta.total_episodes, **decoded)


def _frame(camera: int, episode: int, step: int) -> np.ndarray:
    """A bright square moving over a gradient; the wrist camera's square moves the other way."""
    y, x = np.mgrid[0:SIZE, 0:SIZE]
    image = np.stack([x * 3, y * 3, np.full_like(x, 40 + 60 * episode)], axis=-1)  # (H, W, 3)
    left = (4 + 4 * step) % (SIZE - 16) if camera == 0 else (SIZE - 20 - 3 * step) % (SIZE - 16)
    image[16:32, left : left + 16] = (250, 250 - 100 * camera, 30)
    return image.astype(np.uint8)


def write(root: Path, out: Path) -> None:
    """Record EPISODES episodes with two cameras (LeRobot's default AV1 encoding), 3-D state and
    a 4-D action whose last dim is zero-padded, as many LeRobot arms record."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    video = {"dtype": "video", "shape": (SIZE, SIZE, 3), "names": ["height", "width", "channels"]}
    features = {
        **{camera: video for camera in CAMERAS},
        "observation.state": {"dtype": "float32", "shape": (3,), "names": ["x", "y", "z"]},
        "action": {"dtype": "float32", "shape": (4,), "names": ["dx", "dy", "dz", "pad"]},
    }
    dataset = LeRobotDataset.create("vjepa/recorded", FPS, features, root=root, use_videos=True)
    rng = np.random.default_rng(0)
    for episode in range(EPISODES):
        state = rng.uniform(-1, 1, size=3).astype(np.float32)
        for step in range(LENGTH):
            action = np.zeros(4, dtype=np.float32)
            action[:3] = rng.uniform(-1, 1, size=3)
            frame = {camera: _frame(c, episode, step) for c, camera in enumerate(CAMERAS)}
            frame.update({"observation.state": state.copy(), "action": action, "task": "reach"})
            dataset.add_frame(frame)
            state = (state + GAIN * action[:3]).astype(np.float32)
        dataset.save_episode()
    dataset.finalize()
    reopened = LeRobotDataset("vjepa/recorded", root=root, video_backend="torchcodec")
    np.savez(out, **_decode_all(reopened, list(CAMERAS)))


if __name__ == "__main__":
    command, root, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    {"read": read, "write": write}[command](root, out)
