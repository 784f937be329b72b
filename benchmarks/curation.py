"""Curation throughput: the Ray Data pipeline's decoded frames/s against raw ffmpeg on the same files.

Baseline (the raw limit): `ffmpeg` decodes every file through the same filter
graph (fps resample, short-side scale, centre crop) to `-f null`, with
`--parallel` processes at a time (default 2, one per core, the parallelism the
pipeline gets from a 2-CPU Ray). Pipeline: plan + Ray Data stages (probe,
filter, decode to rgb24 clips, quality, part writer) + shard assembly, i.e.
everything `vjepa curate` does except starting Ray and Prefect. Ray is started
once with `--parallel` CPUs and warmed up on one file before timing. Each side
runs `--repeats` times, interleaved, and the best time counts (the machine is
shared). Headline `ratio` = pipeline frames/s / baseline frames/s.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tasks.curation.config import CurationConfig
from tasks.curation.dataset import assemble_dataset
from tasks.curation.decode import ffmpeg_command
from tasks.curation.pipeline import plan_curation, run_pending

SIZES = ("1280x720", "960x540", "854x480")


def make_inputs(folder: Path, count: int, seconds: float) -> list[Path]:
    """`count` h264 videos (mp4 and mkv, several sizes) of ffmpeg's testsrc2 pattern; cached."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        size = SIZES[index % len(SIZES)]
        path = folder / f"bench_{index:03d}_{size}.{'mp4' if index % 2 == 0 else 'mkv'}"
        if not path.exists():
            source = f"testsrc2=size={size}:rate=30,hue=h={index * 15}"
            command = [
                "ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", source, "-t", str(seconds),
                "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", str(path),
            ]  # fmt: skip
            subprocess.run(command, check=True)
        paths.append(path)
    return paths


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds (user + system, incl. reaped children) of `root` and all its descendants.

    Linux /proc only. The machine is shared, so wall time is noisy; CPU time says
    how much work each side needs whatever else runs."""
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    ticks = os.sysconf("SC_CLK_TCK")
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # exited meanwhile
            continue
        pid = int(stat.parent.name)
        parents[pid] = int(fields[1])
        cpu[pid] = sum(int(value) for value in fields[11:15]) / ticks
    family, grew = {root}, True
    while grew:
        children = {pid for pid, parent in parents.items() if parent in family} - family
        family |= children
        grew = bool(children)
    return sum(cpu.get(pid, 0.0) for pid in family)


def _baseline_one(path: Path, config: CurationConfig) -> int:
    """Decode one file to `-f null`; returns the number of output frames ffmpeg reports."""
    command = ffmpeg_command(str(path), config, ["-f", "null", "-progress", "pipe:1", "-"])
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    frames = [
        line.split("=", 1)[1] for line in result.stdout.splitlines() if line.startswith("frame=")
    ]
    return int(frames[-1])


Run = tuple[float, int, float]  # (wall seconds, frames, CPU seconds)


def run_baseline(paths: list[Path], config: CurationConfig, parallel: int) -> Run:
    cpu, started = tree_cpu_seconds(os.getpid()), time.perf_counter()
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        frames = sum(pool.map(lambda p: _baseline_one(p, config), paths))
    return time.perf_counter() - started, frames, tree_cpu_seconds(os.getpid()) - cpu


def run_pipeline(paths: list[Path], config: CurationConfig, output: Path) -> Run:
    shutil.rmtree(output, ignore_errors=True)
    cpu, started = tree_cpu_seconds(os.getpid()), time.perf_counter()
    plan = plan_curation([str(p) for p in paths], str(output), config)
    manifest = assemble_dataset(plan.output, config, plan.sources, plan.missing, run_pending(plan))
    elapsed = time.perf_counter() - started
    return (
        elapsed,
        manifest["counts"]["num_clips"] * config.frames,
        tree_cpu_seconds(os.getpid()) - cpu,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=24)
    parser.add_argument("--seconds", type=float, default=12.0, help="length of each video")
    parser.add_argument("--parallel", type=int, default=2, help="ffmpeg processes = Ray CPUs")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--workdir", default=str(Path(tempfile.gettempdir()) / "vjepa-bench-curation")
    )
    args = parser.parse_args()

    import ray

    config = CurationConfig()  # fps 4, 16 frames, 256 x 256: the CLI defaults
    workdir = Path(args.workdir)
    paths = make_inputs(workdir / "videos", args.videos, args.seconds)
    ray.init(num_cpus=args.parallel, include_dashboard=False, log_to_driver=False)
    from ray.data import DataContext

    DataContext.get_current().enable_progress_bars = False
    run_pipeline(paths[:1], config, workdir / "warmup")  # start the Ray workers, import modules
    baseline: list[Run] = []
    pipeline: list[Run] = []
    for _ in range(args.repeats):
        baseline.append(run_baseline(paths, config, args.parallel))
        pipeline.append(run_pipeline(paths, config, workdir / "curated"))
    report(args, config, baseline, pipeline)


def report(
    args: argparse.Namespace, config: CurationConfig, baseline: list[Run], pipeline: list[Run]
) -> None:
    best_base, best_pipe = min(baseline), min(pipeline)
    base_fps, pipe_fps = best_base[1] / best_base[0], best_pipe[1] / best_pipe[0]
    base_cpu, pipe_cpu = min(r[2] for r in baseline), min(r[2] for r in pipeline)
    print(
        f"{args.videos} videos x {args.seconds:.0f} s (h264, 480p-720p, 30 fps) -> clips {config.clip_shape} at {config.fps} fps"
    )
    print(
        f"parallelism: {args.parallel} ffmpeg processes (baseline) = {args.parallel} Ray CPUs (pipeline); best of {args.repeats}"
    )
    print(
        f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (shared machine)"
    )
    print(f"{'run':<34}{'seconds':>9}{'frames':>8}{'frames/s':>10}{'CPU s':>8}")
    print(
        f"{'ffmpeg -> -f null (raw limit)':<34}{best_base[0]:>9.2f}{best_base[1]:>8}{base_fps:>10.1f}{base_cpu:>8.1f}"
    )
    print(
        f"{'vjepa curate pipeline (Ray Data)':<34}{best_pipe[0]:>9.2f}{best_pipe[1]:>8}{pipe_fps:>10.1f}{pipe_cpu:>8.1f}"
    )
    print(
        f"ratio pipeline / raw limit: {pipe_fps / base_fps:.3f} frames/s (target >= 0.7); CPU efficiency {base_cpu / pipe_cpu:.3f}"
    )
    figures: dict[str, Any] = {
        "videos": args.videos,
        "parallel": args.parallel,
        "baseline_seconds": round(best_base[0], 3),
        "baseline_frames": best_base[1],
        "baseline_fps": round(base_fps, 2),
        "baseline_cpu_s": round(base_cpu, 2),
        "pipeline_seconds": round(best_pipe[0], 3),
        "pipeline_frames": best_pipe[1],
        "pipeline_fps": round(pipe_fps, 2),
        "pipeline_cpu_s": round(pipe_cpu, 2),
        "baseline_runs_s": [round(r[0], 3) for r in baseline],
        "pipeline_runs_s": [round(r[0], 3) for r in pipeline],
        "cpu_efficiency": round(base_cpu / pipe_cpu, 4),
        "load_average": round(os.getloadavg()[0], 2),
        "ratio": round(pipe_fps / base_fps, 4),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
