"""`vjepa probe`: attentive probes on a frozen encoder, scored on held-out clips."""

from __future__ import annotations

import argparse

from flows.commands.common import UsageError, add_job_arguments, emit_json, scale_config

ORDER = 35


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "probe",
        help="train attentive probes on a frozen encoder and report held-out top-1",
        description=(
            "Join a curated dataset with a labels table on `source`, split by source, train one "
            "few attentive probes per learning rate on the frozen encoder's tokens and report "
            "the best rate's mean held-out top-1 accuracy over its probes. Writes final/probe.safetensors, loss.png and "
            "summary.json to --output."
        ),
    )
    parser.add_argument(
        "--encoder",
        required=True,
        help="encoder checkpoint (own, official .pt or HF folder; local or s3://), "
        "or random:PRESET for a randomly initialised baseline",
    )
    parser.add_argument("--data", required=True, help="curated dataset (folder or s3:// prefix)")
    parser.add_argument(
        "--labels", required=True, help="parquet table with `source` and a label column"
    )
    parser.add_argument("--output", required=True, help="run folder or s3:// prefix")
    parser.add_argument(
        "--label-column",
        default="label",
        help="class column: integer indices or class names (default label)",
    )
    parser.add_argument(
        "--lr",
        type=float,
        nargs="+",
        default=[3e-4, 1e-3, 3e-3],
        help="learning rates swept in one job (default 3e-4 1e-3 3e-3)",
    )
    parser.add_argument("--steps", type=int, default=150, help="optimizer steps (default 150)")
    parser.add_argument(
        "--heads",
        type=int,
        default=3,
        help="differently seeded probes per learning rate, averaged (default 3)",
    )
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--heldout", type=float, default=0.25, help="held-out share per class")
    add_job_arguments(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from tasks.runtime import local_uri
    from tasks.training.launch import ExistingRunError
    from tasks.training.probe import RANDOM_PREFIX, ProbeConfig

    encoder = args.encoder if args.encoder.startswith(RANDOM_PREFIX) else local_uri(args.encoder)
    try:
        config = ProbeConfig(
            encoder=encoder,
            data=local_uri(args.data),
            labels=local_uri(args.labels),
            output=local_uri(args.output),
            label_column=args.label_column,
            learning_rates=tuple(args.lr),
            steps=args.steps,
            heads_per_lr=args.heads,
            batch_size=args.batch_size,
            heldout_fraction=args.heldout,
            seed=args.seed,
            resume=args.resume,
        )
    except ValueError as error:
        raise UsageError(str(error)) from error
    from flows.probe import probe_flow

    try:
        summary = probe_flow(config, scale_config(args))
    except (ExistingRunError, FileNotFoundError, ValueError) as error:
        raise UsageError(str(error)) from error
    print(
        f"probe on {config.encoder}: held-out top-1 {summary.accuracy:.3f} "
        f"+- {summary.accuracy_std:.3f} (mean of {summary.heads_per_lr} probes at best lr "
        f"{summary.best_lr}, {summary.heldout_clips} clips)"
    )
    if args.json:
        emit_json(summary.as_dict())
    return 0
