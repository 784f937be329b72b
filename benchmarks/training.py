"""Training throughput and the data path's share, for pretraining and post-training.

For each job the same model takes `--steps` optimizer steps three times,
interleaved `--repeats` times:

- in memory: the batches of one epoch, collated once and held in memory, fed
  in a cycle (the ceiling: the same clips as the real path, only their delivery
  differs; with one repeated batch, as before, the real path measured faster
  than the ceiling in 2 of 3 runs under load, an effect we did not pin
  down);
- real data path: the batches come from the curated shards (pretraining) or the
  LeRobot windows (post-training) through Ray Data's `streaming_split`, the
  iterator Ray Train's `get_dataset_shard` hands to a worker, with the jobs'
  shuffle buffer, collate (`job.clip_batches`), in-memory caching of small
  datasets and the loop's reader (`loop.batch_stream`), measured twice:
  - `inline`: read in the step's thread (`prefetch=0`, what the jobs did before);
  - `prefetched`: read ahead in a background thread (the jobs' `LoopConfig.prefetch`).

Headline `ratio` = pretraining clips/s on the prefetched data path / in memory
(target >= 0.9). Torch runs `--threads` threads (default 1: what a Ray Train
worker with one CPU gets, `OMP_NUM_THREADS=1`). Peak memory is this process's
max RSS. Inputs are made once (sample videos -> curate; PointReach -> collect)
in a temporary folder; that set-up is not timed. Ray runs locally with 2 CPUs.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import torch

from tasks.clips import decoded_bytes, read_clips
from tasks.training.job import WorkerContext, clip_batches
from tasks.training.launch import cache_if_small
from tasks.training.loop import LoopConfig, Position, batch_stream
from tasks.training.pretrain import PretrainConfig, PretrainJob


def vjepa(*args: str) -> None:
    """Run a `vjepa` command of this environment (set-up only, not timed)."""
    command = [sys.executable, "-m", "flows.cli", *args]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def make_inputs(folder: Path, videos: int, episodes: int) -> tuple[str, str]:
    """Curated clips and PointReach trajectories under `folder` (kept from an earlier run)."""
    if (folder / "curated" / "manifest.json").exists() and (folder / "trajectories").exists():
        return str(folder / "curated"), str(folder / "trajectories")
    vjepa("sample-videos", "--output", str(folder / "videos"), "--count", str(videos))
    vjepa("curate", "--input", str(folder / "videos"), "--output", str(folder / "curated"),
          "--fps", "4", "--frames", "8", "--size", "64")  # fmt: skip
    vjepa("collect", "--env", "vjepa/PointReach-v0", "--episodes", str(episodes),
          "--steps-per-episode", "20", "--output", str(folder / "trajectories"))  # fmt: skip
    return str(folder / "curated"), str(folder / "trajectories")


def timed(step: Callable[[Any, int], Any], batches: Iterator[Any], steps: int) -> float:
    """Seconds for `steps` steps, after one untimed warm-up step.

    The batches a prefetching reader piled up while other measurements ran are dropped first,
    so timing starts in the steady state (what the reader makes during one step).
    """
    for _ in range(LoopConfig(1).prefetch):
        next(batches)
    step(next(batches), 0)
    started = time.perf_counter()
    for index in range(steps):
        step(next(batches), index + 1)
    return time.perf_counter() - started


def forever(make_epoch: Callable[[], Any]) -> Iterator[Any]:
    while True:
        yield from make_epoch()


def split(dataset: Any) -> Any:
    """One `streaming_split` shard: what `get_dataset_shard` gives a Ray Train worker."""
    (shard,) = dataset.streaming_split(1)
    return shard


def readers(dataset: Any, make_source: Callable[[Any], Source]) -> dict[str, Iterator[Any]]:
    """The loop's reader over a fresh shard of `dataset`, inline and prefetched."""
    found: dict[str, Iterator[Any]] = {}
    for name, prefetch in (("inline", 0), ("prefetched", LoopConfig(1).prefetch)):
        stream = batch_stream(make_source(split(dataset)), Position(), prefetch)
        found[name] = (batch for _, _, batch in stream)
    return found


Source = Callable[[int], Iterable[Any]]
Case = tuple[Callable[[Any, int], Any], Iterator[Any], dict[str, Iterator[Any]]]


def pretrain_case(data: str, batch_size: int) -> Case:
    """(train_step, in-memory batches, real-path batches by reader) for pretraining."""
    config = PretrainConfig(data=data, output="unused", batch_size=batch_size)
    job = PretrainJob(config, WorkerContext.local())
    dataset = read_clips(data, columns=["clip_id", "shape", "frames"])
    dataset = cache_if_small(dataset, decoded_bytes(data))

    def make_source(shard: Any) -> Source:
        return clip_batches(shard, batch_size, shuffle_buffer=config.shuffle_buffer)

    held = list(make_source(split(dataset))(0))
    return job.train_step, forever(lambda: held), readers(dataset, make_source)


def posttrain_case(encoder: str, trajectories: str, batch_size: int) -> Case:
    """(train_step, in-memory batches, real-path batches by reader) for AC post-training."""
    from tasks.robot.windows import window_dataset
    from tasks.training.posttrain import PosttrainJob
    from tasks.training.posttrain_config import PosttrainConfig, describe_dataset

    config = PosttrainConfig(
        encoder=encoder, trajectories=trajectories, output="unused", batch_size=batch_size, fps=5.0
    )
    facts = describe_dataset(config)
    job = PosttrainJob(config, facts, WorkerContext.local(), encoder)
    dataset = window_dataset(trajectories, facts.windows(config), facts.train_episodes)
    dataset = cache_if_small(dataset, facts.decoded_bytes(config))

    def make_source(shard: Any) -> Source:
        def epoch(index: int) -> Iterator[dict[str, Any]]:  # as posttrain.window_batches
            yield from shard.iter_batches(
                batch_size=batch_size, batch_format="numpy", drop_last=True,
                local_shuffle_buffer_size=4 * batch_size, local_shuffle_seed=index,
            )  # fmt: skip

        return epoch

    held = list(make_source(split(dataset))(0))
    return job.train_step, forever(lambda: held), readers(dataset, make_source)


def measure(case: Case, steps: int, repeats: int, batch: int) -> dict[str, float]:
    step, memory, real = case
    sources = {"in_memory": memory, **real}
    seconds: dict[str, list[float]] = {name: [] for name in sources}
    order = list(sources)
    for _ in range(repeats):  # interleaved, the order rotating: the machine is shared
        for name in order:
            seconds[name].append(timed(step, sources[name], steps))
        order = order[1:] + order[:1]
    best = {name: min(values) for name, values in seconds.items()}
    figures = {f"{name}_clips_per_s": steps * batch / value for name, value in best.items()}
    figures |= {f"{name}_step_ms": 1000 * value / steps for name, value in best.items()}
    figures["inline_ratio"] = best["in_memory"] / best["inline"]
    figures["ratio"] = best["in_memory"] / best["prefetched"]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=10, help="timed steps per measurement")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--videos", type=int, default=24)
    parser.add_argument("--episodes", type=int, default=12)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--workdir", help="keep inputs here (default: a temporary folder)")
    args = parser.parse_args()

    import ray

    torch.set_num_threads(args.threads)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    with tempfile.TemporaryDirectory(prefix="vjepa-bench-training-") as scratch:
        folder = Path(args.workdir or scratch)
        folder.mkdir(parents=True, exist_ok=True)
        data, trajectories = make_inputs(folder, args.videos, args.episodes)
        encoder_path = folder / "encoder.safetensors"
        from modeling.checkpoints import save_model
        from modeling.encoder import VisionEncoder, tiny

        save_model(VisionEncoder(tiny()), encoder_path)
        cases = {
            "pretrain": lambda: pretrain_case(data, args.batch_size),
            "posttrain": lambda: posttrain_case(str(encoder_path), trajectories, args.batch_size),
        }
        results = {
            name: measure(make(), args.steps, args.repeats, args.batch_size)
            for name, make in cases.items()
        }
    report(results, args.threads)


def report(results: dict[str, dict[str, float]], threads: int) -> None:
    """The human table, then the JSON line."""
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"{'job':10s} {'in-memory':>10s} {'inline':>10s} {'prefetched':>10s} "
        f"{'inline ratio':>12s} {'ratio':>6s}   (clips/s)"
    )
    for name, figures in results.items():
        print(
            f"{name:10s} {figures['in_memory_clips_per_s']:10.2f} "
            f"{figures['inline_clips_per_s']:10.2f} {figures['prefetched_clips_per_s']:10.2f} "
            f"{figures['inline_ratio']:12.3f} {figures['ratio']:6.3f}"
        )
    print(f"peak RSS {peak_mib:.0f} MiB; torch threads {threads}; CPU, tiny preset")
    summary = {"ratio": results["pretrain"]["ratio"], "peak_rss_mib": round(peak_mib, 1), **results}
    print(json.dumps(summary, sort_keys=True))


if __name__ == "__main__":
    main()
