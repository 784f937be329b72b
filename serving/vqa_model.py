"""The VQA model of a serving replica: loading it, and answering a batch of questions.

A model folder is what `vjepa align` writes (`modeling.vlm_checkpoints`): the projector, a
`vlm.json` naming the encoder and the language model it was aligned with, and the LM weights
when they were trained. The encoder is loaded with `modeling.checkpoints.load_encoder`, the LM
and its tokenizer with `transformers` (`AutoModelForCausalLM` / `AutoTokenizer`), exactly the
path a real Hugging Face LM takes; the fingerprints in `vlm.json` must match both.

`answer_batch` answers several requests with one encoder + projector pass and one left-padded
`generate` per group of requests that share a clip shape and generation options.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from threading import Thread
from typing import Any

import numpy as np
import torch

from modeling.checkpoints import CheckpointError, load_encoder
from modeling.preprocess import frames_to_video
from modeling.vlm import VideoLanguageModel
from modeling.vlm_checkpoints import assemble_vlm, read_manifest
from modeling.vlm_prompts import build_prompt
from serving.bundles import local_path
from serving.codec import RequestError
from serving.config import VQASettings
from serving.vqa_schemas import VQARequest, VQATiming

DEFAULT_IMAGE_SIZE = 256  # curation's default clip side, when the model folder names none


@dataclass
class LoadedVQA:
    """A ready model: the composed VLM, its tokenizer and the facts clients need."""

    model: VideoLanguageModel
    tokenizer: Any
    name: str
    encoder_source: str
    lm_source: str
    image_size: int
    patch_size: int
    tubelet_size: int
    device: torch.device

    @property
    def eos_token_id(self) -> int | None:
        return self.tokenizer.eos_token_id  # type: ignore[no-any-return]

    @property
    def pad_token_id(self) -> int | None:
        pad = self.tokenizer.pad_token_id
        return pad if pad is not None else self.eos_token_id  # type: ignore[no-any-return]


def load_language_model(folder: Path) -> tuple[Any, Any]:
    """LM and tokenizer of a Hugging Face folder; a folder without a tokenizer is an error."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
    except (OSError, ValueError, TypeError) as error:
        raise CheckpointError(f"{folder}: no usable tokenizer ({error})") from None
    lm = AutoModelForCausalLM.from_pretrained(str(folder))
    return lm.eval(), tokenizer


def load_vqa(uri: str, settings: VQASettings, cache_dir: str, device: torch.device) -> LoadedVQA:
    """Load the model folder at `uri` with the encoder and LM its manifest names (or overrides)."""
    folder = local_path(uri, cache_dir)
    manifest = read_manifest(folder)
    encoder_source = settings.encoder or manifest.encoder.source
    lm_source = settings.lm or manifest.lm.source
    encoder = load_encoder(local_path(encoder_source, cache_dir))
    lm, tokenizer = load_language_model(local_path(lm_source, cache_dir))
    model = assemble_vlm(folder, encoder, lm, _with_adapter)
    size = settings.image_size or manifest.image_size or DEFAULT_IMAGE_SIZE
    return LoadedVQA(
        model=model.eval().to(device),
        tokenizer=tokenizer,
        name=Path(uri.rstrip("/")).name,
        encoder_source=encoder_source,
        lm_source=lm_source,
        image_size=size,
        patch_size=encoder.config.patch_size,
        tubelet_size=encoder.config.tubelet_size,
        device=device,
    )


def _with_adapter(lm: Any, adapter: Path) -> Any:
    try:
        from peft import PeftModel
    except ImportError:
        raise CheckpointError(f"{adapter} is a LoRA adapter; install peft to serve it") from None
    return PeftModel.from_pretrained(lm, str(adapter)).merge_and_unload()


@dataclass(frozen=True)
class Answer:
    """One request's answer and how long its batch took."""

    text: str
    num_tokens: int
    timing: VQATiming


def context_length(lm: Any) -> int | None:
    """The LM's position limit (`max_position_embeddings`, GPT-2's `n_positions`), if known."""
    config = getattr(lm, "config", None)
    for name in ("max_position_embeddings", "n_positions"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def check_fits(loaded: LoadedVQA, request: VQARequest) -> None:
    """A 422 when visual tokens + prompt + new tokens exceed the LM's context (before any work)."""
    limit = context_length(loaded.model.lm)
    if limit is None:
        return
    steps, height, width = request.frames.shape[1:4]
    grid = loaded.model.encoder.grid((1, 3, steps, height, width))
    visual = 0 if loaded.model.blind else loaded.model.projector.config.num_visual_tokens(grid)
    prompt = build_prompt(loaded.tokenizer, request.question)
    total = visual + len(prompt.prefix_ids) + len(prompt.suffix_ids) + request.max_new_tokens
    if total > limit:
        raise RequestError(
            422,
            f"field 'frames' {tuple(request.frames.shape[1:])}: {visual} visual tokens + the "
            f"question + max_new_tokens = {total} tokens, over the language model's context of "
            f"{limit}; send fewer or smaller frames",
            "frames",
        )


def visual_tokens(loaded: LoadedVQA, frames: np.ndarray) -> torch.Tensor:
    """Projected visual tokens `(B, V, Dl)` of uint8 clips `(B, T, H, W, 3)`."""
    clips = torch.from_numpy(frames).to(loaded.device)  # (B, T, H, W, 3)
    with torch.no_grad():
        features, grid = loaded.model.encode(frames_to_video(clips))  # (B, N, De)
        return loaded.model.visual_tokens(features, grid)  # (B, V, Dl)


def generate(
    loaded: LoadedVQA,
    visual: torch.Tensor,
    questions: Sequence[str],
    max_new_tokens: int,
    temperature: float,
    **options: Any,
) -> list[list[int]]:
    """New token ids per question (left-padded batch through the LM's `generate`)."""
    prompts = [build_prompt(loaded.tokenizer, question) for question in questions]
    return loaded.model.generate(
        visual,
        prompts,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        eos_token_id=loaded.eos_token_id,
        pad_token_id=loaded.pad_token_id,
        **options,
    )


def decode(loaded: LoadedVQA, ids: Sequence[int]) -> str:
    return str(loaded.tokenizer.decode(list(ids), skip_special_tokens=True)).strip()


def answer_group(loaded: LoadedVQA, requests: Sequence[VQARequest]) -> list[Answer]:
    """Requests with one group key: one encoder pass and one generate for all of them."""
    first = requests[0]
    started = time.perf_counter()
    visual = visual_tokens(loaded, np.concatenate([r.frames for r in requests]))
    encoded = time.perf_counter()
    ids = generate(
        loaded, visual, [r.question for r in requests], first.max_new_tokens, first.temperature
    )
    timing = VQATiming(
        batch_size=len(requests),
        encode_ms=(encoded - started) * 1000,
        generate_ms=(time.perf_counter() - encoded) * 1000,
    )
    return [Answer(decode(loaded, row), len(row), timing) for row in ids]


def answer_batch(loaded: LoadedVQA, requests: Sequence[VQARequest]) -> list[Answer]:
    """Answers in request order; requests are grouped by clip shape and generation options."""
    groups: dict[tuple[Any, ...], list[int]] = defaultdict(list)
    for index, request in enumerate(requests):
        groups[request.group].append(index)
    answers: list[Answer | None] = [None] * len(requests)
    for indices in groups.values():
        group = answer_group(loaded, [requests[i] for i in indices])
        for index, answer in zip(indices, group, strict=True):
            answers[index] = answer
    return [answer for answer in answers if answer is not None]


def stream_tokens(loaded: LoadedVQA, request: VQARequest) -> tuple[Iterator[str], Thread, list]:
    """Start generating one answer in a thread; returns the text pieces as they come.

    The third value is filled with the token ids once the thread has finished.
    """
    from transformers import TextIteratorStreamer

    streamer = TextIteratorStreamer(loaded.tokenizer, skip_prompt=True, skip_special_tokens=True)
    visual = visual_tokens(loaded, request.frames)
    result: list[list[int]] = []

    def work() -> None:
        try:
            result.extend(
                generate(
                    loaded,
                    visual,
                    [request.question],
                    request.max_new_tokens,
                    request.temperature,
                    streamer=streamer,
                )
            )
        finally:
            streamer.end()

    thread = Thread(target=work, daemon=True)
    thread.start()
    return iter(streamer), thread, result
