"""Closed-loop planning evaluation: receding-horizon CEM toward goal images vs random actions.

For every episode: reset the env with a seed, roll out `goal_steps` random actions and
keep the reached frame and `info["state"]` as the goal; reset with the same seed; then,
up to `max_steps` times, plan toward the goal image (`Planner.plan`), execute the first
action (held for `action_repeat` env steps when the model runs at a lower control rate
than the env), observe, re-plan warm-started from the previous plan. The same episodes
run again with uniform random actions. Success = the state within `tolerance` of the
goal state; an episode stops early once it succeeds (for both controllers alike).

Each planning step logs the spread of the candidate energies (`CEMResult.spread`); where
it is below the model's noise floor (`CEMConfig.min_relative_spread`) the planner takes
the no-op action and the warm start is dropped, and the summary counts those steps.
CEM settings come from the bundle's `world_model.json`, overridden by `EvalConfig.cem`.

Works with any env that follows the collect protocol (Box actions, `rgb_array` frames,
`info["state"]` or a Box observation). The planner is in-process (`WorldModelPlanner`)
or anything with the same `plan` method (the HTTP client, wired in by the flow).
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from modeling.cem import CEMConfig, shift_plan
from modeling.world_model import WorldModel, load_world_model
from tasks import progress as live
from tasks.robot.collect import (
    RandomPolicy,
    StateSpec,
    check_env,
    extract_state,
    make_env,
    render_frame,
)

CEM_FIELDS = tuple(f.name for f in fields(CEMConfig))
Controller = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (frame, state) -> action


class Planner(Protocol):
    """Plans `(H, A)` actions from the current frame `(H, W, 3)`, state `(S,)` and goal image."""

    def plan(
        self,
        frame: np.ndarray,
        state: np.ndarray,
        goal: np.ndarray,
        previous_plan: np.ndarray | None = None,
    ) -> np.ndarray: ...


@dataclass(frozen=True)
class EvalConfig:
    """What `vjepa eval-planning` runs."""

    env: str
    checkpoint: str
    episodes: int = 10
    tolerance: float = 0.1
    max_steps: int = 20
    goal_steps: int = 40  # `vjepa eval-planning --goal-steps` and the demo use this value
    seed: int = 0
    action_repeat: int | None = None  # None: env fps / model control fps (1 if unknown)
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    cem: dict[str, Any] = field(default_factory=dict)  # CEMConfig fields over the bundle's
    state: StateSpec | None = None  # the state for success (None: info["state"] / observation)
    # The state dims success and distance are measured on (None: all). The rest (velocities,
    # say) only feed the predictor: a proprioceptive state beside the one the goal sets.
    success_dims: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        check_success_dims(self.success_dims)
        if min(self.episodes, self.max_steps, self.goal_steps) < 1:
            raise ValueError("episodes, max_steps and goal_steps must be >= 1")
        if self.tolerance <= 0:
            raise ValueError(f"tolerance must be positive, got {self.tolerance}")
        if self.action_repeat is not None and self.action_repeat < 1:
            raise ValueError(f"action_repeat must be >= 1, got {self.action_repeat}")
        unknown = set(self.cem) - {f.name for f in fields(CEMConfig)}
        if unknown:
            raise ValueError(f"unknown CEM settings {sorted(unknown)}; known: {CEM_FIELDS}")


@dataclass(frozen=True)
class EpisodeResult:
    """One controller's run of one episode."""

    episode: int
    seed: int
    initial_distance: float
    final_distance: float
    success: bool
    steps: int
    mean_energy_spread: float | None = None  # planner only: std / mean of candidate energies
    noop_steps: int = 0  # planner steps below the noise floor (no-op action, warm start reset)


class WorldModelPlanner:
    """In-process planning with `WorldModel.plan` (CEM), warm-started by `shift_plan`."""

    def __init__(self, model: WorldModel, seed: int = 0, **cem_overrides: Any) -> None:
        self.model = model.eval()
        self.cem = model.spec.cem_config(**cem_overrides)
        self.generator = torch.Generator().manual_seed(seed)
        self.last_spread: float | None = None
        self.last_confident = True

    def _image(self, frame: np.ndarray) -> torch.Tensor:
        """(H, W, 3) uint8 of any size: `WorldModel.encode_frames` brings it to the spec's size."""
        return torch.as_tensor(np.ascontiguousarray(frame, dtype=np.uint8))  # (H, W, 3)

    def plan(
        self,
        frame: np.ndarray,
        state: np.ndarray,
        goal: np.ndarray,
        previous_plan: np.ndarray | None = None,
    ) -> np.ndarray:
        frames = self._image(frame)[None, None]  # (1, 1, H, W, 3)
        goals = self._image(goal)[None]  # (1, H', W', 3)
        states = torch.as_tensor(state, dtype=torch.float32).reshape(1, 1, -1)  # (1, 1, S)
        warm = None
        if previous_plan is not None:
            warm = shift_plan(torch.as_tensor(previous_plan, dtype=torch.float32)[None])
        result = self.model.plan(frames, states, goals, self.cem, warm, self.generator)
        if result.spread is not None and result.confident is not None:
            self.last_spread = float(result.spread[0, 0])
            self.last_confident = bool(result.confident[0])
        return result.plan[0].numpy()  # (H, A)


def load_planner_model(uri: str) -> WorldModel:
    """A world-model bundle from a local folder or an `s3://` prefix."""
    from tasks.training.outputs import fetch_file

    with tempfile.TemporaryDirectory(prefix="vjepa-world-model-") as scratch:
        return load_world_model(fetch_file(uri.rstrip("/"), scratch))


def _observe(env: Any, observation: Any, info: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    frame = render_frame(env)  # (H, W, 3)
    return frame, extract_state(observation, info, env.observation_space)


def check_success_dims(dims: tuple[int, ...] | None) -> None:
    if dims is not None and (not dims or min(dims) < 0 or len(set(dims)) != len(dims)):
        raise ValueError(f"success dims must be distinct indices >= 0, got {list(dims)}")


def goal_distances(
    states: np.ndarray, goal_state: np.ndarray, dims: tuple[int, ...] | None
) -> np.ndarray:
    """Distance to the goal on the success dims: `states (..., S)` -> `(...)`."""
    if dims is not None and max(dims) >= goal_state.shape[-1]:
        raise ValueError(
            f"success dims {list(dims)} are outside the env's {goal_state.shape[-1]}-dim state; "
            f"pick indices below {goal_state.shape[-1]} (CLI: --success-dims)"
        )
    picked = list(dims) if dims is not None else slice(None)
    difference = np.asarray(states)[..., picked] - np.asarray(goal_state)[..., picked]
    return np.asarray(np.linalg.norm(difference, axis=-1))


def check_success_fits(env: Any, dims: tuple[int, ...] | None) -> None:
    """Fail fast (ValueError) when the success dims are outside the env's state."""
    if dims is not None:
        _, state = _observe(env, *env.reset(seed=0))
        goal_distances(state, state, dims)


def make_goal(env: Any, seed: int, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Goal frame and state: `steps` random actions from `reset(seed=seed)`."""
    observation, info = env.reset(seed=seed)
    policy = RandomPolicy(check_env(env), seed=seed + 1_000_003)
    for _ in range(steps):
        observation, _, terminated, truncated, info = env.step(policy.act(observation, info))
        if terminated or truncated:
            break
    return _observe(env, observation, info)


def run_episode(
    env: Any,
    seed: int,
    goal_state: np.ndarray,
    controller: Controller,
    config: EvalConfig,
    repeat: int,
) -> tuple[float, float, int]:
    """(initial distance, final distance, control steps) of one controller from `reset(seed)`."""
    observation, info = env.reset(seed=seed)
    frame, state = _observe(env, observation, info)
    initial = distance = float(goal_distances(state, goal_state, config.success_dims))
    steps = 0
    while steps < config.max_steps and distance > config.tolerance:
        action = controller(frame, state)
        ended = False
        for _ in range(repeat):
            observation, _, terminated, truncated, info = env.step(action)
            if terminated or truncated:
                ended = True
                break
        frame, state = _observe(env, observation, info)
        distance = float(goal_distances(state, goal_state, config.success_dims))
        steps += 1
        if ended:
            break
    return initial, distance, steps


class PlanningController:
    """Receding horizon: plan, keep the first action, remember the plan for the warm start.

    Spreads and no-op steps are read from the planner when it reports them
    (`WorldModelPlanner.last_spread` / `last_confident`); a plan below the noise floor is
    executed (it is the no-op) but not kept as the next warm start.
    """

    def __init__(self, planner: Planner, goal: np.ndarray, low: np.ndarray, high: np.ndarray):
        self.planner, self.goal, self.low, self.high = planner, goal, low, high
        self.plan: np.ndarray | None = None
        self.spreads: list[float] = []
        self.noops = 0

    def __call__(self, frame: np.ndarray, state: np.ndarray) -> np.ndarray:
        plan = np.asarray(self.planner.plan(frame, state, self.goal, self.plan), dtype=np.float32)
        spread = getattr(self.planner, "last_spread", None)
        if spread is not None:
            self.spreads.append(spread)
        confident = getattr(self.planner, "last_confident", True)
        self.noops += 0 if confident else 1
        self.plan = plan if confident else None  # (H, A); noise is no warm start
        return np.clip(plan[0], self.low, self.high)

    def mean_spread(self) -> float | None:
        return float(np.mean(self.spreads)) if self.spreads else None


def planner_controller(
    planner: Planner, goal: np.ndarray, low: np.ndarray, high: np.ndarray
) -> PlanningController:
    return PlanningController(planner, goal, low, high)


def random_controller(env: Any, seed: int) -> Controller:
    policy = RandomPolicy(check_env(env), seed=seed + 2_000_003)
    return lambda frame, state: policy.act(state, {})


def action_repeat(env: Any, model_fps: float | None, configured: int | None) -> int:
    """Env steps per planned action: the configured value, else env fps / model control fps."""
    if configured is not None:
        return configured
    env_fps = (getattr(env, "metadata", None) or {}).get("render_fps")
    if not env_fps or not model_fps:
        return 1
    return max(1, round(float(env_fps) / float(model_fps)))


ProgressFn = Callable[[int, EpisodeResult, EpisodeResult], None]


def _print_progress(done: int, planned: EpisodeResult, random: EpisodeResult) -> None:
    mark = "reached" if planned.success else "missed"
    print(
        f"[eval-planning] episode {done}: planner {mark} at distance {planned.final_distance:.3f} "
        f"after {planned.steps} steps (start {planned.initial_distance:.3f}); "
        f"random {random.final_distance:.3f}",
        file=sys.stderr,
        flush=True,
    )


def evaluate(
    config: EvalConfig,
    planner: Planner,
    model_fps: float | None = None,
    progress: ProgressFn | None = _print_progress,
) -> dict[str, Any]:
    """Run planner and random baseline on the same episodes; the summary with per-episode rows."""
    env = make_env(config.env, config.env_kwargs, config.state)
    started = time.monotonic()
    planned: list[EpisodeResult] = []
    randoms: list[EpisodeResult] = []
    try:
        space = check_env(env)
        repeat = action_repeat(env, model_fps, config.action_repeat)
        live.report("eval-planning", 0, config.episodes, "episode")
        for episode in range(config.episodes):
            seed = config.seed + episode
            goal_frame, goal_state = make_goal(env, seed, config.goal_steps)
            planning = planner_controller(planner, goal_frame, space.low, space.high)
            for rows, controller in ((planned, planning), (randoms, random_controller(env, seed))):
                first, last, steps = run_episode(env, seed, goal_state, controller, config, repeat)
                success = last <= config.tolerance
                rows.append(EpisodeResult(episode, seed, first, last, success, steps))
            planned[-1] = replace(
                planned[-1], mean_energy_spread=planning.mean_spread(), noop_steps=planning.noops
            )
            if progress is not None:
                progress(episode + 1, planned[-1], randoms[-1])
            successes = sum(r.success for r in planned)
            live.report("eval-planning", episode + 1, config.episodes, "episode", success=successes)
    finally:
        env.close()
    return summarise(config, planned, randoms, repeat, time.monotonic() - started)


def summarise(
    config: EvalConfig,
    planned: Sequence[EpisodeResult],
    randoms: Sequence[EpisodeResult],
    repeat: int,
    seconds: float,
) -> dict[str, Any]:
    """The `--json` payload: headline rates and distances, settings, per-episode rows."""
    return {
        "env": config.env,
        "checkpoint": config.checkpoint,
        "episodes": config.episodes,
        "steps": config.max_steps,
        "goal_steps": config.goal_steps,
        "tolerance": config.tolerance,
        "success_dims": list(config.success_dims) if config.success_dims is not None else None,
        "action_repeat": repeat,
        "success_rate": float(np.mean([r.success for r in planned])),
        "mean_final_distance": float(np.mean([r.final_distance for r in planned])),
        "random_success_rate": float(np.mean([r.success for r in randoms])),
        "random_mean_final_distance": float(np.mean([r.final_distance for r in randoms])),
        "mean_initial_distance": float(np.mean([r.initial_distance for r in planned])),
        "mean_planner_steps": float(np.mean([r.steps for r in planned])),
        "mean_energy_spread": _mean_or_none([r.mean_energy_spread for r in planned]),
        "noop_fraction": sum(r.noop_steps for r in planned) / max(1, sum(r.steps for r in planned)),
        "cem_overrides": dict(config.cem),
        "seconds": round(seconds, 3),
        "planner_episodes": [asdict(r) for r in planned],
        "random_episodes": [asdict(r) for r in randoms],
    }


def _mean_or_none(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return float(np.mean(known)) if known else None


def plot_distances(summary: dict[str, Any], uri: str) -> str:
    """A PNG at `uri`: final distance per episode, planner vs random, with the tolerance."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tasks.training.outputs import upload_file

    planned = [row["final_distance"] for row in summary["planner_episodes"]]
    randoms = [row["final_distance"] for row in summary["random_episodes"]]
    starts = [row["initial_distance"] for row in summary["planner_episodes"]]
    index = np.arange(len(planned))
    figure, axis = plt.subplots(figsize=(7, 3.5), dpi=100)
    axis.bar(index - 0.2, planned, width=0.4, label="planner (CEM)")
    axis.bar(index + 0.2, randoms, width=0.4, label="random actions")
    axis.scatter(index, starts, marker="_", color="black", label="start distance")
    axis.axhline(summary["tolerance"], linestyle="--", color="grey", label="tolerance")
    axis.set_xlabel("episode")
    axis.set_ylabel("final distance to goal state")
    axis.set_title(f"closed-loop planning in {summary['env']}")
    axis.legend(fontsize=8)
    figure.tight_layout()
    with tempfile.TemporaryDirectory(prefix="vjepa-plot-") as scratch:
        local = Path(scratch) / "final_distance.png"
        figure.savefig(local)
        plt.close(figure)
        return upload_file(local, uri)
