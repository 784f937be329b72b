"""`vjepa posttrain`: action-conditioned post-training (V-JEPA 2-AC) on a frozen encoder."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from flows.commands.common import (
    UsageError,
    add_feature_arguments,
    add_job_arguments,
    emit_json,
    scale_config,
)

if TYPE_CHECKING:
    from tasks.training.adapt import AdaptConfig
    from tasks.training.posttrain_config import PosttrainConfig

ORDER = 50


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "posttrain",
        help="train an action-conditioned predictor on robot trajectories (Ray Train)",
        description=(
            "V-JEPA 2-AC: a frozen encoder, an AC predictor trained with teacher-forcing and "
            "rollout L1 losses on windows of a LeRobot dataset. Some episodes are held out to "
            "compare the rollout error with the no-change baseline. Checkpoints, metrics, "
            "loss.png, summary.json and final/world_model/ go to --output."
        ),
    )
    parser.add_argument(
        "--encoder", required=True, help="encoder checkpoint (any layout, local or s3://)"
    )
    parser.add_argument(
        "--trajectories", required=True, help="LeRobot v3 dataset (folder or s3://)"
    )
    parser.add_argument("--output", required=True, help="run folder or s3:// prefix")
    parser.add_argument(
        "--steps", type=int, default=3000, help="optimizer steps, the cap (default 3000)"
    )
    parser.add_argument(
        "--stop-every",
        type=int,
        default=250,
        help="stopping rule: measure the held-out shuffled-action gain every N steps (0: off, "
        "train to --steps; default 250)",
    )
    parser.add_argument(
        "--stop-patience",
        type=int,
        default=2,
        help="stop after this many evaluations without a rise (default 2)",
    )
    parser.add_argument(
        "--stop-min-improvement",
        type=float,
        default=0.005,
        help="the rise in gain that counts (default 0.005)",
    )
    parser.add_argument(
        "--stop-min-gain",
        type=float,
        default=0.05,
        help="no plateau counts before the gain has once reached this (default 0.05)",
    )
    parser.add_argument("--batch-size", type=int, default=16, help="windows per worker and step")
    parser.add_argument("--frames", type=int, default=3, help="frames per window (default 3)")
    parser.add_argument(
        "--rollout-steps", type=int, default=2, help="rollout loss steps (default 2)"
    )
    parser.add_argument("--preset", default="tiny", help="AC predictor size: tiny, small, paper")
    parser.add_argument("--lr", type=float, default=3e-3, help="peak learning rate")
    parser.add_argument(
        "--fps", type=float, default=None, help="control rate (default: dataset fps)"
    )
    parser.add_argument(
        "--image-size", type=int, default=None, help="frame size (default: dataset's)"
    )
    parser.add_argument(
        "--heldout",
        "--holdout",  # the old spelling; `vjepa probe` says --heldout too
        dest="heldout",
        type=float,
        default=0.2,
        help="fraction of episodes held out (default 0.2)",
    )
    parser.add_argument(
        "--no-normalize",
        dest="normalize",
        action="store_false",
        help="feed raw actions and states (default: normalised with the dataset's statistics)",
    )
    parser.add_argument(
        "--no-feature-cache",
        dest="cache_features",
        action="store_false",
        help="re-encode every batch (default: encode the training windows once and cache them)",
    )
    parser.add_argument(
        "--feature-cache",
        default=None,
        metavar="URI",
        help="folder of cached features (default: OUTPUT/feature_cache)",
    )
    parser.add_argument(
        "--no-residual",
        dest="residual",
        action="store_false",
        help="predict features directly, as the official predictor (default: predict the change)",
    )
    parser.add_argument(
        "--checkpoint-every", type=int, default=50, help="steps between checkpoints"
    )
    parser.add_argument(
        "--adapt-steps",
        type=int,
        default=None,
        metavar="N",
        help="domain-adaptive pretraining first: curate the dataset's camera videos into "
        "OUTPUT/adapt/curated, continue pretraining --encoder on them for N steps into "
        "OUTPUT/adapt/pretrain, post-train on the result (default 0: off)",
    )
    add_feature_arguments(parser)
    add_job_arguments(parser)
    parser.set_defaults(handler=run)


def _feature_keys(args: argparse.Namespace) -> dict[str, Any]:
    """The --camera/--state-key/--action-key given (the others keep the config's defaults)."""
    given = {"camera": args.camera, "state_key": args.state_key, "action_key": args.action_key}
    return {name: value for name, value in given.items() if value is not None}


def _config(args: argparse.Namespace) -> PosttrainConfig:
    from tasks.runtime import local_uri
    from tasks.training.posttrain_config import PosttrainConfig

    try:
        return PosttrainConfig(
            encoder=local_uri(args.encoder),
            trajectories=local_uri(args.trajectories),
            output=local_uri(args.output),
            steps=args.steps,
            stop_every=args.stop_every,
            stop_patience=args.stop_patience,
            stop_min_improvement=args.stop_min_improvement,
            stop_min_gain=args.stop_min_gain,
            batch_size=args.batch_size,
            frames=args.frames,
            rollout_steps=args.rollout_steps,
            preset=args.preset,
            peak_lr=args.lr,
            fps=args.fps,
            image_size=args.image_size,
            holdout_fraction=args.heldout,
            checkpoint_every=args.checkpoint_every,
            seed=args.seed,
            resume=args.resume,
            residual=args.residual,
            normalize=args.normalize,
            cache_features=args.cache_features,
            feature_cache=args.feature_cache,
            **_feature_keys(args),
        )
    except ValueError as error:
        raise UsageError(str(error)) from error


def _adapt_config(args: argparse.Namespace) -> AdaptConfig:
    from tasks.training.adapt import AdaptConfig

    try:
        if args.adapt_steps is None:
            return AdaptConfig(seed=args.seed)
        return AdaptConfig(steps=args.adapt_steps, seed=args.seed)
    except ValueError as error:
        raise UsageError(f"--adapt-steps: {error}") from error


def run(args: argparse.Namespace) -> int:
    from tasks.training.launch import ExistingRunError, check_output
    from tasks.training.posttrain_config import check_encoder, describe_dataset

    config = _config(args)
    adapt = _adapt_config(args)
    try:  # fail fast, before Prefect and Ray start
        check_encoder(config.encoder)
        describe_dataset(config)
        check_output(config.output, config.resume)
    except (ExistingRunError, FileNotFoundError, ValueError) as error:
        raise UsageError(str(error)) from error
    from flows.posttrain import posttrain_flow

    try:
        summary = posttrain_flow(config, scale_config(args), adapt)
    except (ExistingRunError, FileNotFoundError, ValueError) as error:
        raise UsageError(str(error)) from error
    print(
        f"post-trained {summary.steps} steps{' (stopped early)' if summary.stopped_early else ''}: loss {summary.first_loss:.4f} -> "
        f"{summary.final_loss:.4f}; held-out rollout error {summary.heldout_rollout_error:.4f} "
        f"vs no-change {summary.heldout_copy_error:.4f}; world model at {summary.world_model_dir}"
        f" (action scale {summary.action_scale}); shuffled-action gain "
        f"{summary.shuffled_action_gain}"
    )
    if summary.adaptation is not None:
        print(
            f"encoder adapted {summary.adaptation.steps} steps on "
            f"{summary.adaptation.clips} clips of the trajectories' videos: {summary.encoder}"
        )
    if summary.blind_to_actions:
        from flows.posttrain import blind_warning
        from tasks.progress import warn

        warn(blind_warning(summary))
    if args.json:
        emit_json(summary.as_dict())
    return 0
