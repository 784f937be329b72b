"""Masked latent-prediction pretraining (V-JEPA) as a Ray Train job.

Per step: augment the clips, draw multi-block masks, encode only the context
tokens, predict the target tokens with the narrow predictor, regress the
layer-normed features of the EMA target encoder on the full clip (L1), step
AdamW with the warmup-constant-decay schedule, then move the target encoder
towards the online one. The target encoder is what the job exports as
`final/encoder.safetensors` (the official evaluations use it too).
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import torch
from torch import nn

from modeling import encoder as encoder_presets
from modeling import predictor as predictor_presets
from modeling.encoder import VisionEncoder
from modeling.jepa import (
    EMA_MOMENTUM,
    LRSchedule,
    MaskedPrediction,
    ema_update,
    learning_rate,
    parameter_groups,
)
from modeling.masks import MaskConfig, generate_masks
from modeling.predictor import Predictor
from modeling.preprocess import normalize
from tasks import storage
from tasks.training.augment import AugmentConfig, random_resized_crop_flip
from tasks.training.checkpoints import CheckpointStore
from tasks.training.job import (
    WorkerContext,
    autocast,
    full_state,
    gather_generator_states,
    load_optimizer_state,
    restore_generator,
    scalar,
)
from tasks.training.launch import ScaleConfig, check_output, fit, training_clips
from tasks.training.loop import LoopConfig, run_loop
from tasks.training.outputs import plot_curves, save_model, write_summary
from tasks.training.summaries import PretrainSummary


@dataclasses.dataclass(frozen=True)
class PretrainConfig:
    """Everything a pretraining run needs; the CLI is a thin layer over it."""

    data: str
    output: str
    preset: str = "tiny"
    steps: int = 200
    batch_size: int = 8
    peak_lr: float = 5.25e-4
    start_lr: float = 1e-4
    final_lr: float = 1e-6
    warmup_fraction: float = 0.1
    decay_fraction: float = 0.2
    weight_decay: float = 0.04
    ema_momentum: float = EMA_MOMENTUM
    # The EMA momentum rises linearly from `ema_momentum` to this over the run, as the
    # official schedule does ([0.99925, 1.0]); None keeps it constant. A constant momentum
    # made the tiny runs drift (loss rising after ~300 steps); the rise freezes the target.
    ema_final: float | None = 1.0
    # Global L2 norm the gradients are clipped to before each step; None disables clipping.
    grad_clip: float | None = 1.0
    # Area fraction range of the random-resized crop.
    crop_scale: tuple[float, float] = (0.3, 1.0)
    # Clips each worker holds for its local shuffle. Curated shards keep a video's clips
    # together; 256 mixes a few hundred videos per batch (25 MB at 64 px x 8 frames,
    # 800 MB at 256 px x 16 frames: lower it for large clips on small workers).
    shuffle_buffer: int = 256
    checkpoint_every: int = 50
    log_every: int = 10
    seed: int = 0
    resume: bool = False
    # Start from these weights (`tasks.training.pretrain_init`: an official pretraining .pt, a
    # Hugging Face vjepa2 folder or a platform run); `preset` is then the checkpoint's.
    init: str | None = None

    def __post_init__(self) -> None:
        if min(self.steps, self.batch_size, self.checkpoint_every, self.shuffle_buffer) < 1:
            raise ValueError("steps, batch_size, checkpoint_every and shuffle_buffer must be >= 1")
        if not 0 <= self.ema_momentum <= 1:
            raise ValueError(f"ema_momentum must be in [0, 1], got {self.ema_momentum}")
        if self.ema_final is not None and not self.ema_momentum <= self.ema_final <= 1:
            raise ValueError(f"ema_final must be in [ema_momentum, 1], got {self.ema_final}")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ValueError(f"grad_clip must be > 0, got {self.grad_clip}")
        low, high = self.crop_scale
        if not 0 < low <= high <= 1:
            raise ValueError(f"crop_scale must satisfy 0 < low <= high <= 1, got {self.crop_scale}")
        if self.init is None:  # unknown preset names fail here, before Ray starts
            encoder_presets.preset(self.preset)

    def schedule(self) -> LRSchedule:
        warmup = int(self.steps * self.warmup_fraction)
        decay = int(self.steps * self.decay_fraction)
        return LRSchedule(
            warmup_steps=warmup,
            constant_steps=self.steps - warmup - decay,
            decay_steps=decay,
            peak_lr=self.peak_lr,
            start_lr=self.start_lr,
            final_lr=self.final_lr,
        )

    def momentum(self, step: int) -> float:
        """EMA momentum after `step` (0-based): constant, or linear up to `ema_final`."""
        if self.ema_final is None:
            return self.ema_momentum
        progress = min(1.0, (step + 1) / self.steps)
        return self.ema_momentum + progress * (self.ema_final - self.ema_momentum)


class PretrainJob:
    """Online encoder + predictor trained against an EMA target encoder."""

    def __init__(self, config: PretrainConfig, context: WorkerContext) -> None:
        torch.manual_seed(config.seed)
        self.config = config
        self.context = context
        encoder, predictor, target = initial_models(config)
        self.target = context.prepare_frozen(target.requires_grad_(False))
        self.masks = MaskConfig()
        # The predictor holds 10 mask tokens (the official layout) and a step uses one per mask
        # family: the others never get a gradient, which DDP would wait for. Frozen, they stay
        # in the checkpoint unchanged (AdamW skipped them anyway).
        for token in list(predictor.mask_tokens)[len(self.masks.specs) :]:
            token.requires_grad_(False)
        # `prepare` moves the modules in place and may wrap them; keep the plain views.
        self.online_encoder, self.online_predictor = encoder, predictor
        if context.sharded:  # FSDP2 shards each model in place; calling them per family is fine
            self.step_module: nn.Module = MaskedPrediction(
                context.prepare(encoder), context.prepare(predictor)
            )
        else:  # DDP: one wrapper over both, one forward per step (see MaskedPrediction)
            self.step_module = context.prepare(MaskedPrediction(encoder, predictor))
        self.optimizer = torch.optim.AdamW(
            parameter_groups([encoder, predictor], config.weight_decay), lr=config.start_lr
        )
        self.schedule = config.schedule()
        self.rank = context.rank
        self.generator = torch.Generator().manual_seed(config.seed + 1000 * context.rank)
        low, high = config.crop_scale  # a list after a JSON round trip
        self.augment = AugmentConfig(scale=(float(low), float(high)))

    def state_dict(self) -> dict[str, Any]:  # a resumed run loads it over the --init weights
        return {
            "encoder": self.online_encoder.state_dict(),
            "predictor": self.online_predictor.state_dict(),
            "target": self.target.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "generators": gather_generator_states(self.generator),  # one per rank
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.online_encoder.load_state_dict(state["encoder"])
        self.online_predictor.load_state_dict(state["predictor"])
        self.target.load_state_dict(state["target"])
        load_optimizer_state(self.optimizer, state["optimizer"])
        restore_generator(self.generator, state, self.rank)

    def loss(self, video: torch.Tensor) -> torch.Tensor:
        """Masked prediction loss of one batch, averaged over the mask families."""
        grid = self.online_encoder.grid(video.shape)
        with torch.no_grad():
            target_features = self.target(video)  # (B, N, D)
        pairs = generate_masks(self.masks, video.shape[0], grid, generator=self.generator)
        loss: torch.Tensor = self.step_module(video, target_features, pairs, grid)
        return loss

    def train_step(self, batch: torch.Tensor, step: int) -> dict[str, float]:
        lr = learning_rate(self.schedule, step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        clips = random_resized_crop_flip(batch, self.augment, self.generator)
        video = normalize(clips.to(self.context.device))  # (B, C, T, H, W)
        with autocast(self.context.device):
            loss = self.loss(video)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        metrics = {"loss": float(loss.detach()), "lr": lr}
        if self.config.grad_clip is not None:
            parameters = list(self.step_module.parameters())
            norm = torch.nn.utils.clip_grad_norm_(parameters, self.config.grad_clip)
            metrics["grad_norm"] = scalar(norm)
        self.optimizer.step()
        momentum = self.config.momentum(step)
        ema_update(self.target, self.online_encoder, momentum)
        return {**metrics, "ema": momentum}

    def export(self) -> PretrainSummary | None:
        """Final models, loss curve and summary under the output URI.

        Every rank calls it (gathering FSDP shards is collective); rank 0 writes and summarises
        (the other ranks return None).
        """
        output = self.config.output
        target = full_state(self.target.state_dict())
        predictor = full_state(self.online_predictor.state_dict())
        if not self.context.is_writer:
            return None
        encoder_uri = save_model(
            storage.join(output, "final", "encoder.safetensors"), self.target, target
        )
        predictor_uri = save_model(
            storage.join(output, "final", "predictor.safetensors"), self.online_predictor, predictor
        )
        rows = CheckpointStore(output).metrics()
        curve = plot_curves(rows, ["loss"], storage.join(output, "loss.png"), "pretraining loss")
        summary = PretrainSummary(
            steps=rows[-1]["step"] if rows else 0,
            first_loss=rows[0]["loss"] if rows else None,
            final_loss=sum(r["loss"] for r in rows[-10:]) / max(1, len(rows[-10:])),
            encoder_checkpoint=encoder_uri,
            predictor_checkpoint=predictor_uri,
            loss_curve=curve,
            preset=self.config.preset,
        )
        write_summary(output, summary)
        return summary


def initial_models(config: PretrainConfig) -> tuple[VisionEncoder, Predictor, VisionEncoder]:
    """(online encoder, predictor, EMA target): the --init weights, else the preset's, random."""
    if config.init is not None:
        import tempfile

        from tasks.training.pretrain_init import load_init, local_init

        with tempfile.TemporaryDirectory(prefix="vjepa-init-") as scratch:
            models = load_init(local_init(config.init, scratch))
        return models.encoder, models.predictor, models.target
    encoder_config = encoder_presets.preset(config.preset)
    encoder = VisionEncoder(encoder_config)
    predictor = Predictor(predictor_presets.tiny(encoder_config.width))
    if config.preset != "tiny":
        predictor = Predictor(predictor_presets.paper(encoder_config.width))
    return encoder, predictor, copy.deepcopy(encoder)


def pretrain_loop(config_values: dict[str, Any]) -> None:
    """`train_loop_per_worker` of the pretraining `TorchTrainer`."""
    from tasks.training.job import batches_from_shard, worker_context

    config = PretrainConfig(**config_values)
    context = worker_context()
    job = PretrainJob(config, context)
    source = batches_from_shard(
        "train", config.batch_size, seed=config.seed, shuffle_buffer=config.shuffle_buffer
    )
    loop = LoopConfig(config.steps, config.checkpoint_every, config.log_every, name="pretrain")
    run_loop(
        job,
        source,
        CheckpointStore(config.output),
        loop,
        is_writer=context.is_writer,
        report=context.report,
    )
    job.export()


def run_pretrain(config: PretrainConfig, scale: ScaleConfig) -> PretrainSummary:
    """Driver side: check the output, open the curated clips, train, return the summary."""
    from tasks.training.outputs import read_summary

    check_output(config.output, config.resume)
    dataset = training_clips(config.data, columns=["clip_id", "shape", "frames"])
    fit(
        pretrain_loop,
        dataclasses.asdict(config),
        output_uri=config.output,
        name="pretrain",
        scale=scale,
        datasets={"train": dataset},
    )
    return read_summary(config.output, PretrainSummary)
