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
from tasks.curation.sources import local_path

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
    "Decoder (codec": "this ffmpeg has no decoder for the video codec",
}
# The box types an mp4/mov file can start with: anything else is not an unfinished mp4.
MP4_FIRST_BOXES = {b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot", b"uuid"}
SNIFF_BYTES = 1 << 16
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
# The pixel format and its colour properties: "yuv420p10le(tv, bt2020nc/bt2020/smpte2084, progressive)".
PIXEL_FORMAT = re.compile(
    r", (?P<format>(?:yuvj?|rgb|bgr|gbr|gray|nv|p0|p2|p4|xyz|ya|[a0]?rgba?|[a0]?bgra?)\w*)"
    r"(?:\((?P<props>[^)]*)\))?(?=,|$)"
)
RATE = re.compile(r", (?P<value>\d+(?:\.\d+)?)(?P<kilo>k?) (?P<unit>fps|tbr)\b")


def media_url(source: str, expires: int = PRESIGN_SECONDS) -> str:
    """What ffmpeg should open: the local path, or a presigned HTTP(S) URL for `s3://`.

    A presigned URL lets ffmpeg seek with range requests (an mp4 whose index sits
    at the end still works, unlike a stdin stream), needs no local scratch copy,
    and is valid on whichever node runs the task.
    """
    if not storage.is_remote(source):
        return local_path(source)
    fs, path = storage.filesystem(source)
    return str(fs.sign(path, expiration=expires))


def _samples(source: str) -> tuple[bytes, bool]:
    """The file's first bytes, and whether its start, middle and end are all zero bytes
    (a preallocated, wiped or never-written file; a sparse one costs three small reads)."""
    fs, path = storage.filesystem(source if storage.is_remote(source) else local_path(source))
    with fs.open(path, "rb") as handle:
        head = handle.read(SNIFF_BYTES)
        zeros = not head.strip(b"\0")
        size = int(fs.size(path) or 0)
        for offset in (size // 2, max(size - SNIFF_BYTES, 0)):
            if zeros and offset > len(head):
                handle.seek(offset)
                zeros = not handle.read(SNIFF_BYTES).strip(b"\0")
    return head, zeros


def sniff(source: str) -> str:
    """What an unreadable file looks like ("" when nothing obvious)."""
    try:
        head, zeros = _samples(source)
    except (OSError, ValueError):
        return ""
    if head and zeros:
        return "a file of zero bytes only (no data was ever written to it)"
    if head[:512] and not head[:512].strip(b"\0"):
        return "unknown data (the file starts with zero bytes, no container header)"
    for magic, kind in MAGIC.items():
        if head.startswith(magic):
            return kind
    try:
        text = head[:512].decode("utf-8")
    except UnicodeDecodeError:
        return ""
    return "a text file" if text and all(c.isprintable() or c.isspace() for c in text) else ""


def _looks_like_mp4(source: str) -> bool:
    try:
        head, _ = _samples(source)
    except (OSError, ValueError):
        return True  # cannot tell: keep ffmpeg's own words
    return head[4:8] in MP4_FIRST_BOXES


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
        "source_fps": math.nan, "pixel_format": "", "color": "", "error_reason": "",
    }  # fmt: skip
    videos = [
        s for s in streams if s["type"] == "Video" and "(attached pic)" not in s["rest"]
    ]  # cover art is not the video; ffmpeg's `-map 0:V:0` skips it too
    if not videos:
        facts["error_reason"] = _no_video_reason(streams)
        return facts
    video = videos[0]
    size = SIZE.search(video["rest"])
    pixels = PIXEL_FORMAT.search(video["rest"])
    facts.update(
        pixel_format=pixels["format"] if pixels else "",
        color=(pixels["props"] or "") if pixels else "",
        codec=video["codec"],
        width=int(size["width"]) if size else 0,
        height=int(size["height"]) if size else 0,
        source_fps=_rate(video["rest"]),
    )
    return facts


def _no_video_reason(streams: list[re.Match[str]]) -> str:
    """Why a file that ffmpeg opened has nothing to curate, naming what it does hold."""
    pictures = sorted({s["codec"] for s in streams if "(attached pic)" in s["rest"]})
    others = sorted(
        {f"{s['type'].lower()}: {s['codec']}" for s in streams if "(attached pic)" not in s["rest"]}
    )
    if pictures:
        held = f" beside {', '.join(others)}" if others else ""
        return (
            f"no moving picture: only an attached picture ({', '.join(pictures)} cover art){held}"
        )
    return f"no video stream (only {', '.join(others)})" if others else "no video stream"


def unreadable_reason(source: str, errors: str) -> str:
    """Why ffmpeg could not open `source`: what the file looks like, else ffmpeg's own words."""
    kind = sniff(source)
    if kind:
        return f"{kind}, not a video"
    if "moov atom not found" in errors and not _looks_like_mp4(source):
        # ffmpeg guessed mp4 from the file name; the bytes are no mp4 at all.
        return "unknown data, not a video: no container header ffmpeg recognises"
    return f"ffmpeg cannot read it: {explain_stderr(errors)}"


class FilterRules:
    """Rejects probed sources that cannot give a clip: still images, too short, too small, and
    codecs outside `allowed_codecs` when the config names a list (by default every codec
    ffmpeg decodes is accepted; one it cannot decode fails at the decode stage, with why)."""

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
        allowed = self.config.allowed_codecs
        if allowed is not None and codec not in allowed:
            return f"video codec '{codec}' is not in the allow-list"
        if math.isnan(duration):
            return "the video has no known duration"
        if duration < self.config.min_duration:
            return f"too short: {duration:.2f}s, one clip needs {self.config.min_duration:.2f}s"
        if min(width, height) < self.config.min_short_side:
            return f"resolution too low: {width}x{height} (short side under {self.config.min_short_side}px)"
        return ""
