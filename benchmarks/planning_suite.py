"""The suite proof run: one post-training recipe and one set of defaults on every built-in env.

For each env: `collect` random-policy episodes, post-train the AC predictor with the
product's defaults (`PosttrainConfig`: normalised inputs, features encoded once) on a
frozen tiny encoder (seeded random init, the same for every env), then run closed-loop
planning against random actions (`tasks.planning.evaluate`) and report success, final
distance, the held-out shuffled-action gain and rollout / copy. Training runs in-process on
the job's own `train_step` over a `FeaturePool` (what `posttrain_loop` does inside Ray,
without Ray's start-up), one torch thread.

`--holdout ENV` marks the env kept out of every tuning decision: it is reported on its own
line. The last line is one JSON object; "ratio" is the smallest success / random success
over the envs (target >= 2).

`--adapt-steps N` first continues pretraining the encoder on the env's own collected videos
for N steps (the domain adaptation of `vjepa posttrain --adapt-steps`, in-process: the
pretraining job's `train_step` on half-overlapping clips of the collected episodes, the
`AdaptConfig` defaults), then post-trains on the adapted encoder.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from modeling.checkpoints import save_model
from modeling.encoder import VisionEncoder, tiny
from tasks.planning.diagnose import DiagnoseConfig, diagnose
from tasks.planning.evaluate import EvalConfig, WorldModelPlanner, evaluate
from tasks.planning.rollouts import numpy_batches
from tasks.robot import ENV_SUITE
from tasks.robot.collect import CollectConfig, StateSpec, collect
from tasks.robot.windows import iter_windows
from tasks.training.adapt import AdaptConfig, episode_clips, init_folder
from tasks.training.adapt import clip_batches as adapt_batches
from tasks.training.feature_cache import FeaturePool, encode_pool
from tasks.training.job import WorkerContext
from tasks.training.posttrain import PosttrainJob
from tasks.training.posttrain_config import PosttrainConfig, describe_dataset
from tasks.training.pretrain import PretrainConfig, PretrainJob
from tasks.training.stopping import StoppingRule

TOP_DOWN = {"distance": 0.75, "elevation": -90.0, "azimuth": 90.0, "lookat": [0.0, 0.0, 0.0]}
PUSHER_TOP_DOWN = {"distance": 1.6, "elevation": -90.0, "azimuth": 90.0, "lookat": [0.2, -0.4, 0.0]}


@dataclasses.dataclass(frozen=True)
class EnvSetting:
    """How one env is collected and judged (the recipe itself is the same for all)."""

    env_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    state: StateSpec | None = None
    tolerance: float | None = None  # None: --tolerance
    control_fps: float | None = None  # None: the dataset's rate
    success_dims: tuple[int, ...] | None = None  # None: success on the whole state


# Both arms are torque-controlled: the next frame depends on joint velocities that the
# fingertip does not carry, so the predictor's state adds them (`*_proprio`) and success is
# measured on the fingertip dims only.
REAL_SIMULATORS = {
    "Reacher-v5": EnvSetting(
        {"width": 64, "height": 64, "default_camera_config": TOP_DOWN},
        StateSpec(function="tasks.robot.state_maps:reacher_proprio"),
        tolerance=0.02,
        control_fps=10.0,
        success_dims=(0, 1),
    ),
    # Random actions never move Pusher's object (0.000 over 20 steps on 10 seeds), so a goal
    # made by random actions is reached by doing nothing: success is the fingertip's (x, y, z).
    "Pusher-v5": EnvSetting(
        {"width": 64, "height": 64, "default_camera_config": PUSHER_TOP_DOWN},
        StateSpec(function="tasks.robot.state_maps:pusher_proprio"),
        tolerance=0.05,
        control_fps=10.0,
        success_dims=(0, 1, 2),
    ),
}


@dataclasses.dataclass(frozen=True)
class EnvResult:
    env: str
    held_out: bool
    train_seconds: float
    shuffled_action_gain: float
    heldout_ratio: float
    success: float
    random_success: float
    final_distance: float
    random_final_distance: float
    noop_fraction: float
    mean_energy_spread: float | None
    eval_episodes: int
    stopped_at: int  # the step the stopping rule chose (the step cap when it never fired)
    adapt_steps: int = 0  # encoder pretraining steps on the env's videos first (0: none)
    adapt_seconds: float = 0.0
    adapt_loss: tuple[float, float] | None = None  # first and last-10 mean pretraining loss
    gain_curve: list[tuple[int, float]] = dataclasses.field(default_factory=list)
    diagnosis: dict[str, float] = dataclasses.field(default_factory=dict)  # part -> value
    verdicts: dict[str, bool] = dataclasses.field(default_factory=dict)  # part -> passed
    finding: str = ""
    gain_ceiling: float | None = None  # the diagnosis's gain of perfect dynamics (fresh windows)
    diagnose_seconds: float = 0.0

    def targets(self) -> dict[str, bool]:
        """The issue's proof targets for this env."""
        return {
            "success >= 2x random": self.success >= 2 * self.random_success,
            "success >= random + 0.25": self.success >= self.random_success + 0.25,
            "distance <= 0.6x random": self.final_distance <= 0.6 * self.random_final_distance,
            "gain >= 0.05": self.shuffled_action_gain >= 0.05,
        }


def train(
    config: PosttrainConfig, encoder: Path, rule: StoppingRule
) -> tuple[PosttrainJob, dict[str, Any], list[tuple[int, float]], int]:
    """The product's job and defaults, trained on a FeaturePool to the step cap.

    The held-out gain is measured every `rule.every` steps with a copy of the predictor kept;
    the model returned is the one at the step the stopping rule picks from that curve, which is
    the model a run with the rule active stops with (training up to there is the same).
    """
    facts = describe_dataset(config)
    job = PosttrainJob(config, facts, WorkerContext.local(), encoder)
    windows = iter_windows(config.trajectories, facts.windows(config), facts.train_episodes)
    pool: FeaturePool = encode_pool(
        lambda batch: job.tensors(batch)[0].numpy(), numpy_batches(windows, 64)
    )
    source = pool.batches(config.batch_size, config.seed)

    def heldout() -> dict[str, Any]:
        held = iter_windows(config.trajectories, facts.windows(config), facts.heldout_episodes)
        return job.heldout_errors(held)

    curve: list[tuple[int, float]] = []
    snapshots: dict[int, dict[str, Any]] = {}
    step, epoch = 0, 0
    while step < config.steps:
        for batch in source(epoch):
            if step >= config.steps:
                break
            job.train_step(batch, step)
            step += 1
            if rule.evaluates_at(step, config.steps):
                curve.append((step, round(float(heldout()["shuffled_action_gain"]), 4)))
                snapshots[step] = copy.deepcopy(job.model.predictor.state_dict())
                print(f"[suite] step {step} gain {curve[-1][1]}", file=sys.stderr, flush=True)
        epoch += 1
    stop = rule.stop_step(curve)
    if stop is not None:
        job.model.predictor.load_state_dict(snapshots[stop])
    errors = heldout()
    curve.append((config.steps, round(float(errors["shuffled_action_gain"]), 4)))
    job.record_checks(errors["shuffled_action_gain"], errors)
    return job, errors, curve, stop or config.steps


def adapt(
    encoder: Path, config: PosttrainConfig, steps: int, folder: Path
) -> tuple[Path, tuple[float, float]]:
    """The encoder after `steps` of masked pretraining on clips of the dataset's episodes
    (in-process `PretrainJob.train_step`); returns its file and (first, final) loss."""
    settings = dataclasses.replace(AdaptConfig(), steps=steps, seed=config.seed)
    facts = describe_dataset(config)
    init = init_folder(encoder, folder / "init", seed=config.seed)
    pretrain = PretrainConfig(
        data="in-process", output=str(folder / "pretrain"), init=init, steps=steps,
        batch_size=settings.batch_size, warmup_fraction=settings.warmup_fraction,
        seed=config.seed,
    )  # fmt: skip
    job = PretrainJob(pretrain, WorkerContext.local())
    clips = episode_clips(config.trajectories, settings.frames, facts.fps, facts.image_size)
    print(f"[suite] adapting on {len(clips)} clips for {steps} steps", file=sys.stderr, flush=True)
    losses = []
    for step, batch in zip(
        range(steps), adapt_batches(clips, settings.batch_size, config.seed), strict=False
    ):
        losses.append(job.train_step(batch, step)["loss"])
        if (step + 1) % 50 == 0:
            print(
                f"[suite] adapt step {step + 1} loss {losses[-1]:.4f}", file=sys.stderr, flush=True
            )
    adapted = save_model(job.target, folder / "adapted_encoder.safetensors")
    return adapted, (round(losses[0], 4), round(sum(losses[-10:]) / len(losses[-10:]), 4))


def run_env(env: str, folder: Path, encoder: Path, args: argparse.Namespace) -> EnvResult:
    data = folder / env.replace("/", "_")
    setting = REAL_SIMULATORS.get(env, EnvSetting())
    collect(CollectConfig(env, args.episodes, str(data), steps_per_episode=args.steps_per_episode,
                          env_kwargs=setting.env_kwargs, state=setting.state))  # fmt: skip
    config = PosttrainConfig(
        encoder=str(encoder), trajectories=str(data), output=str(folder / "out"), seed=args.seed,
        fps=setting.control_fps,
    )  # fmt: skip
    # CEM overrides go into the bundle's spec, so the evaluation and the diagnosis both plan
    # (and measure the energy) with them.
    config = dataclasses.replace(config, cem={**config.cem, **json.loads(args.cem)})
    config = dataclasses.replace(config, **json.loads(args.posttrain))
    if args.train_steps:
        config = dataclasses.replace(config, steps=args.train_steps)
    adapt_seconds, adapt_loss = 0.0, None
    if args.adapt_steps:
        started = time.monotonic()
        scratch = data.with_name(data.name + "_adapt")
        encoder, adapt_loss = adapt(encoder, config, args.adapt_steps, scratch)
        config = dataclasses.replace(config, encoder=str(encoder))
        adapt_seconds = round(time.monotonic() - started, 1)
    started = time.monotonic()
    rule = StoppingRule(**json.loads(args.stopping)) if args.stopping else config.stopping_rule()
    job, errors, curve, stopped_at = train(config, encoder, rule)
    seconds = time.monotonic() - started
    planner = WorldModelPlanner(job.model, seed=args.seed)
    evaluation = EvalConfig(
        env, "in-process", episodes=args.eval_episodes, tolerance=setting.tolerance or args.tolerance,
        max_steps=args.max_steps, goal_steps=args.goal_steps, seed=10_000 + args.seed,
        env_kwargs=setting.env_kwargs, state=setting.state, success_dims=setting.success_dims,
    )  # fmt: skip
    summary = evaluate(evaluation, planner, model_fps=job.model.spec.control_fps, progress=None)
    result = EnvResult(
        env=env,
        held_out=env == args.holdout,
        train_seconds=round(seconds, 1),
        shuffled_action_gain=round(float(errors["shuffled_action_gain"]), 4),
        heldout_ratio=round(errors["heldout_rollout_error"] / errors["heldout_copy_error"], 4),
        success=summary["success_rate"],
        random_success=summary["random_success_rate"],
        final_distance=round(summary["mean_final_distance"], 4),
        random_final_distance=round(summary["random_mean_final_distance"], 4),
        noop_fraction=round(summary["noop_fraction"], 3),
        mean_energy_spread=summary["mean_energy_spread"],
        eval_episodes=args.eval_episodes,
        stopped_at=stopped_at,
        adapt_steps=args.adapt_steps,
        adapt_seconds=adapt_seconds,
        adapt_loss=adapt_loss,
        gain_curve=curve,
    )
    return with_diagnosis(result, job, evaluation, args) if args.diagnose else result


def with_diagnosis(
    result: EnvResult, job: PosttrainJob, evaluation: EvalConfig, args: argparse.Namespace
) -> EnvResult:
    """The four `diagnose-world-model` verdicts with its defaults (same goals as the eval)."""
    config = DiagnoseConfig(
        result.env, "in-process", goal_steps=args.goal_steps, tolerance=evaluation.tolerance,
        max_steps=args.max_steps, seed=evaluation.seed, env_kwargs=evaluation.env_kwargs,
        state=evaluation.state, success_dims=evaluation.success_dims,
    )  # fmt: skip
    started = time.monotonic()
    found = diagnose(config, job.model)
    return dataclasses.replace(
        result,
        diagnosis={part.name: round(part.value, 4) for part in found.parts},
        verdicts={part.name: part.passed for part in found.parts},
        finding=found.finding,
        gain_ceiling=found.action_gain_ceiling,
        diagnose_seconds=round(time.monotonic() - started, 1),
    )


def report(results: list[EnvResult]) -> None:
    print(f"{'env':28s} {'gain':>7s} {'ratio':>6s} {'succ':>5s} {'rand':>5s} {'dist':>6s} "
          f"{'rdist':>6s} {'noop':>5s} {'train s':>7s} {'stop':>5s}")  # fmt: skip
    for r in results:
        name = r.env + (" (held out)" if r.held_out else "")
        print(f"{name:28s} {r.shuffled_action_gain:7.3f} {r.heldout_ratio:6.3f} {r.success:5.2f} "
              f"{r.random_success:5.2f} {r.final_distance:6.3f} {r.random_final_distance:6.3f} "
              f"{r.noop_fraction:5.2f} {r.train_seconds:7.1f} {r.stopped_at:5d}")  # fmt: skip
    for r in results:
        missed = [name for name, met in r.targets().items() if not met]
        verdicts = ", ".join(f"{k} {'ok' if v else 'FAIL'}" for k, v in r.verdicts.items())
        ceiling = f"; gain ceiling {r.gain_ceiling:.3f}" if r.gain_ceiling is not None else ""
        print(f"  {r.env}: targets {'all met' if not missed else 'missed: ' + ', '.join(missed)}"
              f"; diagnosis: {verdicts or 'not run'}{ceiling}")  # fmt: skip
        if r.adapt_steps:
            print(f"  {r.env}: encoder adapted {r.adapt_steps} steps on its videos in "
                  f"{r.adapt_seconds:.0f} s, pretraining loss {r.adapt_loss}")  # fmt: skip
    ratios = [r.success / max(r.random_success, 0.05) for r in results]
    print(
        json.dumps(
            {
                "ratio": round(min(ratios), 3),
                "envs": [dataclasses.asdict(r) | {"targets": r.targets()} for r in results],
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", nargs="*", default=list(ENV_SUITE))
    parser.add_argument("--holdout", default="vjepa/DiscPush-v0")
    parser.add_argument("--episodes", type=int, default=60)
    parser.add_argument("--steps-per-episode", type=int, default=30)
    parser.add_argument("--train-steps", type=int, default=None, help="default: PosttrainConfig's")
    parser.add_argument("--eval-episodes", type=int, default=EvalConfig.episodes)
    parser.add_argument("--max-steps", type=int, default=EvalConfig.max_steps)
    parser.add_argument("--goal-steps", type=int, default=EvalConfig.goal_steps)
    parser.add_argument("--tolerance", type=float, default=EvalConfig.tolerance)
    parser.add_argument(
        "--stopping", default="", help="JSON StoppingRule fields (default: the config's)"
    )
    parser.add_argument(
        "--cem", default="{}", help="JSON CEM overrides, written into the bundle's spec"
    )
    parser.add_argument(
        "--posttrain", default="{}", help="JSON PosttrainConfig overrides (experiments)"
    )
    parser.add_argument(
        "--adapt-steps",
        type=int,
        default=AdaptConfig.steps,
        help="first pretrain the encoder on the env's own videos for N steps (default 0: off)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--diagnose", action=argparse.BooleanOptionalAction, default=True,
                        help="also run diagnose-world-model's four parts (its defaults)")  # fmt: skip
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = []
    with tempfile.TemporaryDirectory(prefix="vjepa-suite-") as scratch:
        folder = Path(scratch)
        torch.manual_seed(0)
        encoder = folder / "encoder.safetensors"
        save_model(VisionEncoder(tiny()), encoder)
        for env in args.envs:
            results.append(run_env(env, folder, encoder, args))
            print(f"[suite] {dataclasses.asdict(results[-1])}", file=sys.stderr, flush=True)
    report(results)


if __name__ == "__main__":
    main()
