"""Action-conditioned post-training (V-JEPA 2-AC) on a frozen encoder, as a Ray Train job.

Per step: a batch of windows (T frames + states + actions) from the LeRobot
dataset arrives through Ray Data; the frozen encoder turns each frame into
layer-normed features exactly as `WorldModel.encode_frames` does (it is that
method); the AC predictor is trained with the teacher-forcing and k-step
rollout L1 losses (`modeling.ac_predictor.ac_losses`) and AdamW.

Some episodes are held out (a seeded, deterministic split). At the end the job
measures, on their windows, the predictor's rollout error against the
"no change" baseline (copying the context frame's features) and exports the
world-model bundle `final/world_model/`, `loss.png` and `summary.json`.

The run's config and the dataset facts the driver reads first (image size,
control rate, action bounds, fitted action scale, the episode split) live in
`tasks.training.posttrain_config`.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from modeling.ac_predictor import ACPredictor, ACPredictorConfig, ac_losses, ac_preset
from modeling.checkpoints import load_encoder
from modeling.jepa import learning_rate, parameter_groups
from modeling.normalization import Normalizer
from modeling.world_model import SPEC_FILE, WorldModel, WorldModelSpec, save_world_model
from tasks import storage
from tasks.planning.rollouts import heldout_errors
from tasks.robot.windows import Window
from tasks.training.checkpoints import CheckpointStore
from tasks.training.feature_cache import (
    FeaturePool,
    cache_key,
    dataset_version,
    encode_pool,
    file_digest,
    load_or_encode,
)
from tasks.training.job import WorkerContext, autocast
from tasks.training.launch import ScaleConfig, cache_if_small, check_output, fit
from tasks.training.loop import LoopConfig, run_loop
from tasks.training.ordering import shuffled_batches
from tasks.training.outputs import fetch_file, plot_curves, write_summary
from tasks.training.posttrain_config import (
    DatasetFacts,
    PosttrainConfig,
    check_encoder,
    describe_dataset,
)
from tasks.training.stopping import stop_check
from tasks.training.summaries import PosttrainSummary


def predictor_config(
    preset: str, embed_dim: int, grid: int, facts: DatasetFacts
) -> ACPredictorConfig:
    """The AC predictor for `preset`, sized for the encoder width, frame grid and robot dims."""
    return ac_preset(
        preset,
        embed_dim=embed_dim,
        grid_height=grid,
        grid_width=grid,
        action_dim=facts.action_dim,
        state_dim=facts.state_dim,
    )


class ACObjective(nn.Module):
    """Both AC losses in one forward, so DDP sees (and all-reduces) every predictor gradient."""

    def __init__(self, predictor: ACPredictor, rollout_steps: int) -> None:
        super().__init__()
        self.predictor = predictor
        self.rollout_steps = rollout_steps

    def forward(
        self, features: torch.Tensor, actions: torch.Tensor, states: torch.Tensor
    ) -> torch.Tensor:
        losses = ac_losses(self.predictor, features, actions, states, self.rollout_steps)
        return torch.stack([losses.teacher_forcing, losses.rollout])  # (2,)


class PosttrainJob:
    """Frozen encoder + trainable AC predictor, held together as a `WorldModel`."""

    def __init__(
        self,
        config: PosttrainConfig,
        facts: DatasetFacts,
        context: WorkerContext,
        encoder_path: str | Path,
    ) -> None:
        torch.manual_seed(config.seed)
        self.config, self.facts, self.context = config, facts, context
        encoder = load_encoder(encoder_path).requires_grad_(False).eval()
        grid = encoder.grid((1, 3, 1, facts.image_size, facts.image_size))  # (1, H', W')
        shape = predictor_config(config.preset, encoder.config.width, grid[1], facts)
        predictor = ACPredictor(dataclasses.replace(shape, residual=config.residual))
        self.model = WorldModel(encoder, predictor, self.spec()).to(context.device)
        self.objective: nn.Module = context.prepare(ACObjective(predictor, config.rollout_steps))
        self.optimizer = torch.optim.AdamW(
            parameter_groups(predictor, config.weight_decay), lr=config.peak_lr
        )
        self.schedule = config.schedule()
        self.gain_curve: list[tuple[int, float]] = []  # (step, held-out gain) of the stopping rule

    def spec(self) -> WorldModelSpec:
        facts = self.facts
        return WorldModelSpec(
            image_size=facts.image_size,
            action_dim=facts.action_dim,
            state_dim=facts.state_dim,
            action_low=facts.action_low,
            action_high=facts.action_high,
            control_fps=facts.fps,
            name=f"ac-{self.config.preset}",
            cem=dict(self.config.cem),
            action_scale=None if facts.action_scale is None else tuple(facts.action_scale),
            camera=facts.camera or None,
            state_key=facts.state_key,
            action_key=facts.action_key,
            **normalization_fields(facts.normalizer),  # type: ignore[arg-type]
        )

    def state_dict(self) -> dict[str, Any]:
        return {
            "predictor": self.model.predictor.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "residual": self.config.residual,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved = bool(state.get("residual", False))  # runs before the option were not residual
        if saved != self.config.residual:  # same weights, another meaning: refuse to mix them
            flag = "without --no-residual" if saved else "with --no-residual"
            raise ValueError(
                f"the checkpoint in {self.config.output} was trained with residual={saved}; "
                f"resume it {flag}, or start a fresh run in another output"
            )
        self.model.predictor.load_state_dict(state["predictor"])
        self.optimizer.load_state_dict(state["optimizer"])

    def tensors(
        self, batch: dict[str, np.ndarray]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Window batch -> features `(B, T*N, D)`, actions `(B, T-1, A)`, states `(B, T, S)`.

        Frames are encoded here; a batch may instead carry `features` made earlier by the same
        `encode_frames` (the frozen encoder is a pure function, so tests encode once).
        """
        device = self.context.device
        if "features" in batch:
            features = torch.as_tensor(batch["features"], device=device).float()  # (B, T*N, D)
        else:
            frames = torch.as_tensor(batch["frames"], device=device)  # (B, T, H, W, 3) uint8
            with autocast(device):
                features = self.model.encode_frames(frames).float()  # (B, T*N, D)
        actions = torch.as_tensor(batch["actions"], dtype=torch.float32, device=device)
        states = torch.as_tensor(batch["states"], dtype=torch.float32, device=device)
        normalizer = self.facts.normalizer
        if normalizer is not None:  # the predictor sees unit-scale inputs (spec: the statistics)
            actions = normalizer.normalize_actions(actions)  # (B, T-1, A)
            states = normalizer.normalize_states(states)  # (B, T, S)
        return features, actions, states

    def train_step(self, batch: dict[str, np.ndarray], step: int) -> dict[str, float]:
        lr = learning_rate(self.schedule, step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        features, actions, states = self.tensors(batch)
        self.model.predictor.train()
        with autocast(self.context.device):
            losses = self.objective(features, actions, states).float()  # (2,)
        loss = losses.sum()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        self.optimizer.step()
        teacher, rollout = (float(v) for v in losses.detach())
        return {"loss": teacher + rollout, "teacher_forcing": teacher, "rollout": rollout, "lr": lr}

    def heldout_errors(self, windows: Iterable[Window]) -> dict[str, Any]:
        """Rollout error vs "no change" on held-out windows (`tasks.planning.rollouts`)."""
        self.model.eval()
        return heldout_errors(
            self.model.predictor,
            windows,
            self.tensors,
            self.config.rollout_steps,
            self.config.batch_size,
        )

    def record_checks(self, gain: float, errors: dict[str, Any]) -> None:
        """Held-out checks into the spec (`world_model.json`): action gain and rollout / copy."""
        ratio = errors["heldout_rollout_error"] / max(errors["heldout_copy_error"], 1e-12)
        spec = dataclasses.replace(self.model.spec, shuffled_action_gain=gain, heldout_ratio=ratio)
        self.model.spec = spec

    def export(self, heldout: Iterable[Window]) -> PosttrainSummary:
        """World-model bundle, loss curve, held-out errors and summary under the output URI."""
        output = self.config.output
        errors = self.heldout_errors(heldout)
        self.record_checks(errors.pop("shuffled_action_gain"), errors)
        bundle = export_bundle(self.model, storage.join(output, "final", "world_model"))
        rows = CheckpointStore(output).metrics()
        curve = plot_curves(
            rows,
            ["loss", "teacher_forcing", "rollout"],
            storage.join(output, "loss.png"),
            "AC post-training loss",
        )
        last = rows[-10:]
        summary = PosttrainSummary(
            steps=rows[-1]["step"] if rows else 0,
            first_loss=rows[0]["loss"] if rows else None,
            final_loss=sum(r["loss"] for r in last) / max(1, len(last)),
            final_teacher_forcing=sum(r["teacher_forcing"] for r in last) / max(1, len(last)),
            final_rollout=sum(r["rollout"] for r in last) / max(1, len(last)),
            **errors,
            heldout_ratio=errors["heldout_rollout_error"]
            / max(errors["heldout_copy_error"], 1e-12),
            beats_copy_baseline=errors["heldout_rollout_error"] < errors["heldout_copy_error"],
            action_scale_r2=self.facts.action_scale_r2,
            train_episodes=list(self.facts.train_episodes),
            heldout_episodes=list(self.facts.heldout_episodes),
            world_model_dir=bundle,
            loss_curve=curve,
            preset=self.config.preset,
            encoder=self.config.encoder,
            trajectories=self.config.trajectories,
            spec=dataclasses.asdict(self.model.spec),
            shuffled_action_gain=self.model.spec.shuffled_action_gain,
            gain_curve=list(self.gain_curve),
            stopped_early=bool(rows) and rows[-1]["step"] < self.config.steps,
        )
        write_summary(output, summary)
        return summary


def normalization_fields(normalizer: Normalizer | None) -> dict[str, tuple[float, ...]]:
    """The spec fields that record the input normalisation (none when inputs are raw)."""
    return {} if normalizer is None else dataclasses.asdict(normalizer)


def export_bundle(model: WorldModel, uri: str) -> str:
    """`save_world_model` into a scratch folder, then publish it under `uri`, the spec last
    (a reader that finds the spec finds the weights beside it)."""
    with tempfile.TemporaryDirectory(prefix="vjepa-world-model-") as scratch:
        folder = save_world_model(Path(scratch) / "world_model", model)
        return storage.publish_folder(folder, uri, marker=SPEC_FILE)


def window_batches(name: str, batch_size: int, seed: int) -> Callable[[int], Iterable[Any]]:
    """Epoch -> numpy window batches from this worker's Ray Data shard."""
    import ray.train

    shard = ray.train.get_dataset_shard(name)

    def epoch_batches(epoch: int) -> Iterator[dict[str, np.ndarray]]:
        rows = shard.iter_batches(batch_size=batch_size, batch_format="numpy")
        # our own seeded buffer: the order is fixed by the seed, not by Ray Data's block sizes
        yield from shuffled_batches(rows, batch_size, 4 * batch_size, seed + epoch)

    return epoch_batches


def cached_source(job: PosttrainJob, encoder_digest: str) -> Callable[[int], Iterable[Any]]:
    """Batches of this worker's windows from a `FeaturePool`: encoded once, reused on reruns."""
    import ray.train

    config, facts, context = job.config, job.facts, job.context
    shape = {
        "frames": config.frames,
        "fps": facts.fps,
        "image_size": facts.image_size,
        "keys": list(facts.keys()),
        "train_episodes": list(facts.train_episodes),
        "rank": context.rank,
        "world_size": context.world_size,
    }
    key = cache_key(encoder_digest, dataset_version(config.trajectories), shape)
    folder = config.feature_cache or storage.join(config.output, "feature_cache")
    shard = ray.train.get_dataset_shard("train")

    def encode() -> FeaturePool:
        batches = shard.iter_batches(batch_size=64, batch_format="numpy", drop_last=False)
        return encode_pool(lambda batch: job.tensors(batch)[0].cpu().numpy(), batches)

    pool, reused = load_or_encode(storage.join(folder, f"{key}.npz"), encode)
    state = "reused" if reused else "encoded"
    print(f"[posttrain] features of {len(pool)} windows {state} ({key})", flush=True)
    return pool.batches(config.batch_size, config.seed)


def posttrain_loop(values: dict[str, Any]) -> None:
    """`train_loop_per_worker` of the post-training `TorchTrainer`."""
    from tasks.robot.windows import iter_windows
    from tasks.training.job import worker_context

    config = PosttrainConfig(**values["config"])
    facts = DatasetFacts(**values["facts"])
    context = worker_context()
    with tempfile.TemporaryDirectory(prefix="vjepa-encoder-") as scratch:
        encoder_path = fetch_file(config.encoder, scratch)
        job = PosttrainJob(config, facts, context, encoder_path)
        digest = file_digest(encoder_path)
    if config.cache_features:
        source = cached_source(job, digest)
    else:
        source = window_batches("train", config.batch_size, config.seed)
    loop = LoopConfig(config.steps, config.checkpoint_every, config.log_every, name="posttrain")
    store = CheckpointStore(config.output)

    def held() -> Iterator[Window]:
        windows = facts.windows(config)
        return iter_windows(config.trajectories, windows, facts.heldout_episodes, *facts.keys())

    def measure(step: int) -> float:
        gain = float(job.heldout_errors(held())["shuffled_action_gain"])
        if context.is_writer:
            print(f"[posttrain] step {step}: held-out shuffled-action gain {gain:.4f}", flush=True)
        return gain

    rule = config.stopping_rule()
    stop = stop_check(rule, config.steps, measure, job.gain_curve, context.device)
    run_loop(
        job, source, store, loop, is_writer=context.is_writer, report=context.report,
        should_stop=stop if rule.enabled else None,
    )  # fmt: skip
    if context.is_writer:
        job.export(held())


def run_posttrain(config: PosttrainConfig, scale: ScaleConfig) -> PosttrainSummary:
    """Driver side: check inputs and output, window the training episodes, train, summarise."""
    from tasks.robot.windows import window_dataset
    from tasks.training.outputs import read_summary

    check_encoder(config.encoder)
    facts = describe_dataset(config)
    check_output(config.output, config.resume)
    dataset = window_dataset(
        config.trajectories, facts.windows(config), facts.train_episodes, *facts.keys()
    )
    dataset = cache_if_small(dataset, facts.decoded_bytes(config))
    fit(
        posttrain_loop,
        {"config": dataclasses.asdict(config), "facts": dataclasses.asdict(facts)},
        output_uri=config.output,
        name="posttrain",
        scale=scale,
        datasets={"train": dataset},
    )
    return read_summary(config.output, PosttrainSummary)
