"""`vjepa align`: fit a visual projector (and optionally the LM) on a QA table, on Ray Train.

Stage 1 of V-JEPA 2's language alignment: the frozen encoder's tokens go through a
projector into a frozen causal LM, trained by next-token loss on the answers only.
`train_lm` also trains the whole LM, `lora_rank` a LoRA adapter through `peft`;
`blind` trains the same model with the visual tokens removed (the baseline).

The frozen encoder's tokens are computed once per clip in each worker and cached,
so a step costs only projector + LM (what makes CPU training affordable). The step
loop, checkpoints, resume, worker-loss restarts and S3 outputs are the training jobs'
(`tasks.training.loop` / `launch`); several workers average their gradients.
The trained model folder (`modeling.vlm_checkpoints`) is written to `OUTPUT/final`.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from modeling import vlm
from modeling.vlm import VideoLanguageModel, VisualProjector
from modeling.vlm_checkpoints import ADAPTER_DIR, ComponentInfo, VLMManifest, fingerprint, save_vlm
from modeling.vlm_prompts import PromptParts, answer_ids, build_prompt, check_question
from tasks import storage
from tasks.tables import SourceMatcher
from tasks.training.checkpoints import CheckpointStore
from tasks.training.job import WorkerContext
from tasks.training.launch import ScaleConfig, check_output, fit, training_clips
from tasks.training.loop import LoopConfig, run_loop
from tasks.training.outputs import plot_curves, write_summary
from tasks.vqa.clip_features import ClipFeatures, KeepSources, encode_clips
from tasks.vqa.lm import load_lm, upload_folder
from tasks.vqa.qa import TRAIN, QAItem, read_qa
from tasks.vqa.summaries import AlignSummary

PROJECTORS = vlm.PROJECTOR_KINDS


@dataclasses.dataclass(frozen=True)
class AlignConfig:
    """An alignment run: encoder, LM, data and QA table, what trains, the recipe."""

    encoder: str  # checkpoint URI or random:PRESET[:SEED]
    lm: str  # Hugging Face causal-LM folder, local or s3://
    data: str
    qa: str
    output: str
    projector: str = "mlp"
    pool: int = 2
    temporal_kernel: int = 1  # mlp: frame steps the first layer sees (odd; 1 = the paper's MLP)
    pool_mode: str = "avg"  # mlp: "avg" (the paper's) or "max" over each pool x pool window
    motion_kernel: int = 0  # mlp: 0 = none, odd K = one motion token per frame step
    train_lm: bool = False
    lora_rank: int = 0
    blind: bool = False
    steps: int = 300
    batch_size: int = 32
    learning_rate: float = 1e-3
    lm_learning_rate: float = 3e-4
    checkpoint_every: int = 100
    log_every: int = 25
    seed: int = 0
    resume: bool = False
    # A curriculum: the first `first_steps` steps (rounded up to whole epochs of those
    # questions) train on the question types `first_types` only, then every type trains.
    first_types: tuple[str, ...] = ()
    first_steps: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "first_types", tuple(self.first_types))
        if bool(self.first_types) != bool(self.first_steps) or self.first_steps < 0:
            raise ValueError("--first-types and --first-steps go together (steps >= 1)")
        if self.pool_mode not in vlm.POOL_MODES:
            raise ValueError(f"--pool-mode must be one of {vlm.POOL_MODES}, got {self.pool_mode!r}")
        if self.temporal_kernel < 1 or self.temporal_kernel % 2 == 0:
            raise ValueError(f"--temporal-kernel must be odd and >= 1, got {self.temporal_kernel}")
        if self.motion_kernel < 0 or (self.motion_kernel and self.motion_kernel % 2 == 0):
            raise ValueError(f"--motion-kernel must be 0 or odd, got {self.motion_kernel}")
        if self.projector not in PROJECTORS:
            raise ValueError(f"--projector must be one of {PROJECTORS}, got {self.projector!r}")
        if self.train_lm and self.lora_rank:
            raise ValueError("choose --train-lm (the whole LM) or --lora RANK, not both")
        if self.lora_rank < 0 or self.steps < 1 or self.batch_size < 1 or self.pool < 1:
            raise ValueError("--lora must be >= 0; --steps, --batch-size and pool must be >= 1")

    @property
    def lm_weights(self) -> str:
        return "full" if self.train_lm else "lora" if self.lora_rank else "frozen"


@dataclasses.dataclass(frozen=True)
class Example:
    """One training sample: a clip's cached features, the prompt and the answer ids."""

    clip: int
    prompt: PromptParts
    answer: tuple[int, ...]
    kind: str = ""  # the question's type


def build_examples(clips: ClipFeatures, items: Sequence[QAItem], tokenizer: Any) -> list[Example]:
    """Every (clip, training question) pair whose source (and span) match."""
    by_key: dict[str, list[QAItem]] = {}
    for item in items:
        by_key.setdefault(item.source, []).append(item)
    matcher = SourceMatcher(by_key)
    examples = []
    for index, (source, start, end) in enumerate(clips.spans):
        key = matcher.match(source)
        for item in by_key.get(key or "", []):
            if item.covers(start, end):
                prompt = build_prompt(tokenizer, item.question)
                answer = answer_ids(tokenizer, item.answer)
                examples.append(Example(index, prompt, answer, item.type))
    if not examples:
        raise RuntimeError("no clip matches a training question: check the QA table's sources")
    return examples


def apply_training_mode(lm: Any, config: AlignConfig) -> Any:
    """The LM frozen, fully trainable, or wrapped with a LoRA adapter."""
    if config.train_lm:
        return lm.train().requires_grad_(True)
    if config.lora_rank:
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(
            r=config.lora_rank,
            lora_alpha=2 * config.lora_rank,
            target_modules="all-linear",
            lora_dropout=0.0,
        )
        return get_peft_model(lm, lora).train()
    return lm


class AlignJob:
    """The `Job` of `run_loop`: projector (+ LM) steps on cached clip features."""

    def __init__(
        self,
        model: VideoLanguageModel,
        clips: ClipFeatures,
        examples: list[Example],
        config: AlignConfig,
        context: WorkerContext,
    ) -> None:
        self.model, self.clips, self.examples, self.context = model, clips, examples, context
        groups = [{"params": list(model.projector.parameters()), "lr": config.learning_rate}]
        self.lm_parameters = [p for p in model.lm.parameters() if p.requires_grad]
        if self.lm_parameters:
            groups.append({"params": self.lm_parameters, "lr": config.lm_learning_rate})
        self.optimizer = torch.optim.AdamW(groups, weight_decay=0.0)
        self.rates = [float(group["lr"]) for group in groups]  # type: ignore[arg-type]
        self.steps = config.steps
        # a curriculum is two runs back to back: each phase warms up and decays on its own
        # (in process, a rate still high when every type joined undid the first phase)
        self.first_steps = first_phase(examples, config)[1]

    def trainable_lm_state(self) -> dict[str, torch.Tensor]:
        names = {id(p) for p in self.lm_parameters}
        return {n: p.detach() for n, p in self.model.lm.named_parameters() if id(p) in names}

    def state_dict(self) -> dict[str, Any]:
        return {
            "projector": self.model.projector.state_dict(),
            "lm": self.trainable_lm_state(),
            "optimizer": self.optimizer.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.projector.load_state_dict(state["projector"])
        if set(state["lm"]) != set(self.trainable_lm_state()):
            raise ValueError("the checkpoint trained other LM weights: resume with the same flags")
        self.model.lm.load_state_dict(state["lm"], strict=False)
        self.optimizer.load_state_dict(state["optimizer"])

    def train_step(self, batch: list[int], step: int) -> dict[str, float]:
        from tasks.training.probe import lr_factor

        if step < self.first_steps:
            factor = lr_factor(step, self.first_steps)
        else:
            factor = lr_factor(step - self.first_steps, self.steps - self.first_steps)
        for group, rate in zip(self.optimizer.param_groups, self.rates, strict=True):
            group["lr"] = rate * factor
        picked = [self.examples[i] for i in batch]
        device = self.context.device
        features = self.clips.features[[e.clip for e in picked]].to(device)  # (B, N, De)
        visual = None if self.model.blind else self.model.visual_tokens(features, self.clips.grid)
        loss = self.model.loss(visual, [e.prompt for e in picked], [e.answer for e in picked])
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        average_gradients(self.optimizer, self.context.world_size)
        self.optimizer.step()
        return {"loss": float(loss.detach())}


def average_gradients(optimizer: torch.optim.Optimizer, world_size: int) -> None:
    """All-reduce the mean gradient over workers (the projector and LM are not DDP-wrapped:
    the LM is a duck-typed module whose methods a wrapper would hide)."""
    if world_size == 1 or not dist.is_initialized():
        return
    for group in optimizer.param_groups:
        for parameter in group["params"]:
            if parameter.grad is None:
                parameter.grad = torch.zeros_like(parameter)
            dist.all_reduce(parameter.grad)
            parameter.grad /= world_size


def example_batches(count: int, batch_size: int, seed: int, rank: int) -> Any:
    """Epoch -> shuffled batches of example indices (a fixed order per epoch and rank)."""

    def epoch_batches(epoch: int) -> Iterator[list[int]]:
        generator = torch.Generator().manual_seed(seed + 1000 * rank + epoch)
        order = torch.randperm(count, generator=generator).tolist()
        for start in range(0, count - batch_size + 1, batch_size):
            yield order[start : start + batch_size]

    return epoch_batches


def first_phase(examples: Sequence[Example], config: AlignConfig) -> tuple[list[int], int]:
    """The curriculum's first phase: the indices of its questions and its steps, which are
    `config.first_steps` rounded up to whole epochs of those questions (no phase: `([], 0)`)."""
    if not config.first_types:
        return [], 0
    first = [i for i, example in enumerate(examples) if example.kind in config.first_types]
    per_epoch = len(first) // config.batch_size
    if per_epoch == 0:
        kinds = sorted({example.kind for example in examples})
        raise ValueError(
            f"--first-types {','.join(config.first_types)}: fewer than one batch of training "
            f"questions of those types (the table's types: {', '.join(kinds)})"
        )
    steps = -(-config.first_steps // per_epoch) * per_epoch
    if steps >= config.steps:
        raise ValueError(
            f"--first-steps {config.first_steps} (whole epochs: {steps}) leaves none of the "
            f"{config.steps} --steps for every question type"
        )
    return first, steps


def curriculum_batches(examples: Sequence[Example], config: AlignConfig, rank: int) -> Any:
    """Epoch -> batches: the first phase's epochs draw from its question types only, every
    later epoch from all questions (a fixed order per epoch, so resume holds)."""
    every = example_batches(len(examples), config.batch_size, config.seed, rank)
    first, steps = first_phase(examples, config)
    if not steps:
        return every
    first_epochs = steps // (len(first) // config.batch_size)
    only_first = example_batches(len(first), config.batch_size, config.seed, rank)

    def epoch_batches(epoch: int) -> Iterator[list[int]]:
        if epoch < first_epochs:
            for batch in only_first(epoch):
                yield [first[i] for i in batch]
        else:
            yield from every(epoch)

    return epoch_batches


def build_model(
    config: AlignConfig, encoder: Any, clips: ClipFeatures, context: WorkerContext
) -> Any:
    """LM (base fingerprints taken before any training wrapper), projector, the whole model."""
    lm, tokenizer = load_lm(config.lm)
    fingerprints = (fingerprint(encoder), fingerprint(lm))
    width = int(lm.get_input_embeddings().weight.shape[1])
    if config.projector == "mlp":
        projector_config = vlm.mlp(
            encoder.config.width,
            width,
            pool=config.pool,
            temporal_kernel=config.temporal_kernel,
            pool_mode=config.pool_mode,
            motion_kernel=config.motion_kernel,
        )
    else:
        projector_config = vlm.attentive(encoder.config.width, width, clips.features.shape[1])
    torch.manual_seed(config.seed)
    projector = VisualProjector(projector_config)
    projector.fit_feature_statistics(clips.features)
    projector = projector.to(context.device)
    lm = apply_training_mode(lm, config).to(context.device)
    model = VideoLanguageModel(encoder, projector, lm, blind=config.blind)
    return model, tokenizer, fingerprints


def clip_side(grid: tuple[int, int, int], patch_size: int) -> int:
    """The side of the square clips behind an encoder token grid `(T', H', W')`; 0 (not
    recorded) for clips that are not square, which serving cannot resize a video body to."""
    _, height, width = grid
    return height * patch_size if height == width else 0


def export(
    config: AlignConfig, job: AlignJob, fingerprints: tuple[str, str], started: float
) -> AlignSummary:
    """The model folder under `OUTPUT/final`, the loss curve and the summary."""
    model = job.model
    manifest = VLMManifest(
        encoder=ComponentInfo(config.encoder, fingerprints[0]),
        lm=ComponentInfo(config.lm, fingerprints[1]),
        projector_kind=config.projector,
        blind=config.blind,
        lm_weights=config.lm_weights,
        lora_rank=config.lora_rank,
        steps=config.steps,
        image_size=clip_side(job.clips.grid, model.encoder.config.patch_size),
    )
    final = storage.join(config.output, "final")
    with tempfile.TemporaryDirectory(prefix="vjepa-align-") as scratch:
        folder = Path(scratch) / "final"
        lm_state = model.lm.state_dict() if config.train_lm else None
        if config.lora_rank:
            model.lm.save_pretrained(str(folder / ADAPTER_DIR))
        save_vlm(folder, model.projector.cpu(), manifest, lm_state)
        upload_folder(folder, final)
    rows = CheckpointStore(config.output).metrics()
    curve = plot_curves(rows, ["loss"], storage.join(config.output, "loss.png"), "align loss")
    summary = AlignSummary(
        model=final,
        steps=rows[-1]["step"] if rows else 0,
        first_loss=rows[0]["loss"] if rows else None,
        final_loss=float(np.mean([r["loss"] for r in rows[-10:]])) if rows else None,
        loss_curve=curve,
        projector=config.projector,
        lm_weights=config.lm_weights,
        blind=config.blind,
        train_examples=len(job.examples),
        train_clips=int(job.clips.features.shape[0]),
        visual_tokens=0
        if config.blind
        else model.projector.config.num_visual_tokens(job.clips.grid),
        seconds=time.monotonic() - started,
    )
    write_summary(config.output, summary)
    return summary


def align_loop(config_values: dict[str, Any]) -> None:
    """`train_loop_per_worker` of the alignment `TorchTrainer`."""
    import ray.train

    from tasks.training.job import worker_context
    from tasks.vqa.encoders import build_encoder

    started = time.monotonic()
    config = AlignConfig(**config_values)
    context = worker_context()
    encoder = build_encoder(config.encoder).to(context.device)
    clips = encode_clips(encoder, ray.train.get_dataset_shard("train"), context.device)
    model, tokenizer, fingerprints = build_model(config, encoder.cpu(), clips, context)
    items = [item for item in read_qa(config.qa) if item.split == TRAIN]
    job = AlignJob(model, clips, build_examples(clips, items, tokenizer), config, context)
    source = curriculum_batches(job.examples, config, context.rank)
    name = "align blind" if config.blind else f"align {config.projector}"
    loop = LoopConfig(config.steps, config.checkpoint_every, config.log_every, name=name)
    store = CheckpointStore(config.output)
    run_loop(job, source, store, loop, is_writer=context.is_writer, report=context.report)
    if context.is_writer:
        export(config, job, fingerprints, started)


def check_questions(items: Sequence[QAItem], uri: str) -> None:
    """Every question of the table must be askable (clear error naming the first bad row)."""
    for number, item in enumerate(items):
        try:
            check_question(item.question)
        except ValueError as error:
            raise ValueError(f"{uri}: row {number}: {error}") from None


def run_align(config: AlignConfig, scale: ScaleConfig) -> AlignSummary:
    """Driver side: check inputs, keep the clips with training questions, train, return summary."""
    from tasks.training.outputs import read_summary
    from tasks.vqa.lm import check_lm_folder, local_folder

    check_output(config.output, config.resume)
    items = read_qa(config.qa)
    check_questions(items, config.qa)
    with tempfile.TemporaryDirectory(prefix="vjepa-lm-check-") as scratch:
        check_lm_folder(local_folder(config.lm, scratch))
    train_sources = {item.source for item in items if item.split == TRAIN}
    if not train_sources:
        raise ValueError(f"{config.qa}: no training rows (split train)")
    kinds = {item.type for item in items if item.split == TRAIN}
    unknown = sorted(set(config.first_types) - kinds)
    if unknown:
        raise ValueError(
            f"--first-types {', '.join(unknown)}: no such question type in {config.qa} "
            f"(its types: {', '.join(sorted(kinds))})"
        )
    datasets = {"train": training_clips(config.data, keep=KeepSources(train_sources))}
    fit(
        align_loop,
        dataclasses.asdict(config),
        output_uri=config.output,
        name="align",
        scale=scale,
        datasets=datasets,
        unsplit=("train",) if scale.num_workers == 1 else (),
    )
    return read_summary(config.output, AlignSummary)
