"""CEM planner: finds a known minimum, batches robots in one call, bounds, seeding, warm start."""

from __future__ import annotations

import pytest
import torch

from modeling.ac_predictor import ACPredictor, ac_tiny
from modeling.cem import CEMConfig, cem_plan, feature_distance, latent_goal_energy, shift_plan

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


def test_latent_goal_energy_drives_cem_with_the_ac_predictor() -> None:
    torch.manual_seed(0)
    model = ACPredictor(ac_tiny(action_dim=ACTION_DIM, state_dim=ACTION_DIM)).eval()
    with torch.no_grad():
        model.action_encoder.weight.mul_(50.0)  # make actions matter in the random model
    config, robots, samples = model.config, 2, 32
    generator = _generator(4)
    context = torch.randn(robots, config.tokens_per_frame, config.embed_dim, generator=generator)
    states = torch.randn(robots, 1, ACTION_DIM, generator=generator)
    reached = torch.rand(robots, HORIZON, ACTION_DIM, generator=generator) - 0.5
    with torch.no_grad():
        goal = model.rollout(context, states, reached)[:, -1]  # (R, N, D), already layer-normed
    energy = latent_goal_energy(model, context, states, goal, normalize_goal=False)
    candidates = torch.rand(robots * samples, HORIZON, ACTION_DIM, generator=generator) - 0.5
    values = energy(candidates)  # (R*S,)
    with torch.no_grad():
        expanded = model.rollout(
            context.repeat_interleave(samples, 0), states.repeat_interleave(samples, 0), candidates
        )
    direct = (expanded[:, -1] - goal.repeat_interleave(samples, 0)).abs().mean(dim=(1, 2))
    assert torch.allclose(values, direct, atol=1e-5)
    chunked = latent_goal_energy(model, context, states, goal, max_batch=24, normalize_goal=False)
    assert torch.allclose(chunked(candidates), values, atol=1e-5)
    raw_goal = latent_goal_energy(model, context, states, goal * 3.0 + 1.0)  # normalised here
    assert torch.allclose(raw_goal(candidates), values, atol=1e-4)
    assert bool((energy(reached) < 1e-5).all())  # the goal was made by these actions
    squared = latent_goal_energy(model, context, states, goal, normalize_goal=False, metric="l2")
    difference = expanded[:, -1] - goal.repeat_interleave(samples, 0)
    assert torch.allclose(squared(candidates), difference.square().mean(dim=(1, 2)), atol=1e-5)
    assert not torch.allclose(squared(candidates), values, atol=1e-3)

    calls: list[int] = []

    def counted(actions: torch.Tensor) -> torch.Tensor:
        calls.append(actions.shape[0])
        return energy(actions)

    cem = CEMConfig(num_samples=samples, num_elites=4, num_iterations=3, horizon=HORIZON)
    result = cem_plan(counted, robots, ACTION_DIM, -0.5, 0.5, cem, generator=_generator(0))
    assert calls == [robots * samples] * 3
    assert result.plan.shape == (robots, HORIZON, ACTION_DIM)
    assert bool((result.energy < values.view(robots, samples).mean(dim=1)).all())
    with pytest.raises(ValueError, match="split"):
        energy(candidates[:3])


def test_energy_spread_is_logged_and_noise_below_the_floor_means_no_motion() -> None:
    config = CEMConfig(num_samples=64, num_elites=8, num_iterations=3, horizon=2)
    optimum = torch.full((2, 2, ACTION_DIM), 0.5)
    informative = cem_plan(
        _quadratic(optimum), 2, ACTION_DIM, -1.0, 1.0, config, None, _generator(0)
    )
    assert informative.spread is not None and informative.spread.shape == (3, 2)
    assert bool((informative.spread[0] > 0.1).all()) and bool(informative.confident.all())

    def noise(actions: torch.Tensor) -> torch.Tensor:  # energies that ignore the action
        return 1.0 + 1e-6 * torch.randn(actions.shape[0], generator=_generator(1))

    floor = CEMConfig(
        num_samples=64, num_elites=8, num_iterations=3, horizon=2, min_relative_spread=1e-3
    )
    warm = torch.full((2, 2, ACTION_DIM), 0.9)
    blind = cem_plan(noise, 2, ACTION_DIM, -1.0, 0.5, floor, warm, _generator(0))
    assert not bool(blind.confident.any())
    torch.testing.assert_close(blind.plan, torch.full((2, 2, ACTION_DIM), -0.25))  # bounds' centre
    acting = cem_plan(noise, 2, ACTION_DIM, -1.0, 0.5, config, warm, _generator(0))
    assert bool(acting.confident.all()) and float(acting.plan.abs().max()) > 0.3  # drifts on noise
    informed = cem_plan(_quadratic(optimum), 2, ACTION_DIM, -1.0, 1.0, floor, None, _generator(0))
    assert bool(informed.confident.all())  # a real signal is above the floor
    with pytest.raises(ValueError, match="min_relative_spread"):
        CEMConfig(min_relative_spread=-1.0)


def test_the_squared_energy_weighs_the_few_patches_that_differ_most() -> None:
    goal = torch.zeros(1, 4, 2)  # (1, N, D)
    spread = torch.full((1, 4, 2), 0.5)  # every patch a little off
    one_patch = torch.zeros(1, 4, 2)
    one_patch[0, 0] = 2.0  # one patch (the object) far off
    l1 = feature_distance(torch.cat([spread, one_patch]), goal, "l1")
    l2 = feature_distance(torch.cat([spread, one_patch]), goal, "l2")
    torch.testing.assert_close(l1, torch.tensor([0.5, 0.5]))  # L1 cannot tell them apart
    torch.testing.assert_close(l2, torch.tensor([0.25, 1.0]))  # L2 ranks the object first
    assert CEMConfig(energy="l2").energy == "l2"
    with pytest.raises(ValueError, match="energy must be one of"):
        CEMConfig(energy="cosine")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown energy metric"):
        feature_distance(spread, goal, "max")  # type: ignore[arg-type]
