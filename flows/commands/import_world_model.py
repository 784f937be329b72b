"""`vjepa import-world-model`: Meta's released V-JEPA 2-AC checkpoint -> a world-model folder."""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from flows.commands.common import UsageError, emit_json, fail

ORDER = 61


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "import-world-model",
        help="turn the released V-JEPA 2-AC checkpoint into a world model for serve/eval-planning",
        description=(
            "Read the encoder and action-conditioned predictor of an official V-JEPA 2-AC .pt "
            "(optionally the encoder from another file), check every key strictly, and write a "
            "world-model folder (encoder, AC predictor, world_model.json) that `vjepa serve` and "
            "`vjepa eval-planning` load. The spec defaults to the paper's robot (7-D state and "
            "delta actions, 256 px, 4 fps, CEM 800 x 10 iterations, top 10, horizon 1, actions "
            "within +-0.075); every field can be overridden."
        ),
    )
    parser.add_argument("--ac", required=True, help="released V-JEPA 2-AC .pt (local or s3://)")
    parser.add_argument(
        "--encoder", default=None, help="encoder from another file (any layout; default: --ac's)"
    )
    parser.add_argument("--output", required=True, help="world-model folder (local or s3://)")
    parser.add_argument("--image-size", type=int, default=None, help="frame size (paper: 256)")
    parser.add_argument("--fps", type=float, default=None, help="control rate (paper: 4)")
    parser.add_argument("--name", default=None, help="model name in the spec (vjepa2-ac)")
    parser.add_argument(
        "--action-bound",
        type=float,
        default=None,
        help="actions within +-BOUND on every dim (paper: 0.075)",
    )
    parser.add_argument(
        "--cem", default=None, help="JSON CEM overrides, e.g. '{\"num_samples\": 128}'"
    )
    parser.add_argument(
        "--spec", default=None, help="JSON object of any world_model.json fields to override"
    )
    parser.add_argument("--json", action="store_true", help="print a JSON summary as the last line")
    parser.set_defaults(handler=run)


def _json_object(text: str | None, flag: str) -> dict[str, Any]:
    if text is None:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise UsageError(f"{flag} is not JSON: {error}") from error
    if not isinstance(value, dict):
        raise UsageError(f"{flag} must be a JSON object")
    return value


def spec_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The spec fields the flags set; --spec applies last."""
    values: dict[str, Any] = {}
    for name, value in (("image_size", args.image_size), ("control_fps", args.fps)):
        if value is not None:
            values[name] = value
    if args.name is not None:
        values["name"] = args.name
    if args.action_bound is not None:
        if args.action_bound <= 0:
            raise UsageError("--action-bound must be positive")
        values["action_bound"] = args.action_bound
    cem = _json_object(args.cem, "--cem")
    if cem:
        values["cem"] = cem
    return {**values, **_json_object(args.spec, "--spec")}


def _bounded(values: dict[str, Any], action_dim: int) -> dict[str, Any]:
    bound = values.pop("action_bound", None)
    if bound is None:
        return values
    dims = int(values.get("action_dim", action_dim))
    return {"action_low": (-bound,) * dims, "action_high": (bound,) * dims, **values}


def convert(args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    """Load strictly, write the bundle, publish it (spec last); the summary."""
    from flows.commands.import_checkpoint import fetch_source
    from modeling.ac_release import import_released_world_model
    from modeling.world_model import SPEC_FILE, save_world_model
    from storage import publish_folder

    ac = fetch_source(args.ac, scratch)
    encoder = fetch_source(args.encoder, scratch) if args.encoder else None
    overrides = spec_overrides(args)
    action_dim = int(overrides.get("action_dim", 7))
    model = import_released_world_model(ac, encoder, **_bounded(overrides, action_dim))
    folder = save_world_model(scratch / "world_model", model)
    publish_folder(folder, args.output, marker=SPEC_FILE)
    spec = json.loads((folder / SPEC_FILE).read_text())
    return {
        "source": args.ac,
        "encoder": args.encoder or args.ac,
        "output": args.output,
        "spec": spec,
        "encoder_width": model.encoder.config.width,
        "predictor_depth": model.predictor.config.depth,
        "num_parameters": sum(p.numel() for p in model.parameters()),
    }


def run(args: argparse.Namespace) -> int:
    from modeling.checkpoints import CheckpointError

    with tempfile.TemporaryDirectory(prefix="vjepa-import-wm-") as scratch:
        try:
            summary = convert(args, Path(scratch))
        except (CheckpointError, FileNotFoundError) as error:
            return fail(str(error), code=1)
        except ValueError as error:  # a spec override the model cannot take
            raise UsageError(str(error)) from error
    spec = summary["spec"]
    print(
        f"imported world model ({summary['num_parameters'] / 1e6:.1f}M parameters, "
        f"{spec['image_size']} px, {spec['action_dim']}-D actions, {spec['state_dim']}-D state, "
        f"{spec['control_fps']:g} fps) to {summary['output']}"
    )
    if args.json:
        emit_json(summary)
    return 0
