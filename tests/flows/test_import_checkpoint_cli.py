"""`vjepa import-checkpoint`: official and HF layouts to our format, locally and on S3."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from flows.cli import main
from modeling.checkpoints import load_encoder, load_predictor, read_state
from modeling.encoder import EncoderConfig, VisionEncoder

CONFIG = EncoderConfig(width=96, depth=2, num_heads=2, mlp_hidden=192)


@pytest.fixture()
def official_pt(tmp_path: Path) -> tuple[Path, VisionEncoder]:
    """An official-layout file: our names equal the official ones, plus the wrapper prefixes."""
    torch.manual_seed(0)
    encoder = VisionEncoder(CONFIG).eval()
    state = {f"module.backbone.{k}": v for k, v in encoder.state_dict().items()}
    path = tmp_path / "official.pt"
    torch.save({"target_encoder": state, "epoch": 1}, path)
    return path, encoder


def last_json(text: str) -> dict[str, object]:
    return json.loads(text.strip().splitlines()[-1])


def test_official_encoder_to_own_file(
    official_pt: tuple[Path, VisionEncoder], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source, encoder = official_pt
    code = main(
        ["import-checkpoint", str(source), str(tmp_path / "out"), "--num-heads", "2", "--json"]
    )
    summary = last_json(capsys.readouterr().out)
    assert code == 0
    assert summary["layout"] == "official" and summary["kind"] == "encoder"
    assert summary["destination"] == str(tmp_path / "out" / "encoder.safetensors")
    kind, config, _ = read_state(tmp_path / "out" / "encoder.safetensors")
    assert (kind, config) == ("encoder", CONFIG.to_dict())
    video = torch.randn(1, 3, 2, 32, 32)
    with torch.no_grad():
        assert torch.equal(
            load_encoder(tmp_path / "out" / "encoder.safetensors")(video), encoder(video)
        )


def test_hf_predictor_to_named_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    transformers = pytest.importorskip("transformers")
    config = transformers.VJEPA2Config(
        crop_size=32,
        frames_per_clip=2,
        hidden_size=96,
        num_attention_heads=2,
        num_hidden_layers=1,
        pred_hidden_size=48,
        pred_num_attention_heads=1,
        pred_num_hidden_layers=1,
        pred_num_mask_tokens=2,
    )
    transformers.VJEPA2Model(config).save_pretrained(tmp_path / "hf")
    target = tmp_path / "p.safetensors"
    assert (
        main(["import-checkpoint", str(tmp_path / "hf"), str(target), "--kind", "predictor"]) == 0
    )
    assert "imported predictor (hf layout, width 48" in capsys.readouterr().out
    predictor = load_predictor(target)
    assert (predictor.config.encoder_width, predictor.config.num_mask_tokens) == (96, 2)


def test_errors_have_exit_codes_and_name_keys(
    official_pt: tuple[Path, VisionEncoder], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["import-checkpoint", str(tmp_path / "missing.pt"), str(tmp_path / "o")]) == 2
    assert "source not found" in capsys.readouterr().err
    source, _ = official_pt
    payload = torch.load(source, weights_only=True)
    del payload["target_encoder"]["module.backbone.norm.bias"]
    torch.save(payload, tmp_path / "broken.pt")
    code = main(
        ["import-checkpoint", str(tmp_path / "broken.pt"), str(tmp_path / "o"), "--num-heads", "2"]
    )
    assert code == 1
    assert "missing keys: norm.bias" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.s3
def test_s3_source_and_destination(
    official_pt: tuple[Path, VisionEncoder], s3_bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from tasks.storage import filesystem

    source, encoder = official_pt
    fs, _ = filesystem(s3_bucket)
    fs.put_file(str(source), f"{s3_bucket}/in/official.pt")
    destination = f"{s3_bucket}/models/enc.safetensors"
    code = main(
        [
            "import-checkpoint",
            f"{s3_bucket}/in/official.pt",
            destination,
            "--num-heads",
            "2",
            "--json",
        ]
    )
    assert code == 0
    assert last_json(capsys.readouterr().out)["destination"] == destination
    local = source.with_name("back.safetensors")
    fs.get_file(destination, str(local))
    assert torch.equal(load_encoder(local).norm.weight, encoder.norm.weight)
