"""Pretraining and probing flows end to end: real curated clips, Ray Train, Prefect, S3."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest
import torch

from flows.pretrain import pretrain_flow
from flows.probe import probe_flow
from modeling.checkpoints import load_encoder, load_probe
from modeling.encoder import VisionEncoder
from tasks import storage
from tasks.training.checkpoints import CheckpointStore
from tasks.training.launch import ExistingRunError, ScaleConfig
from tasks.training.pretrain import PretrainConfig
from tasks.training.probe import ProbeConfig
from tasks.training.summaries import PretrainSummary
from tests.ray_workers import train_worker_pids

pytestmark = [pytest.mark.ray]
SCALE = ScaleConfig(num_workers=1, max_failures=2)


def _pretrain(data: str, output: str, steps: int, resume: bool = False) -> PretrainSummary:
    config = PretrainConfig(
        data=data,
        output=output,
        steps=steps,
        batch_size=4,
        checkpoint_every=3,
        log_every=3,
        resume=resume,
    )
    return pretrain_flow(config, SCALE)


def test_pretrain_resume_and_probe(curated_dir: Path, sample_dir: Path, tmp_path: Path) -> None:
    output = str(tmp_path / "pretrain")
    summary = _pretrain(str(curated_dir), output, steps=6)
    assert summary.steps == 6
    with pytest.raises(ExistingRunError, match="--resume"):
        _pretrain(str(curated_dir), output, steps=9)
    resumed = _pretrain(str(curated_dir), output, steps=9, resume=True)
    store = CheckpointStore(output)
    assert [row["step"] for row in store.metrics()] == list(range(1, 10))
    assert resumed.steps == 9
    encoder = load_encoder(resumed.encoder_checkpoint)
    assert encoder(torch.zeros(1, 3, 4, 64, 64)).shape == (1, 2 * 4 * 4, 192)
    assert Path(str(resumed.loss_curve)).stat().st_size > 1000

    probe = probe_flow(
        ProbeConfig(
            encoder=resumed.encoder_checkpoint,
            data=str(curated_dir),
            labels=str(sample_dir / "labels.parquet"),
            output=str(tmp_path / "probe"),
            steps=6,
            learning_rates=(1e-3, 3e-3),
            heads_per_lr=2,
        ),
        SCALE,
    )
    assert 0.0 <= probe.accuracy <= 1.0 and probe.best_lr in (1e-3, 3e-3)
    heads = probe.head_accuracies[str(probe.best_lr)]
    assert len(heads) == 2 and probe.accuracy == pytest.approx(sum(heads) / 2)
    assert probe.accuracy_std == pytest.approx(abs(heads[0] - heads[1]) / 2)
    assert probe.heldout_clips > 0 and probe.train_clips > probe.heldout_clips
    logits = load_probe(probe.probe_checkpoint)(encoder(torch.zeros(1, 3, 4, 64, 64)))
    assert logits.shape == (1, 4)


def test_probe_rejects_labels_without_source(curated_dir: Path, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    labels = tmp_path / "labels.parquet"
    pq.write_table(pa.table({"video": ["a"], "label": [0]}), labels)
    config = ProbeConfig(
        encoder="random:tiny", data=str(curated_dir), labels=str(labels), output=str(tmp_path / "p")
    )
    with pytest.raises(ValueError, match="source"):
        probe_flow(config, SCALE)


def test_pretrain_on_s3_survives_a_killed_worker(curated_dir: Path, s3_bucket: str) -> None:
    data, output = f"{s3_bucket}/curated", f"{s3_bucket}/pretrain"
    fs, _ = storage.filesystem(data)
    fs.put(str(curated_dir), data.removeprefix("s3://"), recursive=True)
    store = CheckpointStore(output)
    before = train_worker_pids()
    result: dict = {}
    runner = threading.Thread(
        target=lambda: result.update(_pretrain(data, output, steps=30).as_dict())
    )
    runner.start()
    deadline = time.monotonic() + 300
    while (store.latest_step() or 0) < 6 and time.monotonic() < deadline:
        time.sleep(0.2)
    victims = train_worker_pids() - before
    assert len(victims) == 1, f"expected one new training worker, found {victims}"
    os.kill(victims.pop(), signal.SIGKILL)
    runner.join(timeout=600)
    assert result.get("steps") == 30, "the job did not finish after the worker was killed"
    assert [row["step"] for row in store.metrics()] == list(range(1, 31))
    assert load_encoder_from(result["encoder_checkpoint"]).config.width == 192


def load_encoder_from(uri: str) -> VisionEncoder:
    import tempfile

    from tasks.training.outputs import fetch_file

    with tempfile.TemporaryDirectory() as scratch:
        return load_encoder(fetch_file(uri, scratch))
