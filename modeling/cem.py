"""Cross-entropy-method planner over action sequences, batched over robots x samples.

Each iteration draws `S` candidate sequences `(H, A)` per robot from a diagonal Gaussian, clips
them to the action bounds, scores all `R*S` of them in ONE call of the energy function, keeps the
`k` lowest-energy sequences (elites) per robot and moves the Gaussian towards them with momentum
(`new = (1 - m) * elites + m * old`, as in the official V-JEPA 2-AC planner). The current mean is
always one of the candidates, so the best sequence seen is returned with its exact energy and
never gets worse from one iteration to the next.

`latent_goal_energy` builds the V-JEPA energy: the distance between the AC predictor's final
predicted frame and the goal image's features, L1 as in the paper or mean squared error
(`CEMConfig.energy`). Everything is deterministic given a `torch.Generator`.

Noise is not a signal: each iteration records the spread of its candidates' energies
(their standard deviation relative to their mean). When the first iteration's spread is
below `min_relative_spread` (the model's noise floor: its energies hardly depend on the
action), the planner does not act on it: the plan is the centre of the bounds (no motion
for delta actions) and `confident` is False, so the caller drops its warm start instead of
letting momentum push one arbitrary way step after step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

import torch

from modeling.jepa import layer_norm_features

EnergyFn = Callable[[torch.Tensor], torch.Tensor]
StateUpdate = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (state, action) -> state
EnergyMetric = Literal["l1", "l2"]
ENERGY_METRICS: tuple[EnergyMetric, ...] = ("l1", "l2")


@dataclass(frozen=True)
class CEMConfig:
    """CEM settings; std values are fractions of the half-width of the action bounds.

    Defaults follow the official V-JEPA 2-AC planner (`notebooks/utils/mpc_utils.py`).
    """

    num_samples: int = 400
    num_elites: int = 10
    num_iterations: int = 10
    horizon: int = 2
    momentum_mean: float = 0.15
    momentum_std: float = 0.15
    init_std: float = 1.0
    warm_start_std: float = 0.5
    min_std: float = 0.01
    max_std: float = 1.0
    min_relative_spread: float = 0.0  # noise floor of std / mean candidate energy; 0: always act
    # Distance between predicted and goal features: "l1" (mean absolute, the paper's) or "l2"
    # (mean squared, which weighs the few patches that differ most; see `feature_distance`).
    energy: EnergyMetric = "l1"

    def __post_init__(self) -> None:
        if min(self.num_samples, self.num_elites, self.num_iterations, self.horizon) < 1:
            raise ValueError("num_samples, num_elites, num_iterations and horizon must be >= 1")
        if self.num_elites > self.num_samples:
            raise ValueError(f"num_elites {self.num_elites} > num_samples {self.num_samples}")
        if not (0 <= self.momentum_mean <= 1 and 0 <= self.momentum_std <= 1):
            raise ValueError("momenta must be in [0, 1]")
        if not 0 < self.min_std <= self.max_std:
            raise ValueError("std bounds must satisfy 0 < min_std <= max_std")
        if self.min_relative_spread < 0:
            raise ValueError(f"min_relative_spread must be >= 0, got {self.min_relative_spread}")
        if self.energy not in ENERGY_METRICS:
            raise ValueError(f"energy must be one of {list(ENERGY_METRICS)}, got {self.energy!r}")


@dataclass(frozen=True)
class CEMResult:
    """Best plan per robot, its energy, the best energy and the energy spread per iteration.

    `spread` is std / mean of the candidates' energies; `confident` is False where the first
    iteration's spread was below the noise floor (the plan is then the centre of the bounds).
    """

    plan: torch.Tensor  # (R, H, A)
    energy: torch.Tensor  # (R,)
    history: torch.Tensor  # (num_iterations, R)
    spread: torch.Tensor | None = None  # (num_iterations, R)
    confident: torch.Tensor | None = None  # (R,) bool

    @property
    def noop(self) -> torch.Tensor | None:
        """(R,) bool: the planner declined to act (below the noise floor); None if unknown."""
        return None if self.confident is None else ~self.confident


def shift_plan(plan: torch.Tensor, fill: torch.Tensor | None = None) -> torch.Tensor:
    """Receding-horizon warm start: drop the executed first action, repeat the last (or `fill`)."""
    if plan.dim() != 3:
        raise ValueError(f"plan must be (R, H, A), got {tuple(plan.shape)}")
    tail = plan[:, -1:] if fill is None else fill.expand_as(plan[:, -1:])  # (R, 1, A)
    return torch.cat([plan[:, 1:], tail], dim=1)  # (R, H, A)


def _bounds(
    low: torch.Tensor | float, high: torch.Tensor | float, action_dim: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    low_t = torch.as_tensor(low, dtype=torch.float32, device=device).expand(action_dim).clone()
    high_t = torch.as_tensor(high, dtype=torch.float32, device=device).expand(action_dim).clone()
    if bool((high_t <= low_t).any()):
        raise ValueError(f"action bounds need low < high, got low={low_t}, high={high_t}")
    return low_t, high_t


def _initial_mean(
    warm_start: torch.Tensor | None, shape: tuple[int, int, int], center: torch.Tensor
) -> torch.Tensor:
    if warm_start is None:
        return center.expand(shape).clone()  # (R, H, A)
    if tuple(warm_start.shape) != shape:
        raise ValueError(f"warm_start must be {shape}, got {tuple(warm_start.shape)}")
    return warm_start.to(device=center.device, dtype=center.dtype).clone()


def _default_device(generator: torch.Generator | None) -> torch.device:
    return generator.device if generator is not None else torch.device("cpu")


def _score(energy_fn: EnergyFn, candidates: torch.Tensor) -> torch.Tensor:
    robots, samples = candidates.shape[:2]
    energies = energy_fn(candidates.flatten(0, 1))  # (R*S,)
    if energies.shape != (robots * samples,):
        raise ValueError(
            f"energy_fn must return ({robots * samples},), got {tuple(energies.shape)}"
        )
    return energies.view(robots, samples).to(candidates.device, torch.float32)  # (R, S)


def relative_spread(energies: torch.Tensor) -> torch.Tensor:
    """Std over candidates relative to their mean energy, per robot: `(R, S)` -> `(R,)`."""
    std = energies.std(dim=1, unbiased=energies.shape[1] > 1)
    return std / energies.mean(dim=1).abs().clamp_min(1e-12)


def _refit(
    mean: torch.Tensor,
    std: torch.Tensor,
    elites: torch.Tensor,
    config: CEMConfig,
    half: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Move the Gaussian `(R, H, A)` towards the elites `(R, k, H, A)` with momentum."""
    new_mean = (1 - config.momentum_mean) * elites.mean(dim=1) + config.momentum_mean * mean
    elite_std = elites.std(dim=1, unbiased=config.num_elites > 1)  # (R, H, A)
    new_std = (1 - config.momentum_std) * elite_std + config.momentum_std * std
    return new_mean, torch.minimum(
        torch.maximum(new_std, half * config.min_std), half * config.max_std
    )


def cem_plan(
    energy_fn: EnergyFn,
    num_robots: int,
    action_dim: int,
    low: torch.Tensor | float,
    high: torch.Tensor | float,
    config: CEMConfig | None = None,
    warm_start: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> CEMResult:
    """Minimise `energy_fn` over `(R, H, A)` action plans within `[low, high]` per dimension.

    `energy_fn` gets `(R*S, H, A)` candidates (robot-major) and returns `(R*S,)` energies.
    `warm_start (R, H, A)` (e.g. `shift_plan(previous)`) replaces the centre of the bounds as the
    first mean and uses the narrower `warm_start_std`. Candidates live on `device` (default: the
    generator's device), which must be the generator's device.
    """
    config = config or CEMConfig()
    device = torch.device(device) if device is not None else _default_device(generator)
    low_t, high_t = _bounds(low, high, action_dim, device)
    half_width = (high_t - low_t) / 2  # (A,)
    shape = (num_robots, config.horizon, action_dim)
    mean = _initial_mean(warm_start, shape, (low_t + high_t) / 2)  # (R, H, A)
    std_fraction = config.init_std if warm_start is None else config.warm_start_std
    std = (half_width * std_fraction).expand(shape).clone()  # (R, H, A)
    best_plan = mean.clamp(low_t, high_t)
    best_energy = torch.full((num_robots,), float("inf"), device=device)
    history, spreads = [], []
    for _ in range(config.num_iterations):
        noise = torch.randn(
            (num_robots, config.num_samples, *shape[1:]), generator=generator, device=device
        )
        candidates = mean[:, None] + std[:, None] * noise  # (R, S, H, A)
        candidates[:, 0] = mean  # the current mean is always scored
        candidates = torch.clamp(candidates, low_t, high_t)
        energies = _score(energy_fn, candidates)  # (R, S)
        spreads.append(relative_spread(energies))
        elite_energy, elite_index = energies.topk(config.num_elites, dim=1, largest=False)
        robot_index = torch.arange(num_robots, device=device)[:, None]  # (R, 1)
        elites = candidates[robot_index, elite_index]  # (R, k, H, A)
        improved = elite_energy[:, 0] < best_energy  # (R,)
        best_plan[improved] = elites[improved, 0]
        best_energy = torch.where(improved, elite_energy[:, 0], best_energy)
        history.append(best_energy.clone())
        mean, std = _refit(mean, std, elites, config, half_width)
    confident = spreads[0] >= config.min_relative_spread  # (R,)
    best_plan[~confident] = ((low_t + high_t) / 2).expand(shape)[~confident]
    return CEMResult(
        plan=best_plan,
        energy=best_energy,
        history=torch.stack(history),
        spread=torch.stack(spreads),
        confident=confident,
    )


def feature_distance(
    features: torch.Tensor, goal: torch.Tensor, metric: EnergyMetric = "l1"
) -> torch.Tensor:
    """Mean distance over the last two dims (tokens, channels): `(..., N, D)` -> `(...)`.

    "l1" is the mean absolute difference; "l2" the mean squared one. With layer-normed features
    most patches differ a little from the goal's in every state (noise), while the few showing
    the robot or object differ a lot: squaring weighs those, so the energy orders states by
    their distance to the goal better (see docs/benchmarks.md, the energy metric).
    """
    difference = features - goal
    if metric == "l2":
        return difference.square().mean(dim=(-2, -1))
    if metric == "l1":
        return difference.abs().mean(dim=(-2, -1))
    raise ValueError(f"unknown energy metric {metric!r}; use one of {list(ENERGY_METRICS)}")


class RolloutModel(Protocol):
    """What the V-JEPA energy needs from the AC predictor (`ACPredictor.rollout`)."""

    def rollout(
        self,
        context_features: torch.Tensor,
        states: torch.Tensor,
        actions: torch.Tensor,
        past_actions: torch.Tensor | None = None,
        state_update: StateUpdate = ...,
    ) -> torch.Tensor: ...


def latent_goal_energy(
    model: RolloutModel,
    context_features: torch.Tensor,
    states: torch.Tensor,
    goal_features: torch.Tensor,
    past_actions: torch.Tensor | None = None,
    max_batch: int | None = None,
    normalize_goal: bool = True,
    state_update: StateUpdate | None = None,
    metric: EnergyMetric = "l1",
) -> EnergyFn:
    """Energy for CEM: the `metric` distance between the predicted final frame and the goal's
    features (`feature_distance`).

    `context_features (R, T0*N, D)`, `states (R, T0, S)`, `goal_features (R, N, D)` and the
    optional `past_actions (R, T0-1, A)` are per robot; the returned function takes
    `(R*S, H, A)` robot-major candidates and returns `(R*S,)`. The rollout shares each robot's
    context across its samples; `max_batch` caps the candidates per rollout call (memory).
    Goal features are raw encoder outputs, layer-normed here like the predictions; pass
    `normalize_goal=False` for features that are normalised already. `state_update` rolls the
    state forward between predicted steps (default: the model's own, `state + action`).
    """
    robots = context_features.shape[0]
    if states.shape[0] != robots or goal_features.shape[0] != robots:
        raise ValueError("context_features, states and goal_features need the same robot count")
    goal = layer_norm_features(goal_features) if normalize_goal else goal_features  # (R, N, D)
    options = {} if state_update is None else {"state_update": state_update}

    def rollout_rows(rows: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        past = None if past_actions is None else past_actions[rows]
        with torch.no_grad():
            predicted = model.rollout(
                context_features[rows], states[rows], actions, past, **options
            )
        return feature_distance(predicted[:, -1], goal[rows], metric)  # (B,)

    def energy(actions: torch.Tensor) -> torch.Tensor:
        samples = actions.shape[0] // robots
        if samples * robots != actions.shape[0]:
            raise ValueError(f"{actions.shape[0]} candidates do not split over {robots} robots")
        if max_batch is None or actions.shape[0] <= max_batch:
            with torch.no_grad():  # one call; the model expands each robot's context itself
                predicted = model.rollout(
                    context_features, states, actions, past_actions, **options
                )
            final = predicted[:, -1].unflatten(0, (robots, samples))  # (R, S, N, D)
            return feature_distance(final, goal[:, None], metric).flatten()  # (R*S,)
        owner = torch.arange(actions.shape[0], device=actions.device) // samples  # (R*S,)
        chunks = [
            rollout_rows(owner[start : start + max_batch], actions[start : start + max_batch])
            for start in range(0, actions.shape[0], max_batch)
        ]
        return torch.cat(chunks)  # (R*S,)

    return energy
