"""Parity with transformers' VJEPA2: HF directories and official `.pt` files load to equal outputs.

The reference models are built offline from small `VJEPA2Config`s with random weights.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor

from modeling.checkpoints import CheckpointError, load_encoder, load_predictor, load_probe

transformers = pytest.importorskip("transformers")

CONFIGS = {
    # head dim 48 = 3 x 16: every channel rotated; predictor head dim 48 too
    "no-leftover": dict(
        hidden_size=96, num_attention_heads=2, pred_hidden_size=48, pred_num_attention_heads=1
    ),
    # head dim 64 = 3 x 20 + 4 unrotated; predictor head dim 32 = 3 x 10 + 2 unrotated
    "leftover": dict(
        hidden_size=128, num_attention_heads=2, pred_hidden_size=64, pred_num_attention_heads=2
    ),
}


@dataclass
class Reference:
    model: Any  # transformers.VJEPA2ForVideoClassification
    hf_dir: Path
    official_pt: Path
    official_probe_pt: Path
    heads: int
    pred_heads: int
    grid: tuple[int, int, int]


def _qkv(state: dict[str, Tensor], prefix: str, names: tuple[str, ...]) -> Tensor:
    return torch.cat([state[f"{prefix}{name}"] for name in names], dim=0)


def hf_to_official_blocks(state: dict[str, Tensor], src: str, dst: str) -> dict[str, Tensor]:
    """HF `{src}{i}.*` transformer layers -> official `{dst}{i}.*` (fused qkv) keys."""
    out: dict[str, Tensor] = {}
    layers = {key[len(src) :].split(".")[0] for key in state if key.startswith(src)}
    for layer in layers:
        a, b = f"{src}{layer}.", f"{dst}{layer}."
        for kind in ("weight", "bias"):
            out[f"{b}attn.qkv.{kind}"] = _qkv(
                state, a, tuple(f"attention.{n}.{kind}" for n in ("query", "key", "value"))
            )
            out[f"{b}attn.proj.{kind}"] = state[f"{a}attention.proj.{kind}"]
            for name in ("norm1", "norm2", "mlp.fc1", "mlp.fc2"):
                out[f"{b}{name}.{kind}"] = state[f"{a}{name}.{kind}"]
    return out


def official_checkpoint(state: dict[str, Tensor]) -> dict[str, object]:
    """The official pretraining checkpoint layout (DDP + MultiSeqWrapper prefixes)."""
    encoder = hf_to_official_blocks(state, "vjepa2.encoder.layer.", "blocks.")
    encoder["patch_embed.proj.weight"] = state[
        "vjepa2.encoder.embeddings.patch_embeddings.proj.weight"
    ]
    encoder["patch_embed.proj.bias"] = state["vjepa2.encoder.embeddings.patch_embeddings.proj.bias"]
    encoder["norm.weight"] = state["vjepa2.encoder.layernorm.weight"]
    encoder["norm.bias"] = state["vjepa2.encoder.layernorm.bias"]
    encoder["pos_embed"] = torch.zeros(1, 4, 4)  # released files carry an unused sin-cos table
    predictor = hf_to_official_blocks(state, "vjepa2.predictor.layer.", "predictor_blocks.")
    for kind in ("weight", "bias"):
        predictor[f"predictor_embed.{kind}"] = state[
            f"vjepa2.predictor.embeddings.predictor_embeddings.{kind}"
        ]
        predictor[f"predictor_norm.{kind}"] = state[f"vjepa2.predictor.layernorm.{kind}"]
        predictor[f"predictor_proj.{kind}"] = state[f"vjepa2.predictor.proj.{kind}"]
    for number, token in enumerate(state["vjepa2.predictor.embeddings.mask_tokens"]):
        predictor[f"mask_tokens.{number}"] = token  # (1, 1, W)
    wrap = lambda part: {f"module.backbone.{k}": v.clone() for k, v in part.items()}  # noqa: E731
    return {
        "encoder": wrap(encoder),
        "target_encoder": wrap(encoder),
        "predictor": wrap(predictor),
        "epoch": 3,
    }


def official_probe(state: dict[str, Tensor]) -> dict[str, object]:
    """The official probe checkpoint: `classifiers` list of DDP-prefixed AttentiveClassifier dicts."""
    probe: dict[str, Tensor] = {"pooler.query_tokens": state["pooler.query_tokens"]}
    layers = {k.split(".")[2] for k in state if k.startswith("pooler.self_attention_layers.")}
    for layer in layers:
        a, b = f"pooler.self_attention_layers.{layer}.", f"pooler.blocks.{layer}."
        for kind in ("weight", "bias"):
            probe[f"{b}attn.qkv.{kind}"] = _qkv(
                state, a, tuple(f"self_attn.{n}_proj.{kind}" for n in "qkv")
            )
            probe[f"{b}attn.proj.{kind}"] = state[f"{a}self_attn.out_proj.{kind}"]
            probe[f"{b}norm1.{kind}"] = state[f"{a}layer_norm1.{kind}"]
            probe[f"{b}norm2.{kind}"] = state[f"{a}layer_norm2.{kind}"]
            for fc in ("fc1", "fc2"):
                probe[f"{b}mlp.{fc}.{kind}"] = state[f"{a}mlp.{fc}.{kind}"]
    a, b = "pooler.cross_attention_layer.", "pooler.cross_attention_block."
    for kind in ("weight", "bias"):
        probe[f"{b}xattn.q.{kind}"] = state[f"{a}cross_attn.q_proj.{kind}"]
        probe[f"{b}xattn.kv.{kind}"] = _qkv(
            state, a, (f"cross_attn.k_proj.{kind}", f"cross_attn.v_proj.{kind}")
        )
        probe[f"{b}norm1.{kind}"] = state[f"{a}layer_norm1.{kind}"]
        probe[f"{b}norm2.{kind}"] = state[f"{a}layer_norm2.{kind}"]
        for fc in ("fc1", "fc2"):
            probe[f"{b}mlp.{fc}.{kind}"] = state[f"{a}mlp.{fc}.{kind}"]
        probe[f"linear.{kind}"] = state[f"classifier.{kind}"]
    return {"classifiers": [{f"module.{k}": v.clone() for k, v in probe.items()}], "epoch": 1}


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def reference(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Reference]:
    torch.manual_seed(0)
    sizes = CONFIGS[request.param]
    config = transformers.VJEPA2Config(
        crop_size=48,
        frames_per_clip=6,
        num_hidden_layers=2,
        pred_num_hidden_layers=2,
        pred_num_mask_tokens=3,
        pred_zero_init_mask_tokens=False,
        num_pooler_layers=2,
        num_labels=5,
        **sizes,
    )
    model = transformers.VJEPA2ForVideoClassification(config).eval()
    with torch.no_grad():  # HF zero-inits biases and LayerNorms; make every tensor count
        for parameter in model.parameters():
            parameter.add_(0.02 * torch.randn_like(parameter))
    folder = tmp_path_factory.mktemp(request.param)
    model.save_pretrained(folder / "hf")
    state = model.state_dict()
    torch.save(official_checkpoint(state), folder / "official.pt")
    torch.save(official_probe(state), folder / "probe.pt")
    yield Reference(
        model,
        folder / "hf",
        folder / "official.pt",
        folder / "probe.pt",
        sizes["num_attention_heads"],
        sizes["pred_num_attention_heads"],
        (3, 3, 3),
    )


def hf_video() -> Tensor:
    return torch.randn(
        2, 6, 3, 48, 48, generator=torch.Generator().manual_seed(1)
    )  # (B, T, C, H, W)


def ours_video() -> Tensor:
    return hf_video().permute(0, 2, 1, 3, 4)  # (B, C, T, H, W)


@torch.no_grad()
def test_encoder_matches_hf_from_both_layouts(reference: Reference) -> None:
    expected = reference.model.vjepa2(
        pixel_values_videos=hf_video(), skip_predictor=True
    ).last_hidden_state
    from_hf = load_encoder(reference.hf_dir)
    from_official = load_encoder(reference.official_pt, num_heads=reference.heads)
    assert expected.shape == (2, 27, from_hf.config.width)
    assert (from_hf(ours_video()) - expected).abs().max() <= 1e-5
    assert (from_official(ours_video()) - expected).abs().max() <= 1e-5


@torch.no_grad()
def test_predictor_matches_hf_on_random_masks(reference: Reference) -> None:
    generator = torch.Generator().manual_seed(2)
    order = torch.stack([torch.randperm(27, generator=generator) for _ in range(2)])
    context, target = order[:, :15], order[:, 15:]  # (B, 15), (B, 12)
    out = reference.model.vjepa2(
        pixel_values_videos=hf_video(), context_mask=[context], target_mask=[target]
    )
    expected = out.predictor_output.last_hidden_state  # (B, 12, D)
    encoder = load_encoder(reference.hf_dir)
    context_tokens = encoder(ours_video(), context_indices=context)  # (B, 15, D)
    assert (context_tokens - out.masked_hidden_state).abs().max() > 1e-3  # context-only differs
    full_context = torch.gather(
        encoder(ours_video()), 1, context.unsqueeze(-1).expand(-1, -1, encoder.config.width)
    )
    for predictor in (
        load_predictor(reference.hf_dir),
        load_predictor(reference.official_pt, num_heads=reference.pred_heads),
    ):
        predicted = predictor(full_context, context, target, grid=reference.grid)
        assert predicted.shape == expected.shape
        assert (predicted - expected).abs().max() <= 1e-5


@torch.no_grad()
def test_probe_matches_hf_classification(reference: Reference) -> None:
    expected = reference.model(pixel_values_videos=hf_video()).logits  # (B, 5)
    features = load_encoder(reference.hf_dir)(ours_video())
    probe = load_probe(reference.hf_dir)
    assert (probe(features) - expected).abs().max() <= 1e-4
    official = load_probe(reference.official_pt.with_name("probe.pt"), num_heads=reference.heads)
    assert official.config.norm_eps == 1e-5  # the official AttentiveClassifier's LayerNorm default
    assert (official(features) - expected).abs().max() <= 1e-4


def test_missing_and_unexpected_keys_are_named(reference: Reference, tmp_path: Path) -> None:
    payload = torch.load(reference.official_pt, weights_only=True)
    encoder = payload["target_encoder"]
    del encoder["module.backbone.blocks.1.mlp.fc2.bias"]
    encoder["module.backbone.blocks.0.attn.extra"] = torch.zeros(1)
    broken = tmp_path / "broken.pt"
    torch.save({"target_encoder": encoder}, broken)
    with pytest.raises(CheckpointError) as info:
        load_encoder(broken, num_heads=reference.heads)
    assert "missing keys: blocks.1.mlp.fc2.bias" in str(info.value)
    assert "unexpected keys: blocks.0.attn.extra" in str(info.value)


def test_wrong_kind_and_missing_heads_are_clear_errors(
    reference: Reference, tmp_path: Path
) -> None:
    with pytest.raises(CheckpointError, match="head count"):
        load_encoder(reference.official_pt)  # width 96/128 is no released architecture
    with pytest.raises(CheckpointError, match="classifiers"):
        load_probe(reference.official_pt, num_heads=reference.heads)
    hf_model_only = tmp_path / "encoder-only"
    transformers.VJEPA2Model(reference.model.config).save_pretrained(hf_model_only)
    with pytest.raises(CheckpointError, match="pooler"):
        load_probe(hf_model_only)


@torch.no_grad()
def test_sharded_hf_directory_loads(reference: Reference, tmp_path: Path) -> None:
    reference.model.save_pretrained(tmp_path / "sharded", max_shard_size="100KB")
    assert (tmp_path / "sharded" / "model.safetensors.index.json").is_file()
    whole, sharded = load_encoder(reference.hf_dir), load_encoder(tmp_path / "sharded")
    for key, value in whole.state_dict().items():
        assert torch.equal(sharded.state_dict()[key], value), key
