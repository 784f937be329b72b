"""`/v1/vqa` input checks without Ray: questions, query strings, clips, and the video decoder."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import numpy as np
import pytest

from serving.codec import RequestError
from serving.config import VQASettings
from serving.video import decode_video
from serving.vqa_schemas import VQAInfo, check_clip, parse_query, parse_question, video_options

SETTINGS = VQASettings(max_frames=8, max_new_tokens=16, default_new_tokens=4)
INFO = VQAInfo(
    model="m",
    encoder="e",
    language_model="lm",
    patch_size=16,
    tubelet_size=2,
    image_size=64,
    fps=4.0,
    max_frames=8,
    max_new_tokens=16,
    batching=True,
    max_batch_size=8,
)


def status_and_message(call: object) -> tuple[int, str]:
    with pytest.raises(RequestError) as error:
        call()  # type: ignore[operator]
    return error.value.status, error.value.message


@pytest.mark.parametrize(
    ("value", "words"),
    [("", "empty"), (" \n ", "empty"), ("x" * 513, "limit is 512"), (b"\xff?", "not UTF-8"),
     ("a\x00b", "NUL"), (7, "must be text")],
)  # fmt: skip
def test_bad_questions_are_422(value: object, words: str) -> None:
    status, message = status_and_message(lambda: parse_question(value, SETTINGS))
    assert status == 422 and words in message


def test_good_question_is_stripped_and_bytes_are_decoded() -> None:
    assert parse_question("  what colour?  ", SETTINGS) == "what colour?"
    assert parse_question("quelle café ?".encode(), SETTINGS) == "quelle café ?"


def test_query_string_is_strict_utf8_with_typed_options() -> None:
    parsed = parse_query(b"question=caf%C3%A9%3F&max_new_tokens=5&stream=true&temperature=0.5")
    assert parsed == {"question": "café?", "max_new_tokens": 5, "stream": True, "temperature": 0.5}
    assert video_options(parsed, SETTINGS)["max_new_tokens"] == 5
    for query, words in (
        (b"question=%FF", "not UTF-8"),
        (b"question=a&colour=red", "unknown query parameter"),
        (b"question=a&max_new_tokens=lots", "must be a number"),
        (b"question=a&stream=maybe", "true or false"),
    ):
        assert words in status_and_message(lambda q=query: parse_query(q))[1]
    assert (
        "max_new_tokens"
        in status_and_message(
            lambda: video_options({"question": "a", "max_new_tokens": 99}, SETTINGS)
        )[1]
    )
    assert (
        "temperature"
        in status_and_message(
            lambda: video_options({"question": "a", "temperature": float("nan")}, SETTINGS)
        )[1]
    )


def test_clips_off_the_grid_or_too_long_are_422() -> None:
    assert check_clip(np.zeros((4, 64, 32, 3), np.uint8), INFO, SETTINGS, 512).shape == (
        1, 4, 64, 32, 3,
    )  # fmt: skip
    for shape, words in (
        ((3, 64, 64, 3), "tubelet"),
        ((10, 64, 64, 3), "exceed the limit of 8"),
        ((4, 60, 64, 3), "patch size"),
        ((2, 4, 64, 64, 3), "frames"),
        ((0, 64, 64, 3), "empty"),
    ):
        status, message = status_and_message(
            lambda s=shape: check_clip(np.zeros(s, np.uint8), INFO, SETTINGS, 512)
        )
        assert status == 422 and words in message, (shape, message)


def video(path: Path, seconds: float, codec: list[str]) -> bytes:
    source = f"testsrc=size=96x80:rate=8:duration={seconds}"
    command = ["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i", source, *codec]
    subprocess.run([*command, str(path)], check=True)
    return path.read_bytes()


def decode(body: bytes, max_frames: int = 8, timeout_s: float = 20.0) -> np.ndarray:
    return asyncio.run(decode_video(body, 64, 4.0, max_frames, 2, timeout_s))


def test_mp4_and_webm_decode_to_the_model_grid(tmp_path: Path) -> None:
    mp4 = video(tmp_path / "a.mp4", 1.5, ["-pix_fmt", "yuv420p"])
    webm = video(tmp_path / "a.webm", 1.5, ["-c:v", "libvpx-vp9", "-b:v", "200k"])
    for body in (mp4, webm):
        frames = decode(body)
        assert frames.shape == (6, 64, 64, 3) and frames.dtype == np.uint8 and frames.std() > 0


def test_unreadable_long_or_slow_videos_are_422_not_500(tmp_path: Path) -> None:
    long = video(tmp_path / "long.mp4", 4.0, ["-pix_fmt", "yuv420p"])
    cases = [
        (lambda: decode(b"\x00\x00\x00\x18ftypmp42" + b"junk" * 100), "not a decodable video"),
        (lambda: decode(long[: len(long) // 3]), "not a decodable video"),
        (lambda: decode(long), "more than 8 frames"),
        (lambda: decode(long, max_frames=64, timeout_s=0.001), "longer than"),
        (lambda: decode(video(tmp_path / "one.mp4", 0.2, []), max_frames=8), "fewer than 2"),
    ]
    for call, words in cases:
        status, message = status_and_message(call)
        assert status == 422 and words in message, message
        assert str(tmp_path) not in message and "vjepa-vqa-" not in message


def test_request_errors_survive_pickling() -> None:
    """A replica's refusal reaches the ingress pickled; it must stay a 4xx with its message."""
    import pickle

    error = pickle.loads(pickle.dumps(RequestError(422, "too long", "frames")))
    assert (error.status, error.message, error.field) == (422, "too long", "frames")
