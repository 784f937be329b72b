"""Attentive probing of a frozen encoder as a Ray Train job.

The clips of a curated dataset are joined with a labels table on `source` and
split by source (stratified per class, deterministic), so no video has clips on
both sides. The frozen encoder's tokens are computed once per clip; several
attentive probes per learning rate (differently seeded heads, the same seeds for
every rate) train side by side on the same batches in one job, as the paper
trains several heads at once; every rate warms up, then decays on a cosine.
Each head is scored by top-1 accuracy on the held-out clips; a rate's score
is the mean over its heads (reported with their spread), the best rate's mean
is the job's accuracy, and that rate's best head is exported as
`final/probe.safetensors`.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import math
import tempfile
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from modeling import encoder as encoder_presets
from modeling import probe as probe_presets
from modeling.encoder import VisionEncoder
from modeling.preprocess import normalize
from modeling.probe import AttentiveProbe
from tasks import storage
from tasks.tables import SourceMatcher, read_table
from tasks.training.checkpoints import CheckpointStore
from tasks.training.job import WorkerContext
from tasks.training.launch import ScaleConfig, check_output, fit, training_clips
from tasks.training.loop import LoopConfig, run_loop
from tasks.training.outputs import fetch_file, plot_curves, save_model, write_summary
from tasks.training.summaries import ProbeSummary

RANDOM_PREFIX = "random:"


@dataclasses.dataclass(frozen=True)
class ProbeConfig:
    """A probing run: which encoder, which clips and labels, the learning-rate sweep."""

    encoder: str  # a checkpoint URI, or `random:<preset>` for a randomly initialised encoder
    data: str
    labels: str
    output: str
    label_column: str = "label"
    learning_rates: tuple[float, ...] = (3e-4, 1e-3, 3e-3)
    steps: int = 150
    # Differently initialised heads per learning rate; one head's score swings by +-0.1 on
    # a few dozen held-out clips, the mean over heads is what tells two encoders apart.
    heads_per_lr: int = 3
    batch_size: int = 16
    weight_decay: float = 0.01
    heldout_fraction: float = 0.25
    checkpoint_every: int = 50
    log_every: int = 10
    seed: int = 0
    resume: bool = False

    def __post_init__(self) -> None:
        if not self.learning_rates:
            raise ValueError("give at least one learning rate")
        if not 0 < self.heldout_fraction < 1:
            raise ValueError(f"heldout_fraction must be in (0, 1), got {self.heldout_fraction}")
        if self.steps < 1 or self.batch_size < 1 or self.heads_per_lr < 1:
            raise ValueError("steps, batch_size and heads_per_lr must be >= 1")
        if self.encoder.startswith(RANDOM_PREFIX):
            encoder_presets.preset(self.encoder[len(RANDOM_PREFIX) :])


def _label_values(uri: str, column: str) -> tuple[list[str], list[Any]]:
    try:
        table = read_table(uri, columns=("source", column))
    except FileNotFoundError as error:
        raise FileNotFoundError(f"labels table not found: {uri}") from error
    sources = [str(source) for source in table.column("source").to_pylist()]
    values = table.column(column).to_pylist()
    empty = [source for source, value in zip(sources, values, strict=True) if value is None]
    if empty:
        raise ValueError(
            f"{uri}: column {column!r} is empty for {len(empty)} row(s), e.g. {empty[0]}"
        )
    return sources, values


def class_names(uri: str, column: str) -> list[str] | None:
    """The class names of a text label column, in class-index order; None for integer labels."""
    _, values = _label_values(uri, column)
    return _text_classes(values)


def _text_classes(values: list[Any]) -> list[str] | None:
    return sorted(set(values)) if all(isinstance(value, str) for value in values) else None


def read_labels(uri: str, column: str) -> dict[str, int]:
    """`source -> class index` from a parquet labels table (columns `source` and `column`).

    Integer columns are class indices already; a text column (e.g. `shape`) is mapped to
    indices in sorted name order, as `class_names` lists them.
    """
    sources, values = _label_values(uri, column)
    names = _text_classes(values)  # the table is read once
    if names is not None:
        index = {name: position for position, name in enumerate(names)}
        return {source: index[value] for source, value in zip(sources, values, strict=True)}
    if not all(isinstance(value, int) or float(value).is_integer() for value in values):
        raise ValueError(
            f"{uri}: column {column!r} must hold class indices or class names, got {values[0]!r}"
        )
    labels = {source: int(value) for source, value in zip(sources, values, strict=True)}
    if min(labels.values()) < 0:
        raise ValueError(f"{uri}: column {column!r} has negative class indices")
    return labels


def split_sources(labels: dict[str, int], fraction: float, seed: int) -> set[str]:
    """Held-out sources: per class, the `fraction` with the smallest seeded hash (at least one).

    The hash is of each source's name relative to the folder all sources share, so the split
    is the same wherever the videos lie (`storage.relative_names`)."""
    heldout: set[str] = set()
    names = storage.relative_names(labels)
    for label in sorted(set(labels.values())):
        members = [source for source, value in labels.items() if value == label]
        members.sort(key=lambda s: hashlib.sha256(f"{seed}:{names[s]}".encode()).hexdigest())
        if len(members) > 1:
            heldout.update(members[: max(1, round(fraction * len(members)))])
    return heldout


def build_encoder(spec: str, seed: int) -> VisionEncoder:
    """Load the frozen encoder (any layout `load_encoder` reads), or a seeded random one."""
    from modeling.checkpoints import load_encoder

    if spec.startswith(RANDOM_PREFIX):
        torch.manual_seed(seed)
        return VisionEncoder(encoder_presets.preset(spec[len(RANDOM_PREFIX) :]))
    with tempfile.TemporaryDirectory(prefix="vjepa-encoder-") as scratch:
        return load_encoder(fetch_file(spec, scratch))


@torch.no_grad()
def encode_dataset(
    encoder: VisionEncoder, shard: Any, device: torch.device, batch_size: int = 16
) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokens `(M, N, D)` and labels `(M,)` of every clip in a Ray Data shard."""
    from tasks.clips import collate_clips

    features, labels = [], []
    for batch in shard.iter_batches(batch_size=batch_size, batch_format="numpy"):
        video = normalize(collate_clips(batch)["video"].to(device))  # (B, C, T, H, W)
        features.append(encoder(video).cpu())  # (B, N, D)
        # a copy: Ray's blocks are read-only, and torch warns on wrapping them
        labels.append(torch.tensor(np.asarray(batch["label"]), dtype=torch.long))
    if not features:
        raise RuntimeError("a data split has no labelled clips: check the labels' sources")
    return torch.cat(features), torch.cat(labels)


def lr_factor(step: int, steps: int, warmup_fraction: float = 0.1) -> float:
    """Learning-rate multiplier at `step` (0-based): linear warmup, then cosine decay to 0.

    As the official probe recipe does; each head ends at a converged point rather than
    wherever its last constant-rate steps left it, which steadies the held-out score.
    """
    warmup = max(1, int(steps * warmup_fraction))
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, steps - warmup))
    return 0.5 * (1.0 + math.cos(math.pi * progress))


class ProbeSweep:
    """`heads_per_lr` attentive probes per learning rate, trained side by side on the same batches.

    Head `h` starts from the same initial weights at every learning rate, so the rates
    differ only in their rate. `probes` is ordered rate-major: `[lr0 h0, lr0 h1, ..., lr1 h0, ...]`.
    """

    def __init__(self, config: ProbeConfig, width: int, num_classes: int, context: WorkerContext):
        torch.manual_seed(config.seed)
        self.context = context
        self.heads = config.heads_per_lr
        self.learning_rates = config.learning_rates
        self.steps = config.steps
        initial = [
            AttentiveProbe(probe_presets.tiny(width, num_classes)) for _ in range(self.heads)
        ]
        self.probes = [copy.deepcopy(head) for _ in self.learning_rates for head in initial]
        self.wrapped = [context.prepare(probe) for probe in self.probes]
        rates = [lr for lr in self.learning_rates for _ in range(self.heads)]
        self.optimizers = [
            torch.optim.AdamW(wrapped.parameters(), lr=lr, weight_decay=config.weight_decay)
            for wrapped, lr in zip(self.wrapped, rates, strict=True)
        ]

    def state_dict(self) -> dict[str, Any]:
        return {
            "probes": [probe.state_dict() for probe in self.probes],
            "optimizers": [optimizer.state_dict() for optimizer in self.optimizers],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if len(state["probes"]) != len(self.probes):
            raise ValueError(
                f"the checkpoint holds {len(state['probes'])} probes, this run trains "
                f"{len(self.probes)}: resume with the same learning rates and heads_per_lr"
            )
        for probe, values in zip(self.probes, state["probes"], strict=True):
            probe.load_state_dict(values)
        for optimizer, values in zip(self.optimizers, state["optimizers"], strict=True):
            optimizer.load_state_dict(values)

    def train_step(self, batch: tuple[torch.Tensor, torch.Tensor], step: int) -> dict[str, float]:
        tokens, labels = (t.to(self.context.device) for t in batch)
        losses = []
        factor = lr_factor(step, self.steps)
        rates = [lr for lr in self.learning_rates for _ in range(self.heads)]
        for wrapped, optimizer, rate in zip(self.wrapped, self.optimizers, rates, strict=True):
            for group in optimizer.param_groups:
                group["lr"] = rate * factor
            loss = F.cross_entropy(wrapped(tokens), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            losses.append(float(loss.detach()))
        per_rate = np.asarray(losses).reshape(len(self.learning_rates), self.heads).mean(axis=1)
        metrics = {f"loss_{index}": float(value) for index, value in enumerate(per_rate)}
        metrics["loss"] = float(np.mean(losses))
        return metrics

    @torch.no_grad()
    def accuracies(self, tokens: torch.Tensor, labels: torch.Tensor) -> list[list[float]]:
        """Held-out top-1 of every head, as `[rate][head]`."""
        device = self.context.device
        flat = [
            float((probe.eval()(tokens.to(device)).argmax(-1).cpu() == labels).float().mean())
            for probe in self.probes
        ]
        return [flat[i : i + self.heads] for i in range(0, len(flat), self.heads)]


def feature_batches(tokens: torch.Tensor, labels: torch.Tensor, batch_size: int, seed: int) -> Any:
    """Epoch -> shuffled minibatches of cached features (a fixed order per epoch, for resume)."""

    def epoch_batches(epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed + epoch))
        for start in range(0, len(order), batch_size):
            index = order[start : start + batch_size]
            yield tokens[index], labels[index]

    return epoch_batches


def score(learning_rates: tuple[float, ...], accuracies: list[list[float]]) -> dict[str, Any]:
    """Per-rate mean and spread over the heads; the best rate by mean and its best head."""
    means = [float(np.mean(heads)) for heads in accuracies]
    spreads = [float(np.std(heads)) for heads in accuracies]
    best = int(np.argmax(means))
    return {
        "accuracy": means[best],
        "accuracy_std": spreads[best],
        "best_lr": learning_rates[best],
        "accuracies": dict(zip(map(str, learning_rates), means, strict=True)),
        "accuracy_stds": dict(zip(map(str, learning_rates), spreads, strict=True)),
        "head_accuracies": dict(zip(map(str, learning_rates), accuracies, strict=True)),
        "heads_per_lr": len(accuracies[best]),
        "exported_head": int(np.argmax(accuracies[best])),
        "_best_index": best,
    }


def export(
    config: ProbeConfig, sweep: ProbeSweep, accuracies: list[list[float]], counts: dict[str, int]
) -> ProbeSummary:
    """Best rate's best head, loss curves and summary under the output URI."""
    scores = score(config.learning_rates, accuracies)
    best = scores.pop("_best_index") * sweep.heads + scores["exported_head"]
    probe_uri = save_model(
        storage.join(config.output, "final", "probe.safetensors"), sweep.probes[best]
    )
    rows = CheckpointStore(config.output).metrics()
    keys = [f"loss_{i}" for i in range(len(config.learning_rates))]
    curve = plot_curves(rows, keys, storage.join(config.output, "loss.png"), "probe training loss")
    summary = ProbeSummary(
        encoder=config.encoder,
        steps=rows[-1]["step"] if rows else 0,
        final_loss=rows[-1]["loss"] if rows else None,
        **scores,
        probe_checkpoint=probe_uri,
        loss_curve=curve,
        train_clips=counts["train_clips"],
        heldout_clips=counts["heldout_clips"],
    )
    write_summary(config.output, summary)
    return summary


def probe_name(encoder: str) -> str:
    """A short name of the probed encoder for progress lines: `random:tiny` or the file name."""
    return encoder if encoder.startswith(RANDOM_PREFIX) else encoder.rstrip("/").rsplit("/", 1)[-1]


def probe_loop(config_values: dict[str, Any]) -> None:
    """`train_loop_per_worker` of the probing `TorchTrainer`."""
    import ray.train

    from tasks.training.job import worker_context

    config = ProbeConfig(**config_values)
    context = worker_context()
    encoder = build_encoder(config.encoder, config.seed).eval().to(context.device)
    train = encode_dataset(encoder, ray.train.get_dataset_shard("train"), context.device)
    heldout = encode_dataset(encoder, ray.train.get_dataset_shard("heldout"), context.device)
    num_classes = int(max(train[1].max(), heldout[1].max())) + 1
    sweep = ProbeSweep(config, encoder.config.width, num_classes, context)
    source = feature_batches(*train, config.batch_size, config.seed)
    name = f"probe {config.label_column} {probe_name(config.encoder)}"
    loop = LoopConfig(config.steps, config.checkpoint_every, config.log_every, name=name)
    store = CheckpointStore(config.output)
    run_loop(sweep, source, store, loop, is_writer=context.is_writer, report=context.report)
    if context.is_writer:
        counts = {"train_clips": len(train[1]), "heldout_clips": len(heldout[1])}
        export(config, sweep, sweep.accuracies(*heldout), counts)


class AttachLabels:
    """Ray Data stage: keep clips whose label key (full URI or file name, `tasks.tables`) is in
    `labels` and `wanted`, add a `label` column."""

    def __init__(self, labels: dict[str, int], wanted: set[str]) -> None:
        self.labels, self.wanted = labels, wanted
        self.matcher = SourceMatcher(labels)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        keys = [self.matcher.match(str(s)) for s in batch["source"]]
        keep = np.array([key in self.wanted for key in keys], dtype=bool)
        out = {name: value[keep] for name, value in batch.items()}
        kept = [key for key in keys if key in self.wanted]
        out["label"] = np.array([self.labels[str(key)] for key in kept], dtype=np.int64)
        return out


def run_probe(config: ProbeConfig, scale: ScaleConfig) -> ProbeSummary:
    """Driver side: join labels, split by source, train the probe sweep, return the summary."""
    from tasks.training.outputs import read_summary

    check_output(config.output, config.resume)
    labels = read_labels(config.labels, config.label_column)
    columns = ["clip_id", "source", "shape", "frames"]
    heldout = split_sources(labels, config.heldout_fraction, config.seed)
    # Only the labelled splits are held (a small dataset's in memory): the workers then train
    # with no Ray Data work pending and may take every CPU (`launch.check_resources`).
    datasets = {
        name: training_clips(config.data, columns, AttachLabels(labels, wanted))
        for name, wanted in (("train", set(labels) - heldout), ("heldout", heldout))
    }
    fit(
        probe_loop,
        dataclasses.asdict(config),
        output_uri=config.output,
        name="probe",
        scale=scale,
        datasets=datasets,
        unsplit=("heldout",),
    )
    summary = read_summary(config.output, ProbeSummary)
    names = class_names(config.labels, config.label_column)
    if names is not None and summary.classes != names:
        summary = dataclasses.replace(summary, label_column=config.label_column, classes=names)
        write_summary(config.output, summary)
    return summary
