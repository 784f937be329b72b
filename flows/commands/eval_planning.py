"""`vjepa eval-planning`: closed-loop planning toward goal images, against random actions."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from flows.commands.common import (
    UsageError,
    add_feature_arguments,
    add_state_arguments,
    add_success_argument,
    emit_json,
    state_spec,
    success_dims,
)

ORDER = 70


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval-planning",
        help="closed-loop CEM planning with a world model vs random actions",
        description=(
            "For each episode: reset with a seed, make a goal image by random actions, reset "
            "again and plan toward it (receding horizon, warm-started CEM), executing the first "
            "action each time. The same episodes run with random actions. Reports success rate "
            "and mean final distance for both; results.json and final_distance.png go to --output."
        ),
    )
    parser.add_argument("--env", required=True, help="registered Gymnasium id or module:Class")
    parser.add_argument("--checkpoint", required=True, help="world model folder (local or s3://)")
    parser.add_argument("--episodes", type=int, default=10, help="episodes (default 10)")
    parser.add_argument(
        "--tolerance", type=float, default=0.1, help="success radius in state units"
    )
    parser.add_argument("--max-steps", type=int, default=20, help="planning steps per episode")
    parser.add_argument(
        "--goal-steps", type=int, default=40, help="random env steps to make a goal"
    )
    parser.add_argument(
        "--action-repeat",
        type=int,
        default=None,
        help="env steps per planned action (default: env fps / model control fps)",
    )
    parser.add_argument(
        "--env-kwargs", default="{}", help="JSON object of env constructor arguments"
    )
    parser.add_argument(
        "--cem",
        default="{}",
        help=(
            "JSON object of CEM settings over the bundle's world_model.json, e.g. "
            '\'{"num_samples": 256, "num_iterations": 6, "num_elites": 16, "horizon": 1, '
            '"momentum_mean": 0.0, "min_relative_spread": 0.001}\' (in-process planner only)'
        ),
    )
    parser.add_argument("--server", default=None, help="plan through this HTTP planner URL")
    parser.add_argument("--token-env", default=None, help="env variable holding the bearer token")
    parser.add_argument("--output", default="eval-planning", help="folder for results and plot")
    parser.add_argument("--seed", type=int, default=0, help="seed of episode 0 (then +1 each)")
    add_feature_arguments(parser, defaults="the world model's")
    add_state_arguments(parser)
    add_success_argument(parser)
    parser.add_argument("--json", action="store_true", help="print a JSON summary as the last line")
    parser.set_defaults(handler=run)


def check_features(args: argparse.Namespace, checkpoint: str) -> None:
    """--camera/--state-key/--action-key must be the features the world model was trained on.

    The env renders one camera and reports one state; a model trained on another camera or
    state would plan in a space it has never seen, so a disagreement is an error.
    """
    from modeling.world_model import SPEC_FILE
    from tasks import storage

    fs, path = storage.filesystem(storage.join(checkpoint, SPEC_FILE))
    if not fs.exists(path):
        return  # the loader names the missing file
    spec = json.loads(fs.cat_file(path))
    for flag, name in (
        ("--camera", "camera"),
        ("--state-key", "state_key"),
        ("--action-key", "action_key"),
    ):
        given, trained = getattr(args, name), spec.get(name)
        if given is not None and trained is not None and given != trained:
            raise UsageError(
                f"{flag} {given}: the world model at {checkpoint} was trained on {name} "
                f"{trained!r} (world_model.json); pass {trained!r} or a model trained on {given!r}"
            )


def _json_object(flag: str, text: str) -> dict[str, Any]:
    try:
        values = json.loads(text)
    except json.JSONDecodeError as error:
        raise UsageError(f"{flag} is not JSON: {error}") from error
    if not isinstance(values, dict):
        raise UsageError(f"{flag} must be a JSON object")
    return values


def _env_kwargs(text: str) -> dict[str, object]:
    try:
        values = json.loads(text)
    except json.JSONDecodeError as error:
        raise UsageError(f"--env-kwargs is not JSON: {error}") from error
    if not isinstance(values, dict):
        raise UsageError("--env-kwargs must be a JSON object")
    return values


def run(args: argparse.Namespace) -> int:
    from tasks import storage
    from tasks.planning.evaluate import EvalConfig, check_success_fits
    from tasks.robot.collect import CollectError, check_env, make_env
    from tasks.runtime import local_uri

    try:
        config = EvalConfig(
            env=args.env,
            checkpoint=local_uri(args.checkpoint),
            episodes=args.episodes,
            tolerance=args.tolerance,
            max_steps=args.max_steps,
            goal_steps=args.goal_steps,
            seed=args.seed,
            action_repeat=args.action_repeat,
            env_kwargs=_env_kwargs(args.env_kwargs),
            cem=_json_object("--cem", args.cem),
            state=state_spec(args),
            success_dims=success_dims(args),
        )
        env = make_env(config.env, config.env_kwargs, config.state)
        check_env(env)
        check_success_fits(env, config.success_dims)
        env.close()
    except (ValueError, CollectError) as error:
        raise UsageError(str(error)) from error
    if args.token_env and not os.environ.get(args.token_env):
        raise UsageError(f"--token-env {args.token_env}: that environment variable is not set")
    fs, path = storage.filesystem(config.checkpoint)
    if not args.server and not fs.exists(path):
        raise UsageError(f"world model not found: {config.checkpoint}")
    if not args.server:
        check_features(args, config.checkpoint)
    from flows.evaluate import ServerUnavailableError, eval_planning_flow

    try:
        summary = eval_planning_flow(config, local_uri(args.output), args.server, args.token_env)
    except (ServerUnavailableError, FileNotFoundError, ValueError) as error:
        raise UsageError(str(error)) from error
    print(
        f"planner: success {summary.success_rate:.2f}, mean final distance "
        f"{summary.mean_final_distance:.3f}; random: success {summary.random_success_rate:.2f}, "
        f"mean final distance {summary.random_mean_final_distance:.3f} "
        f"({summary.episodes} episodes); plot at {summary.plot}"
    )
    if args.json:
        emit_json(summary.payload())
    return 0
