"""Fixtures for the planning tests: PointReach trajectories and a world model post-trained on them.

The world model is trained in-process (no Ray) with the post-training job; each window's
frames are encoded once up front by the job's own `encode_frames`, since the encoder is
frozen, which keeps the fixture to well under a minute on two busy cores.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from modeling.checkpoints import save_model
from modeling.encoder import VisionEncoder, tiny
from tasks.planning.rollouts import numpy_batches
from tasks.robot.collect import CollectConfig, collect
from tasks.robot.windows import iter_windows
from tasks.training.job import WorkerContext
from tasks.training.posttrain import PosttrainJob, export_bundle
from tasks.training.posttrain_config import CPU_CEM, PosttrainConfig, describe_dataset

EPISODES, STEPS, TRAIN_STEPS = 40, 20, 600


def encoded_batches(job: PosttrainJob, windows: list[dict]) -> list[dict[str, np.ndarray]]:
    """Windows batched by 64 with their features, encoded once by the job's world model."""
    batches = []
    for batch in numpy_batches(windows, 64):
        features, _, _ = job.tensors(batch)
        batches.append({**batch, "features": features.numpy()})
    return batches


def train_in_process(config: PosttrainConfig, encoder: Path) -> tuple[PosttrainJob, list]:
    """Post-train on cached features; returns the job and the held-out windows.

    One thread, so the result is the same on any machine (and the run is not slower on 2 cores).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train(config, encoder)
    finally:
        torch.set_num_threads(threads)


def _train(config: PosttrainConfig, encoder: Path) -> tuple[PosttrainJob, list]:
    facts = describe_dataset(config)
    job = PosttrainJob(config, facts, WorkerContext.local(), encoder)
    windows = list(iter_windows(config.trajectories, facts.windows(config), facts.train_episodes))
    cached = encoded_batches(job, windows)
    pool = {key: np.concatenate([b[key] for b in cached]) for key in cached[0]}
    rng = np.random.default_rng(config.seed)
    losses = []
    for step in range(config.steps):
        pick = rng.choice(len(pool["features"]), config.batch_size, replace=False)
        losses.append(job.train_step({k: v[pick] for k, v in pool.items()}, step)["loss"])
    job.losses = losses  # type: ignore[attr-defined]
    held = list(iter_windows(config.trajectories, facts.windows(config), facts.heldout_episodes))
    return job, held


@pytest.fixture(scope="session")
def point_reach_trajectories(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 random-policy PointReach episodes of 20 steps at 10 fps, 64 px."""
    output = tmp_path_factory.mktemp("planning") / "point_reach"
    collect(CollectConfig("vjepa/PointReach-v0", EPISODES, str(output), steps_per_episode=STEPS))
    return output


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("encoder") / "encoder.safetensors"
    save_model(VisionEncoder(tiny()), path)
    return path


@pytest.fixture(scope="session")
def trained_world_model(
    point_reach_trajectories: Path, tiny_encoder: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, PosttrainJob, list]:
    """A tiny world model post-trained at 5 Hz on the trajectories: (bundle folder, job, held out)."""
    output = tmp_path_factory.mktemp("posttrained")
    config = PosttrainConfig(
        encoder=str(tiny_encoder),
        trajectories=str(point_reach_trajectories),
        output=str(output),
        steps=TRAIN_STEPS,
        batch_size=16,
        frames=3,
        fps=5.0,
        peak_lr=3e-3,
        cem={**CPU_CEM, "horizon": 2},  # the tests check behaviour; horizon 4 costs 1.8x a plan
    )
    job, held = train_in_process(config, tiny_encoder)
    bundle = export_bundle(job.model, str(output / "world_model"))
    return bundle, job, held
