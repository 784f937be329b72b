"""The VQA deployment: encoder + projector + language model, questions batched across requests.

`@serve.batch` collects the questions that arrive within the wait window and `BatchMerger`
joins those that queued while the model was busy (as the planner does); `answer_batch` runs
one encoder + projector pass and one left-padded `generate` per group of requests with the same
clip shape and options. Generation runs in a worker thread, so the replica keeps accepting
requests meanwhile. `max_batch_size=1` (batching off) answers every request on its own: the
baseline of the VQA benchmark. A streamed answer (`stream_answer`) bypasses the batch: its
tokens come from the LM's streamer as they are generated.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from ray import serve

from serving.config import ServingConfig
from serving.merging import BatchMerger
from serving.planner import configure_batch, configure_torch
from serving.vqa_model import (
    Answer,
    answer_batch,
    check_fits,
    decode,
    load_vqa,
    stream_tokens,
)
from serving.vqa_schemas import VQAInfo, VQARequest, VQAResponse, VQATiming

Job = tuple[VQARequest, float]  # the request and when it reached the replica (perf_counter)


@serve.deployment(name="VQA")
class VQA:
    """Questions about clips in, answers out."""

    def __init__(self, config: ServingConfig) -> None:
        settings = config.vqa
        if settings.model is None:
            raise ValueError("the VQA deployment needs vqa.model (vjepa serve --vqa-model DIR)")
        device = configure_torch(config.torch_threads)
        self.loaded = load_vqa(settings.model, settings, config.cache_dir, device)
        batching = settings.batching
        self.info = VQAInfo(
            model=self.loaded.name,
            encoder=self.loaded.encoder_source,
            language_model=self.loaded.lm_source,
            patch_size=self.loaded.patch_size,
            tubelet_size=self.loaded.tubelet_size,
            image_size=self.loaded.image_size,
            fps=settings.fps,
            max_frames=settings.max_frames,
            max_new_tokens=settings.max_new_tokens,
            batching=batching.enabled,
            max_batch_size=batching.effective_batch_size,
        )
        configure_batch(self._answer_batch, batching.effective_batch_size, batching.wait_timeout_s)
        self.merger = BatchMerger(self._answer_now, batching.effective_batch_size)

    def describe(self) -> VQAInfo:
        return self.info

    async def answer(self, request: VQARequest) -> VQAResponse:
        """Answer one question; joins whatever batch is forming."""
        check_fits(self.loaded, request)
        return await self._answer_batch((request, time.perf_counter()))

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.01, max_concurrent_batches=16)
    async def _answer_batch(self, jobs: list[Job]) -> list[VQAResponse]:
        return await self.merger.submit(jobs)

    def _answer_now(self, jobs: list[Job]) -> list[VQAResponse]:
        started = time.perf_counter()
        answers = answer_batch(self.loaded, [request for request, _ in jobs])
        return [
            _response(answer, request, (started - arrived) * 1000)
            for answer, (request, arrived) in zip(answers, jobs, strict=True)
        ]

    async def stream_answer(self, request: VQARequest) -> AsyncIterator[str | VQAResponse]:
        """Text pieces as they are generated, then the whole `VQAResponse`."""
        started = time.perf_counter()
        check_fits(self.loaded, request)
        pieces, thread, result = await asyncio.to_thread(stream_tokens, self.loaded, request)
        done = object()
        while (piece := await asyncio.to_thread(next, pieces, done)) is not done:
            if piece:
                yield str(piece)
        await asyncio.to_thread(thread.join)
        if not result:
            raise RuntimeError("generation failed; see the replica's log")
        ids = result[0]
        timing = VQATiming(generate_ms=(time.perf_counter() - started) * 1000)
        yield _response(Answer(decode(self.loaded, ids), len(ids), timing), request, 0.0)


def _response(answer: Answer, request: VQARequest, queue_ms: float) -> VQAResponse:
    timing = answer.timing.model_copy(update={"queue_ms": queue_ms, "decode_ms": request.decode_ms})
    return VQAResponse(answer=answer.text, num_tokens=answer.num_tokens, timing=timing)
