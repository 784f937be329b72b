"""Prefect flow behind `vjepa eval-planning`: closed-loop planning vs random actions.

One task runs the episodes (in-process planner, or the HTTP planner when a server
URL is given), one publishes a markdown artifact with the headline figures and the
per-episode table, beside a PNG of the final distances.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from tasks import storage
from tasks.planning.evaluate import EvalConfig, Planner, evaluate, plot_distances
from tasks.planning.summary import PlanningSummary

ARTIFACT_KEY = "eval-planning"


class ServerUnavailableError(RuntimeError):
    """`--server` was given but the HTTP planner client is not installed."""


class HttpPlanner:
    """`Planner` over `serving.client.PlannerClient` (the server shifts the previous plan).

    Every request carries a seed (`seed`, then +1 per request), so the server plans it with
    its own generator and an evaluation repeats exactly, as the in-process one does; an
    unseeded request would draw from the replica's shared generator, whose state depends on
    every request the replica served before."""

    def __init__(
        self, url: str, token: str | None, model: str | None = None, seed: int = 0
    ) -> None:
        try:
            from serving.client import PlannerClient
        except ImportError as error:
            raise ServerUnavailableError(
                f"planning through a server is not available here ({error}); "
                "run without --server to plan in-process"
            ) from error
        self.client = PlannerClient(url, token)
        self.model = model
        # read by the eval's controller, as on `WorldModelPlanner`: the served spread and no-op
        self.last_spread: float | None = None
        self.last_confident = True
        self.seed, self.requests = seed, 0

    def plan(self, frame: Any, state: Any, goal: Any, previous_plan: Any = None) -> Any:
        seed = self.seed * 1_000_003 + self.requests  # a fresh draw per request, the same per run
        self.requests += 1
        result = self.client.plan(
            frame, state, goal, previous_plan, model=self.model, seed=seed % 2**63
        )
        self.last_spread, self.last_confident = result.energy_spread, not result.noop
        return result.actions

    def control_fps(self) -> float | None:
        """The served model's control rate from `/v1/models` (the default model unless named)."""
        described = self.client.models()
        name = self.model or described.get("default_model")
        rates = [m["control_fps"] for m in described.get("models", []) if m.get("name") == name]
        return float(rates[0]) if rates else None


def make_planner(
    config: EvalConfig, server: str | None, token_env: str | None
) -> tuple[Planner, float | None]:
    """The planner and the model's control rate (None when only the server knows it)."""
    if server:
        token = os.environ.get(token_env) if token_env else None
        if token_env and not token:
            raise ValueError(f"--token-env {token_env}: that environment variable is not set")
        planner = HttpPlanner(server, token, seed=config.seed)
        return planner, planner.control_fps()
    from tasks.planning.evaluate import WorldModelPlanner, load_planner_model

    model = load_planner_model(config.checkpoint)
    local = WorldModelPlanner(model, seed=config.seed, **config.cem)  # bundle's CEM + overrides
    return local, model.spec.control_fps


@task(name="closed-loop-episodes", cache_policy=NO_CACHE)
def run_episodes(
    config: EvalConfig, server: str | None, token_env: str | None, model_fps: float | None
) -> PlanningSummary:
    """Planner and random baseline on the same seeded episodes; progress on stderr."""
    planner, fps = make_planner(config, server, token_env)
    return PlanningSummary.from_dict(evaluate(config, planner, model_fps=fps or model_fps))


def _dims_note(dims: list[int] | None) -> str:
    return f" on state dims {', '.join(map(str, dims))}" if dims is not None else ""


def _markdown(summary: PlanningSummary, plot: str | None) -> str:
    rows = "\n".join(
        f"| {p.episode} | {p.initial_distance:.3f} | {p.final_distance:.3f} "
        f"| {'yes' if p.success else 'no'} | {r.final_distance:.3f} "
        f"| {'yes' if r.success else 'no'} |"
        for p, r in zip(summary.planner_episodes, summary.random_episodes, strict=True)
    )
    return (
        f"# Closed-loop planning in {summary.env}\n\n"
        f"World model `{summary.checkpoint}`, {summary.episodes} episodes, at most "
        f"{summary.steps} planning steps, tolerance {summary.tolerance}"
        f"{_dims_note(summary.success_dims)}.\n\n"
        "| controller | success rate | mean final distance |\n| --- | --- | --- |\n"
        f"| planner (CEM) | {summary.success_rate:.2f} | {summary.mean_final_distance:.3f} |\n"
        f"| random actions | {summary.random_success_rate:.2f} "
        f"| {summary.random_mean_final_distance:.3f} |\n\n"
        f"Plot: `{plot}`\n\n"
        "| episode | start distance | planner final | planner success | random final "
        f"| random success |\n| --- | --- | --- | --- | --- | --- |\n{rows}\n"
    )


@task(name="publish-eval-planning", cache_policy=NO_CACHE)
def publish(summary: PlanningSummary, output: str) -> PlanningSummary:
    """results.json, final_distance.png and the markdown artifact; the summary with their URIs."""
    import json

    plot = plot_distances(summary.as_dict(), storage.join(output, "final_distance.png"))
    results = storage.join(output, "results.json")
    published = dataclasses.replace(summary, plot=plot, results=results)
    payload = dataclasses.replace(published, results=None).payload()
    storage.write_bytes(results, json.dumps(payload, indent=2, sort_keys=True).encode())
    create_markdown_artifact(
        key=ARTIFACT_KEY, markdown=_markdown(summary, plot), description="vjepa eval-planning"
    )
    return published


@flow(name="eval-planning")
def eval_planning_flow(
    config: EvalConfig,
    output: str,
    server: str | None = None,
    token_env: str | None = None,
    model_fps: float | None = None,
) -> PlanningSummary:
    """Evaluate receding-horizon planning against random actions; returns the typed summary."""
    return publish(run_episodes(config, server, token_env, model_fps), output)
