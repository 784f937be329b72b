"""Probe and filter: a source's facts, read from the decoding ffmpeg's own input header, and the
rules that reject sources which cannot give a clip.

Curation runs no separate ffprobe. When ffmpeg opens its input it prints, at `info` level and
before it decodes a frame, the same facts ffprobe would report: container, duration, and codec,
size and frame rate of every stream. `parse_header` reads them from those lines, so one process
per source both probes and decodes (a separate ffprobe cost a process start and a second parse of
the container per file, a quarter of the pipeline's overhead over a bare decode). `FilterRules`
applies the config to the facts; `sniff` and `explain_stderr` turn failures into sentences a
person can act on.
"""

from __future__ import annotations

import math
import re
from typing import Any

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
MAGIC = {
    b"\x89PNG\r\n\x1a\n": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"GIF8": "a GIF image",
    b"%PDF": "a PDF document",
    b"PK\x03\x04": "a zip archive",
}

# The lines of ffmpeg's input dump (libavformat's av_dump_format, stable since ffmpeg 1.0).
INPUT_LINE = re.compile(r"^Input #0, (?P<container>\S+), from ")
DURATION_LINE = re.compile(r"^\s+Duration: (?:(?P<h>\d+):(?P<m>\d+):(?P<s>\d+(?:\.\d+)?)|N/A)")
STREAM_LINE = re.compile(
    r"^\s+Stream #0:\d+\S*: (?P<type>[A-Za-z]+): (?P<codec>[\w-]+)(?P<rest>.*)$"
)
SIZE = re.compile(r", (?P<width>\d+)x(?P<height>\d+)\b")
RATE = re.compile(r", (?P<value>\d+(?:\.\d+)?)(?P<kilo>k?) (?P<unit>fps|tbr)\b")


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
    """A short human reason from ffmpeg's error messages (hint + the last message line)."""
    lines = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
    last = lines[-1] if lines else "no message"
    for needle, hint in STDERR_HINTS.items():
        if needle in stderr:
            return f"{hint} ({last[-160:]})"
    return last[-200:]


def _seconds(match: re.Match[str] | None) -> float:
    if match is None or match["h"] is None:
        return math.nan
    return int(match["h"]) * 3600 + int(match["m"]) * 60 + float(match["s"])


def _rate(text: str) -> float:
    """A stream's frame rate: `fps` (average rate), else `tbr`; NaN when neither is given."""
    rates = {m["unit"]: float(m["value"]) * (1000 if m["kilo"] else 1) for m in RATE.finditer(text)}
    return rates.get("fps") or rates.get("tbr") or math.nan


def parse_header(lines: list[str]) -> dict[str, Any] | None:
    """The facts the filter needs from ffmpeg's input dump; None when there is no dump (ffmpeg
    could not open the input). `error_reason` is set when there is no video stream."""
    opened = next((m for m in map(INPUT_LINE.match, lines) if m), None)
    if opened is None:
        return None
    streams = [m for m in map(STREAM_LINE.match, lines) if m]
    facts: dict[str, Any] = {
        "duration_s": _seconds(next((m for m in map(DURATION_LINE.match, lines) if m), None)),
        "width": 0, "height": 0, "codec": "", "container": opened["container"],
        "source_fps": math.nan, "error_reason": "",
    }  # fmt: skip
    videos = [
        s for s in streams if s["type"] == "Video" and "(attached pic)" not in s["rest"]
    ]  # cover art is not the video; ffmpeg's `-map 0:V:0` skips it too
    if not videos:
        others = sorted({f"{s['type'].lower()}: {s['codec']}" for s in streams})
        detail = f" (only {', '.join(others)})" if others else ""
        facts["error_reason"] = f"no video stream{detail}"
        return facts
    video = videos[0]
    size = SIZE.search(video["rest"])
    facts.update(
        codec=video["codec"],
        width=int(size["width"]) if size else 0,
        height=int(size["height"]) if size else 0,
        source_fps=_rate(video["rest"]),
    )
    return facts


def unreadable_reason(source: str, errors: str) -> str:
    """Why ffmpeg could not open `source`: what the file looks like, else ffmpeg's own words."""
    kind = sniff(source)
    return f"{kind}, not a video" if kind else f"ffmpeg cannot read it: {explain_stderr(errors)}"


class FilterRules:
    """Rejects probed sources that cannot give a clip: images, codecs, too short, too small."""

    def __init__(self, config: CurationConfig) -> None:
        self.config = config

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
