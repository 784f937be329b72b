"""Transformer building blocks shared by every V-JEPA 2 model in `modeling/`.

`MLP`, `Attention` (fused qkv, optional 3D RoPE, `scaled_dot_product_attention`,
optional attention mask) and the pre-LN `Block`. Parameter names follow the
official facebookresearch/vjepa2 modules (`norm1`, `attn.qkv`, `attn.proj`,
`norm2`, `mlp.fc1`, `mlp.fc2`), so official checkpoints load by prefix
stripping alone; `modeling/checkpoints.py` maps the Hugging Face names.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from modeling.rope import RopeTables, apply_rope


class MLP(nn.Module):
    """Two linear layers with an exact (erf) GELU between them."""

    def __init__(self, width: int, hidden: int, out_width: int | None = None) -> None:
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, out_width or width)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))  # (..., out_width)


class Attention(nn.Module):
    """Multi-head self-attention with a fused qkv projection and optional 3D RoPE on q and k.

    `qkv` packs `[q | k | v]`, each `num_heads * head_dim` wide, as the official code does.
    """

    def __init__(
        self, width: int, num_heads: int, qkv_bias: bool = True, dropout: float = 0.0
    ) -> None:
        super().__init__()
        if width % num_heads:
            raise ValueError(f"width {width} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = width // num_heads
        self.dropout = dropout
        self.qkv = nn.Linear(width, 3 * width, bias=qkv_bias)
        self.proj = nn.Linear(width, width)

    def forward(
        self,
        x: Tensor,
        rope: RopeTables | None = None,
        attn_mask: Tensor | None = None,
    ) -> Tensor:
        """`x` `(B, N, D)`; `attn_mask` as `scaled_dot_product_attention` takes it
        (bool: True = may attend, or additive float), broadcastable to `(B, heads, N, N)`."""
        batch, num_tokens, width = x.shape
        qkv = self.qkv(x).unflatten(-1, (3, self.num_heads, self.head_dim))  # (B, N, 3, H, hd)
        qkv = qkv.permute(2, 0, 3, 1, 4)  # (3, B, H, N, hd)
        value = qkv[2]  # (B, H, N, hd)
        if rope is not None:
            query, key = apply_rope(qkv[:2], rope).unbind(0)  # q and k in one pass
        else:
            query, key = qkv[0], qkv[1]
        out = F.scaled_dot_product_attention(
            query,
            key,
            value,
            attn_mask=attn_mask,
            dropout_p=self.dropout if self.training else 0.0,
        )  # (B, H, N, hd)
        out = out.transpose(1, 2).reshape(batch, num_tokens, width)  # (B, N, D)
        return self.proj(out)


def drop_path(x: Tensor, probability: float, training: bool) -> Tensor:
    """Stochastic depth: drop the whole residual branch per sample with `probability`."""
    if probability == 0.0 or not training:
        return x
    keep = 1.0 - probability
    mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)  # (B, 1, 1)
    return x * mask / keep


class Block(nn.Module):
    """Pre-LN transformer block: `x + attn(norm1(x))`, then `x + mlp(norm2(x))`."""

    def __init__(
        self,
        width: int,
        num_heads: int,
        mlp_hidden: int,
        qkv_bias: bool = True,
        norm_eps: float = 1e-6,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        self.drop_path = drop_path
        self.norm1 = nn.LayerNorm(width, eps=norm_eps)
        self.attn = Attention(width, num_heads, qkv_bias=qkv_bias)
        self.norm2 = nn.LayerNorm(width, eps=norm_eps)
        self.mlp = MLP(width, mlp_hidden)

    def forward(
        self, x: Tensor, rope: RopeTables | None = None, attn_mask: Tensor | None = None
    ) -> Tensor:
        x = x + drop_path(self.attn(self.norm1(x), rope, attn_mask), self.drop_path, self.training)
        return x + drop_path(self.mlp(self.norm2(x)), self.drop_path, self.training)  # (B, N, D)


def run_blocks(
    blocks: nn.ModuleList,
    x: Tensor,
    rope: RopeTables | None = None,
    attn_mask: Tensor | None = None,
    checkpointing: bool = False,
) -> Tensor:
    """Apply `blocks` in order; with `checkpointing` (and grad enabled) recompute activations
    in the backward pass instead of storing them."""
    use_checkpoint = checkpointing and torch.is_grad_enabled()
    for block in blocks:
        if use_checkpoint:
            x = torch.utils.checkpoint.checkpoint(block, x, rope, attn_mask, use_reentrant=False)
        else:
            x = block(x, rope, attn_mask)
    return x  # (B, N, D)
