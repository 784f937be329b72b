"""`vjepa collect`: record trajectories from a Gymnasium env into a LeRobot v3.0 dataset."""

from __future__ import annotations

import argparse
import json
from typing import Any

from flows.commands.common import UsageError, add_state_arguments, emit_json, fail, state_spec

ORDER = 40


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "collect",
        help="record env rollouts into a LeRobot v3.0 dataset (parquet + mp4)",
        description=(
            "Roll out a policy in a Gymnasium env with rgb_array rendering and a Box action "
            "space; write frames (mp4, ffmpeg), states and actions (parquet) in the LeRobot "
            "dataset v3.0 layout, locally or on s3://."
        ),
    )
    parser.add_argument(
        "--env", required=True, help="registered id (vjepa/PointReach-v0) or module:Class"
    )
    parser.add_argument("--episodes", type=int, required=True, help="number of episodes")
    parser.add_argument("--output", required=True, help="dataset folder or s3:// prefix")
    parser.add_argument("--policy", default="random", help="random (default) or module:Class")
    parser.add_argument(
        "--steps-per-episode", type=int, default=50, help="actions per episode (default 50)"
    )
    parser.add_argument(
        "--fps",
        type=int,
        default=None,
        help="recording rate, one env step per frame (default: the env's render_fps, else 10)",
    )
    add_state_arguments(parser)
    parser.add_argument("--seed", type=int, default=0, help="episode e resets with seed + e")
    parser.add_argument("--task", default=None, help="task text stored in meta/tasks.parquet")
    parser.add_argument(
        "--env-kwargs",
        default="{}",
        help="JSON keyword arguments for the env, e.g. '{\"width\": 128}'",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    parser.add_argument("--json", action="store_true", help="print a JSON summary as the last line")
    parser.set_defaults(handler=run)


def _env_kwargs(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise UsageError(f"--env-kwargs is not valid JSON: {error}") from error
    if not isinstance(value, dict):
        raise UsageError("--env-kwargs must be a JSON object")
    return value


def run(args: argparse.Namespace) -> int:
    from tasks.robot.collect import CollectConfig, validate
    from tasks.robot.video import VideoError

    try:
        config = CollectConfig(
            env=args.env,
            episodes=args.episodes,
            output=args.output,
            policy=args.policy,
            steps_per_episode=args.steps_per_episode,
            fps=args.fps,
            seed=args.seed,
            task=args.task,
            overwrite=args.overwrite,
            env_kwargs=_env_kwargs(args.env_kwargs),
            state=state_spec(args),
        )
        validate(config)
    except (ValueError, TypeError, FileExistsError) as error:
        raise UsageError(str(error)) from error

    from flows.collect import collect_flow

    try:
        summary = collect_flow(config).as_dict()
    except (VideoError, ValueError) as error:  # mid-run: an encoder failure or an odd episode
        return fail(str(error), code=1)
    print(
        f"recorded {summary['episodes']} episodes ({summary['frames']} frames, "
        f"{summary['image_width']}x{summary['image_height']} at {summary['fps']} fps) "
        f"into {summary['output']} in {summary['seconds']:.1f}s"
    )
    if args.json:
        emit_json(summary)
    return 0
