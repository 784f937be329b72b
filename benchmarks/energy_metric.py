"""Does the planner's energy order true frames by their distance to the goal? L1 against L2.

For each env, the suite's seeded random-init tiny encoder (the same for every env) encodes
the frames of random walks and a goal frame (`--goal-steps` random steps from the episode's
reset, as `vjepa eval-planning` makes goals); each energy metric of `modeling.cem` (`l1`, the
paper's mean absolute difference, and `l2`, the mean squared one) scores every frame against
the goal, and the Spearman rank correlation with the true state distance is averaged over
goals, over all states and over the farther half (where issue 14's diagnosis found the L1
energy flat). No training: this measures the representation part alone; closed-loop figures
come from `benchmarks/planning_suite.py --cem '{"energy": ...}'`.

It also prints each env's shuffled-action gain ceiling: the gain perfect dynamics scores on
`--windows` fresh 3-frame windows (`tasks.planning.diagnose.perfect_dynamics_gain`, what
`diagnose-world-model` reports beside part 3), the most any predictor can score there with
this encoder.

The last line is one JSON object; "ratio" is the smallest, over the envs, of the L2 Spearman
over the L1 one (all states; > 1: the squared energy orders states better everywhere).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from modeling.ac_predictor import ACPredictor, ac_tiny
from modeling.cem import ENERGY_METRICS, feature_distance
from modeling.encoder import VisionEncoder, tiny
from modeling.world_model import WorldModel, WorldModelSpec
from tasks.planning.diagnose import (
    DiagnoseConfig,
    Probe,
    env_windows,
    perfect_dynamics_gain,
    spearman,
)
from tasks.planning.evaluate import EvalConfig, make_goal
from tasks.robot import ENV_SUITE
from tasks.robot.collect import check_env, extract_state, make_env, render_frame

IMAGE_SIZE = 64  # the suite's collected frame size


@dataclass(frozen=True)
class MetricResult:
    env: str
    metric: str
    spearman_all: float
    spearman_far: float  # states farther from the goal than the goal's median distance


def encoder_model(seed: int) -> WorldModel:
    """The suite's encoder (seeded random init) behind `WorldModel.encode_frames`."""
    torch.manual_seed(seed)
    encoder = VisionEncoder(tiny())
    spec = WorldModelSpec(IMAGE_SIZE, action_dim=2, state_dim=2, action_low=(-1.0, -1.0),
                          action_high=(1.0, 1.0))  # fmt: skip
    return WorldModel(encoder, ACPredictor(ac_tiny()), spec).eval()


def walk(env: Any, seed: int, walks: int, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Frames and states of `walks` seeded random walks from `reset(seed)`, every second step."""
    space = check_env(env)
    frames, states = [], []
    for index in range(walks):
        observation, info = env.reset(seed=seed)
        rng = np.random.default_rng([seed, index])
        for step in range(steps):
            action = rng.uniform(space.low, space.high).astype(np.float32)
            observation, _, _, _, info = env.step(action)
            if step % 2 == 0:
                frames.append(render_frame(env))
                states.append(extract_state(observation, info, env.observation_space))
    return np.stack(frames), np.stack(states)


def measure(env_id: str, model: WorldModel, args: argparse.Namespace) -> list[MetricResult]:
    env = make_env(env_id, {}, None)
    scores: dict[str, list[tuple[float, float]]] = {metric: [] for metric in ENERGY_METRICS}
    for goal in range(args.goals):
        seed = args.seed + goal
        goal_frame, goal_state = make_goal(env, seed, args.goal_steps)
        frames, states = walk(env, seed, args.walks, args.walk_steps)
        distance = np.linalg.norm(states - goal_state, axis=1)  # (K,)
        far = distance > np.median(distance)
        features = model.encode_frames(torch.as_tensor(frames)[:, None])  # (K, N, D)
        target = model.encode_frames(torch.as_tensor(goal_frame)[None, None])  # (1, N, D)
        for metric in ENERGY_METRICS:
            energy = feature_distance(features, target, metric).numpy()  # (K,)
            scores[metric].append(
                (spearman(energy, distance), spearman(energy[far], distance[far]))
            )
    means = {metric: np.mean(pairs, axis=0) for metric, pairs in scores.items()}  # (2,) each
    return [
        MetricResult(env_id, metric, round(float(m[0]), 3), round(float(m[1]), 3))
        for metric, m in means.items()
    ]


def gain_ceiling(env_id: str, model: WorldModel, windows: int) -> float:
    """The shuffled-action gain of perfect dynamics on `windows` fresh windows of `env_id`."""
    probe = Probe(DiagnoseConfig(env_id, "unused", windows=windows), model, 0)
    return round(perfect_dynamics_gain(probe, env_windows(probe, windows)), 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", nargs="*", default=list(ENV_SUITE))
    parser.add_argument("--goals", type=int, default=8)
    parser.add_argument("--walks", type=int, default=3, help="random walks per goal")
    parser.add_argument("--walk-steps", type=int, default=40)
    parser.add_argument("--goal-steps", type=int, default=EvalConfig.goal_steps)
    parser.add_argument("--seed", type=int, default=10_000, help="first goal's env seed")
    parser.add_argument("--encoder-seed", type=int, default=0)
    parser.add_argument("--windows", type=int, default=DiagnoseConfig.windows,
                        help="fresh windows for the gain ceiling")  # fmt: skip
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = encoder_model(args.encoder_seed)
    results = [result for env in args.envs for result in measure(env, model, args)]
    print(f"{'env':28s} {'metric':6s} {'spearman':>9s} {'far half':>9s}")
    for r in results:
        print(f"{r.env:28s} {r.metric:6s} {r.spearman_all:9.3f} {r.spearman_far:9.3f}")
    ceilings = {env: gain_ceiling(env, model, args.windows) for env in args.envs}
    print(f"\n{'env':28s} {'gain ceiling':>12s}")
    for env, value in ceilings.items():
        print(f"{env:28s} {value:12.3f}")
    by_env = {(r.env, r.metric): r.spearman_all for r in results}
    ratios = [by_env[env, "l2"] / max(by_env[env, "l1"], 1e-3) for env in args.envs]
    print(json.dumps({"ratio": round(min(ratios), 3), "results": [asdict(r) for r in results],
                      "gain_ceilings": ceilings}))  # fmt: skip


if __name__ == "__main__":
    main()
