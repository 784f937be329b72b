"""The training commands restate their job config's defaults in `--help`; they must not drift."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

import pytest

from flows.cli import build_parser
from tasks.training.posttrain_inputs import PosttrainConfig
from tasks.training.pretrain import PretrainConfig
from tasks.training.probe import ProbeConfig

# command -> (its required arguments, its job config, {argparse dest: config field})
COMMANDS: dict[str, tuple[list[str], type, dict[str, str]]] = {
    "pretrain": (
        ["--data=d", "--output=o"],
        PretrainConfig,
        {
            "preset": "preset",
            "steps": "steps",
            "batch_size": "batch_size",
            "lr": "peak_lr",
            "ema": "ema_momentum",
            "ema_final": "ema_final",
            "grad_clip": "grad_clip",
            "crop_scale": "crop_scale",
            "shuffle_buffer": "shuffle_buffer",
            "checkpoint_every": "checkpoint_every",
            "seed": "seed",
            "resume": "resume",
        },
    ),
    "probe": (
        ["--encoder=e", "--data=d", "--labels=l", "--output=o"],
        ProbeConfig,
        {
            "label_column": "label_column",
            "lr": "learning_rates",
            "steps": "steps",
            "heads": "heads_per_lr",
            "batch_size": "batch_size",
            "heldout": "heldout_fraction",
            "seed": "seed",
            "resume": "resume",
        },
    ),
    "posttrain": (
        ["--encoder=e", "--trajectories=t", "--output=o"],
        PosttrainConfig,
        {
            "steps": "steps",
            "batch_size": "batch_size",
            "frames": "frames",
            "rollout_steps": "rollout_steps",
            "preset": "preset",
            "lr": "peak_lr",
            "fps": "fps",
            "image_size": "image_size",
            "holdout": "holdout_fraction",
            "residual": "residual",
            "checkpoint_every": "checkpoint_every",
            "seed": "seed",
            "resume": "resume",
        },
    ),
}


def _normalise(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_cli_defaults_are_the_job_config_defaults(command: str) -> None:
    required, config_type, fields = COMMANDS[command]
    args: argparse.Namespace = build_parser().parse_args([command, *required])
    defaults = {
        field.name: field.default
        for field in dataclasses.fields(config_type)
        if field.default is not dataclasses.MISSING
    }
    drifted = {
        dest: (_normalise(getattr(args, dest)), defaults[field])
        for dest, field in fields.items()
        if _normalise(getattr(args, dest)) != defaults[field]
    }
    assert not drifted, f"`vjepa {command}` defaults differ from {config_type.__name__}: {drifted}"
