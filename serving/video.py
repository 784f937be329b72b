"""Decode an encoded video body (mp4, webm...) into a clip, with ffmpeg, under hard limits.

The same rules as curation's decoder: ffmpeg resamples to `fps`, scales the short side to `size`
and centre-crops `size x size`, emitting RGB24 frames. Limits: the body size (checked by the
ingress before this), a frame limit (`-frames:v max_frames + 1`, so a longer video is detected
and refused rather than silently cut), a pixel limit on the input stream (a tiny file declaring a
huge resolution) and a wall-clock timeout after which ffmpeg is killed. The body goes to a
temporary file, since mp4 files with their index at the end cannot be decoded from a pipe.
Every failure is a `RequestError` (422) saying what to fix.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile

import numpy as np

from serving.codec import RequestError

MAX_INPUT_PIXELS = 4096 * 4096  # per input frame; larger streams are refused by the decoder


def ffmpeg_command(path: str, size: int, fps: float, max_frames: int) -> list[str]:
    graph = (
        f"fps={fps},scale={size}:{size}:force_original_aspect_ratio=increase:flags=bilinear,"
        f"crop={size}:{size}"
    )
    return [
        "ffmpeg", "-nostdin", "-hide_banner", "-nostats", "-loglevel", "error",
        "-max_pixels", str(MAX_INPUT_PIXELS), "-i", path,
        "-map", "0:V:0", "-an", "-sn", "-dn", "-vf", graph, "-pix_fmt", "rgb24",
        "-frames:v", str(max_frames + 1), "-f", "rawvideo", "pipe:1",
    ]  # fmt: skip


async def _run(command: list[str], timeout_s: float) -> tuple[int, bytes, bytes]:
    process = await asyncio.create_subprocess_exec(
        *command,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout_s)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        raise RequestError(
            422, f"decoding the video took longer than {timeout_s:g} s; send a shorter clip"
        ) from None
    except asyncio.CancelledError:  # the client went away: no ffmpeg outlives the request
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        raise
    return int(process.returncode or 0), out, err


def _reason(stderr: bytes, path: str) -> str:
    text = stderr.decode("utf-8", "replace").replace(path, "the body")
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1].strip()[:300] if lines else "no frames"


async def decode_video(
    body: bytes, size: int, fps: float, max_frames: int, tubelet: int, timeout_s: float
) -> np.ndarray:
    """An encoded video -> uint8 frames `(T, size, size, 3)`, T a multiple of `tubelet`."""
    handle, path = tempfile.mkstemp(prefix="vjepa-vqa-", suffix=".video")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(body)
        code, out, err = await _run(ffmpeg_command(path, size, fps, max_frames), timeout_s)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
    frame_bytes = size * size * 3
    count = len(out) // frame_bytes
    if code != 0 and count == 0:
        raise RequestError(422, f"the body is not a decodable video: {_reason(err, path)}")
    if count > max_frames:
        raise RequestError(
            422,
            f"the video has more than {max_frames} frames at {fps:g} fps (the limit); "
            f"send at most {max_frames / fps:g} s",
        )
    count -= count % tubelet
    if count == 0:
        raise RequestError(
            422,
            f"the video decodes to fewer than {tubelet} frames at {fps:g} fps; send a longer clip",
        )
    frames = np.frombuffer(out, np.uint8, count=count * frame_bytes)
    return frames.reshape(count, size, size, 3)
