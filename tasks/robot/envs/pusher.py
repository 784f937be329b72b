"""DiscPush: a pusher disc that moves an object disc only by contact, seen from above.

The action is the pusher's 2-D velocity in [-1, 1] (times `step_size`). After
the pusher moves, an overlapping object is pushed out along the line of centres
until the two just touch (then kept on the table; a pusher that would squeeze
it into a wall is held back). The object never moves otherwise, so its motion
depends on contact, which random actions make only sometimes: the object
starts near the pusher. State (`info["state"]` and the observation) is
`(pusher x, y, object x, y)`. Deterministic given the reset seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from tasks.robot.env import render_background
from tasks.robot.envs.draw import Canvas, check_size, to_uint8

PUSHER_COLOUR = np.array([255.0, 140.0, 0.0], dtype=np.float32)
OBJECT_COLOUR = np.array([60.0, 230.0, 90.0], dtype=np.float32)


@dataclass(frozen=True)
class DiscPushConfig:
    """Geometry and dynamics of DiscPush (table units)."""

    width: int = 64
    height: int = 64
    pusher_radius: float = 0.12
    object_radius: float = 0.16
    step_size: float = 0.08
    start_gap: float = 0.12  # largest gap between pusher and object at reset
    goal_tolerance: float = 0.05

    def __post_init__(self) -> None:
        check_size("DiscPush", self.width, self.height)
        if self.step_size <= 0.0:
            raise ValueError(f"DiscPush step_size must be positive, got {self.step_size}")

    @property
    def contact(self) -> float:
        return self.pusher_radius + self.object_radius


class DiscPushEnv(gym.Env[np.ndarray, np.ndarray]):
    """Push the object (and bring the pusher) to a goal state; reward is minus the distance."""

    metadata: dict[str, Any] = {"render_modes": ["rgb_array"], "render_fps": 10}  # noqa: RUF012

    def __init__(self, render_mode: str | None = None, width: int = 64, height: int = 64) -> None:
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"DiscPush supports render_mode='rgb_array' only, got {render_mode!r}")
        self.render_mode = render_mode
        self.config = DiscPushConfig(width=width, height=height)
        self.observation_space = spaces.Box(-1.0, 1.0, shape=(4,), dtype=np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self._canvas = Canvas(width, height)
        self._background = render_background(width, height)  # (H, W, 3)
        self._pusher = np.zeros(2, dtype=np.float32)
        self._object = np.zeros(2, dtype=np.float32)
        self._goal = np.zeros(4, dtype=np.float32)

    def _limit(self, radius: float) -> float:
        return 1.0 - radius

    def _start(self) -> tuple[np.ndarray, np.ndarray]:
        """Object somewhere inside, pusher beside it (a gap up to `start_gap`)."""
        config, rng = self.config, self.np_random
        inner = self._limit(config.object_radius) - config.contact - config.start_gap
        obj = rng.uniform(-inner, inner, size=2)
        angle = rng.uniform(0.0, 2.0 * np.pi)
        gap = config.contact + rng.uniform(0.0, config.start_gap)
        pusher = obj + gap * np.array([np.cos(angle), np.sin(angle)])
        return pusher.astype(np.float32), obj.astype(np.float32)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._pusher, self._object = self._start()
        goal = (options or {}).get("goal")
        if goal is None:
            goal_pusher, goal_object = self._start()
            self._goal = np.concatenate([goal_pusher, goal_object]).astype(np.float32)
        else:
            self._goal = np.clip(np.asarray(goal, dtype=np.float32).reshape(4), -1.0, 1.0)
        return self.state, self._info()

    def _resolve_contact(self, pusher: np.ndarray) -> np.ndarray:
        """Push the object out of an overlap; returns the pusher position actually reached."""
        config = self.config
        offset = self._object - pusher
        distance = float(np.linalg.norm(offset))
        if distance >= config.contact:
            return pusher
        normal = offset / distance if distance > 1e-6 else np.array([1.0, 0.0], dtype=np.float32)
        limit = self._limit(config.object_radius)
        pushed = np.clip(pusher + normal * config.contact, -limit, limit)
        self._object = pushed.astype(np.float32)
        gap = pusher - self._object
        gap_length = float(np.linalg.norm(gap))
        if gap_length < config.contact:  # the object hit a wall: the pusher stops at contact
            pusher = self._object + gap / max(gap_length, 1e-6) * config.contact
        return pusher

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        config = self.config
        velocity = np.clip(np.asarray(action, dtype=np.float32).reshape(2), -1.0, 1.0)
        limit = self._limit(config.pusher_radius)
        moved = np.clip(self._pusher + velocity * np.float32(config.step_size), -limit, limit)
        self._pusher = np.clip(self._resolve_contact(moved), -limit, limit).astype(np.float32)
        distance = float(np.linalg.norm(self.state - self._goal))
        return self.state, -distance, distance < config.goal_tolerance, False, self._info()

    @property
    def state(self) -> np.ndarray:
        return np.concatenate([self._pusher, self._object]).astype(np.float32)

    def render(self) -> np.ndarray:  # type: ignore[override]
        """The current frame, (H, W, 3) uint8."""
        return self.render_state(self.state)

    def render_state(self, state: np.ndarray) -> np.ndarray:
        """The frame of pusher and object at `state` (4,), (H, W, 3) uint8."""
        values = np.asarray(state, dtype=np.float32).reshape(4)
        image = self._background.copy()  # (H, W, 3)
        self._canvas.disc(image, values[2:], self.config.object_radius, OBJECT_COLOUR)
        self._canvas.disc(image, values[:2], self.config.pusher_radius, PUSHER_COLOUR)
        return to_uint8(image)

    def _info(self) -> dict[str, Any]:
        return {"state": self.state, "goal": self._goal.copy()}
