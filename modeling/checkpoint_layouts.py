"""Reading the two foreign checkpoint layouts into our parameter names and configs.

* Official V-JEPA 2 `.pt` files (facebookresearch/vjepa2): `encoder` / `target_encoder` /
  `predictor` entries, probe files with a `classifiers` list; keys carry `module.` and
  `backbone.` wrapper prefixes. Our parameter names equal the official ones, so only the
  prefixes go; the fixed sin-cos `pos_embed` tables, unused under RoPE, are dropped. The files
  record no config: shapes give everything except the head count (table below, or `num_heads`).
* Hugging Face `vjepa2` directories (`save_pretrained`: config.json + safetensors): keys are
  renamed by the regex tables below, separate q/k/v are fused, the stacked mask tokens split.

Used by `modeling.checkpoints.read_checkpoint`; every reader returns `(config dict, state dict)`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import Tensor

from modeling.state_dicts import (
    CheckpointError,
    StateDict,
    fuse_qkv,
    read_torch_file,
    rename_keys,
    select_prefix,
    strip_prefixes,
)

ENCODER_ENTRIES = ("target_encoder", "encoder", "ema_encoder")
# Heads are not visible in tensor shapes; official files carry no config, so use the
# released architectures' head counts (override with `num_heads=`).
ENCODER_HEADS = {192: 3, 384: 6, 768: 12, 1024: 16, 1280: 16, 1408: 22, 1664: 26}
PREDICTOR_HEADS = {384: 12}
OFFICIAL_PROBE_HEADS = 16  # the official probe configs use 16 heads for every backbone
OFFICIAL_PROBE_NORM_EPS = 1e-5  # AttentiveClassifier's default nn.LayerNorm
UNUSED_OFFICIAL_KEYS = (
    "pos_embed",
    "predictor_pos_embed",
)  # fixed sin-cos tables, unused with RoPE

HF_ENCODER_RULES = [
    (r"^embeddings\.patch_embeddings\.proj\.", "patch_embed.proj."),
    (r"^layer\.(\d+)\.attention\.", r"blocks.\1.attn."),
    (r"^layer\.(\d+)\.", r"blocks.\1."),
    (r"^layernorm\.", "norm."),
]
HF_PREDICTOR_RULES = [
    (r"^embeddings\.predictor_embeddings\.", "predictor_embed."),
    (r"^layer\.(\d+)\.attention\.", r"predictor_blocks.\1.attn."),
    (r"^layer\.(\d+)\.", r"predictor_blocks.\1."),
    (r"^layernorm\.", "predictor_norm."),
    (r"^proj\.", "predictor_proj."),
]
HF_PROBE_RULES = [
    (r"^pooler\.self_attention_layers\.(\d+)\.layer_norm(\d)\.", r"pooler.blocks.\1.norm\2."),
    (
        r"^pooler\.self_attention_layers\.(\d+)\.self_attn\.out_proj\.",
        r"pooler.blocks.\1.attn.proj.",
    ),
    (r"^pooler\.self_attention_layers\.(\d+)\.self_attn\.", r"pooler.blocks.\1.attn."),
    (r"^pooler\.self_attention_layers\.(\d+)\.", r"pooler.blocks.\1."),
    (r"^pooler\.cross_attention_layer\.layer_norm(\d)\.", r"pooler.cross_attention_block.norm\1."),
    (
        r"^pooler\.cross_attention_layer\.cross_attn\.q_proj\.",
        "pooler.cross_attention_block.xattn.q.",
    ),
    (r"^pooler\.cross_attention_layer\.cross_attn\.", "pooler.cross_attention_block.xattn."),
    (r"^pooler\.cross_attention_layer\.", "pooler.cross_attention_block."),
    (r"^classifier\.", "linear."),
]


def _count(state: Mapping[str, Tensor], pattern: str) -> int:
    regex = re.compile(pattern)
    return len({match.group(1) for key in state if (match := regex.match(key))})


def _heads(width: int, table: Mapping[int, int], num_heads: int | None, what: str) -> int:
    if num_heads is not None:
        return num_heads
    if width in table:
        return table[width]
    raise CheckpointError(f"cannot infer the {what}'s head count for width {width}; pass num_heads")


def _require(state: Mapping[str, Tensor], key: str, source: str) -> Tensor:
    if key not in state:
        raise CheckpointError(f"{source}: no {key!r}; is this the right kind of checkpoint?")
    return state[key]


def _encoder_config(
    state: StateDict, num_heads: int | None, eps: float, source: str
) -> dict[str, Any]:
    proj = _require(state, "patch_embed.proj.weight", source)  # (D, C, tubelet, patch, patch)
    width = int(proj.shape[0])
    return {
        "width": width,
        "depth": _count(state, r"blocks\.(\d+)\."),
        "num_heads": _heads(width, ENCODER_HEADS, num_heads, "encoder"),
        "mlp_hidden": int(_require(state, "blocks.0.mlp.fc1.weight", source).shape[0]),
        "patch_size": int(proj.shape[3]),
        "tubelet_size": int(proj.shape[2]),
        "in_channels": int(proj.shape[1]),
        "qkv_bias": "blocks.0.attn.qkv.bias" in state,
        "norm_eps": eps,
    }


def _predictor_config(
    state: StateDict, num_heads: int | None, eps: float, source: str
) -> dict[str, Any]:
    embed = _require(state, "predictor_embed.weight", source)  # (W, De)
    width = int(embed.shape[0])
    return {
        "encoder_width": int(embed.shape[1]),
        "width": width,
        "depth": _count(state, r"predictor_blocks\.(\d+)\."),
        "num_heads": _heads(width, PREDICTOR_HEADS, num_heads, "predictor"),
        "mlp_hidden": int(_require(state, "predictor_blocks.0.mlp.fc1.weight", source).shape[0]),
        "num_mask_tokens": _count(state, r"mask_tokens\.(\d+)$"),
        "qkv_bias": "predictor_blocks.0.attn.qkv.bias" in state,
        "norm_eps": eps,
    }


def _probe_config(state: StateDict, num_heads: int, eps: float, source: str) -> dict[str, Any]:
    queries = _require(state, "pooler.query_tokens", source)  # (1, Q, D)
    return {
        "width": int(queries.shape[-1]),
        "num_heads": num_heads,
        "num_blocks": _count(state, r"pooler\.blocks\.(\d+)\."),
        "mlp_hidden": int(
            _require(state, "pooler.cross_attention_block.mlp.fc1.weight", source).shape[0]
        ),
        "num_classes": int(_require(state, "linear.weight", source).shape[0]),
        "num_queries": int(queries.shape[1]),
        "qkv_bias": "pooler.cross_attention_block.xattn.q.bias" in state,
        "norm_eps": eps,
    }


def _official_entry(payload: Any, kind: str, entry: str | None, index: int, source: str) -> Any:
    """The state dict of `kind` inside an official checkpoint object."""
    if not isinstance(payload, Mapping):
        raise CheckpointError(f"{source}: expected a dict checkpoint, got {type(payload).__name__}")
    if entry is not None:
        candidates: tuple[str, ...] = (entry,)
    elif kind == "encoder":
        candidates = ENCODER_ENTRIES
    elif kind == "predictor":
        candidates = ("predictor",)
    else:
        candidates = ("classifiers", "classifier")
    for name in candidates:
        if name in payload:
            found = payload[name]
            if isinstance(found, list | tuple):  # probe checkpoints keep a list of classifiers
                if not 0 <= index < len(found):
                    raise CheckpointError(
                        f"{source}: {name} has {len(found)} entries, no index {index}"
                    )
                found = found[index]
            return found
    if entry is None and all(isinstance(value, Tensor) for value in payload.values()):
        return payload  # a bare state dict
    raise CheckpointError(
        f"{source}: no {' / '.join(candidates)} entry (found {sorted(payload)[:10]})"
    )


def read_official(
    path: Path, kind: str, num_heads: int | None, entry: str | None, index: int
) -> tuple[dict[str, Any], StateDict]:
    raw = _official_entry(read_torch_file(path), kind, entry, index, str(path))
    state = {k: v for k, v in strip_prefixes(raw).items() if k not in UNUSED_OFFICIAL_KEYS}
    if kind == "encoder":
        return _encoder_config(state, num_heads, 1e-6, str(path)), state
    if kind == "predictor":
        return _predictor_config(state, num_heads, 1e-6, str(path)), state
    heads = num_heads or OFFICIAL_PROBE_HEADS
    return _probe_config(state, heads, OFFICIAL_PROBE_NORM_EPS, str(path)), state


def _read_hf_tensors(directory: Path) -> StateDict:
    from safetensors.torch import load_file

    single = directory / "model.safetensors"
    index = directory / "model.safetensors.index.json"
    try:
        if single.is_file():
            return dict(load_file(str(single)))
        if index.is_file():
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            state: StateDict = {}
            for shard in shards:
                state.update(load_file(str(directory / shard)))
            return state
    except Exception as error:  # safetensors' SafetensorError, a bad index, a missing shard
        raise CheckpointError(f"{directory}: unreadable weights ({error})") from error
    if (directory / "pytorch_model.bin").is_file():
        return dict(read_torch_file(directory / "pytorch_model.bin"))
    raise CheckpointError(f"{directory}: no model.safetensors(.index.json) or pytorch_model.bin")


def _split_mask_tokens(state: StateDict) -> StateDict:
    out = dict(state)
    stacked = out.pop("embeddings.mask_tokens", None)  # (num, 1, 1, W)
    if stacked is not None:
        for number, token in enumerate(stacked.unbind(0)):
            out[f"mask_tokens.{number}"] = token  # (1, 1, W)
    return out


def read_hf(path: Path, kind: str, num_heads: int | None) -> tuple[dict[str, Any], StateDict]:
    try:
        config = json.loads((path / "config.json").read_text())
    except ValueError as error:
        raise CheckpointError(f"{path}/config.json is not valid JSON ({error})") from error
    if config.get("model_type") != "vjepa2":
        raise CheckpointError(
            f"{path}: config.json model_type is {config.get('model_type')!r}, not 'vjepa2'"
        )
    if config.get("hidden_act", "gelu") != "gelu":
        raise CheckpointError(
            f"{path}: hidden_act {config['hidden_act']!r} is not supported (gelu only)"
        )
    tensors = strip_prefixes(_read_hf_tensors(path), ("vjepa2.",))
    eps = float(config.get("layer_norm_eps", 1e-6))
    source = str(path)
    if kind == "encoder":
        state = rename_keys(select_prefix(tensors, "encoder."), HF_ENCODER_RULES)
        state = fuse_qkv(state, ("attn.query.", "attn.key.", "attn.value."), "attn.qkv.")
        return _encoder_config(
            state, num_heads or config.get("num_attention_heads"), eps, source
        ), state
    if kind == "predictor":
        state = _split_mask_tokens(select_prefix(tensors, "predictor."))
        state = rename_keys(state, HF_PREDICTOR_RULES)
        state = fuse_qkv(state, ("attn.query.", "attn.key.", "attn.value."), "attn.qkv.")
        heads = num_heads or config.get("pred_num_attention_heads")
        return _predictor_config(state, heads, eps, source), state
    probe_keys = {k: v for k, v in tensors.items() if k.startswith(("pooler.", "classifier."))}
    if not probe_keys:
        raise CheckpointError(
            f"{path}: no pooler/classifier weights (not a VJEPA2ForVideoClassification)"
        )
    state = rename_keys(probe_keys, HF_PROBE_RULES)
    state = fuse_qkv(state, ("attn.q_proj.", "attn.k_proj.", "attn.v_proj."), "attn.qkv.")
    state = fuse_qkv(state, ("xattn.k_proj.", "xattn.v_proj."), "xattn.kv.")
    heads = num_heads or int(config["num_attention_heads"])
    return _probe_config(state, heads, eps, source), state
