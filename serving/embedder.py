"""The embedding deployment: the frozen V-JEPA 2 encoder, clips batched across requests.

Requests whose clips have the same `(T, H, W)` are concatenated into one encoder forward.
Features are the encoder's output tokens `(B, N, D)` (ordered t, h, w) or, with `pool`, their
mean `(B, D)`.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict

import numpy as np
import torch
from ray import serve

from modeling.checkpoints import load_encoder
from modeling.preprocess import frames_to_video
from serving.bundles import local_path
from serving.config import ServingConfig
from serving.planner import configure_batch, configure_torch
from serving.schemas import EmbedRequest, EncoderInfo


@serve.deployment(name="Embedder")
class Embedder:
    """Video clips in, encoder features out."""

    def __init__(self, config: ServingConfig) -> None:
        self.device = configure_torch(config.torch_threads)
        encoder = load_encoder(local_path(config.encoder_uri, config.cache_dir))
        self.encoder = encoder.eval().to(self.device)
        encoder_config = self.encoder.config
        self.info = EncoderInfo(
            patch_size=encoder_config.patch_size,
            tubelet_size=encoder_config.tubelet_size,
            embed_dim=encoder_config.width,
        )
        batching = config.batching
        size = max(1, batching.effective_batch_size // 4)
        configure_batch(self._embed_batch, size, batching.wait_timeout_s)

    def describe(self) -> EncoderInfo:
        return self.info

    async def embed(self, request: EmbedRequest) -> np.ndarray:
        """Features `(B, N, D)`, or `(B, D)` when the request asks to pool."""
        return await self._embed_batch(request)

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.005)
    async def _embed_batch(self, requests: list[EmbedRequest]) -> list[np.ndarray]:
        return await asyncio.to_thread(self._embed_now, requests)

    def _embed_now(self, requests: list[EmbedRequest]) -> list[np.ndarray]:
        groups: dict[tuple[int, ...], list[int]] = defaultdict(list)
        for index, request in enumerate(requests):
            groups[tuple(request.frames.shape[1:])].append(index)
        outputs: list[np.ndarray] = [np.empty(0)] * len(requests)
        for indices in groups.values():
            clips = torch.from_numpy(np.concatenate([requests[i].frames for i in indices]))
            clips = clips.to(self.device)  # (sum B, T, H, W, 3)
            with torch.no_grad():
                features = self.encoder(frames_to_video(clips))  # (sum B, N, D)
            start = 0
            for i in indices:
                count = requests[i].frames.shape[0]
                chunk = features[start : start + count].float().cpu().numpy()  # (B, N, D)
                outputs[i] = chunk.mean(axis=1) if requests[i].pool else chunk
                start += count
        return outputs
