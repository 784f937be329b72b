"""Synthetic but real sample videos: moving shapes encoded by ffmpeg, with a labels table.

Each video shows one coloured shape sliding across a textured background in one
of four directions, speeding up from rest or slowing down to rest. The labels
(direction, shape, colour, speed) are what the probes of the training issue learn
and are scored on: direction and speed need motion, shape and colour need only one
frame. `qa.parquet` asks questions about the same facts (`tasks.vqa.qa`). Containers, codecs, frame rates and resolutions vary
on purpose (several are not multiples of 16) so curation sees realistic input.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tasks import progress as live
from tasks import storage
from tasks.runtime import local_uri

DIRECTIONS = ("left", "right", "up", "down")
SPEEDS = ("speeds up", "slows down")  # from rest to twice the mean speed, or back to rest
SHAPES = ("disc", "square", "triangle")
COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 190, 60),
    "blue": (50, 80, 230),
    "yellow": (235, 210, 40),
}
# (container suffix, ffmpeg encoder arguments)
FORMATS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (".mp4", ("-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p")),
    (".webm", ("-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "400k")),
    (".mkv", ("-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p")),
)
FRAME_RATES = (15, 24, 25, 30)
RESOLUTIONS = ((160, 120), (176, 144), (200, 150), (256, 192), (320, 240))
LABELS_FILE = "labels.parquet"


@dataclasses.dataclass(frozen=True)
class VideoSpec:
    """Everything needed to render one sample video."""

    name: str
    direction: str
    shape: str
    colour: str
    suffix: str
    fps: int
    width: int
    height: int
    seconds: float
    seed: int
    speed: str = SPEEDS[0]

    @property
    def num_frames(self) -> int:
        return round(self.seconds * self.fps)


def make_specs(count: int, seed: int = 0, seconds: float = 6.0) -> list[VideoSpec]:
    """Balanced specs: directions cycle so every class has count/4 videos; the rest is random."""
    rng = np.random.default_rng(seed)
    specs = []
    for index in range(count):
        suffix, _ = FORMATS[index % len(FORMATS)]
        width, height = RESOLUTIONS[int(rng.integers(len(RESOLUTIONS)))]
        specs.append(
            VideoSpec(
                name=f"sample_{index:04d}{suffix}",
                direction=DIRECTIONS[index % len(DIRECTIONS)],
                shape=SHAPES[int(rng.integers(len(SHAPES)))],
                colour=list(COLOURS)[int(rng.integers(len(COLOURS)))],
                suffix=suffix,
                fps=FRAME_RATES[int(rng.integers(len(FRAME_RATES)))],
                width=width,
                height=height,
                seconds=seconds,
                seed=int(rng.integers(2**31)),
                # from the index, not the generator: the other draws stay as they were
                speed=SPEEDS[(index // len(DIRECTIONS)) % len(SPEEDS)],
            )
        )
    return specs


def _shape_mask(shape: str, height: int, width: int, radius: int) -> np.ndarray:
    """Boolean stencil `(2r+1, 2r+1)` of the shape centred in its box."""
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    if shape == "disc":
        return np.asarray(xx**2 + yy**2 <= radius**2)
    if shape == "square":
        return np.ones_like(xx, dtype=bool)
    # An upward triangle: rows widen from the apex down.
    return np.asarray(np.abs(xx) <= (yy + radius) / 2)


def render_frames(spec: VideoSpec) -> np.ndarray:
    """All frames of `spec` as uint8 `(T, H, W, 3)`; the shape wraps around the borders."""
    rng = np.random.default_rng(spec.seed)
    height, width = spec.height, spec.width
    # Smooth low-frequency texture so the background is neither blank nor noise.
    base = rng.integers(60, 140, size=(height // 8 + 2, width // 8 + 2, 3)).astype(np.float32)
    background = np.kron(base, np.ones((8, 8, 1), dtype=np.float32))[:height, :width]
    background = background.astype(np.uint8)
    radius = max(6, min(height, width) // 8)
    stencil = _shape_mask(spec.shape, height, width, radius)
    colour = np.array(COLOURS[spec.colour], dtype=np.uint8)
    dx, dy = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}[spec.direction]
    speed = 0.3 * min(height, width)  # pixels per second
    # The cross-motion coordinate stays in the middle half, so a centre crop always sees the shape.
    start_x = rng.uniform(0.25 * width, 0.75 * width)
    start_y = rng.uniform(0.25 * height, 0.75 * height)
    frames = np.empty((spec.num_frames, height, width, 3), dtype=np.uint8)
    offsets = np.arange(-radius, radius + 1)
    for index in range(spec.num_frames):
        travelled = distance(spec, index / spec.fps, speed)
        centre_x = int(start_x + dx * travelled) % width
        centre_y = int(start_y + dy * travelled) % height
        frame = background.copy()
        rows = (centre_y + offsets) % height
        cols = (centre_x + offsets) % width
        patch = frame[np.ix_(rows, cols)]
        patch[stencil] = colour
        frame[np.ix_(rows, cols)] = patch
        frames[index] = frame
    return frames


def distance(spec: VideoSpec, seconds: float, mean_speed: float) -> float:
    """Pixels travelled after `seconds`: the speed changes linearly between 0 and twice
    `mean_speed` over the video (up for `speeds up`, down for `slows down`)."""
    fraction = min(seconds / spec.seconds, 1.0)
    if spec.speed == SPEEDS[0]:
        return mean_speed * spec.seconds * fraction**2
    return mean_speed * spec.seconds * (2 * fraction - fraction**2)


def encode_video(frames: np.ndarray, fps: int, path: Path, encoder_args: tuple[str, ...]) -> None:
    """Encode uint8 `(T, H, W, 3)` frames to `path` with ffmpeg (raises with ffmpeg's message)."""
    _, height, width, _ = frames.shape
    command = [
        "ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
        "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-r", str(fps),
        "-i", "pipe:0", *encoder_args, "-r", str(fps), str(path),
    ]  # fmt: skip
    result = subprocess.run(command, input=frames.tobytes(), capture_output=True, check=False)
    if result.returncode != 0:
        message = result.stderr.decode(errors="replace").strip()
        raise RuntimeError(f"ffmpeg could not encode {path.name}: {message}")


def encoding_workers() -> int:
    """ffmpeg processes run at once: the CPUs this process may use (at least 1, at most 8)."""
    return max(1, min(8, len(os.sched_getaffinity(0))))


def _write_video(spec: VideoSpec, folder: Path) -> Path:
    path = folder / spec.name
    encode_video(render_frames(spec), spec.fps, path, dict(FORMATS)[spec.suffix])
    return path


def write_defects(folder: Path, template: Path) -> list[Path]:
    """Files curation must reject: zero bytes, truncated mp4, text named .mp4, image named .mkv."""
    truncated = folder / "defect_truncated.mp4"
    truncated.write_bytes(template.read_bytes()[: max(1, template.stat().st_size // 3)])
    empty = folder / "defect_empty.mp4"
    empty.write_bytes(b"")
    text = folder / "defect_text.mp4"
    text.write_text("this is not a video\n")
    image = folder / "defect_image.mkv"
    image.write_bytes(np.full(64, 7, dtype=np.uint8).tobytes())
    return [truncated, empty, text, image]


def labels_table(specs: list[VideoSpec], output: str) -> pa.Table:
    rows = [
        {
            "video": spec.name,
            "source": storage.join(local_uri(output), spec.name),
            "direction": spec.direction,
            "label": DIRECTIONS.index(spec.direction),
            "shape": spec.shape,
            "colour": spec.colour,
            "speed": spec.speed,
            "fps": spec.fps,
            "width": spec.width,
            "height": spec.height,
            "seconds": spec.seconds,
        }
        for spec in specs
    ]
    return pa.Table.from_pylist(rows)


def write_sample_videos(
    output: str,
    count: int = 24,
    seed: int = 0,
    seconds: float = 6.0,
    with_defects: bool = False,
    progress: Callable[[int, int, str], None] | None = None,
) -> list[str]:
    """Render, encode and write `count` videos (+ `labels.parquet`, `qa.parquet`) under `output`.

    Returns the URIs of the written videos (defects, when asked for, come last
    and have no label).
    """
    import tempfile

    specs = make_specs(count, seed=seed, seconds=seconds)
    fs, root = storage.filesystem(output)
    fs.makedirs(root, exist_ok=True)
    written: list[str] = []
    with tempfile.TemporaryDirectory(prefix="vjepa-samples-") as scratch:
        folder = Path(scratch)
        local_files: list[Path] = []
        # One ffmpeg process per short video: start-up dominates, so encode several at once
        # (`map` keeps the specs' order, so the files and the progress count stay in order).
        live.report("sample-videos", 0, count, "video")
        with ThreadPoolExecutor(max_workers=encoding_workers()) as pool:
            for index, path in enumerate(pool.map(lambda s: _write_video(s, folder), specs)):
                local_files.append(path)
                if progress is not None:
                    progress(index + 1, count, path.name)
                live.report("sample-videos", index + 1, count, "video")
        if with_defects and local_files:
            local_files.extend(write_defects(folder, local_files[0]))
        for path in local_files:
            fs.put_file(str(path), storage.join(root, path.name))
            written.append(storage.join(output, path.name))
        from tasks.vqa.qa import QA_FILE, sample_qa_table

        labels = labels_table(specs, output)
        pq.write_table(labels, folder / LABELS_FILE)
        pq.write_table(sample_qa_table(labels, seed=seed), folder / QA_FILE)
        for name in (LABELS_FILE, QA_FILE):
            fs.put_file(str(folder / name), storage.join(root, name))
    return written
