"""The V-JEPA 2 pretraining predictor: a narrow RoPE ViT that fills in masked tokens.

Context tokens (encoder outputs at `context_indices`) are projected to the
predictor width; one learned mask token (chosen by `mask_index`, one per mask
generator) is placed at every target position. The joint sequence is sorted by
token position, exactly as the official code and transformers' `VJEPA2Predictor`
do, rotated by 3D RoPE at the true positions, run through the blocks, normed,
unsorted, and the target tokens are projected back to the encoder width.

Parameter names equal the official `VisionTransformerPredictor`'s
(`predictor_embed`, `mask_tokens.{i}`, `predictor_blocks.{i}.*`,
`predictor_norm`, `predictor_proj`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from modeling.config import DictConfig
from modeling.encoder import check_indices
from modeling.layers import Block, run_blocks
from modeling.rope import check_rope_heads, rope_for_indices


@dataclass(frozen=True)
class PredictorConfig(DictConfig):
    """Shape of the pretraining predictor; `encoder_width` is the width it predicts."""

    encoder_width: int = 1024
    width: int = 384
    depth: int = 12
    num_heads: int = 12
    mlp_hidden: int = 1536
    num_mask_tokens: int = 10
    qkv_bias: bool = True
    norm_eps: float = 1e-6
    drop_path: float = 0.0
    activation_checkpointing: bool = False

    def __post_init__(self) -> None:
        check_rope_heads(self.width, self.num_heads)
        if self.num_mask_tokens < 1:
            raise ValueError("num_mask_tokens must be at least 1")

    @property
    def head_dim(self) -> int:
        return self.width // self.num_heads


def tiny(encoder_width: int = 192) -> PredictorConfig:
    """Tests and the CPU demo: 96 wide, 4 deep, 2 heads of 48."""
    return PredictorConfig(
        encoder_width=encoder_width, width=96, depth=4, num_heads=2, mlp_hidden=384
    )


def paper(encoder_width: int = 1024) -> PredictorConfig:
    """The paper's predictor: 384 wide, 12 deep, 12 heads, 10 mask tokens."""
    return PredictorConfig(encoder_width=encoder_width)


class Predictor(nn.Module):
    """Pretraining predictor; see the module docstring."""

    def __init__(self, config: PredictorConfig) -> None:
        super().__init__()
        self.config = config
        self.predictor_embed = nn.Linear(config.encoder_width, config.width)
        self.mask_tokens = nn.ParameterList(
            nn.Parameter(torch.zeros(1, 1, config.width)) for _ in range(config.num_mask_tokens)
        )
        rates = torch.linspace(0.0, config.drop_path, config.depth).tolist()
        self.predictor_blocks = nn.ModuleList(
            Block(
                config.width,
                config.num_heads,
                config.mlp_hidden,
                qkv_bias=config.qkv_bias,
                norm_eps=config.norm_eps,
                drop_path=rate,
            )
            for rate in rates
        )
        self.predictor_norm = nn.LayerNorm(config.width, eps=config.norm_eps)
        self.predictor_proj = nn.Linear(config.width, config.encoder_width)

    def forward(
        self,
        context: Tensor,
        context_indices: Tensor,
        target_indices: Tensor,
        grid: tuple[int, int, int],
        mask_index: int = 1,
    ) -> Tensor:
        """Predict encoder features at `target_indices` `(B, M)` from `context` `(B, K, De)`
        at `context_indices` `(B, K)`, on the clip's token `grid` `(T', H', W')`.

        `mask_index` picks the mask token (`mask_index % num_mask_tokens`); transformers
        and the official forward default to 1. Returns `(B, M, De)`.
        """
        batch, num_context, _ = context.shape
        num_tokens = grid[0] * grid[1] * grid[2]
        check_indices(context_indices, batch, num_tokens)
        check_indices(target_indices, batch, num_tokens, name="target_indices")
        if context_indices.shape[1] != num_context:
            raise ValueError(
                f"context has {num_context} tokens but context_indices has {context_indices.shape[1]}"
            )
        embedded = self.predictor_embed(context)  # (B, K, W)
        mask_token = self.mask_tokens[mask_index % self.config.num_mask_tokens]  # (1, 1, W)
        targets = mask_token.to(embedded.dtype).expand(batch, target_indices.shape[1], -1)
        tokens = torch.cat((embedded, targets), dim=1)  # (B, K+M, W)
        positions = torch.cat((context_indices, target_indices), dim=1)  # (B, K+M)
        positions = positions.to(embedded.device, torch.long)

        order = torch.argsort(positions, dim=1)  # (B, K+M)
        tokens = _take(tokens, order)  # (B, K+M, W), sorted by position
        rope = rope_for_indices(
            positions.gather(1, order), grid, self.config.head_dim, tokens.dtype
        )
        tokens = run_blocks(
            self.predictor_blocks, tokens, rope, checkpointing=self.config.activation_checkpointing
        )
        tokens = self.predictor_norm(tokens)
        tokens = _take(tokens, torch.argsort(order, dim=1))  # (B, K+M, W), original order
        return self.predictor_proj(tokens[:, num_context:])  # (B, M, De)


def _take(tokens: Tensor, order: Tensor) -> Tensor:
    """`tokens[b, order[b]]` for every sample: `(B, N, D), (B, N) -> (B, N, D)`."""
    return tokens.gather(1, order.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))
