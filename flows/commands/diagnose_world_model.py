"""`vjepa diagnose-world-model`: which part fails in an env (representation, dynamics, planner)."""

from __future__ import annotations

import argparse
import dataclasses
import json
from typing import TYPE_CHECKING

from flows.commands.common import (
    UsageError,
    add_state_arguments,
    add_success_argument,
    emit_json,
    state_spec,
    success_dims,
)

if TYPE_CHECKING:
    from tasks.planning.diagnose import DiagnoseConfig

ORDER = 75


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from tasks.planning.diagnose import DiagnoseConfig

    defaults = DiagnoseConfig(env="", checkpoint="")
    parser = subparsers.add_parser(
        "diagnose-world-model",
        help="separate representation, dynamics and planner failures of a world model in an env",
        description=(
            "Four checks, each with a verdict: (1) true-frame energy against state distance, "
            "(2) predicted against true-frame energy over candidate actions, (3) the "
            "shuffled-action gain on fresh env windows, (4) a perfect-dynamics CEM planner "
            "against the learned one and random actions. Candidate actions are replayed in the "
            "env (deterministic reset by seed) to get their true frames. Writes diagnosis.json "
            "and two plots to --output."
        ),
    )
    parser.add_argument("--checkpoint", required=True, help="world model folder (local or s3://)")
    parser.add_argument("--env", required=True, help="registered Gymnasium id or module:Class")
    parser.add_argument("--output", default="diagnosis", help="folder for diagnosis.json and plots")
    for name, help_text in (
        ("goals", "seeded goals for parts 1-2"),
        ("walk_steps", "random-walk states per goal (part 1)"),
        ("candidates", "candidate actions per goal (part 2)"),
        ("windows", "fresh env windows (part 3)"),
        ("episodes", "closed-loop episodes per controller (part 4)"),
        ("max_steps", "planning steps per episode (part 4)"),
        ("goal_steps", "random env steps to make a goal"),
        ("seed", "seed of goal 0 (then +1 each)"),
    ):
        default = getattr(defaults, name)
        flag = "--" + name.replace("_", "-")
        parser.add_argument(
            flag, type=int, default=default, help=f"{help_text} (default {default})"
        )
    parser.add_argument(
        "--tolerance", type=float, default=defaults.tolerance, help="success radius in state units"
    )
    parser.add_argument("--env-kwargs", default="{}", help="JSON object of env arguments")
    add_state_arguments(parser)
    add_success_argument(parser)
    parser.add_argument("--json", action="store_true", help="print a JSON summary as the last line")
    parser.set_defaults(handler=run)


def _config(args: argparse.Namespace) -> DiagnoseConfig:
    from tasks.planning.diagnose import DiagnoseConfig
    from tasks.runtime import local_uri

    try:
        kwargs = json.loads(args.env_kwargs)
    except json.JSONDecodeError as error:
        raise UsageError(f"--env-kwargs is not JSON: {error}") from error
    if not isinstance(kwargs, dict):
        raise UsageError("--env-kwargs must be a JSON object")
    names = [f.name for f in dataclasses.fields(DiagnoseConfig) if hasattr(args, f.name)]
    values = {name: getattr(args, name) for name in names}
    values.update(checkpoint=local_uri(args.checkpoint), env_kwargs=kwargs, state=state_spec(args),
                  success_dims=success_dims(args))  # fmt: skip
    if min(values["goals"], values["candidates"], values["windows"], values["episodes"]) < 2:
        raise UsageError("--goals, --candidates, --windows and --episodes must be at least 2")
    return DiagnoseConfig(**values)


def run(args: argparse.Namespace) -> int:
    from tasks import storage
    from tasks.planning.diagnose import diagnose, plot_diagnosis
    from tasks.planning.evaluate import check_success_fits, load_planner_model
    from tasks.robot.collect import CollectError, check_env, make_env
    from tasks.runtime import local_uri

    config = _config(args)
    try:
        env = make_env(config.env, config.env_kwargs, config.state)
        check_env(env)
        check_success_fits(env, config.success_dims)
        env.close()
        model = load_planner_model(config.checkpoint)
    except (CollectError, FileNotFoundError, ValueError) as error:
        raise UsageError(str(error)) from error
    diagnosis = diagnose(config, model)
    output = local_uri(args.output)
    plots = plot_diagnosis(diagnosis, output)
    payload = {**dataclasses.asdict(diagnosis), "plots": plots}
    fs, path = storage.filesystem(storage.join(output, "diagnosis.json"))
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    fs.pipe_file(path, json.dumps(payload, indent=2).encode())
    for part in diagnosis.parts:
        mark = "PASS" if part.passed else "FAIL"
        print(f"{mark} {part.name}: {part.value:.3f} (threshold {part.threshold}) - {part.detail}")
    print(f"finding: {diagnosis.finding}")
    if args.json:
        emit_json(
            {
                k: v
                for k, v in payload.items()
                if k not in ("energy_vs_distance", "predicted_vs_true")
            }
        )
    return 0
