"""Video fixtures for the curation tests, made with ffmpeg's lavfi sources (real files, tiny)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tasks.curation.config import CurationConfig

H264 = ("-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p")
VP9 = ("-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "200k")

MakeVideo = Callable[..., Path]


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args], check=True)


def make_video(
    path: Path,
    source: str = "testsrc2",
    size: str = "96x64",
    rate: int = 12,
    seconds: float = 3.0,
    codec: tuple[str, ...] = H264,
    extra: tuple[str, ...] = (),
) -> Path:
    """Encode `seconds` of the lavfi `source` at `size`/`rate` into `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    separator = ":" if "=" in source else "="  # "color=c=black" already has options
    spec = f"{source}{separator}size={size}:rate={rate}"
    ffmpeg("-f", "lavfi", "-i", spec, "-t", str(seconds), *codec, *extra, str(path))
    return path


@pytest.fixture(scope="session")
def small_config() -> CurationConfig:
    """4 frames of 32x32 at 4 fps: one clip per second of video."""
    return CurationConfig(fps=4, frames=4, size=32, min_short_side=32, rows_per_shard=4)


@pytest.fixture(scope="session")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Good videos and every kind of bad input curation must reject, by name."""
    root = tmp_path_factory.mktemp("videos")
    files = {
        "moving_mp4": make_video(root / "good" / "moving.mp4"),
        "moving_webm": make_video(
            root / "good" / "sub" / "zoom.webm", source="mandelbrot", size="64x80", codec=VP9
        ),
        "blank": make_video(root / "quality" / "black.mp4", source="color=c=black"),
        "frozen": make_video(root / "quality" / "bars.mkv", source="smptebars"),
        "faststart": make_video(
            root / "work" / "faststart.mp4", seconds=4, extra=("-movflags", "+faststart")
        ),
    }
    bad = root / "bad"
    bad.mkdir()
    (bad / "empty.mp4").write_bytes(b"")
    (bad / "notes.mp4").write_text("this is a text file, not a video\n")
    good = files["moving_mp4"].read_bytes()
    (bad / "truncated.mp4").write_bytes(good[: len(good) // 2])  # moov atom at the end is lost
    whole = files["faststart"].read_bytes()
    (bad / "cut_midway.mp4").write_bytes(whole[: len(whole) // 2])  # header fine, data stops
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x64", "-frames:v", "1", str(bad / "picture.png"))
    (bad / "picture.png").rename(bad / "picture.mkv")
    ffmpeg("-f", "lavfi", "-i", "sine=d=2", "-c:a", "aac", str(bad / "audio_only.mp4"))
    make_video(bad / "too_short.mp4", seconds=0.5)
    files.update({path.stem: path for path in bad.iterdir()})
    return files


@pytest.fixture(scope="session")
def video_maker() -> MakeVideo:
    """`make_video(path, source=..., size=..., rate=..., seconds=...)` for tests that need more files."""
    return make_video
