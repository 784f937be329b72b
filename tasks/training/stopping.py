"""When post-training stops: a plateau of the held-out shuffled-action gain, under a step cap.

Every `every` steps the post-training job measures the shuffled-action gain on its held-out
episodes (`tasks.planning.rollouts`: rollout error with another window's actions minus with
the true ones, relative to copying the last frame): the figure that says whether the predictor
has learned what actions do, which planning needs. Training stops once the gain has not risen
by `min_improvement` over its best for `patience` evaluations in a row, or at the step cap
(`PosttrainConfig.steps`). `every = 0` turns the rule off (train to the cap).

A plateau only counts once the gain has reached `min_gain`: a predictor that has not yet
learned what actions do is not converged, and more steps are its only remedy. On
DistractorReach (background motion) the gain stays near 0 for 1250 steps and then rises
(0.015 at 1750, 0.023 at 2000): a rule without `min_gain` stopped it at 750.

The rule is one function of the curve (`stop_step`), so the suite benchmark can apply it to a
recorded curve and the training job can apply it as it goes (`Plateau`), with the same result.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class StoppingRule:
    """Evaluate every `every` steps; stop after `patience` evaluations without improvement."""

    every: int = 250
    patience: int = 2
    min_improvement: float = 0.005  # absolute, in units of the gain (a fraction of copy error)
    min_gain: float = 0.0  # no stop before the gain has once reached this (a slow starter)

    def __post_init__(self) -> None:
        if self.every < 0 or self.patience < 1:
            raise ValueError(
                f"need every >= 0 and patience >= 1, got {self.every}, {self.patience}"
            )

    @property
    def enabled(self) -> bool:
        return self.every > 0

    def evaluates_at(self, step: int, cap: int) -> bool:
        """Whether the job measures the gain after `step` (never at the cap: training ends)."""
        return self.enabled and step < cap and step % self.every == 0

    def stop_step(self, curve: Sequence[tuple[int, float]]) -> int | None:
        """The step of the evaluation where the rule stops a run with this curve (None: never)."""
        plateau = Plateau(self)
        for step, gain in curve:
            if plateau.update(gain):
                return step
        return None


@dataclass
class Plateau:
    """The running state of a `StoppingRule`: the best gain and evaluations since it rose."""

    rule: StoppingRule
    best: float = float("-inf")
    stale: int = 0
    history: list[float] = field(default_factory=list)

    def update(self, gain: float) -> bool:
        """Record one evaluation; True when training should stop now."""
        self.history.append(gain)
        if gain >= self.best + self.rule.min_improvement:
            self.best, self.stale = gain, 0
        elif max(self.history) >= self.rule.min_gain:  # a slow creep adds up to a rise
            self.stale += 1
        return self.stale >= self.rule.patience


def stop_check(
    rule: StoppingRule,
    cap: int,
    measure: Callable[[int], float],
    curve: list[tuple[int, float]],
    device: Any = "cpu",
) -> Callable[[int], bool]:
    """`run_loop`'s `should_stop`: measure the gain where the rule evaluates, append it to
    `curve`, stop on a plateau. Every rank measures; rank 0's decision is the one all follow."""
    plateau = Plateau(rule)

    def should_stop(step: int) -> bool:
        if not rule.evaluates_at(step, cap):
            return False
        gain = measure(step)
        curve.append((step, round(gain, 4)))
        return _agreed(plateau.update(gain), device)

    return should_stop


def _agreed(stop: bool, device: Any) -> bool:
    """Rank 0's decision on every rank: they must leave the loop at the same step."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return stop
    flag = torch.tensor([int(stop)], device=device)
    dist.broadcast(flag, src=0)
    return bool(flag.item())
