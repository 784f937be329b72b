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
    """Report a user-facing error on stderr and return the exit code."""
    print(f"vjepa: error: {message}", file=sys.stderr, flush=True)
    return code
