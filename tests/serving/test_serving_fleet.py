"""Fleet planning without Ray: grouping, one plan call per group, seeds, warm starts, bounds."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from modeling.world_model import WorldModel
from serving.fleet import FleetPlanner, GroupKey, group_requests
from serving.schemas import PlanRequest

from .conftest import SMALL_CEM, tiny_world_model


class CountingWorldModel(WorldModel):
    """The real world model, recording how many robots each `plan` call got."""

    def __init__(self, source: WorldModel) -> None:
        super().__init__(source.encoder, source.predictor, source.spec)
        self.calls: list[int] = []

    def plan(self, frames: Any, *args: Any, **kwargs: Any) -> Any:
        self.calls.append(int(frames.shape[0]))
        return super().plan(frames, *args, **kwargs)


def request(
    model: str = "arm", dims: int = 2, seed: int | None = None, **extra: Any
) -> PlanRequest:
    rng = np.random.default_rng(seed or 0)
    return PlanRequest(
        model=model,
        frames=rng.integers(0, 255, (1, 64, 64, 3), dtype=np.uint8),
        state=rng.normal(size=(1, dims)).astype(np.float32),
        goal=rng.integers(0, 255, (64, 64, 3), dtype=np.uint8),
        seed=seed,
        **extra,
    )


@pytest.fixture(scope="module")
def fleet() -> FleetPlanner:
    arm = CountingWorldModel(tiny_world_model())
    cart = CountingWorldModel(tiny_world_model(action_dim=3, state_dim=3, seed=1))
    return FleetPlanner({"arm": arm, "cart": cart})


def calls(fleet: FleetPlanner, name: str) -> list[int]:
    model = fleet.models[name]
    assert isinstance(model, CountingWorldModel)
    return model.calls


def test_group_requests_splits_by_model_warm_start_and_seed() -> None:
    warm = np.zeros((2, 2), np.float32)
    requests = [
        request(),
        request(model="cart", dims=3),
        request(),
        request(previous_plan=warm),
        request(seed=7),
    ]
    groups = group_requests(requests)
    assert groups == {
        GroupKey("arm", False, -1): [0, 2],
        GroupKey("cart", False, -1): [1],
        GroupKey("arm", True, -1): [3],
        GroupKey("arm", False, 4): [4],
    }


def test_one_plan_call_per_model_for_many_robots(fleet: FleetPlanner) -> None:
    calls(fleet, "arm").clear()
    calls(fleet, "cart").clear()
    requests = [request() for _ in range(5)] + [request(model="cart", dims=3) for _ in range(3)]
    results = fleet(requests)
    assert calls(fleet, "arm") == [5] and calls(fleet, "cart") == [3]
    assert [r.model for r in results] == ["arm"] * 5 + ["cart"] * 3
    for result in results:
        dims = 3 if result.model == "cart" else 2
        assert result.actions.shape == (2, dims) and result.actions.dtype == np.float32
        assert np.all(np.abs(result.actions) <= 1.0) and np.isfinite(result.energy)
    assert {r.batch_size for r in results} == {5, 3}


def test_seeded_request_is_reproducible_whatever_the_batch(fleet: FleetPlanner) -> None:
    alone = fleet([request(seed=11)])[0]
    crowded = fleet([request(), request(seed=11), request(model="cart", dims=3)])[1]
    np.testing.assert_array_equal(alone.actions, crowded.actions)
    assert alone.energy == crowded.energy and crowded.batch_size == 1


def test_warm_start_is_shifted_and_kept_within_bounds(fleet: FleetPlanner) -> None:
    previous = np.array([[0.9, -0.9], [0.5, 0.5]], np.float32)
    result = fleet([request(previous_plan=previous, seed=3)])[0]
    assert result.actions.shape == (2, 2)
    assert np.all(np.abs(result.actions) <= 1.0)


def test_unknown_model_is_an_error(fleet: FleetPlanner) -> None:
    with pytest.raises(KeyError, match="unknown model"):
        fleet.plan_group("nope", [request(model="nope")])


def test_results_carry_the_energy_spread_and_the_no_op_flag() -> None:
    source = tiny_world_model()
    floor = replace(source.spec, cem={**SMALL_CEM, "min_relative_spread": 10.0})  # never reached
    fleet = FleetPlanner(
        {"acts": source, "declines": WorldModel(source.encoder, source.predictor, floor)}
    )
    acts, declines = fleet([request("acts", seed=4), request("declines", seed=4)])
    assert acts.energy_spread is not None and acts.energy_spread > 0 and not acts.noop
    # the same candidates, so the same spread; below the floor the answer is the no-op
    assert declines.energy_spread == acts.energy_spread and declines.noop
    np.testing.assert_array_equal(declines.actions, np.zeros((2, 2), np.float32))
    message = declines.to_message()
    assert message["noop"] is True and message["energy_spread"] == declines.energy_spread
