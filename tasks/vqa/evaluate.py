"""`vjepa eval-vqa`: normalised exact-match accuracy of a VQA model on the held-out videos.

Scores every `test` row of the QA table (one covering clip per row: the middle one
when a video has several) overall and per question type, beside the majority-answer
baseline: per type, the most frequent normalised answer of the *training* rows. Types
whose answers form a small closed set also get a confusion table (true -> predicted).
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from collections.abc import Sequence

import torch

from modeling.vlm_prompts import build_prompt, normalise_answer
from tasks import progress
from tasks.tables import SourceMatcher
from tasks.vqa.clip_features import ClipFeatures, KeepSources, encode_clips
from tasks.vqa.lm import VQAModel, load_vqa_model
from tasks.vqa.qa import TEST, TRAIN, QAItem, read_qa
from tasks.vqa.summaries import VQAEvalSummary

MAX_CLOSED_ANSWERS = 12
OTHER = "(other)"


@dataclasses.dataclass(frozen=True)
class EvalVQAConfig:
    """Which model, clips and questions; generation settings."""

    model: str
    data: str
    qa: str
    batch_size: int = 32
    max_new_tokens: int = 8
    encoder: str | None = None  # override the encoder the model folder names
    lm: str | None = None  # override the LM folder the model folder names

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.max_new_tokens < 1:
            raise ValueError("batch_size and max_new_tokens must be >= 1")


def majority_answers(items: Sequence[QAItem]) -> dict[str, str]:
    """Per type, the most frequent normalised training answer (ties: alphabetical)."""
    counts: dict[str, Counter[str]] = {}
    for item in items:
        if item.split == TRAIN:
            counts.setdefault(item.type, Counter())[normalise_answer(item.answer)] += 1
    return {kind: min(c, key=lambda a: (-c[a], a)) for kind, c in counts.items()}


def pick_clip(clips: ClipFeatures, matcher: SourceMatcher, item: QAItem) -> int | None:
    """The index of the middle clip of `item`'s source that covers its span."""
    hits = [
        index
        for index, (source, start, end) in enumerate(clips.spans)
        if matcher.match(source) == item.source and item.covers(start, end)
    ]
    return sorted(hits, key=lambda i: clips.spans[i][1])[len(hits) // 2] if hits else None


def answer_all(
    vqa: VQAModel, clips: ClipFeatures, pairs: list[tuple[QAItem, int]], config: EvalVQAConfig
) -> list[str]:
    """Generated answers (decoded, not yet normalised) of every `(item, clip)` pair."""
    model, tokenizer = vqa.model, vqa.tokenizer
    answers: list[str] = []
    progress.report("eval-vqa", 0, len(pairs), "question")
    for start in range(0, len(pairs), config.batch_size):
        chunk = pairs[start : start + config.batch_size]
        prompts = [build_prompt(tokenizer, item.question) for item, _ in chunk]
        visual = None
        if not model.blind:
            features = clips.features[[clip for _, clip in chunk]]  # (B, N, De)
            visual = model.visual_tokens(features.to(model.projector_dtype), clips.grid)
        ids = model.generate(
            visual,
            prompts,
            max_new_tokens=config.max_new_tokens,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        answers.extend(tokenizer.decode(row, skip_special_tokens=True) for row in ids)
        progress.report("eval-vqa", len(answers), len(pairs), "question")
    return answers


def confusion_tables(
    items: Sequence[QAItem], truths: list[str], guesses: list[str], all_items: Sequence[QAItem]
) -> dict[str, dict[str, dict[str, int]]]:
    """Per type with at most `MAX_CLOSED_ANSWERS` answers: true -> predicted -> count."""
    answer_sets: dict[str, set[str]] = {}
    for item in all_items:
        answer_sets.setdefault(item.type, set()).add(normalise_answer(item.answer))
    tables: dict[str, dict[str, dict[str, int]]] = {}
    for item, truth, guess in zip(items, truths, guesses, strict=True):
        closed = answer_sets[item.type]
        if len(closed) > MAX_CLOSED_ANSWERS:
            continue
        shown = guess if guess in closed else OTHER
        row = tables.setdefault(item.type, {}).setdefault(truth, {})
        row[shown] = row.get(shown, 0) + 1
    return tables


def _mean(flags: list[bool]) -> float:
    return float(sum(flags) / len(flags)) if flags else 0.0


def accuracy_by_phrasing(
    asked: Sequence[QAItem], right: Sequence[bool]
) -> tuple[dict[str, float], dict[str, float]]:
    """Per type, accuracy on the seen phrasings and on the held-out phrasing (types that
    have one): a model that reads the video but not a new wording scores high on the first
    and low on the second."""
    seen: dict[str, list[bool]] = {}
    held: dict[str, list[bool]] = {}
    for item, ok in zip(asked, right, strict=True):
        (held if item.heldout_phrasing else seen).setdefault(item.type, []).append(ok)
    return (
        {kind: _mean(flags) for kind, flags in sorted(seen.items())},
        {kind: _mean(flags) for kind, flags in sorted(held.items())},
    )


def evaluate_vqa(config: EvalVQAConfig) -> VQAEvalSummary:
    """Load the model, encode the held-out clips once, answer and score every test row."""
    from tasks.clips import read_clips

    started = time.monotonic()
    items = read_qa(config.qa)
    tests = [item for item in items if item.split == TEST]
    if not tests:
        raise ValueError(f"{config.qa}: no held-out rows (split test) to evaluate on")
    majority = majority_answers(items)
    vqa = load_vqa_model(config.model, config.encoder, config.lm)
    clips_data = read_clips(config.data).map_batches(KeepSources({i.source for i in tests}))
    with torch.no_grad():
        clips = encode_clips(vqa.model.encoder, clips_data, torch.device("cpu"))
    matcher = SourceMatcher({item.source for item in tests})
    pairs = [
        (item, clip) for item in tests if (clip := pick_clip(clips, matcher, item)) is not None
    ]
    if not pairs:
        raise ValueError("no held-out question matches a clip of the curated dataset")
    asked = [item for item, _ in pairs]
    guesses = [normalise_answer(text) for text in answer_all(vqa, clips, pairs, config)]
    truths = [normalise_answer(item.answer) for item in asked]
    right = [g == t for g, t in zip(guesses, truths, strict=True)]
    majority_right = [majority.get(item.type) == t for item, t in zip(asked, truths, strict=True)]
    kinds = sorted({item.type for item in asked})
    by_type = {k: [i for i, item in enumerate(asked) if item.type == k] for k in kinds}
    held = [r for r, item in zip(right, asked, strict=True) if item.heldout_phrasing]
    seen_phrasing, heldout_phrasing = accuracy_by_phrasing(asked, right)
    return VQAEvalSummary(
        model=config.model,
        accuracy=_mean(right),
        majority_accuracy=_mean(majority_right),
        per_type={k: _mean([right[i] for i in rows]) for k, rows in by_type.items()},
        majority_per_type={
            k: _mean([majority_right[i] for i in rows]) for k, rows in by_type.items()
        },
        majority_answers=majority,
        questions_per_type={k: len(rows) for k, rows in by_type.items()},
        num_questions=len(asked),
        heldout_phrasing_accuracy=_mean(held) if held else None,
        confusion=confusion_tables(asked, truths, guesses, items),
        blind=vqa.model.blind,
        seconds=time.monotonic() - started,
        clips_per_type={k: len({pairs[i][1] for i in rows}) for k, rows in by_type.items()},
        seen_phrasing_per_type=seen_phrasing,
        heldout_phrasing_per_type=heldout_phrasing,
    )
