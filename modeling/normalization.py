"""Action and state normalisation with a dataset's statistics, for AC post-training and planning.

Robots send actions and states in their own units (radians of +-0.2, pixels of
0-512, metres); the AC predictor learns fastest on inputs of unit scale. The
statistics (mean and std per dimension, measured on the training dataset) travel
in `WorldModelSpec`, and one `Normalizer` applies them in both places:

- post-training feeds the predictor `normalize_actions(a)` and `normalize_states(s)`;
- planning wraps the predictor in `NormalizedRollout`, which takes raw actions and
  states (what CEM samples inside the robot's bounds) and rolls the state forward
  with the spec's raw-unit rule, converting on the way in and out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from modeling.ac_predictor import StateUpdate, additive_state_update

ArrayLike = np.ndarray | Sequence[Sequence[float]]
MIN_STD = 1e-6  # a dimension that never moves keeps unit scale (it carries no information)


@dataclass(frozen=True)
class Normalizer:
    """Per-dimension `(x - mean) / std` for actions and states."""

    action_mean: tuple[float, ...]
    action_std: tuple[float, ...]
    state_mean: tuple[float, ...]
    state_std: tuple[float, ...]

    @classmethod
    def fit(cls, actions: ArrayLike, states: ArrayLike) -> Normalizer:
        """Statistics of recorded `actions (N, A)` and `states (N, S)`; constant dims get std 1."""
        action_values = torch.as_tensor(np.asarray(actions), dtype=torch.float64)  # (N, A)
        state_values = torch.as_tensor(np.asarray(states), dtype=torch.float64)  # (N, S)

        def stats(values: Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
            std = values.std(dim=0, unbiased=False)
            std = torch.where(std > MIN_STD, std, torch.ones_like(std))
            return tuple(values.mean(dim=0).tolist()), tuple(std.tolist())

        action_mean, action_std = stats(action_values)
        state_mean, state_std = stats(state_values)
        return cls(action_mean, action_std, state_mean, state_std)

    @staticmethod
    def _apply(
        values: Tensor, mean: tuple[float, ...], std: tuple[float, ...], inverse: bool
    ) -> Tensor:
        if values.shape[-1] != len(mean):
            raise ValueError(f"expected {len(mean)} dims, got {values.shape[-1]}")
        mean_t = torch.tensor(mean, dtype=values.dtype, device=values.device)  # (D,)
        std_t = torch.tensor(std, dtype=values.dtype, device=values.device)  # (D,)
        return values * std_t + mean_t if inverse else (values - mean_t) / std_t

    def normalize_actions(self, actions: Tensor) -> Tensor:
        return self._apply(actions, self.action_mean, self.action_std, inverse=False)

    def normalize_states(self, states: Tensor) -> Tensor:
        return self._apply(states, self.state_mean, self.state_std, inverse=False)

    def raw_actions(self, actions: Tensor) -> Tensor:
        return self._apply(actions, self.action_mean, self.action_std, inverse=True)

    def raw_states(self, states: Tensor) -> Tensor:
        return self._apply(states, self.state_mean, self.state_std, inverse=True)

    def normalized_update(self, update: StateUpdate) -> StateUpdate:
        """`update` (raw units) as a rule on normalised states and actions."""

        def step(state: Tensor, action: Tensor) -> Tensor:
            raw = update(self.raw_states(state), self.raw_actions(action))
            return self.normalize_states(raw)

        return step


class NormalizedRollout:
    """An AC predictor seen through a `Normalizer`: `rollout` takes raw actions and states."""

    def __init__(self, predictor: torch.nn.Module, normalizer: Normalizer) -> None:
        self.predictor = predictor
        self.normalizer = normalizer

    def rollout(
        self,
        context_features: Tensor,
        states: Tensor,
        actions: Tensor,
        past_actions: Tensor | None = None,
        state_update: StateUpdate = additive_state_update,
    ) -> Tensor:
        norm = self.normalizer
        past = None if past_actions is None else norm.normalize_actions(past_actions)
        return self.predictor.rollout(  # type: ignore[no-any-return, operator]
            context_features,
            norm.normalize_states(states),
            norm.normalize_actions(actions),
            past,
            state_update=norm.normalized_update(state_update),
        )
