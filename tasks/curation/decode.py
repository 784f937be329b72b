"""Decode stage: one ffmpeg per source probes it, filters it and streams it into clip tensors.

ffmpeg prints its input header first (the probe facts, see `tasks.curation.probe`); the stage
checks them against the filter rules and kills the process of a source it rejects. Otherwise
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
import queue
import threading
import uuid
from collections.abc import Generator, Iterator
from typing import IO, Any, TypeVar

import numpy as np

from tasks.curation.config import CurationConfig
from tasks.curation.ffmpeg_process import FfmpegProcess
from tasks.curation.probe import (
    FilterRules,
    explain_stderr,
    media_url,
    parse_header,
    unreadable_reason,
)

Item = TypeVar("Item")
Result = TypeVar("Result")
CLIP_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "vjepa-platform/curation/clip")
HDR_TRANSFERS = {"smpte2084": "PQ", "arib-std-b67": "HLG"}
# Linear light in float, BT.709 primaries, Hable's curve, back to BT.709 video range.
TONEMAP = (
    "zscale=t=linear:npl=100,format=gbrpf32le,zscale=p=bt709,"
    "tonemap=tonemap=hable:desat=0,zscale=t=bt709:m=bt709:r=tv,format=yuv420p"
)
DEINTERLACE = "bwdif=mode=send_frame:deint=interlaced"  # one frame per frame: timing unchanged


def clip_id(source: str, start_s: float, end_s: float) -> str:
    """Deterministic clip id: uuid5 of the source URI and the clip's span in seconds."""
    return str(uuid.uuid5(CLIP_NAMESPACE, f"{source}#{start_s:.6f}-{end_s:.6f}"))


def conversions(facts: dict[str, Any]) -> tuple[str, tuple[str, ...]]:
    """The filters a source needs before the clip graph (deinterlace, HDR tone mapping), from
    its probe facts, and the notes that record every conversion made (also 10-bit -> 8-bit).

    Rotation needs neither: ffmpeg applies the display matrix itself (autorotate)."""
    fmt, color = str(facts.get("pixel_format", "")), str(facts.get("color", ""))
    filters: list[str] = []
    notes: list[str] = []
    order = next((o for o in ("top first", "bottom first", "top coded first") if o in color), "")
    if order:
        filters.append(DEINTERLACE)
        notes.append(f"interlaced source ({order}) deinterlaced with bwdif")
    transfer = next((name for name in HDR_TRANSFERS if name in color), "")
    if transfer:
        filters.append(TONEMAP)
        notes.append(f"HDR source ({HDR_TRANSFERS[transfer]}, {fmt}) tone-mapped to SDR BT.709")
    elif any(depth in fmt for depth in ("p10", "p12", "p14", "p16", "p010", "p016")):
        notes.append(f"{fmt} source (more than 8 bits) converted to 8-bit RGB")
    return ",".join(filters), tuple(notes)


def filter_graph(config: CurationConfig, prefix: str = "") -> str:
    """[`prefix` conversions ->] fps resample -> short side to `size` -> centre crop
    `size x size` (also used by the benchmark)."""
    size = config.size
    return (
        (f"{prefix}," if prefix else "") + f"fps={config.fps},"
        f"scale={size}:{size}:force_original_aspect_ratio=increase:flags={config.scale_flags},"
        f"crop={size}:{size}"
    )


def ffmpeg_command(
    url: str, config: CurationConfig, output: list[str], prefix: str = ""
) -> list[str]:
    """The decode command for `url`; `output` is e.g. `["-f", "rawvideo", "pipe:1"]`.

    It logs at `info` level with level tags: the input header is the probe (see
    `FfmpegProcess`). `0:V:0` is the first video stream that is not cover art."""
    limit: list[str] = []
    if config.max_clips_per_source is not None:
        frames = (config.max_clips_per_source - 1) * config.stride + config.frames
        limit = ["-frames:v", str(frames)]
    strict = ["-xerror"] if config.strict_decode else []
    return [
        "ffmpeg", "-nostdin", "-hide_banner", "-nostats", "-loglevel", "level+info", *strict,
        "-i", url, "-map", "0:V:0", "-an", "-sn", "-dn",
        "-vf", filter_graph(config, prefix), "-pix_fmt", "rgb24", *limit, *output,
    ]  # fmt: skip


def _read_exact(stream: IO[bytes], buffer: np.ndarray) -> int:
    """Fill `buffer` from `stream`; returns the bytes read (fewer if the stream ended first)."""
    view = memoryview(buffer.reshape(-1))  # type: ignore[arg-type]
    filled = 0
    while filled < len(view):
        count = stream.readinto(view[filled:])  # type: ignore[attr-defined]
        if not count:
            return filled
        filled += count
    return filled


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


class Rejection(Exception):
    """A source that gives no clip: `stage` (probe, filter or decode) and the reason as message."""

    def __init__(self, stage: str, reason: str) -> None:
        super().__init__(reason)
        self.stage = stage


class DecodeStage:
    """Source rows (`source`, `key`, `size`) in; clip rows out plus one end row per source.

    One ffmpeg process per source does the probe, the filter and the decode: its input header
    gives the probe facts, the filter rules run on them while ffmpeg starts decoding, and a
    rejected source's process is killed before it does more work.
    """

    def __init__(self, config: CurationConfig) -> None:
        self.config = config
        self.rules = FilterRules(config)
        self._upcoming: tuple[str, int] | None = None  # the batch's next source and its size
        self._started: dict[str, FfmpegProcess] = {}  # ffmpegs started ahead, by source
        self.notes: tuple[str, ...] = ()  # the current source's conversions (`conversions`)

    def __call__(
        self, batch: dict[str, np.ndarray]
    ) -> Generator[dict[str, np.ndarray], None, None]:
        rows = [
            (str(source), str(key), int(size))
            for source, key, size in zip(batch["source"], batch["key"], batch["size"], strict=True)
        ]
        try:
            for index, (source, key, size) in enumerate(rows):
                self._upcoming = (
                    (rows[index + 1][0], rows[index + 1][2]) if index + 1 < len(rows) else None
                )
                yield from self._decode(source, key, size)
        finally:  # also when the consumer stops early: no ffmpeg outlives the batch
            self._upcoming = None
            for process in self._started.values():
                process.close()
            self._started.clear()

    def _decode(self, source: str, key: str, size: int) -> Iterator[dict[str, np.ndarray]]:
        emitted, self.notes = 0, ()
        try:
            for clips, first in self._clips(source, size):
                yield self._clip_rows(source, key, clips, first)
                emitted += len(clips)
        except Rejection as rejection:
            yield self._end_row(source, key, emitted, rejection.stage, str(rejection))
            return
        except Exception as error:  # one odd file must not fail the whole dataset
            reason = f"unexpected error while decoding: {type(error).__name__}: {error}"
            yield self._end_row(source, key, emitted, "decode", reason)
            return
        yield self._end_row(source, key, emitted, "", "")

    def _clips(self, source: str, size: int) -> Iterator[tuple[np.ndarray, int]]:
        """Batches `(N, T, H, W, C)` of clips and the index of the batch's first clip."""
        config = self.config
        process = self._start(source, size)
        try:
            prefix, self.notes = conversions(self._probe(source, process))
            if prefix:  # filters only the header could ask for: start again with them (rare)
                process.close()
                process = self._open(source, prefix)
                if not process.wait_header(config.probe_timeout_s):
                    raise Rejection("probe", "ffmpeg did not read the header a second time")
            # Read ahead in a thread: ffmpeg keeps decoding while later stages work on a batch.
            count, spare = yield from read_ahead(self._read_clips(process.stdout), depth=2)
            returncode, errors = process.finish()
            self._start_upcoming()
        finally:
            process.close()
        if process.timed_out.is_set():
            raise Rejection("decode", f"decoding timed out after {config.decode_timeout_s:.0f}s")
        self._check_outcome(returncode, errors, count, spare)

    def _start(self, source: str, size: int) -> FfmpegProcess:
        """The source's ffmpeg: the one `_start_upcoming` started ahead, else a new one."""
        early = self._started.pop(source, None)
        if early is not None:
            return early
        if size == 0:
            raise Rejection("probe", "empty file (0 bytes)")
        return self._open(source)

    def _open(self, source: str, prefix: str = "") -> FfmpegProcess:
        try:
            url = media_url(source)
        except (OSError, ValueError) as error:
            raise Rejection("probe", f"cannot open the source: {error}") from error
        command = ffmpeg_command(url, self.config, ["-f", "rawvideo", "pipe:1"], prefix)
        return FfmpegProcess(command, self.config.decode_timeout_s)

    def _start_upcoming(self) -> None:
        """Start the batch's next ffmpeg once this source's has exited, so that it opens its file
        while this source's end row goes through the later stages and Ray: no idle core."""
        if self._upcoming is not None and self._upcoming[0] not in self._started:
            source, size = self._upcoming
            with contextlib.suppress(Exception):  # a failure shows again on the source's turn
                self._started[source] = self._start(source, size)

    def _probe(self, source: str, process: FfmpegProcess) -> dict[str, Any]:
        """Probe and filter on ffmpeg's input header; raises `Rejection` for an unusable source."""
        timeout = self.config.probe_timeout_s
        if not process.wait_header(timeout):
            raise Rejection("probe", f"ffmpeg did not read the file's header within {timeout:.0f}s")
        facts = parse_header(process.header)
        if facts is None:  # ffmpeg could not open it: it exits by itself, with its reasons
            _, errors = process.finish()
            if process.timed_out.is_set():
                raise Rejection(
                    "probe", f"opening timed out after {self.config.decode_timeout_s:.0f}s"
                )
            raise Rejection("probe", unreadable_reason(source, errors))
        if facts["error_reason"]:
            raise Rejection("probe", facts["error_reason"])
        reason = self.rules.check(facts)
        if reason:
            raise Rejection("filter", reason)
        return facts

    def _check_outcome(self, returncode: int, message: str, count: int, spare: int) -> None:
        """`spare`: frames decoded after the last whole clip."""
        if returncode != 0 and (self.config.strict_decode or count == 0):
            where = f"after {count} clips" if count else "before the first clip"
            raise Rejection("decode", f"ffmpeg failed {where}: {explain_stderr(message)}")
        if count == 0 and spare <= 1:  # long enough by its header, yet at most one picture
            # (ffmpeg's fps filter may emit nothing for a lone frame whose duration is unknown)
            raise Rejection(
                "decode",
                "a single-frame video stream (at most one frame decodes): a still picture, "
                "not a moving picture",
            )
        if count == 0:
            raise Rejection(
                "decode",
                f"the video decodes to fewer than {self.config.frames} frames at {self.config.fps} fps",
            )

    def _read_clips(
        self, stream: IO[bytes]
    ) -> Generator[tuple[np.ndarray, int], None, tuple[int, int]]:
        """Yield full batches as they fill; returns the clips read and the frames left over."""
        config = self.config
        frames, stride = config.frames, config.stride
        skip = np.empty((max(stride - frames, 0), *config.clip_shape[1:]), dtype=np.uint8)
        batch = np.empty((config.clips_per_batch, *config.clip_shape), dtype=np.uint8)
        last = batch[0]  # (T, H, W, C), the previous clip (overlapping clips reuse its tail)
        count = filled = partial = 0
        limit = config.max_clips_per_source or np.iinfo(np.int64).max
        while count < limit:
            slot = batch[filled]  # (T, H, W, C), read in place: no extra copy
            if count == 0 or stride >= frames:
                gap = count == 0 or _read_exact(stream, skip) == skip.nbytes
                partial = _read_exact(stream, slot) if gap else 0
                ok = partial == slot.nbytes
            else:
                slot[: frames - stride] = last[stride:]
                partial = _read_exact(stream, slot[frames - stride :])
                ok = partial == slot[frames - stride :].nbytes
            if not ok:
                break
            last, filled, count = slot, filled + 1, count + 1
            if filled == len(batch):
                yield batch, count - filled
                batch, filled = np.empty_like(batch), 0
        if filled:
            yield batch[:filled], count - filled
        tail = stream.read()  # drain the tail (less than one clip) so ffmpeg can exit
        return count, (partial + len(tail)) // int(np.prod(config.clip_shape[1:]))

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
            "note": np.array([""] * len(clips)),
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
            note=np.array(["; ".join(self.notes)]),
        )
        return row
