"""The peer side of `benchmarks/curation.py`: video2dataset's own subsampler stages on local files.

Runs in the peer's environment (`.venv-peer`, made by `benchmarks/setup_peer.sh`): video2dataset
1.3.0 pins torch 2.1.2 with CUDA wheels, so it cannot share the project's venv. Its readers
fetch URLs (yt-dlp, HTTP) and its package initialiser imports every optional stage (torch,
transformers, OpenCV, scenedetect), so this script loads the `video2dataset.subsamplers` modules
it uses without that initialiser and chains them exactly as video2dataset's `SubsetWorker`
does for each sample: broadcast (`NoOpSubsampler`) -> `ResolutionSubsampler` (scale the
height to `size`, centre-crop `size x size`) -> `FrameSubsampler` (`fps`), each stage one ffmpeg
run that re-encodes an mp4 (video2dataset's output format), then the clip bytes to a file, as
its writer stores them. `--parallel` worker processes, as its multiprocessing distributor.

Prints one JSON line: seconds, output frames (counted after timing), videos, failures.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import time
import types
from multiprocessing import Pool
from pathlib import Path
from typing import Any


def load_stages() -> Any:
    """video2dataset's subsampler modules, without running its package initialisers."""
    if "video2dataset" not in sys.modules:  # once per process
        spec = importlib.util.find_spec("video2dataset")
        assert spec is not None and spec.origin is not None, "video2dataset is not installed"
        root = Path(spec.origin).parent
        for name, folder in (
            ("video2dataset", root),
            ("video2dataset.subsamplers", root / "subsamplers"),
        ):
            package = types.ModuleType(name)
            package.__path__ = [str(folder)]
            sys.modules[name] = package
    from video2dataset.subsamplers.frame_subsampler import FrameSubsampler
    from video2dataset.subsamplers.noop_subsampler import NoOpSubsampler
    from video2dataset.subsamplers.resolution_subsampler import ResolutionSubsampler

    return NoOpSubsampler, ResolutionSubsampler, FrameSubsampler


def process(job: tuple[str, str, float, int]) -> str:
    """One sample through the stages, as `SubsetWorker.process_shard` runs them; "" or an error."""
    source, output, fps, size = job
    noop, resolution, frame = load_stages()
    stages = [resolution(resize_mode="scale,crop", video_size=size), frame(frame_rate=fps)]
    streams: dict[str, list[bytes]] = {"video": [Path(source).read_bytes()]}
    streams, metas, error = noop()(streams, {"key": Path(source).stem})
    for stage in stages:
        streams, metas, error = stage(streams, metas)
        if error is not None:
            return f"{source}: {error}"
    for index, clip in enumerate(streams["video"]):
        Path(output, f"{Path(source).stem}_{index}.mp4").write_bytes(clip)
    return ""


def count_frames(path: Path) -> int:
    result = subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0",
         "-show_entries", "stream=nb_read_frames", "-of", "csv=p=0", str(path)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return int(result.stdout.strip() or 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", required=True)
    parser.add_argument("--fps", type=float, required=True)
    parser.add_argument("--size", type=int, required=True)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("videos", nargs="+")
    args = parser.parse_args()
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    jobs = [(video, str(output), args.fps, args.size) for video in args.videos]
    load_stages()  # fail before timing if the peer is not installed
    with Pool(args.parallel) as pool:
        started = time.perf_counter()
        errors = [error for error in pool.imap(process, jobs) if error]
        seconds = time.perf_counter() - started
    frames = sum(count_frames(path) for path in output.glob("*.mp4"))
    print(json.dumps({"seconds": seconds, "frames": frames, "videos": len(jobs), "errors": errors}))


if __name__ == "__main__":
    main()
