"""Pretraining job in-process: the masked-prediction loss falls and the state round-trips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from modeling.checkpoints import load_encoder
from tasks import sample_videos as sv
from tasks.training.checkpoints import CheckpointStore
from tasks.training.job import WorkerContext
from tasks.training.loop import LoopConfig, run_loop
from tasks.training.pretrain import PretrainConfig, PretrainJob


def sample_clips(count: int = 4, frames: int = 4, size: int = 64) -> torch.Tensor:
    """Real moving-shape clips `(B, 3, T, size, size)` in [0, 1]."""
    clips = []
    for spec in sv.make_specs(count, seed=1, seconds=frames / 10):
        spec = sv.VideoSpec(**{**spec.__dict__, "fps": 10})
        video = torch.from_numpy(np.ascontiguousarray(sv.render_frames(spec)))  # (T, H, W, 3)
        video = video.permute(3, 0, 1, 2).float() / 255  # (3, T, H, W)
        clips.append(F.interpolate(video, size=(size, size), mode="bilinear"))
    return torch.stack(clips)


def test_loss_falls_on_real_clips(tmp_path: Path) -> None:
    config = PretrainConfig(
        data="unused", output=str(tmp_path), steps=30, batch_size=4, peak_lr=1e-3, ema_momentum=0.99
    )
    job = PretrainJob(config, WorkerContext.local())
    clips = sample_clips()
    losses = [job.train_step(clips, step)["loss"] for step in range(30)]
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5]), losses


def test_resume_and_export(tmp_path: Path) -> None:
    config = PretrainConfig(
        data="unused", output=str(tmp_path), steps=4, batch_size=2, checkpoint_every=2
    )
    clips = sample_clips(2)
    job = PretrainJob(config, WorkerContext.local())
    run_loop(
        job,
        lambda epoch: [clips],
        CheckpointStore(str(tmp_path)),
        LoopConfig(total_steps=4, checkpoint_every=2),
    )
    summary = job.export()
    assert summary is not None
    encoder = load_encoder(summary.encoder_checkpoint)
    video = (clips - 0.5) / 0.25
    torch.testing.assert_close(encoder(video), job.target(video))
    assert Path(str(summary.loss_curve)).stat().st_size > 0
    again = PretrainJob(config, WorkerContext.local())
    again.load_state_dict(CheckpointStore(str(tmp_path)).load()["job"])
    for name, value in job.state_dict()["encoder"].items():
        torch.testing.assert_close(again.state_dict()["encoder"][name], value)


def test_rejects_unknown_preset() -> None:
    with pytest.raises(ValueError, match="preset"):
        PretrainConfig(data="d", output="o", preset="vit-huge-typo")


def test_ema_schedule_rises_to_final() -> None:
    config = PretrainConfig(data="d", output="o", steps=10, ema_momentum=0.99, ema_final=1.0)
    momenta = [config.momentum(step) for step in range(10)]
    assert momenta == sorted(momenta)
    assert momenta[0] > 0.99 and momenta[-1] == pytest.approx(1.0)
    constant = PretrainConfig(data="d", output="o", ema_momentum=0.9, ema_final=None)
    assert constant.momentum(5) == 0.9


def test_grad_clip_reports_norm_and_keeps_training(tmp_path: Path) -> None:
    config = PretrainConfig(
        data="unused", output=str(tmp_path), steps=2, batch_size=2, grad_clip=0.5
    )
    job = PretrainJob(config, WorkerContext.local())
    metrics = job.train_step(sample_clips(2), 0)
    assert metrics["grad_norm"] > 0 and np.isfinite(metrics["loss"])


@pytest.mark.parametrize(
    "bad",
    [{"ema_final": 0.5, "ema_momentum": 0.9}, {"grad_clip": 0.0}, {"crop_scale": (0.8, 0.5)}],
)
def test_rejects_bad_recipe_options(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        PretrainConfig(data="d", output="o", **bad)  # type: ignore[arg-type]


class _DDPContext(WorkerContext):
    """What Ray's `prepare_model` does with several workers: wrap in DistributedDataParallel."""

    def prepare(self, model: torch.nn.Module) -> torch.nn.Module:
        return torch.nn.parallel.DistributedDataParallel(model)


def test_steps_under_ddp_match_the_plain_steps(tmp_path: Path) -> None:
    """DDP needs one forward per backward that uses every trained parameter: an encoder and a
    predictor wrapped apart and called once per mask family, or mask tokens no family uses,
    fail its gradient reduction on the second step (every `--workers 2` pretraining did)."""
    import torch.distributed as dist

    config = PretrainConfig(data="unused", output=str(tmp_path), steps=3, batch_size=2)
    clips = sample_clips(2)
    plain = PretrainJob(config, WorkerContext.local())
    expected = [plain.train_step(clips, step)["loss"] for step in range(3)]
    dist.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1
    )
    try:
        wrapped = PretrainJob(config, _DDPContext())
        assert isinstance(wrapped.step_module, torch.nn.parallel.DistributedDataParallel)
        losses = [wrapped.train_step(clips, step)["loss"] for step in range(3)]
    finally:
        dist.destroy_process_group()
    np.testing.assert_allclose(losses, expected, rtol=1e-5)
