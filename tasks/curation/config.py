"""Typed configuration of a curation run: clip geometry, filters, quality thresholds, sharding.

`CurationConfig` is a frozen dataclass validated on construction, so an invalid
run fails before any video is touched. Fields marked `output=False` tune how the
run executes (parallelism, timeouts, batch sizes) and do not change its result;
they are left out of the fingerprint that feeds resume keys and the dataset version.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

VIDEO_EXTENSIONS = (
    ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg",
    ".ts", ".mts", ".m2ts", ".flv", ".wmv", ".3gp", ".ogv",
)  # fmt: skip
TUBELET_FRAMES = 2  # V-JEPA 2 tubelet: 2 frames x 16 x 16 pixels
PATCH_SIZE = 16


def _runtime(default: Any) -> Any:
    """A field that tunes execution only (not part of the output fingerprint)."""
    return dataclasses.field(default=default, metadata={"output": False})


@dataclasses.dataclass(frozen=True)
class CurationConfig:
    """Everything that decides which clips a curation run writes, and how it runs."""

    fps: float = 4.0  # output frame rate of every clip
    frames: int = 16  # frames per clip (T), a multiple of the tubelet length 2
    size: int = 256  # clips are size x size (H = W), a multiple of the patch size 16
    clip_stride: int | None = None  # frames between clip starts; None = frames (no overlap)
    max_clips_per_source: int | None = None
    min_duration_s: float | None = None  # None = long enough for one clip (frames / fps)
    min_short_side: int = 64  # reject sources whose short side is below this (pixels)
    # None = every video stream ffmpeg decodes that is a moving picture; a tuple is an opt-in
    # narrow list (ffmpeg codec names, e.g. ("h264", "hevc")).
    allowed_codecs: tuple[str, ...] | None = None
    video_extensions: tuple[str, ...] = VIDEO_EXTENSIONS  # used when listing folders/prefixes
    scale_flags: str = "bicubic"  # ffmpeg scaler
    strict_decode: bool = True  # a decode error anywhere rejects the whole source
    blank_std_threshold: float = 4.0  # luma std (0-255) below which a frame counts as blank
    blank_frame_fraction: float = 0.5  # a clip is blank when this share of frames is blank
    frozen_motion_threshold: float = 0.003  # motion score (0-1) below which a clip is frozen
    quality_stride: int = 4  # spatial subsampling for the quality statistics
    rows_per_shard: int = 64
    shard_compression: str = "zstd"
    workers: int | None = _runtime(None)  # parallel sources; None = the cluster's CPUs
    clips_per_batch: int = _runtime(8)  # clips per batch leaving the decoder (memory bound)
    probe_timeout_s: float = _runtime(60.0)
    decode_timeout_s: float = _runtime(1800.0)

    def __post_init__(self) -> None:
        if isinstance(self.allowed_codecs, list):
            object.__setattr__(self, "allowed_codecs", tuple(self.allowed_codecs))
        if isinstance(self.video_extensions, list):
            object.__setattr__(self, "video_extensions", tuple(self.video_extensions))
        problems = self.problems()
        if problems:
            raise ValueError("invalid curation config: " + "; ".join(problems))

    def problems(self) -> list[str]:
        """Every reason this config is invalid (empty when it is valid)."""
        problems = []
        if self.frames < TUBELET_FRAMES or self.frames % TUBELET_FRAMES:
            problems.append(
                f"frames must be a positive multiple of {TUBELET_FRAMES}, got {self.frames}"
            )
        if self.size < PATCH_SIZE or self.size % PATCH_SIZE:
            problems.append(f"size must be a positive multiple of {PATCH_SIZE}, got {self.size}")
        if not self.fps > 0:
            problems.append(f"fps must be positive, got {self.fps}")
        if self.clip_stride is not None and self.clip_stride < 1:
            problems.append(f"clip_stride must be at least 1, got {self.clip_stride}")
        if self.max_clips_per_source is not None and self.max_clips_per_source < 1:
            problems.append("max_clips_per_source must be at least 1")
        if self.min_short_side < 1:
            problems.append("min_short_side must be at least 1")
        if self.allowed_codecs is not None and not self.allowed_codecs:
            problems.append(
                "allowed_codecs must not be empty (leave it unset to accept every codec)"
            )
        if not 0 < self.blank_frame_fraction <= 1:
            problems.append("blank_frame_fraction must be in (0, 1]")
        if self.rows_per_shard < 1:
            problems.append("rows_per_shard must be at least 1")
        if self.quality_stride < 1 or self.clips_per_batch < 1:
            problems.append("quality_stride and clips_per_batch must be at least 1")
        if self.workers is not None and self.workers < 1:
            problems.append("workers must be at least 1")
        return problems

    @property
    def stride(self) -> int:
        return self.clip_stride or self.frames

    @property
    def min_duration(self) -> float:
        return self.min_duration_s if self.min_duration_s is not None else self.frames / self.fps

    @property
    def clip_shape(self) -> tuple[int, int, int, int]:
        """Layout of one clip: (T, H, W, C)."""
        return (self.frames, self.size, self.size, 3)

    @property
    def clip_bytes(self) -> int:
        frames, height, width, channels = self.clip_shape
        return frames * height * width * channels

    def to_dict(self, output_only: bool = False) -> dict[str, Any]:
        """Plain JSON-able fields; `output_only` drops the execution-only ones."""
        return {
            field.name: _plain(getattr(self, field.name))
            for field in dataclasses.fields(self)
            if not output_only or field.metadata.get("output", True)
        }

    def fingerprint(self) -> str:
        """Hash of the fields that change the output (resume keys, dataset version)."""
        text = json.dumps(self.to_dict(output_only=True), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def replace(self, **changes: Any) -> CurationConfig:
        """A copy with `changes` applied (None values are ignored), validated again."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


def _plain(value: Any) -> Any:
    """Tuples as lists (JSON); None stays None."""
    return list(value) if isinstance(value, tuple) else value


def config_from_mapping(values: Mapping[str, Any]) -> CurationConfig:
    """Build a config from a mapping (a parsed config file); unknown keys are an error."""
    known = {field.name for field in dataclasses.fields(CurationConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(
            f"unknown curation config keys: {', '.join(unknown)} (known: {', '.join(sorted(known))})"
        )
    try:
        return CurationConfig(**dict(values))
    except TypeError as error:  # a value of the wrong type (e.g. frames = "16")
        raise ValueError(f"invalid curation config: {error}") from error


def load_config(path: str | Path) -> CurationConfig:
    """Read a `.json` or `.toml` config file (keys are `CurationConfig` field names)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"config file not found: {path}")
    text = path.read_text()
    try:
        values = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"cannot parse config file {path}: {error}") from error
    if not isinstance(values, dict):
        raise ValueError(f"config file {path} must hold an object of settings")
    section = values.get("curation", values)
    return config_from_mapping(section)
