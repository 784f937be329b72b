"""`vjepa eval-vqa`: exact-match accuracy of an aligned VQA model on held-out videos."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from flows.commands.common import UsageError, emit_json

if TYPE_CHECKING:
    from tasks.vqa.summaries import VQAEvalSummary

ORDER = 40


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval-vqa",
        help="score a VQA model on the held-out videos against the majority answer",
        description=(
            "Answer every held-out question of a QA table (split test) on its clip and report "
            "normalised exact-match accuracy overall and per question type, the majority-answer "
            "baseline of the training answers, and confusion tables for closed answer sets."
        ),
    )
    parser.add_argument("--model", required=True, help="model folder written by vjepa align")
    parser.add_argument("--data", required=True, help="curated dataset (folder or s3:// prefix)")
    parser.add_argument("--qa", required=True, help="QA table (parquet, CSV or JSON lines)")
    parser.add_argument("--encoder", default=None, help="override the encoder the model names")
    parser.add_argument("--lm", default=None, help="override the LM folder the model names")
    parser.add_argument("--max-new-tokens", type=int, default=8)
    parser.add_argument("--json", action="store_true", help="print a JSON summary as the last line")
    parser.set_defaults(handler=run)


def type_line(summary: VQAEvalSummary, kind: str) -> str:
    """One type's console line: accuracy, majority answer, and the split by phrasing."""
    phrasings = []  # a user's table may ask a type in its held-out phrasing only
    if kind in summary.seen_phrasing_per_type and kind in summary.heldout_phrasing_per_type:
        phrasings.append(f"seen phrasings {summary.seen_phrasing_per_type[kind]:.3f}")
    if kind in summary.heldout_phrasing_per_type:
        phrasings.append(f"held-out phrasing {summary.heldout_phrasing_per_type[kind]:.3f}")
    split = f"; {', '.join(phrasings)}" if phrasings else ""
    accuracy, majority = summary.per_type[kind], summary.majority_per_type[kind]
    return f"{kind:>10}: {accuracy:.3f} (majority {majority:.3f}{split})"


def run(args: argparse.Namespace) -> int:
    from tasks.runtime import local_uri
    from tasks.vqa.evaluate import EvalVQAConfig

    try:
        config = EvalVQAConfig(
            model=local_uri(args.model),
            data=local_uri(args.data),
            qa=local_uri(args.qa),
            encoder=args.encoder,
            lm=local_uri(args.lm) if args.lm else None,
            max_new_tokens=args.max_new_tokens,
        )
    except ValueError as error:
        raise UsageError(str(error)) from error
    from flows.vqa import eval_vqa_flow

    try:
        summary = eval_vqa_flow(config)
    except (FileNotFoundError, ValueError) as error:
        raise UsageError(str(error)) from error
    for kind in sorted(summary.per_type):
        print(type_line(summary, kind))
    print(
        f"eval-vqa: {summary.accuracy:.3f} on {summary.num_questions} held-out questions "
        f"(majority answer {summary.majority_accuracy:.3f})"
    )
    if args.json:
        emit_json(summary.as_dict())
    return 0
