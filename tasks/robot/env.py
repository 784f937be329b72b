"""PointReach: the built-in Gymnasium environment for robot-data demos and tests.

A coloured disc sits on a flat 2-D table seen from above. The action is a 2-D
velocity in [-1, 1] (clipped); each step moves the disc by `action * step_size`
and keeps it inside the table. The image is rendered with numpy over a fixed
background (colour gradient plus grid lines), so the disc position is
recoverable from pixels. Everything is deterministic given the reset seed.

Coordinates: the state is `(x, y)` in table units [-1, 1]; `x` grows to the
right (image columns), `y` grows downward (image rows). The disc centre sits at
pixel `((x + 1) / 2 * width - 0.5, (y + 1) / 2 * height - 0.5)` in (column, row)
index units.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

DISC_COLOUR = np.array([255.0, 140.0, 0.0], dtype=np.float32)  # orange; background red <= 130


@dataclass(frozen=True)
class PointReachConfig:
    """Geometry and dynamics of PointReach."""

    width: int = 64
    height: int = 64
    radius: float = 0.16  # disc radius in table units (5 px at 64 px)
    step_size: float = 0.05  # displacement per step at full action
    goal_tolerance: float = 0.05

    def __post_init__(self) -> None:
        for name, value in (("width", self.width), ("height", self.height)):
            if value < 16 or value % 16:
                raise ValueError(
                    f"PointReach {name} must be a positive multiple of 16, got {value}"
                )
        if not 0.0 < self.radius < 0.5:
            raise ValueError(f"PointReach radius must be in (0, 0.5), got {self.radius}")
        if self.step_size <= 0.0:
            raise ValueError(f"PointReach step_size must be positive, got {self.step_size}")

    @property
    def limit(self) -> float:
        """Largest |coordinate| of the disc centre: the disc always stays fully on the table."""
        return 1.0 - self.radius


def render_background(width: int, height: int) -> np.ndarray:
    """The fixed table pattern: red/blue gradient, lighter grid lines every 1/8 of the table."""
    cols = (np.arange(width, dtype=np.float32) + 0.5) / width  # (W,)
    rows = (np.arange(height, dtype=np.float32) + 0.5) / height  # (H,)
    image = np.empty((height, width, 3), dtype=np.float32)  # (H, W, 3)
    image[..., 0] = 20.0 + 70.0 * cols[None, :]  # red follows x
    image[..., 1] = 70.0
    image[..., 2] = 60.0 + 120.0 * rows[:, None]  # blue follows y
    grid_cols = (np.floor(cols * 8) != np.floor((cols - 1.0 / width) * 8))[None, :]  # (1, W)
    grid_rows = (np.floor(rows * 8) != np.floor((rows - 1.0 / height) * 8))[:, None]  # (H, 1)
    image[grid_cols | grid_rows] += 40.0  # brighter in all channels: luma detail survives 4:2:0
    return image


class PointReachEnv(gym.Env[np.ndarray, np.ndarray]):
    """Move a disc on a table toward a goal; observation and `info["state"]` are its position.

    The reward is the negative distance to a goal drawn at reset (or passed as
    `options={"goal": (x, y)}`); the episode terminates when the disc is within
    `goal_tolerance` of the goal. `render_position` draws any position, which
    gives goal images for planning.
    """

    metadata: dict[str, Any] = {"render_modes": ["rgb_array"], "render_fps": 10}  # noqa: RUF012

    def __init__(
        self,
        render_mode: str | None = None,
        width: int = 64,
        height: int = 64,
        radius: float = 0.16,
        step_size: float = 0.05,
    ) -> None:
        if render_mode not in (None, "rgb_array"):
            raise ValueError(
                f"PointReach supports render_mode='rgb_array' only, got {render_mode!r}"
            )
        self.render_mode = render_mode
        self.config = PointReachConfig(width, height, radius, step_size)
        limit = self.config.limit
        self.observation_space = spaces.Box(-limit, limit, shape=(2,), dtype=np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self._background = render_background(width, height)  # (H, W, 3)
        self._cols = np.arange(width, dtype=np.float32) + 0.5  # (W,) pixel centres
        self._rows = np.arange(height, dtype=np.float32) + 0.5  # (H,)
        self._position = np.zeros(2, dtype=np.float32)
        self._goal = np.zeros(2, dtype=np.float32)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        limit = self.config.limit
        self._position = self.np_random.uniform(-limit, limit, size=2).astype(np.float32)
        goal = (options or {}).get("goal")
        if goal is None:
            self._goal = self.np_random.uniform(-limit, limit, size=2).astype(np.float32)
        else:
            self._goal = np.clip(np.asarray(goal, dtype=np.float32), -limit, limit)
        return self._position.copy(), self._info()

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        velocity = np.clip(np.asarray(action, dtype=np.float32).reshape(2), -1.0, 1.0)
        limit = self.config.limit
        moved = self._position + velocity * np.float32(self.config.step_size)
        self._position = np.clip(moved, -limit, limit).astype(np.float32)
        distance = float(np.linalg.norm(self._position - self._goal))
        terminated = distance < self.config.goal_tolerance
        return self._position.copy(), -distance, terminated, False, self._info()

    def render(self) -> np.ndarray:  # type: ignore[override]
        """The current frame, (H, W, 3) uint8."""
        return self.render_position(self._position)

    def render_position(self, position: np.ndarray | tuple[float, float]) -> np.ndarray:
        """The frame with the disc at `position` (table units), (H, W, 3) uint8."""
        config = self.config
        x, y = (float(v) for v in np.asarray(position, dtype=np.float32).reshape(2))
        centre_col = (x + 1.0) / 2.0 * config.width
        centre_row = (y + 1.0) / 2.0 * config.height
        radius_px = config.radius / 2.0 * config.width
        # Anti-aliased coverage: 1 inside, 0 outside, linear over one pixel at the rim.
        dx2 = (self._cols - centre_col) ** 2  # (W,)
        dy2 = (self._rows - centre_row) ** 2  # (H,)
        distance = np.sqrt(dy2[:, None] + dx2[None, :])  # (H, W)
        coverage = np.clip(radius_px + 0.5 - distance, 0.0, 1.0)[..., None]  # (H, W, 1)
        image = self._background * (1.0 - coverage) + DISC_COLOUR * coverage  # (H, W, 3)
        return np.rint(image).astype(np.uint8)

    @property
    def position(self) -> np.ndarray:
        return self._position.copy()

    @property
    def goal(self) -> np.ndarray:
        return self._goal.copy()

    def _info(self) -> dict[str, Any]:
        return {"state": self._position.copy(), "goal": self._goal.copy()}


def disc_centre(image: np.ndarray) -> tuple[float, float]:
    """Recover `(x, y)` table coordinates of the disc from a PointReach frame (H, W, 3) uint8.

    Weighted centroid of the pixels whose colour leans to the disc colour; used
    by tests and as a cheap oracle for planning demos.
    """
    pixels = image.astype(np.float32)  # (H, W, 3)
    weight = np.clip((pixels[..., 0] - 150.0) / 105.0, 0.0, 1.0)  # (H, W)
    total = float(weight.sum())
    if total == 0.0:
        raise ValueError("no disc pixels in this image")
    height, width = weight.shape
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32) + 0.5  # (H, W) each
    col = float((weight * cols).sum()) / total
    row = float((weight * rows).sum()) / total
    return col / width * 2.0 - 1.0, row / height * 2.0 - 1.0
