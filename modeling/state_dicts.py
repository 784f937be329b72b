"""State-dict plumbing shared by every checkpoint reader: key renames, prefixes, fused qkv.

Below `modeling.checkpoints` (own format, loaders) and `modeling.checkpoint_layouts` (official
and Hugging Face layouts), so those two import it and not each other's helpers.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

WRAPPER_PREFIXES = ("module.", "backbone.")

StateDict = dict[str, Tensor]


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not match the model it is loaded into."""


def read_torch_file(path: str | Path) -> Any:
    """Load a `.pt`/`.pth` file with `weights_only=True` (tensors, dicts, lists, numbers only)."""
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as error:  # torch raises UnpicklingError, RuntimeError, EOFError ...
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint with weights_only=True ({error})"
        ) from error


def strip_prefixes(
    state: Mapping[str, Tensor], prefixes: Sequence[str] = WRAPPER_PREFIXES
) -> StateDict:
    """Remove any run of `prefixes` from the start of every key (`module.backbone.x` -> `x`)."""
    out: StateDict = {}
    for key, value in state.items():
        stripped = key
        changed = True
        while changed:
            changed = False
            for prefix in prefixes:
                if stripped.startswith(prefix):
                    stripped = stripped[len(prefix) :]
                    changed = True
        if stripped in out:
            raise CheckpointError(f"two keys become {stripped!r} after stripping {list(prefixes)}")
        out[stripped] = value
    return out


def rename_keys(state: Mapping[str, Tensor], rules: Sequence[tuple[str, str]]) -> StateDict:
    """Apply `(pattern, replacement)` regex rules, in order, to every key (`re.sub` semantics)."""
    compiled = [(re.compile(pattern), replacement) for pattern, replacement in rules]
    out: StateDict = {}
    for key, value in state.items():
        new_key = key
        for pattern, replacement in compiled:
            new_key = pattern.sub(replacement, new_key)
        if new_key in out:
            raise CheckpointError(f"two keys are renamed to {new_key!r}")
        out[new_key] = value
    return out


def fuse_qkv(state: Mapping[str, Tensor], parts: Sequence[str], fused: str) -> StateDict:
    """Concatenate `<prefix><part><suffix>` tensors (e.g. `query.`, `key.`, `value.`) along
    dim 0 into `<prefix><fused><suffix>`, for every prefix/suffix where all parts exist."""
    out: StateDict = dict(state)
    first = parts[0]
    for key in list(state):
        if first not in key:
            continue
        prefix, _, suffix = key.rpartition(first)
        names = [f"{prefix}{part}{suffix}" for part in parts]
        if not all(name in state for name in names):
            continue
        out[f"{prefix}{fused}{suffix}"] = torch.cat([state[name] for name in names], dim=0)
        for name in names:
            del out[name]
    return out


def select_prefix(state: Mapping[str, Tensor], prefix: str) -> StateDict:
    """Keys that start with `prefix`, with the prefix removed."""
    return {key[len(prefix) :]: value for key, value in state.items() if key.startswith(prefix)}
