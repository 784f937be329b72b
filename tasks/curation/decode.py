"""Decode stage: one ffmpeg filter graph per source, streamed straight into clip tensors.

ffmpeg resamples to the clip frame rate, resizes the short side to `size` and
centre-crops to `size x size`, then writes rgb24 frames to a pipe. The stage
reads whole clips with `readinto` into preallocated uint8 arrays, so no Python
code runs per frame and each byte is copied once. It yields batches of at most
`clips_per_batch` clips (bounded memory for long videos) and finally one *end
row* per source that says how many clips it emitted or why it failed; the
pipeline uses end rows to commit a source only when all its clips are written.
"""

from __future__ import annotations

import contextlib
import fcntl
import queue
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Generator, Iterator
from typing import IO, Any, TypeVar

import numpy as np

from tasks.curation.config import CurationConfig
from tasks.curation.probe import explain_stderr, media_url

Item = TypeVar("Item")
Result = TypeVar("Result")
PIPE_BYTES = 1 << 20
CLIP_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "vjepa-platform/curation/clip")


def clip_id(source: str, start_s: float, end_s: float) -> str:
    """Deterministic clip id: uuid5 of the source URI and the clip's span in seconds."""
    return str(uuid.uuid5(CLIP_NAMESPACE, f"{source}#{start_s:.6f}-{end_s:.6f}"))


def filter_graph(config: CurationConfig) -> str:
    """fps resample -> short side to `size` -> centre crop `size x size` (also used by the benchmark)."""
    size = config.size
    return (
        f"fps={config.fps},"
        f"scale={size}:{size}:force_original_aspect_ratio=increase:flags={config.scale_flags},"
        f"crop={size}:{size}"
    )


def ffmpeg_command(url: str, config: CurationConfig, output: list[str]) -> list[str]:
    """The decode command for `url`; `output` is e.g. `["-f", "rawvideo", "pipe:1"]`."""
    limit: list[str] = []
    if config.max_clips_per_source is not None:
        frames = (config.max_clips_per_source - 1) * config.stride + config.frames
        limit = ["-frames:v", str(frames)]
    strict = ["-xerror"] if config.strict_decode else []
    return [
        "ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", *strict,
        "-i", url, "-map", "0:v:0", "-an", "-sn", "-dn",
        "-vf", filter_graph(config), "-pix_fmt", "rgb24", *limit, *output,
    ]  # fmt: skip


def widen_pipe(fd: int, size: int = PIPE_BYTES) -> None:
    """Grow a pipe's kernel buffer (Linux; default 64 KiB, less than one frame) so ffmpeg
    is not stalled every few kilobytes waiting for this process to be scheduled."""
    # AttributeError: not Linux; OSError: above /proc/sys/fs/pipe-max-size.
    with contextlib.suppress(AttributeError, OSError):
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, size)


def _read_exact(stream: IO[bytes], buffer: np.ndarray) -> bool:
    """Fill `buffer` from `stream`; False if the stream ended first."""
    view = memoryview(buffer.reshape(-1))  # type: ignore[arg-type]
    filled = 0
    while filled < len(view):
        count = stream.readinto(view[filled:])  # type: ignore[attr-defined]
        if not count:
            return False
        filled += count
    return True


def read_ahead(items: Generator[Item, None, Result], depth: int) -> Generator[Item, None, Result]:
    """Run `items` in a background thread up to `depth` items ahead; re-raises its errors."""
    buffer: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(entry: tuple[str, Any]) -> None:
        while not stop.is_set():
            try:
                buffer.put(entry, timeout=0.1)
                return
            except queue.Full:
                continue

    def produce() -> None:
        try:
            while not stop.is_set():
                put(("item", next(items)))
        except StopIteration as end:
            put(("done", end.value))
        except BaseException as error:  # handed to the consumer thread
            put(("error", error))

    threading.Thread(target=produce, name="decode-read-ahead", daemon=True).start()
    try:
        while True:
            kind, value = buffer.get()
            if kind == "item":
                yield value
            elif kind == "done":
                return value  # type: ignore[no-any-return]
            else:
                raise value
    finally:
        stop.set()  # an early close: the producer ends when the caller kills ffmpeg


class DecodeStage:
    """Source rows in, clip rows out (plus one end row per source); a generator over batches."""

    def __init__(self, config: CurationConfig) -> None:
        self.config = config

    def __call__(self, batch: dict[str, np.ndarray]) -> Iterator[dict[str, np.ndarray]]:
        for index in range(len(batch["source"])):
            source, key = str(batch["source"][index]), str(batch["key"][index])
            stage, reason = str(batch["error_stage"][index]), str(batch["error_reason"][index])
            if stage:
                yield self._end_row(source, key, 0, stage, reason)
                continue
            yield from self._decode(source, key)

    def _decode(self, source: str, key: str) -> Iterator[dict[str, np.ndarray]]:
        emitted = 0
        try:
            for clips, first in self._clips(source):
                yield self._clip_rows(source, key, clips, first)
                emitted += len(clips)
        except DecodeError as error:
            yield self._end_row(source, key, emitted, "decode", str(error))
            return
        except Exception as error:  # one odd file must not fail the whole dataset
            reason = f"unexpected error while decoding: {type(error).__name__}: {error}"
            yield self._end_row(source, key, emitted, "decode", reason)
            return
        yield self._end_row(source, key, emitted, "", "")

    def _clips(self, source: str) -> Iterator[tuple[np.ndarray, int]]:
        """Batches `(N, T, H, W, C)` of clips and the index of the batch's first clip."""
        config = self.config
        try:
            url = media_url(source)
        except (OSError, ValueError) as error:
            raise DecodeError(f"cannot open the source: {error}") from error
        command = ffmpeg_command(url, config, ["-f", "rawvideo", "pipe:1"])
        with tempfile.TemporaryFile() as stderr:
            process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr)
            assert process.stdout is not None
            widen_pipe(process.stdout.fileno())
            timed_out = threading.Event()

            def expire() -> None:
                timed_out.set()
                process.kill()

            watchdog = threading.Timer(config.decode_timeout_s, expire)
            watchdog.start()
            try:
                # Read ahead in a thread: ffmpeg keeps decoding while later stages work on a batch.
                count = yield from read_ahead(self._read_clips(process.stdout), depth=2)
                returncode = process.wait()
            finally:
                watchdog.cancel()
                if process.poll() is None:
                    process.kill()
                    process.wait()
            stderr.seek(0)
            message = stderr.read().decode(errors="replace")
        if timed_out.is_set():
            raise DecodeError(f"decoding timed out after {config.decode_timeout_s:.0f}s")
        self._check_outcome(returncode, message, count)

    def _check_outcome(self, returncode: int, message: str, count: int) -> None:
        if returncode != 0 and (self.config.strict_decode or count == 0):
            where = f"after {count} clips" if count else "before the first clip"
            raise DecodeError(f"ffmpeg failed {where}: {explain_stderr(message)}")
        if count == 0:
            raise DecodeError(
                f"the video decodes to fewer than {self.config.frames} frames at {self.config.fps} fps"
            )

    def _read_clips(self, stream: IO[bytes]) -> Generator[tuple[np.ndarray, int], None, int]:
        """Yield full batches as they fill; returns the number of clips read."""
        config = self.config
        frames, stride = config.frames, config.stride
        skip = np.empty((max(stride - frames, 0), *config.clip_shape[1:]), dtype=np.uint8)
        batch = np.empty((config.clips_per_batch, *config.clip_shape), dtype=np.uint8)
        last = batch[0]  # (T, H, W, C), the previous clip (overlapping clips reuse its tail)
        count = filled = 0
        limit = config.max_clips_per_source or np.iinfo(np.int64).max
        while count < limit:
            slot = batch[filled]  # (T, H, W, C), read in place: no extra copy
            if count == 0 or stride >= frames:
                ok = (count == 0 or _read_exact(stream, skip)) and _read_exact(stream, slot)
            else:
                slot[: frames - stride] = last[stride:]
                ok = _read_exact(stream, slot[frames - stride :])
            if not ok:
                break
            last, filled, count = slot, filled + 1, count + 1
            if filled == len(batch):
                yield batch, count - filled
                batch, filled = np.empty_like(batch), 0
        if filled:
            yield batch[:filled], count - filled
        stream.read()  # drain the tail (less than one clip) so ffmpeg can exit
        return count

    def _clip_rows(
        self, source: str, key: str, clips: np.ndarray, first: int
    ) -> dict[str, np.ndarray]:
        config = self.config
        indices = np.arange(first, first + len(clips), dtype=np.int32)
        starts = indices * config.stride / config.fps
        ends = starts + config.frames / config.fps
        return {
            "source": np.array([source] * len(clips)),
            "key": np.array([key] * len(clips)),
            "is_end": np.zeros(len(clips), dtype=bool),
            "clip_index": indices,
            "clip_id": np.array([clip_id(source, s, e) for s, e in zip(starts, ends, strict=True)]),
            "start_s": starts.astype(np.float64),
            "end_s": ends.astype(np.float64),
            "frames": clips,  # (N, T, H, W, C) uint8
            "num_clips": np.full(len(clips), -1, dtype=np.int32),
            "error_stage": np.array([""] * len(clips)),
            "error_reason": np.array([""] * len(clips)),
        }

    def _end_row(
        self, source: str, key: str, emitted: int, stage: str, reason: str
    ) -> dict[str, np.ndarray]:
        row = self._clip_rows(
            source, key, np.zeros((1, *self.config.clip_shape), dtype=np.uint8), 0
        )
        row.update(
            is_end=np.ones(1, dtype=bool),
            clip_index=np.full(1, -1, dtype=np.int32),
            clip_id=np.array([""]),
            num_clips=np.full(1, emitted, dtype=np.int32),
            error_stage=np.array([stage]),
            error_reason=np.array([reason]),
        )
        return row


class DecodeError(RuntimeError):
    """A source that could not be decoded into clips (the message is the rejected reason)."""
