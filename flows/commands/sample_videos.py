"""`vjepa sample-videos`: write synthetic moving-shape videos and their labels table."""

from __future__ import annotations

import argparse
import sys
import time

from flows.commands.common import UsageError, emit_json

ORDER = 10


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "sample-videos",
        help="write synthetic sample videos (moving shapes) with a labels table",
        description=(
            "Render moving coloured shapes, encode them with ffmpeg into mp4/h264, webm/vp9 "
            "and mkv files of several frame rates and resolutions, and write labels.parquet "
            "(direction, shape, colour) beside them."
        ),
    )
    parser.add_argument("--output", required=True, help="folder or s3:// prefix to write into")
    parser.add_argument("--count", type=int, default=24, help="number of videos (default 24)")
    parser.add_argument(
        "--seconds", type=float, default=6.0, help="length of each video (default 6)"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--with-defects",
        action="store_true",
        help="also write broken files (empty, truncated, text and image named as video)",
    )
    parser.add_argument("--json", action="store_true", help="print a JSON summary as the last line")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from tasks.sample_videos import LABELS_FILE, write_sample_videos

    if args.count < 1:
        raise UsageError("--count must be at least 1")
    if args.seconds <= 0:
        raise UsageError("--seconds must be positive")
    started = time.monotonic()

    def progress(done: int, total: int, name: str) -> None:
        print(f"[sample-videos] {done}/{total} {name}", file=sys.stderr, flush=True)

    paths = write_sample_videos(
        args.output,
        count=args.count,
        seed=args.seed,
        seconds=args.seconds,
        with_defects=args.with_defects,
        progress=progress,
    )
    elapsed = time.monotonic() - started
    print(f"wrote {len(paths)} files and {LABELS_FILE} to {args.output} in {elapsed:.1f}s")
    if args.json:
        emit_json({"output": args.output, "num_videos": args.count, "files": paths})
    return 0
