"""`vjepa curate`: turn videos (local or s3://) into tubelet-aligned clip shards with Ray Data."""

from __future__ import annotations

import argparse

from flows.commands.common import UsageError, emit_json, fail

ORDER = 20


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "curate",
        help="probe, filter, decode and cut videos into clip shards (Ray Data)",
        description=(
            "Curate videos into fixed-size uint8 clips (T x size x size, RGB) stored as parquet "
            "shards with manifest.json and rejected.parquet. Safe to re-run: finished sources "
            "are skipped."
        ),
    )
    parser.add_argument(
        "--input",
        action="append",
        required=True,
        metavar="URI",
        help="video file, folder, glob or s3:// key/prefix (repeatable)",
    )
    parser.add_argument("--output", required=True, metavar="URI", help="folder or s3:// prefix")
    parser.add_argument("--fps", type=float, help="clip frame rate (default 4)")
    parser.add_argument("--frames", type=int, help="frames per clip, a multiple of 2 (default 16)")
    parser.add_argument(
        "--size", type=int, help="clip side in pixels, a multiple of 16 (default 256)"
    )
    parser.add_argument("--config", metavar="FILE", help="JSON or TOML file of curation settings")
    parser.add_argument("--json", action="store_true", help="print a JSON summary as the last line")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from tasks.curation.config import CurationConfig, load_config

    try:
        base = load_config(args.config) if args.config else CurationConfig()
        config = base.replace(fps=args.fps, frames=args.frames, size=args.size)
    except ValueError as error:
        raise UsageError(str(error)) from error

    from flows.curate import curate_flow
    from tasks.curation.lock import OutputLocked
    from tasks.runtime import ensure_ray

    ensure_ray(log_to_driver=False)
    try:
        summary = curate_flow(inputs=list(args.input), output=args.output, config=config.to_dict())
    except OutputLocked as error:
        return fail(str(error), code=1)
    print(
        f"curated {summary.num_clips} clips from {summary.num_sources} sources "
        f"({summary.num_rejected} rejected) into {summary.output}, version {summary.version}"
    )
    if args.json:
        emit_json(
            {
                "num_sources": summary.num_sources,
                "num_clips": summary.num_clips,
                "num_rejected": summary.num_rejected,
                "manifest": summary.manifest,
                "version": summary.version,
            }
        )
    if summary.num_clips == 0:
        return fail(f"no input produced a clip; see {summary.rejected} for the reasons", code=1)
    return 0
