"""`vjepa align`: align a frozen encoder with a causal LM on a QA table (VQA), on Ray Train."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable

from flows.commands.common import UsageError, add_job_arguments, emit_json, scale_config

ORDER = 39


def _default(name: str) -> object:
    from tasks.vqa.align import AlignConfig

    return {f.name: f.default for f in dataclasses.fields(AlignConfig)}[name]


def _shown(value: object) -> str:
    """A default as the user would type it (a type list as `a,b`; empty: none)."""
    if isinstance(value, tuple):
        return ",".join(map(str, value)) or "none"
    return str(value)


def _type_list(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())


# AlignConfig fields given as `--field-name VALUE`: (field, parser, metavar, help).
_VALUED: tuple[tuple[str, Callable[[str], object], str | None, str], ...] = (
    ("pool", int, "K", "mlp: k x k pooling over each frame step's token grid"),
    (
        "temporal_kernel",
        int,
        "K",
        "mlp: the first layer sees K neighbouring frame steps (odd; 1 = a Linear layer)",
    ),
    (
        "motion_kernel",
        int,
        "K",
        "mlp: add one motion token per frame step (K-step convolution, max over the grid)",
    ),
    (
        "first_types",
        _type_list,
        "TYPE,TYPE",
        "curriculum: train on these question types only for the first --first-steps",
    ),
    (
        "first_steps",
        int,
        "N",
        "steps of the --first-types phase (rounded up to whole epochs of those questions)",
    ),
    ("steps", int, None, ""),
    ("batch_size", int, None, ""),
    ("learning_rate", float, None, ""),
    ("lm_learning_rate", float, None, ""),
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "align",
        help="train a visual projector (and optionally the LM) for video question answering",
        description=(
            "LLaVA-style alignment: the frozen encoder's tokens go through a projector into "
            "the LM's input embeddings before the question; next-token loss on the answers "
            "only. Writes the model folder to OUTPUT/final, loss.png and summary.json."
        ),
    )
    parser.add_argument("--encoder", required=True, help="encoder checkpoint or random:PRESET")
    parser.add_argument("--lm", required=True, help="Hugging Face causal-LM folder (or s3://)")
    parser.add_argument("--data", required=True, help="curated dataset (folder or s3:// prefix)")
    parser.add_argument("--qa", required=True, help="QA table (parquet, CSV or JSON lines)")
    parser.add_argument("--output", required=True, help="run folder or s3:// prefix")
    parser.add_argument("--projector", choices=("mlp", "attentive"), default=_default("projector"))
    parser.add_argument(
        "--pool-mode",
        choices=("avg", "max"),
        default=_default("pool_mode"),
        help="mlp: mean (the paper's) or maximum over each pooling window",
    )
    parser.add_argument("--train-lm", action="store_true", help="also train the whole LM")
    parser.add_argument("--lora", type=int, default=0, metavar="RANK", help="train a LoRA adapter")
    parser.add_argument("--blind", action="store_true", help="no visual tokens (the baseline)")
    for field, kind, metavar, text in _VALUED:
        default = _default(field)
        shown = _shown(default)
        parser.add_argument(
            f"--{field.replace('_', '-')}",
            type=kind,
            default=default,
            metavar=metavar,
            help=f"{text} (default {shown})" if text else f"default {shown}",
        )
    add_job_arguments(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from tasks.runtime import local_uri
    from tasks.training.launch import ExistingRunError, ScaleError
    from tasks.training.probe import RANDOM_PREFIX
    from tasks.vqa.align import AlignConfig

    encoder = args.encoder if args.encoder.startswith(RANDOM_PREFIX) else local_uri(args.encoder)
    try:
        config = AlignConfig(
            encoder=encoder,
            lm=local_uri(args.lm),
            data=local_uri(args.data),
            qa=local_uri(args.qa),
            output=local_uri(args.output),
            projector=args.projector,
            pool_mode=args.pool_mode,
            train_lm=args.train_lm,
            lora_rank=args.lora,
            blind=args.blind,
            seed=args.seed,
            **{field: getattr(args, field) for field, *_ in _VALUED},
            resume=args.resume,
        )
    except ValueError as error:
        raise UsageError(str(error)) from error
    from flows.vqa import align_flow

    try:
        summary = align_flow(config, scale_config(args))
    except (ExistingRunError, FileNotFoundError, ScaleError, ValueError) as error:
        raise UsageError(str(error)) from error
    print(
        f"aligned {summary.steps} steps ({summary.train_examples} questions on "
        f"{summary.train_clips} clips): loss {summary.first_loss:.3f} -> "
        f"{summary.final_loss:.3f}; model at {summary.model}"
    )
    if args.json:
        emit_json(summary.as_dict())
    return 0
