"""Domain-adaptive pretraining, the first part of `vjepa posttrain --adapt-steps N`.

Three steps under OUTPUT/adapt/, each recorded by Prefect: `init` (what pretraining continues
from: the encoder's own run folder, else the encoder beside a fresh predictor), `curated` (the
trajectory dataset's camera videos curated into clips by the curate flow) and `pretrain` (the
pretrain flow, `--init` semantics, for N steps). The adapted encoder is
OUTPUT/adapt/pretrain/final/encoder.safetensors; post-training then runs on it.

With `--resume`, a finished step is reused: a curated dataset with its manifest, a pretraining
run whose summary has the N steps asked for (an unfinished one continues from its checkpoints).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.artifacts import publish_summary
from flows.curate import curate_flow
from flows.pretrain import pretrain_flow
from tasks import storage
from tasks.curation.dataset import MANIFEST
from tasks.curation.summary import CurateSummary
from tasks.training.adapt import (
    AdaptConfig,
    AdaptSummary,
    adapt_uri,
    curation_settings,
    init_folder,
    run_folder_of,
)
from tasks.training.launch import ScaleConfig
from tasks.training.outputs import SUMMARY, read_summary
from tasks.training.posttrain_config import PosttrainConfig, describe_dataset
from tasks.training.pretrain import PretrainConfig
from tasks.training.pretrain_init import RUN_PREDICTOR, resolve_preset
from tasks.training.summaries import PretrainSummary

SUMMARY_FILE = "adapt.json"  # OUTPUT/adapt/adapt.json: the AdaptSummary


@task(name="adapt-init", cache_policy=NO_CACHE)
def prepare_init(encoder: str, output: str, seed: int) -> str:
    """The run folder pretraining continues from (OUTPUT/adapt/init unless the encoder has one)."""
    own = run_folder_of(encoder)
    if own is not None:
        return own
    target = adapt_uri(output, "init")
    if storage.exists(storage.join(target, *RUN_PREDICTOR)):
        return target  # written by an earlier run: the same encoder and seed give the same files
    with tempfile.TemporaryDirectory(prefix="vjepa-adapt-") as scratch:
        local = storage.download(encoder, Path(scratch) / "encoder")
        folder = init_folder(local, Path(scratch) / "init", seed=seed)
        storage.publish_folder(folder, target, marker="/".join(RUN_PREDICTOR))
    return target


def _finished_curation(uri: str) -> CurateSummary | None:
    manifest = storage.join(uri, MANIFEST)
    if not storage.exists(manifest):
        return None
    return CurateSummary.from_manifest(uri, json.loads(storage.read_bytes(manifest)))


def _finished_pretrain(uri: str, steps: int) -> PretrainSummary | None:
    if not storage.exists(storage.join(uri, SUMMARY)):
        return None
    summary = read_summary(uri, PretrainSummary)
    return summary if summary.steps == steps else None


@flow(name="adapt-encoder")
def adapt_flow(config: PosttrainConfig, adapt: AdaptConfig, scale: ScaleConfig) -> AdaptSummary:
    """Curate the trajectories' camera videos, continue pretraining `config.encoder` on them."""
    from tasks.robot.lerobot_read import LeRobotReader

    facts = describe_dataset(config)
    reader = LeRobotReader(config.trajectories, config.camera, config.state_key, config.action_key)
    videos = storage.join(config.trajectories, "videos", reader.video_key)
    curated_uri = adapt_uri(config.output, "curated")
    curated = _finished_curation(curated_uri) if config.resume else None
    if curated is None:
        settings = curation_settings(adapt, facts.fps, facts.image_size)
        curated = curate_flow([videos], curated_uri, settings)
    if curated.num_clips == 0:
        raise ValueError(
            f"adaptation: no clip came out of {videos}; see {curated.rejected} for the reasons"
        )
    init = prepare_init(config.encoder, config.output, adapt.seed)
    pretrain_uri = adapt_uri(config.output, "pretrain")
    pretrained = _finished_pretrain(pretrain_uri, adapt.steps) if config.resume else None
    if pretrained is None:
        pretrain = PretrainConfig(
            data=curated_uri,
            output=pretrain_uri,
            preset=resolve_preset(init, None),
            init=init,
            steps=adapt.steps,
            batch_size=adapt.batch_size,
            warmup_fraction=adapt.warmup_fraction,
            checkpoint_every=max(1, min(50, adapt.steps)),
            seed=adapt.seed,
            resume=config.resume,
        )
        pretrained = pretrain_flow(pretrain, scale)
    summary = AdaptSummary(
        steps=pretrained.steps,
        input_encoder=config.encoder,
        init=init,
        curated=curated_uri,
        curated_version=curated.version,
        clips=curated.num_clips,
        first_loss=pretrained.first_loss,
        final_loss=pretrained.final_loss,
        encoder=pretrained.encoder_checkpoint,
        preset=pretrained.preset,
    )
    text = json.dumps(summary.as_dict(), indent=2, sort_keys=True)
    storage.write_bytes(adapt_uri(config.output, SUMMARY_FILE), text.encode())
    note = (
        f"Encoder `{config.encoder}` pretrained {summary.steps} more steps on {summary.clips} "
        f"clips of the trajectories' videos; post-training uses `{summary.encoder}`."
    )
    publish_summary("adapt-summary", "Domain-adaptive pretraining", summary.as_dict(), note)
    return summary
