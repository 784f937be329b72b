"""Typed results of the VQA jobs: what `run_align` and `evaluate_vqa` return."""

from __future__ import annotations

import dataclasses

from tasks.training.summaries import JobSummary


@dataclasses.dataclass(frozen=True)
class AlignSummary(JobSummary):
    """`vjepa align`: the trained model folder (`model`), its losses and what trained."""

    model: str
    steps: int
    first_loss: float | None
    final_loss: float | None
    loss_curve: str | None
    projector: str
    lm_weights: str
    blind: bool
    train_examples: int
    train_clips: int
    visual_tokens: int
    seconds: float


@dataclasses.dataclass(frozen=True)
class VQAEvalSummary(JobSummary):
    """`vjepa eval-vqa`: normalised exact match on the held-out videos, with baselines."""

    model: str
    accuracy: float
    majority_accuracy: float
    per_type: dict[str, float]
    majority_per_type: dict[str, float]
    majority_answers: dict[str, str]
    questions_per_type: dict[str, int]
    num_questions: int
    heldout_phrasing_accuracy: float | None
    # type -> true answer -> predicted answer -> count, for types with a closed answer set
    confusion: dict[str, dict[str, dict[str, int]]]
    blind: bool
    seconds: float
    # distinct held-out clips behind each type's questions: the phrasings of one video are not
    # independent trials, so a significance margin counts clips (older summaries: empty)
    clips_per_type: dict[str, int] = dataclasses.field(default_factory=dict)
    # per type, accuracy on the phrasings training asked and on the held-out phrasing alone
    # (types without a held-out phrasing are absent from the second; older summaries: empty)
    seen_phrasing_per_type: dict[str, float] = dataclasses.field(default_factory=dict)
    heldout_phrasing_per_type: dict[str, float] = dataclasses.field(default_factory=dict)

    @classmethod
    def job_name(cls) -> str:
        return "eval-vqa"
