"""Progress lines: a stage's start, quarters and end, timed by when each event was made."""

from __future__ import annotations

import io

from tasks import progress


def test_a_workers_batched_events_keep_their_own_times() -> None:
    """A Ray worker's events reach the display in batches (the relay is polled); the rate and
    the duration come from the times the worker made them, not from when they arrived."""
    stream = io.StringIO()
    progress.activate(stream, bars=False)
    try:
        start = 1_000_000.0
        for step in (0, 1, 2, 3, 4):  # all applied at once, made 2.5 s apart
            event = {"stage": "posttrain", "done": step, "total": 4, "unit": "step",
                     "figures": {"loss": 0.5 / (step + 1)}, "at": start + 2.5 * step}  # fmt: skip
            progress.apply(event)
    finally:
        progress.deactivate()
    lines = stream.getvalue().splitlines()
    assert lines[0] == "[posttrain] started: 4 steps"
    assert lines[1].startswith("[posttrain] 1/4 steps, loss 0.25 (0.40/s, ETA 8s)"), lines
    assert lines[-1] == "[posttrain] done: 4 steps in 10s (0.40/s), loss 0.1", lines
    assert len(lines) == 5  # start, 25 / 50 / 75 %, end: never a line per step


def test_reports_in_the_process_itself_are_timed_as_they_come() -> None:
    stream = io.StringIO()
    progress.activate(stream, bars=False)
    try:
        progress.report("eval-vqa", 0, 2, "question")
        progress.report("eval-vqa", 2, 2, "question")
    finally:
        progress.deactivate()
    assert stream.getvalue().splitlines()[-1].startswith("[eval-vqa] done: 2 questions in 0s")
