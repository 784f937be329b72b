"""The whole pipeline as one Prefect flow: `vjepa demo`.

sample videos -> curate -> pretrain -> probe (pretrained and random encoders)
-> collect robot trajectories -> post-train the AC predictor -> serve it ->
closed-loop planning through the HTTP server -> report. Every stage is the
flow its own command runs, as a subflow, so a demo run records the same
artifacts. Training stages run with `resume`, so running the demo again on the
same work folder finishes an interrupted run instead of starting over.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.collect import collect_flow
from flows.curate import curate_flow
from flows.evaluate import eval_planning_flow
from flows.posttrain import posttrain_flow
from flows.pretrain import pretrain_flow
from flows.probe import probe_flow
from flows.report import write_report
from tasks import storage
from tasks.planning.evaluate import EvalConfig
from tasks.robot import POINT_REACH_ID
from tasks.runtime import ensure_ray, local_uri
from tasks.training.launch import ScaleConfig
from tasks.training.posttrain import PosttrainConfig
from tasks.training.pretrain import PretrainConfig
from tasks.training.probe import RANDOM_PREFIX, ProbeConfig

TOKEN_ENV = "VJEPA_DEMO_TOKEN"


@dataclasses.dataclass(frozen=True)
class DemoConfig:
    """Sizes of every stage; the defaults finish on a 2-core laptop CPU."""

    workdir: str = "work/demo"
    videos: int = 96
    video_seconds: float = 6.0
    fps: int = 4
    frames: int = 8
    size: int = 64
    preset: str = "tiny"
    # The recipe that beat a random-init encoder on held-out clips (3 of 3 seeds, in-process):
    # a short, gentle run whose EMA momentum rises to 1.0, mild crops for 64 px clips.
    pretrain_steps: int = 150
    pretrain_lr: float = 2e-4
    ema: float = 0.996
    crop_scale: tuple[float, float] = (0.6, 1.0)
    probe_steps: int = 300
    probe_lrs: tuple[float, ...] = (1e-3, 3e-3)
    # one head's held-out score moves by about +-0.1 with its initialisation alone (72 clips):
    # every rate trains several heads and is scored by their mean
    probe_heads: int = 3
    env: str = POINT_REACH_ID
    episodes: int = 40
    steps_per_episode: int = 25
    posttrain_steps: int = 600
    control_fps: float = 5.0  # PointReach records at 10 Hz; at 5 Hz a step moves the disc visibly
    eval_episodes: int = 10
    goal_steps: int = 40
    seed: int = 0

    def path(self, name: str) -> str:
        return storage.join(local_uri(self.workdir), name)


@task(name="sample-videos", cache_policy=NO_CACHE)
def sample_videos(config: DemoConfig) -> str:
    """Write the sample videos unless a previous run did; returns the labels table URI."""
    from tasks.sample_videos import LABELS_FILE, write_sample_videos

    folder = config.path("videos")
    labels = storage.join(folder, LABELS_FILE)
    fs, path = storage.filesystem(labels)
    if not fs.exists(path):
        write_sample_videos(
            folder, count=config.videos, seconds=config.video_seconds, seed=config.seed
        )
    return labels


@task(name="collect-if-missing", cache_policy=NO_CACHE)
def trajectories_exist(uri: str) -> bool:
    fs, path = storage.filesystem(storage.join(uri, "meta", "info.json"))
    return bool(fs.exists(path))


@contextmanager
def served(bundle: str) -> Iterator[str]:
    """Serve `bundle` on a free loopback port with a fresh bearer token; yields the URL."""
    import socket

    from pydantic import SecretStr
    from ray import serve

    from serving.app import APP_NAME, build_app
    from serving.config import ServingConfig

    with socket.socket() as probe_socket:
        probe_socket.bind(("127.0.0.1", 0))
        port = int(probe_socket.getsockname()[1])
    # The client reads the token from the driver's environment; the replicas get the value itself
    # (Ray started before it existed, so their environment lacks it).
    token = secrets.token_urlsafe(24)
    os.environ[TOKEN_ENV] = token
    config = ServingConfig.model_validate(
        {"models": {"demo": bundle}, "port": port, "planner": {"num_cpus": 1}}
    ).model_copy(update={"token": SecretStr(token)})
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        serve.run(build_app(config), name=APP_NAME, route_prefix="/")
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()


def _probes(config: DemoConfig, encoder: str, labels: str, scale: ScaleConfig) -> dict[str, Any]:
    results = {}
    for name, spec in (("pretrained", encoder), ("random", RANDOM_PREFIX + config.preset)):
        probe_config = ProbeConfig(
            encoder=spec,
            data=config.path("curated"),
            labels=labels,
            output=config.path(f"probe-{name}"),
            steps=config.probe_steps,
            learning_rates=config.probe_lrs,
            heads_per_lr=config.probe_heads,
            seed=config.seed,
            resume=True,
        )
        results[name] = probe_flow(probe_config, scale)
    return results


@flow(name="demo")
def demo_flow(config: DemoConfig) -> dict[str, Any]:
    """Run every stage on the embedded defaults; returns URIs and headline figures."""
    logger = get_run_logger()
    ensure_ray()
    scale = ScaleConfig(num_workers=1)
    labels = sample_videos(config)
    curate_config = {"fps": config.fps, "frames": config.frames, "size": config.size}
    curated = curate_flow([config.path("videos")], config.path("curated"), curate_config)
    pretrained = pretrain_flow(
        PretrainConfig(
            data=config.path("curated"),
            output=config.path("pretrain"),
            preset=config.preset,
            steps=config.pretrain_steps,
            peak_lr=config.pretrain_lr,
            ema_momentum=config.ema,
            crop_scale=config.crop_scale,
            seed=config.seed,
            resume=True,
        ),
        scale,
    )
    probes = _probes(config, pretrained["checkpoint"], labels, scale)
    trajectories = config.path("trajectories")
    if not trajectories_exist(trajectories):
        collect_flow(
            config.env,
            config.episodes,
            trajectories,
            steps_per_episode=config.steps_per_episode,
            seed=config.seed,
        )
    posttrained = posttrain_flow(
        PosttrainConfig(
            encoder=pretrained["checkpoint"],
            trajectories=trajectories,
            output=config.path("posttrain"),
            steps=config.posttrain_steps,
            fps=config.control_fps,
            seed=config.seed,
            resume=True,
        ),
        scale,
    )
    logger.info("serving %s for closed-loop planning", posttrained["checkpoint"])
    with served(posttrained["checkpoint"]) as url:
        evaluation = eval_planning_flow(
            EvalConfig(
                env=config.env,
                checkpoint=posttrained["checkpoint"],
                episodes=config.eval_episodes,
                goal_steps=config.goal_steps,
                seed=config.seed,
            ),
            config.path("planning"),
            server=url,
            token_env=TOKEN_ENV,
        )
    stages = {
        "curate": curated,
        "pretrain": pretrained,
        "probe_pretrained": probes["pretrained"],
        "probe_random": probes["random"],
        "posttrain": posttrained,
        "planning": evaluation,
    }
    report = write_report(config.path("report"), stages)
    return {
        "curated": curated["output"],
        "encoder": pretrained["checkpoint"],
        "probe": probes["pretrained"]["checkpoint"],
        "world_model": posttrained["checkpoint"],
        "report": report,
        "pretrain_first_loss": pretrained["first_loss"],
        "pretrain_final_loss": pretrained["final_loss"],
        "probe_accuracy": probes["pretrained"]["accuracy"],
        "random_probe_accuracy": probes["random"]["accuracy"],
        "probe_accuracy_std": probes["pretrained"].get("accuracy_std", 0.0),
        "random_probe_accuracy_std": probes["random"].get("accuracy_std", 0.0),
        "heldout_rollout_error": posttrained["heldout_rollout_error"],
        "heldout_copy_error": posttrained["heldout_copy_error"],
        "success_rate": evaluation["success_rate"],
        "random_success_rate": evaluation["random_success_rate"],
        "mean_final_distance": evaluation["mean_final_distance"],
        "random_mean_final_distance": evaluation["random_mean_final_distance"],
    }
