"""`vjepa pretrain --init`: continue pretraining from official, Hugging Face or platform weights.

Official-layout files are built with random weights (`module.backbone.` keys, the unused
sin-cos `pos_embed`, distinct `encoder` and `target_encoder` entries).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from flows.cli import main
from modeling import predictor as predictor_presets
from modeling.checkpoints import CheckpointError, load_encoder, load_predictor, save_model
from modeling.encoder import VisionEncoder, tiny
from modeling.jepa import jepa_loss
from modeling.masks import MaskConfig, generate_masks
from modeling.predictor import Predictor, PredictorConfig
from modeling.preprocess import normalize
from tasks.training.augment import AugmentConfig, random_resized_crop_flip
from tasks.training.checkpoints import CheckpointStore
from tasks.training.job import WorkerContext
from tasks.training.loop import LoopConfig, run_loop
from tasks.training.pretrain import PretrainConfig, PretrainJob
from tasks.training.pretrain_init import load_init, resolve_preset

from .test_pretrain_job import sample_clips


def _wrap(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {f"module.backbone.{k}": v.clone() for k, v in module.state_dict().items()}


# Official files record no head counts: the released predictor is 384 wide with 12 heads, so the
# test predictor has that width (one block) and the tiny encoder's width is a released one (192).
OFFICIAL_PREDICTOR = PredictorConfig(encoder_width=192, depth=1, mlp_hidden=384)


def official_file(
    path: Path, with_target: bool = True, extra: dict[str, torch.Tensor] | None = None
) -> Path:
    torch.manual_seed(3)
    encoder, target = VisionEncoder(tiny()), VisionEncoder(tiny())
    predictor = Predictor(OFFICIAL_PREDICTOR)
    payload: dict[str, object] = {
        "encoder": {**_wrap(encoder), "module.backbone.pos_embed": torch.zeros(1, 4, 192)},
        "predictor": {**_wrap(predictor), **(extra or {})},
        "epoch": 10,
    }
    if with_target:
        payload["target_encoder"] = _wrap(target)
    torch.save(payload, path)
    return path


def _config(tmp_path: Path, init: Path | None, **values: Any) -> PretrainConfig:
    source = None if init is None else str(init)
    return PretrainConfig(
        data="unused", output=str(tmp_path / "run"), batch_size=2, init=source, **values
    )


def _reference_first_loss(path: Path, batch: torch.Tensor) -> float:
    """Step 0's loss by hand, with the modules `modeling`'s loaders read from the file."""
    encoder, target = load_encoder(path, entry="encoder"), load_encoder(path)
    predictor = load_predictor(path)
    generator = torch.Generator().manual_seed(0)  # the job's: seed 0, rank 0
    video = normalize(random_resized_crop_flip(batch, AugmentConfig(scale=(0.3, 1.0)), generator))
    grid = encoder.grid(video.shape)
    with torch.no_grad():
        target_features = target(video)  # (B, N, D)
        losses = []
        pairs = generate_masks(MaskConfig(), video.shape[0], grid, generator=generator)
        for family, pair in enumerate(pairs):
            context = encoder(video, pair.context)  # (B, K, D)
            predicted = predictor(context, pair.context, pair.target, grid, mask_index=family)
            losses.append(jepa_loss(predicted, target_features, pair.target))
    return float(torch.stack(losses).mean())


def test_first_step_loss_is_that_of_the_loaded_modules(tmp_path: Path) -> None:
    path = official_file(tmp_path / "vjepa2-official.pt")
    clips = sample_clips(2)
    job = PretrainJob(_config(tmp_path, path), WorkerContext.local())
    first = job.train_step(clips, 0)["loss"]
    assert first == pytest.approx(_reference_first_loss(path, clips), rel=1e-5)
    fresh = PretrainJob(_config(tmp_path, None), WorkerContext.local()).train_step(clips, 0)
    assert abs(fresh["loss"] - first) > 1e-3  # the weights are really used


def test_ema_target_from_target_encoder_else_the_encoder(tmp_path: Path) -> None:
    both = load_init(official_file(tmp_path / "both.pt"))
    official = torch.load(tmp_path / "both.pt", weights_only=True)
    blocks = "module.backbone.blocks.0.attn.qkv.weight"
    qkv = "blocks.0.attn.qkv.weight"
    assert torch.equal(both.target.state_dict()[qkv], official["target_encoder"][blocks])
    assert torch.equal(both.encoder.state_dict()[qkv], official["encoder"][blocks])
    only = load_init(official_file(tmp_path / "only.pt", with_target=False))
    for ours, theirs in zip(only.target.parameters(), only.encoder.parameters(), strict=True):
        assert torch.equal(ours, theirs)


def test_resume_after_init_continues_the_run(tmp_path: Path) -> None:
    path = official_file(tmp_path / "init.pt")
    clips = sample_clips(2)
    source = lambda epoch: [clips]  # noqa: E731
    config = _config(tmp_path, path, steps=2, checkpoint_every=1)
    store = CheckpointStore(config.output)
    run_loop(PretrainJob(config, WorkerContext.local()), source, store, LoopConfig(1, 1))
    resumed = PretrainJob(config, WorkerContext.local())  # loads --init again, then the run
    run_loop(resumed, source, store, LoopConfig(2, 1))
    straight = PretrainJob(config, WorkerContext.local())
    run_loop(straight, source, CheckpointStore(str(tmp_path / "straight")), LoopConfig(2, 1))
    assert [row["step"] for row in store.metrics()] == [1, 2]
    for ours, theirs in zip(
        resumed.state_dict()["encoder"].values(),
        straight.state_dict()["encoder"].values(),
        strict=True,
    ):
        torch.testing.assert_close(ours, theirs)


def test_preset_comes_from_the_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = official_file(tmp_path / "ckpt.pt")
    assert resolve_preset(str(path), None) == resolve_preset(str(path), "tiny") == "tiny"
    with pytest.raises(ValueError, match="--preset vitl disagrees"):
        resolve_preset(str(path), "vitl")
    args = ["pretrain", "--data", str(tmp_path), "--output", str(tmp_path / "o")]
    assert main([*args, "--init", str(path), "--preset", "small"]) == 2
    assert main([*args, "--init", str(tmp_path / "missing.pt")]) == 2
    bad = official_file(tmp_path / "bad.pt", extra={"module.backbone.head.weight": torch.ones(2)})
    assert main([*args, "--init", str(bad)]) == 2  # strict, before Ray starts
    assert "unexpected keys: head.weight" in capsys.readouterr().err


def test_run_folders_and_strict_loading(tmp_path: Path) -> None:
    torch.manual_seed(5)
    encoder, predictor = VisionEncoder(tiny()), Predictor(predictor_presets.tiny(192))
    save_model(encoder, tmp_path / "run" / "final" / "encoder.safetensors")
    save_model(predictor, tmp_path / "run" / "final" / "predictor.safetensors")
    models = load_init(tmp_path / "run")
    assert torch.equal(models.target.norm.weight, encoder.norm.weight)
    assert torch.equal(models.predictor.predictor_proj.weight, predictor.predictor_proj.weight)
    extra = official_file(
        tmp_path / "extra.pt", extra={"module.backbone.head.weight": torch.ones(2)}
    )
    with pytest.raises(CheckpointError, match=r"unexpected keys: head\.weight"):
        load_init(extra)


def test_hugging_face_folder(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.VJEPA2Config(
        crop_size=64,
        frames_per_clip=4,
        hidden_size=96,
        num_attention_heads=2,
        num_hidden_layers=2,
        pred_hidden_size=48,
        pred_num_attention_heads=1,
        pred_num_hidden_layers=1,
        pred_num_mask_tokens=2,
    )
    transformers.VJEPA2Model(config).save_pretrained(tmp_path / "hf")
    models = load_init(tmp_path / "hf")
    assert (models.encoder.config.width, models.predictor.config.width) == (96, 48)
    for ours, theirs in zip(models.target.parameters(), models.encoder.parameters(), strict=True):
        assert torch.equal(ours, theirs)  # the EMA target starts as the encoder
    assert resolve_preset(str(tmp_path / "hf"), None) == "checkpoint"  # no named preset
    job = PretrainJob(
        _config(tmp_path, tmp_path / "hf", preset="checkpoint"), WorkerContext.local()
    )
    assert torch.isfinite(torch.tensor(job.train_step(sample_clips(2), 0)["loss"]))
