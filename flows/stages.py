"""Stage reuse for the pipeline (`vjepa demo`): a finished stage is not redone.

A stage's key is the SHA-256 of what its result depends on: its configuration and the digests
of the upstream stages' outputs (the curated dataset's files, the encoder checkpoint, the world
model folder). When a stage finishes, `W/stages/<stage>.json` is written atomically with the
key, the typed result (`as_dict()`) and the SHA-256 of every file the result names. On the next
run a stage whose manifest has the same key and whose files are all present with the recorded
digests is reused: the result is read back and nothing runs. Otherwise the stage runs:

- from where it stopped, when an interrupted run with the same key left its start marker
  (`W/stages/<stage>.started`; training jobs resume from their checkpoints);
- from scratch (its outputs removed first) when the key changed, a file is missing or
  changed, or a rerun was forced (`--rerun STAGE`, `--no-reuse`).

A stage that fails or is killed leaves no manifest (the old one is removed before it starts),
so a later run never trusts a half-written result. Downstream keys hold the upstream digests,
so a stage whose output changed makes the stages after it run again, and nothing before it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

import storage
from tasks import progress

STAGES_DIR = "stages"
FORMAT = 1


class StageResult(Protocol):
    """What a stage returns: a typed summary with `as_dict()` (read back by its `from_dict`
    classmethod when it has one, else by its constructor)."""

    def as_dict(self) -> dict[str, Any]: ...


R = TypeVar("R", bound=StageResult)


def stage_key(stage: str, inputs: Mapping[str, Any]) -> str:
    """The SHA-256 of a stage's name and inputs (configuration values, upstream digests)."""
    payload = json.dumps({"stage": stage, "inputs": inputs}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


def config_inputs(config: Any, drop: tuple[str, ...] = ("resume",)) -> dict[str, Any]:
    """A config dataclass as key inputs, without fields that do not change the result."""
    return {k: v for k, v in dataclasses.asdict(config).items() if k not in drop}


@dataclasses.dataclass(frozen=True)
class StageManifest:
    """`W/stages/<stage>.json`: the key a finished stage ran with, its result and its files."""

    stage: str
    key: str
    result: dict[str, Any]
    files: dict[str, str]  # URI -> SHA-256
    seconds: float
    finished: str  # ISO 8601, UTC
    format: int = FORMAT

    @property
    def digest(self) -> str:
        """One digest of the stage's output: its files' SHA-256s, in URI order."""
        joined = "\n".join(self.files[uri] for uri in sorted(self.files))
        return hashlib.sha256(joined.encode()).hexdigest()

    def first_changed_file(self) -> str | None:
        """The first recorded file that is missing or whose bytes changed (None: all intact)."""
        for uri, digest in sorted(self.files.items()):
            try:
                if storage.sha256(uri) != digest:
                    return f"{uri} changed"
            except FileNotFoundError:
                return f"{uri} is missing"
        return None


@dataclasses.dataclass(frozen=True)
class StageOutcome:
    """How one stage went in this run: reused or run, why, and the time it took."""

    stage: str
    reused: bool
    reason: str
    seconds: float
    key: str


@dataclasses.dataclass(frozen=True)
class StageRun:
    stage: str
    key: str
    reason: str
    started: float


def _load(result_type: type[R], values: dict[str, Any]) -> R:
    """A result read back from its manifest (`as_dict()` values)."""
    from_dict = getattr(result_type, "from_dict", None)
    if from_dict is not None:
        return from_dict(values)  # type: ignore[no-any-return]
    return result_type(**values)


def _announce(line: str) -> None:
    """One line for the user on the console (above the progress bars, not into the log file)."""
    progress.message(line)


class Stages:
    """The stages of one pipeline run under `root` (the work folder): reuse, run, record.

    `force(stage)` says whether a stage must run even when its manifest would be reused;
    `prepare()` runs once, before the first stage that runs (starting Ray), so a run that
    reuses every stage starts nothing."""

    def __init__(
        self,
        root: str,
        force: Callable[[str], bool] = lambda stage: False,
        announce: Callable[[str], None] = _announce,
        prepare: Callable[[], Any] | None = None,
    ) -> None:
        self.root = root
        self.force = force
        self.announce = announce
        self.prepare = prepare
        self.outcomes: list[StageOutcome] = []
        self.digests: dict[str, str] = {}

    def _uri(self, stage: str, suffix: str) -> str:
        return storage.join(self.root, STAGES_DIR, stage + suffix)

    def manifest(self, stage: str) -> StageManifest | None:
        """The stage's manifest, or None when there is none or it cannot be read."""
        try:
            values = json.loads(storage.read_bytes(self._uri(stage, ".json")))
            manifest = StageManifest(**values)
        except (FileNotFoundError, ValueError, TypeError):
            return None
        return manifest if manifest.format == FORMAT else None

    def _reusable(self, stage: str, key: str) -> tuple[StageManifest | None, str]:
        """The manifest to reuse, or None and the reason the stage runs."""
        if self.force(stage):
            return None, "rerun forced"
        manifest = self.manifest(stage)
        if manifest is None:
            return None, "no finished run"
        if manifest.key != key:
            return None, "configuration or inputs changed"
        changed = manifest.first_changed_file()
        return (None, changed) if changed else (manifest, "")

    def begin(
        self,
        stage: str,
        inputs: Mapping[str, Any],
        outputs: Sequence[str],
        result_type: type[R],
        resumable: bool = True,
    ) -> R | StageRun:
        """The reused result, or (after preparing the outputs) a handle for `finish`.

        `resumable`: the stage can continue an interrupted run in its outputs (else they are
        always removed before it runs)."""
        started = time.monotonic()
        key = stage_key(stage, inputs)
        manifest, reason = self._reusable(stage, key)
        if manifest is not None:
            seconds = time.monotonic() - started
            self._record(StageOutcome(stage, True, "unchanged", seconds, key), manifest.digest)
            self.announce(
                f"[stage] {stage}: reused (finished {manifest.finished}, took "
                f"{manifest.seconds:.0f} s; {len(manifest.files)} files verified in {seconds:.1f} s)"
            )
            return _load(result_type, manifest.result)
        if self.prepare is not None:
            self.prepare()
            self.prepare = None
        storage.remove(self._uri(stage, ".json"))
        marker = self._uri(stage, ".started")
        same_key = storage.exists(marker) and storage.read_bytes(marker).decode() == key
        if resumable and same_key and not self.force(stage):
            reason = "resuming an interrupted run"
        else:
            for output in outputs:
                storage.remove(output)
            storage.write_atomic(marker, key.encode())
        self.announce(f"[stage] {stage}: running ({reason})")
        return StageRun(stage, key, reason, started)

    def finish(self, started: StageRun, result: R, files: Iterable[str]) -> R:
        """Record a finished stage: its manifest (atomically), then drop the start marker."""
        names = storage.files_below(files)
        seconds = time.monotonic() - started.started
        manifest = StageManifest(
            stage=started.stage,
            key=started.key,
            result=result.as_dict(),
            files={uri: storage.sha256(uri) for uri in names},
            seconds=round(seconds, 3),
            finished=datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        )
        text = json.dumps(dataclasses.asdict(manifest), indent=2, sort_keys=True, default=str)
        storage.write_atomic(self._uri(started.stage, ".json"), text.encode(), durable=True)
        storage.remove(self._uri(started.stage, ".started"))
        self._record(
            StageOutcome(started.stage, False, started.reason, seconds, started.key),
            manifest.digest,
        )
        self.announce(f"[stage] {started.stage}: done in {seconds:.0f} s")
        return result

    def run(
        self,
        stage: str,
        inputs: Mapping[str, Any],
        outputs: Sequence[str],
        result_type: type[R],
        compute: Callable[[], R],
        files: Callable[[R], Iterable[str]],
        resumable: bool = True,
    ) -> R:
        """Reuse the stage or run `compute` and record it; `files(result)` names its files."""
        begun = self.begin(stage, inputs, outputs, result_type, resumable)
        if not isinstance(begun, StageRun):
            return begun
        result = compute()
        return self.finish(begun, result, files(result))

    def digest(self, stage: str) -> str:
        """The output digest of `stage`, reused or run earlier in this run."""
        if stage not in self.digests:
            raise KeyError(f"stage {stage!r} has not run or been reused yet in this pipeline")
        return self.digests[stage]

    def _record(self, outcome: StageOutcome, digest: str) -> None:
        self.outcomes.append(outcome)
        self.digests[outcome.stage] = digest

    @property
    def reused(self) -> list[str]:
        return [outcome.stage for outcome in self.outcomes if outcome.reused]
