"""DistractorReach: PointReach with shapes moving in the background that no action controls.

Same disc, actions and state as PointReach (`info["state"]` is the disc's
position only), but `num_distractors` coloured squares drift across the table
and bounce off its edges on their own seeded paths, and the background's grid
scrolls a little every step. A world model must learn that only the disc
answers the action; goal images show the distractors wherever they were at
goal time. Deterministic given the reset seed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tasks.robot.env import DISC_COLOUR, PointReachEnv, render_background
from tasks.robot.envs.draw import Canvas, to_uint8

DISTRACTOR_COLOURS = np.array(
    [[40.0, 220.0, 90.0], [40.0, 200.0, 230.0], [120.0, 60.0, 230.0]], dtype=np.float32
)  # red channel < 150: PointReach's disc detector ignores them


class DistractorReachEnv(PointReachEnv):
    """PointReach plus action-independent motion in the image."""

    def __init__(
        self,
        render_mode: str | None = None,
        width: int = 64,
        height: int = 64,
        num_distractors: int = 3,
        distractor_speed: float = 0.06,
    ) -> None:
        super().__init__(render_mode=render_mode, width=width, height=height)
        if not 0 <= num_distractors <= len(DISTRACTOR_COLOURS):
            raise ValueError(f"num_distractors must be in [0, {len(DISTRACTOR_COLOURS)}]")
        self.num_distractors = num_distractors
        self.distractor_speed = distractor_speed
        self._canvas = Canvas(width, height)
        self._wide_background = render_background(2 * width, height)  # scrolled horizontally
        self._shapes = np.zeros((num_distractors, 2), dtype=np.float32)
        self._velocities = np.zeros((num_distractors, 2), dtype=np.float32)
        self._time = 0

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        observation, info = super().reset(seed=seed, options=options)
        count, rng = self.num_distractors, self.np_random
        self._shapes = rng.uniform(-0.85, 0.85, size=(count, 2)).astype(np.float32)
        angles = rng.uniform(0.0, 2.0 * np.pi, size=count)
        directions = np.stack([np.cos(angles), np.sin(angles)], axis=1)
        self._velocities = (directions * self.distractor_speed).astype(np.float32)
        self._time = int(rng.integers(0, self.config.width))
        return observation, info

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        result = super().step(action)
        moved = self._shapes + self._velocities
        bounced = np.abs(moved) > 0.85
        self._velocities = np.where(bounced, -self._velocities, self._velocities)
        self._shapes = np.clip(moved, -0.85, 0.85).astype(np.float32)
        self._time += 1
        return result

    def render_position(self, position: np.ndarray | tuple[float, float]) -> np.ndarray:
        """The frame with the disc at `position` over the current distractors, (H, W, 3) uint8."""
        width = self.config.width
        shift = self._time % width
        image = self._wide_background[:, shift : shift + width].copy()  # (H, W, 3)
        for centre, colour in zip(self._shapes, DISTRACTOR_COLOURS, strict=False):
            self._draw_square(image, centre, colour)
        self._canvas.disc(
            image, np.asarray(position, dtype=np.float32), self.config.radius, DISC_COLOUR
        )
        return to_uint8(image)

    def _draw_square(self, image: np.ndarray, centre: np.ndarray, colour: np.ndarray) -> None:
        col, row = self._canvas.to_pixels(centre)
        half = self._canvas.pixels(0.12)
        inside_cols = np.clip(half + 0.5 - np.abs(self._canvas.cols - col), 0.0, 1.0)  # (W,)
        inside_rows = np.clip(half + 0.5 - np.abs(self._canvas.rows - row), 0.0, 1.0)  # (H,)
        coverage = (inside_rows[:, None] * inside_cols[None, :])[..., None]  # (H, W, 1)
        image *= 1.0 - coverage
        image += coverage * colour
