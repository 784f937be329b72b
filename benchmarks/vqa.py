"""VQA serving benchmark: questions answered with and without cross-request batching, over HTTP.

One run on one machine: starts its own local Ray, writes a random-weight VQA model folder (the
tiny encoder, an `mlp` projector and a tiny Llama saved and loaded with `transformers`, as in the
serving tests) and serves it twice side by side, as two Serve applications with identical
replicas: `/on` batches concurrent questions (the product's `VQASettings` batch size and
wait), `/off` answers every request alone. Simulated clients (asyncio + httpx on 127.0.0.1) each ask questions about their own
4-frame 64 px clip back to back for a fixed time (and at least a fixed count); for every client
count both modes run one after the other, so background load drifts equally on both.

Reported per client count and mode: answers/s, generated tokens/s, p50/p99 latency, mean batch
size, the encoder + projector share of a request (`encode_ms / server_ms` from the answers'
timings), the mean wait for a batch (`queue_ms`) and model time of the batch an answer was in
(`encode_ms + generate_ms`), and where the CPU goes: CPU ms per answer of the client (this
process), the HTTP proxy, the ingress replica, the VQA replica and the rest of this benchmark's
own Ray (controller, raylet, GCS, idle replicas), with the cores all of them used; then, in this process without HTTP or Serve, the ceiling: 16 one-question calls in a
row against one 16-question call. The last stdout line is JSON; `ratio` = answers/s batched /
unbatched at 16 clients (target >= 3 at no worse p99), `ceiling` the in-process figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

CLIENTS = (1, 4, 16)
HERE = Path(__file__).resolve().parent
# run as `python benchmarks/vqa.py`: put the repository root first (see benchmarks/serving.py)
if sys.path and Path(sys.path[0] or ".").resolve() == HERE:
    sys.path[0] = str(HERE.parent)

QUESTIONS = ("what colour is the square?", "which way does the ball move?", "what shape is it?")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="time per measurement (8)")
    parser.add_argument("--min-requests", type=int, default=2, help="per client and measurement")
    parser.add_argument("--clients", type=int, nargs="+", default=list(CLIENTS))
    parser.add_argument("--max-new-tokens", type=int, default=16, help="per answer (16)")
    parser.add_argument("--lm-layers", type=int, default=2, help="layers of the tiny Llama (2)")
    parser.add_argument("--vqa-cpus", type=float, default=1.0, help="CPUs of the VQA replica")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the replica")
    parser.add_argument("--vqa-gpus", type=float, default=0.0, help="GPUs per VQA replica")
    return parser.parse_args()


def make_model(root: Path, layers: int) -> Path:
    from tests.serving.tiny_vqa import make_vqa_model

    return make_vqa_model(root, num_layers=layers)


def request_body(index: int, max_new_tokens: int) -> bytes:
    from serving.codec import pack

    rng = np.random.default_rng(index)
    frames = rng.integers(0, 255, (4, 64, 64, 3), dtype=np.uint8)
    question = QUESTIONS[index % len(QUESTIONS)]
    return pack({"frames": frames, "question": question, "max_new_tokens": max_new_tokens})


def read_vqa_reply(response: Any, record: dict[str, list[Any]]) -> None:
    """Tokens, batch size and the encoder + projector share of one `/v1/vqa` reply."""
    reply = response.json()
    timing = reply["timing"]
    record.setdefault("tokens", []).append(reply["num_tokens"])
    record.setdefault("batch", []).append(timing["batch_size"])
    record.setdefault("share", []).append(timing["encode_ms"] / max(timing["server_ms"], 1e-6))
    record.setdefault("queue", []).append(timing["queue_ms"])
    record.setdefault("model", []).append(timing["encode_ms"] + timing["generate_ms"])


# processes of this benchmark's own Ray cluster, by the role their title names
ROLES = (("proxy", "ray::ProxyActor"), ("ingress", ":Ingress"), ("vqa", ":VQA"))


def cpu_seconds(mode: str) -> dict[str, float]:
    """CPU seconds used so far by the client (this process), proxy, ingress, VQA replica, rest.

    Only this process and its descendants count (the local Ray it started), so other sessions'
    clusters on the same machine are left out; `rest` is the other Ray processes of this one.
    """
    import psutil

    me = psutil.Process()
    used = {"client": sum(me.cpu_times()[:2]), "proxy": 0.0, "ingress": 0.0, "vqa": 0.0}
    used["rest"] = 0.0
    for child in me.children(recursive=True):
        try:
            title = " ".join(child.cmdline())
            seconds = sum(child.cpu_times()[:2])
        except psutil.Error:
            continue
        role = next((r for r, mark in ROLES if mark in title), "rest")
        if role in ("ingress", "vqa") and f"vqa-{mode}:" not in title:
            role = "rest"  # the other application's idle replicas
        used[role] += seconds
    return used


async def load(url: str, path: str, bodies: list[bytes], seconds: float, minimum: int) -> dict:
    from benchmarks.load import closed_loop, latency_figures

    mode = path.strip("/").split("/")[0]
    before, started = cpu_seconds(mode), time.monotonic()
    record, elapsed = await closed_loop(url, path, bodies, seconds, minimum, read_vqa_reply)
    after, wall = cpu_seconds(mode), time.monotonic() - started
    figures = latency_figures(record, elapsed)
    answered = figures["requests"] + len(bodies)  # the CPU window includes the warm-up round
    cpu = {role: (after[role] - before[role]) * 1000 / answered for role in after}
    return {
        "answers_per_s": figures.pop("per_s"),
        "tokens_per_s": float(np.sum(record["tokens"])) / elapsed,
        **figures,
        "mean_batch": float(np.mean(record["batch"])),
        "encode_share": float(np.mean(record["share"])),
        "queue_ms": float(np.mean(record["queue"])),
        "model_ms": float(np.mean(record["model"])),
        "cpu_ms": cpu,  # CPU ms per answer by process role
        "cores": sum(after[r] - before[r] for r in after) / wall,
    }


def start_apps(model: Path, bundle: Path, args: argparse.Namespace, cache: str) -> str:
    import ray
    from ray import serve

    from flows.local_serve import free_port
    from serving.app import build_app
    from serving.config import ServingConfig
    from serving.proxy_guard import start_options

    port = free_port()
    cpus = 2 * (os.cpu_count() or 2) + 2  # two apps' replicas; threads are set explicitly
    ray.init(
        address="local",  # its own cluster, never another session's `ray start` head
        num_cpus=cpus,
        num_gpus=1 if args.vqa_gpus > 0 else 0,
        include_dashboard=False,
        log_to_driver=False,
    )
    configs = {}
    small = {"num_replicas": 1, "num_cpus": 0.1}
    for mode in ("on", "off"):
        config = ServingConfig.model_validate(
            {
                "models": {"arm": str(bundle)},
                "cache_dir": cache,
                "torch_threads": args.threads,
                "planner": small,
                "embedder": small,
                "ingress": {**small, "max_ongoing_requests": 512},
                "vqa": {
                    "model": str(model),
                    "max_new_tokens": max(64, args.max_new_tokens),
                    # the product's batch size and wait (VQASettings), on or off
                    "batching": {"enabled": mode == "on"},
                    "replicas": {
                        "num_replicas": 1,
                        "num_cpus": args.vqa_cpus,
                        "num_gpus": args.vqa_gpus,
                    },
                },
            }
        )
        configs[mode] = config
    # the guarded proxy `vjepa serve` runs (header limits, 503 for a dead replica)
    serve.start(**start_options(configs["on"], port))
    for mode, config in configs.items():
        serve.run(build_app(config), name=f"vqa-{mode}", route_prefix=f"/{mode}")
    return f"http://127.0.0.1:{port}"


def make_bundle(folder: Path) -> Path:
    """The ingress always serves planning: a tiny world model bundle to go with it."""
    import torch

    from modeling.ac_predictor import ACPredictor, ac_tiny
    from modeling.encoder import VisionEncoder, tiny
    from modeling.world_model import WorldModel, WorldModelSpec, save_world_model

    torch.manual_seed(0)
    cem = {"num_samples": 16, "num_elites": 4, "num_iterations": 1, "horizon": 2}
    spec = WorldModelSpec(64, 2, 2, (-1.0, -1.0), (1.0, 1.0), cem=cem)
    predictor = ACPredictor(ac_tiny(action_dim=2, state_dim=2))
    model = WorldModel(VisionEncoder(tiny()), predictor, spec)
    return save_world_model(folder, model)


def in_process(model: Path, cache: str, args: argparse.Namespace, clients: int) -> dict:
    """p50 ms of `clients` one-question `answer_batch` calls in a row vs one call for all.

    The most cross-request batching can give on this hardware, without HTTP or Serve.
    """
    import statistics

    import torch

    from serving.codec import decode_array, unpack
    from serving.config import VQASettings
    from serving.vqa_model import answer_batch, load_vqa
    from serving.vqa_schemas import VQA_FIELDS, VQARequest

    torch.set_num_threads(args.threads)
    loaded = load_vqa(str(model), VQASettings(), cache, torch.device("cpu"))
    requests = []
    for index in range(clients):
        message = unpack(request_body(index, args.max_new_tokens), VQA_FIELDS)
        frames = decode_array("frames", message["frames"])[None]
        requests.append(VQARequest(frames=frames, question=message["question"],
                                   max_new_tokens=args.max_new_tokens))  # fmt: skip
    answer_batch(loaded, requests[:1])  # warm
    singles, batched = [], []
    for _ in range(3):
        started = time.perf_counter()
        for request in requests:
            answer_batch(loaded, [request])
        singles.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        answer_batch(loaded, requests)
        batched.append((time.perf_counter() - started) * 1000)
    single, batch = statistics.median(singles), statistics.median(batched)
    return {"singles_ms": single, "batch_ms": batch, "ceiling": single / batch}


def print_table(rows: list[dict]) -> None:
    header = (
        f"{'clients':>7} {'mode':>4} {'answers/s':>9} {'tokens/s':>8} {'p50 ms':>7} "
        f"{'p99 ms':>7} {'batch':>5} {'enc+proj':>8} {'queue':>6} {'model':>6} {'n':>4} {'err':>3}"
        "  CPU ms/answer: client proxy ingress vqa rest (cores)"
    )
    print(header)
    for row in rows:
        cpu = row["cpu_ms"]
        print(
            f"{row['clients']:>7} {row['mode']:>4} {row['answers_per_s']:>9.2f} "
            f"{row['tokens_per_s']:>8.1f} {row['p50_ms']:>7.0f} {row['p99_ms']:>7.0f} "
            f"{row['mean_batch']:>5.1f} {row['encode_share']:>8.1%} {row['queue_ms']:>6.0f} "
            f"{row['model_ms']:>6.0f} {row['requests']:>4} {row['errors']:>3}  "
            + " ".join(f"{cpu[r]:.1f}" for r in ("client", "proxy", "ingress", "vqa", "rest"))
            + f" ({row['cores']:.2f})"
        )


def main() -> None:
    args = parse_args()
    from ray import serve

    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="vjepa-vqa-bench-") as folder:
        root = Path(folder)
        model = make_model(root / "model", args.lm_layers)
        url = start_apps(model, make_bundle(root / "bundle"), args, str(root / "cache"))
        try:
            for clients in args.clients:
                bodies = [request_body(i, args.max_new_tokens) for i in range(clients)]
                for mode in ("on", "off"):
                    measured = asyncio.run(
                        load(url, f"/{mode}/v1/vqa", bodies, args.seconds, args.min_requests)
                    )
                    rows.append({"clients": clients, "mode": mode, **measured})
                    print(f"measured {clients} clients, batching {mode}", file=sys.stderr)
        finally:
            serve.shutdown()
        ceiling = in_process(model, str(root / "cache"), args, max(args.clients))
    print_table(rows)
    print(
        f"in process, {max(args.clients)} questions: one at a time {ceiling['singles_ms']:.0f} ms, "
        f"one batch {ceiling['batch_ms']:.0f} ms: ceiling {ceiling['ceiling']:.2f}x"
    )
    by_key = {(row["clients"], row["mode"]): row for row in rows}
    top = max(args.clients)
    on, off = by_key[(top, "on")], by_key[(top, "off")]
    single = by_key.get((1, "off"), off)
    summary = {
        "benchmark": "vqa",
        "clients": top,
        "ratio": on["answers_per_s"] / off["answers_per_s"],
        "p99_on_ms": on["p99_ms"],
        "p99_off_ms": off["p99_ms"],
        "tokens_per_s_on": on["tokens_per_s"],
        "tokens_per_s_off": off["tokens_per_s"],
        "encode_share_single": single["encode_share"],
        "ceiling": ceiling["ceiling"],
        "max_new_tokens": args.max_new_tokens,
        "rows": rows,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
