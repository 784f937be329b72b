"""Attentive probe: a query-token pooler over frozen encoder tokens plus a linear head.

The pooler runs `num_blocks` self-attention blocks (no RoPE) over the tokens,
then one cross-attention block in which learned query tokens attend to them:
`q + xattn(q, norm1(x))`, then `q + mlp(norm2(q))`. The cross-attention has
separate `q` and fused `kv` projections and no output projection, as in the
official `CrossAttention` and transformers' `VJEPA2PoolerCrossAttention`.

Parameter names equal the official `AttentiveClassifier`'s (`pooler.query_tokens`,
`pooler.blocks.{i}.*`, `pooler.cross_attention_block.{norm1,xattn.q,xattn.kv,norm2,mlp}`,
`linear`). The official `depth` counts the cross-attention block too, so
`depth = num_blocks + 1`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from modeling.config import DictConfig
from modeling.layers import MLP, Block


@dataclass(frozen=True)
class AttentiveProbeConfig(DictConfig):
    """Shape of an attentive probe over `width`-wide encoder tokens."""

    width: int = 1024
    num_heads: int = 16
    num_blocks: int = 3
    mlp_hidden: int = 4096
    num_classes: int = 174
    num_queries: int = 1
    qkv_bias: bool = True
    norm_eps: float = 1e-6

    def __post_init__(self) -> None:
        if self.width % self.num_heads:
            raise ValueError(f"width {self.width} is not divisible by num_heads {self.num_heads}")
        if self.num_classes < 1 or self.num_queries < 1 or self.num_blocks < 0:
            raise ValueError("num_classes and num_queries must be >= 1, num_blocks >= 0")


def tiny(width: int = 192, num_classes: int = 10) -> AttentiveProbeConfig:
    """Tests and the CPU demo: one self-attention block, 3 heads."""
    return AttentiveProbeConfig(
        width=width, num_heads=3, num_blocks=1, mlp_hidden=4 * width, num_classes=num_classes
    )


def paper(width: int = 1024, num_classes: int = 174) -> AttentiveProbeConfig:
    """The paper's probe: 16 heads, 3 self-attention blocks + 1 cross-attention block."""
    return AttentiveProbeConfig(
        width=width, num_heads=16, mlp_hidden=4 * width, num_classes=num_classes
    )


class CrossAttention(nn.Module):
    """Queries attend to tokens; `q` and fused `kv` projections, no output projection."""

    def __init__(self, width: int, num_heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = width // num_heads
        self.q = nn.Linear(width, width, bias=qkv_bias)
        self.kv = nn.Linear(width, 2 * width, bias=qkv_bias)

    def forward(self, queries: Tensor, tokens: Tensor) -> Tensor:
        batch, num_queries, width = queries.shape
        query = self.q(queries).unflatten(-1, (self.num_heads, self.head_dim)).transpose(1, 2)
        kv = self.kv(tokens).unflatten(-1, (2, self.num_heads, self.head_dim))  # (B, N, 2, H, hd)
        key, value = kv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, H, N, hd)
        out = F.scaled_dot_product_attention(query, key, value)  # (B, H, Q, hd)
        return out.transpose(1, 2).reshape(batch, num_queries, width)  # (B, Q, D)


class CrossAttentionBlock(nn.Module):
    """`q + xattn(q, norm1(x))`, then `q + mlp(norm2(q))`; the queries are not normed."""

    def __init__(self, config: AttentiveProbeConfig) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(config.width, eps=config.norm_eps)
        self.xattn = CrossAttention(config.width, config.num_heads, config.qkv_bias)
        self.norm2 = nn.LayerNorm(config.width, eps=config.norm_eps)
        self.mlp = MLP(config.width, config.mlp_hidden)

    def forward(self, queries: Tensor, tokens: Tensor) -> Tensor:
        queries = queries + self.xattn(queries, self.norm1(tokens))  # (B, Q, D)
        return queries + self.mlp(self.norm2(queries))  # (B, Q, D)


class AttentivePooler(nn.Module):
    """Self-attention blocks over the tokens, then learned queries cross-attend to them."""

    def __init__(self, config: AttentiveProbeConfig) -> None:
        super().__init__()
        self.query_tokens = nn.Parameter(torch.zeros(1, config.num_queries, config.width))
        nn.init.trunc_normal_(self.query_tokens, std=0.02)
        self.blocks = nn.ModuleList(
            Block(
                config.width,
                config.num_heads,
                config.mlp_hidden,
                qkv_bias=config.qkv_bias,
                norm_eps=config.norm_eps,
            )
            for _ in range(config.num_blocks)
        )
        self.cross_attention_block = CrossAttentionBlock(config)

    def forward(self, tokens: Tensor) -> Tensor:
        for block in self.blocks:
            tokens = block(tokens)  # (B, N, D)
        queries = self.query_tokens.expand(tokens.shape[0], -1, -1)  # (B, Q, D)
        return self.cross_attention_block(queries, tokens)  # (B, Q, D)


class AttentiveProbe(nn.Module):
    """Pooler + linear head: encoder tokens `(B, N, D)` -> logits `(B, num_classes)`."""

    def __init__(self, config: AttentiveProbeConfig) -> None:
        super().__init__()
        self.config = config
        self.pooler = AttentivePooler(config)
        self.linear = nn.Linear(config.width, config.num_classes)

    def forward(self, tokens: Tensor) -> Tensor:
        if tokens.ndim != 3 or tokens.shape[-1] != self.config.width:
            raise ValueError(
                f"probe expects tokens (B, N, {self.config.width}), got {tuple(tokens.shape)}"
            )
        pooled = self.pooler(tokens).mean(dim=1)  # (B, D); one query in the paper
        return self.linear(pooled)  # (B, num_classes)
