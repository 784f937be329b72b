"""Checkpoints of the video-language model: a folder of safetensors files plus `vlm.json`.

Layout of a model folder (local; `tasks/vqa` copies `s3://` folders down and up):

* `projector.safetensors`: the projector in the project's own format (kind `projector`);
* `lm.safetensors`: the whole LM state dict, only when the LM was trained (`lm_weights = full`);
* `adapter/`: a LoRA adapter written by `peft`, only when `lm_weights = lora`;
* `vlm.json`: the `VLMManifest` naming and fingerprinting the encoder and the LM the
  projector belongs to, the projector kind, `blind`, how the LM weights were trained, and
  the side of the clips it was trained on (`image_size`: serving resizes video bodies to it).

`check_components` compares fingerprints: a projector loaded onto another encoder or
LM is a `CheckpointError` naming both, never silently wrong answers. A fingerprint
hashes every parameter's name, shape and dtype plus a strided sample of its values,
so it costs milliseconds even for an 8B LM.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from modeling.checkpoints import CheckpointError, load_strict, read_state, save_state
from modeling.encoder import VisionEncoder
from modeling.vlm import VideoLanguageModel, VisualProjector, VisualProjectorConfig

MANIFEST = "vlm.json"
PROJECTOR_FILE = "projector.safetensors"
LM_FILE = "lm.safetensors"
ADAPTER_DIR = "adapter"
VLM_FORMAT = "vjepa-platform-vlm"
VLM_FORMAT_VERSION = 1
LM_WEIGHTS = ("frozen", "full", "lora")
SAMPLES_PER_TENSOR = 4096


@dataclass(frozen=True)
class ComponentInfo:
    """Where a frozen component came from and the fingerprint of its weights."""

    source: str
    fingerprint: str


@dataclass(frozen=True)
class VLMManifest:
    """`vlm.json`: what a projector checkpoint belongs to and how it was trained."""

    encoder: ComponentInfo
    lm: ComponentInfo
    projector_kind: str
    blind: bool = False
    lm_weights: str = "frozen"
    lora_rank: int = 0
    steps: int = 0
    image_size: int = 0  # side of the clips the projector was trained on (0: not recorded)
    format: str = VLM_FORMAT
    format_version: int = VLM_FORMAT_VERSION
    extra: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.lm_weights not in LM_WEIGHTS:
            raise ValueError(f"lm_weights must be one of {LM_WEIGHTS}, got {self.lm_weights!r}")

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> VLMManifest:
        values: dict[str, Any] = json.loads(text)
        if values.get("format") != VLM_FORMAT:
            raise CheckpointError(f"not a {VLM_FORMAT} manifest")
        if int(values.get("format_version", 0)) > VLM_FORMAT_VERSION:
            raise CheckpointError(f"manifest version {values['format_version']} is too new")
        values["encoder"] = ComponentInfo(**values["encoder"])
        values["lm"] = ComponentInfo(**values["lm"])
        return cls(**values)


def fingerprint(module: nn.Module) -> str:
    """A short digest of `module`'s parameters and buffers (names, shapes, sampled values)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype};".encode())
        flat = tensor.detach().reshape(-1)
        step = max(1, flat.numel() // SAMPLES_PER_TENSOR)
        sample = flat[::step][:SAMPLES_PER_TENSOR].to("cpu", torch.float32)
        digest.update(sample.numpy().tobytes())
    return digest.hexdigest()[:16]


def read_manifest(folder: str | Path) -> VLMManifest:
    """The `vlm.json` of a model folder; `CheckpointError` when it is missing or unreadable."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise CheckpointError(f"{folder}: no {MANIFEST}; not a model folder written by vjepa align")
    try:
        return VLMManifest.from_json(path.read_text())
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{path}: unreadable manifest ({error})") from error


def check_components(manifest: VLMManifest, encoder: nn.Module, lm: nn.Module) -> None:
    """Raise `CheckpointError` unless `encoder` and `lm` are the ones the projector was fit to."""
    for what, info, module in (("encoder", manifest.encoder, encoder), ("LM", manifest.lm, lm)):
        found = fingerprint(module)
        if found != info.fingerprint:
            raise CheckpointError(
                f"this projector was trained for the {what} {info.source} (fingerprint "
                f"{info.fingerprint}), but the {what} given has fingerprint {found}: pass the "
                f"{what} it was trained with, or align a projector for this one"
            )


def save_vlm(
    folder: str | Path,
    projector: VisualProjector,
    manifest: VLMManifest,
    lm_state: dict[str, Tensor] | None = None,
) -> Path:
    """Write the projector, the LM weights when trained fully, then `vlm.json` (last)."""
    target = Path(folder)
    target.mkdir(parents=True, exist_ok=True)
    save_state(
        target / PROJECTOR_FILE, "projector", projector.config.to_dict(), projector.state_dict()
    )
    if manifest.lm_weights == "full":
        if lm_state is None:
            raise ValueError("lm_weights = full needs the LM state dict")
        save_state(target / LM_FILE, "lm", {"source": manifest.lm.source}, _untied(lm_state))
    (target / MANIFEST).write_text(manifest.to_json())
    return target


def _untied(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Drop tensors that share storage with an earlier one (tied LM head); safetensors
    refuses shared tensors and `load_lm_weights` restores the tie."""
    seen: set[int] = set()
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        pointer = value.untyped_storage().data_ptr()
        if pointer in seen:
            continue
        seen.add(pointer)
        out[key] = value
    return out


def load_projector(folder: str | Path) -> VisualProjector:
    """The projector of a model folder, strictly loaded, eval mode."""
    kind, config, state = read_state(Path(folder) / PROJECTOR_FILE)
    if kind != "projector":
        raise CheckpointError(f"{folder}/{PROJECTOR_FILE} holds a {kind}, not a projector")
    try:
        projector = VisualProjector(VisualProjectorConfig.from_dict(config))
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"invalid projector config {config}: {error}") from error
    load_strict(projector, state, f"projector from {folder}")
    return projector.eval()


def load_lm_weights(folder: str | Path, lm: nn.Module) -> None:
    """Copy a fully trained LM's weights (`lm.safetensors`) into `lm`."""
    kind, _, state = read_state(Path(folder) / LM_FILE)
    if kind != "lm":
        raise CheckpointError(f"{folder}/{LM_FILE} holds a {kind}, not LM weights")
    tied = set(lm.state_dict()) - set(state)
    missing = {key for key in tied if not key.endswith("lm_head.weight")}
    if missing:
        raise CheckpointError(f"{folder}/{LM_FILE} lacks LM weights: {sorted(missing)[:5]}")
    lm.load_state_dict(state, strict=False)


def assemble_vlm(
    folder: str | Path,
    encoder: VisionEncoder,
    lm: nn.Module,
    load_adapter: Callable[[nn.Module, Path], nn.Module],
) -> VideoLanguageModel:
    """The model of folder `folder` on its base encoder and LM, after checking they match.

    The trained LM weights go in as `vlm.json` says: `lm.safetensors` when the LM was
    trained whole, `load_adapter(lm, folder / ADAPTER_DIR)` (a `peft` call, which this
    torch-only module leaves to its caller) for a LoRA adapter. Eval mode.
    """
    manifest = read_manifest(folder)
    check_components(manifest, encoder, lm)
    if manifest.lm_weights == "full":
        load_lm_weights(folder, lm)
    elif manifest.lm_weights == "lora":
        lm = load_adapter(lm, Path(folder) / ADAPTER_DIR)
    projector = load_projector(folder)
    return VideoLanguageModel(encoder, projector, lm, blind=manifest.blind).eval()
