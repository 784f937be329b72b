"""Live progress per stage: one bar per stage on a terminal, a few plain lines otherwise.

Work reports with `report(stage, done, total, unit, **figures)` from wherever it runs: the
CLI's own process (curation, collection, planning) or a Ray worker (the training loops).
The CLI turns a display on with `activate`; without one, `report` does nothing, so library
callers and tests see no output. A Ray worker cannot reach the CLI's terminal: its reports
travel through a small relay actor that `relay()` runs around a Ray Train job, polled by a
thread of the CLI's process. `warn` prints a message once, in the platform's own words.

On a terminal each stage is a `tqdm` bar (count, rate, ETA and the latest figures, such as
the loss); elsewhere (CI, a log) a stage prints when it starts, at 25 %, 50 % and 75 %, and
when it ends, never one line per step.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

RELAY_NAME = "vjepa-progress-relay"
FORWARD_INTERVAL_S = 0.5  # a worker sends at most two reports a second per stage
POLL_INTERVAL_S = 0.5
QUARTERS = (0.25, 0.5, 0.75)


def _format_figure(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


@dataclasses.dataclass
class StageState:
    """What a display knows of one stage."""

    total: int
    unit: str
    # wall-clock times of the first and latest events: a Ray worker's events come in batches,
    # so rates and durations use the time each event was made, not when it arrived
    started: float = dataclasses.field(default_factory=time.time)
    last: float = dataclasses.field(default_factory=time.time)
    first: int = 0
    done: int = 0
    figures: dict[str, Any] = dataclasses.field(default_factory=dict)
    quarter: int = 0  # plain lines already printed at 25/50/75 %
    closed: bool = False

    def rate(self) -> float:
        return (self.done - self.first) / max(self.last - self.started, 1e-3)

    def figures_text(self) -> str:
        return ", ".join(f"{key} {_format_figure(value)}" for key, value in self.figures.items())


class Display:
    """Plain lines: start, each quarter, end. The base of the terminal display."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.stages: dict[str, StageState] = {}
        self.warned: set[str] = set()
        self.lock = threading.RLock()

    def update(
        self,
        stage: str,
        done: int,
        total: int,
        unit: str,
        figures: dict[str, Any],
        at: float | None = None,
    ) -> None:
        at = time.time() if at is None else at
        with self.lock:
            state = self.stages.get(stage)
            if state is None or (state.closed and done < state.done):
                state = StageState(total, unit, started=at, last=at, first=done, done=done)
                self.stages[stage] = state
                self.opened(stage, state)
            if state.closed:
                return
            state.total, state.done, state.last = total, done, max(at, state.last)
            state.figures.update(figures)
            self.advanced(stage, state)
            if done >= total:
                state.closed = True
                self.finished(stage, state)

    def opened(self, stage: str, state: StageState) -> None:
        resumed = f" ({state.first} already done)" if state.first else ""
        self.line(f"[{stage}] started: {state.total} {state.unit}s{resumed}")

    def advanced(self, stage: str, state: StageState) -> None:
        crossed = sum(state.done >= q * state.total for q in QUARTERS)
        if crossed <= state.quarter or state.done >= state.total:
            return
        state.quarter = crossed
        rate = state.rate()
        eta = _duration((state.total - state.done) / rate) if rate > 0 else "?"
        figures = f", {state.figures_text()}" if state.figures else ""
        self.line(
            f"[{stage}] {state.done}/{state.total} {state.unit}s{figures} ({rate:.2f}/s, ETA {eta})"
        )

    def finished(self, stage: str, state: StageState) -> None:
        elapsed = state.last - state.started
        figures = f", {state.figures_text()}" if state.figures else ""
        self.line(
            f"[{stage}] done: {state.done} {state.unit}s in {_duration(elapsed)} "
            f"({state.rate():.2f}/s){figures}"
        )

    def line(self, text: str) -> None:
        with self.lock:
            print(text, file=self.stream, flush=True)

    def close(self) -> None:
        """Close what is still open (a failed run leaves its bars where they stopped)."""


class BarDisplay(Display):
    """One `tqdm` bar per stage, left on screen when the stage ends."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self.bars: dict[str, Any] = {}

    def opened(self, stage: str, state: StageState) -> None:
        from tqdm import tqdm

        old = self.bars.pop(stage, None)
        if old is not None:
            old.close()
        columns = _columns(self.stream)  # a pty without a size (0 columns) draws nothing
        self.bars[stage] = tqdm(
            total=state.total, initial=state.done, desc=stage, unit=state.unit,
            file=self.stream, dynamic_ncols=not columns, ncols=columns, mininterval=0.2,
            leave=True,
        )  # fmt: skip

    def advanced(self, stage: str, state: StageState) -> None:
        bar = self.bars[stage]
        bar.total = state.total
        bar.set_postfix_str(state.figures_text(), refresh=False)
        bar.update(state.done - bar.n)

    def finished(self, stage: str, state: StageState) -> None:
        self.bars[stage].close()

    def line(self, text: str) -> None:
        from tqdm import tqdm

        with self.lock:
            tqdm.write(text, file=self.stream)

    def close(self) -> None:
        with self.lock:
            for bar in self.bars.values():
                bar.close()


def _columns(stream: TextIO) -> int | None:
    """None when the terminal knows its width; else `$COLUMNS` or 100."""
    try:
        if os.get_terminal_size(stream.fileno()).columns > 0:
            return None
    except (AttributeError, OSError, ValueError):
        pass
    return int(os.environ.get("COLUMNS") or 100)


_display: Display | None = None


def activate(stream: TextIO, bars: bool | None = None) -> Display:
    """Show progress on `stream` from now on: bars when it is a terminal (or `bars`), else lines."""
    global _display
    if bars is None:
        bars = bool(getattr(stream, "isatty", lambda: False)())
    _display = BarDisplay(stream) if bars else Display(stream)
    return _display


def deactivate() -> None:
    global _display
    if _display is not None:
        _display.close()
    _display = None


def console() -> TextIO:
    """Where user-facing messages go: the display's stream, else stderr."""
    return _display.stream if _display is not None else sys.stderr


def message(text: str) -> None:
    """A line for the user, printed above the bars."""
    if _display is not None:
        _display.line(text)
    else:
        print(text, file=sys.stderr, flush=True)


def warn(text: str, key: str | None = None) -> None:
    """A warning that matters to the user, printed once per `key` (default: the text)."""
    if _display is None:
        if not _forward({"warn": text, "key": key or text}):
            print(f"warning: {text}", file=sys.stderr, flush=True)
        return
    with _display.lock:
        if (key or text) in _display.warned:
            return
        _display.warned.add(key or text)
    _display.line(f"warning: {text}")


def report(stage: str, done: int, total: int, unit: str = "item", /, **figures: Any) -> None:
    """`done` of `total` units of `stage` are finished; `figures` (e.g. loss) are shown beside."""
    at = time.time()
    if _display is not None:
        _display.update(stage, done, total, unit, figures, at)
        return
    event = {"stage": stage, "done": done, "total": total, "unit": unit, "figures": figures}
    _forward({**event, "at": at}, throttle=done < total)


def apply(event: dict[str, Any]) -> None:
    """Show an event that a worker forwarded."""
    if "warn" in event:
        warn(event["warn"], event["key"])
    elif _display is not None:
        args = (event["stage"], event["done"], event["total"], event["unit"], event["figures"])
        _display.update(*args, event.get("at"))


# --- Ray workers -> the CLI's process -------------------------------------------------------

_last_sent: dict[str, float] = {}
_relay_handle: Any = None


def _forward(event: dict[str, Any], throttle: bool = False) -> bool:
    """In a Ray worker, send `event` to the relay when there is one; False outside a worker."""
    global _relay_handle
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized() or not _in_ray_worker(ray):
        return False
    stage = str(event.get("stage", ""))
    now = time.monotonic()
    if throttle and now - _last_sent.get(stage, 0.0) < FORWARD_INTERVAL_S:
        return True
    _last_sent[stage] = now
    try:
        if _relay_handle is None:
            _relay_handle = ray.get_actor(RELAY_NAME)
        _relay_handle.push.remote(event)
    except Exception:  # no relay (no display was asked for) or it is gone: progress is optional
        _relay_handle = None
    return True


def _in_ray_worker(ray: Any) -> bool:
    worker = getattr(getattr(ray, "_private", None), "worker", None)
    return getattr(getattr(worker, "global_worker", None), "mode", None) == getattr(
        worker, "WORKER_MODE", object()
    )


class Relay:
    """The actor between workers and the CLI: holds forwarded events until polled."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def push(self, event: dict[str, Any]) -> None:
        self.events.append(event)

    def drain(self) -> list[dict[str, Any]]:
        events, self.events = self.events, []
        return events


_relay_lock = threading.Lock()
_relay_users = 0
_relay_state: dict[str, Any] = {}


@contextmanager
def relay() -> Iterator[None]:
    """While in the block, workers' reports reach this process's display (no-op without one)."""
    if _display is None:
        yield
        return
    _start_relay()
    try:
        yield
    finally:
        _stop_relay()


def _start_relay() -> None:
    global _relay_users
    import ray

    with _relay_lock:
        _relay_users += 1
        if _relay_users > 1:
            return
        actor = ray.remote(num_cpus=0)(Relay).options(name=RELAY_NAME, get_if_exists=True).remote()
        stop = threading.Event()
        thread = threading.Thread(target=_poll, args=(actor, stop), daemon=True, name="progress")
        _relay_state.update(actor=actor, stop=stop, thread=thread)
        thread.start()


def _stop_relay() -> None:
    global _relay_users
    import ray

    with _relay_lock:
        _relay_users -= 1
        if _relay_users > 0:
            return
        _relay_state["stop"].set()
        _relay_state["thread"].join(timeout=10)
        _drain(_relay_state["actor"])
        ray.kill(_relay_state["actor"])
        _relay_state.clear()


def _poll(actor: Any, stop: threading.Event) -> None:
    while not stop.wait(POLL_INTERVAL_S):
        _drain(actor)


def _drain(actor: Any) -> None:
    import ray

    try:
        events = ray.get(actor.drain.remote(), timeout=10)
    except Exception:  # a busy or restarting cluster: the next poll catches up
        return
    for event in events:
        apply(event)
