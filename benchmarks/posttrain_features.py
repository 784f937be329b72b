"""Post-training steps/s on features the frozen encoder computed once vs re-encoding every step.

The same `PosttrainJob` (tiny encoder, tiny AC predictor, PointReach windows of 3 frames at
64 px, batch 16) takes `--steps` optimizer steps twice, interleaved `--repeats` times:

- re-encoding: each batch carries its frames and `train_step` runs the frozen encoder on them
  (what post-training did before the feature cache);
- cached: the batches come from a `FeaturePool` built once (`tasks.training.feature_cache`),
  so `train_step` only runs the predictor. The one-off encoding is timed separately.

Torch runs `--threads` threads (default 1, a Ray Train worker's share). Headline `ratio` =
cached steps/s / re-encoding steps/s (target >= 3).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from modeling.checkpoints import save_model
from modeling.encoder import VisionEncoder, tiny
from tasks.planning.rollouts import numpy_batches
from tasks.robot.collect import CollectConfig, collect
from tasks.robot.windows import iter_windows
from tasks.training.feature_cache import encode_pool
from tasks.training.job import WorkerContext
from tasks.training.posttrain import PosttrainJob
from tasks.training.posttrain_config import PosttrainConfig, describe_dataset


def steps_per_second(job: PosttrainJob, batches: list[dict[str, np.ndarray]], steps: int) -> float:
    started = time.perf_counter()
    for step in range(steps):
        job.train_step(batches[step % len(batches)], step)
    return steps / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--episodes", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="vjepa-bench-posttrain-") as scratch:
        folder = Path(scratch)
        collect(CollectConfig("vjepa/PointReach-v0", args.episodes, str(folder / "data"),
                              steps_per_episode=20, fps=10))  # fmt: skip
        torch.manual_seed(0)
        save_model(VisionEncoder(tiny()), folder / "encoder.safetensors")
        config = PosttrainConfig(str(folder / "encoder.safetensors"), str(folder / "data"),
                                 str(folder / "out"), batch_size=16)  # fmt: skip
        facts = describe_dataset(config)
        job = PosttrainJob(config, facts, WorkerContext.local(), config.encoder)
        windows = list(
            iter_windows(config.trajectories, facts.windows(config), facts.train_episodes)
        )
        raw = [b for b in numpy_batches(windows, 16) if len(b["frames"]) == 16]
        started = time.perf_counter()
        pool = encode_pool(lambda batch: job.tensors(batch)[0].numpy(), numpy_batches(windows, 64))
        encode_seconds = time.perf_counter() - started
        cached = list(pool.batches(16, seed=0)(0))
        best = {"reencode": 0.0, "cached": 0.0}
        for _ in range(args.repeats):
            best["reencode"] = max(best["reencode"], steps_per_second(job, raw, args.steps))
            best["cached"] = max(best["cached"], steps_per_second(job, cached, args.steps))
    ratio = best["cached"] / best["reencode"]
    print(f"{'path':12s} {'steps/s':>9s}")
    print(f"{'re-encoding':12s} {best['reencode']:9.2f}")
    print(f"{'cached':12s} {best['cached']:9.2f}")
    print(f"one-off encoding of {len(pool)} windows: {encode_seconds:.1f} s")
    print(json.dumps({"ratio": round(ratio, 2), "reencode_steps_per_s": round(best["reencode"], 2),
                      "cached_steps_per_s": round(best["cached"], 2), "windows": len(pool),
                      "encode_seconds": round(encode_seconds, 2), "threads": args.threads}))  # fmt: skip


if __name__ == "__main__":
    main()
