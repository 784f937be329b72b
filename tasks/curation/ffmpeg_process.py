"""One ffmpeg process per source: its input header as soon as ffmpeg prints it, then its frames.

ffmpeg runs with `-loglevel level+info`, so every stderr line says its level. A reader thread
keeps the input dump (the probe facts, see `tasks.curation.probe.parse_header`) and the error
lines (the reasons a decode failed) and drops the rest; the header is complete at the line
`Stream mapping:`, which ffmpeg prints before it decodes the first frame, or when stderr ends
(ffmpeg could not open the input or map a video stream). Stdout is a widened pipe of raw frames.
A watchdog kills a process that runs past its time limit.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import re
import subprocess
import threading
from types import TracebackType
from typing import IO

PIPE_BYTES = 1 << 20
MAX_ERROR_LINES = 50
ERROR_LEVELS = ("panic", "fatal", "error")
HEADER_END = ("Stream mapping:", "Output #0", "Press [q]")
# "[info] text" or "[h264 @ 0x55d1c0] [error] text"; lines without a tag continue the last one.
LEVEL_TAG = re.compile(r"^(?:\[[^\]]* @ 0x[0-9a-fA-F]+\] )?\[(?P<level>[a-z]+)\] ")


def widen_pipe(fd: int, size: int = PIPE_BYTES) -> None:
    """Grow a pipe's kernel buffer (Linux; default 64 KiB, less than one frame) so ffmpeg
    is not stalled every few kilobytes waiting for this process to be scheduled."""
    # AttributeError: not Linux; OSError: above /proc/sys/fs/pipe-max-size.
    with contextlib.suppress(AttributeError, OSError):
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, size)


class FfmpegProcess:
    """A running ffmpeg (`command` must log with `-loglevel level+info`); a context manager that
    kills the process on exit if it still runs."""

    def __init__(self, command: list[str], timeout_s: float) -> None:
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert self.process.stdout is not None
        self.stdout: IO[bytes] = self.process.stdout
        widen_pipe(self.stdout.fileno())
        self.header: list[str] = []  # the input dump, level tags removed
        self.timed_out = threading.Event()
        self._errors: collections.deque[str] = collections.deque(maxlen=MAX_ERROR_LINES)
        self._header_read = threading.Event()
        self._reader = threading.Thread(target=self._read_stderr, name="ffmpeg-stderr", daemon=True)
        self._reader.start()
        self._watchdog = threading.Timer(timeout_s, self._expire)
        self._watchdog.daemon = True
        self._watchdog.start()

    def _expire(self) -> None:
        self.timed_out.set()
        self.process.kill()

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        level, in_header = "info", False
        for raw in self.process.stderr:
            line = raw.decode(errors="replace").rstrip()
            tag = LEVEL_TAG.match(line)
            if tag:
                level, line = tag["level"], line[tag.end() :]
            if level in ERROR_LEVELS:
                self._errors.append(line)
            elif level == "info" and not self._header_read.is_set():
                if line.startswith(HEADER_END):
                    self._header_read.set()
                elif in_header or line.startswith("Input #0"):
                    in_header = True
                    self.header.append(line)
        self._header_read.set()

    def wait_header(self, timeout_s: float) -> bool:
        """Block until the input dump is complete (or stderr ended); False on timeout."""
        return self._header_read.wait(timeout_s)

    def finish(self) -> tuple[int, str]:
        """Wait for the exit; returns the exit status and ffmpeg's error lines."""
        returncode = self.process.wait()
        self._reader.join()
        return returncode, "\n".join(self._errors)

    def close(self) -> None:
        self._watchdog.cancel()
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self._reader.join(timeout=10)
        self.stdout.close()
        if self.process.stderr is not None:
            self.process.stderr.close()

    def __enter__(self) -> FfmpegProcess:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
