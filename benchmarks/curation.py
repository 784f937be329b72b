"""Curation throughput: the Ray Data pipeline's decoded frames/s against raw ffmpeg on the same files.

Baseline (the raw limit): `ffmpeg` decodes every file through the same filter
graph (fps resample, short-side scale, centre crop) to `-f null`, with
`--parallel` processes at a time (default 2, one per core, the parallelism the
pipeline gets from a 2-CPU Ray). Pipeline: plan + Ray Data stages (probe and
filter on ffmpeg's input header, decode to rgb24 clips, quality, part writer) +
shard assembly, i.e. everything `vjepa curate` does except starting Ray and
Prefect. Ray is started once with `--parallel` CPUs and warmed up on one file
before timing. Each side runs `--repeats` times, interleaved, and the best time
counts (the machine is shared).

Peer: `video2dataset` 1.3.0 (PyPI) on the same files in the same run, configured for the same
frame rate, resize and crop: its subsampler stages as its `SubsetWorker` chains them
(`benchmarks/peers/video2dataset_stages.py`, run in the peer's own venv `.venv-peer`, made by
`benchmarks/setup_peer.sh`), `--parallel` worker processes. Its frames are the frames of the
mp4s it writes.

Headline `ratio` = pipeline frames/s / peer frames/s (goal >= 2); `ratio_raw` = pipeline
frames/s / baseline frames/s (goal >= 0.7).

CPU efficiency = baseline CPU s / pipeline CPU s, less sensitive to load than
wall time: the baseline counts its ffmpeg processes only, the pipeline this
process and all its descendants (Ray workers and their ffmpegs, raylet, GCS,
Ray Data's actors), split by part in the table.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
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
ROOT = Path(__file__).resolve().parents[1]
PEER_PYTHON = ROOT / ".venv-peer" / "bin" / "python"
PEER_SCRIPT = ROOT / "benchmarks" / "peers" / "video2dataset_stages.py"
TASK_WORKERS = ("ray::IDLE", "ray::Map")  # process names of Ray workers (idle, running a map task)


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


def process_cpu(root: int) -> dict[int, tuple[str, float, float]]:
    """`pid -> (name, own CPU s, reaped children's CPU s)` for `root` and all its descendants.

    Linux /proc only (user + system time). The machine is shared, so wall time is
    noisy; CPU time says how much work each side needs whatever else runs."""
    parents: dict[int, int] = {}
    found: dict[int, tuple[str, float, float]] = {}
    ticks = os.sysconf("SC_CLK_TCK")
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # exited meanwhile
            continue
        name, fields = text.split("(", 1)[1].rsplit(")", 1)[0], text.rsplit(")", 1)[1].split()
        pid = int(stat.parent.name)
        parents[pid] = int(fields[1])
        own, children = (sum(int(v) for v in fields[i : i + 2]) / ticks for i in (11, 13))
        found[pid] = (name, own, children)
    family, grew = {root}, True
    while grew:
        children_pids = {pid for pid, parent in parents.items() if parent in family} - family
        family |= children_pids
        grew = bool(children_pids)
    return {pid: found[pid] for pid in family if pid in found}


def cpu_by_part(before: dict[int, tuple[str, float, float]], root: int) -> dict[str, float]:
    """CPU seconds spent since `before` by: ffmpeg (reaped children of the Ray workers), the
    Ray Data workers' Python, the driver (Ray Data executor, assembly) and Ray's services."""
    parts = dict.fromkeys(("ffmpeg", "worker Python", "driver", "Ray services"), 0.0)
    for pid, (name, own, children) in process_cpu(root).items():
        _, own_before, children_before = before.get(pid, (name, 0.0, 0.0))
        own, children = own - own_before, children - children_before
        if pid == root:
            parts["driver"] += own + children
        elif name.startswith(TASK_WORKERS):
            parts["worker Python"] += own
            parts["ffmpeg"] += children
        else:  # raylet, gcs_server, Ray Data's stats/autoscaling actors, agents, log monitor
            parts["Ray services"] += own + children
    return parts


def _baseline_one(path: Path, config: CurationConfig) -> int:
    """Decode one file to `-f null`; returns the number of output frames ffmpeg reports."""
    command = ffmpeg_command(str(path), config, ["-f", "null", "-progress", "pipe:1", "-"])
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    frames = [
        line.split("=", 1)[1] for line in result.stdout.splitlines() if line.startswith("frame=")
    ]
    return int(frames[-1])


@dataclasses.dataclass
class Run:
    seconds: float
    frames: int
    cpu_s: float
    phases: dict[str, float] = dataclasses.field(default_factory=dict)  # seconds
    cpu_parts: dict[str, float] = dataclasses.field(default_factory=dict)  # CPU seconds


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_baseline(paths: list[Path], config: CurationConfig, parallel: int) -> Run:
    """`parallel` ffmpeg processes at a time; CPU = the ffmpeg processes only (reaped children)."""
    cpu, started = children_cpu(), time.perf_counter()
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        frames = sum(pool.map(lambda p: _baseline_one(p, config), paths))
    return Run(time.perf_counter() - started, frames, children_cpu() - cpu)


def run_peer(paths: list[Path], config: CurationConfig, parallel: int, output: Path) -> Run:
    """video2dataset's stages in its own venv; seconds as the peer times its pool, CPU = the
    peer process and everything under it (its workers and their ffmpegs, all reaped)."""
    shutil.rmtree(output, ignore_errors=True)
    command = [
        str(PEER_PYTHON), str(PEER_SCRIPT), "--output", str(output), "--fps", str(config.fps),
        "--size", str(config.size), "--parallel", str(parallel), *map(str, paths),
    ]  # fmt: skip
    cpu = children_cpu()
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    if figures["errors"]:
        raise RuntimeError(f"the peer failed on some videos: {figures['errors'][:3]}")
    return Run(figures["seconds"], figures["frames"], children_cpu() - cpu)


def run_pipeline(paths: list[Path], config: CurationConfig, output: Path) -> Run:
    """Plan, Ray Data stages and assembly; CPU = this process and every descendant (Ray)."""
    shutil.rmtree(output, ignore_errors=True)
    root = os.getpid()
    before, started = process_cpu(root), time.perf_counter()
    plan = plan_curation([str(p) for p in paths], str(output), config)
    results = run_pending(plan)
    staged = time.perf_counter()
    manifest = assemble_dataset(plan.output, config, plan.sources, plan.missing, results)
    ended = time.perf_counter()
    parts = cpu_by_part(before, root)
    return Run(
        ended - started,
        manifest["counts"]["num_clips"] * config.frames,
        sum(parts.values()),
        {"stages": staged - started, "assembly": ended - staged},
        parts,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=24)
    parser.add_argument("--seconds", type=float, default=12.0, help="length of each video")
    parser.add_argument("--parallel", type=int, default=2, help="ffmpeg processes = Ray CPUs")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each side; best counts")
    parser.add_argument(
        "--workdir", default=str(Path(tempfile.gettempdir()) / "vjepa-bench-curation")
    )
    args = parser.parse_args()
    if not PEER_PYTHON.exists():
        raise SystemExit(f"the peer is not installed: run benchmarks/setup_peer.sh ({PEER_PYTHON})")

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
    peer: list[Run] = []
    for _ in range(args.repeats):
        baseline.append(run_baseline(paths, config, args.parallel))
        pipeline.append(run_pipeline(paths, config, workdir / "curated"))
        peer.append(run_peer(paths, config, args.parallel, workdir / "peer"))
    report(args, config, baseline, pipeline, peer)


def report(
    args: argparse.Namespace,
    config: CurationConfig,
    baseline: list[Run],
    pipeline: list[Run],
    peer: list[Run],
) -> None:
    best_base = min(baseline, key=lambda run: run.seconds)
    best_pipe = min(pipeline, key=lambda run: run.seconds)
    best_peer = min(peer, key=lambda run: run.seconds)
    base_fps, pipe_fps = best_base.frames / best_base.seconds, best_pipe.frames / best_pipe.seconds
    peer_fps, peer_cpu = best_peer.frames / best_peer.seconds, min(r.cpu_s for r in peer)
    base_cpu, pipe_cpu = min(r.cpu_s for r in baseline), min(r.cpu_s for r in pipeline)
    lean = min(pipeline, key=lambda run: run.cpu_s)
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
    for name, run, fps, cpu in (
        ("ffmpeg -> -f null (raw limit)", best_base, base_fps, base_cpu),
        ("vjepa curate pipeline (Ray Data)", best_pipe, pipe_fps, pipe_cpu),
        ("video2dataset 1.3.0 subsamplers", best_peer, peer_fps, peer_cpu),
    ):
        print(f"{name:<34}{run.seconds:>9.2f}{run.frames:>8}{fps:>10.1f}{cpu:>8.1f}")
    phases = ", ".join(f"{name} {value:.2f} s" for name, value in best_pipe.phases.items())
    print(f"pipeline phases (fastest run): {phases}")
    parts = ", ".join(f"{name} {value:.2f}" for name, value in lean.cpu_parts.items())
    print(f"pipeline CPU s by part (leanest run): {parts}")
    print(
        f"ratio pipeline / raw limit: {pipe_fps / base_fps:.3f} frames/s (target >= 0.7); CPU efficiency {base_cpu / pipe_cpu:.3f}"
    )
    print(f"ratio pipeline / video2dataset: {pipe_fps / peer_fps:.3f} frames/s (target >= 2)")
    figures: dict[str, Any] = {
        "videos": args.videos,
        "parallel": args.parallel,
        "baseline_seconds": round(best_base.seconds, 3),
        "baseline_frames": best_base.frames,
        "baseline_fps": round(base_fps, 2),
        "baseline_cpu_s": round(base_cpu, 2),
        "pipeline_seconds": round(best_pipe.seconds, 3),
        "pipeline_frames": best_pipe.frames,
        "pipeline_fps": round(pipe_fps, 2),
        "pipeline_cpu_s": round(pipe_cpu, 2),
        "pipeline_phases_s": {k: round(v, 3) for k, v in best_pipe.phases.items()},
        "pipeline_cpu_parts_s": {k: round(v, 2) for k, v in lean.cpu_parts.items()},
        "baseline_runs_s": [round(r.seconds, 3) for r in baseline],
        "pipeline_runs_s": [round(r.seconds, 3) for r in pipeline],
        "cpu_efficiency": round(base_cpu / pipe_cpu, 4),
        "peer": "video2dataset 1.3.0",
        "peer_seconds": round(best_peer.seconds, 3),
        "peer_frames": best_peer.frames,
        "peer_fps": round(peer_fps, 2),
        "peer_cpu_s": round(peer_cpu, 2),
        "peer_runs_s": [round(r.seconds, 3) for r in peer],
        "load_average": round(os.getloadavg()[0], 2),
        "ratio_raw": round(pipe_fps / base_fps, 4),
        "ratio": round(pipe_fps / peer_fps, 4),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
