"""What a post-training run is given: its config, and the facts of its robot dataset.

The driver checks both before Prefect and Ray start (`check_encoder`, `describe_dataset`), so a
missing checkpoint or unusable trajectories stop the command with a clear message; the workers
receive the same two frozen dataclasses as plain dicts.

Action bounds in the exported spec come from the dataset's `meta/stats.json`
(min/max of the recorded actions: the range the predictor has seen), with a
scan of the data parquet files when the stats are missing; the state's gain per
unit of action (`action_scale`, how planning rolls states forward) is fitted
from the recorded states and actions (`tasks.planning.dynamics`).
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Iterable
from typing import Any

import numpy as np

from modeling.ac_predictor import AC_PRESETS
from modeling.jepa import LRSchedule
from modeling.normalization import Normalizer
from tasks import storage
from tasks.planning.dynamics import action_bounds, fit_action_scale, read_state_actions
from tasks.robot.layout import ACTION_KEY, STATE_KEY
from tasks.robot.windows import WindowConfig
from tasks.training.stopping import StoppingRule

PRESETS = tuple(AC_PRESETS)  # names of the AC predictor preset functions
# CEM settings that plan in well under a second per step on a laptop CPU with the tiny models.
# Horizon 2 (states rolled by the fitted action_scale) reached PointReach goals more reliably than
# 1 in the demo's setting: success 0.975 vs 0.9, final distance 0.07 vs 0.11 over 4 seeds.
# Horizon 4 beats 2 on the suite's goals (40 random steps away, where the energy is flat far
# from the goal): PointReach success 0.80 vs 0.70, final distance 0.52x vs 0.63x random's
# (10 episodes, the 1500-step model); 256 samples instead of 128 added little (0.50x) at 3x
# the time.
# The noise floor (std / mean of the candidate energies) is far below a working model's spread
# (0.09 on ArmReach after 1500 steps) and far above a blind one's (0: an untrained residual
# predictor; ~2e-4 in issue 14's diagnosis): below it the planner does not move.
# The squared ("l2") energy instead of the paper's L1, chosen on the suite's tuned-on envs with
# the same predictors (20 episodes): final distance 0.30x vs 0.64x random's on PointReach,
# 0.56x vs 0.61x on ArmReach, 0.36x vs 0.46x on DistractorReach (docs/benchmarks.md).
CPU_CEM = {
    "num_samples": 128,
    "num_elites": 12,
    "num_iterations": 4,
    "horizon": 4,
    "min_relative_spread": 0.002,
    "energy": "l2",
}


@dataclasses.dataclass(frozen=True)
class PosttrainConfig:
    """Everything a post-training run needs; the CLI is a thin layer over it."""

    encoder: str
    trajectories: str
    output: str
    # With features encoded once, steps are cheap. One default for every env of the suite: on
    # ArmReach 300 steps left the shuffled-action gain at 0.034 and planning worse than random
    # (final distance 2.05 vs 0.80); 1500 gave gain 0.12, success 0.50 vs 0.00, distance 0.24.
    # DistractorReach (background motion) needs more: its gain stays ~0 up to 1250 steps and is
    # 0.030 at 2250, so the cap is 3000; the stopping rule ends runs that have plateaued.
    steps: int = 3000
    # The stopping rule (`tasks.training.stopping`): every `stop_every` steps the held-out
    # shuffled-action gain is measured; training stops once it has not risen by
    # `stop_min_improvement` for `stop_patience` evaluations; `steps` is the cap. 0: off.
    stop_every: int = 250
    stop_patience: int = 2
    stop_min_improvement: float = 0.005
    # No plateau counts before the gain has once reached this (the blind-model line,
    # tasks.planning.rollouts.MIN_ACTION_GAIN): a slow starter trains on, to the cap.
    stop_min_gain: float = 0.05
    batch_size: int = 16
    frames: int = 3
    rollout_steps: int = 2
    preset: str = "tiny"
    peak_lr: float = 3e-3
    weight_decay: float = 0.04
    holdout_fraction: float = 0.2
    image_size: int | None = None  # None: the dataset's (square) frame size
    fps: float | None = None  # control rate; None: the dataset's rate
    checkpoint_every: int = 50
    log_every: int = 10
    seed: int = 0
    resume: bool = False
    residual: bool = True  # the predictor learns the feature change (see ACPredictorConfig)
    # Actions and states reach the predictor as (x - mean) / std with the training dataset's
    # statistics (recorded in the world-model spec): one learning rate for +-0.2 rad and 0-512 px.
    normalize: bool = True
    # Train on features the frozen encoder computed once (`tasks.training.feature_cache`), kept
    # in `feature_cache` (None: OUTPUT/feature_cache) for reruns; False re-encodes every step.
    cache_features: bool = True
    feature_cache: str | None = None
    # LeRobot features to train on: the video feature (None: the dataset's first), state, action.
    camera: str | None = None
    state_key: str = STATE_KEY
    action_key: str = ACTION_KEY
    cem: dict[str, Any] = dataclasses.field(default_factory=lambda: dict(CPU_CEM))

    def __post_init__(self) -> None:
        if min(self.steps, self.batch_size, self.checkpoint_every, self.log_every) < 1:
            raise ValueError("steps, batch_size, checkpoint_every and log_every must be >= 1")
        if self.frames < 2 or not 1 <= self.rollout_steps <= self.frames - 1:
            raise ValueError(
                f"need frames >= 2 and 1 <= rollout_steps <= frames - 1, "
                f"got frames={self.frames}, rollout_steps={self.rollout_steps}"
            )
        self.stopping_rule()  # its own checks (every >= 0, patience >= 1)
        if self.preset not in PRESETS:
            raise ValueError(f"unknown AC predictor preset {self.preset!r}; choose from {PRESETS}")
        if not 0 < self.holdout_fraction < 1:
            raise ValueError(f"holdout_fraction must be in (0, 1), got {self.holdout_fraction}")
        if self.image_size is not None and (self.image_size < 16 or self.image_size % 16):
            raise ValueError(f"image_size must be a multiple of 16, got {self.image_size}")

    def stopping_rule(self) -> StoppingRule:
        return StoppingRule(
            self.stop_every, self.stop_patience, self.stop_min_improvement, self.stop_min_gain
        )

    def schedule(self) -> LRSchedule:
        warmup = max(1, self.steps // 20)
        decay = self.steps // 5
        return LRSchedule(warmup, self.steps - warmup - decay, decay, self.peak_lr, 1e-5, 1e-6)


@dataclasses.dataclass(frozen=True)
class DatasetFacts:
    """What the driver learns about the trajectories before training starts."""

    image_size: int
    fps: float
    state_dim: int
    action_dim: int
    action_low: tuple[float, ...]
    action_high: tuple[float, ...]
    train_episodes: tuple[int, ...]
    heldout_episodes: tuple[int, ...]
    total_frames: int = 0
    action_scale: tuple[float, ...] | None = None  # state change per action per control step
    action_scale_r2: float = 0.0
    decode_size: bool = True  # windows decoded at image_size; False: stored size, model resizes
    normalizer: Normalizer | None = None  # statistics of the recorded actions and states
    camera: str = ""  # the video feature resolved by the reader (config.camera or the first)
    state_key: str = STATE_KEY
    action_key: str = ACTION_KEY

    def __post_init__(self) -> None:
        if isinstance(self.normalizer, dict):  # `dataclasses.asdict` on its way to the workers
            stats = {key: tuple(value) for key, value in self.normalizer.items()}
            object.__setattr__(self, "normalizer", Normalizer(**stats))

    def keys(self) -> tuple[str, str, str]:
        """(video, state, action) feature names, as `iter_windows` / `window_dataset` take them."""
        return self.camera, self.state_key, self.action_key

    def decoded_bytes(self, config: PosttrainConfig) -> int:
        """An upper bound of the training windows' frames once decoded (frames overlap)."""
        frame = self.image_size * self.image_size * 3
        return self.total_frames * max(1, config.frames) * frame

    def windows(self, config: PosttrainConfig) -> WindowConfig:
        size = (self.image_size, self.image_size) if self.decode_size else None
        return WindowConfig(num_frames=config.frames, fps=self.fps, size=size)


def split_episodes(
    indices: Iterable[int], fraction: float, seed: int
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(train, held out): a seeded permutation, at least one episode on each side."""
    ordered = sorted(indices)
    if len(ordered) < 2:
        raise ValueError(
            f"need at least 2 episodes to hold some out, the dataset has {len(ordered)}"
        )
    count = min(len(ordered) - 1, max(1, round(fraction * len(ordered))))
    order = np.random.default_rng(seed).permutation(len(ordered))
    held = {ordered[i] for i in order[:count]}
    return tuple(i for i in ordered if i not in held), tuple(sorted(held))


def model_image_size(height: int, width: int, configured: int | None) -> tuple[int, bool]:
    """(model image size, whether windows are decoded at that size).

    Square frames of a multiple of 16 are used as they are. Others (a simulator's 100x75
    render, a 480x640 camera) keep their stored size in the windows and the model brings
    them to the largest multiple of 16 under the short side by the serving rule
    (`WorldModel.encode_frames`: short side resized, long side centre-cropped); said once.
    """
    if configured is not None:
        return configured, True
    if height == width and height % 16 == 0:
        return height, True
    size = max(16, min(height, width) // 16 * 16)
    if (height, width, size) not in _RESIZES_SAID:  # the CLI checks, then runs: one message
        _RESIZES_SAID.add((height, width, size))
        print(
            f"[posttrain] frames are {height}x{width}: resized to {size}x{size} by the serving "
            "rule (short side, centre crop); pass an image size to choose another",
            file=sys.stderr,
            flush=True,
        )
    return size, False


_RESIZES_SAID: set[tuple[int, int, int]] = set()  # (height, width, size) already announced


def describe_dataset(config: PosttrainConfig) -> DatasetFacts:
    """Image size, rates, dims, action bounds and the episode split; clear errors on bad data."""
    from tasks.robot.lerobot_read import LeRobotReader
    from tasks.robot.windows import frame_stride

    reader = LeRobotReader(config.trajectories, config.camera, config.state_key, config.action_key)
    fps = config.fps or reader.fps
    stride = frame_stride(reader.fps, fps)
    height, width = (int(v) for v in reader.info["features"][reader.video_key]["shape"][:2])
    image_size, decode_size = model_image_size(height, width, config.image_size)
    low, high = action_bounds(config.trajectories, reader.action_key)
    if any(h <= lo for lo, h in zip(low, high, strict=True)):
        high = [max(h, lo + 1e-3) for lo, h in zip(low, high, strict=True)]  # a constant action
    train, held = split_episodes(reader.episode_indices, config.holdout_fraction, config.seed)
    state_shape = reader.info["features"][reader.state_key]["shape"]
    states, actions, episodes = read_state_actions(
        config.trajectories, reader.state_key, reader.action_key
    )
    dynamics = fit_action_scale(states, actions, episodes, stride)
    normalizer = Normalizer.fit(actions, states) if config.normalize else None
    return DatasetFacts(
        image_size=image_size,
        fps=float(fps),
        state_dim=int(np.prod(state_shape)),
        action_dim=len(low),
        action_low=tuple(low),
        action_high=tuple(high),
        train_episodes=train,
        heldout_episodes=held,
        total_frames=int(reader.info.get("total_frames", 0)),
        action_scale=dynamics.scale,
        action_scale_r2=dynamics.r2,
        decode_size=decode_size,
        normalizer=normalizer,
        camera=reader.video_key,
        state_key=reader.state_key,
        action_key=reader.action_key,
    )


def check_encoder(uri: str) -> None:
    """A clear error before Ray starts when the encoder checkpoint is not there."""
    fs, path = storage.filesystem(uri)
    if not fs.exists(path):
        raise FileNotFoundError(f"encoder checkpoint not found: {uri}")
