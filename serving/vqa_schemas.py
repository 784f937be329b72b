"""Request and response models of `POST /v1/vqa`, and their validation.

A request is a clip and a question. The clip comes either as `.npy` frames in a msgpack map (like
`/v1/embed`) or as an encoded video file in the body (mp4/webm, decoded by `serving.video`), the
question and the options then in the query string. Everything is checked here against the
served model (`VQAInfo`) and the configured limits before any model work; a problem is a
`RequestError` (4xx) naming the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

import numpy as np
from pydantic import BaseModel, ConfigDict

from modeling.vlm_prompts import QuestionError, check_question
from serving.codec import RequestError, check_array, decode_array, required
from serving.config import VQASettings

VQA_FIELDS = ("frames", "question", "max_new_tokens", "temperature", "stream")
VIDEO_TYPES = ("video/mp4", "video/webm", "video/x-matroska", "video/quicktime")
MAX_TEMPERATURE = 10.0


class VQAInfo(BaseModel):
    """What a client needs to know about the served VQA model."""

    model: str  # the model folder's name
    encoder: str  # what the checkpoint says it was aligned on
    language_model: str
    patch_size: int
    tubelet_size: int
    image_size: int  # side a video body is decoded to (frames sent as .npy may differ)
    fps: float  # frame rate a video body is decoded at
    max_frames: int
    max_new_tokens: int
    batching: bool
    max_batch_size: int


class VQATiming(BaseModel):
    batch_size: int = 1  # requests answered by the same generate call
    queue_ms: float = 0.0  # waiting for the batch
    encode_ms: float = 0.0  # encoder + projector of the batch
    generate_ms: float = 0.0  # the language model's generate of the batch
    decode_ms: float = 0.0  # ffmpeg, for a video body
    server_ms: float = 0.0  # ingress total


class VQAResponse(BaseModel):
    """The answer to one question (JSON; also what `VQAClient.ask` returns)."""

    answer: str
    num_tokens: int  # tokens generated (without padding or the end-of-sequence token)
    timing: VQATiming = VQATiming()


class VQARequest(BaseModel):
    """One validated question about one clip `(1, T, H, W, 3)` uint8."""

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)

    frames: np.ndarray  # (1, T, H, W, 3) uint8
    question: str
    max_new_tokens: int
    temperature: float = 0.0  # 0: greedy
    stream: bool = False
    decode_ms: float = 0.0

    @property
    def group(self) -> tuple[Any, ...]:
        """Requests with the same group key can share one encoder pass and one generate."""
        return (tuple(self.frames.shape), self.max_new_tokens, self.temperature)


def parse_question(value: Any, settings: VQASettings) -> str:
    """A non-empty UTF-8 question of at most `max_question_chars` characters (stripped)."""
    if isinstance(value, bytearray):
        value = bytes(value)
    try:
        return check_question(value, settings.max_question_chars)
    except QuestionError as error:
        raise RequestError(422, f"field 'question': {error}", "question") from None


def _options(message: Mapping[str, Any], settings: VQASettings) -> dict[str, Any]:
    tokens = message.get("max_new_tokens")
    if tokens is None:
        tokens = settings.default_new_tokens
    if isinstance(tokens, bool) or not isinstance(tokens, int):
        raise RequestError(422, "field 'max_new_tokens' must be an integer", "max_new_tokens")
    if not 1 <= tokens <= settings.max_new_tokens:
        raise RequestError(
            422,
            f"field 'max_new_tokens' must be in [1, {settings.max_new_tokens}], got {tokens}",
            "max_new_tokens",
        )
    temperature = message.get("temperature", 0.0)
    if isinstance(temperature, bool) or not isinstance(temperature, int | float):
        raise RequestError(422, "field 'temperature' must be a number", "temperature")
    if not 0.0 <= temperature <= MAX_TEMPERATURE:  # also refuses NaN
        raise RequestError(
            422, f"field 'temperature' must be in [0, {MAX_TEMPERATURE:g}]", "temperature"
        )
    stream = message.get("stream", False)
    if not isinstance(stream, bool):
        raise RequestError(422, "field 'stream' must be a boolean", "stream")
    return {"max_new_tokens": tokens, "temperature": float(temperature), "stream": stream}


def check_clip(
    frames: np.ndarray, info: VQAInfo, settings: VQASettings, max_size: int
) -> np.ndarray:
    """Frames `(T, H, W, 3)` or `(1, T, H, W, 3)` uint8 on the encoder's grid -> `(1, T, H, W, 3)`."""
    frames = check_array(
        "frames", frames, [(None, None, None, 3), (1, None, None, None, 3)], ["uint8"]
    )
    clip = frames if frames.ndim == 5 else frames[None]  # (1, T, H, W, 3)
    steps, height, width = clip.shape[1:4]
    problems = []
    if min(clip.shape) == 0:
        problems.append("no axis may be empty")
    if steps % info.tubelet_size:
        problems.append(f"T={steps} must be a multiple of the tubelet size {info.tubelet_size}")
    if steps > settings.max_frames:
        problems.append(f"T={steps} frames exceed the limit of {settings.max_frames}")
    if height % info.patch_size or width % info.patch_size:
        problems.append(
            f"H={height} and W={width} must be multiples of the patch size {info.patch_size}"
        )
    if max(height, width) > max_size:
        problems.append(f"H and W must be <= {max_size}")
    if problems:
        raise RequestError(
            422, f"field 'frames' {tuple(frames.shape)}: " + "; ".join(problems), "frames"
        )
    return clip


def parse_vqa(
    message: dict[str, Any], info: VQAInfo, settings: VQASettings, max_size: int
) -> VQARequest:
    """Validate a decoded msgpack `/v1/vqa` map."""
    question = parse_question(required(message, "question"), settings)
    frames = check_clip(
        decode_array("frames", required(message, "frames")), info, settings, max_size
    )
    return VQARequest(frames=frames, question=question, **_options(message, settings))


def parse_query(query_string: bytes) -> dict[str, Any]:
    """The query string of a video-body request, decoded as strict UTF-8 (422 otherwise)."""
    try:
        pairs = parse_qsl(query_string.decode("utf-8"), errors="strict")
    except UnicodeDecodeError as error:
        raise RequestError(
            422,
            f"field 'question': the query string is not UTF-8 text ({error.reason})",
            "question",
        ) from None
    allowed = set(VQA_FIELDS) - {"frames"}
    message: dict[str, Any] = {}
    for key, value in pairs:
        if key not in allowed:
            raise RequestError(422, f"unknown query parameter '{key}'; expected {sorted(allowed)}")
        message[key] = _query_value(key, value)
    return message


def _query_value(key: str, value: str) -> Any:
    if key == "question":
        return value
    if key == "stream":
        if value.lower() not in ("true", "false", "1", "0"):
            raise RequestError(422, "query parameter 'stream' must be true or false", key)
        return value.lower() in ("true", "1")
    try:
        return int(value) if key == "max_new_tokens" else float(value)
    except ValueError:
        raise RequestError(422, f"query parameter '{key}' must be a number", key) from None


def video_options(message: dict[str, Any], settings: VQASettings) -> dict[str, Any]:
    """The question and options of a video-body request (frames come from the decoder)."""
    question = parse_question(required(message, "question"), settings)
    return {"question": question, **_options(message, settings)}
