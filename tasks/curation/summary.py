"""The typed result of a curation run (`vjepa curate`, `curate_flow`), read from its manifest.

`manifest.json` stays the on-disk contract (`tasks.curation.dataset`); this is the one place
that reads its keys, so flows, the report and `--json` read attributes.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from storage import join
from tasks.curation.dataset import MANIFEST, REJECTED
from tasks.training.summaries import JobSummary


@dataclasses.dataclass(frozen=True)
class CurateSummary(JobSummary):
    """A curated dataset: where it is, its version, counts, clip shape and shard files."""

    output: str
    manifest: str
    version: str
    num_sources: int
    num_clips: int
    num_rejected: int
    num_shards: int
    clip_shape: list[int]  # (T, H, W, C)
    fps: float
    counts: dict[str, int]
    shards: list[str]  # URIs of the shard files, in manifest order
    rejected: str

    @classmethod
    def from_manifest(cls, output: str, manifest: dict[str, Any]) -> CurateSummary:
        """The summary of the dataset at `output` whose `manifest.json` holds `manifest`."""
        counts = manifest["counts"]
        return cls(
            output=output,
            manifest=join(output, MANIFEST),
            version=manifest["version"],
            num_sources=counts["num_sources"],
            num_clips=counts["num_clips"],
            num_rejected=counts["num_rejected"],
            num_shards=len(manifest["shards"]),
            clip_shape=list(manifest["clip"]["shape"]),
            fps=manifest["clip"]["fps"],
            counts=dict(counts),
            shards=[join(output, *shard["path"].split("/")) for shard in manifest["shards"]],
            rejected=join(output, REJECTED),
        )

    @property
    def files(self) -> list[str]:
        """Every file a reader of the dataset opens: the manifest, shards and rejected table."""
        return [self.manifest, self.rejected, *self.shards]
