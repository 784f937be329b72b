"""Which part of a world model fails in an env: representation, dynamics or planner.

`vjepa diagnose-world-model --checkpoint DIR --env ENV` runs four checks on any env that
follows the collect protocol (deterministic `reset(seed)`, `rgb_array` frames, Box actions,
`info["state"]`), replaying candidate actions in the env to get the frames they really give:

1. **representation**: the energy of true frames (the planner's distance between their
   layer-normed features and the goal's) against the state distance to the goal, along random
   walks; Spearman rank correlation. Low: the encoder cannot see what success means.
2. **ranking**: from one state, `candidates` random actions scored by the learned model
   (predicted energy) and by the env (true-frame energy); Spearman between the two (pooled
   over goals, centred per goal) and the ratio of their spreads. It passes when the ranking
   beats chance at 5% for its sample size. Low: the predictor does not know what actions do.
3. **action gain**: the shuffled-action gain on fresh env windows (rollout error with another
   window's actions minus with the true ones, over the copy error). ~0: it ignores actions.
4. **planner**: the same CEM driven by true next frames (perfect dynamics) against the learned
   model and random actions, closed loop. If perfect dynamics succeeds and the learned model
   does not, fix the dynamics; if neither does, the representation or the planner.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from modeling.cem import CEMConfig, cem_plan, feature_distance
from modeling.world_model import WorldModel
from tasks.planning.evaluate import (
    Controller,
    EvalConfig,
    WorldModelPlanner,
    action_repeat,
    check_success_dims,
    goal_distances,
    make_goal,
    planner_controller,
    random_controller,
    run_episode,
)
from tasks.planning.rollouts import MIN_ACTION_GAIN, rollout_errors, shuffled
from tasks.robot.collect import StateSpec, check_env, extract_state, make_env, render_frame

MIN_RANK = 0.3  # Spearman below this: true-frame energy does not order states usefully
# Part 2 passes when the ranking beats chance at the 5% level (one-sided) for its sample size:
# Spearman above tanh(z / sqrt(n - 3)) (Fisher's z), n = goals x candidates. 0.21 for the demo's
# quick subset (4 x 16), 0.10 for the defaults (4 x 64); a blind predictor scores 0.
RANK_SIGNIFICANCE_Z = 1.645


@dataclass(frozen=True)
class DiagnoseConfig:
    """What `vjepa diagnose-world-model` runs (small by default: minutes on a laptop CPU)."""

    env: str
    checkpoint: str
    goals: int = 4  # seeded episodes (start state + goal image) every part uses
    walk_steps: int = 30  # random-walk states per goal for part 1
    candidates: int = 64  # candidate actions per goal for part 2
    windows: int = 64  # fresh env windows for part 3
    episodes: int = 4  # closed-loop episodes per controller for part 4
    max_steps: int = 15
    goal_steps: int = 10
    tolerance: float = 0.1
    oracle_samples: int = 64  # CEM of the perfect-dynamics planner (horizon 1)
    oracle_iterations: int = 3
    seed: int = 0
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    state: StateSpec | None = None  # the state for distances (None: info["state"] / observation)
    success_dims: tuple[int, ...] | None = None  # the state dims distances use (None: all)

    def __post_init__(self) -> None:
        check_success_dims(self.success_dims)


def quick_config(env: str, checkpoint: str, seed: int = 0, goal_steps: int = 10) -> DiagnoseConfig:
    """The cheap subset the demo's report shows (seconds on a laptop CPU): the defaults' 4 goals
    and 30-step walks (part 1 only encodes frames; with 2 goals of 10 steps its Spearman swung
    0.18-0.96 between seeds on one model), 16 candidates per goal, 32 windows, the defaults'
    4 closed-loop episodes of at most 10 steps per controller (with 2, a seed-1 demo model that
    planned 0.90 vs 0.40 over 10 episodes failed the planner part at 0.50 vs 0.50)."""
    return DiagnoseConfig(
        env, checkpoint, goals=4, walk_steps=30, candidates=16, windows=32, episodes=4,
        max_steps=10, goal_steps=goal_steps, seed=seed,
    )  # fmt: skip


@dataclass(frozen=True)
class PartResult:
    """One part's figure, the threshold it is judged by, and the verdict."""

    name: str
    value: float
    threshold: float
    passed: bool
    detail: str


@dataclass(frozen=True)
class Diagnosis:
    """All four parts, the overall finding and the plotted points."""

    env: str
    checkpoint: str
    parts: list[PartResult]
    finding: str
    planner: dict[str, float]
    energy_vs_distance: list[tuple[float, float]]
    predicted_vs_true: list[tuple[float, float]]
    # part 3's gain for perfect dynamics on the same windows: the most this env lets a model score
    action_gain_ceiling: float = 0.0


def rank_threshold(count: int) -> float:
    """The Spearman that `count` pairs must exceed to beat chance at 5% (one-sided)."""
    return round(float(np.tanh(RANK_SIGNIFICANCE_Z / np.sqrt(max(count - 3, 1)))), 4)


def pooled_spearman(groups: list[list[tuple[float, float]]]) -> float:
    """Spearman over all (true, predicted) pairs once each group's means are subtracted.

    Each goal's energies sit at their own level, so pairs are centred per goal before pooling;
    a goal whose candidates barely differ in true energy then weighs little, rather than
    contributing a noise-level correlation as heavily as a goal that discriminates.
    """
    centred = [np.asarray(pairs) - np.asarray(pairs).mean(axis=0) for pairs in groups if pairs]
    if not centred:
        return 0.0
    pooled = np.concatenate(centred)  # (n, 2): true, predicted
    return spearman(pooled[:, 1], pooled[:, 0])


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Rank correlation (ties broken by order; 0 when either side is constant)."""
    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    ranks = [np.argsort(np.argsort(values)).astype(np.float64) for values in (a, b)]
    return float(np.corrcoef(ranks[0], ranks[1])[0, 1])


class FrameEnergy:
    """The planner's energy on real frames: its distance (the spec's CEM `energy`, L1 unless
    set) between layer-normed features and the goal's."""

    def __init__(self, model: WorldModel, goal: np.ndarray) -> None:
        self.model = model
        self.metric = model.spec.cem_config().energy
        self.goal = self.features(goal[None])  # (1, N, D)

    def features(self, frames: np.ndarray) -> torch.Tensor:
        batch = torch.as_tensor(np.ascontiguousarray(frames))[:, None]  # (B, 1, H, W, 3)
        return self.model.encode_frames(batch)  # (B, N, D)

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        return feature_distance(self.features(frames), self.goal, self.metric).numpy()  # (B,)


class Replayer:
    """Frames that actions really give from `reset(seed)` after a recorded prefix of actions."""

    def __init__(self, env: Any, seed: int, repeat: int) -> None:
        self.env, self.seed, self.repeat = env, seed, repeat
        self.prefix: list[np.ndarray] = []

    def _step(self, action: np.ndarray) -> tuple[Any, dict[str, Any]]:
        observation, info = None, {}
        for _ in range(self.repeat):
            observation, _, _, _, info = self.env.step(action)
        return observation, info

    def frame_after(self, action: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(frame, state) after the prefix and then `action`."""
        observation, info = self.env.reset(seed=self.seed)
        for done in self.prefix:
            self._step(done)
        observation, info = self._step(action)
        frame = render_frame(self.env)
        return frame, extract_state(observation, info, self.env.observation_space)


def state_tensor(state: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(state, dtype=torch.float32).reshape(1, 1, -1)  # (1, 1, S)


def _share(value: float, ceiling: float) -> str:
    return f"{value / ceiling:.0%}" if ceiling > 1e-9 else "n/a"


def verdict(name: str, value: float, threshold: float, detail: str) -> PartResult:
    return PartResult(name, round(value, 4), threshold, bool(value >= threshold), detail)


class Probe:
    """One seeded episode of the diagnosis: the env, its goal, the model's energy to it."""

    def __init__(self, config: DiagnoseConfig, model: WorldModel, index: int) -> None:
        self.config, self.model = config, model
        self.seed = config.seed + index
        self.env = make_env(config.env, config.env_kwargs, config.state)
        self.space = check_env(self.env)
        self.repeat = action_repeat(self.env, model.spec.control_fps, None)
        self.goal_frame, self.goal_state = make_goal(self.env, self.seed, config.goal_steps)
        self.energy = FrameEnergy(model, self.goal_frame)

    def start(self) -> tuple[np.ndarray, np.ndarray]:
        observation, info = self.env.reset(seed=self.seed)
        frame = render_frame(self.env)
        return frame, extract_state(observation, info, self.env.observation_space)

    def random_actions(self, count: int, salt: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, salt])
        return rng.uniform(self.space.low, self.space.high, size=(count, self.space.shape[0]))


def energy_against_distance(probe: Probe) -> tuple[float, list[tuple[float, float]]]:
    """Part 1 for one goal: Spearman of true-frame energy vs state distance along a walk."""
    frame, state = probe.start()
    frames, states = [frame], [state]
    replay = Replayer(probe.env, probe.seed, probe.repeat)
    for action in probe.random_actions(probe.config.walk_steps, salt=1):
        frame, state = replay.frame_after(action)
        replay.prefix.append(action)
        frames.append(frame)
        states.append(state)
    energies = probe.energy(np.stack(frames))  # (K,)
    distances = goal_distances(np.stack(states), probe.goal_state, probe.config.success_dims)
    return spearman(energies, distances), list(
        zip(distances.tolist(), energies.tolist(), strict=True)
    )


def candidate_ranking(probe: Probe) -> tuple[float, float, list[tuple[float, float]]]:
    """Part 2 for one goal: (Spearman, predicted / true spread, points) over candidate actions."""
    frame, state = probe.start()
    candidates = probe.random_actions(probe.config.candidates, salt=2).astype(np.float32)
    model = probe.model
    context = model.encode_frames(torch.as_tensor(frame)[None, None])  # (1, N, D)
    energy = model.energy_fn(context, state_tensor(state), torch.as_tensor(probe.goal_frame)[None])
    predicted = energy(torch.as_tensor(candidates)[:, None]).numpy()  # (C,)
    replay = Replayer(probe.env, probe.seed, probe.repeat)
    true = probe.energy(np.stack([replay.frame_after(a)[0] for a in candidates]))  # (C,)
    spread = float(predicted.std() / max(true.std(), 1e-12))
    return (
        spearman(predicted, true),
        spread,
        list(zip(true.tolist(), predicted.tolist(), strict=True)),
    )


def env_windows(probe: Probe, count: int, given: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """`count` fresh 3-frame windows at the model's control rate: random actions, or window
    `i` from its own start with `given[i]` (`(count, 2, A)`)."""
    frames, states, actions = [], [], []
    for index in range(count):
        replay = Replayer(probe.env, probe.seed * 1000 + index, probe.repeat)
        first, state = _start_of(replay)
        window_frames, window_states = [first], [state]
        chosen = (
            given[index]
            if given is not None
            else probe.random_actions(2, salt=100 + index).astype(np.float32)
        )
        for action in chosen:
            frame, state = replay.frame_after(action)
            replay.prefix.append(action)
            window_frames.append(frame)
            window_states.append(state)
        frames.append(np.stack(window_frames))
        states.append(np.stack(window_states))
        actions.append(chosen)
    return {"frames": np.stack(frames), "states": np.stack(states), "actions": np.stack(actions)}


def _start_of(replay: Replayer) -> tuple[np.ndarray, np.ndarray]:
    observation, info = replay.env.reset(seed=replay.seed)
    frame = render_frame(replay.env)
    return frame, extract_state(observation, info, replay.env.observation_space)


@torch.no_grad()
def action_gain(probe: Probe, count: int) -> tuple[float, float]:
    """Part 3: shuffled-action gain of the learned predictor on fresh env windows, and the
    ceiling on the same windows (`perfect_dynamics_gain`)."""
    windows = env_windows(probe, count)
    model = probe.model
    features = model.encode_frames(torch.as_tensor(windows["frames"]))  # (B, 3*N, D)
    actions = torch.as_tensor(windows["actions"], dtype=torch.float32)  # (B, 2, A)
    states = torch.as_tensor(windows["states"], dtype=torch.float32)  # (B, 3, S)
    normalizer = model.spec.normalizer()
    if normalizer is not None:
        actions, states = normalizer.normalize_actions(actions), normalizer.normalize_states(states)
    true, copy = rollout_errors(model.predictor, features, actions, states)  # (B, 2) each
    other, _ = rollout_errors(model.predictor, features, shuffled(actions), states)
    gain = float((other - true).sum() / copy.sum().clamp_min(1e-12))
    return gain, perfect_dynamics_gain(probe, windows, features)


@torch.no_grad()
def perfect_dynamics_gain(
    probe: Probe, windows: dict[str, np.ndarray], features: torch.Tensor | None = None
) -> float:
    """The shuffled-action gain of perfect dynamics on `windows` (from `env_windows`): the
    true frames each window's start gives under the other window's actions against its own
    true frames, over the copy error. The most this env's frames let any model score: low
    where much of the image moves on its own (DistractorReach). Needs the encoder only."""
    model = probe.model
    if features is None:
        features = model.encode_frames(torch.as_tensor(windows["frames"]))  # (B, 3*N, D)
    swapped = env_windows(probe, len(windows["actions"]), np.roll(windows["actions"], 1, axis=0))
    moved = model.encode_frames(torch.as_tensor(swapped["frames"]))  # (B, 3*N, D)
    steps = windows["frames"].shape[1]
    own, other = (f.unflatten(1, (steps, -1)) for f in (features, moved))  # (B, 3, N, D)
    perfect = (other[:, 1:] - own[:, 1:]).abs().mean(dim=(2, 3))  # (B, 2)
    copy = (own[:, :1] - own[:, 1:]).abs().mean(dim=(2, 3))  # (B, 2)
    return float(perfect.sum() / copy.sum().clamp_min(1e-12))


def perfect_dynamics_controller(
    probe: Probe, seed: int
) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """CEM (horizon 1) whose energy is the true next frame's, replayed in a second env."""
    replay = Replayer(
        make_env(probe.config.env, probe.config.env_kwargs, probe.config.state), seed, probe.repeat
    )
    config = CEMConfig(
        num_samples=probe.config.oracle_samples,
        num_elites=max(2, probe.config.oracle_samples // 8),
        num_iterations=probe.config.oracle_iterations,
        horizon=1,
    )
    generator = torch.Generator().manual_seed(seed)

    def energy(candidates: torch.Tensor) -> torch.Tensor:
        frames = [replay.frame_after(a[0].numpy())[0] for a in candidates]  # (S,) frames
        return torch.as_tensor(probe.energy(np.stack(frames)))

    def act(frame: np.ndarray, state: np.ndarray) -> np.ndarray:
        low, high = probe.space.low, probe.space.high
        result = cem_plan(energy, 1, len(low), torch.as_tensor(low), torch.as_tensor(high),
                          config, None, generator)  # fmt: skip
        action = np.clip(result.plan[0, 0].numpy(), low, high)
        replay.prefix.append(action)
        return action

    return act


def closed_loop(probes: list[Probe], config: DiagnoseConfig) -> dict[str, float]:
    """Part 4: success and final distance of perfect dynamics, the learned model and random."""
    evaluation = EvalConfig(
        config.env, config.checkpoint, episodes=len(probes), tolerance=config.tolerance,
        max_steps=config.max_steps, goal_steps=config.goal_steps, seed=config.seed,
        success_dims=config.success_dims,
    )  # fmt: skip
    learned = WorldModelPlanner(probes[0].model, seed=config.seed)
    finals: dict[str, list[float]] = {"perfect": [], "learned": [], "random": []}
    for probe in probes:
        low, high = probe.space.low, probe.space.high
        controllers: dict[str, Controller] = {
            "perfect": perfect_dynamics_controller(probe, probe.seed),
            "learned": planner_controller(learned, probe.goal_frame, low, high),
            "random": random_controller(probe.env, probe.seed),
        }
        for name, controller in controllers.items():
            _, final, _ = run_episode(
                probe.env, probe.seed, probe.goal_state, controller, evaluation, probe.repeat
            )
            finals[name].append(final)
    figures: dict[str, float] = {}
    for name, values in finals.items():
        figures[f"{name}_success"] = float(np.mean([v <= config.tolerance for v in values]))
        figures[f"{name}_final_distance"] = float(np.mean(values))
    return figures


def planner_part(figures: dict[str, float]) -> PartResult:
    """Share of the perfect-dynamics gain over random (in final distance) the learned model keeps."""
    perfect = figures["random_final_distance"] - figures["perfect_final_distance"]
    learned = figures["random_final_distance"] - figures["learned_final_distance"]
    share = learned / perfect if perfect > 1e-9 else 0.0
    detail = (
        f"success perfect {figures['perfect_success']:.2f} / learned "
        f"{figures['learned_success']:.2f} / random {figures['random_success']:.2f}; final "
        f"distance {figures['perfect_final_distance']:.3f} / {figures['learned_final_distance']:.3f}"
        f" / {figures['random_final_distance']:.3f}"
    )
    return verdict("planner", share, 0.5, detail)


def finding(parts: dict[str, PartResult], figures: dict[str, float]) -> str:
    """The first part that fails, in the order representation -> dynamics -> planner."""
    oracle_helps = figures["perfect_final_distance"] < figures["random_final_distance"]
    if not parts["representation"].passed and not oracle_helps:
        return "representation: true-frame energy does not lead to the goal (fix the encoder)"
    if not oracle_helps:
        return "planner: even perfect dynamics does not beat random actions (CEM settings, horizon)"
    if not (parts["ranking"].passed and parts["action_gain"].passed):
        return "dynamics: the predictor does not know what its actions do (post-training)"
    if not parts["planner"].passed:
        return "planner: the learned model ranks plans but closed-loop planning falls short"
    if not parts["representation"].passed:
        return (
            "representation: true-frame energy orders states weakly by distance, though planning "
            "on true frames still beats random (the other parts pass)"
        )
    return "all parts pass"


def diagnose(config: DiagnoseConfig, model: WorldModel) -> Diagnosis:
    """Run the four parts on `config.goals` seeded goals (and `config.episodes` closed loops)."""
    probes = [Probe(config, model, index) for index in range(max(config.goals, config.episodes))]
    walks = [energy_against_distance(p) for p in probes[: config.goals]]
    rankings = [candidate_ranking(p) for p in probes[: config.goals]]
    gain, ceiling = action_gain(probes[0], config.windows)
    figures = closed_loop(probes[: config.episodes], config)
    rank = pooled_spearman([r[2] for r in rankings])
    count = sum(len(r[2]) for r in rankings)
    per_goal = ", ".join(f"{r[0]:.2f}" for r in rankings)
    spread = float(np.mean([r[1] for r in rankings]))
    parts = {
        "representation": verdict(
            "representation", float(np.mean([w[0] for w in walks])), MIN_RANK,
            "Spearman of true-frame energy vs state distance to the goal, along random walks",
        ),
        "ranking": verdict(
            "ranking", rank, rank_threshold(count),
            f"Spearman of predicted vs true-frame energy over {count} candidate actions "
            f"({config.candidates} per goal, centred per goal; per goal {per_goal}); pass: "
            f"beats chance at 5%; predicted / true energy spread {spread:.3f}",
        ),
        "action_gain": verdict(
            "action_gain", gain, MIN_ACTION_GAIN,
            f"shuffled-action gain on {config.windows} fresh env windows (relative to copy); "
            f"perfect dynamics scores {ceiling:.3f} on them ({_share(gain, ceiling)} of it)",
        ),
        "planner": planner_part(figures),
    }  # fmt: skip
    return Diagnosis(
        env=config.env,
        checkpoint=config.checkpoint,
        action_gain_ceiling=round(ceiling, 4),
        parts=list(parts.values()),
        finding=finding(parts, figures),
        planner=figures,
        energy_vs_distance=[point for walk in walks for point in walk[1]],
        predicted_vs_true=[point for ranking in rankings for point in ranking[2]],
    )


def plot_diagnosis(diagnosis: Diagnosis, folder: str) -> list[str]:
    """`energy_vs_distance.png` and `predicted_vs_true.png` under `folder` (local or s3)."""
    import tempfile
    from pathlib import Path

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tasks import storage
    from tasks.training.outputs import upload_file

    plots = (
        ("energy_vs_distance.png", diagnosis.energy_vs_distance, "state distance to goal",
         "true-frame energy"),
        ("predicted_vs_true.png", diagnosis.predicted_vs_true, "true-frame energy",
         "predicted energy"),
    )  # fmt: skip
    written = []
    with tempfile.TemporaryDirectory(prefix="vjepa-diagnose-") as scratch:
        for name, points, x_label, y_label in plots:
            figure, axis = plt.subplots(figsize=(4.5, 3.5), dpi=100)
            xs, ys = zip(*points, strict=True) if points else ((), ())
            axis.scatter(xs, ys, s=8, alpha=0.6)
            axis.set_xlabel(x_label)
            axis.set_ylabel(y_label)
            axis.set_title(f"{diagnosis.env}", fontsize=9)
            figure.tight_layout()
            local = Path(scratch) / name
            figure.savefig(local)
            plt.close(figure)
            written.append(upload_file(local, storage.join(folder, name)))
    return written
