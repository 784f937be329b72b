"""VQA model folders: a LoRA adapter saved by align's export loads back (training side and
serving side) and gives the same answers; `vlm.json` records the clip side serving decodes to."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import torch

from modeling.vlm import VideoLanguageModel
from modeling.vlm_checkpoints import ADAPTER_DIR, read_manifest, save_vlm
from modeling.vlm_prompts import build_prompt
from serving.config import VQASettings
from serving.vqa_model import load_vqa
from tasks.vqa.align import AlignConfig, apply_training_mode, clip_side
from tasks.vqa.lm import load_vqa_model
from tests.serving.tiny_vqa import make_vqa_model

QUESTIONS = ["what colour is the square?", "which way does the ball move?"]


def _answers(model: VideoLanguageModel, tokenizer: Any, features: torch.Tensor) -> list[list[int]]:
    visual = model.visual_tokens(features, (2, 2, 2))  # (B, V, Dl)
    prompts = [build_prompt(tokenizer, question) for question in QUESTIONS]
    pad = tokenizer.eos_token_id
    return model.generate(visual, prompts, max_new_tokens=6, eos_token_id=None, pad_token_id=pad)


def test_lora_adapter_round_trip_gives_the_same_answers(tmp_path: Path) -> None:
    folder = make_vqa_model(tmp_path)
    trained = load_vqa_model(str(folder))
    config = AlignConfig("e", "l", "d", "q", "o", lora_rank=4)
    lm = apply_training_mode(trained.model.lm, config)
    torch.manual_seed(1)
    with torch.no_grad():  # a trained adapter: LoRA's B starts at zero, which changes nothing
        for name, parameter in lm.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0.0, 0.5)
    trained.model.lm = lm.eval()
    features = torch.randn(len(QUESTIONS), 8, trained.model.encoder.config.width)  # (B, N, De)
    before = _answers(trained.model, trained.tokenizer, features)
    base = _answers(load_vqa_model(str(folder)).model, trained.tokenizer, features)
    assert before != base, "the adapter must change the answers for this test to mean anything"

    lm.save_pretrained(str(folder / ADAPTER_DIR))  # what align's export writes with --lora
    manifest = dataclasses.replace(read_manifest(folder), lm_weights="lora", lora_rank=4)
    save_vlm(folder, trained.model.projector, manifest)

    reloaded = load_vqa_model(str(folder))
    assert _answers(reloaded.model, reloaded.tokenizer, features) == before
    served = load_vqa(str(folder), VQASettings(), str(tmp_path / "cache"), torch.device("cpu"))
    assert _answers(served.model, served.tokenizer, features) == before  # adapter merged


def test_vlm_json_records_the_clip_side_that_serving_decodes_to(tmp_path: Path) -> None:
    folder = make_vqa_model(tmp_path)
    assert read_manifest(folder).image_size == 64
    served = load_vqa(str(folder), VQASettings(), str(tmp_path / "cache"), torch.device("cpu"))
    assert served.image_size == 64
    override = VQASettings(image_size=96)
    assert (
        load_vqa(str(folder), override, str(tmp_path / "c2"), torch.device("cpu")).image_size == 96
    )


@pytest.mark.parametrize(("grid", "side"), [((4, 4, 4), 64), ((2, 2, 2), 32), ((4, 4, 2), 0)])
def test_align_records_the_side_of_square_clips(grid: tuple[int, int, int], side: int) -> None:
    assert clip_side(grid, 16) == side


def test_an_lm_folder_travels_through_s3_and_a_missing_one_is_named(
    tmp_path: Path, s3_bucket: str
) -> None:
    from tasks.vqa.lm import local_folder, upload_folder

    source = tmp_path / "lm"
    (source / "sub").mkdir(parents=True)
    (source / "config.json").write_text("{}")
    (source / "sub" / "tokenizer.json").write_text("[]")
    uri = upload_folder(source, f"{s3_bucket}/models/lm")
    copy = local_folder(uri, tmp_path / "scratch")
    assert (copy / "config.json").read_text() == "{}"
    assert (copy / "sub" / "tokenizer.json").read_text() == "[]"
    assert local_folder(str(source), tmp_path) == source  # a local folder is its own copy
    with pytest.raises(FileNotFoundError, match="folder not found"):
        local_folder(f"{s3_bucket}/models/none", tmp_path / "scratch2")
    with pytest.raises(FileNotFoundError, match="is a file"):
        local_folder(str(source / "config.json"), tmp_path)


def test_models_loaded_from_several_threads_at_once_all_hold_their_weights(
    tmp_path: Path,
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    # as the demo's two evaluations do: two model folders loaded side by side, in threads
    folders = [str(make_vqa_model(tmp_path / name, seed=n)) for n, name in enumerate("ab")]
    with ThreadPoolExecutor(max_workers=2) as pool:
        models = list(pool.map(lambda n: load_vqa_model(folders[n % 2]).model, range(16)))
    for model in models:  # no module built while another thread's load was under way is empty
        assert not any(p.is_meta for p in model.parameters())
    features = torch.randn(len(QUESTIONS), 8, models[0].encoder.config.width)
    tokenizer = load_vqa_model(folders[0]).tokenizer
    for start in (0, 1):
        first = _answers(models[start], tokenizer, features)
        assert all(_answers(m, tokenizer, features) == first for m in models[start::2])
