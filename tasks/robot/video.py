"""ffmpeg helpers for robot videos: stream RGB frames into an mp4, decode a span back to arrays.

Both directions talk to the `ffmpeg` binary through pipes carrying raw rgb24
frames, so nothing but ffmpeg itself is needed and any container/codec that
ffmpeg reads can be decoded.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from dataclasses import dataclass
from types import TracebackType
from typing import IO

import numpy as np


class VideoError(RuntimeError):
    """ffmpeg/ffprobe failed on a file; the message names the file and ffmpeg's reason."""


@dataclass(frozen=True)
class EncoderSettings:
    """How `vjepa collect` encodes videos (h264 in mp4, decodable everywhere)."""

    codec: str = "libx264"
    pix_fmt: str = "yuv420p"
    crf: int = 18
    gop: int = 16  # keyframe interval: bounds the decode cost of seeking to an episode
    preset: str = "veryfast"

    @property
    def codec_name(self) -> str:
        """The codec as ffprobe names it (what LeRobot records in `video.codec`)."""
        return {"libx264": "h264", "libx265": "hevc", "libsvtav1": "av1", "libaom-av1": "av1"}.get(
            self.codec, self.codec
        )


class VideoEncoder:
    """An ffmpeg process that appends (N, H, W, 3) uint8 frames to one video file."""

    def __init__(
        self, path: str, width: int, height: int, fps: float, settings: EncoderSettings
    ) -> None:
        if width % 2 or height % 2:
            raise VideoError(
                f"{path}: {settings.codec} needs even frame sizes, got {width}x{height}"
            )
        self.path = path
        self.width = width
        self.height = height
        self.num_frames = 0
        self._log: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115  (lives as long as ffmpeg)
        command = [
            *("ffmpeg", "-hide_banner", "-loglevel", "error", "-y"),
            *("-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}"),
            *("-framerate", f"{fps}", "-i", "pipe:0"),
            *("-c:v", settings.codec, "-pix_fmt", settings.pix_fmt, "-g", str(settings.gop)),
            *("-crf", str(settings.crf), "-preset", settings.preset),
            *("-movflags", "+faststart", path),
        ]
        self._process = subprocess.Popen(command, stdin=subprocess.PIPE, stderr=self._log)

    def write(self, frames: np.ndarray) -> None:
        """Append frames (N, H, W, 3) uint8."""
        expected = (self.height, self.width, 3)
        if frames.ndim != 4 or frames.shape[1:] != expected or frames.dtype != np.uint8:
            raise VideoError(
                f"{self.path}: frames must be (N, {self.height}, {self.width}, 3) uint8, "
                f"got {frames.shape} {frames.dtype}"
            )
        assert self._process.stdin is not None
        try:
            self._process.stdin.write(np.ascontiguousarray(frames).tobytes())
        except BrokenPipeError as error:
            raise VideoError(f"{self.path}: ffmpeg stopped: {self._stderr()}") from error
        self.num_frames += len(frames)

    def size_in_mb(self) -> float:
        """What ffmpeg has written so far (it lags the frames fed; 0 before the file exists)."""
        try:
            return os.path.getsize(self.path) / 2**20
        except FileNotFoundError:
            return 0.0

    def close(self) -> int:
        """Finish the file; returns the number of frames written."""
        assert self._process.stdin is not None
        if not self._process.stdin.closed:
            self._process.stdin.close()
        code = self._process.wait()
        message = self._stderr()
        self._log.close()
        if code != 0:
            raise VideoError(f"{self.path}: ffmpeg exited with {code}: {message}")
        return self.num_frames

    def __enter__(self) -> VideoEncoder:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if kind is None:
            self.close()
        else:
            self._process.kill()
            self._process.wait()
            self._log.close()

    def _stderr(self) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace").strip()[-2000:]


def probe_size(source: str) -> tuple[int, int]:
    """(width, height) of the first video stream of `source` (a path or URL), via ffprobe."""
    command = [
        *("ffprobe", "-v", "error", "-select_streams", "v:0"),
        *("-show_entries", "stream=width,height", "-of", "json", source),
    ]
    result = subprocess.run(command, capture_output=True, check=False)
    if result.returncode != 0:
        raise VideoError(f"{source}: ffprobe failed: {result.stderr.decode(errors='replace')}")
    streams = json.loads(result.stdout or b"{}").get("streams") or []
    if not streams:
        raise VideoError(f"{source}: no video stream")
    return int(streams[0]["width"]), int(streams[0]["height"])


def decode_span(
    source: str,
    start_seconds: float,
    num_frames: int,
    fps: float,
    size: tuple[int, int],
    resize: bool,
) -> np.ndarray:
    """Decode up to `num_frames` frames starting at `start_seconds`; returns (N, H, W, 3) uint8.

    `size` is the output (height, width); `resize` scales to it (area filter),
    otherwise it must be the stored size. Seeking lands half a frame early so
    float rounding of the episode's start timestamp never skips its first frame
    (ffmpeg's accurate seek drops the frames before the seek point).
    N may be below `num_frames` when the video ends early; callers check.
    """
    height, width = size
    seek = max(0.0, start_seconds - 0.5 / fps)
    command = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin"]
    if seek > 0.0:
        command += ["-ss", f"{seek:.6f}"]
    command += ["-i", source, "-frames:v", str(num_frames), "-map", "0:v:0"]
    if resize:
        command += ["-vf", f"scale={width}:{height}:flags=area"]
    command += ["-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"]
    result = subprocess.run(command, capture_output=True, check=False)
    if result.returncode != 0:
        raise VideoError(
            f"{source}: ffmpeg decode failed: {result.stderr.decode(errors='replace')}"
        )
    frame_bytes = height * width * 3
    count = len(result.stdout) // frame_bytes
    frames = np.frombuffer(result.stdout, dtype=np.uint8, count=count * frame_bytes)
    return frames.reshape(count, height, width, 3)  # (N, H, W, 3)
