"""Start-up of a one-file `vjepa curate`: where the seconds go, before and after.

Each run is a fresh `vjepa curate` process on one short sample video into a new output,
timed from launch to exit. The stages are read from the timestamps of the run's log file
(`OUTPUT/logs/vjepa.log`): the Prefect temporary server's start line, Ray's
"Started a local Ray instance" line, the flow run's first line.

- `before`: the code before the change (`--before`, default `7b0f311^`, exported with
  `git archive`): the CLI built every command's parser (importing torch), Prefect's temporary
  server started when the flow first needed it, and Ray after it;
- `after`: this tree: one parser, the server boots in a background thread while the command
  starts Ray (`flows.startup`);
- `after, Ray running` (with `--join`): a Ray head started beforehand by `ray start --head`
  on loopback with its own temp folder, joined through `RAY_ADDRESS` (and stopped by killing
  that head's processes: `ray stop` would stop every Ray of the machine).
- `vjepa curate --help`, before and after: the CLI's own imports.

Headline `ratio` = median `before` seconds / median `after` seconds. The machine is shared:
runs are interleaved and `--repeats` of each are kept.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VJEPA = [sys.executable, "-m", "flows.cli"]
STAMP = re.compile(r"(\d\d):(\d\d):(\d\d)[.,](\d{3})")
MARKS = {
    "prefect server": "Starting temporary server",
    "ray started": "Started a local Ray instance",
    "flow begins": "Beginning flow run",
}


def _run(argv: list[str], env: dict[str, str], cwd: Path = REPO) -> tuple[float, int, str]:
    started = time.monotonic()
    env = {**env, "PYTHONPATH": str(cwd)}  # that tree's code, not the editable install's
    done = subprocess.run(argv, cwd=cwd, env=env, check=False, capture_output=True, text=True)
    last = (done.stderr.strip().splitlines() or [""])[-1][:120]
    return time.monotonic() - started, done.returncode, last


def _seconds(line: str) -> float | None:
    match = STAMP.search(line)
    if match is None:
        return None
    hours, minutes, seconds, millis = (int(part) for part in match.groups())
    return hours * 3600 + minutes * 60 + seconds + millis / 1000


def _marks(log: Path, launched: float) -> dict[str, float]:
    """Seconds after launch (wall clock of the day) at which each mark's line was logged."""
    found: dict[str, float] = {}
    for line in log.read_text(errors="replace").splitlines() if log.exists() else []:
        for name, text in MARKS.items():
            stamp = _seconds(line)
            if text in line and name not in found and stamp is not None:
                found[name] = round(stamp - launched, 1)
    return found


def curate_once(
    video: Path, work: Path, name: str, env: dict[str, str], cwd: Path = REPO
) -> dict[str, object]:
    output = work / name
    wall = time.time()
    now = time.localtime(wall)
    launched = now.tm_hour * 3600 + now.tm_min * 60 + now.tm_sec + (wall % 1)
    argv = [*VJEPA, "curate", "--input", str(video), "--output", str(output), "--frames", "4"]
    seconds, code, last = _run([*argv, "--fps", "2", "--size", "32"], env, cwd)
    if code != 0:
        print(f"{name}: exit {code}: {last}", flush=True)
    return {"seconds": round(seconds, 1), **_marks(output / "logs" / "vjepa.log", launched)}


def export_tree(rev: str, folder: Path) -> Path:
    """The repository at `rev`, exported (git archive) into `folder`: the code before a change."""
    folder.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", rev], cwd=REPO, check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    return folder


def start_ray_head(work: Path, env: dict[str, str]) -> str | None:
    """A Ray head on loopback with its own temp folder (no other command joins it by accident).

    Ray gives a new node 30 s to register; a loaded machine can miss that, so it tries twice."""
    port = 6400 + os.getpid() % 500
    ray = str(Path(sys.executable).parent / "ray")
    command = [
        ray,
        "start",
        "--head",
        f"--port={port}",
        "--num-cpus=2",
        "--node-ip-address=127.0.0.1",
    ]
    command += ["--include-dashboard=false", f"--temp-dir={work / 'ray'}"]
    head_env = {**env, "RAY_AUTH_MODE": "disabled"}  # loopback-only, this benchmark's own
    for _ in range(2):
        done = subprocess.run(command, env=head_env, check=False, capture_output=True, text=True)
        if done.returncode == 0:
            return f"127.0.0.1:{port}"
        stop_ray_head(work)
        print(f"ray start failed: {done.stderr.strip().splitlines()[-1:]}", flush=True)
    return None


def stop_ray_head(work: Path) -> None:
    """Kill the processes of this head only (`ray stop` would stop every Ray on the machine)."""
    import psutil

    marker = str(work / "ray")
    for process in psutil.process_iter(["cmdline"]):
        if any(marker in part for part in process.info["cmdline"] or ()):
            with contextlib.suppress(psutil.Error):
                process.kill()


def _row(name: str, runs: list[dict[str, object]]) -> float:
    seconds = [float(run["seconds"]) for run in runs]  # type: ignore[arg-type]
    marks = ", ".join(f"{k} {v}" for k, v in runs[0].items() if k != "seconds")
    print(f"| {name} | {seconds} | {statistics.median(seconds):.1f} | {marks} |", flush=True)
    return statistics.median(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--join", action="store_true", help="also time joining a running Ray")
    parser.add_argument(
        "--before", default="7b0f311^", help="git revision of the code before (default: 7b0f311^)"
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vjepa-startup-"))
    # never someone else's `ray start` cluster (the code before cannot opt out: run it on a
    # machine without one)
    env = {**os.environ, "PYTHONPATH": str(REPO), "VJEPA_RAY_JOIN": "0"}
    env.pop("RAY_ADDRESS", None)
    env.pop("PREFECT_API_URL", None)
    subprocess.run(
        [*VJEPA, "sample-videos", "--output", str(work / "videos"), "--count", "1", "--seconds", "3"],
        cwd=REPO, env=env, check=True, capture_output=True,
    )  # fmt: skip
    video = next((work / "videos").glob("sample_*"))
    old = export_tree(args.before, work / "before-tree")
    imports = [_run([*VJEPA, "curate", "--help"], env)[0] for _ in range(args.repeats)]
    old_imports = [_run([*VJEPA, "curate", "--help"], env, old)[0] for _ in range(args.repeats)]
    print("| run | seconds (each) | median | marks, s after launch (first run) |")
    print("| --- | --- | --- | --- |")
    for name, times in (("before", old_imports), ("after", imports)):
        print(f"| `vjepa curate --help`, {name} | {[round(s, 1) for s in times]} | "
              f"{statistics.median(times):.1f} | |", flush=True)  # fmt: skip
    rows: dict[str, list[dict[str, object]]] = {"before": [], "after": []}
    for repeat in range(args.repeats):
        rows["before"].append(curate_once(video, work, f"b{repeat}", env, old))
        rows["after"].append(curate_once(video, work, f"a{repeat}", env))
    medians = {name: _row(name, runs) for name, runs in rows.items()}
    address = start_ray_head(work, env) if args.join else None
    if address is not None:
        # an explicit RAY_ADDRESS never turns token auth on (Ray 2.60), while `ray start` did if
        # ~/.ray/auth_token exists: say the mode the head got (start_ray_head: disabled)
        joined = {**env, "RAY_ADDRESS": address, "RAY_AUTH_MODE": "disabled"}
        try:
            runs = [curate_once(video, work, f"j{r}", joined) for r in range(args.repeats)]
            medians["joined"] = _row("after, Ray running", runs)
        finally:
            stop_ray_head(work)
    shutil.rmtree(work, ignore_errors=True)
    result = {"ratio": round(medians["before"] / medians["after"], 2), **medians}
    print(json.dumps({**result, "load": round(os.getloadavg()[0], 1)}))


if __name__ == "__main__":
    main()
