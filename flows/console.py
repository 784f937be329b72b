"""What a `vjepa` command shows on the console, and where everything else goes.

By default a command's console carries only the platform's own words: progress (a bar per
stage on a terminal, a few plain lines otherwise; `tasks.progress`), warnings that matter,
errors and the summary on stdout. Everything else written to stderr while the command runs
(Ray, Ray Data, Ray Train, Ray Serve and Prefect logs, Python warnings, the output of the
processes they start) goes to a log file in the run's folder:

- `vjepa demo`: `WORKDIR/logs/vjepa.log`;
- `curate`, `pretrain`, `probe`, `posttrain`, `align` with a local `--output`: `OUTPUT/logs/vjepa.log`;
- other commands (and remote outputs): `~/.cache/vjepa/logs/<command>.log`, or `$VJEPA_LOG_DIR`.

`-v/--verbose` keeps today's streams: nothing is redirected and progress prints plain lines.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

from tasks import progress

LOG_NAME = "vjepa.log"
LOG_DIR_ENV = "VJEPA_LOG_DIR"
LOG_TO_DRIVER_ENV = "VJEPA_LOG_TO_DRIVER"  # read by tasks.runtime.ensure_ray
# Commands whose --output is the run's own folder (a log beside the results is safe there;
# `collect` and `sample-videos` refuse or replace a non-empty output, so they log elsewhere).
RUN_FOLDER_COMMANDS = frozenset({"curate", "pretrain", "probe", "posttrain", "align"})


def add_output_arguments(parser: argparse.ArgumentParser) -> None:
    """`-v/--verbose` and `--log-file` on every command."""
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="stream Ray and Prefect logs to the console instead of the log file",
    )
    parser.add_argument(
        "--log-file", metavar="PATH", help="where Ray and Prefect logs go (default: the run folder)"
    )


def log_path(args: argparse.Namespace) -> str:
    """The log file of this run (see the module docstring)."""
    if getattr(args, "log_file", None):
        return os.path.abspath(os.path.expanduser(args.log_file))
    workdir = getattr(args, "workdir", None)
    output = getattr(args, "output", None)
    folder = None
    if workdir and "://" not in workdir:
        folder = workdir
    elif args.command in RUN_FOLDER_COMMANDS and isinstance(output, str) and "://" not in output:
        folder = output
    if folder is not None:
        return os.path.join(os.path.abspath(os.path.expanduser(folder)), "logs", LOG_NAME)
    base = os.environ.get(LOG_DIR_ENV) or os.path.join("~", ".cache", "vjepa", "logs")
    return os.path.join(os.path.abspath(os.path.expanduser(base)), f"{args.command}.log")


def _open_log(path: str) -> tuple[TextIO, str]:
    """The log file opened for appending; falls back to the cache folder when `path` cannot be."""
    for candidate in (path, os.path.join(os.path.expanduser("~/.cache/vjepa/logs"), LOG_NAME)):
        try:
            os.makedirs(os.path.dirname(candidate), exist_ok=True)
            return open(candidate, "a", buffering=1, encoding="utf-8", errors="replace"), candidate
        except OSError:
            continue
    return open(os.devnull, "w"), os.devnull


class WarningsToConsole(logging.Handler):
    """The "vjepa" loggers' warnings (layers that cannot import `tasks`: a retried request in
    `serving.client`) on the console, once per message template."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)

    def emit(self, record: logging.LogRecord) -> None:
        progress.warn(record.getMessage(), key=f"{record.name}:{record.msg}")


# Ray's driver prints what the raylet pushes to it ("N PYTHON worker processes have been
# started", a retried Serve controller task) to `sys.stdout` from these threads, even with
# log_to_driver off: on a quiet console they belong in the log, not beside the summary.
RAY_PRINTING_THREADS = ("ray_listen_error_messages", "ray_print_logs")


class ThreadRoutedStdout(io.TextIOBase):
    """`sys.stdout` that sends the writes of Ray's printing threads to the log file."""

    def __init__(self, stdout: TextIO, log: TextIO) -> None:
        super().__init__()
        self.stdout, self.log = stdout, log

    def _sink(self) -> TextIO:
        name = threading.current_thread().name
        return self.log if name.startswith(RAY_PRINTING_THREADS) else self.stdout

    def write(self, text: str) -> int:
        return self._sink().write(text)

    def flush(self) -> None:
        self.stdout.flush()
        self.log.flush()

    def isatty(self) -> bool:  # asked at exit too (colorama), when the stream may be closed
        try:
            return self.stdout.isatty()
        except ValueError:
            return False

    def fileno(self) -> int:
        return self.stdout.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.stdout, "encoding", "utf-8")


def _real_stderr_fd() -> int | None:
    """Descriptor 2 when `sys.stderr` writes to it (not a test's capture object)."""
    try:
        return 2 if sys.stderr.fileno() == 2 else None
    except (AttributeError, OSError, io.UnsupportedOperation):
        return None


@contextmanager
def console_output(args: argparse.Namespace) -> Iterator[str | None]:
    """Route output for one command run; yields the log file's path (None with --verbose)."""
    # Quiet, Ray's driver would print its workers' stdout to our stdout, where the summary goes:
    # off; their output stays in Ray's session logs (`/tmp/ray/session_latest/logs`).
    verbose = bool(getattr(args, "verbose", False))
    before = os.environ.get(LOG_TO_DRIVER_ENV)
    os.environ[LOG_TO_DRIVER_ENV] = "1" if verbose else "0"
    try:
        with _routed(args, verbose) as path:
            yield path
    finally:
        if before is None:
            os.environ.pop(LOG_TO_DRIVER_ENV, None)
        else:
            os.environ[LOG_TO_DRIVER_ENV] = before


@contextmanager
def _routed(args: argparse.Namespace, verbose: bool) -> Iterator[str | None]:
    if verbose:
        progress.activate(sys.stderr, bars=False)
        try:
            yield None
        finally:
            progress.deactivate()
        return
    log, path = _open_log(log_path(args))
    log.write(
        f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} vjepa {args.command} (pid {os.getpid()})\n"
    )
    saved_stderr, fd = sys.stderr, _real_stderr_fd()
    saved_fd = None
    if fd is not None:  # child processes and C++ logs write to the descriptor itself
        sys.stderr.flush()
        saved_fd = os.dup(fd)
        os.dup2(log.fileno(), fd)
        console: TextIO = os.fdopen(os.dup(saved_fd), "w", buffering=1, encoding="utf-8")
    else:
        console = saved_stderr
    sys.stderr = log
    saved_stdout = sys.stdout
    sys.stdout = ThreadRoutedStdout(saved_stdout, log)  # type: ignore[assignment]
    progress.activate(console)
    handler, platform = WarningsToConsole(), logging.getLogger("vjepa")
    platform.addHandler(handler)
    try:
        yield path
    finally:
        platform.removeHandler(handler)
        progress.deactivate()
        sys.stdout.flush()
        sys.stdout, sys.stderr = saved_stdout, saved_stderr
        if saved_fd is not None:
            sys.stderr.flush()
            os.dup2(saved_fd, fd)  # type: ignore[arg-type]
            os.close(saved_fd)
            console.close()
        log.flush()  # left open: handlers that libraries made during the run still point at it
