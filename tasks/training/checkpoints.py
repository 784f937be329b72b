"""Resumable training state under an output URI (local folder or `s3://`).

Layout under `OUTPUT/`:

- `checkpoints/step_00000100/state.pt` and `meta.json`, then `COMMITTED`
  written last: a checkpoint without the marker is ignored (a crash mid-save).
- `metrics/step_00000100.jsonl`: the metric rows of the steps since the
  previous checkpoint, written with the checkpoint. Rows of steps after the
  latest checkpoint are never on disk, so a restarted run that repeats those
  steps cannot duplicate them, and nothing before it is lost.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterable
from typing import Any

import torch

from tasks import storage

STEP_DIR = re.compile(r"step_(\d{8})$")
STEP_FILE = re.compile(r"step_(\d{8})\.jsonl$")
MARKER = "COMMITTED"


class CheckpointStore:
    """Save, find and load training checkpoints and their metric segments."""

    def __init__(self, output_uri: str, keep: int = 3) -> None:
        self.output_uri = output_uri
        self.keep = keep
        self.fs, self.root = storage.filesystem(output_uri)

    def _path(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *parts])

    def checkpoint_uri(self, step: int) -> str:
        return storage.join(self.output_uri, "checkpoints", f"step_{step:08d}")

    def committed_steps(self) -> list[int]:
        self.fs.invalidate_cache()
        folder = self._path("checkpoints")
        if not self.fs.exists(folder):
            return []
        steps = []
        for entry in self.fs.ls(folder, detail=False):
            match = STEP_DIR.search(str(entry).rstrip("/"))
            if match and self.fs.exists(f"{str(entry).rstrip('/')}/{MARKER}"):
                steps.append(int(match.group(1)))
        return sorted(steps)

    def latest_step(self) -> int | None:
        steps = self.committed_steps()
        return steps[-1] if steps else None

    def save(
        self,
        step: int,
        state: dict[str, Any],
        metrics: Iterable[dict[str, Any]],
        meta: dict[str, Any] | None = None,
    ) -> str:
        """Write state + metric rows for `step`; the marker goes last. Returns the checkpoint URI."""
        folder = self._path("checkpoints", f"step_{step:08d}")
        self.fs.makedirs(folder, exist_ok=True)
        self.fs.makedirs(self._path("metrics"), exist_ok=True)
        buffer = io.BytesIO()
        torch.save(state, buffer)
        self.fs.pipe_file(f"{folder}/state.pt", buffer.getvalue())
        self.fs.pipe_file(
            f"{folder}/meta.json", json.dumps({"step": step, **(meta or {})}).encode()
        )
        lines = "".join(json.dumps(row, sort_keys=True) + "\n" for row in metrics)
        self.fs.pipe_file(self._path("metrics", f"step_{step:08d}.jsonl"), lines.encode())
        self.fs.pipe_file(f"{folder}/{MARKER}", b"")
        self._prune()
        return self.checkpoint_uri(step)

    def load(self, step: int | None = None) -> dict[str, Any]:
        """The state saved at `step` (default: the latest committed one)."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no committed checkpoint under {self.output_uri}/checkpoints")
        data = self.fs.cat_file(self._path("checkpoints", f"step_{step:08d}", "state.pt"))
        return dict(torch.load(io.BytesIO(data), map_location="cpu", weights_only=True))

    def discard_after(self, step: int) -> None:
        """Remove metric segments and uncommitted checkpoints newer than `step` (left by a crash)."""
        for folder, pattern in (("metrics", STEP_FILE), ("checkpoints", STEP_DIR)):
            path = self._path(folder)
            if not self.fs.exists(path):
                continue
            for entry in self.fs.ls(path, detail=False):
                match = pattern.search(str(entry).rstrip("/"))
                if match and int(match.group(1)) > step:
                    self.fs.rm(str(entry), recursive=True)

    def metrics(self) -> list[dict[str, Any]]:
        """All metric rows up to the latest committed checkpoint, in step order."""
        latest = self.latest_step()
        folder = self._path("metrics")
        if latest is None or not self.fs.exists(folder):
            return []
        rows: list[dict[str, Any]] = []
        for entry in sorted(self.fs.ls(folder, detail=False)):
            match = STEP_FILE.search(str(entry))
            if match and int(match.group(1)) <= latest:
                text = self.fs.cat_file(str(entry)).decode()
                rows.extend(json.loads(line) for line in text.splitlines() if line)
        return sorted(rows, key=lambda row: int(row["step"]))

    def _prune(self) -> None:
        steps = self.committed_steps()
        for step in steps[: max(0, len(steps) - self.keep)]:
            self.fs.rm(self._path("checkpoints", f"step_{step:08d}"), recursive=True)
