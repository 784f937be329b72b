"""Numpy rasterisation shared by the built-in envs: anti-aliased discs and thick segments.

Every helper composites one shape onto a float32 `(H, W, 3)` image in place, with
coverage 1 inside, 0 outside and linear over one pixel at the rim, so small moves
change pixels smoothly (the encoder sees sub-pixel motion). Positions are in table
units [-1, 1]: `x` grows with image columns, `y` with image rows.
"""

from __future__ import annotations

import numpy as np


class Canvas:
    """Pixel-centre grids of one image size and the table-to-pixel conversion."""

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.cols = np.arange(width, dtype=np.float32) + 0.5  # (W,)
        self.rows = np.arange(height, dtype=np.float32) + 0.5  # (H,)

    def to_pixels(self, point: np.ndarray) -> tuple[float, float]:
        """(column, row) of a table point `(x, y)`."""
        x, y = (float(v) for v in np.asarray(point, dtype=np.float32).reshape(2))
        return (x + 1.0) / 2.0 * self.width, (y + 1.0) / 2.0 * self.height

    def pixels(self, length: float) -> float:
        """A table length in pixels (along the width)."""
        return length / 2.0 * self.width

    def _blend(
        self, image: np.ndarray, distance: np.ndarray, radius: float, colour: np.ndarray
    ) -> None:
        coverage = np.clip(radius + 0.5 - distance, 0.0, 1.0)[..., None]  # (H, W, 1)
        image *= 1.0 - coverage
        image += coverage * colour

    def disc(
        self, image: np.ndarray, centre: np.ndarray, radius: float, colour: np.ndarray
    ) -> None:
        """A disc of `radius` table units at `centre`."""
        col, row = self.to_pixels(centre)
        dx2 = (self.cols - col) ** 2  # (W,)
        dy2 = (self.rows - row) ** 2  # (H,)
        distance = np.sqrt(dy2[:, None] + dx2[None, :])  # (H, W)
        self._blend(image, distance, self.pixels(radius), colour)

    def segment(
        self,
        image: np.ndarray,
        start: np.ndarray,
        end: np.ndarray,
        half_width: float,
        colour: np.ndarray,
    ) -> None:
        """A thick segment (rounded ends) from `start` to `end`, `half_width` table units."""
        a = np.array(self.to_pixels(start), dtype=np.float32)
        b = np.array(self.to_pixels(end), dtype=np.float32)
        direction = b - a
        length2 = max(float(direction @ direction), 1e-9)
        px = self.cols[None, :] - a[0]  # (1, W)
        py = self.rows[:, None] - a[1]  # (H, 1)
        along = np.clip((px * direction[0] + py * direction[1]) / length2, 0.0, 1.0)  # (H, W)
        distance = np.hypot(px - along * direction[0], py - along * direction[1])  # (H, W)
        self._blend(image, distance, self.pixels(half_width), colour)


def check_size(name: str, width: int, height: int) -> None:
    """Frames must be tubelet-aligned (multiples of 16) so no resize is needed."""
    for label, value in (("width", width), ("height", height)):
        if value < 16 or value % 16:
            raise ValueError(f"{name} {label} must be a positive multiple of 16, got {value}")


def to_uint8(image: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(image, 0.0, 255.0)).astype(np.uint8)
