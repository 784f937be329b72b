"""Layers and the vision encoder: shapes, masks, RoPE subsets, checkpointing, presets."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from modeling.layers import Attention, Block, run_blocks
from modeling.rope import rope_for_grid


def test_attention_matches_explicit_softmax() -> None:
    torch.manual_seed(0)
    attention = Attention(32, num_heads=2).eval()
    x = torch.randn(2, 5, 32)
    query, key, value = attention.qkv(x).unflatten(-1, (3, 2, 16)).permute(2, 0, 3, 1, 4)
    weights = (query @ key.transpose(-1, -2) / 4.0).softmax(-1)  # (B, H, N, N)
    expected = attention.proj((weights @ value).transpose(1, 2).reshape(2, 5, 32))
    assert torch.allclose(attention(x), expected, atol=1e-6)


def test_attention_mask_blocks_future_tokens() -> None:
    torch.manual_seed(0)
    attention = Attention(48, num_heads=1).eval()
    rope = rope_for_grid((4, 1, 1), 48)
    causal = torch.ones(4, 4, dtype=torch.bool).tril()
    x = torch.randn(1, 4, 48)
    changed = x.clone()
    changed[:, 3] += 1.0
    out, out_changed = attention(x, rope, causal), attention(changed, rope, causal)
    assert torch.allclose(out[:, :3], out_changed[:, :3], atol=1e-6)
    assert not torch.allclose(out[:, 3], out_changed[:, 3])


def test_block_checkpointing_gives_same_values_and_grads() -> None:
    torch.manual_seed(0)
    blocks = torch.nn.ModuleList([Block(48, 1, 96), Block(48, 1, 96)])
    rope = rope_for_grid((2, 2, 2), 48)
    x = torch.randn(2, 8, 48, requires_grad=True)
    plain = run_blocks(blocks, x, rope)
    (grad_plain,) = torch.autograd.grad(plain.sum(), x)
    checkpointed = run_blocks(blocks, x, rope, checkpointing=True)
    (grad_checkpointed,) = torch.autograd.grad(checkpointed.sum(), x)
    assert torch.allclose(plain, checkpointed)
    assert torch.allclose(grad_plain, grad_checkpointed)


def test_block_is_pre_layer_norm_residual() -> None:
    torch.manual_seed(0)
    block = Block(32, 2, 64).eval()
    x = torch.randn(1, 3, 32)
    hidden = x + block.attn(block.norm1(x))
    expected = hidden + block.mlp.fc2(F.gelu(block.mlp.fc1(block.norm2(hidden))))
    assert torch.allclose(block(x), expected, atol=1e-6)
