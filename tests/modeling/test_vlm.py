"""The video-language model: projectors, answer-only loss, LM-driven generation, checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from modeling.checkpoints import CheckpointError
from modeling.encoder import EncoderConfig, VisionEncoder
from modeling.vlm import IGNORE_INDEX, VideoLanguageModel, VisualProjector, attentive, mlp
from modeling.vlm_checkpoints import (
    ComponentInfo,
    VLMManifest,
    check_components,
    fingerprint,
    load_lm_weights,
    load_projector,
    read_manifest,
    save_vlm,
)
from modeling.vlm_prompts import (
    VISUAL_MARK,
    QuestionError,
    answer_ids,
    build_prompt,
    check_question,
    normalise_answer,
)

TEXTS = ["what shape is it? circle", "which way does it move? left right", "colour red blue"]


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerFast:
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<pad>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train_from_iterator(TEXTS * 5, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe, pad_token="<pad>", bos_token="<s>", eos_token="</s>"
    )


def tiny_lm(tokenizer: PreTrainedTokenizerFast, seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        initializer_range=0.5,  # large weights: greedy outputs differ between inputs
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return LlamaForCausalLM(config).eval()


def tiny_encoder(seed: int = 0) -> VisionEncoder:
    torch.manual_seed(seed)
    return VisionEncoder(EncoderConfig(width=64, depth=1, num_heads=1, mlp_hidden=128))


@pytest.mark.parametrize("kind", ["mlp", "attentive"])
def test_projector_shapes(kind: str) -> None:
    config = mlp(64, 96, pool=2) if kind == "mlp" else attentive(64, 96, num_tokens=2 * 4 * 4)
    projector = VisualProjector(config)
    tokens = torch.randn(3, 2 * 4 * 4, 64)
    out = projector(tokens, (2, 4, 4))
    assert out.shape == (3, config.num_visual_tokens((2, 4, 4)), 96)
    assert out.shape[1] == 8  # both cut 32 tokens by 4


def test_mlp_projector_pools_each_frame_step_separately() -> None:
    projector = VisualProjector(mlp(8, 8, pool=2))
    tokens = torch.randn(1, 2 * 2 * 2, 8)
    out = projector(tokens, (2, 2, 2))  # (1, 2, 8): one pooled token per frame step
    expected = projector.mlp(tokens).reshape(1, 2, 4, 8).mean(dim=2)
    torch.testing.assert_close(out, expected)


def test_temporal_kernel_mixes_neighbouring_frame_steps_of_one_position_only() -> None:
    torch.manual_seed(0)
    projector = VisualProjector(mlp(8, 8, pool=1, temporal_kernel=3)).eval()
    grid = (4, 2, 2)  # tokens ordered (t, h, w): token 4 * t + p
    tokens = torch.randn(1, 16, 8)
    changed = tokens.clone()
    changed[0, 4 * 1 + 2] += 5.0  # step 1, position 2
    moved = (projector(changed, grid) - projector(tokens, grid)).abs().sum(-1)[0]  # (16,)
    touched = {int(i) for i in torch.nonzero(moved > 1e-6)}
    assert touched == {4 * t + 2 for t in (0, 1, 2)}  # steps 0-2 at that position, nothing else


def test_max_pool_mode_keeps_the_largest_value_of_each_window() -> None:
    torch.manual_seed(0)
    projector = VisualProjector(mlp(8, 8, pool=2, pool_mode="max"))
    tokens = torch.randn(2, 2 * 2 * 2, 8)
    out = projector(tokens, (2, 2, 2))  # (2, 2, 8): one token per frame step
    expected = projector.mlp(tokens).reshape(2, 2, 4, 8).amax(dim=2)
    torch.testing.assert_close(out, expected)


def test_motion_tokens_follow_the_pooled_ones_one_per_frame_step() -> None:
    torch.manual_seed(0)
    config = mlp(8, 8, pool=2, motion_kernel=3)
    projector = VisualProjector(config).eval()
    grid = (4, 2, 2)
    tokens = torch.randn(2, 16, 8)
    out = projector(tokens, grid)
    assert out.shape == (2, config.num_visual_tokens(grid), 8) == (2, 4 + 4, 8)
    plain = VisualProjector(mlp(8, 8, pool=2))
    plain.load_state_dict(projector.state_dict(), strict=False)  # the same pooled branch
    torch.testing.assert_close(out[:, :4], plain(tokens, grid))
    moved = (
        tokens.reshape(2, 4, 4, 8).flip(2).reshape(2, 16, 8)
    )  # the object elsewhere, same motion
    torch.testing.assert_close(projector(moved, grid)[:, 4:], out[:, 4:])
    changed = tokens.clone()
    changed[:, 0] += 5.0  # step 0 only: reaches the motion tokens of steps 0 and 1, not 2 or 3
    delta = (projector(changed, grid)[:, 4:] - out[:, 4:]).abs().sum((0, 2))
    assert bool((delta[:2] > 1e-6).all()) and bool((delta[2:] < 1e-6).all())


def test_projector_options_are_checked_and_saved(
    tmp_path: Path, tokenizer: PreTrainedTokenizerFast
) -> None:
    with pytest.raises(ValueError, match="odd"):
        mlp(8, 8, temporal_kernel=2)
    with pytest.raises(ValueError, match="pool mode"):
        mlp(8, 8, pool_mode="median")
    with pytest.raises(ValueError, match="motion_kernel"):
        mlp(8, 8, motion_kernel=2)
    projector = VisualProjector(mlp(64, 64, temporal_kernel=3, pool_mode="max", motion_kernel=3))
    encoder, lm = tiny_encoder(), tiny_lm(tokenizer)
    save_vlm(tmp_path, projector, manifest_for(encoder, lm))
    loaded = load_projector(tmp_path)
    assert loaded.config == projector.config
    tokens = torch.randn(1, 2 * 4 * 4, 64)
    torch.testing.assert_close(loaded(tokens, (2, 4, 4)), projector(tokens, (2, 4, 4)))


def test_projector_rejects_tokens_off_its_grid() -> None:
    with pytest.raises(ValueError, match="grid"):
        VisualProjector(mlp(8, 8))(torch.randn(1, 7, 8), (2, 2, 2))


def test_loss_covers_answer_tokens_only_and_trains_projector_not_encoder(
    tokenizer: PreTrainedTokenizerFast,
) -> None:
    encoder = tiny_encoder()
    model = VideoLanguageModel(encoder, VisualProjector(mlp(64, 64)), tiny_lm(tokenizer))
    features, grid = model.encode(torch.randn(2, 3, 4, 64, 64))
    visual = model.visual_tokens(features, grid)
    prompts = [build_prompt(tokenizer, "what shape is it?"), build_prompt(tokenizer, "colour?")]
    answers = [answer_ids(tokenizer, "circle"), answer_ids(tokenizer, "red blue")]
    batch = model.embed_batch(visual, prompts, answers)
    for row, answer in enumerate(answers):
        labelled = batch.labels[row][batch.labels[row] != IGNORE_INDEX].tolist()
        assert labelled == list(answer)
    model.loss(visual, prompts, answers).backward()
    assert all(p.grad is None for p in encoder.parameters())
    assert all(p.grad is not None for p in model.projector.parameters())


def test_blind_model_has_no_visual_tokens(tokenizer: PreTrainedTokenizerFast) -> None:
    projector = VisualProjector(mlp(64, 64))
    lm = tiny_lm(tokenizer)
    visual = torch.randn(1, 8, 64)
    prompts = [build_prompt(tokenizer, "what shape is it?")]
    seeing = VideoLanguageModel(tiny_encoder(), projector, lm).embed_batch(visual, prompts)
    blind = VideoLanguageModel(tiny_encoder(), projector, lm, blind=True)
    assert blind.embed_batch(visual, prompts).inputs_embeds.shape[1] == (
        seeing.inputs_embeds.shape[1] - 8
    )


def test_batched_generation_left_pads_and_matches_one_by_one(
    tokenizer: PreTrainedTokenizerFast,
) -> None:
    model = VideoLanguageModel(tiny_encoder(), VisualProjector(mlp(64, 64)), tiny_lm(tokenizer))
    visual = torch.randn(3, 8, 64)
    questions = ["what shape is it?", "which way does it move, left or right?", "colour?"]
    prompts = [build_prompt(tokenizer, question) for question in questions]
    batched = model.generate(visual, prompts, max_new_tokens=6, pad_token_id=0)
    single = [
        model.generate(visual[i : i + 1], prompts[i : i + 1], max_new_tokens=6, pad_token_id=0)[0]
        for i in range(3)
    ]
    assert batched == single
    assert all(len(ids) == 6 for ids in batched)
    assert len({tuple(ids) for ids in batched}) > 1  # the visual tokens change the answer


def test_question_checks() -> None:
    assert check_question("  what shape?  ") == "what shape?"
    assert check_question(b"quelle forme ?") == "quelle forme ?"
    for bad, message in (
        ("", "empty"),
        ("   ", "empty"),
        ("x" * 600, "limit"),
        (b"\xff\xfe what", "UTF-8"),
        (VISUAL_MARK + "what", "must not contain"),
    ):
        with pytest.raises(QuestionError, match=message):
            check_question(bad)


def test_prompt_without_template_uses_bos_and_question(tokenizer: PreTrainedTokenizerFast) -> None:
    parts = build_prompt(tokenizer, "what shape is it?")
    assert parts.prefix_ids == (tokenizer.bos_token_id,)
    assert tokenizer.decode(list(parts.suffix_ids)) == "Question: what shape is it?\nAnswer:"
    assert answer_ids(tokenizer, "circle")[-1] == tokenizer.eos_token_id


def test_prompt_with_chat_template_puts_visual_tokens_inside_user_turn(
    tokenizer: PreTrainedTokenizerFast,
) -> None:
    templated = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer.backend_tokenizer, bos_token="<s>", eos_token="</s>"
    )
    templated.chat_template = (
        "{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}assistant:{% endif %}"
    )
    parts = build_prompt(templated, "what shape?")
    assert templated.decode(list(parts.prefix_ids)) == "<s>user: "
    assert templated.decode(list(parts.suffix_ids)) == "what shape?\nassistant:"


def test_normalised_answers() -> None:
    assert normalise_answer("  The Circle. ") == "circle"
    assert normalise_answer("LEFT!") == normalise_answer("left")


def manifest_for(encoder: VisionEncoder, lm: LlamaForCausalLM, **options: object) -> VLMManifest:
    return VLMManifest(
        encoder=ComponentInfo("enc.safetensors", fingerprint(encoder)),
        lm=ComponentInfo("lm-dir", fingerprint(lm)),
        projector_kind="mlp",
        **options,  # type: ignore[arg-type]
    )


def test_checkpoint_round_trip_and_component_checks(
    tmp_path: Path, tokenizer: PreTrainedTokenizerFast
) -> None:
    encoder, lm = tiny_encoder(), tiny_lm(tokenizer)
    projector = VisualProjector(mlp(64, 64))
    save_vlm(tmp_path, projector, manifest_for(encoder, lm, lm_weights="full"), lm.state_dict())
    manifest = read_manifest(tmp_path)
    check_components(manifest, encoder, lm)
    loaded = load_projector(tmp_path)
    for key, value in projector.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value)
    other_lm = tiny_lm(tokenizer, seed=1)
    load_lm_weights(tmp_path, other_lm)
    assert fingerprint(other_lm) == fingerprint(lm)
    with pytest.raises(CheckpointError, match="trained for the encoder"):
        check_components(manifest, tiny_encoder(seed=1), lm)
    with pytest.raises(CheckpointError, match="trained for the LM"):
        check_components(manifest, encoder, tiny_lm(tokenizer, seed=2))


def test_folder_without_manifest_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"no vlm\.json"):
        read_manifest(tmp_path)


def test_feature_statistics_standardise_inputs_and_travel_with_the_checkpoint(
    tmp_path: Path, tokenizer: PreTrainedTokenizerFast
) -> None:
    features = 3.0 + 0.5 * torch.randn(20, 8, 64)
    projector = VisualProjector(mlp(64, 64, pool=1))
    before = projector(features, (1, 2, 4))
    projector.fit_feature_statistics(features)
    standard = (features - features.reshape(-1, 64).mean(0)) / (
        features.reshape(-1, 64).std(0) + 1e-3
    )
    torch.testing.assert_close(projector(features, (1, 2, 4)), projector.mlp(standard))
    assert not torch.allclose(before, projector(features, (1, 2, 4)))
    encoder, lm = tiny_encoder(), tiny_lm(tokenizer)
    save_vlm(tmp_path, projector, manifest_for(encoder, lm))
    torch.testing.assert_close(load_projector(tmp_path).feature_mean, projector.feature_mean)
