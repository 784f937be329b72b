"""`vjepa serve --vqa-*`: the VQA deployment in the Serve config, and early checks of the folder."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from flows.cli import main
from flows.commands.common import UsageError
from flows.commands.serve import check_vqa_model
from modeling.vlm_checkpoints import MANIFEST, ComponentInfo, VLMManifest
from serving.config import ServingConfig


def test_config_out_carries_the_vqa_deployment(tmp_path: Path) -> None:
    target = tmp_path / "serve.yaml"
    flags = ["--vqa-model", "s3://m/vqa", "--vqa-replicas", "2", "--vqa-max-batch-size", "8"]
    assert (
        main(["serve", "--checkpoint", "arm=s3://m/arm", *flags, "--config-out", str(target)]) == 0
    )
    application = yaml.safe_load(target.read_text())["applications"][0]
    config = ServingConfig.model_validate(application["args"])
    assert config.vqa.model == "s3://m/vqa" and config.vqa.batching.max_batch_size == 8
    vqa = next(d for d in application["deployments"] if d["name"] == "VQA")
    assert vqa["num_replicas"] == 2 and vqa["max_ongoing_requests"] >= 16


def test_without_vqa_model_there_is_no_vqa_deployment(tmp_path: Path) -> None:
    target = tmp_path / "serve.yaml"
    assert main(["serve", "--checkpoint", "arm=s3://m/arm", "--config-out", str(target)]) == 0
    deployments = yaml.safe_load(target.read_text())["applications"][0]["deployments"]
    assert "VQA" not in {d["name"] for d in deployments}


def manifest_for(lm: Path) -> str:
    component = ComponentInfo(str(lm), "0" * 16)
    return VLMManifest(encoder=component, lm=component, projector_kind="mlp").to_json()


def test_vqa_folder_checks_name_what_to_fix(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=f"no {MANIFEST}"):
        check_vqa_model(str(tmp_path))
    (tmp_path / MANIFEST).write_text("{not json")
    with pytest.raises(UsageError, match="invalid"):
        check_vqa_model(str(tmp_path))
    lm = tmp_path / "lm"
    lm.mkdir()
    (lm / "config.json").write_text("{}")
    (tmp_path / MANIFEST).write_text(manifest_for(lm))
    with pytest.raises(UsageError, match="no tokenizer"):
        check_vqa_model(str(tmp_path))
    (lm / "tokenizer.json").write_text("{}")
    check_vqa_model(str(tmp_path))
