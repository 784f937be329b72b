"""The post-training stopping rule: a plateau of the held-out gain under a step cap."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tasks.training.checkpoints import CheckpointStore
from tasks.training.loop import LoopConfig, run_loop
from tasks.training.stopping import StoppingRule, stop_check

from .test_training_loop import CountingJob, source


class StepJob(CountingJob):
    def train_step(self, batch: Any, step: int) -> dict[str, float]:
        super().train_step(batch, step)
        return {"loss": float(self.total)}


def test_stops_after_patience_evaluations_without_a_rise() -> None:
    rule = StoppingRule(every=100, patience=2, min_improvement=0.01)
    rising = [(100, 0.02), (200, 0.05), (300, 0.09), (400, 0.12)]
    assert rule.stop_step(rising) is None
    # 0.100 and 0.104 do not beat 0.095 by 0.01: two stale evaluations, stop at the second
    assert rule.stop_step([(100, 0.05), (200, 0.095), (300, 0.10), (400, 0.104)]) == 400
    # a fall then a recovery that counts resets the patience
    assert rule.stop_step([(100, 0.05), (200, 0.04), (300, 0.07), (400, 0.06)]) is None


def test_a_slow_creep_adds_up_against_the_best_it_beat() -> None:
    rule = StoppingRule(every=1, patience=2, min_improvement=0.01)
    # +0.006 per evaluation: never 0.01 over the last one, but every second one beats the best
    assert rule.stop_step([(1, 0.100), (2, 0.106), (3, 0.112), (4, 0.118), (5, 0.124)]) is None
    # +0.004 per evaluation: two stale evaluations before the sum counts
    assert rule.stop_step([(1, 0.100), (2, 0.104), (3, 0.108), (4, 0.112)]) == 3


def test_evaluates_on_its_period_but_never_at_the_cap_or_when_off() -> None:
    rule = StoppingRule(every=250)
    assert [s for s in range(1, 1501) if rule.evaluates_at(s, 1500)] == [250, 500, 750, 1000, 1250]
    assert not any(StoppingRule(every=0).evaluates_at(s, 1500) for s in range(1, 1501))
    with pytest.raises(ValueError, match="patience"):
        StoppingRule(patience=0)


def test_the_loop_stops_where_the_rule_says_with_a_checkpoint_there(tmp_path: Path) -> None:
    gains = iter([0.10, 0.30, 0.31, 0.29, 0.50])  # stale at steps 9 and 12: stop at 12
    curve: list[tuple[int, float]] = []
    measured: list[int] = []

    def measure(step: int) -> float:
        measured.append(step)
        return next(gains)

    rule = StoppingRule(every=3, patience=2, min_improvement=0.05)
    store = CheckpointStore(str(tmp_path))
    job = StepJob()
    loop = LoopConfig(total_steps=30, checkpoint_every=5)
    position = run_loop(job, source, store, loop, should_stop=stop_check(rule, 30, measure, curve))
    assert position.step == 12 and measured == [3, 6, 9, 12]
    assert curve == [(3, 0.1), (6, 0.3), (9, 0.31), (12, 0.29)]
    assert store.latest_step() == 12 and len(job.seen) == 12


def test_no_plateau_counts_before_the_gain_has_reached_min_gain() -> None:
    # DistractorReach's shape: flat near 0 for a while, then rising; min_gain keeps it training
    slow_starter = [(250, 0.0), (500, 0.0), (750, 0.0001), (1000, 0.0002), (1250, 0.0013)]
    assert StoppingRule(patience=2).stop_step(slow_starter) == 750
    assert StoppingRule(patience=2, min_gain=0.05).stop_step(slow_starter) is None
    # once reached, a plateau stops the run as before
    learned = [(250, 0.04), (500, 0.06), (750, 0.061), (1000, 0.062)]
    assert StoppingRule(patience=2, min_gain=0.05).stop_step(learned) == 1000
