"""ArmReach: a two-link planar arm with joint-space actions, seen from above.

The base sits at the table centre; the action is a change of the two joint
angles in radians, clipped to `[-max_delta, max_delta]` (small, unnormalised
units, as real arms have); the angles are clipped to the joint limits. The
state (observation and `info["state"]`) is the joint angles `(q1, q2)`: success
is measured in joint space, while the image shows the links, so the mapping
from action to pixels is non-linear (it depends on the configuration).
Deterministic given the reset seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from tasks.robot.env import render_background
from tasks.robot.envs.draw import Canvas, check_size, to_uint8

LINK_COLOUR = np.array([235.0, 235.0, 235.0], dtype=np.float32)
ELBOW_COLOUR = np.array([40.0, 40.0, 40.0], dtype=np.float32)
TIP_COLOUR = np.array([255.0, 200.0, 0.0], dtype=np.float32)


@dataclass(frozen=True)
class ArmReachConfig:
    """Geometry and dynamics of ArmReach (lengths in table units, angles in radians)."""

    width: int = 64
    height: int = 64
    upper_length: float = 0.45
    fore_length: float = 0.4
    link_half_width: float = 0.06
    max_delta: float = 0.2  # radians per step at full action
    shoulder_limit: float = float(np.pi)
    elbow_limit: float = 2.5
    goal_tolerance: float = 0.05

    def __post_init__(self) -> None:
        check_size("ArmReach", self.width, self.height)
        if self.upper_length + self.fore_length >= 1.0:
            raise ValueError("ArmReach links must fit on the table (sum of lengths < 1)")
        if self.max_delta <= 0.0:
            raise ValueError(f"ArmReach max_delta must be positive, got {self.max_delta}")

    @property
    def limits(self) -> np.ndarray:
        return np.array([self.shoulder_limit, self.elbow_limit], dtype=np.float32)


class ArmReachEnv(gym.Env[np.ndarray, np.ndarray]):
    """Reach goal joint angles; reward is minus the joint-space distance to the goal."""

    metadata: dict[str, Any] = {"render_modes": ["rgb_array"], "render_fps": 10}  # noqa: RUF012

    def __init__(self, render_mode: str | None = None, width: int = 64, height: int = 64) -> None:
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"ArmReach supports render_mode='rgb_array' only, got {render_mode!r}")
        self.render_mode = render_mode
        self.config = ArmReachConfig(width=width, height=height)
        limits = self.config.limits
        self.observation_space = spaces.Box(-limits, limits, dtype=np.float32)
        delta = self.config.max_delta
        self.action_space = spaces.Box(-delta, delta, shape=(2,), dtype=np.float32)
        self._canvas = Canvas(width, height)
        self._background = render_background(width, height)  # (H, W, 3)
        self._angles = np.zeros(2, dtype=np.float32)
        self._goal = np.zeros(2, dtype=np.float32)

    def _draw_angles(self) -> np.ndarray:
        return self.np_random.uniform(-self.config.limits, self.config.limits).astype(np.float32)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._angles = self._draw_angles()
        goal = (options or {}).get("goal")
        limits = self.config.limits
        self._goal = (
            self._draw_angles()
            if goal is None
            else np.clip(np.asarray(goal, dtype=np.float32), -limits, limits)
        )
        return self._angles.copy(), self._info()

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        delta = self.config.max_delta
        change = np.clip(np.asarray(action, dtype=np.float32).reshape(2), -delta, delta)
        limits = self.config.limits
        self._angles = np.clip(self._angles + change, -limits, limits).astype(np.float32)
        distance = float(np.linalg.norm(self._angles - self._goal))
        return (
            self._angles.copy(),
            -distance,
            distance < self.config.goal_tolerance,
            False,
            self._info(),
        )

    def joints(self, angles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Elbow and tip positions (table units) of the arm at `angles`."""
        config = self.config
        q1, q2 = (float(v) for v in np.asarray(angles, dtype=np.float32).reshape(2))
        elbow = config.upper_length * np.array([np.cos(q1), np.sin(q1)], dtype=np.float32)
        tip = elbow + config.fore_length * np.array(
            [np.cos(q1 + q2), np.sin(q1 + q2)], dtype=np.float32
        )
        return elbow, tip

    def render(self) -> np.ndarray:  # type: ignore[override]
        """The current frame, (H, W, 3) uint8."""
        return self.render_angles(self._angles)

    def render_angles(self, angles: np.ndarray) -> np.ndarray:
        """The frame of the arm at `angles`, (H, W, 3) uint8."""
        canvas, half = self._canvas, self.config.link_half_width
        elbow, tip = self.joints(angles)
        base = np.zeros(2, dtype=np.float32)
        image = self._background.copy()  # (H, W, 3)
        canvas.segment(image, base, elbow, half, LINK_COLOUR)
        canvas.segment(image, elbow, tip, half * 0.8, LINK_COLOUR)
        canvas.disc(image, elbow, half * 0.9, ELBOW_COLOUR)
        canvas.disc(image, tip, half * 1.4, TIP_COLOUR)
        return to_uint8(image)

    def _info(self) -> dict[str, Any]:
        return {"state": self._angles.copy(), "goal": self._goal.copy()}
