"""Checkpoint import and export: official V-JEPA 2 `.pt`, Hugging Face `vjepa2`, our own format.

Model loaders: `load_encoder`, `load_predictor`, `load_probe` (and `load_model(path, kind)`)
accept an official `.pt`, a Hugging Face `save_pretrained` directory or our own file; the
config is inferred from the checkpoint, loading is strict, the model comes back in eval mode.
`save_model(model, path)` writes our own format. The foreign layouts are parsed in
`modeling/checkpoint_layouts.py`.

Generic helpers (reused by the AC predictor's loader):

* `read_torch_file(path)`: `torch.load(weights_only=True)`, never arbitrary unpickling;
* `strip_prefixes(state, prefixes)`: drop DDP/wrapper prefixes (`module.`, `backbone.`);
* `rename_keys(state, rules)`: apply an ordered table of regex renames;
* `fuse_qkv(state, parts, fused)`: concatenate separate q/k/v tensors into one fused tensor;
* `select_prefix(state, prefix)`: one component's keys, prefix removed;
* `load_strict(module, state, what)`: load or raise `CheckpointError` naming every
  missing, unexpected or mis-shaped key;
* `save_state(path, kind, config, state)` / `read_state(path)`: the project's own format.

The project's own format is one safetensors file (no pickle) whose metadata holds
`format = "vjepa-platform"`, `format_version`, `kind` (`encoder`, `predictor`,
`probe`, ...) and `config` (the model's config dataclass as JSON).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from torch import Tensor, nn

from modeling.checkpoint_layouts import read_hf, read_official
from modeling.state_dicts import (
    WRAPPER_PREFIXES,
    CheckpointError,
    StateDict,
    fuse_qkv,
    read_torch_file,
    rename_keys,
    select_prefix,
    strip_prefixes,
)

__all__ = [
    "WRAPPER_PREFIXES",
    "CheckpointError",
    "StateDict",
    "fuse_qkv",
    "read_torch_file",
    "rename_keys",
    "select_prefix",
    "strip_prefixes",
]

FORMAT_NAME = "vjepa-platform"
FORMAT_VERSION = 1

if TYPE_CHECKING:
    from modeling.encoder import VisionEncoder
    from modeling.predictor import Predictor
    from modeling.probe import AttentiveProbe


def _describe(keys: Iterable[str], limit: int = 20) -> str:
    names = sorted(keys)
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


def load_strict(module: nn.Module, state: Mapping[str, Tensor], what: str = "model") -> None:
    """Copy `state` into `module`; every key must exist on both sides with the same shape.

    Raises `CheckpointError` naming the missing, unexpected and mis-shaped keys.
    """
    expected = module.state_dict()
    missing = set(expected) - set(state)
    unexpected = set(state) - set(expected)
    mismatched = [
        f"{key} (checkpoint {tuple(state[key].shape)}, model {tuple(expected[key].shape)})"
        for key in sorted(set(expected) & set(state))
        if tuple(state[key].shape) != tuple(expected[key].shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing keys: {_describe(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_describe(unexpected)}")
    if mismatched:
        problems.append(f"shape mismatches: {_describe(mismatched)}")
    if problems:
        raise CheckpointError(f"cannot load {what}: " + "; ".join(problems))
    module.load_state_dict(dict(state), strict=True)


def save_state(
    path: str | Path, kind: str, config: Mapping[str, Any], state: Mapping[str, Tensor]
) -> Path:
    """Write the project's own format: one safetensors file with kind and config in its metadata."""
    from safetensors.torch import save_file

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tensors = {key: value.detach().contiguous().cpu() for key, value in state.items()}
    metadata = {
        "format": FORMAT_NAME,
        "format_version": str(FORMAT_VERSION),
        "kind": kind,
        "config": json.dumps(dict(config), sort_keys=True),
    }
    save_file(tensors, str(target), metadata=metadata)
    return target


def is_own_format(path: str | Path) -> bool:
    """True when `path` is a safetensors file written by `save_state`."""
    candidate = Path(path)
    if not candidate.is_file() or candidate.suffix != ".safetensors":
        return False
    from safetensors import safe_open

    try:
        with safe_open(str(candidate), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except Exception:
        return False
    return metadata.get("format") == FORMAT_NAME


def read_state(path: str | Path) -> tuple[str, dict[str, Any], StateDict]:
    """Read a file written by `save_state`: `(kind, config, state_dict)`."""
    from safetensors import safe_open

    tensors: StateDict = {}
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            for key in handle.keys():  # noqa: SIM118 - safe_open has no __iter__
                tensors[key] = handle.get_tensor(key)
    except FileNotFoundError:
        raise
    except Exception as error:
        raise CheckpointError(f"{path}: not a readable safetensors file ({error})") from error
    if metadata.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{path}: safetensors file without '{FORMAT_NAME}' metadata")
    version = int(metadata.get("format_version", "0"))
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{path}: format version {version} is newer than {FORMAT_VERSION}")
    return metadata["kind"], json.loads(metadata["config"]), tensors


# --- model loaders -------------------------------------------------------------------------------

KINDS = ("encoder", "predictor", "probe")


def detect_layout(path: str | Path) -> str:
    """`own` (our safetensors file), `hf` (a `save_pretrained` directory) or `official` (a `.pt`)."""
    source = Path(path)
    if not source.exists():
        raise FileNotFoundError(f"checkpoint not found: {source}")
    if source.is_dir():
        if (source / "config.json").is_file():
            return "hf"
        raise CheckpointError(
            f"{source}: a directory without config.json is not a vjepa2 checkpoint"
        )
    if source.suffix == ".safetensors":
        if is_own_format(source):
            return "own"
        raise CheckpointError(
            f"{source}: safetensors file without '{FORMAT_NAME}' metadata; "
            "for a Hugging Face checkpoint pass its directory (with config.json)"
        )
    return "official"


def read_checkpoint(
    path: str | Path,
    kind: str = "encoder",
    *,
    num_heads: int | None = None,
    entry: str | None = None,
    index: int = 0,
) -> tuple[dict[str, Any], StateDict]:
    """Config dict and state dict (our parameter names) of one model `kind` in any layout.

    `num_heads` overrides the head count (official files do not record it); `entry`
    picks the official checkpoint entry (default `target_encoder`, then `encoder`);
    `index` picks one classifier of an official probe checkpoint.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    source = Path(path)
    layout = detect_layout(source)
    if layout == "own":
        found, config, state = read_state(source)
        if found != kind:
            raise CheckpointError(f"{source} holds a {found}, not a {kind}")
        return config, state
    if layout == "hf":
        return read_hf(source, kind, num_heads)
    return read_official(source, kind, num_heads, entry, index)


def _build(kind: str, config: Mapping[str, Any]) -> nn.Module:
    from modeling.encoder import EncoderConfig, VisionEncoder
    from modeling.predictor import Predictor, PredictorConfig
    from modeling.probe import AttentiveProbe, AttentiveProbeConfig

    try:
        if kind == "encoder":
            return VisionEncoder(EncoderConfig.from_dict(dict(config)))
        if kind == "predictor":
            return Predictor(PredictorConfig.from_dict(dict(config)))
        return AttentiveProbe(AttentiveProbeConfig.from_dict(dict(config)))
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"invalid {kind} config {dict(config)}: {error}") from error


def load_model(path: str | Path, kind: str = "encoder", **options: Any) -> nn.Module:
    """Build a `kind` model from any layout and load its weights strictly; eval mode."""
    config, state = read_checkpoint(path, kind, **options)
    model = _build(kind, config)
    load_strict(model, state, f"{kind} from {path}")
    return model.eval()


def load_encoder(path: str | Path, **options: Any) -> VisionEncoder:
    """A `VisionEncoder` from an official `.pt`, a Hugging Face directory or our own file."""
    return cast("VisionEncoder", load_model(path, "encoder", **options))


def load_predictor(path: str | Path, **options: Any) -> Predictor:
    """A pretraining `Predictor` from an official `.pt`, a Hugging Face directory or our own file."""
    return cast("Predictor", load_model(path, "predictor", **options))


def load_probe(path: str | Path, **options: Any) -> AttentiveProbe:
    """An `AttentiveProbe` from an official probe `.pt`, a HF classification directory or our file."""
    return cast("AttentiveProbe", load_model(path, "probe", **options))


def model_kind(model: nn.Module) -> str:
    """`encoder`, `predictor` or `probe` for our model classes."""
    from modeling.encoder import VisionEncoder
    from modeling.predictor import Predictor
    from modeling.probe import AttentiveProbe

    for kind, cls in (
        ("encoder", VisionEncoder),
        ("predictor", Predictor),
        ("probe", AttentiveProbe),
    ):
        if isinstance(model, cls):
            return kind
    raise TypeError(f"no checkpoint kind for {type(model).__name__}")


def save_model(model: nn.Module, path: str | Path) -> Path:
    """Write an encoder, predictor or probe in the project's own format."""
    config = getattr(model, "config").to_dict()  # noqa: B009 - every model class has a config
    return save_state(path, model_kind(model), config, model.state_dict())
