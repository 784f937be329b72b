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
            "folder. Running it again on the same folder resumes rather than restarts."
        ),
    )
    parser.add_argument("--workdir", default="work/demo", help="work folder (default work/demo)")
    parser.add_argument("--videos", type=int, default=96, help="sample videos (default 96)")
    parser.add_argument("--pretrain-steps", type=int, default=150)
    parser.add_argument("--probe-steps", type=int, default=300)
    parser.add_argument("--episodes", type=int, default=40, help="robot episodes to collect")
    parser.add_argument("--posttrain-steps", type=int, default=600)
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print URIs and figures as JSON last")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from flows.pipeline import DemoConfig, demo_flow

    counts = (args.videos, args.pretrain_steps, args.probe_steps, args.episodes)
    if min(*counts, args.posttrain_steps, args.eval_episodes) < 1 or args.videos < 8:
        raise UsageError("--videos must be >= 8 and every step/episode count >= 1")
    config = DemoConfig(
        workdir=args.workdir,
        videos=args.videos,
        pretrain_steps=args.pretrain_steps,
        probe_steps=args.probe_steps,
        episodes=args.episodes,
        posttrain_steps=args.posttrain_steps,
        eval_episodes=args.eval_episodes,
        seed=args.seed,
    )
    started = time.monotonic()
    result = demo_flow(config)
    minutes = (time.monotonic() - started) / 60
    print(
        f"\ndemo finished in {minutes:.1f} min; report: {result['report']}\n"
        f"  probe top-1 (mean of heads +- spread): pretrained {result['probe_accuracy']:.3f}"
        f" +- {result['probe_accuracy_std']:.3f} vs random init "
        f"{result['random_probe_accuracy']:.3f} +- {result['random_probe_accuracy_std']:.3f}\n"
        f"  AC held-out rollout error {result['heldout_rollout_error']:.4f} vs copy-last-frame "
        f"{result['heldout_copy_error']:.4f}\n"
        f"  planning success {result['success_rate']:.2f} vs random {result['random_success_rate']:.2f}"
    )
    if args.json:
        emit_json({**result, "minutes": round(minutes, 2)})
    return 0
