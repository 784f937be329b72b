"""Roll out a policy in any Gymnasium env and record the episodes in the LeRobot v3.0 layout.

The env must render `rgb_array` frames and have a Box action space. Its
low-dimensional state is `info["state"]` when the env provides it, else a Box
observation. Policies follow the small `Policy` protocol; `random` is built in
and `module:Class` names plug in others (constructed as `Class(action_space, seed)`).

Recorded alignment: row t holds frame t, state t and the action taken at t,
which moves the env to frame t + 1. The observation after the last action is
not stored, so an episode of K steps has K rows.
"""

from __future__ import annotations

import importlib
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import gymnasium as gym
import numpy as np
from gymnasium import spaces

import tasks.robot  # noqa: F401  (registers vjepa/PointReach-v0)
from tasks import storage
from tasks.robot.layout import DEFAULT_VIDEO_KEY, ChunkLimits, DatasetSpec
from tasks.robot.lerobot import LeRobotWriter, prepare_output
from tasks.robot.video import EncoderSettings


class Policy(Protocol):
    """Maps an observation (and the env's info) to an action inside the env's Box."""

    def reset(self, seed: int | None = None) -> None: ...

    def act(self, observation: Any, info: dict[str, Any]) -> np.ndarray: ...


class RandomPolicy:
    """Uniform actions inside the Box bounds, reproducible from the seed."""

    def __init__(self, action_space: spaces.Box, seed: int | None = None) -> None:
        if not (np.all(np.isfinite(action_space.low)) and np.all(np.isfinite(action_space.high))):
            raise ValueError("the random policy needs a bounded Box action space")
        self.action_space = action_space
        self._rng = np.random.default_rng(seed)

    def reset(self, seed: int | None = None) -> None:
        if seed is not None:
            self._rng = np.random.default_rng(seed)

    def act(self, observation: Any, info: dict[str, Any]) -> np.ndarray:
        low, high = self.action_space.low, self.action_space.high
        return self._rng.uniform(low, high).astype(self.action_space.dtype)


class CollectError(ValueError):
    """The env or policy cannot be recorded (no Box actions, no state, bad frames)."""


def _import(module_name: str, spec: str) -> Any:
    try:
        return importlib.import_module(module_name)
    except ImportError as error:
        raise CollectError(
            f"cannot import module {module_name!r} from {spec!r}: {error}"
        ) from error


def _load_attribute(spec: str) -> Any:
    module_name, _, attribute = spec.partition(":")
    module = _import(module_name, spec)
    if not hasattr(module, attribute):
        raise CollectError(f"module {module_name!r} has no attribute {attribute!r} ({spec!r})")
    return getattr(module, attribute)


def make_env(
    spec: str, env_kwargs: dict[str, Any] | None = None, state: StateSpec | None = None
) -> gym.Env[Any, Any]:
    """A registered id (`vjepa/PointReach-v0`) or `module:Class`, with `render_mode="rgb_array"`.

    A namespaced id whose namespace is not registered (`package/Env-v0`) imports `package`
    (which registers it) and retries. MuJoCo envs render headless: `MUJOCO_GL` defaults to
    `egl`. `state` chooses the low-dimensional state (`info["state"]`) from the observation.
    """
    os.environ.setdefault("MUJOCO_GL", "egl")  # before gymnasium imports mujoco
    kwargs = {"render_mode": "rgb_array", **(env_kwargs or {})}
    name = spec
    if ":" in spec:
        module_name, _, name = spec.partition(":")
        candidate = getattr(_import(module_name, spec), name, None)
        if isinstance(candidate, type):
            return with_state(candidate(**kwargs), state)
        # Otherwise Gymnasium's own `module:EnvId` form: importing the module registered the id.
    try:
        return with_state(_make_registered(name, kwargs), state)
    except (gym.error.Error, ImportError) as error:
        raise CollectError(
            f"unknown env {spec!r}: give a registered Gymnasium id (e.g. vjepa/PointReach-v0), "
            f"package/Env-v0 (the package registers it) or module:Class ({error})"
        ) from error


def _make_registered(name: str, kwargs: dict[str, Any]) -> gym.Env[Any, Any]:
    """`gym.make`, importing the package a namespaced id names when the namespace is unknown."""
    namespace = name.split("/", 1)[0] if "/" in name else None
    known = {env_id.split("/", 1)[0] for env_id in gym.registry if "/" in env_id}
    if namespace is not None and namespace not in known:
        importlib.import_module(namespace.replace("-", "_"))
    return gym.make(name, **kwargs)


def make_policy(name: str, action_space: spaces.Box, seed: int | None) -> Policy:
    """`random` or `module:Class` (called as `Class(action_space, seed)`)."""
    if name == "random":
        return RandomPolicy(action_space, seed)
    if ":" not in name:
        raise CollectError(f"unknown policy {name!r}: use 'random' or module:Class")
    factory = _load_attribute(name)
    return factory(action_space, seed)  # type: ignore[no-any-return]


def check_env(env: gym.Env[Any, Any]) -> spaces.Box:
    """The env's Box action space, or a clear error."""
    if not isinstance(env.action_space, spaces.Box):
        raise CollectError(
            f"{type(env.unwrapped).__name__} has a {type(env.action_space).__name__} action space; "
            "vjepa collect records continuous (Box) actions only"
        )
    return env.action_space


def extract_state(observation: Any, info: dict[str, Any], observation_space: Any) -> np.ndarray:
    """The low-dim state (S,): `info["state"]`, else a Box observation, else an error."""
    if "state" in info:
        return np.asarray(info["state"], dtype=np.float32).reshape(-1)
    if isinstance(observation_space, spaces.Box):
        return np.asarray(observation, dtype=np.float32).reshape(-1)
    raise CollectError(
        f"no state: the env gives no info['state'] and its observation space is "
        f"{type(observation_space).__name__}, not Box; expose the state in info['state']"
    )


@dataclass(frozen=True)
class StateSpec:
    """The robot state taken from the observation: some of its dims, or a function of it.

    `dims` picks observation indices; `function` (`module:function`) is called as
    `function(observation, info)` and returns the state. Either replaces `info["state"]`.
    """

    dims: tuple[int, ...] | None = None
    function: str | None = None

    def __post_init__(self) -> None:
        if (self.dims is None) == (self.function is None):
            raise CollectError("a state mapping needs exactly one of state dims or a function")
        if self.function is not None and ":" not in self.function:
            raise CollectError(f"state function {self.function!r} must be module:function")

    def mapper(self) -> Callable[[Any, dict[str, Any]], np.ndarray]:
        if self.function is not None:
            function = _load_attribute(self.function)
            return lambda observation, info: np.asarray(function(observation, info), np.float32)
        dims = list(self.dims or ())
        return lambda observation, info: np.asarray(observation, np.float32).reshape(-1)[dims]


class StateWrapper(gym.Wrapper[Any, Any, Any, Any]):
    """Puts the mapped state into `info["state"]` after every reset and step."""

    def __init__(self, env: gym.Env[Any, Any], spec: StateSpec) -> None:
        super().__init__(env)
        self._map = spec.mapper()

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        observation, info = self.env.reset(**kwargs)
        return observation, {**info, "state": self._map(observation, info)}

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
        observation, reward, terminated, truncated, info = self.env.step(action)
        return (
            observation,
            reward,
            terminated,
            truncated,
            {**info, "state": self._map(observation, info)},
        )


def with_state(env: gym.Env[Any, Any], state: StateSpec | None) -> gym.Env[Any, Any]:
    return env if state is None else StateWrapper(env, state)


@dataclass
class EpisodeData:
    """One rollout: frames (T, H, W, 3) uint8, states (T, S), actions (T, A), float32."""

    frames: np.ndarray
    states: np.ndarray
    actions: np.ndarray
    total_reward: float
    terminated: bool


def render_frame(env: Any) -> np.ndarray:
    """The env's `rgb_array` frame as a C-contiguous `(H, W, 3)` uint8 array.

    MuJoCo's renderer returns a flipped view (negative strides), which torch cannot wrap.
    """
    frame = env.render()
    if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[2] != 3:
        raise CollectError(
            "env.render() must return an (H, W, 3) array; create the env with render_mode='rgb_array'"
        )
    return np.ascontiguousarray(frame, dtype=np.uint8)


def rollout(env: gym.Env[Any, Any], policy: Policy, steps: int, seed: int) -> EpisodeData:
    """Run up to `steps` actions from `env.reset(seed=seed)`; stops early when the env ends."""
    observation, info = env.reset(seed=seed)
    # A seed of its own: the same seed as the env would replay the env's own random draws.
    policy.reset(int(np.random.SeedSequence([seed, 1]).generate_state(1)[0]))
    frames, states, actions = [], [], []
    total_reward, ended = 0.0, False
    for _ in range(steps):
        frames.append(render_frame(env))
        states.append(extract_state(observation, info, env.observation_space))
        action = np.asarray(policy.act(observation, info), dtype=np.float32)
        actions.append(action.reshape(-1))
        observation, reward, terminated, truncated, info = env.step(action)
        total_reward += float(reward)
        if terminated or truncated:
            ended = bool(terminated)
            break
    return EpisodeData(
        frames=np.stack(frames),  # (T, H, W, 3)
        states=np.stack(states),  # (T, S)
        actions=np.stack(actions),  # (T, A)
        total_reward=total_reward,
        terminated=ended,
    )


@dataclass(frozen=True)
class CollectConfig:
    """What `vjepa collect` records."""

    env: str
    episodes: int
    output: str
    policy: str = "random"
    steps_per_episode: int = 50
    fps: int | None = None  # None: the env's own `metadata["render_fps"]` (10 if it has none)
    seed: int = 0
    task: str | None = None
    overwrite: bool = False
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    limits: ChunkLimits = field(default_factory=ChunkLimits)
    state: StateSpec | None = None  # None: info["state"], else the Box observation

    def __post_init__(self) -> None:
        if self.episodes < 1:
            raise CollectError("episodes must be at least 1")
        if self.steps_per_episode < 1:
            raise CollectError("steps per episode must be at least 1")
        if self.fps is not None and self.fps < 1:
            raise CollectError("fps must be a positive integer")


@dataclass(frozen=True)
class CollectSummary:
    """What a collection produced (the `--json` payload)."""

    output: str
    env: str
    policy: str
    episodes: int
    frames: int
    fps: int
    video_key: str
    image_height: int
    image_width: int
    state_dim: int
    action_dim: int
    mean_episode_length: float
    mean_reward: float
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


ProgressFn = Callable[[int, int, EpisodeData], None]


def env_fps(config: CollectConfig, env: gym.Env[Any, Any]) -> int:
    """The recording rate: the configured one, else the env's own frame rate, else 10."""
    if config.fps is not None:
        return config.fps
    rate = (getattr(env, "metadata", None) or {}).get("render_fps")
    return max(1, round(float(rate))) if rate else 10


def _spec_for(config: CollectConfig, first: EpisodeData, env: gym.Env[Any, Any]) -> DatasetSpec:
    height, width = first.frames.shape[1:3]
    env_spec = getattr(env, "spec", None)
    return DatasetSpec(
        fps=env_fps(config, env),
        state_dim=first.states.shape[1],
        action_dim=first.actions.shape[1],
        height=height,
        width=width,
        video_key=DEFAULT_VIDEO_KEY,
        robot_type=env_spec.id if env_spec is not None else type(env.unwrapped).__name__,
    )


def validate(config: CollectConfig) -> None:
    """Fail fast, before any episode runs: output free, env and policy usable, frames and state."""
    fs, path = storage.filesystem(config.output)
    if not config.overwrite and fs.exists(path) and (fs.isfile(path) or fs.ls(path)):
        raise FileExistsError(
            f"{config.output} already exists and is not empty; choose a new output or overwrite "
            "it (CLI: --overwrite)"
        )
    env = make_env(config.env, config.env_kwargs, config.state)
    try:
        action_space = check_env(env)
        make_policy(config.policy, action_space, config.seed)
        observation, info = env.reset(seed=config.seed)
        height, width = render_frame(env).shape[:2]
        if height % 2 or width % 2:
            raise CollectError(f"frames are {width}x{height}; h264 in mp4 needs even sizes")
        extract_state(observation, info, env.observation_space)
    finally:
        env.close()


def _record(
    config: CollectConfig, env: gym.Env[Any, Any], progress: ProgressFn | None
) -> tuple[LeRobotWriter, list[float]]:
    """Roll out and write every episode; the writer is made from the first episode's shapes."""
    policy = make_policy(config.policy, check_env(env), config.seed)
    task = config.task or f"{config.env} ({config.policy} policy)"
    writer: LeRobotWriter | None = None
    rewards: list[float] = []
    try:
        for episode in range(config.episodes):
            data = rollout(env, policy, config.steps_per_episode, config.seed + episode)
            if writer is None:
                spec = _spec_for(config, data, env)
                writer = LeRobotWriter(
                    config.output, spec, config.limits, EncoderSettings(), config.overwrite
                )
            writer.add_episode(data.frames, data.states, data.actions, task)
            rewards.append(data.total_reward)
            if progress is not None:
                progress(episode + 1, config.episodes, data)
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    assert writer is not None  # episodes >= 1
    writer.close()
    return writer, rewards


def collect(config: CollectConfig, progress: ProgressFn | None = None) -> CollectSummary:
    """Record `config.episodes` episodes; episode e starts from `reset(seed=config.seed + e)`."""
    started = time.monotonic()
    prepare_output(config.output, config.overwrite)
    env = make_env(config.env, config.env_kwargs, config.state)
    try:
        writer, rewards = _record(config, env, progress)
    finally:
        env.close()
    spec = writer.spec
    return CollectSummary(
        output=config.output,
        env=config.env,
        policy=config.policy,
        episodes=config.episodes,
        frames=writer.total_frames,
        fps=spec.fps,
        video_key=spec.video_key,
        image_height=spec.height,
        image_width=spec.width,
        state_dim=spec.state_dim,
        action_dim=spec.action_dim,
        mean_episode_length=writer.total_frames / config.episodes,
        mean_reward=float(np.mean(rewards)),
        seconds=round(time.monotonic() - started, 3),
    )
