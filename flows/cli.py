"""The `vjepa` command line: a thin argparse front over the flows.

Every sub-command lives in `flows/commands/<name>.py` and is documented in
`docs/commands/<name>.md`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from flows.commands.common import UsageError, fail

# Sub-command modules, in the order `vjepa --help` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "flows.commands.sample_videos",
    "flows.commands.curate",
    "flows.commands.demo",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vjepa",
        description="V-JEPA 2 platform: curate video, train, probe, post-train and serve world models.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except UsageError as error:
        return fail(str(error))
    except KeyboardInterrupt:
        return fail("interrupted", code=130)


if __name__ == "__main__":
    sys.exit(main())
