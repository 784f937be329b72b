"""`vjepa import-checkpoint`: convert an official or Hugging Face V-JEPA 2 checkpoint to ours."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from flows.commands.common import UsageError, emit_json, fail

ORDER = 60
OWN_SUFFIX = ".safetensors"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "import-checkpoint",
        help="convert an official .pt or Hugging Face vjepa2 checkpoint to the platform's format",
        description=(
            "Read an encoder, pretraining predictor or attentive probe from an official V-JEPA 2 "
            ".pt file, a Hugging Face vjepa2 directory (save_pretrained layout) or a platform "
            "file, check every key strictly, and write it as one platform safetensors file."
        ),
    )
    parser.add_argument("source", metavar="SRC", help="checkpoint file or HF directory (or s3://)")
    parser.add_argument(
        "destination",
        metavar="DST",
        help="output file ending in .safetensors, or a folder (then DST/KIND.safetensors)",
    )
    parser.add_argument(
        "--kind",
        choices=("encoder", "predictor", "probe"),
        default="encoder",
        help="which model to import (default encoder)",
    )
    parser.add_argument(
        "--num-heads",
        type=int,
        default=None,
        help="attention heads, for official files of a width not in the released set",
    )
    parser.add_argument(
        "--entry",
        default=None,
        help="official checkpoint entry (default: target_encoder, then encoder; predictor)",
    )
    parser.add_argument(
        "--index", type=int, default=0, help="classifier index in an official probe file (0)"
    )
    parser.add_argument("--json", action="store_true", help="print a JSON summary as the last line")
    parser.set_defaults(handler=run)


def destination_file(destination: str, kind: str) -> str:
    """The output file: DST itself when it ends in .safetensors, else DST/KIND.safetensors."""
    from storage import join

    if destination.endswith(OWN_SUFFIX):
        return destination
    return join(destination, f"{kind}{OWN_SUFFIX}")


def fetch_source(source: str, scratch: Path) -> Path:
    """A local path for `source`, downloading an s3:// file or folder into `scratch`."""
    from storage import download

    try:
        return download(source, scratch)
    except FileNotFoundError as error:
        raise UsageError(f"source not found: {source}") from error


def convert(args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    """Load strictly, write our format, return the summary."""
    from modeling.checkpoints import detect_layout, load_model, save_model
    from storage import upload_file

    source = fetch_source(args.source, scratch)
    layout = detect_layout(source)
    model = load_model(
        source, args.kind, num_heads=args.num_heads, entry=args.entry, index=args.index
    )
    target = destination_file(args.destination, args.kind)
    written = save_model(model, scratch / f"out{OWN_SUFFIX}")
    upload_file(written, target)
    return {
        "source": args.source,
        "destination": target,
        "kind": args.kind,
        "layout": layout,
        "config": getattr(model, "config").to_dict(),  # noqa: B009
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "bytes": written.stat().st_size,
    }


def run(args: argparse.Namespace) -> int:
    from modeling.checkpoints import CheckpointError

    if args.num_heads is not None and args.num_heads < 1:
        raise UsageError("--num-heads must be at least 1")
    with tempfile.TemporaryDirectory(prefix="vjepa-import-") as scratch:
        try:
            summary = convert(args, Path(scratch))
        except (CheckpointError, FileNotFoundError) as error:
            return fail(str(error), code=1)
    config = summary["config"]
    print(
        f"imported {summary['kind']} ({summary['layout']} layout, width {config['width']}, "
        f"{summary['num_parameters'] / 1e6:.1f}M parameters) to {summary['destination']}"
    )
    if args.json:
        emit_json(summary)
    return 0
