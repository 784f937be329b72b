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
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.collect import collect_flow
from flows.curate import curate_flow
from flows.demo_config import DemoConfig
from flows.evaluate import eval_planning_flow
from flows.posttrain import posttrain_flow
from flows.pretrain import pretrain_flow
from flows.probe import probe_flow, probe_job, publish_probe
from flows.report import DemoStages, write_report
from tasks import storage
from tasks.planning.evaluate import EvalConfig
from tasks.robot.collect import CollectConfig
from tasks.runtime import ensure_ray
from tasks.training.launch import ScaleConfig, cluster_cpus
from tasks.training.posttrain_inputs import PosttrainConfig
from tasks.training.pretrain import PretrainConfig
from tasks.training.probe import RANDOM_PREFIX, ProbeConfig
from tasks.training.summaries import PosttrainSummary, PretrainSummary, ProbeSummary

TOKEN_ENV = "VJEPA_DEMO_TOKEN"


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


def side_by_side(scale: ScaleConfig, jobs: int) -> bool:
    """Whether `jobs` jobs of `scale` fit in the Ray cluster at once (each probe job trains on
    cached features with one CPU, so two of them use both cores of a laptop)."""
    return not scale.use_gpu and jobs * scale.cpus <= cluster_cpus()


def _probes(
    config: DemoConfig, encoder: str, labels: str, scale: ScaleConfig
) -> dict[str, dict[str, ProbeSummary]]:
    """`label -> {"pretrained": summary, "random": summary}`: both encoders probed identically,
    side by side when the cluster has the CPUs for both jobs."""
    encoders = {"pretrained": encoder, "random": RANDOM_PREFIX + config.preset}
    parallel = side_by_side(scale, len(encoders))
    results: dict[str, dict[str, ProbeSummary]] = {}
    for column in config.probe_labels:
        configs = {
            name: ProbeConfig(
                encoder=spec,
                data=config.path("curated"),
                labels=labels,
                label_column=column,
                output=config.path(f"probe-{column}-{name}"),
                steps=config.probe_steps,
                learning_rates=config.probe_lrs,
                heads_per_lr=config.probe_heads,
                seed=config.seed,
                resume=True,
            )
            for name, spec in encoders.items()
        }
        if parallel:
            futures = {name: probe_job.submit(cfg, scale) for name, cfg in configs.items()}
            results[column] = {name: future.result() for name, future in futures.items()}
            for name, cfg in configs.items():
                publish_probe(cfg, results[column][name])
        else:
            results[column] = {name: probe_flow(cfg, scale) for name, cfg in configs.items()}
    return results


def probe_figures(
    probes: Mapping[str, Mapping[str, ProbeSummary]],
) -> dict[str, dict[str, float]]:
    """Per label: mean top-1 over the heads and its spread, for both encoders."""
    return {
        column: {
            key: value
            for name, summary in pair.items()
            for key, value in ((name, summary.accuracy), (f"{name}_std", summary.accuracy_std))
        }
        for column, pair in probes.items()
    }


def _pretrain(config: DemoConfig, scale: ScaleConfig) -> PretrainSummary:
    pretrain = PretrainConfig(
        data=config.path("curated"),
        output=config.path("pretrain"),
        preset=config.preset,
        steps=config.pretrain_steps,
        peak_lr=config.pretrain_lr,
        ema_momentum=config.ema,
        crop_scale=config.crop_scale,
        seed=config.seed,
        resume=True,
    )
    return pretrain_flow(pretrain, scale)


def _posttrain(config: DemoConfig, encoder: str, scale: ScaleConfig) -> PosttrainSummary:
    """Collect the robot episodes (unless a previous run did), then post-train on them."""
    trajectories = config.path("trajectories")
    if not trajectories_exist(trajectories):
        collect = CollectConfig(
            config.env,
            config.episodes,
            trajectories,
            steps_per_episode=config.steps_per_episode,
            seed=config.seed,
        )
        collect_flow(collect)
    posttrain = PosttrainConfig(
        encoder=encoder,
        trajectories=trajectories,
        output=config.path("posttrain"),
        steps=config.posttrain_steps,
        fps=config.control_fps,
        seed=config.seed,
        resume=True,
    )
    return posttrain_flow(posttrain, scale)


def _plan(config: DemoConfig, world_model: str) -> dict[str, Any]:
    """Serve the world model and evaluate closed-loop planning through the HTTP server."""
    get_run_logger().info("serving %s for closed-loop planning", world_model)
    evaluation = EvalConfig(
        env=config.env,
        checkpoint=world_model,
        episodes=config.eval_episodes,
        goal_steps=config.goal_steps,
        seed=config.seed,
    )
    with served(world_model) as url:
        return eval_planning_flow(
            evaluation, config.path("planning"), server=url, token_env=TOKEN_ENV
        )


@dataclasses.dataclass(frozen=True)
class DemoResult:
    """What `vjepa demo` returns and prints with `--json`: URIs and headline figures."""

    curated: str
    encoder_checkpoint: str
    probe_checkpoint: str
    world_model_dir: str
    report: str
    pretrain_first_loss: float | None
    pretrain_final_loss: float
    probe_label: str
    probe_accuracy: float
    random_probe_accuracy: float
    probe_accuracy_std: float
    random_probe_accuracy_std: float
    probes: dict[str, dict[str, float]]
    heldout_rollout_error: float
    heldout_copy_error: float
    success_rate: float
    random_success_rate: float
    mean_final_distance: float
    random_mean_final_distance: float

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def demo_result(config: DemoConfig, stages: DemoStages, report: str) -> DemoResult:
    """The headline of a finished demo (the first probed label is the headline probe)."""
    planning = stages.planning
    figures = probe_figures(stages.probes)
    top = figures[config.probe_labels[0]]
    return DemoResult(
        curated=str(stages.curate["output"]),
        encoder_checkpoint=stages.pretrain.encoder_checkpoint,
        probe_checkpoint=stages.probes[config.probe_labels[0]]["pretrained"].probe_checkpoint,
        world_model_dir=stages.posttrain.world_model_dir,
        report=report,
        pretrain_first_loss=stages.pretrain.first_loss,
        pretrain_final_loss=stages.pretrain.final_loss,
        probe_label=config.probe_labels[0],
        probe_accuracy=top["pretrained"],
        random_probe_accuracy=top["random"],
        probe_accuracy_std=top["pretrained_std"],
        random_probe_accuracy_std=top["random_std"],
        probes=figures,
        heldout_rollout_error=stages.posttrain.heldout_rollout_error,
        heldout_copy_error=stages.posttrain.heldout_copy_error,
        success_rate=planning["success_rate"],
        random_success_rate=planning["random_success_rate"],
        mean_final_distance=planning["mean_final_distance"],
        random_mean_final_distance=planning["random_mean_final_distance"],
    )


@flow(name="demo")
def demo_flow(config: DemoConfig) -> DemoResult:
    """Run every stage on the embedded defaults; returns URIs and headline figures."""
    ensure_ray()
    scale = ScaleConfig(num_workers=1)
    labels = sample_videos(config)
    curate_config = {"fps": config.fps, "frames": config.frames, "size": config.size}
    curated = curate_flow([config.path("videos")], config.path("curated"), curate_config)
    pretrained = _pretrain(config, scale)
    probes = _probes(config, pretrained.encoder_checkpoint, labels, scale)
    posttrained = _posttrain(config, pretrained.encoder_checkpoint, scale)
    evaluation = _plan(config, posttrained.world_model_dir)
    stages = DemoStages(curated, pretrained, probes, posttrained, evaluation)
    return demo_result(config, stages, write_report(config.path("report"), stages))
