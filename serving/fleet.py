"""Fleet planning: many robots' requests -> one `WorldModel.plan` call per model.

`FleetPlanner` is the Ray-free core of the planner deployment (a callable stage, testable on
plain lists). Requests are grouped by model and by whether they warm-start (CEM uses a narrower
initial spread for warm starts, so the two cannot share one call); each group is planned in ONE
call, so the CEM samples of all its robots go through the AC predictor in one forward per CEM
iteration. A request with a `seed` is planned on its own with a generator seeded from it, so its
answer does not depend on which other robots happened to share the batch.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch

from modeling.cem import shift_plan
from modeling.world_model import WorldModel
from serving.schemas import ModelInfo, PlanRequest, PlanResult


class GroupKey(NamedTuple):
    model: str
    warm_start: bool
    solo: int  # -1 for the shared group; the request index for a seeded request


def model_info(name: str, model: WorldModel) -> ModelInfo:
    """The public description of a loaded world model."""
    spec = model.spec
    cem = spec.cem_config()
    return ModelInfo(
        name=name,
        image_size=spec.image_size,
        action_dim=spec.action_dim,
        state_dim=spec.state_dim,
        action_low=list(spec.action_low),
        action_high=list(spec.action_high),
        horizon=cem.horizon,
        control_fps=spec.control_fps,
        num_samples=cem.num_samples,
        num_iterations=cem.num_iterations,
    )


def group_requests(requests: Sequence[PlanRequest]) -> dict[GroupKey, list[int]]:
    """Indices of the requests that can share one `plan` call, by model and warm start."""
    groups: dict[GroupKey, list[int]] = defaultdict(list)
    for index, request in enumerate(requests):
        solo = index if request.seed is not None else -1
        groups[GroupKey(request.model, request.previous_plan is not None, solo)].append(index)
    return dict(groups)


class FleetPlanner:
    """Plans batches of robot requests with the loaded world models."""

    def __init__(self, models: dict[str, WorldModel], device: torch.device | str = "cpu") -> None:
        if not models:
            raise ValueError("FleetPlanner needs at least one model")
        self.device = torch.device(device)
        self.models = {name: model.eval().to(self.device) for name, model in models.items()}
        self.infos = {name: model_info(name, model) for name, model in models.items()}

    def __call__(self, requests: Sequence[PlanRequest]) -> list[PlanResult]:
        """Plan every request; results are in request order."""
        results: list[PlanResult | None] = [None] * len(requests)
        for key, indices in group_requests(requests).items():
            outputs = self.plan_group(key.model, [requests[i] for i in indices])
            for index, output in zip(indices, outputs, strict=True):
                results[index] = output
        return [result for result in results if result is not None]

    def plan_group(self, name: str, requests: Sequence[PlanRequest]) -> list[PlanResult]:
        """ONE `WorldModel.plan` call for robots that share the model and warm-start mode."""
        if name not in self.models:
            raise KeyError(f"unknown model {name!r}")
        model = self.models[name]
        device = self.device
        frames = torch.from_numpy(np.stack([r.frames for r in requests])).to(device)  # (R,1,H,W,3)
        states = torch.from_numpy(np.stack([r.state for r in requests])).to(device)  # (R, 1, S)
        goals = torch.from_numpy(np.stack([r.goal for r in requests])).to(device)  # (R, H, W, 3)
        warm = None
        if requests[0].previous_plan is not None:
            previous = np.stack([np.asarray(r.previous_plan) for r in requests])  # (R, H, A)
            warm = shift_plan(torch.from_numpy(previous).to(device))  # (R, H, A)
        generator = None
        if len(requests) == 1 and requests[0].seed is not None:
            generator = torch.Generator(device=device).manual_seed(requests[0].seed)
        started = time.perf_counter()
        result = model.plan(frames, states, goals, warm_start=warm, generator=generator)
        plan_ms = (time.perf_counter() - started) * 1000
        plans = result.plan.float().cpu().numpy()  # (R, H, A)
        energies = result.energy.float().cpu()  # (R,)
        spreads = None if result.spread is None else result.spread[0].float().cpu()  # (R,)
        noops = None if result.noop is None else result.noop.cpu()  # (R,) bool
        return [
            PlanResult(
                actions=plans[i],
                energy=float(energies[i]),
                model=name,
                energy_spread=None if spreads is None else float(spreads[i]),
                noop=False if noops is None else bool(noops[i]),
                batch_size=len(requests),
                plan_ms=plan_ms,
            )
            for i in range(len(requests))
        ]
