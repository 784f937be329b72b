"""`POST /v1/vqa` over real Ray Serve on loopback: answers, batching, streaming and bad input.

One app for the module: a world model bundle (the ingress always serves planning) plus a
random-weight VQA model whose LM is a tiny Llama saved and loaded with `transformers`. The
reference answers come from the same model folder loaded in this process.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import msgpack
import numpy as np
import pytest
import torch
from pydantic import SecretStr

from serving.client import ServingError, VQAClient
from serving.codec import encode_array, pack
from serving.config import Batching, ServingConfig, VQASettings
from serving.video import decode_video
from serving.vqa_model import LoadedVQA, answer_batch, load_vqa
from serving.vqa_schemas import VQARequest

from .conftest import run_app, small_replicas
from .tiny_vqa import make_vqa_model

pytestmark = [pytest.mark.ray]
TOKEN = "vqa-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MSGPACK = {**AUTH, "Content-Type": "application/msgpack"}
QUESTION = "what colour is the square?"
SETTINGS = VQASettings(
    max_frames=8,
    max_new_tokens=12,
    default_new_tokens=8,
    video_timeout_s=20.0,
    batching=Batching(max_batch_size=8, wait_timeout_s=0.2),
    replicas=small_replicas(),
)


@pytest.fixture(scope="module")
def vqa_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_vqa_model(tmp_path_factory.mktemp("vqa-model"))


@pytest.fixture(scope="module")
def reference(vqa_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> LoadedVQA:
    cache = str(tmp_path_factory.mktemp("vqa-cache"))
    return load_vqa(str(vqa_folder), SETTINGS, cache, torch.device("cpu"))


@pytest.fixture(scope="module")
def url(
    ray_cluster: None, bundle_dir: Path, vqa_folder: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    config = ServingConfig(
        models={"arm": str(bundle_dir)},
        token=SecretStr(TOKEN),
        cache_dir=str(tmp_path_factory.mktemp("serve-cache")),
        planner=small_replicas(num_cpus=0.1),
        embedder=small_replicas(num_cpus=0.1),
        ingress=small_replicas(num_cpus=0.05, max_ongoing_requests=256),
        vqa=SETTINGS.model_copy(update={"model": str(vqa_folder)}),
    )
    with run_app(config) as base:
        yield base


def clip(seed: int, steps: int = 4, size: int = 64) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (steps, size, size, 3), dtype=np.uint8)


def expected(reference: LoadedVQA, frames: np.ndarray, question: str, tokens: int = 8) -> str:
    request = VQARequest(frames=frames[None], question=question, max_new_tokens=tokens)
    return answer_batch(reference, [request])[0].text


def mp4(path: Path, seconds: float = 1.0) -> bytes:
    import subprocess

    source = f"testsrc=size=96x80:rate=8:duration={seconds}"
    command = ["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i", source]
    subprocess.run([*command, "-pix_fmt", "yuv420p", str(path)], check=True)
    return path.read_bytes()


def test_answer_over_http_equals_in_process_generate(url: str, reference: LoadedVQA) -> None:
    with VQAClient(url, TOKEN) as client:
        info = client.models()["vqa"]
        assert (info["max_frames"], info["image_size"], info["max_batch_size"]) == (8, 64, 8)
        for seed, question in ((0, QUESTION), (1, "which way does the ball move?")):
            reply = client.ask(clip(seed), question)
            assert reply.answer == expected(reference, clip(seed), question)
            assert 1 <= reply.num_tokens <= SETTINGS.default_new_tokens
            assert reply.timing.server_ms >= reply.timing.generate_ms > 0
        reply = client.ask(clip(2), QUESTION, max_new_tokens=12)
        assert reply.answer == expected(reference, clip(2), QUESTION, tokens=12)


def test_video_body_is_decoded_like_frames(url: str, reference: LoadedVQA, tmp_path: Path) -> None:
    video = mp4(tmp_path / "clip.mp4")
    frames = asyncio.run(decode_video(video, 64, SETTINGS.fps, SETTINGS.max_frames, 2, 20.0))
    assert frames.shape == (4, 64, 64, 3)  # 1 s at 4 fps, 64 px (the model's image_size)
    with VQAClient(url, TOKEN) as client:
        reply = client.ask_video(video, QUESTION)
    assert reply.answer == expected(reference, frames, QUESTION)
    assert reply.timing.decode_ms > 0


def test_concurrent_questions_share_one_generate(url: str, reference: LoadedVQA) -> None:
    seeds = list(range(10, 16))
    with VQAClient(url, TOKEN) as client, ThreadPoolExecutor(len(seeds)) as pool:
        client.ask(clip(0), QUESTION)  # warm
        replies = list(pool.map(lambda seed: client.ask(clip(seed), QUESTION), seeds))
    assert max(reply.timing.batch_size for reply in replies) > 1
    for seed, reply in zip(seeds, replies, strict=True):
        assert reply.answer == expected(reference, clip(seed), QUESTION)


def test_streamed_answer_arrives_in_pieces(url: str) -> None:
    with VQAClient(url, TOKEN) as client:
        whole = client.ask(clip(3), QUESTION, max_new_tokens=12)
        events = list(client.stream(clip(3), QUESTION, max_new_tokens=12))
    *pieces, final = events
    assert not isinstance(final, str) and final.answer == whole.answer
    assert final.num_tokens == whole.num_tokens
    assert all(isinstance(piece, str) for piece in pieces) and len(pieces) >= 1
    assert "".join(str(piece) for piece in pieces).strip() == whole.answer


def raw_str(data: bytes) -> bytes:
    """A msgpack str holding bytes that are not UTF-8 (no encoder would write it)."""
    return bytes([0xA0 | len(data)]) + data


def body(frames: np.ndarray | None = None, **fields: object) -> bytes:
    message: dict[str, object] = {"question": QUESTION, **fields}
    message["frames"] = clip(0) if frames is None else frames
    return pack(message)


BAD_MSGPACK = [
    (body(question=""), 422, "empty"),
    (body(question="   "), 422, "empty"),
    (body(question="why " * 200), 422, "limit is 512"),
    (body(question=b"\xff\xfe why"), 422, "not UTF-8"),
    (body(question=123), 422, "question"),
    (body(max_new_tokens=500), 422, "max_new_tokens"),
    (body(temperature=-1.0), 422, "temperature"),
    (body(frames=clip(0, steps=3)), 422, "multiple of the tubelet size"),
    (body(frames=clip(0, steps=10)), 422, "exceed the limit of 8"),
    (body(frames=clip(0, size=40)), 422, "multiples of the patch size"),
    (body(frames=np.zeros((4, 64, 64), np.uint8)), 422, "frames"),
    (body(frames=np.zeros((4, 64, 64, 3), np.float32)), 422, "frames"),
    (pack({"frames": clip(0)}), 422, "'question' is required"),
    (pack({"question": QUESTION}), 422, "'frames' is required"),
    (pack({"question": QUESTION, "frames": clip(0), "colour": 1}), 422, "unknown field"),
]


@pytest.mark.parametrize(("content", "status", "words"), BAD_MSGPACK)
def test_bad_msgpack_requests_are_4xx_with_a_reason(
    url: str, content: bytes, status: int, words: str
) -> None:
    response = httpx.post(f"{url}/v1/vqa", content=content, headers=MSGPACK, timeout=60)
    assert response.status_code == status, response.text
    assert words in response.json()["detail"]


def test_a_question_that_is_not_utf8_inside_msgpack_is_a_4xx(url: str) -> None:
    content = msgpack.packb({"frames": encode_array(clip(0))})
    content = b"\x82" + content[1:] + raw_str(b"question") + raw_str(b"\xff\xfe?")
    response = httpx.post(f"{url}/v1/vqa", content=content, headers=MSGPACK, timeout=60)
    assert 400 <= response.status_code < 500, response.text
    assert "utf-8" in response.json()["detail"].lower()


def test_a_clip_over_the_lms_context_is_422_streamed_or_not(url: str) -> None:
    frames = np.zeros((8, 512, 512, 3), np.uint8)  # 4 x 16 x 16 = 1024 visual tokens > 512
    for stream in (False, True):
        content = body(frames=frames, stream=stream)
        response = httpx.post(f"{url}/v1/vqa", content=content, headers=MSGPACK, timeout=60)
        assert response.status_code == 422, response.text
        assert "context of 512" in response.json()["detail"]


def test_bad_video_requests_are_4xx_with_a_reason(url: str, tmp_path: Path) -> None:
    video = {**AUTH, "Content-Type": "video/mp4"}
    long = mp4(tmp_path / "long.mp4", seconds=4.0)  # 16 frames at 4 fps > 8
    cases = [
        (b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 50, {"question": QUESTION}, "not a decodable"),
        (long, {"question": QUESTION}, "more than 8 frames"),
        (long, {}, "'question' is required"),
        (long, {"question": "  "}, "empty"),
        (long, {"question": QUESTION, "speed": "1"}, "unknown query parameter"),
    ]
    for content, params, words in cases:
        response = httpx.post(
            f"{url}/v1/vqa", content=content, params=params, headers=video, timeout=60
        )
        assert response.status_code == 422, (words, response.text)
        assert words in response.json()["detail"]
    raw = httpx.post(f"{url}/v1/vqa?question=%FF%FE", content=long, headers=video, timeout=60)
    assert raw.status_code == 422 and "not UTF-8" in raw.json()["detail"]
    other = {**AUTH, "Content-Type": "image/png"}
    assert httpx.post(f"{url}/v1/vqa", content=b"x", headers=other).status_code == 415
    assert httpx.post(f"{url}/v1/vqa", content=body()).status_code == 401
    assert httpx.get(f"{url}/healthz").status_code == 200


def test_client_raises_the_servers_reason(url: str) -> None:
    with VQAClient(url, TOKEN) as client, pytest.raises(ServingError, match="empty") as error:
        client.ask(clip(0), " ")
    assert error.value.status == 422
