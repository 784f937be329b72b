"""CEM planner: finds a known minimum, batches robots in one call, bounds, seeding, warm start."""

from __future__ import annotations

import pytest
import torch

from modeling.cem import CEMConfig, cem_plan, shift_plan

HORIZON, ACTION_DIM = 3, 2


def _quadratic(optimum: torch.Tensor, calls: list[int] | None = None):  # type: ignore[no-untyped-def]
    """Energy `sum (a - optimum_r)^2`; `optimum (R, H, A)`, candidates robot-major."""

    def energy(actions: torch.Tensor) -> torch.Tensor:
        if calls is not None:
            calls.append(actions.shape[0])
        robots = optimum.shape[0]
        per_robot = actions.view(robots, -1, *actions.shape[1:])  # (R, S, H, A)
        return ((per_robot - optimum[:, None]) ** 2).sum(dim=(2, 3)).flatten()  # (R*S,)

    return energy


def _generator(seed: int) -> torch.Generator:
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator


def _optimum() -> torch.Tensor:
    return torch.tensor(
        [[[0.3, -0.2], [0.1, 0.5], [-0.4, 0.0]], [[-0.6, 0.6], [0.2, -0.1], [0.0, 0.3]]]
    )  # (R=2, H, A)


def test_finds_the_minimum_of_a_quadratic_for_every_robot_in_one_call_per_iteration() -> None:
    config = CEMConfig(num_samples=256, num_elites=16, num_iterations=15, horizon=HORIZON)
    calls: list[int] = []
    result = cem_plan(
        _quadratic(_optimum(), calls), 2, ACTION_DIM, -1.0, 1.0, config, generator=_generator(0)
    )
    assert calls == [2 * 256] * 15
    assert result.plan.shape == (2, HORIZON, ACTION_DIM) and result.energy.shape == (2,)
    assert torch.allclose(result.plan, _optimum(), atol=0.05)
    assert bool((result.energy < 5e-3).all())
    assert bool((result.history.diff(dim=0) <= 0).all())  # best energy never gets worse
    exact = _quadratic(_optimum())(result.plan)  # one candidate per robot
    assert torch.allclose(exact, result.energy)


def test_respects_bounds_when_the_optimum_lies_outside() -> None:
    optimum = torch.full((1, HORIZON, ACTION_DIM), 3.0)
    seen: list[torch.Tensor] = []

    def energy(actions: torch.Tensor) -> torch.Tensor:
        seen.append(actions.clone())
        return _quadratic(optimum)(actions)

    low, high = torch.tensor([-0.5, -0.2]), torch.tensor([0.5, 0.2])
    result = cem_plan(
        energy, 1, ACTION_DIM, low, high, CEMConfig(horizon=HORIZON), generator=_generator(1)
    )
    everything = torch.cat(seen)  # (iterations * S, H, A)
    assert bool((everything >= low).all()) and bool((everything <= high).all())
    assert torch.allclose(result.plan, high.expand(1, HORIZON, ACTION_DIM), atol=1e-3)


def test_same_seed_same_plan() -> None:
    config = CEMConfig(num_samples=64, num_elites=8, num_iterations=4, horizon=HORIZON)
    plans = [
        cem_plan(_quadratic(_optimum()), 2, ACTION_DIM, -1.0, 1.0, config, generator=_generator(s))
        for s in (7, 7, 8)
    ]
    assert torch.equal(plans[0].plan, plans[1].plan)
    assert torch.equal(plans[0].energy, plans[1].energy)
    assert not torch.equal(plans[0].plan, plans[2].plan)


def test_warm_start_reaches_the_same_energy_in_fewer_iterations() -> None:
    config = CEMConfig(num_samples=64, num_elites=8, num_iterations=12, horizon=HORIZON)
    optimum = _optimum()
    # the plan of the previous control step, whose first action has been executed
    previous = torch.cat([torch.zeros(2, 1, ACTION_DIM), optimum[:, :-1]], dim=1)
    warm = shift_plan(previous)
    assert torch.equal(warm[:, :-1], optimum[:, :-1])
    threshold = 0.02

    def iterations_to(result_history: torch.Tensor) -> int:
        reached = (result_history < threshold).all(dim=1).nonzero()
        return int(reached[0]) + 1 if len(reached) else config.num_iterations + 1

    cold_iterations, warm_iterations = [], []
    for seed in range(3):
        cold = cem_plan(
            _quadratic(optimum), 2, ACTION_DIM, -1.0, 1.0, config, generator=_generator(seed)
        )
        hot = cem_plan(
            _quadratic(optimum), 2, ACTION_DIM, -1.0, 1.0, config, warm, _generator(seed)
        )
        cold_iterations.append(iterations_to(cold.history))
        warm_iterations.append(iterations_to(hot.history))
    assert sum(warm_iterations) < sum(cold_iterations), (warm_iterations, cold_iterations)
    assert max(warm_iterations) <= config.num_iterations


def test_shift_plan_and_bad_input() -> None:
    plan = torch.arange(12, dtype=torch.float32).view(1, 3, 4)
    shifted = shift_plan(plan, fill=torch.zeros(4))
    assert torch.equal(shifted[0, :2], plan[0, 1:]) and torch.equal(shifted[0, 2], torch.zeros(4))
    assert torch.equal(shift_plan(plan)[0, 2], plan[0, 2])
    with pytest.raises(ValueError, match="num_elites"):
        CEMConfig(num_samples=4, num_elites=8)
    with pytest.raises(ValueError, match="low < high"):
        cem_plan(_quadratic(_optimum()), 2, ACTION_DIM, 1.0, -1.0)
    with pytest.raises(ValueError, match="warm_start"):
        cem_plan(_quadratic(_optimum()), 2, ACTION_DIM, -1.0, 1.0, warm_start=torch.zeros(2, 1, 1))
    with pytest.raises(ValueError, match="energy_fn must return"):
        cem_plan(lambda a: a.sum(dim=(1, 2))[:1], 2, ACTION_DIM, -1.0, 1.0)
