"""Stage reuse: `vjepa demo` on a fresh work folder, then again on the same folder.

Runs the real CLI twice as subprocesses (each starts its own local Ray and Prefect) with the
sizes given (small by default; `--full` uses the demo's defaults, about 15-18 min for the first
run on 2 cores). The second run should reuse every stage (`[stage] ...: reused` lines, the
`reused` list of `--json`) and only verify digests and rewrite the report. Printed: the wall
time of both runs and the stages each reused. The last stdout line is JSON; `ratio` = first
run's seconds / second run's seconds.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SMALL = (
    "--videos", "8", "--pretrain-steps", "3", "--probe-steps", "3", "--episodes", "2",
    "--posttrain-steps", "3", "--eval-episodes", "1",
)  # fmt: skip


def run_demo(workdir: Path, sizes: tuple[str, ...]) -> tuple[float, dict[str, Any]]:
    """One `vjepa demo --json` run: its wall seconds and its JSON summary."""
    command = [str(Path(sys.executable).parent / "vjepa"), "demo", "--workdir", str(workdir)]
    started = time.monotonic()
    done = subprocess.run([*command, *sizes, "--json"], capture_output=True, text=True, check=False)
    seconds = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"vjepa demo failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return seconds, json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="the demo's default sizes")
    parser.add_argument("--workdir", help="work folder (default: a fresh temporary one)")
    args = parser.parse_args()
    sizes = () if args.full else SMALL
    with tempfile.TemporaryDirectory(prefix="vjepa-reuse-") as scratch:
        workdir = Path(args.workdir or scratch)
        runs = [run_demo(workdir, sizes) for _ in range(2)]
    print("| run | seconds | stages reused |\n| --- | --- | --- |")
    for index, (seconds, summary) in enumerate(runs, start=1):
        print(f"| {index} | {seconds:.1f} | {', '.join(summary['reused']) or 'none'} |")
    (first, _), (second, again) = runs
    result = {
        "ratio": round(first / second, 2),
        "first_s": round(first, 1),
        "second_s": round(second, 1),
        "reused_second": again["reused"],
        "full": args.full,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
