"""Generic checkpoint helpers: prefixes, renames, qkv fusion, strict loading, own format."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from torch import nn

from modeling.checkpoints import (
    CheckpointError,
    detect_layout,
    fuse_qkv,
    is_own_format,
    load_encoder,
    load_model,
    load_strict,
    read_state,
    read_torch_file,
    rename_keys,
    save_model,
    save_state,
    select_prefix,
    strip_prefixes,
)
from modeling.encoder import EncoderConfig, VisionEncoder
from modeling.predictor import Predictor
from modeling.predictor import tiny as predictor_tiny
from modeling.probe import AttentiveProbe
from modeling.probe import tiny as probe_tiny


def test_strip_prefixes_removes_any_run_of_wrappers() -> None:
    state = {"module.backbone.blocks.0.x": torch.zeros(1), "norm.weight": torch.ones(1)}
    assert set(strip_prefixes(state)) == {"blocks.0.x", "norm.weight"}


def test_strip_prefixes_collision_is_an_error() -> None:
    with pytest.raises(CheckpointError, match=r"norm\.weight"):
        strip_prefixes({"module.norm.weight": torch.zeros(1), "norm.weight": torch.zeros(1)})


def test_rename_keys_applies_rules_in_order() -> None:
    state = {"encoder.layer.3.attention.proj.weight": torch.zeros(1)}
    rules = [(r"^encoder\.layer\.", "blocks."), (r"\.attention\.", ".attn.")]
    assert list(rename_keys(state, rules)) == ["blocks.3.attn.proj.weight"]


def test_fuse_qkv_concatenates_in_order() -> None:
    state = {
        "b.0.query.weight": torch.full((2, 4), 1.0),
        "b.0.key.weight": torch.full((2, 4), 2.0),
        "b.0.value.weight": torch.full((2, 4), 3.0),
        "b.0.query.bias": torch.zeros(2),
        "b.0.key.bias": torch.zeros(2),
        "b.0.value.bias": torch.zeros(2),
        "other": torch.zeros(1),
    }
    fused = fuse_qkv(state, ("query.", "key.", "value."), "qkv.")
    assert set(fused) == {"b.0.qkv.weight", "b.0.qkv.bias", "other"}
    assert fused["b.0.qkv.weight"][:, 0].tolist() == [1, 1, 2, 2, 3, 3]


def test_select_prefix() -> None:
    state = {"encoder.a": torch.zeros(1), "predictor.b": torch.zeros(1)}
    assert list(select_prefix(state, "encoder.")) == ["a"]


def test_load_strict_names_missing_unexpected_and_mismatched_keys() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4))
    state = dict(model.state_dict())
    del state["1.bias"]
    state["2.weight"] = torch.zeros(1)
    state["0.weight"] = torch.zeros(5, 3)
    with pytest.raises(CheckpointError) as info:
        load_strict(model, state, "toy")
    message = str(info.value)
    assert "toy" in message
    assert "missing keys: 1.bias" in message
    assert "unexpected keys: 2.weight" in message
    assert "0.weight (checkpoint (5, 3), model (4, 3))" in message


def test_load_strict_copies_values() -> None:
    source, target = nn.Linear(3, 4), nn.Linear(3, 4)
    load_strict(target, source.state_dict())
    assert torch.equal(target.weight, source.weight)


def test_own_format_round_trip(tmp_path: Path) -> None:
    state = {"w": torch.arange(6.0).reshape(2, 3), "b": torch.ones(2)}
    path = save_state(tmp_path / "sub" / "m.safetensors", "encoder", {"width": 3}, state)
    assert is_own_format(path)
    kind, config, loaded = read_state(path)
    assert (kind, config) == ("encoder", {"width": 3})
    assert torch.equal(loaded["w"], state["w"])


def test_foreign_safetensors_is_not_own_format(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    path = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(1)}, str(path))
    assert not is_own_format(path)
    with pytest.raises(CheckpointError, match="metadata"):
        read_state(path)


class Payload:
    """An arbitrary object: weights_only loading must refuse to unpickle it."""


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_read_torch_file_refuses_arbitrary_pickles(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    with path.open("wb") as handle:
        pickle.dump({"encoder": Payload()}, handle)
    with pytest.raises(CheckpointError, match="weights_only"):
        read_torch_file(path)


def test_read_torch_file_reads_plain_state(tmp_path: Path) -> None:
    path = tmp_path / "ok.pt"
    torch.save({"encoder": {"w": torch.ones(2)}, "epoch": 3}, path)
    assert read_torch_file(path)["epoch"] == 3


@pytest.mark.parametrize("kind", ["encoder", "predictor", "probe"])
def test_save_model_round_trips_every_kind(kind: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    encoder = VisionEncoder(EncoderConfig(width=96, depth=1, num_heads=2, mlp_hidden=128))
    models: dict[str, nn.Module] = {
        "encoder": encoder,
        "predictor": Predictor(predictor_tiny(encoder_width=96)),
        "probe": AttentiveProbe(probe_tiny(width=96, num_classes=4)),
    }
    model = models[kind]
    path = save_model(model, tmp_path / f"{kind}.safetensors")
    assert detect_layout(path) == "own"
    loaded = load_model(path, kind)
    assert type(loaded) is type(model)
    assert getattr(loaded, "config") == getattr(model, "config")  # noqa: B009
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    other = "probe" if kind != "probe" else "encoder"
    with pytest.raises(CheckpointError, match=f"holds a {kind}, not a {other}"):
        load_model(path, other)


def test_own_encoder_loads_with_load_encoder_and_encodes(tmp_path: Path) -> None:
    encoder = VisionEncoder(EncoderConfig(width=96, depth=1, num_heads=2, mlp_hidden=128)).eval()
    path = save_model(encoder, tmp_path / "e.safetensors")
    video = torch.randn(1, 3, 2, 32, 32)
    with torch.no_grad():
        assert torch.equal(load_encoder(path)(video), encoder(video))


def test_detect_layout_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        detect_layout(tmp_path / "nope.pt")
    with pytest.raises(CheckpointError, match=r"config\.json"):
        detect_layout(tmp_path)
    with pytest.raises(ValueError, match="kind"):
        load_model(tmp_path, "decoder")


def test_broken_hf_directory_is_a_checkpoint_error(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"model_type": "vjepa2"}')
    (tmp_path / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="unreadable weights"):
        load_encoder(tmp_path)
    (tmp_path / "config.json").write_text("{oops")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_encoder(tmp_path)
    (tmp_path / "config.json").write_text('{"model_type": "vit"}')
    with pytest.raises(CheckpointError, match="not 'vjepa2'"):
        load_encoder(tmp_path)
