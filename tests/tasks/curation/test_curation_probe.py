"""Probe and filter: facts from ffmpeg's input header for good videos, readable reasons for bad ones."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from tasks.curation.config import CurationConfig
from tasks.curation.decode import DecodeStage, ffmpeg_command
from tasks.curation.ffmpeg_process import FfmpegProcess
from tasks.curation.probe import FilterRules, parse_header

MP4_HEADER = [
    "Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'a, from b.mp4':",
    "  Metadata:",
    "    major_brand     : isom",
    "  Duration: 01:02:03.50, start: 0.000000, bitrate: 105 kb/s",
    "  Stream #0:0[0x1](und): Audio: aac (LC) (mp4a / 0x6134706D), 44100 Hz, mono, fltp (default)",
    "  Stream #0:1[0x2](und): Video: mjpeg (Baseline), yuvj420p(pc), 300x300, 90k tbr, 90k tbn (attached pic)",
    "  Stream #0:2[0x3](und): Video: h264 (High) (avc1 / 0x31637661), yuv420p(progressive), "
    "1280x720 [SAR 1:1 DAR 16:9], 103 kb/s, 29.97 fps, 29.97 tbr, 30k tbn (default)",
]


def _header(config: CurationConfig, path: Path) -> list[str]:
    """The input dump of the decode command, as the decode stage sees it."""
    command = ffmpeg_command(str(path), config, ["-f", "null", "-"])
    with FfmpegProcess(command, timeout_s=60) as process:
        assert process.wait_header(60)
        return process.header


def _end_row(config: CurationConfig, path: Path) -> tuple[str, str]:
    batch = {
        "source": np.array([str(path)]),
        "key": np.array(["k"]),
        "size": np.array([path.stat().st_size]),
    }
    last = list(DecodeStage(config)(batch))[-1]
    assert last["is_end"].tolist() == [True]
    return str(last["error_stage"][0]), str(last["error_reason"][0])


def test_header_parsing_skips_cover_art_and_codec_tags() -> None:
    facts = parse_header(MP4_HEADER)
    assert facts == {
        "duration_s": 3723.5,
        "width": 1280,
        "height": 720,
        "codec": "h264",
        "container": "mov,mp4,m4a,3gp,3g2,mj2",
        "source_fps": 29.97,
        "pixel_format": "yuv420p",
        "color": "progressive",
        "error_reason": "",
    }
    assert parse_header(["[error] moov atom not found"]) is None  # ffmpeg could not open it
    audio = parse_header([MP4_HEADER[0], "  Duration: N/A, bitrate: N/A", *MP4_HEADER[4:6]])
    assert audio is not None and math.isnan(audio["duration_s"])
    assert audio["error_reason"] == (
        "no moving picture: only an attached picture (mjpeg cover art) beside audio: aac"
    )


def test_good_videos_have_facts(small_config: CurationConfig, videos: dict[str, Path]) -> None:
    mp4 = parse_header(_header(small_config, videos["moving_mp4"]))
    webm = parse_header(_header(small_config, videos["moving_webm"]))
    assert mp4 is not None and webm is not None
    assert (mp4["codec"], webm["codec"]) == ("h264", "vp9")
    assert (mp4["width"], mp4["height"], webm["width"], webm["height"]) == (96, 64, 64, 80)
    assert abs(mp4["duration_s"] - 3.0) < 0.2 and mp4["source_fps"] == pytest.approx(12)
    assert _end_row(small_config, videos["moving_mp4"]) == ("", "")


@pytest.mark.parametrize(
    ("name", "stage", "words"),
    [
        ("empty", "probe", "empty file (0 bytes)"),
        ("notes", "probe", "a text file, not a video"),
        ("truncated", "probe", "truncated"),
        ("audio_only", "probe", "no video stream (only audio: aac)"),
        ("picture", "filter", "a still image (png)"),
        ("too_short", "filter", "too short"),
    ],
)
def test_bad_inputs_get_reasons(
    small_config: CurationConfig, videos: dict[str, Path], name: str, stage: str, words: str
) -> None:
    found_stage, reason = _end_row(small_config, videos[name])
    assert found_stage == stage
    assert words in reason


def test_header_timeout_and_allow_list(
    small_config: CurationConfig, videos: dict[str, Path]
) -> None:
    impatient = small_config.replace(probe_timeout_s=1e-6)  # no ffmpeg starts in a microsecond
    assert _end_row(impatient, videos["moving_mp4"]) == (
        "probe",
        "ffmpeg did not read the file's header within 0s",
    )
    vp9_only = small_config.replace(allowed_codecs=("vp9",))
    assert _end_row(vp9_only, videos["moving_mp4"]) == (
        "filter",
        "video codec 'h264' is not in the allow-list",
    )


def test_filter_rules_on_facts() -> None:
    rules = FilterRules(
        CurationConfig(fps=4, frames=4, size=32, min_short_side=48, allowed_codecs=("h264",))
    )
    facts = {
        "codec": "h264",
        "container": "mov",
        "duration_s": 2.0,
        "width": 64,
        "height": 48,
        "source_fps": 25.0,
    }
    assert rules.check(facts) == ""
    assert "allow-list" in rules.check({**facts, "codec": "vp9"})
    assert "resolution too low: 64x40" in rules.check({**facts, "height": 40})
    assert "no known duration" in rules.check({**facts, "duration_s": math.nan})
    assert "too short: 0.50s" in rules.check({**facts, "duration_s": 0.5})
