"""Video-language model: frozen V-JEPA 2 encoder -> visual projector -> a causal LM (LLaVA-style).

The frozen encoder's patch tokens `(B, N, De)` go through a `VisualProjector` into
the LM's input-embedding space `(B, V, Dl)` and are placed before the question's
tokens (see `modeling/vlm_prompts.py` for the sequence layout). Training is
next-token loss on the answer tokens only; generation goes through the LM's own
`generate(inputs_embeds=..., attention_mask=...)` with left padding.

Two projectors, as in the paper:

* `mlp`: Linear, GELU, Linear, then `pool x pool` average pooling over each
  frame-step's token grid (PerceptionLM's projector; the Llama 3.1 runs). Two options
  beyond the paper, both off by default: `temporal_kernel` k > 1 makes the first layer a
  convolution over k neighbouring frame steps at each token position (so each token
  carries the change around it), and `pool_mode="max"` takes the maximum over each
  `pool x pool` window instead of the mean (a moving object's features then survive
  pooling wherever the object is). A third, `motion_kernel` k > 0, appends one token per
  frame step: a separate branch convolves k neighbouring steps at each position, takes
  the maximum over the step's whole grid, then maps it to the LM's width (so the motion
  of a small object reaches the LM in a token of its own, next to the pooled ones);
* `attentive`: learned queries cross-attend to the tokens (the probe's
  cross-attention block), then a linear map; `num_queries` is normally a quarter
  of the clip's token count (`attentive(...)`), the Qwen2 runs' 4x cut.

The LM is duck-typed (a Hugging Face causal LM fits): `get_input_embeddings()`,
`forward(inputs_embeds=, attention_mask=)` returning an object with `.logits`
(or a tensor), and `generate(inputs_embeds=, attention_mask=, ...)`. This module
never imports `transformers`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from modeling.config import DictConfig
from modeling.encoder import VisionEncoder
from modeling.layers import MLP
from modeling.probe import AttentiveProbeConfig, CrossAttentionBlock
from modeling.vlm_prompts import PromptParts

PROJECTOR_KINDS = ("mlp", "attentive")
POOL_MODES = ("avg", "max")
IGNORE_INDEX = -100


@dataclass(frozen=True)
class VisualProjectorConfig(DictConfig):
    """Shape of a projector from `encoder_width` tokens to `lm_width` embeddings."""

    kind: str = "mlp"
    encoder_width: int = 1024
    lm_width: int = 4096
    hidden: int = 0  # MLP hidden width; 0 means lm_width
    pool: int = 2  # mlp: k x k average pooling per frame step (1 = none)
    num_queries: int = 64  # attentive: learned query tokens
    num_heads: int = 8  # attentive: cross-attention heads over encoder_width
    temporal_kernel: int = 1  # mlp: frame steps the first layer sees per token (odd; 1 = Linear)
    pool_mode: str = "avg"  # mlp: "avg" or "max" over each pool x pool window
    motion_kernel: int = 0  # mlp: 0 = none, odd k = one motion token per frame step

    def __post_init__(self) -> None:
        if self.kind not in PROJECTOR_KINDS:
            raise ValueError(f"projector kind must be one of {PROJECTOR_KINDS}, got {self.kind!r}")
        if self.pool_mode not in POOL_MODES:
            raise ValueError(f"pool mode must be one of {POOL_MODES}, got {self.pool_mode!r}")
        if self.temporal_kernel < 1 or self.temporal_kernel % 2 == 0:
            raise ValueError(f"temporal_kernel must be odd and >= 1, got {self.temporal_kernel}")
        if self.motion_kernel < 0 or (self.motion_kernel and self.motion_kernel % 2 == 0):
            raise ValueError(f"motion_kernel must be 0 or odd, got {self.motion_kernel}")
        if min(self.encoder_width, self.lm_width, self.pool, self.num_queries) < 1:
            raise ValueError("encoder_width, lm_width, pool and num_queries must be >= 1")
        if self.kind == "attentive" and self.encoder_width % self.num_heads:
            raise ValueError(
                f"encoder_width {self.encoder_width} is not divisible by num_heads {self.num_heads}"
            )

    @property
    def hidden_width(self) -> int:
        return self.hidden or self.lm_width

    def num_visual_tokens(self, grid: tuple[int, int, int]) -> int:
        """Visual tokens handed to the LM for an encoder token grid `(T', H', W')`."""
        if self.kind == "attentive":
            return self.num_queries
        steps, height, width = grid
        motion = steps if self.motion_kernel else 0
        return steps * -(-height // self.pool) * -(-width // self.pool) + motion


def mlp(
    encoder_width: int,
    lm_width: int,
    pool: int = 2,
    temporal_kernel: int = 1,
    pool_mode: str = "avg",
    motion_kernel: int = 0,
) -> VisualProjectorConfig:
    """PerceptionLM's projector: Linear-GELU-Linear, then pool x pool spatial averaging
    (with the defaults; see the module docstring for the two options)."""
    return VisualProjectorConfig(
        kind="mlp",
        encoder_width=encoder_width,
        lm_width=lm_width,
        pool=pool,
        temporal_kernel=temporal_kernel,
        pool_mode=pool_mode,
        motion_kernel=motion_kernel,
    )


def attentive(
    encoder_width: int, lm_width: int, num_tokens: int, num_heads: int = 0
) -> VisualProjectorConfig:
    """An attentive pooler cutting a clip's `num_tokens` encoder tokens by 4."""
    heads = num_heads or next(h for h in (16, 8, 6, 4, 3, 2, 1) if encoder_width % h == 0)
    return VisualProjectorConfig(
        kind="attentive",
        encoder_width=encoder_width,
        lm_width=lm_width,
        num_queries=max(1, num_tokens // 4),
        num_heads=heads,
    )


class VisualProjector(nn.Module):
    """Encoder tokens `(B, N, De)` on grid `(T', H', W')` -> LM embeddings `(B, V, Dl)`."""

    def __init__(self, config: VisualProjectorConfig) -> None:
        super().__init__()
        self.config = config
        # Per-channel standardisation of the frozen features, fit once on the training clips:
        # the tokens of all clips share a large common component (about half their variance
        # on the sample videos), which slowed the projector's first steps several-fold.
        self.register_buffer("feature_mean", torch.zeros(config.encoder_width))
        self.register_buffer("feature_scale", torch.ones(config.encoder_width))
        self.feature_mean: Tensor
        self.feature_scale: Tensor
        if config.kind == "mlp":
            if config.temporal_kernel > 1:
                self.mlp: nn.Module = TemporalMLP(
                    config.encoder_width,
                    config.hidden_width,
                    config.lm_width,
                    config.temporal_kernel,
                )
            else:
                self.mlp = MLP(config.encoder_width, config.hidden_width, config.lm_width)
            if config.motion_kernel:
                self.motion = MotionTokens(
                    config.encoder_width, config.hidden_width, config.lm_width, config.motion_kernel
                )
        else:
            pooler = AttentiveProbeConfig(
                width=config.encoder_width,
                num_heads=config.num_heads,
                num_blocks=0,
                mlp_hidden=4 * config.encoder_width,
                num_classes=1,
                num_queries=config.num_queries,
            )
            self.query_tokens = nn.Parameter(torch.zeros(1, config.num_queries, pooler.width))
            nn.init.trunc_normal_(self.query_tokens, std=0.02)
            self.cross_attention_block = CrossAttentionBlock(pooler)
            self.linear = nn.Linear(config.encoder_width, config.lm_width)

    @torch.no_grad()
    def fit_feature_statistics(self, features: Tensor) -> None:
        """Set the input standardisation from training features `(..., De)`."""
        flat = features.reshape(-1, features.shape[-1]).float()  # (M*N, De)
        self.feature_mean.copy_(flat.mean(0))
        self.feature_scale.copy_(1.0 / (flat.std(0) + 1e-3))

    def forward(self, tokens: Tensor, grid: tuple[int, int, int]) -> Tensor:
        config = self.config
        if tokens.ndim != 3 or tokens.shape[-1] != config.encoder_width:
            raise ValueError(
                f"projector expects tokens (B, N, {config.encoder_width}), "
                f"got {tuple(tokens.shape)}"
            )
        steps, height, width = grid
        if steps * height * width != tokens.shape[1]:
            raise ValueError(f"{tokens.shape[1]} tokens do not fill the grid {tuple(grid)}")
        tokens = (tokens - self.feature_mean) * self.feature_scale  # (B, N, De)
        if config.kind == "attentive":
            queries = self.query_tokens.expand(tokens.shape[0], -1, -1)  # (B, Q, De)
            return self.linear(self.cross_attention_block(queries, tokens))  # (B, Q, Dl)
        pooled = self._pooled(tokens, grid)  # (B, V', Dl)
        if not config.motion_kernel:
            return pooled
        return torch.cat([pooled, self.motion(tokens, steps)], dim=1)  # (B, V' + T', Dl)

    def _pooled(self, tokens: Tensor, grid: tuple[int, int, int]) -> Tensor:
        config = self.config
        steps, height, width = grid
        if isinstance(self.mlp, TemporalMLP):
            embedded = self.mlp(tokens, steps)  # (B, N, Dl)
        else:
            embedded = self.mlp(tokens)  # (B, N, Dl)
        if config.pool == 1:
            return embedded
        batch = tokens.shape[0]
        frames = embedded.reshape(batch * steps, height, width, -1).permute(0, 3, 1, 2)
        pool = F.max_pool2d if config.pool_mode == "max" else F.avg_pool2d
        pooled = pool(frames, config.pool, ceil_mode=True)  # (B*T', Dl, H'', W'')
        pooled = pooled.flatten(2).transpose(1, 2)  # (B*T', H''*W'', Dl)
        return pooled.reshape(batch, -1, config.lm_width)  # (B, V, Dl)


class TemporalMLP(nn.Module):
    """The mlp projector's MLP whose first layer sees `kernel` frame steps per token position.

    `fc1` is a 1-D convolution over the frame-step axis of each position of the token grid
    (zero padding keeps the step count), so a token's embedding holds the change of its
    position across the steps around it; `fc2` is per token, as in `MLP`.
    """

    def __init__(self, width: int, hidden: int, out_width: int, kernel: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv1d(width, hidden, kernel, padding=kernel // 2)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, out_width)

    def forward(self, tokens: Tensor, steps: int) -> Tensor:
        batch, count, _ = tokens.shape
        hidden = self.fc1(_step_series(tokens, steps))  # (B*P, Dh, T')
        hidden = hidden.reshape(batch, count // steps, -1, steps).permute(0, 3, 1, 2)  # (B,T',P,Dh)
        return self.fc2(self.act(hidden.reshape(batch, count, -1)))  # (B, N, Dl)


def _step_series(tokens: Tensor, steps: int) -> Tensor:
    """Tokens `(B, N, D)` ordered (t, h, w) -> one series per position `(B*P, D, T')`."""
    batch, count, width = tokens.shape
    series = tokens.reshape(batch, steps, count // steps, width).permute(0, 2, 3, 1)
    return series.reshape(-1, width, steps)


class MotionTokens(TemporalMLP):
    """One token per frame step: `TemporalMLP`'s layers with the maximum over the step's
    positions taken between them (after the GELU)."""

    def forward(self, tokens: Tensor, steps: int) -> Tensor:
        batch, count, _ = tokens.shape
        hidden = self.act(self.fc1(_step_series(tokens, steps)))  # (B*P, Dh, T')
        hidden = hidden.reshape(batch, count // steps, -1, steps).amax(dim=1)  # (B, Dh, T')
        return self.fc2(hidden.transpose(1, 2))  # (B, T', Dl)


class CausalLM(Protocol):
    """What the VLM needs from a language model (a Hugging Face causal LM has it)."""

    def get_input_embeddings(self) -> nn.Module: ...

    def __call__(self, *, inputs_embeds: Tensor, attention_mask: Tensor) -> Any: ...

    def generate(self, **kwargs: Any) -> Tensor: ...


@dataclass(frozen=True)
class EmbeddedBatch:
    """A padded batch of input embeddings with its mask and answer labels."""

    inputs_embeds: Tensor  # (B, L, Dl)
    attention_mask: Tensor  # (B, L)
    labels: Tensor  # (B, L); IGNORE_INDEX off the answer tokens


class VideoLanguageModel(nn.Module):
    """Frozen encoder + projector + LM; `blind=True` drops the visual tokens (the baseline)."""

    def __init__(
        self, encoder: VisionEncoder, projector: VisualProjector, lm: Any, blind: bool = False
    ) -> None:
        super().__init__()
        self.encoder: VisionEncoder = encoder.eval().requires_grad_(False)
        self.projector = projector
        self.lm = lm
        self.blind = blind

    def train(self, mode: bool = True) -> VideoLanguageModel:
        super().train(mode)
        self.encoder.eval()  # frozen: no dropout or drop-path, ever
        return self

    @torch.no_grad()
    def encode(self, video: Tensor) -> tuple[Tensor, tuple[int, int, int]]:
        """Frozen encoder tokens `(B, N, De)` of float video `(B, C, T, H, W)` and their grid."""
        grid = self.encoder.grid(video.shape)
        return self.encoder(video), grid

    def visual_tokens(self, features: Tensor, grid: tuple[int, int, int]) -> Tensor:
        """Projected visual tokens `(B, V, Dl)` in the LM's embedding dtype."""
        dtype = self.lm.get_input_embeddings().weight.dtype
        return self.projector(features.to(self.projector_dtype), grid).to(dtype)

    @property
    def projector_dtype(self) -> torch.dtype:
        return next(self.projector.parameters()).dtype

    def embed_batch(
        self,
        visual: Tensor | None,
        prompts: Sequence[PromptParts],
        answers: Sequence[Sequence[int]] | None = None,
        left_pad: bool = False,
    ) -> EmbeddedBatch:
        """`[prefix, visual, question, answer]` per sample, padded to one length.

        Training pads on the right (positions start at 0 after the prompt in both modes);
        generation pads on the left so every sequence ends where the answer starts.
        """
        table = self.lm.get_input_embeddings()
        device = table.weight.device
        rows: list[tuple[Tensor, Tensor]] = []
        for index, prompt in enumerate(prompts):
            answer = list(answers[index]) if answers is not None else []
            head = torch.tensor(prompt.prefix_ids, dtype=torch.long, device=device)
            tail = torch.tensor([*prompt.suffix_ids, *answer], dtype=torch.long, device=device)
            pieces = [table(head)]
            if visual is not None and not self.blind:
                pieces.append(visual[index].to(device))  # (V, Dl)
            pieces.append(table(tail))
            embeds = torch.cat(pieces)  # (L_i, Dl)
            labels = torch.full((embeds.shape[0],), IGNORE_INDEX, dtype=torch.long, device=device)
            if answer:
                labels[-len(answer) :] = torch.tensor(answer, device=device)
            rows.append((embeds, labels))
        return _pad(rows, left_pad)

    def loss(
        self,
        visual: Tensor | None,
        prompts: Sequence[PromptParts],
        answers: Sequence[Sequence[int]],
    ) -> Tensor:
        """Mean next-token cross-entropy over the answer tokens only."""
        batch = self.embed_batch(visual, prompts, answers)
        output = self.lm(inputs_embeds=batch.inputs_embeds, attention_mask=batch.attention_mask)
        logits = output.logits if hasattr(output, "logits") else output  # (B, L, vocab)
        return F.cross_entropy(
            logits[:, :-1].flatten(0, 1).float(),
            batch.labels[:, 1:].flatten(),
            ignore_index=IGNORE_INDEX,
        )

    @torch.no_grad()
    def generate(
        self,
        visual: Tensor | None,
        prompts: Sequence[PromptParts],
        *,
        max_new_tokens: int = 16,
        temperature: float = 0.0,
        eos_token_id: int | None = None,
        pad_token_id: int | None = None,
        **generate_options: Any,
    ) -> list[list[int]]:
        """New token ids per sample through `lm.generate`: greedy unless `temperature > 0`.

        `generate_options` pass through (a `streamer`, for instance). The ids stop before
        the first `eos_token_id`.
        """
        batch = self.embed_batch(visual, prompts, left_pad=True)
        sampling: dict[str, Any] = {"do_sample": False}
        if temperature > 0:
            sampling = {"do_sample": True, "temperature": temperature}
        output = self.lm.generate(
            inputs_embeds=batch.inputs_embeds,
            attention_mask=batch.attention_mask,
            max_new_tokens=max_new_tokens,
            eos_token_id=eos_token_id,
            pad_token_id=pad_token_id if pad_token_id is not None else eos_token_id,
            **sampling,
            **generate_options,
        )
        sequences = output.sequences if hasattr(output, "sequences") else output
        return [_until(row.tolist(), eos_token_id) for row in sequences]


def _pad(rows: Sequence[tuple[Tensor, Tensor]], left: bool) -> EmbeddedBatch:
    length = max(embeds.shape[0] for embeds, _ in rows)
    width = rows[0][0].shape[1]
    first = rows[0][0]
    embeds_out = first.new_zeros((len(rows), length, width))  # (B, L, Dl)
    mask = torch.zeros((len(rows), length), dtype=torch.long, device=first.device)
    labels = torch.full((len(rows), length), IGNORE_INDEX, dtype=torch.long, device=first.device)
    for index, (embeds, row_labels) in enumerate(rows):
        span = slice(length - embeds.shape[0], length) if left else slice(0, embeds.shape[0])
        embeds_out[index, span] = embeds
        mask[index, span] = 1
        labels[index, span] = row_labels
    return EmbeddedBatch(embeds_out, mask, labels)


def _until(ids: list[int], eos_token_id: int | None) -> list[int]:
    if eos_token_id is not None and eos_token_id in ids:
        return ids[: ids.index(eos_token_id)]
    return ids
