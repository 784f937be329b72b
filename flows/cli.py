"""The `vjepa` command line: a thin argparse front over the flows.

Every sub-command lives in `flows/commands/<name>.py` and is documented in
`docs/commands/<name>.md`.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
import traceback
from collections.abc import Sequence
from types import ModuleType

import flows.commands
from flows.commands.common import UsageError, fail
from flows.console import add_output_arguments, console_output
from flows.startup import boot_prefect_early


def command_modules() -> list[ModuleType]:
    """Every module of `flows.commands` that defines `add_parser`, ordered by `ORDER` then name."""
    modules = []
    for info in pkgutil.iter_modules(flows.commands.__path__):
        module = importlib.import_module(f"flows.commands.{info.name}")
        if hasattr(module, "add_parser"):
            modules.append(module)
    return sorted(modules, key=lambda m: (getattr(m, "ORDER", 100), m.__name__))


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole CLI, or (`only`) just one command's parser: a command's `add_parser` reads its
    defaults from its config dataclass, whose module may import torch (20+ s on a busy laptop),
    so running one command builds one parser."""
    parser = argparse.ArgumentParser(
        prog="vjepa",
        description="V-JEPA 2 platform: curate video, train, probe, post-train and serve world models.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    modules = command_modules()
    chosen = [
        m for m in modules if only and m.__name__.rsplit(".", 1)[-1] == only.replace("-", "_")
    ]
    for module in chosen or modules:
        module.add_parser(subparsers)
    for command_parser in subparsers.choices.values():
        add_output_arguments(command_parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # Offline by default: Prefect's ephemeral server would otherwise try to send telemetry.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    # the ephemeral API starts in a subprocess; on a busy 2-core machine 20 s is not enough
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    words = list(sys.argv[1:] if argv is None else argv)
    first = next((word for word in words if not word.startswith("-")), None)
    args = build_parser(only=first).parse_args(words)
    with console_output(args) as log:
        try:
            boot_prefect_early(args.command)  # boots while the command starts Ray
            return int(args.handler(args))
        except UsageError as error:
            return fail(str(error))
        except KeyboardInterrupt:
            return fail("interrupted", code=130)
        except Exception as error:
            if log is None:  # --verbose: the traceback on the console, as before
                raise
            traceback.print_exc()  # into the log file
            return fail(f"{type(error).__name__}: {error} (traceback in {log})", code=1)


if __name__ == "__main__":
    sys.exit(main())
