"""Training throughput and the data path's share, for pretraining and post-training.

For each job the same model takes `--steps` optimizer steps twice, interleaved
`--repeats` times:

- in memory: one batch, already collated, fed again and again (the ceiling);
- real data path: the batches come from the curated shards (pretraining) or the
  LeRobot windows (post-training) through Ray Data's `streaming_split`, the
  iterator Ray Train's `get_dataset_shard` hands to a worker, with the same
  shuffle buffer, collate and in-memory caching of small datasets as the jobs.

Headline `ratio` = pretraining clips/s on the real data path / in memory
(target >= 0.9). Peak memory is this process's max RSS. Inputs are made once
(sample videos -> curate; PointReach -> collect) in a temporary folder; that
set-up is not timed. Ray runs locally with 2 CPUs.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from tasks.clips import collate_clips, decoded_bytes, read_clips
from tasks.training.job import WorkerContext
from tasks.training.launch import cache_if_small
from tasks.training.pretrain import PretrainConfig, PretrainJob


def vjepa(*args: str) -> None:
    """Run a `vjepa` command of this environment (set-up only, not timed)."""
    command = [sys.executable, "-m", "flows.cli", *args]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def make_inputs(folder: Path, videos: int, episodes: int) -> tuple[str, str]:
    vjepa("sample-videos", "--output", str(folder / "videos"), "--count", str(videos))
    vjepa("curate", "--input", str(folder / "videos"), "--output", str(folder / "curated"),
          "--fps", "4", "--frames", "8", "--size", "64")  # fmt: skip
    vjepa("collect", "--env", "vjepa/PointReach-v0", "--episodes", str(episodes),
          "--steps-per-episode", "20", "--output", str(folder / "trajectories"))  # fmt: skip
    return str(folder / "curated"), str(folder / "trajectories")


def timed(step: Callable[[Any, int], Any], batches: Iterator[Any], steps: int) -> float:
    """Seconds for `steps` steps (after one untimed warm-up step)."""
    step(next(batches), 0)
    started = time.perf_counter()
    for index in range(steps):
        step(next(batches), index + 1)
    return time.perf_counter() - started


def forever(make_epoch: Callable[[], Any]) -> Iterator[Any]:
    while True:
        yield from make_epoch()


def pretrain_case(data: str, batch_size: int) -> tuple[Callable[[Any, int], Any], Any, Any]:
    """(train_step, in-memory batches, real-path batches) for pretraining."""
    job = PretrainJob(
        PretrainConfig(data=data, output="unused", batch_size=batch_size), WorkerContext.local()
    )
    dataset = read_clips(data, columns=["clip_id", "shape", "frames"])
    (shard,) = cache_if_small(dataset, decoded_bytes(data)).streaming_split(1)

    def epoch() -> Iterator[torch.Tensor]:
        for batch in shard.iter_batches(
            batch_size=batch_size, batch_format="numpy", drop_last=True,
            local_shuffle_buffer_size=4 * batch_size,
        ):  # fmt: skip
            yield collate_clips(batch)["video"]

    fixed = next(epoch())
    return job.train_step, forever(lambda: [fixed]), forever(epoch)


def posttrain_case(
    encoder: str, trajectories: str, batch_size: int
) -> tuple[Callable[[Any, int], Any], Any, Any]:
    """(train_step, in-memory batches, real-path batches) for AC post-training."""
    from tasks.robot.windows import window_dataset
    from tasks.training.posttrain import PosttrainConfig, PosttrainJob, describe_dataset

    config = PosttrainConfig(
        encoder=encoder, trajectories=trajectories, output="unused", batch_size=batch_size, fps=5.0
    )
    facts = describe_dataset(config)
    job = PosttrainJob(config, facts, WorkerContext.local(), encoder)
    dataset = window_dataset(trajectories, facts.windows(config), facts.train_episodes)
    (shard,) = cache_if_small(dataset, facts.decoded_bytes(config)).streaming_split(1)

    def epoch() -> Iterator[dict[str, Any]]:
        yield from shard.iter_batches(
            batch_size=batch_size, batch_format="numpy", drop_last=True,
            local_shuffle_buffer_size=4 * batch_size,
        )  # fmt: skip

    fixed = next(epoch())
    return job.train_step, forever(lambda: [fixed]), forever(epoch)


def measure(case: tuple[Any, Any, Any], steps: int, repeats: int, batch: int) -> dict[str, float]:
    step, memory, real = case
    memory_s, real_s = [], []
    for _ in range(repeats):  # interleaved: the machine is shared
        memory_s.append(timed(step, memory, steps))
        real_s.append(timed(step, real, steps))
    best_memory, best_real = min(memory_s), min(real_s)
    return {
        "in_memory_clips_per_s": steps * batch / best_memory,
        "data_path_clips_per_s": steps * batch / best_real,
        "in_memory_step_ms": 1000 * best_memory / steps,
        "data_path_step_ms": 1000 * best_real / steps,
        "ratio": best_memory / best_real,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=20, help="timed steps per measurement")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--videos", type=int, default=24)
    parser.add_argument("--episodes", type=int, default=12)
    parser.add_argument("--workdir", help="keep inputs here (default: a temporary folder)")
    args = parser.parse_args()

    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    with tempfile.TemporaryDirectory(prefix="vjepa-bench-training-") as scratch:
        folder = Path(args.workdir or scratch)
        data, trajectories = make_inputs(folder, args.videos, args.episodes)
        encoder_path = folder / "encoder.safetensors"
        from modeling.checkpoints import save_model
        from modeling.encoder import VisionEncoder, tiny

        save_model(VisionEncoder(tiny()), encoder_path)
        results = {
            "pretrain": measure(
                pretrain_case(data, args.batch_size), args.steps, args.repeats, args.batch_size
            ),
            "posttrain": measure(
                posttrain_case(str(encoder_path), trajectories, args.batch_size),
                args.steps,
                args.repeats,
                args.batch_size,
            ),
        }
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{'job':10s} {'in-memory clips/s':>18s} {'data-path clips/s':>18s} {'ratio':>6s}")
    for name, figures in results.items():
        print(
            f"{name:10s} {figures['in_memory_clips_per_s']:18.2f} "
            f"{figures['data_path_clips_per_s']:18.2f} {figures['ratio']:6.3f}"
        )
    print(f"peak RSS {peak_mib:.0f} MiB; torch threads {torch.get_num_threads()}; CPU, tiny preset")
    summary = {"ratio": results["pretrain"]["ratio"], "peak_rss_mib": round(peak_mib, 1), **results}
    print(json.dumps(summary, sort_keys=True))


if __name__ == "__main__":
    main()
