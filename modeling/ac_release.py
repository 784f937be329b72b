"""Meta's released V-JEPA 2-AC checkpoint -> a `WorldModel` with the paper's robot spec.

The released file (`vjepa2-ac-vitg.pt`, loaded by the official `src/hub/backbones.py`) holds
`{"encoder": ..., "predictor": ...}`: the frozen ViT-g encoder (keys `module.backbone.*`) and the
action-conditioned predictor (`module.*`, `src/models/ac_predictor.py`, which always builds an
`extrinsics_encoder`). Both are read strictly with the project's loaders; the encoder may come
from a separate file (`encoder=`), any layout `load_encoder` reads.

Weights do not record the robot, so the spec defaults to the paper's (`PAPER_ROBOT`): 7-D
end-effector state and 7-D delta actions (xyz, rotation, gripper), 256 px frames, 4 fps, and
the paper's CEM (800 samples, 10 iterations, top 10, horizon 1). The paper keeps actions in an
L1 ball of radius 0.075; the spec's bounds are per-dim boxes, so the default is that ball's
bounding box, +-0.075 on every dim. Every spec field can be overridden.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modeling.ac_checkpoints import infer_ac_config, load_ac_predictor
from modeling.ac_predictor import ACPredictor
from modeling.checkpoints import CheckpointError, load_encoder, read_torch_file
from modeling.encoder import VisionEncoder
from modeling.world_model import WorldModel, WorldModelSpec

PAPER_BOUND = 0.075  # radius of the paper's L1 ball of actions
PAPER_CEM = {"num_samples": 800, "num_iterations": 10, "num_elites": 10, "horizon": 1}
PAPER_ROBOT: dict[str, Any] = {
    "image_size": 256,
    "action_dim": 7,
    "state_dim": 7,
    "action_low": (-PAPER_BOUND,) * 7,
    "action_high": (PAPER_BOUND,) * 7,
    "control_fps": 4.0,
    "name": "vjepa2-ac",
    "cem": PAPER_CEM,
}


def paper_spec(**overrides: Any) -> WorldModelSpec:
    """The paper's robot spec with `overrides`; bounds follow a changed `action_dim`."""
    values = {**PAPER_ROBOT, **overrides}
    dims = int(values["action_dim"])
    for key, sign in (("action_low", -1.0), ("action_high", 1.0)):
        if key not in overrides and len(values[key]) != dims:
            values[key] = (sign * PAPER_BOUND,) * dims
    if "cem" in overrides:
        values["cem"] = {**PAPER_CEM, **overrides["cem"]}
    return WorldModelSpec.from_dict(values)


def _released_entries(path: str | Path) -> None:
    payload = read_torch_file(path)
    if not isinstance(payload, dict) or "predictor" not in payload:
        found = sorted(payload) if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(
            f"{path}: not a V-JEPA 2-AC checkpoint (needs 'encoder' and 'predictor' entries, "
            f"found {found})"
        )


def load_released_predictor(
    path: str | Path, encoder: VisionEncoder, image_size: int
) -> ACPredictor:
    """The AC predictor of a released file, its frame grid set by the encoder and `image_size`."""
    import torch

    if image_size % encoder.config.patch_size:
        raise ValueError(
            f"image_size {image_size} is not a multiple of the patch size {encoder.config.patch_size}"
        )
    grid = image_size // encoder.config.patch_size
    state = torch.load(str(path), map_location="cpu", weights_only=True)["predictor"]
    config = infer_ac_config(state, grid_height=grid, grid_width=grid, rope_grid_size=grid)
    if config.embed_dim != encoder.config.width:
        raise CheckpointError(
            f"{path}: the predictor reads {config.embed_dim}-wide features, the encoder makes "
            f"{encoder.config.width}-wide ones; pass the encoder it was trained on (--encoder)"
        )
    return load_ac_predictor(path, config)


def import_released_world_model(
    ac_path: str | Path, encoder_path: str | Path | None = None, **spec_overrides: Any
) -> WorldModel:
    """A world model from Meta's released AC file (and optionally a separate encoder file)."""
    _released_entries(ac_path)
    encoder = load_encoder(
        encoder_path or ac_path, **({} if encoder_path else {"entry": "encoder"})
    )
    image_size = int(spec_overrides.get("image_size", PAPER_ROBOT["image_size"]))
    predictor = load_released_predictor(ac_path, encoder, image_size)
    dims = {"action_dim": predictor.config.action_dim, "state_dim": predictor.config.state_dim}
    for name, found in dims.items():
        given = spec_overrides.get(name)
        if given is not None and int(given) != found:
            raise ValueError(f"{name} {given} disagrees with the checkpoint's predictor ({found})")
    spec = paper_spec(**{**spec_overrides, **dims})
    return WorldModel(encoder, predictor, spec).eval()
