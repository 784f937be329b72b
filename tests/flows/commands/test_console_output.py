"""What a real `vjepa` process shows: a few lines of its own on stderr, the internals in the log.

Each test runs the CLI as a subprocess, with stderr a pipe (not a terminal), so the console
redirection works on the real file descriptors, as for a user piping into a file.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
INTERNALS = ("INFO", "Flow run", "Task run", "temporary server", "streaming_executor", "Ray")


def _vjepa(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "VJEPA_RAY_JOIN": "0"}  # never another's Ray
    for name in ("RAY_ADDRESS", "PREFECT_API_URL"):  # a fresh process: its own Ray and API
        env.pop(name, None)
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip


def test_curate_prints_its_own_lines_and_logs_ray_and_prefect(
    sample_dir: Path, tmp_path: Path
) -> None:
    video = sorted(sample_dir.glob("sample_*"))[0]
    output = tmp_path / "out"
    done = _vjepa("curate", f"--input={video}", f"--output={output}", "--frames=4", "--size=32")
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stderr.splitlines()
    assert lines and len(lines) <= 6, lines
    assert all(line.startswith("[curate] ") for line in lines), lines
    assert not [line for line in lines if any(word in line for word in INTERNALS)], lines
    assert lines[-1].startswith("[curate] done: 1 sources")
    log = (output / "logs" / "vjepa.log").read_text()
    assert "Started a local Ray instance" in log  # Ray's driver log
    # Prefect: its temporary server's lines (the start line is not logged when the server boots
    # in the background while Ray starts, `flows.startup`; the stop line always is) and the flow's
    assert "temporary server on http://127.0.0.1" in log and "Beginning flow run" in log
    assert f"[curate] 1/1 {video}" in log  # the per-source detail line, in the log only


def test_verbose_streams_prefect_logs_to_the_console(tmp_path: Path) -> None:
    output = tmp_path / "robot"
    args = ("collect", "--env=vjepa/PointReach-v0", "--episodes=1", "--steps-per-episode=3")
    quiet = _vjepa(*args, f"--output={output}", "--log-file", str(tmp_path / "quiet.log"))
    assert quiet.returncode == 0, quiet.stderr[-3000:]
    assert "Beginning flow run" not in quiet.stderr and "[collect] done: 1 episodes" in quiet.stderr
    assert "Beginning flow run" in (tmp_path / "quiet.log").read_text()

    loud = _vjepa(*args, f"--output={tmp_path / 'robot2'}", "-v")
    assert loud.returncode == 0, loud.stderr[-3000:]
    assert "Beginning flow run" in loud.stderr and "[collect] episode 1/1" in loud.stderr


def test_every_command_takes_the_verbose_and_log_file_flags() -> None:
    from flows.cli import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    assert commands
    for name, command in commands.items():  # type: ignore[union-attr]
        flags = command._option_string_actions
        assert {"-v", "--verbose", "--log-file"} <= set(flags), name


def test_a_retried_request_is_one_console_warning_in_our_words(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from flows.console import console_output
    from serving.client import PlannerClient, ServingError

    args = argparse.Namespace(command="eval-planning", verbose=False, log_file=None)
    args.log_file = str(tmp_path / "run.log")
    with console_output(args):
        client = PlannerClient("http://127.0.0.1:9", retries=2, backoff=0.0, timeout=1.0)
        for _ in range(2):  # two failed calls, 4 retries in all
            with pytest.raises(ServingError):
                client.models()
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "warning: retrying requests to http://127.0.0.1:9"
    )


@pytest.mark.usefixtures("ray_cluster")
def test_what_rays_driver_threads_print_goes_to_the_log_not_beside_the_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import threading

    from flows.console import RAY_PRINTING_THREADS, console_output

    # Ray's own error listener runs under the name we route by (it prints raylet warnings).
    names = {thread.name for thread in threading.enumerate()}
    assert RAY_PRINTING_THREADS[0] in names, names
    args = argparse.Namespace(command="serve", verbose=False, log_file=str(tmp_path / "run.log"))
    with console_output(args):
        raylet = threading.Thread(
            target=print, args=("(raylet) WARNING: 8 PYTHON worker processes",),
            name=RAY_PRINTING_THREADS[0],
        )  # fmt: skip
        raylet.start()
        raylet.join()
        print('{"summary": 1}')
    out = capsys.readouterr().out
    assert out == '{"summary": 1}\n', out
    assert "(raylet) WARNING: 8 PYTHON worker processes" in (tmp_path / "run.log").read_text()
