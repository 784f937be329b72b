"""Every command's `--help` defaults are its config's defaults; they must not drift.

Each command is listed with the config whose defaults it restates. A flag is compared with the
config field of the same name (or the one `RENAMED` names); a flag whose default is None leaves
the value to the config and restates nothing (`curate` restates none). A new command must be added here (or to
`NO_CONFIG` with the reason), so no command escapes the check.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
from collections.abc import Callable
from typing import Any

import pytest

from flows.cli import build_parser


def _dataclass_defaults(config_type: type) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for field in dataclasses.fields(config_type):
        if field.default is not dataclasses.MISSING:
            values[field.name] = field.default
        elif field.default_factory is not dataclasses.MISSING:
            values[field.name] = field.default_factory()
    return values


def _pretrain() -> dict[str, Any]:
    from tasks.training.pretrain import PretrainConfig

    return _dataclass_defaults(PretrainConfig)


def _probe() -> dict[str, Any]:
    from tasks.training.probe import ProbeConfig

    return _dataclass_defaults(ProbeConfig)


def _posttrain() -> dict[str, Any]:
    from tasks.training.posttrain_config import PosttrainConfig

    return _dataclass_defaults(PosttrainConfig)


def _collect() -> dict[str, Any]:
    from tasks.robot.collect import CollectConfig

    return _dataclass_defaults(CollectConfig)


def _eval_planning() -> dict[str, Any]:
    from tasks.planning.evaluate import EvalConfig

    return _dataclass_defaults(EvalConfig)


def _diagnose() -> dict[str, Any]:
    from tasks.planning.diagnose import DiagnoseConfig

    return _dataclass_defaults(DiagnoseConfig)


def _curate() -> dict[str, Any]:
    from tasks.curation.config import CurationConfig

    return dataclasses.asdict(CurationConfig())


def _sample_videos() -> dict[str, Any]:
    from tasks.sample_videos import write_sample_videos

    parameters = inspect.signature(write_sample_videos).parameters.values()
    return {p.name: p.default for p in parameters if p.default is not inspect.Parameter.empty}


def _serve() -> dict[str, Any]:
    from serving.config import Batching, ServingConfig

    fields = ServingConfig.model_fields
    values = {name: field.default for name, field in fields.items() if not field.is_required()}
    batching = Batching()
    return {
        **values,
        "max_batch_size": batching.max_batch_size,
        "batch_wait_ms": 1000 * batching.wait_timeout_s,
    }


def _demo() -> dict[str, Any]:
    from flows.demo_config import DemoConfig

    return dataclasses.asdict(DemoConfig())


def _align() -> dict[str, Any]:
    from tasks.vqa.align import AlignConfig

    return _dataclass_defaults(AlignConfig)


def _eval_vqa() -> dict[str, Any]:
    from tasks.vqa.evaluate import EvalVQAConfig

    return _dataclass_defaults(EvalVQAConfig)


def _tiny_lm() -> dict[str, Any]:
    from tasks.vqa.tiny_lm import TinyLMConfig

    return _dataclass_defaults(TinyLMConfig)


# command -> (its required arguments, the defaults it must restate)
COMMANDS: dict[str, tuple[list[str], Callable[[], dict[str, Any]]]] = {
    "pretrain": (["--data=d", "--output=o"], _pretrain),
    "probe": (["--encoder=e", "--data=d", "--labels=l", "--output=o"], _probe),
    "posttrain": (["--encoder=e", "--trajectories=t", "--output=o"], _posttrain),
    "collect": (["--env=e", "--episodes=1", "--output=o"], _collect),
    "eval-planning": (["--env=e", "--checkpoint=c"], _eval_planning),
    "diagnose-world-model": (["--env=e", "--checkpoint=c"], _diagnose),
    "curate": (["--input=i", "--output=o"], _curate),
    "sample-videos": (["--output=o"], _sample_videos),
    "serve": (["--checkpoint=c"], _serve),
    "demo": ([], _demo),
    "align": (["--encoder=e", "--lm=l", "--data=d", "--qa=q", "--output=o"], _align),
    "eval-vqa": (["--model=m", "--data=d", "--qa=q"], _eval_vqa),
    "make-tiny-lm": (["--corpus=c", "--output=o"], _tiny_lm),
}
NO_CONFIG = {
    "import-checkpoint": "its flags are the converter's arguments; there is no config",
    "import-world-model": "its flags are the converter's arguments; there is no config",
}

# command -> {argparse dest: config field} where the names differ
RENAMED: dict[str, dict[str, str]] = {
    "pretrain": {"lr": "peak_lr", "ema": "ema_momentum"},
    "probe": {"lr": "learning_rates", "heads": "heads_per_lr", "heldout": "heldout_fraction"},
    "posttrain": {"lr": "peak_lr", "heldout": "holdout_fraction"},
}
JSON_FLAGS = {"env_kwargs", "cem"}  # flags given as JSON text


def _normalise(dest: str, value: Any) -> Any:
    if dest in JSON_FLAGS and isinstance(value, str):
        value = json.loads(value)
    return tuple(value) if isinstance(value, list) else value


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    actions = build_parser()._actions
    return next(a for a in actions if isinstance(a, argparse._SubParsersAction)).choices


def test_every_command_is_checked() -> None:
    names = set(_subcommands())
    assert len(names) > 10, names
    assert names <= set(COMMANDS) | set(NO_CONFIG), names - set(COMMANDS) - set(NO_CONFIG)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_cli_defaults_are_the_config_defaults(command: str) -> None:
    required, defaults_of = COMMANDS[command]
    args: argparse.Namespace = build_parser().parse_args([command, *required])
    defaults = defaults_of()
    renamed = RENAMED.get(command, {})
    compared = {
        dest: renamed.get(dest, dest)
        for dest, value in vars(args).items()
        if renamed.get(dest, dest) in defaults and value is not None
    }
    drifted = {
        dest: (_normalise(dest, getattr(args, dest)), _normalise(dest, defaults[field]))
        for dest, field in compared.items()
        if _normalise(dest, getattr(args, dest)) != _normalise(dest, defaults[field])
    }
    assert not drifted, f"`vjepa {command}` defaults differ from its config: {drifted}"


def test_help_shows_list_defaults_as_typed() -> None:
    """A tuple default reads as the user would type it, not as Python's `()`."""
    text = _subcommands()["align"].format_help()
    assert "(default ())" not in text
    assert "--first-types" in text and "(default none)" in " ".join(text.split())
