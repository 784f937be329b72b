"""Layers and the vision encoder: shapes, masks, RoPE subsets, checkpointing, presets."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from modeling.encoder import EncoderConfig, VisionEncoder, preset
from modeling.layers import Attention, Block, run_blocks
from modeling.predictor import Predictor
from modeling.predictor import tiny as predictor_tiny
from modeling.probe import AttentiveProbe
from modeling.probe import tiny as probe_tiny
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


# --- encoder --------------------------------------------------------------------------------------

SMALL = EncoderConfig(width=96, depth=2, num_heads=2, mlp_hidden=192)


def small_encoder(**changes: object) -> VisionEncoder:
    torch.manual_seed(0)
    config = EncoderConfig(**{**SMALL.to_dict(), **changes})
    return VisionEncoder(config).eval()


def test_presets_have_the_paper_shapes() -> None:
    assert (preset("vitl").width, preset("vitl").depth, preset("vitl").num_heads) == (1024, 24, 16)
    assert (preset("vith").width, preset("vith").depth, preset("vith").num_heads) == (1280, 32, 16)
    giant = preset("vitg")
    assert (giant.width, giant.depth, giant.num_heads, giant.mlp_hidden) == (1408, 40, 22, 6144)
    assert preset("tiny").head_dim == 64
    with pytest.raises(ValueError, match="unknown encoder preset"):
        preset("vitz")


def test_config_validation_and_dict_round_trip() -> None:
    assert EncoderConfig.from_dict(SMALL.to_dict()) == SMALL
    with pytest.raises(ValueError, match="divisible"):
        EncoderConfig(width=100, num_heads=3)
    with pytest.raises(ValueError, match="unknown EncoderConfig keys"):
        EncoderConfig.from_dict({"width": 96, "colour": 1})


@torch.no_grad()
def test_full_forward_shape_on_non_square_grid() -> None:
    encoder = small_encoder()
    video = torch.randn(2, 3, 4, 32, 48)  # (B, C, T, H, W) -> grid (2, 2, 3)
    assert encoder.grid(video.shape) == (2, 2, 3)
    assert encoder(video).shape == (2, 12, 96)


@torch.no_grad()
def test_context_forward_with_all_indices_equals_full_forward() -> None:
    encoder = small_encoder()
    video = torch.randn(2, 3, 4, 32, 32)
    everything = torch.arange(8).expand(2, 8)
    assert torch.allclose(encoder(video, everything), encoder(video), atol=1e-5)
    shuffled = torch.stack([torch.randperm(8), torch.randperm(8)])  # order must not matter
    expected = torch.gather(encoder(video), 1, shuffled.unsqueeze(-1).expand(-1, -1, 96))
    assert torch.allclose(encoder(video, shuffled), expected, atol=1e-5)


@torch.no_grad()
def test_context_forward_uses_true_positions() -> None:
    encoder = small_encoder()
    video = torch.randn(1, 3, 4, 32, 32)
    context = torch.tensor([[1, 6, 7]])
    out = encoder(video, context)  # (1, 3, 96)
    assert out.shape == (1, 3, 96)
    # the same tokens at other positions (same pixels, moved clip) must encode differently
    rolled = torch.roll(video, shifts=16, dims=-1)  # tokens w=0 <-> w=1
    moved = encoder(rolled, torch.tensor([[0, 7, 6]]))
    assert not torch.allclose(out, moved, atol=1e-4)
    # but with a single token, attention sees itself only: position cancels out in q.k
    single = encoder(video, torch.tensor([[6]]))
    single_moved = encoder(rolled, torch.tensor([[7]]))
    assert torch.allclose(single, single_moved, atol=1e-5)


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ((1, 3, 3, 32, 32), "off the tubelet grid"),
        ((1, 3, 4, 30, 32), "off the tubelet grid"),
        ((1, 1, 4, 32, 32), "channels"),
        ((3, 4, 32, 32), r"\(B, C, T, H, W\)"),
    ],
)
def test_off_grid_video_is_a_clear_error(shape: tuple[int, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        small_encoder()(torch.randn(*shape))


def test_bad_indices_are_clear_errors() -> None:
    encoder = small_encoder()
    video = torch.randn(2, 3, 2, 32, 32)  # 4 tokens
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        encoder(video, torch.tensor([[0, 4], [1, 2]]))
    with pytest.raises(ValueError, match="shape"):
        encoder(video, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="integer"):
        encoder(video, torch.zeros(2, 2))
    with pytest.raises(ValueError, match="float"):
        encoder(torch.zeros(2, 3, 2, 32, 32, dtype=torch.uint8))


@torch.no_grad()
def test_single_image_fills_one_tubelet() -> None:
    encoder = small_encoder()
    image = torch.randn(1, 3, 1, 32, 32)
    assert torch.allclose(encoder(image), encoder(image.expand(-1, -1, 2, -1, -1)), atol=1e-6)


def test_activation_checkpointing_keeps_values_and_grads() -> None:
    plain, checkpointed = small_encoder(), small_encoder(activation_checkpointing=True)
    plain.train()
    checkpointed.train()
    video = torch.randn(1, 3, 2, 32, 32)
    plain(video).square().sum().backward()
    checkpointed(video).square().sum().backward()
    grad, grad_ckpt = plain.patch_embed.proj.weight.grad, checkpointed.patch_embed.proj.weight.grad
    assert grad is not None and grad_ckpt is not None
    assert torch.allclose(grad, grad_ckpt, atol=1e-6)


@torch.no_grad()
def test_predictor_and_probe_shape_contracts() -> None:
    encoder = small_encoder()
    video = torch.randn(2, 3, 4, 32, 32)  # grid (2, 2, 2)
    context = torch.tensor([[0, 2, 5], [1, 3, 4]])
    target = torch.tensor([[1, 7], [0, 6]])
    predictor = Predictor(predictor_tiny(encoder_width=96)).eval()
    predicted = predictor(encoder(video, context), context, target, grid=(2, 2, 2))
    assert predicted.shape == (2, 2, 96)
    with pytest.raises(ValueError, match="target_indices"):
        predictor(encoder(video, context), context, target + 8, grid=(2, 2, 2))
    probe = AttentiveProbe(probe_tiny(width=96, num_classes=7)).eval()
    probe_heads = probe.pooler.cross_attention_block.xattn.num_heads
    assert probe(encoder(video)).shape == (2, 7) and probe_heads == 3
    with pytest.raises(ValueError, match="probe expects"):
        probe(torch.randn(2, 8, 64))
