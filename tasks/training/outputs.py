"""What a finished job leaves beside its checkpoints: final models, a loss curve, a summary."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from modeling.checkpoints import model_kind, save_state
from modeling.checkpoints import save_model as write_model
from tasks import storage

SUMMARY = "summary.json"


def upload_file(local: str | Path, uri: str) -> str:
    """Copy a local file to `uri` (local path or `s3://`)."""
    fs, path = storage.filesystem(uri)
    parent = path.rsplit("/", 1)[0]
    if parent:
        fs.makedirs(parent, exist_ok=True)
    fs.put_file(str(local), path)
    return uri


def save_model(uri: str, module: nn.Module, state: Mapping[str, Tensor] | None = None) -> str:
    """Write an encoder, predictor or probe in the project's own format at `uri` (local or s3).

    `state` replaces `module.state_dict()`: the full weights of a sharded (FSDP) module, which
    `job.full_state` gathers.
    """
    with tempfile.TemporaryDirectory(prefix="vjepa-model-") as scratch:
        local = Path(scratch) / "model.safetensors"
        if state is None:
            write_model(module, local)
        else:
            config = getattr(module, "config").to_dict()  # noqa: B009 - every model class has one
            save_state(local, model_kind(module), config, state)
        return upload_file(local, uri)


def fetch_file(uri: str, folder: str | Path) -> Path:
    """A local copy of `uri` inside `folder` (the path itself when already local)."""
    if not storage.is_remote(uri):
        if not Path(uri).exists():
            raise FileNotFoundError(f"not found: {uri}")
        return Path(uri)
    fs, path = storage.filesystem(uri)
    if not fs.exists(path):
        raise FileNotFoundError(f"not found: {uri}")
    local = Path(folder) / path.rsplit("/", 1)[-1]
    if fs.isdir(path):
        fs.get(path, str(local), recursive=True)
    else:
        fs.get_file(path, str(local))
    return local


def plot_curves(
    rows: Sequence[Mapping[str, Any]], keys: Sequence[str], uri: str, title: str
) -> str | None:
    """A PNG of `keys` against `step` at `uri`; None when there is nothing to plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    present = [key for key in keys if any(key in row for row in rows)]
    if not rows or not present:
        return None
    figure, axis = plt.subplots(figsize=(6, 3.5), dpi=100)
    for key in present:
        points = [(row["step"], row[key]) for row in rows if key in row]
        axis.plot([p[0] for p in points], [p[1] for p in points], label=key)
    axis.set_xlabel("step")
    axis.set_title(title)
    axis.legend()
    figure.tight_layout()
    with tempfile.TemporaryDirectory(prefix="vjepa-plot-") as scratch:
        local = Path(scratch) / "curve.png"
        figure.savefig(local)
        plt.close(figure)
        return upload_file(local, uri)


def write_summary(output_uri: str, summary: Mapping[str, Any]) -> str:
    uri = storage.join(output_uri, SUMMARY)
    fs, path = storage.filesystem(uri)
    fs.pipe_file(path, json.dumps(dict(summary), indent=2, sort_keys=True, default=str).encode())
    return uri


def read_summary(output_uri: str) -> dict[str, Any]:
    fs, path = storage.filesystem(storage.join(output_uri, SUMMARY))
    fs.invalidate_cache()
    return dict(json.loads(fs.cat_file(path)))
