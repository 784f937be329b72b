"""Typed results of the training jobs: what `run_pretrain`, `run_probe` and `run_posttrain` return.

Each job writes its summary as `summary.json` beside its checkpoints and returns it as a frozen
dataclass; flows, the report and the CLI read attributes, and `--json` prints `as_dict()`. Every
file a job leaves has its own named field (`encoder_checkpoint`, `probe_checkpoint`,
`world_model_dir`), so no key means two things.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

T = TypeVar("T", bound="JobSummary")
P = TypeVar("P", bound="PosttrainSummary")


@dataclasses.dataclass(frozen=True)
class JobSummary:
    """Base of every job summary: serialisation to and from the JSON of `summary.json`."""

    def as_dict(self) -> dict[str, Any]:
        """The summary as JSON-ready values (what `--json` prints and `summary.json` holds)."""
        return {"job": self.job_name(), **dataclasses.asdict(self)}

    @classmethod
    def job_name(cls) -> str:
        return cls.__name__.removesuffix("Summary").lower()

    @classmethod
    def from_dict(cls: type[T], values: dict[str, Any]) -> T:
        """The summary from `summary.json` values; keys of other versions are ignored."""
        names = {field.name for field in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in names})


@dataclasses.dataclass(frozen=True)
class PretrainSummary(JobSummary):
    """`vjepa pretrain`: the loss from first to last steps and the exported models."""

    steps: int
    first_loss: float | None
    final_loss: float
    encoder_checkpoint: str
    predictor_checkpoint: str
    loss_curve: str | None
    preset: str


@dataclasses.dataclass(frozen=True)
class ProbeSummary(JobSummary):
    """`vjepa probe`: held-out top-1 of the best learning rate (mean and spread over its heads)."""

    encoder: str
    steps: int
    final_loss: float | None
    accuracy: float
    accuracy_std: float
    best_lr: float
    accuracies: dict[str, float]
    accuracy_stds: dict[str, float]
    head_accuracies: dict[str, list[float]]
    heads_per_lr: int
    exported_head: int
    probe_checkpoint: str
    loss_curve: str | None
    train_clips: int
    heldout_clips: int
    label_column: str | None = None
    classes: list[str] | None = None


@dataclasses.dataclass(frozen=True)
class AdaptSummary:
    """What adaptation did: its inputs, the curated clips and the adapted encoder."""

    steps: int
    input_encoder: str
    init: str  # what pretraining continued from (a run folder)
    curated: str
    curated_version: str
    clips: int
    first_loss: float | None
    final_loss: float
    encoder: str  # the adapted encoder post-training used
    preset: str

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class PosttrainSummary(JobSummary):
    """`vjepa posttrain`: losses, held-out rollout error against copying, the world model."""

    steps: int
    first_loss: float | None
    final_loss: float
    final_teacher_forcing: float
    final_rollout: float
    heldout_rollout_error: float
    heldout_copy_error: float
    heldout_rollout_error_per_step: list[float]
    heldout_copy_error_per_step: list[float]
    heldout_windows: int
    heldout_ratio: float
    beats_copy_baseline: bool
    action_scale_r2: float | None
    train_episodes: list[int]
    heldout_episodes: list[int]
    world_model_dir: str
    loss_curve: str | None
    preset: str
    encoder: str
    trajectories: str
    spec: dict[str, Any]
    # Held-out rollout error with another window's actions minus with the true ones, over the
    # copy error (`tasks.planning.rollouts`); None in summaries written before it was measured.
    shuffled_action_gain: float | None = None
    # The stopping rule's evaluations (step, held-out gain) and whether it ended the run before
    # the step cap (`tasks.training.stopping`); empty when the rule is off.
    gain_curve: list[tuple[int, float]] = dataclasses.field(default_factory=list)
    stopped_early: bool = False
    # Domain-adaptive pretraining before post-training (`flows.adapt`); None when the encoder
    # was not adapted.
    adaptation: AdaptSummary | None = None

    @classmethod
    def from_dict(cls: type[P], values: dict[str, Any]) -> P:
        summary = super().from_dict(values)
        adaptation = values.get("adaptation")
        if isinstance(adaptation, dict):
            summary = dataclasses.replace(summary, adaptation=AdaptSummary(**adaptation))
        return summary

    @property
    def blind_to_actions(self) -> bool:
        """True when the predictor's error hardly depends on its actions (gain below 0.05)."""
        from tasks.planning.rollouts import MIN_ACTION_GAIN

        gain = self.shuffled_action_gain
        return gain is not None and gain < MIN_ACTION_GAIN

    @property
    def action_scale(self) -> Any:
        """The action scale fitted on the training episodes (recorded in the model spec)."""
        return self.spec.get("action_scale")
