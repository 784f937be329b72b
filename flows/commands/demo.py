"""`vjepa demo`: the whole pipeline on the embedded defaults, with a report."""

from __future__ import annotations

import argparse
import time

from flows.commands.common import UsageError, emit_json

ORDER = 1


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run the whole pipeline locally: videos -> curate -> pretrain -> probe -> "
        "collect -> post-train -> serve -> plan -> report",
        description=(
            "Run every stage on the embedded defaults (local Ray, Prefect's ephemeral API, "
            "local disk, tiny models) and write a report (markdown + PNG plots) into the work "
            "folder. Running it again on the same folder reuses every finished stage whose inputs "
            "and configuration are unchanged (verified by digest), reruns a changed stage and the "
            "ones after it, and resumes an interrupted one."
        ),
    )
    from flows.demo_config import STAGE_ORDER, DemoConfig

    defaults = DemoConfig()
    parser.add_argument(
        "--workdir", default=defaults.workdir, help=f"work folder (default {defaults.workdir})"
    )
    for flag, help_text in (
        ("videos", "sample videos"),
        ("pretrain_steps", "pretraining steps"),
        ("probe_steps", "steps of every probe head"),
        ("episodes", "robot episodes to collect"),
        ("posttrain_steps", "AC post-training steps"),
        ("eval_episodes", "closed-loop planning episodes"),
        ("seed", "seed of every stage"),
    ):
        default = getattr(defaults, flag)
        parser.add_argument(
            "--" + flag.replace("_", "-"), type=int, default=default,
            help=f"{help_text} (default {default})",
        )  # fmt: skip
    parser.add_argument(
        "--job-cpus",
        type=int,
        default=None,
        metavar="N",
        help="CPUs (torch threads) of a job that runs alone: pretraining and post-training "
        "(default: this machine's cores, at most 4; the side-by-side probe and VQA pairs take "
        "one each)",
    )
    parser.add_argument(
        "--probe-labels",
        nargs="+",
        default=defaults.probe_labels,
        metavar="COLUMN",
        help="label columns of the sample videos' table to probe, headline first (default "
        f"{' '.join(defaults.probe_labels)}; also: direction, colour, speed)",
    )
    parser.add_argument(
        "--rerun",
        action="append",
        choices=STAGE_ORDER,
        default=[],
        metavar="STAGE",
        help="run STAGE and every stage after it again even if a finished run could be reused "
        f"(repeatable; stages in order: {', '.join(STAGE_ORDER)})",
    )
    parser.add_argument(
        "--no-reuse",
        dest="reuse",
        action="store_false",
        help="run every stage again (finished stages are reused by default)",
    )
    parser.add_argument("--json", action="store_true", help="print URIs and figures as JSON last")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from flows.demo_config import DemoConfig
    from flows.pipeline import demo_flow

    counts = (args.videos, args.pretrain_steps, args.probe_steps, args.episodes)
    if min(*counts, args.posttrain_steps, args.eval_episodes) < 1 or args.videos < 8:
        raise UsageError("--videos must be >= 8 and every step/episode count >= 1")
    if args.job_cpus is not None and args.job_cpus < 1:
        raise UsageError("--job-cpus must be >= 1")
    config = DemoConfig(
        workdir=args.workdir,
        videos=args.videos,
        pretrain_steps=args.pretrain_steps,
        probe_steps=args.probe_steps,
        episodes=args.episodes,
        posttrain_steps=args.posttrain_steps,
        eval_episodes=args.eval_episodes,
        seed=args.seed,
        job_cpus=args.job_cpus,
        probe_labels=tuple(args.probe_labels),
        reuse=args.reuse,
        rerun=tuple(args.rerun),
    )
    started = time.monotonic()
    result = demo_flow(config)
    minutes = (time.monotonic() - started) / 60
    probe_lines = "".join(
        f"  probe top-1 on {label} (mean of heads +- spread): pretrained "
        f"{figures.pretrained:.3f} +- {figures.pretrained_std:.3f} vs random init "
        f"{figures.random:.3f} +- {figures.random_std:.3f}\n"
        for label, figures in result.probes.items()
    )
    print(
        f"\ndemo finished in {minutes:.1f} min ({len(result.reused)} stages reused: "
        f"{', '.join(result.reused) or 'none'}); report: {result.report}\n"
        + probe_lines
        + f"  AC held-out rollout error {result.heldout_rollout_error:.4f} vs copy-last-frame "
        f"{result.heldout_copy_error:.4f}\n"
        f"  planning success {result.success_rate:.2f} vs random {result.random_success_rate:.2f}"
    )
    if args.json:
        emit_json({**result.as_dict(), "minutes": round(minutes, 2)})
    return 0
