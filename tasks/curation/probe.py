"""Probe and filter stages: read container/stream facts with ffprobe, then reject unusable sources.

Both are callable classes over a batch of source rows (`source`, `size`, ...):
`ProbeStage` adds the facts (`duration_s`, `width`, `height`, `codec`, ...)
and `FilterStage` applies the rules of the config. Neither raises for bad
input: a problem is recorded in `error_stage` / `error_reason`, a sentence a
person can act on, and the row flows on to the rejected table.
"""

from __future__ import annotations

import json
import math
import subprocess
from typing import Any

import numpy as np

from tasks import storage
from tasks.curation.config import CurationConfig

PRESIGN_SECONDS = 6 * 3600
IMAGE_CODECS = {"png", "bmp", "gif", "webp", "tiff", "jpegls", "pgm", "ppm", "qoi"}
STDERR_HINTS = {
    "moov atom not found": "the mp4 index (moov atom) is missing: truncated or unfinished file",
    "Invalid data found when processing input": "not a recognised audio/video format",
    "End of file": "the file ends before its header does",
    "corrupt input packet": "the stream is corrupt or cut short",
    "Invalid NAL unit": "the video data is corrupt",
    "Error splitting the input into NAL units": "the video data is corrupt",
    "404 Not Found": "the object does not exist (HTTP 404)",
    "403 Forbidden": "access denied (HTTP 403)",
}
PROBE_COLUMNS = ("duration_s", "width", "height", "codec", "container", "source_fps")


def media_url(source: str, expires: int = PRESIGN_SECONDS) -> str:
    """What ffmpeg should open: the local path, or a presigned HTTP(S) URL for `s3://`.

    A presigned URL lets ffmpeg seek with range requests (an mp4 whose index sits
    at the end still works, unlike a stdin stream), needs no local scratch copy,
    and is valid on whichever node runs the task.
    """
    if not storage.is_remote(source):
        return source
    fs, path = storage.filesystem(source)
    return str(fs.sign(path, expiration=expires))


MAGIC = {
    b"\x89PNG\r\n\x1a\n": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"GIF8": "a GIF image",
    b"%PDF": "a PDF document",
    b"PK\x03\x04": "a zip archive",
}


def sniff(source: str) -> str:
    """What the first bytes of an unreadable file look like ("" when nothing obvious)."""
    try:
        fs, path = storage.filesystem(source)
        with fs.open(path, "rb") as handle:
            head = handle.read(512)
    except (OSError, ValueError):
        return ""
    for magic, kind in MAGIC.items():
        if head.startswith(magic):
            return kind
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return ""
    return "a text file" if text and all(c.isprintable() or c.isspace() for c in text) else ""


def explain_stderr(stderr: str) -> str:
    """A short human reason from ffmpeg/ffprobe's stderr (hint + the last message line)."""
    lines = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
    last = lines[-1] if lines else "no message"
    for needle, hint in STDERR_HINTS.items():
        if needle in stderr:
            return f"{hint} ({last[-160:]})"
    return last[-200:]


def run_ffprobe(url: str, timeout: float) -> dict[str, Any]:
    """ffprobe's JSON for `url`; raises RuntimeError with a readable reason."""
    command = [
        "ffprobe", "-v", "error", "-print_format", "json",
        "-show_format", "-show_streams", "-i", url,
    ]  # fmt: skip
    try:
        result = subprocess.run(command, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as error:
        raise RuntimeError(f"ffprobe timed out after {timeout:.0f}s") from error
    stderr = result.stderr.decode(errors="replace")
    if result.returncode != 0:
        raise RuntimeError(f"ffprobe cannot read it: {explain_stderr(stderr)}")
    return dict(json.loads(result.stdout or b"{}"))


def _rate(text: str | None) -> float:
    try:
        numerator, _, denominator = (text or "0/0").partition("/")
        value = float(numerator) / float(denominator or 1)
    except (ValueError, ZeroDivisionError):
        return math.nan
    return value if value > 0 else math.nan


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def summarize_probe(info: dict[str, Any]) -> dict[str, Any]:
    """The facts the filter needs from ffprobe's JSON; `error_reason` set when there is no video."""
    streams = info.get("streams", [])
    fmt = info.get("format", {})
    videos = [
        s
        for s in streams
        if s.get("codec_type") == "video" and not s.get("disposition", {}).get("attached_pic")
    ]
    facts: dict[str, Any] = {
        "duration_s": math.nan, "width": 0, "height": 0, "codec": "",
        "container": str(fmt.get("format_name", "")), "source_fps": math.nan, "error_reason": "",
    }  # fmt: skip
    if not videos:
        others = sorted({f"{s.get('codec_type')}: {s.get('codec_name')}" for s in streams})
        detail = f" (only {', '.join(others)})" if others else ""
        facts["error_reason"] = f"no video stream{detail}"
        return facts
    video = videos[0]
    duration = _float(video.get("duration"))
    if math.isnan(duration):
        duration = _float(fmt.get("duration"))
    facts.update(
        duration_s=duration,
        width=int(video.get("width") or 0),
        height=int(video.get("height") or 0),
        codec=str(video.get("codec_name", "")),
        source_fps=_rate(video.get("avg_frame_rate")) or _rate(video.get("r_frame_rate")),
    )
    return facts


class ProbeStage:
    """Adds ffprobe facts to each source row; unreadable sources get `error_stage = probe`."""

    def __init__(self, config: CurationConfig) -> None:
        self.config = config

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = [
            self._probe(str(source), int(size))
            for source, size in zip(batch["source"], batch["size"], strict=True)
        ]
        out = dict(batch)
        for column in (*PROBE_COLUMNS, "error_reason"):
            out[column] = np.array([row[column] for row in rows])
        out["error_stage"] = np.array(["probe" if row["error_reason"] else "" for row in rows])
        return out

    def _probe(self, source: str, size: int) -> dict[str, Any]:
        empty = summarize_probe({})
        if size == 0:
            return {**empty, "error_reason": "empty file (0 bytes)"}
        try:
            info = run_ffprobe(media_url(source), self.config.probe_timeout_s)
        except (RuntimeError, OSError, ValueError) as error:
            kind = sniff(source)
            reason = f"{kind}, not a video" if kind else str(error)
            return {**empty, "error_reason": reason}
        return summarize_probe(info)


class FilterStage:
    """Rejects probed sources that cannot give a clip: images, codecs, too short, too small."""

    def __init__(self, config: CurationConfig) -> None:
        self.config = config

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        stages = [str(s) for s in batch["error_stage"]]
        reasons = [str(r) for r in batch["error_reason"]]
        for index, stage in enumerate(stages):
            if stage:
                continue
            reason = self.check({column: batch[column][index] for column in PROBE_COLUMNS})
            if reason:
                stages[index], reasons[index] = "filter", reason
        return {**batch, "error_stage": np.array(stages), "error_reason": np.array(reasons)}

    def check(self, facts: dict[str, Any]) -> str:
        """The reason to reject a source with these probe facts, or "" to keep it."""
        codec, container = str(facts["codec"]), str(facts["container"])
        duration = float(facts["duration_s"])
        width, height = int(facts["width"]), int(facts["height"])
        still = container.endswith("_pipe") or container == "image2" or codec in IMAGE_CODECS
        if still and (math.isnan(duration) or duration <= 0):
            return f"a still image ({codec or container}), not a video"
        if codec not in self.config.allowed_codecs:
            return f"video codec '{codec}' is not in the allow-list"
        if math.isnan(duration):
            return "the video has no known duration"
        if duration < self.config.min_duration:
            return f"too short: {duration:.2f}s, one clip needs {self.config.min_duration:.2f}s"
        if min(width, height) < self.config.min_short_side:
            return f"resolution too low: {width}x{height} (short side under {self.config.min_short_side}px)"
        return ""
