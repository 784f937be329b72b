"""Serving benchmark: fleet planning with and without cross-request batching, over real HTTP.

One run on one machine: starts its own local Ray, writes a random-weight tiny world model bundle
(64 px, CEM 64 samples x 3 iterations by default) and serves it twice side by side, as two Serve
applications with identical replicas: `/on` batches concurrent robots (`max_batch_size` 64),
`/off` plans every request alone. Simulated robots (asyncio + httpx on 127.0.0.1) each send plan
requests back to back for a fixed time (and at least a fixed count); for every fleet size both
modes run one after the other, so background load drifts equally on both.

Reported: plans/s, p50/p99 latency and mean batch size per fleet size and mode; embedding
requests/s; the Serve overhead (1 robot over HTTP without batching vs a direct in-process
`WorldModel.plan` call). The last stdout line is JSON; `ratio` = plans/s batched / unbatched
at 16 robots (target >= 3 at no worse p99). `ceiling_16` is the most any batching can give on
this hardware: 16 in-process one-robot calls against one 16-robot call. On a CPU the predictor's
work grows with robots x samples, so the ceiling is near 1; on a GPU a 16-robot call costs
little more than a one-robot call.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgpack
import numpy as np

FLEETS = (1, 4, 16, 64)
HERE = Path(__file__).resolve().parent
# run as `python benchmarks/serving.py`, this file would shadow the `serving` package (also for
# the Ray workers, which inherit the driver's sys.path): put the repository root first instead
if sys.path and Path(sys.path[0] or ".").resolve() == HERE:
    sys.path[0] = str(HERE.parent)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=64, help="CEM samples per robot (64)")
    parser.add_argument("--iterations", type=int, default=3, help="CEM iterations (3)")
    parser.add_argument("--seconds", type=float, default=6.0, help="time per measurement (6)")
    parser.add_argument("--min-requests", type=int, default=3, help="per robot and measurement")
    parser.add_argument("--fleets", type=int, nargs="+", default=list(FLEETS))
    parser.add_argument("--planner-cpus", type=float, default=1.0, help="CPUs of the replica")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (replica + direct)")
    parser.add_argument(
        "--planner-gpus",
        type=float,
        default=0.0,
        help="GPUs per planner replica (0.5 puts both apps on one GPU; default 0: CPU)",
    )
    return parser.parse_args()


def make_bundle(folder: Path, samples: int, iterations: int) -> Path:
    import torch

    from modeling.ac_predictor import ACPredictor, ac_tiny
    from modeling.encoder import VisionEncoder, tiny
    from modeling.world_model import WorldModel, WorldModelSpec, save_world_model

    torch.manual_seed(0)
    cem = {"num_samples": samples, "num_elites": min(10, samples), "num_iterations": iterations}
    spec = WorldModelSpec(64, 2, 2, (-1.0, -1.0), (1.0, 1.0), cem={**cem, "horizon": 2})
    predictor = ACPredictor(ac_tiny(action_dim=2, state_dim=2))
    return save_world_model(folder, WorldModel(VisionEncoder(tiny()), predictor, spec))


def robot_inputs(index: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(index)
    return {
        "frames": rng.integers(0, 255, (1, 64, 64, 3), dtype=np.uint8),
        "state": rng.normal(size=2).astype(np.float32),
        "goal": rng.integers(0, 255, (64, 64, 3), dtype=np.uint8),
    }


def load_direct(bundle: Path, threads: int, device: str = "cpu") -> Any:
    import torch

    from modeling.world_model import load_world_model

    torch.set_num_threads(threads)
    return load_world_model(bundle).to(device)


def direct_plan_ms(model: Any, robots: int, repeats: int = 5) -> float:
    """p50 of one in-process `WorldModel.plan` call for `robots` robots (no HTTP, no Serve)."""
    import torch

    inputs = [robot_inputs(i) for i in range(robots)]
    device = next(model.parameters()).device
    frames = torch.from_numpy(np.stack([x["frames"] for x in inputs])).to(device)  # (R,1,H,W,3)
    states = torch.from_numpy(np.stack([x["state"][None] for x in inputs])).to(device)  # (R,1,S)
    goals = torch.from_numpy(np.stack([x["goal"] for x in inputs])).to(device)  # (R, H, W, 3)
    model.plan(frames, states, goals)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        model.plan(frames, states, goals).plan.cpu()  # .cpu() waits for the device
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def read_plan_reply(response: Any, record: dict[str, list[Any]]) -> None:
    """The batch size of one `/v1/plan` reply (msgpack)."""
    timing = msgpack.unpackb(response.content).get("timing", {})
    record.setdefault("batch", []).append(timing.get("batch_size", 1))


async def fleet_load(
    url: str, path: str, bodies: list[bytes], seconds: float, minimum: int
) -> dict:
    from benchmarks.load import closed_loop, latency_figures

    record, elapsed = await closed_loop(
        url, path, bodies, seconds, minimum, read_plan_reply, timeout=300
    )
    figures = latency_figures(record, elapsed)
    return {
        "plans_per_s": figures.pop("per_s"),
        **figures,
        "mean_batch": float(np.mean(record["batch"])),
    }


def start_apps(bundle: Path, args: argparse.Namespace, cache: str) -> str:
    import ray
    from ray import serve

    from flows.local_serve import free_port
    from serving.app import build_app
    from serving.config import ServingConfig
    from serving.proxy_guard import start_options

    port = free_port()
    # both applications hold a planner replica, but only one is busy at a time: give Ray
    # enough logical CPUs for both (the torch thread count is set explicitly)
    cpus = 2 * (os.cpu_count() or 2) + 1
    gpus = 1 if args.planner_gpus > 0 else 0
    # its own cluster, never another session's `ray start` head
    ray.init(
        address="local", num_cpus=cpus, num_gpus=gpus, include_dashboard=False, log_to_driver=False
    )
    configs = {}
    for mode in ("on", "off"):
        config = ServingConfig.model_validate(
            {
                "models": {"arm": str(bundle)},
                "cache_dir": cache,
                "torch_threads": args.threads,
                "batching": {
                    "enabled": mode == "on",
                    "max_batch_size": 64,
                    "wait_timeout_s": 0.005,
                },
                "planner": {
                    "num_replicas": 1,
                    "num_cpus": args.planner_cpus,
                    "num_gpus": args.planner_gpus,
                },
                "embedder": {"num_replicas": 1, "num_cpus": 0.1},
                "ingress": {"num_replicas": 1, "num_cpus": 0.1, "max_ongoing_requests": 512},
            }
        )
        configs[mode] = config
    # the guarded proxy `vjepa serve` runs (header limits, 503 for a dead replica)
    serve.start(**start_options(configs["on"], port))
    for mode, config in configs.items():
        serve.run(build_app(config), name=f"bench-{mode}", route_prefix=f"/{mode}")
    return f"http://127.0.0.1:{port}"


async def embed_load(url: str, seconds: float, clients: int = 8) -> float:
    """Embedding requests/s: `clients` concurrent senders of one 2-frame 64 px clip each."""
    import httpx

    from serving.codec import pack

    clip = np.random.default_rng(0).integers(0, 255, (2, 64, 64, 3), dtype=np.uint8)
    body = pack({"frames": clip})
    count = 0
    headers = {"Content-Type": "application/msgpack"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=120) as client:
        await client.post("/on/v1/embed", content=body)
        stop_at = time.monotonic() + seconds
        started = time.monotonic()

        async def sender() -> None:
            nonlocal count
            while time.monotonic() < stop_at:
                if (await client.post("/on/v1/embed", content=body)).status_code == 200:
                    count += 1

        await asyncio.gather(*(sender() for _ in range(clients)))
        return count / (time.monotonic() - started)


def print_table(rows: list[dict[str, Any]]) -> None:
    header = f"{'robots':>6} {'batching':>8} {'plans/s':>9} {'p50 ms':>9} {'p99 ms':>9} {'batch':>6} {'errors':>6}"
    print(header)
    print("-" * len(header))
    for row in rows:
        print(
            f"{row['robots']:>6} {row['mode']:>8} {row['plans_per_s']:>9.1f} {row['p50_ms']:>9.1f}"
            f" {row['p99_ms']:>9.1f} {row['mean_batch']:>6.1f} {row['errors']:>6}"
        )


def main() -> None:
    args = parse_args()
    from ray import serve

    from serving.codec import pack

    with tempfile.TemporaryDirectory() as folder:
        bundle = make_bundle(Path(folder) / "arm", args.samples, args.iterations)
        model = load_direct(bundle, args.threads, "cuda" if args.planner_gpus > 0 else "cpu")
        url = start_apps(bundle, args, str(Path(folder) / "cache"))
        direct: dict[int, float] = {}
        try:
            rows = []
            for robots in args.fleets:
                # in-process reference, measured now so that it sees the same background load
                direct[robots] = direct_plan_ms(model, robots, repeats=5 if robots <= 16 else 2)
                bodies = [pack(robot_inputs(i)) for i in range(robots)]
                for mode in ("on", "off"):
                    result = asyncio.run(
                        fleet_load(url, f"/{mode}/v1/plan", bodies, args.seconds, args.min_requests)
                    )
                    rows.append({"robots": robots, "mode": mode, **result})
                    print(f"[bench] {robots} robots, batching {mode}: {result}", flush=True)
            embeds_per_s = asyncio.run(embed_load(url, args.seconds))
        finally:
            serve.shutdown()
    summarise(rows, direct, embeds_per_s, args)


def summarise(
    rows: list[dict[str, Any]],
    direct: dict[int, float],
    embeds_per_s: float,
    args: argparse.Namespace,
) -> None:
    print()
    print(f"CEM {args.samples} samples x {args.iterations} iterations, tiny encoder, 64 px")
    print_table(rows)
    print("\nin-process WorldModel.plan, one call for R robots (no Serve):")
    for robots, ms in direct.items():
        print(f"  R={robots:>3}: {ms:8.1f} ms/call = {robots * 1000 / ms:6.1f} plans/s")
    single = next((r for r in rows if r["robots"] == 1 and r["mode"] == "off"), None)
    direct_ms = direct.get(1, float("nan"))
    http_ms = single["p50_ms"] if single else float("nan")
    overhead = http_ms - direct_ms
    print(f"embedding requests/s (8 clients, 2x64x64 clips): {embeds_per_s:.1f}")
    print(f"1 robot, no batching: HTTP p50 {http_ms:.1f} ms vs in-process {direct_ms:.1f} ms")
    print(f"Serve overhead per request: {overhead:.1f} ms")
    by_key = {(r["robots"], r["mode"]): r for r in rows}
    on, off = by_key.get((16, "on")), by_key.get((16, "off"))
    ratio = on["plans_per_s"] / off["plans_per_s"] if on and off else float("nan")
    p99_ok = bool(on and off and on["p99_ms"] <= off["p99_ms"])
    # what one batched call can win on this hardware at all: the in-process cost of 16 robots
    # planned one call each against one call for all 16 (no HTTP, no Serve, same threads)
    ceiling = 16 * direct[1] / direct[16] if 1 in direct and 16 in direct else float("nan")
    print(
        f"16 robots: batching gives {ratio:.2f}x the plans/s (target >= 3); p99 no worse: {p99_ok}"
    )
    print(
        f"batching ceiling on this hardware (in-process, 16 x R=1 vs one R=16 call): {ceiling:.2f}x"
    )
    summary = {
        "rows": rows,
        "direct_plan_ms": {str(robots): ms for robots, ms in direct.items()},
        "serve_overhead_ms": overhead,
        "ceiling_16": ceiling,
        "embed_requests_per_s": embeds_per_s,
        "samples": args.samples,
        "iterations": args.iterations,
        "p99_no_worse_at_16": p99_ok,
        "errors": sum(r["errors"] for r in rows),
        "ratio": ratio,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
