"""The whole pipeline as one Prefect flow: `vjepa demo`.

sample videos -> curate -> pretrain -> probe (pretrained and random encoders)
-> collect robot trajectories -> post-train the AC predictor -> serve it ->
closed-loop planning through the HTTP server -> report. Every stage is the
flow its own command runs, as a subflow, so a demo run records the same
artifacts. Running the demo again on the same work folder reuses every stage
whose inputs and configuration are unchanged (`flows.stages`: `W/stages/<stage>.json`,
verified before it is trusted) and finishes an interrupted training stage from its
checkpoints instead of starting over.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.collect import collect_flow
from flows.curate import curate_flow
from flows.demo_config import DemoConfig
from flows.demo_vqa import DemoVQASummary, demo_vqa
from flows.evaluate import eval_planning_flow
from flows.local_serve import TOKEN_ENV, served
from flows.posttrain import posttrain_flow
from flows.pretrain import pretrain_flow
from flows.probe import probe_flow, probe_job, publish_probe
from flows.report import DemoStages, write_report
from flows.stages import StageRun, Stages, config_inputs
from tasks import storage
from tasks.curation.summary import CurateSummary
from tasks.planning.diagnose import Diagnosis, PartResult
from tasks.planning.evaluate import EvalConfig
from tasks.planning.summary import PlanningSummary
from tasks.robot.collect import CollectConfig, CollectSummary
from tasks.runtime import ensure_ray, local_uri
from tasks.training.launch import ScaleConfig, side_by_side
from tasks.training.posttrain_config import CPU_CEM, PosttrainConfig
from tasks.training.pretrain import PretrainConfig
from tasks.training.probe import RANDOM_PREFIX, ProbeConfig
from tasks.training.summaries import JobSummary, PosttrainSummary, PretrainSummary, ProbeSummary


@dataclasses.dataclass(frozen=True)
class SampleVideosSummary(JobSummary):
    """The demo's sample videos: their folder and labels table."""

    folder: str
    labels: str
    count: int


@task(name="sample-videos", cache_policy=NO_CACHE)
def sample_videos(config: DemoConfig) -> SampleVideosSummary:
    """Write the sample videos and their labels (and QA) tables."""
    from tasks.sample_videos import LABELS_FILE, write_sample_videos

    folder = config.path("videos")
    write_sample_videos(folder, count=config.videos, seconds=config.video_seconds, seed=config.seed)
    return SampleVideosSummary(folder, storage.join(folder, LABELS_FILE), config.videos)


def _videos(config: DemoConfig, stages: Stages) -> SampleVideosSummary:
    inputs = {"videos": config.videos, "seconds": config.video_seconds, "seed": config.seed}
    folder = config.path("videos")
    return stages.run(
        "videos", {**inputs, "folder": folder}, [folder], SampleVideosSummary,
        lambda: sample_videos(config), lambda result: [result.folder], resumable=False,
    )  # fmt: skip


def _curate(config: DemoConfig, stages: Stages) -> CurateSummary:
    settings = {"fps": config.fps, "frames": config.frames, "size": config.size}
    output = config.path("curated")
    inputs = {"videos": stages.digest("videos"), "config": settings, "output": output}
    return stages.run(
        "curate", inputs, [output], CurateSummary,
        lambda: curate_flow([config.path("videos")], output, settings), lambda s: s.files,
    )  # fmt: skip


def _probe_configs(
    config: DemoConfig, encoder: str, labels: str, column: str
) -> dict[str, ProbeConfig]:
    """The pretrained and the random-init encoder probed identically on `column`."""
    encoders = {"pretrained": encoder, "random": RANDOM_PREFIX + config.preset}
    return {
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


def _probe_pair(
    configs: dict[str, ProbeConfig], scale: ScaleConfig, stages: Stages
) -> dict[str, ProbeSummary]:
    """One label's probes: reused where finished, the others run (side by side if they fit)."""
    done: dict[str, ProbeSummary] = {}
    pending: dict[str, StageRun] = {}
    for name, cfg in configs.items():
        inputs = {
            "config": config_inputs(cfg),
            "scale": dataclasses.asdict(scale),
            "data": stages.digest("curate"),
            "labels": stages.digest("videos"),
            "encoder": stages.digest("pretrain") if name == "pretrained" else cfg.encoder,
        }
        begun = stages.begin(f"probe-{cfg.label_column}-{name}", inputs, [cfg.output], ProbeSummary)
        if isinstance(begun, StageRun):
            pending[name] = begun
        else:
            done[name] = begun
    if len(pending) > 1 and side_by_side(scale, len(pending)):
        futures = {name: probe_job.submit(configs[name], scale) for name in pending}
        computed = {name: future.result() for name, future in futures.items()}
        for name, summary in computed.items():
            publish_probe(configs[name], summary)
    else:
        computed = {name: probe_flow(configs[name], scale) for name in pending}
    for name, summary in computed.items():
        files = _present(summary.probe_checkpoint, summary.loss_curve)
        done[name] = stages.finish(pending[name], summary, files)
    return {name: done[name] for name in configs}


def _probes(
    config: DemoConfig, encoder: str, labels: str, scale: ScaleConfig, stages: Stages
) -> dict[str, dict[str, ProbeSummary]]:
    """`label -> {"pretrained": summary, "random": summary}` for every probed label."""
    return {
        column: _probe_pair(_probe_configs(config, encoder, labels, column), scale, stages)
        for column in config.probe_labels
    }


def _present(*uris: str | None) -> list[str]:
    """The URIs that are set (optional files such as a loss curve may be None)."""
    return [uri for uri in uris if uri]


@dataclasses.dataclass(frozen=True)
class ProbeFigures:
    """One label's probes: mean top-1 over the heads and its spread, for both encoders."""

    pretrained: float
    pretrained_std: float
    random: float
    random_std: float

    @classmethod
    def of(cls, pair: Mapping[str, ProbeSummary]) -> ProbeFigures:
        pretrained, random = pair["pretrained"], pair["random"]
        return cls(
            pretrained.accuracy, pretrained.accuracy_std, random.accuracy, random.accuracy_std
        )


def probe_figures(
    probes: Mapping[str, Mapping[str, ProbeSummary]],
) -> dict[str, ProbeFigures]:
    """Per label: mean top-1 over the heads and its spread, for both encoders."""
    return {column: ProbeFigures.of(pair) for column, pair in probes.items()}


def _pretrain(config: DemoConfig, scale: ScaleConfig, stages: Stages) -> PretrainSummary:
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
    inputs = {
        "config": config_inputs(pretrain),
        "scale": dataclasses.asdict(scale),
        "data": stages.digest("curate"),
    }
    return stages.run(
        "pretrain", inputs, [pretrain.output], PretrainSummary,
        lambda: pretrain_flow(pretrain, scale),
        lambda s: _present(s.encoder_checkpoint, s.predictor_checkpoint, s.loss_curve),
    )  # fmt: skip


def _collect(config: DemoConfig, stages: Stages) -> str:
    """Record the robot episodes the world model trains on; returns their folder."""
    collect = CollectConfig(
        config.env,
        config.episodes,
        config.path("trajectories"),
        steps_per_episode=config.steps_per_episode,
        seed=config.seed,
    )
    summary = stages.run(
        "collect", {"config": config_inputs(collect)}, [collect.output], CollectSummary,
        lambda: collect_flow(collect), lambda s: [s.output], resumable=False,
    )  # fmt: skip
    return summary.output


def _posttrain(
    config: DemoConfig, encoder: str, scale: ScaleConfig, stages: Stages
) -> PosttrainSummary:
    """Collect the robot episodes, then post-train the action-conditioned predictor on them."""
    trajectories = _collect(config, stages)
    posttrain = PosttrainConfig(
        encoder=encoder,
        trajectories=trajectories,
        output=config.path("posttrain"),
        steps=config.posttrain_steps,
        fps=config.control_fps,
        seed=config.seed,
        resume=True,
        cem={**CPU_CEM, "horizon": config.planning_horizon},
    )
    inputs = {
        "config": config_inputs(posttrain),
        "scale": dataclasses.asdict(scale),
        "encoder": stages.digest("pretrain"),
        "trajectories": stages.digest("collect"),
    }
    return stages.run(
        "posttrain", inputs, [posttrain.output], PosttrainSummary,
        lambda: posttrain_flow(posttrain, scale),
        lambda s: _present(s.world_model_dir, s.loss_curve),
    )  # fmt: skip


def _serve_and_plan(evaluation: EvalConfig, output: str) -> PlanningSummary:
    """Serve the world model and evaluate closed-loop planning through the HTTP server."""
    get_run_logger().info("serving %s for closed-loop planning", evaluation.checkpoint)
    with served(evaluation.checkpoint) as url:
        return eval_planning_flow(evaluation, output, server=url, token_env=TOKEN_ENV)


def _plan(config: DemoConfig, world_model: str, stages: Stages) -> PlanningSummary:
    evaluation = EvalConfig(
        env=config.env,
        checkpoint=world_model,
        episodes=config.eval_episodes,
        goal_steps=config.goal_steps,
        seed=config.seed,
    )
    output = config.path("planning")
    inputs = {"config": config_inputs(evaluation), "world_model": stages.digest("posttrain")}
    return stages.run(
        "planning", inputs, [output], PlanningSummary,
        lambda: _serve_and_plan(evaluation, output), lambda s: s.files, resumable=False,
    )  # fmt: skip


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
    probes: dict[str, ProbeFigures]
    heldout_rollout_error: float
    heldout_copy_error: float
    success_rate: float
    random_success_rate: float
    mean_final_distance: float
    random_mean_final_distance: float
    reused: list[str] = dataclasses.field(default_factory=list)  # stages reused from a past run
    vqa: DemoVQASummary | None = None  # held-out VQA accuracy: aligned, blind, majority

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def demo_result(config: DemoConfig, stages: DemoStages, report: str) -> DemoResult:
    """The headline of a finished demo (the first probed label is the headline probe)."""
    planning = stages.planning
    figures = probe_figures(stages.probes)
    top = figures[config.probe_labels[0]]
    return DemoResult(
        curated=stages.curate.output,
        encoder_checkpoint=stages.pretrain.encoder_checkpoint,
        probe_checkpoint=stages.probes[config.probe_labels[0]]["pretrained"].probe_checkpoint,
        world_model_dir=stages.posttrain.world_model_dir,
        report=report,
        pretrain_first_loss=stages.pretrain.first_loss,
        pretrain_final_loss=stages.pretrain.final_loss,
        probe_label=config.probe_labels[0],
        probe_accuracy=top.pretrained,
        random_probe_accuracy=top.random,
        probe_accuracy_std=top.pretrained_std,
        random_probe_accuracy_std=top.random_std,
        probes=figures,
        heldout_rollout_error=stages.posttrain.heldout_rollout_error,
        heldout_copy_error=stages.posttrain.heldout_copy_error,
        success_rate=planning.success_rate,
        random_success_rate=planning.random_success_rate,
        mean_final_distance=planning.mean_final_distance,
        random_mean_final_distance=planning.random_mean_final_distance,
        reused=[outcome.stage for outcome in stages.outcomes if outcome.reused],
        vqa=stages.vqa,
    )


@task(cache_policy=NO_CACHE)
def _diagnose(config: DemoConfig, world_model: str) -> Diagnosis:
    """The quick `diagnose-world-model` subset on the demo's env, for the report."""
    from tasks.planning.diagnose import diagnose, quick_config
    from tasks.planning.evaluate import load_planner_model

    check = quick_config(config.env, world_model, config.seed, config.goal_steps)
    return diagnose(check, load_planner_model(world_model))


@dataclasses.dataclass(frozen=True)
class DiagnosisResult:
    """The demo's diagnosis as a stage result (`Diagnosis` round-tripped through JSON)."""

    diagnosis: Diagnosis

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self.diagnosis)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> DiagnosisResult:
        parts = [PartResult(**part) for part in values["parts"]]
        pairs = {
            key: [tuple(pair) for pair in values[key]]
            for key in ("energy_vs_distance", "predicted_vs_true")
        }
        return cls(Diagnosis(**{**values, "parts": parts, **pairs}))


def _diagnosis(config: DemoConfig, world_model: str, stages: Stages) -> Diagnosis:
    inputs = {
        "world_model": stages.digest("posttrain"),
        "env": config.env,
        "seed": config.seed,
        "goal_steps": config.goal_steps,
    }
    return stages.run(
        "diagnosis", inputs, [], DiagnosisResult,
        lambda: DiagnosisResult(_diagnose(config, world_model)), lambda result: [],
    ).diagnosis  # fmt: skip


@flow(name="demo")
def demo_flow(config: DemoConfig) -> DemoResult:
    """Run every stage on the embedded defaults; returns URIs and headline figures."""
    scale = ScaleConfig(num_workers=1)  # jobs that run side by side: one CPU each
    solo = ScaleConfig(num_workers=1, cpus_per_worker=config.solo_cpus())
    stages = Stages(local_uri(config.workdir), force=config.forced, prepare=ensure_ray)
    videos = _videos(config, stages)
    curated = _curate(config, stages)
    pretrained = _pretrain(config, solo, stages)
    probes = _probes(config, pretrained.encoder_checkpoint, videos.labels, scale, stages)
    posttrained = _posttrain(config, pretrained.encoder_checkpoint, solo, stages)
    evaluation = _plan(config, posttrained.world_model_dir, stages)
    vqa = demo_vqa(
        config, pretrained.encoder_checkpoint, scale, stages, posttrained.world_model_dir
    )
    done = DemoStages(curated, pretrained, probes, posttrained, evaluation, stages.outcomes, vqa)
    diagnosis = _diagnosis(config, posttrained.world_model_dir, stages)
    done = dataclasses.replace(done, diagnosis=diagnosis)
    return demo_result(config, done, write_report(config.path("report"), done))
