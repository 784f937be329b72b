"""FSDP (`--strategy fsdp`): the wrapping plan, full state round trips, a 2-worker pretraining run."""

from __future__ import annotations

import argparse
import copy
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import torch.distributed as dist
from torch.distributed.tensor import DTensor

from flows.commands.common import UsageError, scale_config
from modeling.checkpoints import load_encoder, load_predictor
from modeling.encoder import VisionEncoder, tiny
from modeling.jepa import ema_update
from modeling.predictor import Predictor
from modeling.predictor import tiny as predictor_tiny
from tasks.training.checkpoints import CheckpointStore
from tasks.training.job import (
    WorkerContext,
    full_state,
    gather_generator_states,
    load_optimizer_state,
    restore_generator,
    scalar,
    shard_model,
    shard_plan,
)
from tasks.training.launch import ScaleConfig, check_strategy
from tasks.training.pretrain import PretrainConfig, PretrainJob, run_pretrain


@pytest.fixture()
def single_rank_group(tmp_path: Path) -> Iterator[None]:
    """A one-rank gloo process group: FSDP2 shards over it exactly as over many."""
    dist.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1
    )
    yield
    dist.destroy_process_group()


def test_plan_is_every_block_then_the_root() -> None:
    encoder = VisionEncoder(tiny())
    plan = shard_plan(encoder)
    assert plan[-1] is encoder
    assert {id(unit) for unit in plan[:-1]} == {id(block) for block in encoder.blocks}
    predictor = Predictor(predictor_tiny(192))
    assert len(shard_plan(predictor)) == len(predictor.predictor_blocks) + 1


def test_sharded_state_round_trips_and_ema_works_on_shards(single_rank_group: None) -> None:
    torch.manual_seed(0)
    encoder = VisionEncoder(tiny())
    original = {name: value.clone() for name, value in encoder.state_dict().items()}
    target = copy.deepcopy(encoder).requires_grad_(False)
    shard_model(encoder, torch.device("cpu"))
    shard_model(target, torch.device("cpu"), frozen=True)
    assert all(isinstance(p, DTensor) for p in encoder.parameters())

    optimizer = torch.optim.AdamW(encoder.parameters(), lr=1e-2)
    video = torch.randn(2, 3, 4, 32, 32)  # (B, C, T, H, W)
    with torch.no_grad():
        wanted = target(video)  # (B, N, D)
    (encoder(video) - 0.5 * wanted).abs().mean().backward()
    norm = torch.nn.utils.clip_grad_norm_(list(encoder.parameters()), 1.0)
    assert scalar(norm) > 0
    optimizer.step()
    ema_update(target, encoder, 0.5)  # the frozen root resharded after its forward

    state = full_state({"encoder": encoder.state_dict(), "optimizer": optimizer.state_dict()})
    assert not any(isinstance(v, DTensor) for v in state["encoder"].values())
    moved = state["encoder"]["blocks.0.attn.qkv.weight"]
    assert moved.shape == original["blocks.0.attn.qkv.weight"].shape
    assert not torch.equal(moved, original["blocks.0.attn.qkv.weight"])
    halfway = full_state(target.state_dict())["blocks.0.attn.qkv.weight"]
    torch.testing.assert_close(halfway, 0.5 * (original["blocks.0.attn.qkv.weight"] + moved))

    fresh = shard_model(VisionEncoder(tiny()), torch.device("cpu"))
    fresh.load_state_dict(state["encoder"])  # full tensors into a sharded module
    fresh_optimizer = torch.optim.AdamW(fresh.parameters(), lr=1e-2)
    load_optimizer_state(fresh_optimizer, state["optimizer"])
    again = full_state({"encoder": fresh.state_dict(), "optimizer": fresh_optimizer.state_dict()})
    for name, value in state["encoder"].items():
        torch.testing.assert_close(again["encoder"][name], value)
    for index, slots in state["optimizer"]["state"].items():
        torch.testing.assert_close(again["optimizer"]["state"][index]["exp_avg"], slots["exp_avg"])
    fresh_optimizer.step()  # moments are shards again, so a step runs


def test_strategy_names_are_checked() -> None:
    with pytest.raises(ValueError, match="strategy"):
        ScaleConfig(strategy="zero3")
    with pytest.raises(ValueError, match="strategy"):
        WorkerContext(strategy="tp")
    with pytest.raises(ValueError, match="use --strategy ddp"):
        check_strategy("posttrain", "fsdp")
    check_strategy("pretrain", "fsdp")
    flags = {"workers": 2, "gpu": False, "cpus_per_worker": 1.0, "max_failures": 0}
    with pytest.raises(UsageError, match="fsdp"):
        scale_config(argparse.Namespace(command="probe", strategy="fsdp", **flags))
    scale = scale_config(argparse.Namespace(command="pretrain", strategy="fsdp", **flags))
    assert scale.strategy == "fsdp" and scale.num_workers == 2


def write_curated(folder: Path, num_clips: int = 8, shape: tuple[int, ...] = (4, 64, 64, 3)) -> str:
    """A minimal curated dataset (manifest + one shard) of random uint8 clips."""
    rng = np.random.default_rng(0)
    clips = rng.integers(0, 256, size=(num_clips, *shape), dtype=np.uint8)  # (N, T, H, W, C)
    (folder / "shards").mkdir(parents=True)
    table = pa.table(
        {
            "clip_id": [f"clip-{i}" for i in range(num_clips)],
            "shape": [list(shape)] * num_clips,
            "frames": [clip.tobytes() for clip in clips],
        }
    )
    pq.write_table(table, folder / "shards" / "shard-00000.parquet")
    manifest = {
        "shards": [{"path": "shards/shard-00000.parquet", "num_rows": num_clips}],
        "clip": {"shape": list(shape)},
        "counts": {"num_clips": num_clips},
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return str(folder)


@pytest.mark.slow  # ~110 s on 2 cores; the sharding itself is covered by the tests above
@pytest.mark.ray
def test_fsdp_pretrain_on_two_workers_exports_and_resumes(
    ray_cluster: None, tmp_path: Path
) -> None:
    data = write_curated(tmp_path / "curated")
    output = str(tmp_path / "run")
    scale = ScaleConfig(num_workers=2, strategy="fsdp", max_failures=0)

    def config(steps: int, resume: bool) -> PretrainConfig:
        return PretrainConfig(
            data=data, output=output, steps=steps, batch_size=2, checkpoint_every=2,
            log_every=1, resume=resume,
        )  # fmt: skip

    first = run_pretrain(config(2, False), scale)
    assert first.steps == 2
    summary = run_pretrain(config(4, True), scale)
    store = CheckpointStore(output)
    rows = store.metrics()
    assert [row["step"] for row in rows] == [1, 2, 3, 4]
    assert all(np.isfinite(row["loss"]) and row["grad_norm"] > 0 for row in rows)

    encoder = load_encoder(summary.encoder_checkpoint)  # full shapes: the shards were gathered
    saved = store.load(4)["job"]
    # each rank's own random stream is saved, so a resume does not give every rank rank 0's
    generators = saved["generators"]
    assert len(generators) == 2 and not torch.equal(generators[0], generators[1])
    for name, value in encoder.state_dict().items():
        torch.testing.assert_close(value, saved["target"][name])
    predictor = load_predictor(summary.predictor_checkpoint)
    for name, value in predictor.state_dict().items():
        torch.testing.assert_close(value, saved["predictor"][name])
    initial = PretrainJob(config(4, False), WorkerContext()).target.state_dict()
    assert not torch.equal(
        initial["blocks.0.attn.qkv.weight"], saved["target"]["blocks.0.attn.qkv.weight"]
    )


def test_each_rank_gets_its_own_generator_back() -> None:
    def fresh(rank: int) -> torch.Generator:
        return torch.Generator().manual_seed(1000 * rank)

    saved = [fresh(0), fresh(1)]
    for generator in saved:
        torch.rand(3, generator=generator)  # advance both streams
    state = {
        "generator": saved[0].get_state(),
        "generators": [g.get_state() for g in saved],
    }
    assert gather_generator_states(saved[1])[0].equal(saved[1].get_state())  # no process group
    for rank in (0, 1):
        restored = fresh(rank)
        restore_generator(restored, state, rank)
        assert torch.equal(restored.get_state(), saved[rank].get_state())
    # an old checkpoint (rank 0's state only): rank 1 keeps its own seed, never rank 0's stream
    old = {"generator": saved[0].get_state()}
    other = fresh(1)
    restore_generator(other, old, 1)
    assert torch.equal(other.get_state(), fresh(1).get_state())
