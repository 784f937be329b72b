"""Helpers shared by the command modules: JSON summaries and error reporting."""

from __future__ import annotations

import json
import sys
from typing import Any


class UsageError(Exception):
    """A problem the user can fix (bad flag, missing input); printed without a traceback."""


def emit_json(payload: dict[str, Any]) -> None:
    """Print one JSON object as the last line of stdout (the `--json` contract)."""
    sys.stdout.flush()
    print(json.dumps(payload, sort_keys=True, default=str), flush=True)


def fail(message: str, code: int = 2) -> int:
    """Report a user-facing error on stderr (and in the run's log file) and return the code."""
    from tasks.progress import console

    line = f"vjepa: error: {message}"
    print(line, file=console(), flush=True)
    if console() is not sys.stderr:  # stderr is the log file while the console shows bars
        print(line, file=sys.stderr, flush=True)
    return code


def add_scale_arguments(parser: Any) -> None:
    """`--workers`, `--gpu`, `--strategy`, `--max-failures`: how a Ray Train job is spread."""
    parser.add_argument("--workers", type=int, default=1, help="Ray Train workers (default 1)")
    parser.add_argument("--gpu", action="store_true", help="one GPU per worker (bf16 autocast)")
    parser.add_argument(
        "--cpus-per-worker", type=float, default=1.0, help="CPUs reserved per worker (default 1)"
    )
    parser.add_argument(
        "--strategy",
        choices=("ddp", "fsdp"),
        default="ddp",
        help="data parallelism across workers: ddp (default; whole model per worker) or fsdp "
        "(FSDP2, parameters sharded per transformer block; pretrain only, meant for "
        "vitl/vith/vitg)",
    )
    parser.add_argument(
        "--max-failures",
        type=int,
        default=2,
        help="worker-group restarts from the last checkpoint before giving up (default 2)",
    )


def add_job_arguments(parser: Any) -> None:
    """The flags every Ray Train job command shares: `--seed`, `--resume`, scale, `--json`."""
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", action="store_true", help="continue the run in --output")
    add_scale_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print a JSON summary as the last line")


def scale_config(args: Any) -> Any:
    from tasks.training.launch import ScaleConfig, check_strategy

    if args.workers < 1:
        raise UsageError("--workers must be at least 1")
    try:
        check_strategy(str(getattr(args, "command", "")), getattr(args, "strategy", "ddp"))
    except ValueError as error:
        raise UsageError(str(error)) from error
    return ScaleConfig(
        num_workers=args.workers,
        use_gpu=args.gpu,
        cpus_per_worker=args.cpus_per_worker,
        max_failures=args.max_failures,
        strategy=getattr(args, "strategy", "ddp"),
    )


def add_state_arguments(parser: Any) -> None:
    """--state-dims, --state-fn: the env state success is measured on (collect, eval, diagnose)."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--state-dims",
        default=None,
        metavar="I,J,..",
        help="observation indices that make the state (default: info['state'], else the observation)",
    )
    group.add_argument(
        "--state-fn",
        default=None,
        metavar="MODULE:FUNCTION",
        help="function(observation, info) -> state, e.g. tasks.robot.state_maps:reacher_fingertip",
    )


def state_spec(args: Any) -> Any:
    """The `StateSpec` of --state-dims / --state-fn (None when neither is given)."""
    from tasks.robot.collect import StateSpec

    if args.state_fn:
        return StateSpec(function=args.state_fn)
    if args.state_dims:
        return StateSpec(dims=_indices("--state-dims", args.state_dims))
    return None


def _indices(flag: str, text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError as error:
        raise UsageError(f"{flag} must be comma-separated integers: {error}") from error


def add_success_argument(parser: Any) -> None:
    """--success-dims: the state dims success is measured on (eval-planning, diagnose)."""
    parser.add_argument(
        "--success-dims",
        default=None,
        metavar="I,J,..",
        help=(
            "state indices that success and distance use (default: all); the others, e.g. "
            "joint velocities, only feed the predictor"
        ),
    )


def success_dims(args: Any) -> tuple[int, ...] | None:
    """The indices of --success-dims (None when not given)."""
    if not args.success_dims:
        return None
    dims = _indices("--success-dims", args.success_dims)
    if min(dims) < 0 or len(set(dims)) != len(dims):
        raise UsageError(f"--success-dims must be distinct indices >= 0, got {args.success_dims}")
    return dims


def add_feature_arguments(parser: Any, defaults: str = "the dataset's") -> None:
    """--camera, --state-key, --action-key: which LeRobot features a command uses."""
    parser.add_argument(
        "--camera",
        default=None,
        metavar="KEY",
        help=f"video feature to use, e.g. observation.images.top (default: {defaults} first)",
    )
    parser.add_argument(
        "--state-key", default=None, metavar="KEY", help="state feature (observation.state)"
    )
    parser.add_argument("--action-key", default=None, metavar="KEY", help="action feature (action)")
