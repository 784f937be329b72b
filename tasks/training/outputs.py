"""What a finished job leaves beside its checkpoints: final models, a loss curve, a summary."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from torch import Tensor, nn

import storage
from modeling.checkpoints import model_kind, save_state
from modeling.checkpoints import save_model as write_model
from storage import upload_file
from tasks.training.summaries import JobSummary

S = TypeVar("S", bound=JobSummary)

SUMMARY = "summary.json"


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
    """A local copy of the file or folder `uri` inside `folder` (`storage.download`)."""
    return storage.download(uri, folder)


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


def write_summary(output_uri: str, summary: JobSummary) -> str:
    """`summary.json` under `output_uri`: the job's typed summary as JSON."""
    text = json.dumps(summary.as_dict(), indent=2, sort_keys=True, default=str)
    return storage.write_bytes(storage.join(output_uri, SUMMARY), text.encode())


def read_summary(output_uri: str, kind: type[S]) -> S:
    """The `kind` summary a finished job wrote under `output_uri`."""
    return kind.from_dict(dict(json.loads(storage.read_bytes(storage.join(output_uri, SUMMARY)))))
