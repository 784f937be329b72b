"""`vjepa pretrain`: masked latent-prediction pretraining of a video encoder on Ray Train."""

from __future__ import annotations

import argparse
from typing import Any

from flows.commands.common import UsageError, add_job_arguments, emit_json, scale_config

ORDER = 30


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "pretrain",
        help="pretrain a V-JEPA encoder on a curated dataset (Ray Train)",
        description=(
            "Masked latent prediction with an EMA target encoder on the clips of a curated "
            "dataset. Checkpoints, metrics (JSON lines), loss.png, summary.json and "
            "final/encoder.safetensors go to --output."
        ),
    )
    parser.add_argument("--data", required=True, help="curated dataset (folder or s3:// prefix)")
    parser.add_argument("--output", required=True, help="run folder or s3:// prefix")
    parser.add_argument(
        "--preset",
        default=None,
        help="encoder preset: tiny (default), small, vitl, vith, vitg; with --init: the checkpoint's",
    )
    parser.add_argument(
        "--init",
        default=None,
        metavar="CKPT",
        help="start from an official pretraining .pt, a Hugging Face vjepa2 folder or a run folder",
    )
    parser.add_argument("--steps", type=int, default=200, help="optimizer steps (default 200)")
    parser.add_argument("--batch-size", type=int, default=8, help="clips per worker and step")
    parser.add_argument("--lr", type=float, default=5.25e-4, help="peak learning rate")
    parser.add_argument(
        "--warmup-fraction",
        type=float,
        default=0.1,
        help="share of the steps spent warming up (default 0.1; fine-tuning: 0.02)",
    )
    parser.add_argument(
        "--ema", type=float, default=0.99925, help="EMA momentum of the target encoder"
    )
    parser.add_argument(
        "--ema-final",
        type=float,
        default=1.0,
        help="EMA momentum at the last step; it rises linearly from --ema (default 1.0)",
    )
    parser.add_argument(
        "--grad-clip", type=float, default=1.0, help="max gradient norm, 0 for none (default 1.0)"
    )
    parser.add_argument(
        "--crop-scale",
        type=float,
        nargs=2,
        default=(0.3, 1.0),
        metavar=("MIN", "MAX"),
        help="area range of the random resized crop (default 0.3 1.0)",
    )
    parser.add_argument(
        "--shuffle-buffer",
        type=int,
        default=256,
        help="clips each worker holds for shuffling (default 256; lower it for large clips)",
    )
    parser.add_argument(
        "--checkpoint-every", type=int, default=50, help="steps between checkpoints"
    )
    add_job_arguments(parser)
    parser.set_defaults(handler=run)


def _preset_and_init(args: argparse.Namespace) -> dict[str, Any]:
    """`preset` (and `init`): from the --init checkpoint when given, which --preset must match."""
    if args.init is None:
        return {} if args.preset is None else {"preset": args.preset}
    from modeling.checkpoints import CheckpointError
    from tasks.runtime import local_uri
    from tasks.training.pretrain_init import resolve_preset

    init = local_uri(args.init)
    try:
        return {"preset": resolve_preset(init, args.preset), "init": init}
    except (CheckpointError, FileNotFoundError) as error:
        raise UsageError(f"--init {args.init}: {error}") from error


def run(args: argparse.Namespace) -> int:
    from tasks.runtime import local_uri
    from tasks.training.launch import ExistingRunError, ScaleError
    from tasks.training.pretrain import PretrainConfig

    try:
        config = PretrainConfig(
            data=local_uri(args.data),
            output=local_uri(args.output),
            **_preset_and_init(args),
            steps=args.steps,
            batch_size=args.batch_size,
            peak_lr=args.lr,
            warmup_fraction=args.warmup_fraction,
            ema_momentum=args.ema,
            ema_final=args.ema_final,
            grad_clip=args.grad_clip or None,
            crop_scale=tuple(args.crop_scale),
            shuffle_buffer=args.shuffle_buffer,
            checkpoint_every=args.checkpoint_every,
            seed=args.seed,
            resume=args.resume,
        )
    except ValueError as error:
        raise UsageError(str(error)) from error
    from flows.pretrain import pretrain_flow

    try:
        summary = pretrain_flow(config, scale_config(args))
    except (ExistingRunError, FileNotFoundError, ScaleError) as error:
        raise UsageError(str(error)) from error
    print(
        f"pretrained {summary.steps} steps: loss {summary.first_loss:.4f} -> "
        f"{summary.final_loss:.4f}; encoder at {summary.encoder_checkpoint}"
    )
    if args.json:
        emit_json(summary.as_dict())
    return 0
