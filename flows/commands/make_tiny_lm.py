"""`vjepa make-tiny-lm`: build a small Llama-architecture LM from a QA corpus (no download)."""

from __future__ import annotations

import argparse
import dataclasses

from flows.commands.common import UsageError, emit_json

ORDER = 38


def _default(name: str) -> object:
    from tasks.vqa.tiny_lm import TinyLMConfig

    return {f.name: f.default for f in dataclasses.fields(TinyLMConfig)}[name]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "make-tiny-lm",
        help="train a tiny Llama LM + byte-level BPE tokenizer on a QA table, save_pretrained",
        description=(
            "Train a byte-level BPE tokenizer on the training questions and answers of a QA "
            "table, pretrain a small LlamaConfig model on them (causal-LM loss) and save both "
            "with save_pretrained to --output: a folder AutoModelForCausalLM loads."
        ),
    )
    parser.add_argument("--corpus", required=True, help="QA table (parquet, CSV, JSON lines)")
    parser.add_argument("--output", required=True, help="folder or s3:// prefix for the LM")
    for flag, kind, text in (
        ("vocab_size", int, "tokenizer vocabulary"),
        ("width", int, "hidden size"),
        ("depth", int, "decoder layers"),
        ("steps", int, "pretraining steps"),
        ("batch_size", int, "lines per step"),
        ("learning_rate", float, "AdamW learning rate"),
    ):
        default = _default(flag)
        parser.add_argument(
            f"--{flag.replace('_', '-')}", type=kind, default=default, help=f"{text} ({default})"
        )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print a JSON summary as the last line")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from tasks.runtime import local_uri
    from tasks.vqa.tiny_lm import TinyLMConfig

    try:
        config = TinyLMConfig(
            corpus=local_uri(args.corpus),
            output=local_uri(args.output),
            vocab_size=args.vocab_size,
            width=args.width,
            depth=args.depth,
            steps=args.steps,
            batch_size=args.batch_size,
            learning_rate=args.learning_rate,
            seed=args.seed,
        )
    except ValueError as error:
        raise UsageError(str(error)) from error
    from flows.vqa import make_tiny_lm_flow

    try:
        summary = make_tiny_lm_flow(config)
    except (FileNotFoundError, ValueError) as error:
        raise UsageError(str(error)) from error
    print(
        f"tiny LM of {summary.num_parameters} parameters (vocab {summary.vocab_size}) at "
        f"{summary.output}: loss {summary.first_loss:.3f} -> {summary.final_loss:.3f}"
    )
    if args.json:
        emit_json(summary.as_dict())
    return 0
