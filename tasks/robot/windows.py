"""Windows of frames + states + actions at a fixed control rate, for action-conditioned training.

A window is `num_frames` frames taken every `stride` dataset frames, where
`stride = dataset_fps / control_fps` must be a whole number. Alignment:

    frames[k], states[k]  the observation at control step k
    actions[k]            the command from step k to step k + 1, aggregated over
                          the `stride` recorded actions between them (`mean` by
                          default: executing it `stride` times reproduces the
                          displacement of velocity/delta actions)

With `actions="between"` (default) a window has T - 1 actions; with `"all"` it
has T, the last one leading out of the window (so the window must fit in the
episode one stride earlier).

Consecutive windows start `shift` dataset frames apart (default 1: every
start, so resampling wastes no recorded frame).

`iter_windows` is a plain Python iterator; `window_dataset` gives a Ray Dataset
(one row per window) for training with `get_dataset_shard`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from tasks.robot.layout import ACTION_KEY, STATE_KEY
from tasks.robot.lerobot_read import Episode, LeRobotReader

if TYPE_CHECKING:
    import ray.data

Window = dict[str, Any]  # arrays, plus episode_index and start_frame as np.int64


@dataclass(frozen=True)
class WindowConfig:
    """How to cut episodes into windows."""

    num_frames: int = 8
    fps: float | None = None  # control rate; None keeps the dataset rate
    size: tuple[int, int] | None = (
        None  # (height, width), multiples of 16; None keeps the stored size
    )
    shift: int = 1  # dataset frames between the starts of consecutive windows
    actions: Literal["between", "all"] = "between"
    action_reduce: Literal["mean", "sum", "first", "last"] = "mean"

    def __post_init__(self) -> None:
        if self.num_frames < 2:
            raise ValueError(f"num_frames must be at least 2, got {self.num_frames}")
        if self.shift < 1:
            raise ValueError(f"shift must be at least 1, got {self.shift}")
        if self.size is not None and any(v < 16 or v % 16 for v in self.size):
            raise ValueError(f"size must be (height, width) multiples of 16, got {self.size}")
        if self.fps is not None and self.fps <= 0:
            raise ValueError(f"fps must be positive, got {self.fps}")
        if self.actions not in ("between", "all"):
            raise ValueError(f"actions must be 'between' or 'all', got {self.actions!r}")
        if self.action_reduce not in ("mean", "sum", "first", "last"):
            raise ValueError(f"unknown action_reduce {self.action_reduce!r}")


def frame_stride(dataset_fps: float, control_fps: float | None) -> int:
    """Dataset frames per control step; an error unless the dataset rate is a multiple."""
    if control_fps is None:
        return 1
    ratio = dataset_fps / control_fps
    stride = round(ratio)
    if stride < 1 or abs(ratio - stride) > 1e-6:
        rates = [
            f"{dataset_fps / k:g}" for k in range(1, int(dataset_fps) + 1) if dataset_fps % k == 0
        ]
        raise ValueError(
            f"the dataset runs at {dataset_fps:g} fps, which is not a whole multiple of the "
            f"requested control rate {control_fps:g}; pick one of {', '.join(rates[:8])}"
        )
    return stride


def _reduce(actions: np.ndarray, how: str) -> np.ndarray:
    """(K, stride, A) -> (K, A)."""
    if how == "mean":
        return actions.mean(axis=1)
    if how == "sum":
        return actions.sum(axis=1)
    return actions[:, 0] if how == "first" else actions[:, -1]


def episode_windows(episode: Episode, config: WindowConfig) -> Iterator[Window]:
    """Every window of `episode` (an `Episode` from `LeRobotReader.read_episode`)."""
    stride = frame_stride(episode.fps, config.fps)
    length = len(episode.states)
    steps = config.num_frames if config.actions == "all" else config.num_frames - 1
    span = (config.num_frames - 1) * stride + 1  # dataset frames a window touches
    needed = max(span, steps * stride)  # the "all" mode also needs the last action's rows
    for start in range(0, length - needed + 1, config.shift):
        picks = start + np.arange(config.num_frames) * stride  # (T,)
        raw = episode.actions[start : start + steps * stride]  # (steps * stride, A)
        actions = _reduce(raw.reshape(steps, stride, -1), config.action_reduce)  # (steps, A)
        yield {
            "frames": episode.frames[picks],  # (T, H, W, 3) uint8
            "states": episode.states[picks].astype(np.float32),  # (T, S)
            "actions": actions.astype(np.float32),  # (T - 1 or T, A)
            "timestamps": episode.timestamps[picks].astype(np.float32),  # (T,)
            "episode_index": np.int64(episode.index),
            "start_frame": np.int64(start),
        }


def iter_windows(
    uri: str,
    config: WindowConfig,
    episodes: Iterable[int] | None = None,
    video_key: str | None = None,
    state_key: str = STATE_KEY,
    action_key: str = ACTION_KEY,
) -> Iterator[Window]:
    """Windows of the dataset at `uri` (local or `s3://`), episode by episode."""
    reader = LeRobotReader(uri, video_key, state_key, action_key)
    frame_stride(reader.fps, config.fps)  # fail before decoding anything
    for index in reader.episode_indices if episodes is None else episodes:
        yield from episode_windows(reader.read_episode(index, config.size), config)


class EpisodeWindower:
    """The Ray `flat_map` step: an episode row `{"episode_index": i}` -> its windows.

    Plain callable (not an actor): Ray ships a copy per task, which opens the
    reader (info.json + episode metadata, small reads) on its first row and
    reuses it for the rest of that block.
    """

    def __init__(
        self,
        uri: str,
        config: WindowConfig,
        video_key: str | None = None,
        state_key: str = STATE_KEY,
        action_key: str = ACTION_KEY,
    ) -> None:
        self.uri = uri
        self.config = config
        self.keys = (video_key, state_key, action_key)
        self._reader: LeRobotReader | None = None

    def __call__(self, row: dict[str, Any]) -> list[Window]:
        if self._reader is None:
            self._reader = LeRobotReader(self.uri, *self.keys)
        episode = self._reader.read_episode(int(row["episode_index"]), self.config.size)
        return list(episode_windows(episode, self.config))

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_reader": None}  # readers hold caches; ship the recipe only


def window_dataset(
    uri: str,
    config: WindowConfig,
    episodes: Iterable[int] | None = None,
    video_key: str | None = None,
    state_key: str = STATE_KEY,
    action_key: str = ACTION_KEY,
) -> ray.data.Dataset:
    """A Ray Dataset with one row per window: `from_items` over episodes, then `flat_map`."""
    import ray.data

    reader = LeRobotReader(uri, video_key, state_key, action_key)
    frame_stride(reader.fps, config.fps)
    indices = reader.episode_indices if episodes is None else list(episodes)
    items = [{"episode_index": index} for index in indices]
    windower = EpisodeWindower(uri, config, reader.video_key, state_key, action_key)
    blocks = min(max(1, len(items)), 1024)  # one episode per block up to a cap: parallel decoding
    return ray.data.from_items(items, override_num_blocks=blocks).flat_map(windower)
