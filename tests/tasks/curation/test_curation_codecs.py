"""Every decodable moving picture is curated; still pictures are not; rotated, variable-rate,
interlaced, 10-bit and HDR sources give upright, evenly timed 8-bit clips with a recorded note.

All inputs are real files written by ffmpeg's encoders (a phone's rotation is the display
matrix in the mp4 track header, patched in as phones write it: this ffmpeg's muxer has no
`-display_rotation`)."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from tasks.curation.config import CurationConfig
from tasks.curation.decode import DecodeStage

from .conftest import ffmpeg, make_video

CONFIG = CurationConfig(fps=4, frames=4, size=32, min_short_side=32)


def decode(path: Path, config: CurationConfig = CONFIG) -> tuple[np.ndarray, str, str, str]:
    """Clips `(N, T, H, W, C)` of one source, and its end row's stage, reason and note."""
    batch = {
        "source": np.array([str(path)]),
        "key": np.array(["k"]),
        "size": np.array([path.stat().st_size]),
    }
    rows = list(DecodeStage(config)(batch))
    end = rows[-1]
    clips = [row["frames"] for row in rows[:-1]]
    frames = np.concatenate(clips) if clips else np.zeros((0, *config.clip_shape), np.uint8)
    return frames, str(end["error_stage"][0]), str(end["error_reason"][0]), str(end["note"][0])


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("codecs")


@pytest.mark.parametrize(
    ("name", "codec"),
    [("divx3.avi", ("-c:v", "msmpeg4", "-q:v", "4")), ("cinepak.avi", ("-c:v", "cinepak"))],
)
def test_old_codecs_are_curated_by_default(root: Path, name: str, codec: tuple[str, ...]) -> None:
    path = make_video(root / name, codec=codec)
    clips, stage, reason, _ = decode(path)
    assert (stage, reason) == ("", "")
    assert clips.shape == (3, 4, 32, 32, 3)
    narrow = CONFIG.replace(allowed_codecs=("h264",))  # the opt-in narrow list still works
    reason = f"video codec '{_codec(name)}' is not in the allow-list"
    assert decode(path, narrow)[1:3] == ("filter", reason)


def _codec(name: str) -> str:
    return {"divx3.avi": "msmpeg4v3", "cinepak.avi": "cinepak"}[name]


def test_attached_picture_only_is_not_a_video(root: Path) -> None:
    cover = root / "cover.png"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x64", "-frames:v", "1", str(cover))
    path = root / "song.mp4"
    ffmpeg(
        "-f", "lavfi", "-i", "sine=d=5", "-i", str(cover), "-map", "0", "-map", "1",
        "-c:a", "aac", "-c:v", "mjpeg", "-disposition:v:0", "attached_pic", str(path),
    )  # fmt: skip
    _, stage, reason, _ = decode(path)
    assert stage == "probe"
    assert (
        reason == "no moving picture: only an attached picture (mjpeg cover art) beside audio: aac"
    )


def test_single_frame_stream_is_a_still_picture(root: Path) -> None:
    cover = root / "frame.png"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x64", "-frames:v", "1", str(cover))
    path = root / "one_frame.mp4"  # 5 s long by its audio, one video frame
    ffmpeg(
        "-f", "lavfi", "-i", "sine=d=5", "-i", str(cover), "-map", "0", "-map", "1",
        "-c:a", "aac", "-c:v", "libx264", "-pix_fmt", "yuv420p", str(path),
    )  # fmt: skip
    _, stage, reason, _ = decode(path)
    assert (stage, reason) == (
        "decode",
        "a single-frame video stream (at most one frame decodes): a still picture, "
        "not a moving picture",
    )


def _rotate_mp4(path: Path, degrees: int) -> None:
    """Write a display matrix into the mp4's track header, as phones record rotation."""
    data = bytearray(path.read_bytes())
    at = data.index(b"tkhd") + 44  # version-0 tkhd: the matrix follows 40 bytes of fields
    one = 1 << 16
    matrices = {90: (0, one, 0, -one, 0, 0, 0, 0, 1 << 30)}
    data[at : at + 36] = struct.pack(">9i", *matrices[degrees])
    path.write_bytes(data)


def test_rotated_phone_video_comes_out_upright(root: Path) -> None:
    path = root / "phone.mp4"  # stored landscape: left half red, right half blue
    ffmpeg(
        "-f", "lavfi", "-i", "color=c=red:size=48x64:rate=12", "-f", "lavfi",
        "-i", "color=c=blue:size=48x64:rate=12", "-filter_complex", "[0][1]hstack",
        "-t", "3", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(path),
    )  # fmt: skip
    flat = decode(path)[0].astype(int)
    assert flat[0, 0, 16, 0, 0] > 200 and flat[0, 0, 16, -1, 2] > 200  # unrotated: red | blue
    _rotate_mp4(path, 90)  # shown turned a quarter clockwise: red on top, blue below
    clips, stage, _, _ = decode(path)
    top, bottom = clips[0, 0, 0].astype(int).mean(0), clips[0, 0, -1].astype(int).mean(0)
    assert stage == ""
    assert top[0] > 200 and top[2] < 60, top
    assert bottom[2] > 200 and bottom[0] < 60, bottom


def _clock_video(path: Path, pattern: str = "", extra: tuple[str, ...] = ()) -> Path:
    """A grey picture whose brightness grows by 40 per second of its own presentation time."""
    ffmpeg(
        "-f", "lavfi", "-i", "color=c=gray:size=64x64:rate=30", "-t", "5",
        "-vf", f"{pattern}geq=lum='30+40*T':cb=128:cr=128", *extra,
        "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(path),
    )  # fmt: skip
    return path


def test_variable_frame_rate_gives_evenly_timed_clips(root: Path) -> None:
    # 30 fps for the first 2 s, then only every 5th frame (6 fps), timestamps kept as written.
    vfr = _clock_video(
        root / "vfr.mkv", "select='lt(t\\,2)+not(mod(n\\,5))',", ("-fps_mode", "vfr")
    )
    steady = _clock_video(root / "cfr.mkv")
    clips, stage, _, _ = decode(vfr)
    assert stage == ""
    shown = clips[..., 0].reshape(-1, 32 * 32).mean(1)  # (N * T,) brightness = time shown
    reference = decode(steady)[0][..., 0].reshape(-1, 32 * 32).mean(1)
    assert len(shown) == 16 and len(reference) == 20  # whole clips up to each one's last frame
    one_source_frame = 40 * 255 / 219 / 6 + 1  # brightness of 1/6 s (video range -> RGB)
    assert np.abs(shown - reference[:16]).max() <= one_source_frame, (shown, reference)
    assert np.diff(reference).min() > 5  # the clock does move: the test can tell frames apart


def test_interlaced_source_is_deinterlaced_with_a_note(root: Path) -> None:
    path = root / "interlaced.mp4"
    ffmpeg(
        "-f", "lavfi", "-i", "testsrc2=size=96x64:rate=24", "-t", "3",
        "-vf", "tinterlace=interleave_top,fieldorder=tff", "-flags", "+ilme+ildct",
        "-c:v", "libx264", "-preset", "ultrafast", "-x264opts", "tff=1", str(path),
    )  # fmt: skip
    clips, stage, _, note = decode(path)
    assert stage == "" and clips.shape == (3, 4, 32, 32, 3)
    assert note == "interlaced source (top first) deinterlaced with bwdif"


@pytest.mark.parametrize(
    ("name", "tags", "note"),
    [
        ("ten_bit.mp4", (), "yuv420p10le source (more than 8 bits) converted to 8-bit RGB"),
        (
            "hdr_pq.mp4",
            ("-color_primaries", "bt2020", "-color_trc", "smpte2084", "-colorspace", "bt2020nc"),
            "HDR source (PQ, yuv420p10le) tone-mapped to SDR BT.709",
        ),
        (
            "hdr_hlg.mkv",
            ("-color_primaries", "bt2020", "-color_trc", "arib-std-b67", "-colorspace", "bt2020nc"),
            "HDR source (HLG, yuv420p10le) tone-mapped to SDR BT.709",
        ),
    ],
)
def test_deep_colour_and_hdr_are_converted_with_a_note(
    root: Path, name: str, tags: tuple[str, ...], note: str
) -> None:
    codec = ("-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p10le", *tags)
    path = make_video(root / name, codec=codec)
    clips, stage, reason, found = decode(path)
    assert (stage, reason, found) == ("", "", note)
    assert clips.shape == (3, 4, 32, 32, 3) and clips.std() > 10  # a real picture, not black
