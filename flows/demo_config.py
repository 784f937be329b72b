"""Sizes of every stage of `vjepa demo`; light to import, so the CLI can show the defaults."""

from __future__ import annotations

import dataclasses
import os

# The demo's stages in the order they run; `--rerun STAGE` runs that stage and every one after
# it again. A probe stage is named `probe-<label>-<encoder>`; `probe` names all of them.
STAGE_ORDER = (
    "videos",
    "curate",
    "pretrain",
    "probe",
    "collect",
    "posttrain",
    "planning",
    "vqa",
    "diagnosis",
)


@dataclasses.dataclass(frozen=True)
class DemoConfig:
    """Sizes of every stage; the defaults finish on a 2-core laptop CPU."""

    workdir: str = "work/demo"
    # 576 short videos, one 2 s clip each: the clips of one video are near-duplicates, so a
    # held-out score is worth about as many samples as there are held-out *videos* (144 here;
    # 48 with 192 six-second videos, where the split alone moved a probe's score by ~0.1)
    videos: int = 576
    video_seconds: float = 2.5
    fps: int = 4
    frames: int = 8
    size: int = 64
    preset: str = "tiny"
    # A gentle run whose EMA momentum rises to 1.0, mild crops for 64 px clips. Over 3 seeds
    # (192 videos, in-process) the shape probe gap to random init grew from 150 to 300 steps.
    pretrain_steps: int = 300
    pretrain_lr: float = 2e-4
    ema: float = 0.996
    crop_scale: tuple[float, float] = (0.6, 1.0)
    probe_steps: int = 300
    # 1e-3 won or tied 3e-3 for both encoders on every seed measured (docs/commands/probe.md),
    # and each rate is 3 more heads to train: one rate halves the probe stage
    probe_lrs: tuple[float, ...] = (1e-3,)
    # one head's held-out score moved by about +-0.1 with its initialisation alone (72 held-out
    # clips, before the 576-video default):
    # every rate trains several heads and is scored by their mean
    probe_heads: int = 3
    # Label columns of the sample videos' table to probe, headline first. Object shape is the
    # headline: JEPA's masked prediction must carry the object's appearance from context to
    # target tokens, while a random encoder gives the probe raw pixels only. Motion direction
    # (`--probe-labels shape direction`) is not probed by default: a random Conv3d tubelet
    # already sees the shift between its two frames, so random init won that label in every
    # measured run (0.80 vs 0.75 on 2026-12-02), and its two probe jobs took 3.5 of the demo's
    # 17.9 minutes. The VQA stage still asks about direction and speed.
    probe_labels: tuple[str, ...] = ("shape",)
    env: str = "vjepa/PointReach-v0"  # tasks.robot.POINT_REACH_ID (importing it loads gymnasium)
    episodes: int = 40
    steps_per_episode: int = 25
    posttrain_steps: int = 600
    control_fps: float = 5.0  # PointReach records at 10 Hz; at 5 Hz a step moves the disc visibly
    eval_episodes: int = 10
    goal_steps: int = 40
    # The product's CEM horizon is 4 (the suite's goals, `PosttrainConfig.cem`); on the demo's
    # model horizon 2 already succeeds (0.90 vs 0.30 random, 10 episodes) and horizon 4 costs 6x
    # the planning CPU (smaller first steps near the goal: 9.0 vs 2.7 steps per episode, and
    # 1.8x per plan; 14.9 vs 2.4 CPU s over 3 episodes).
    planning_horizon: int = 2
    # VQA (`flows.demo_vqa`): a tiny LM on the training questions, aligned with the pretrained
    # encoder with and without vision. A frozen tiny LM did not read the visual tokens (held-out
    # accuracy at the answer prior, for every projector learning rate tried); trained with the
    # projector it does (colour and shape above the blind model and the majority answer).
    vqa_lm_steps: int = 100
    vqa_train_lm: bool = True
    # Motion (docs/commands/align.md, "Reading motion"): with the paper's mlp projector the
    # tiny LM answered direction and speed at chance. A temporal kernel of 3 and a max over
    # each frame step's whole 4 x 4 grid (one token per step) let it read both when trained
    # on them alone; trained on every type at once it still fell back on appearance, so the
    # first 200 steps (whole epochs: 243) train on the motion types only, then the rest on
    # all four. 1000 steps rather than 800 lifted shape on the 2 seeds measured.
    vqa_steps: int = 1000
    vqa_pool: int = 4
    vqa_pool_mode: str = "max"
    vqa_temporal_kernel: int = 3
    vqa_first_types: tuple[str, ...] = ("direction", "speed")  # tasks.vqa.qa's motion types
    vqa_first_steps: int = 200
    vqa_lr: float = 3e-3
    vqa_lm_lr: float = 1e-3
    seed: int = 0
    # CPUs of a job that runs alone (pretrain, posttrain): None takes this machine's cores, at
    # most 4 (one torch thread per CPU; a tiny-encoder pretraining step took 0.24 s on one thread
    # and 0.16 s on two). Jobs that run side by side (the probe pair, the VQA pair) take one each.
    job_cpus: int | None = None
    # Stage reuse (`flows.stages`): reuse every finished stage whose inputs are unchanged
    # unless `reuse` is off; `rerun` names stages that run again with every stage after them.
    reuse: bool = True
    rerun: tuple[str, ...] = ()

    def solo_cpus(self) -> float:
        """CPUs of one worker of a job that has the machine to itself."""
        if self.job_cpus is not None:
            return float(self.job_cpus)
        return float(min(4, os.cpu_count() or 1))

    def forced(self, stage: str) -> bool:
        """Whether `stage` must run even when a finished run of it could be reused."""
        if not self.reuse:
            return True
        group = STAGE_ORDER.index(stage.split("-", 1)[0])
        return any(STAGE_ORDER.index(name) <= group for name in self.rerun)

    def path(self, name: str) -> str:
        from tasks import storage
        from tasks.runtime import local_uri

        return storage.join(local_uri(self.workdir), name)
