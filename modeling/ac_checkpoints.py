"""AC predictor checkpoints: the project's safetensors format and the official `.pt` files.

Official parameter names equal ours once `module.` is stripped; the official model always builds
`extrinsics_encoder`, so those keys are dropped unless the config uses extrinsics. Without a
config, one is inferred from the tensor shapes (`infer_ac_config`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import Tensor

from modeling.ac_predictor import ACPredictor, ACPredictorConfig
from modeling.checkpoints import (
    CheckpointError,
    StateDict,
    is_own_format,
    load_strict,
    read_state,
    read_torch_file,
    save_state,
    strip_prefixes,
)

KIND = "ac_predictor"
OFFICIAL_HEAD_DIM = 64
OFFICIAL_PREFIXES = ("module.",)
EXTRINSICS = "extrinsics_encoder."


def official_to_own(state: Mapping[str, Tensor], config: ACPredictorConfig) -> StateDict:
    """Map an official `predictor` state dict onto our names.

    Names are the same once `module.` is stripped. The official model always builds
    `extrinsics_encoder` (used only with `use_extrinsics`), so without it those keys are dropped.
    """
    own = strip_prefixes(state, OFFICIAL_PREFIXES)
    if not config.use_extrinsics:
        own = {key: value for key, value in own.items() if not key.startswith(EXTRINSICS)}
    return own


def _required(state: Mapping[str, Tensor], key: str) -> Tensor:
    if key not in state:
        raise CheckpointError(f"not an AC predictor state dict: missing {key!r}")
    return state[key]


def infer_ac_config(state: Mapping[str, Tensor], **overrides: Any) -> ACPredictorConfig:
    """Config from tensor shapes; heads (head dim 64) and the frame grid (16 x 16) are assumed
    unless given in `overrides`, since weights do not record them."""
    state = strip_prefixes(state, OFFICIAL_PREFIXES)
    width, embed_dim = _required(state, "predictor_embed.weight").shape
    block_ids = {int(m.group(1)) for k in state if (m := re.match(r"predictor_blocks\.(\d+)\.", k))}
    extrinsics = state.get(EXTRINSICS + "weight")
    values: dict[str, Any] = {
        "embed_dim": embed_dim,
        "width": width,
        "depth": max(block_ids) + 1 if block_ids else 0,
        "num_heads": max(1, width // OFFICIAL_HEAD_DIM),
        "mlp_hidden": _required(state, "predictor_blocks.0.mlp.fc1.weight").shape[0],
        "action_dim": _required(state, "action_encoder.weight").shape[1],
        "state_dim": _required(state, "state_encoder.weight").shape[1],
        "qkv_bias": "predictor_blocks.0.attn.qkv.bias" in state,
    }
    if extrinsics is not None:
        values["extrinsics_dim"] = extrinsics.shape[1]
    return ACPredictorConfig.from_dict({**values, **overrides})


def save_ac_predictor(model: ACPredictor, path: str | Path) -> Path:
    """Write the project's own format (safetensors, kind `ac_predictor`, config in metadata)."""
    return save_state(path, KIND, model.config.to_dict(), model.state_dict())


def _official_state(path: str | Path) -> StateDict:
    raw = read_torch_file(path)
    if isinstance(raw, Mapping) and "predictor" in raw:
        raw = raw["predictor"]
    if not isinstance(raw, Mapping) or not all(isinstance(v, Tensor) for v in raw.values()):
        raise CheckpointError(f"{path}: no 'predictor' state dict in this checkpoint")
    return dict(raw)


def load_ac_predictor(path: str | Path, config: ACPredictorConfig | None = None) -> ACPredictor:
    """Load an AC predictor from the project's own safetensors file or an official `.pt`.

    Official files hold `{"predictor": state_dict, ...}` (keys with `module.` prefixes) or the
    bare state dict; without `config` it is inferred from the shapes (`infer_ac_config`).
    Loading is strict: missing, unexpected or mis-shaped keys raise `CheckpointError`.
    """
    if not Path(path).is_file():
        raise FileNotFoundError(f"no checkpoint file at {path}")
    if is_own_format(path):
        kind, stored, state = read_state(path)
        if kind != KIND:
            raise CheckpointError(f"{path}: holds a {kind!r}, not an {KIND!r}")
        config = config or ACPredictorConfig.from_dict(stored)
    else:
        official = strip_prefixes(_official_state(path), OFFICIAL_PREFIXES)
        config = config or infer_ac_config(official)
        state = official_to_own(official, config)
    model = ACPredictor(config)
    load_strict(model, state, f"AC predictor from {path}")
    return model.eval()
