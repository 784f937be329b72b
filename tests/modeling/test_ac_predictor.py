"""V-JEPA 2-AC predictor: block causality, official attention layout, rollout, losses, checkpoints."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from modeling.ac_checkpoints import infer_ac_config, load_ac_predictor, save_ac_predictor
from modeling.ac_predictor import (
    ACPredictor,
    ACPredictorConfig,
    ac_losses,
    ac_tiny,
    ac_vitg,
    additive_state_update,
    scaled_state_update,
)
from modeling.checkpoints import CheckpointError
from modeling.rope import axis_dim, rotate_axis

STEPS, ACTION_DIM = 4, 2


@pytest.fixture(scope="module")
def model() -> ACPredictor:
    torch.manual_seed(0)
    return ACPredictor(ac_tiny(action_dim=ACTION_DIM, state_dim=ACTION_DIM)).eval()


def _inputs(config: ACPredictorConfig, batch: int = 2, steps: int = STEPS, seed: int = 1):  # type: ignore[no-untyped-def]
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(
        batch, steps * config.tokens_per_frame, config.embed_dim, generator=generator
    )
    actions = torch.randn(batch, steps, config.action_dim, generator=generator)
    states = torch.randn(batch, steps, config.state_dim, generator=generator)
    return features, actions, states


def test_presets_follow_the_paper() -> None:
    paper = ac_vitg()
    assert (paper.depth, paper.width, paper.num_heads) == (24, 1024, 16)
    assert (paper.action_dim, paper.state_dim, paper.embed_dim) == (7, 7, 1408)
    tiny = ac_tiny(action_dim=2, state_dim=2)
    assert (tiny.action_dim, tiny.state_dim) == (2, 2)
    head_dim = tiny.width // tiny.num_heads
    assert head_dim - 3 * axis_dim(head_dim) > 0  # the tiny preset leaves unrotated dims
    with pytest.raises(ValueError, match="divisible"):
        ac_tiny(num_heads=5)


@pytest.mark.parametrize("perturbed", ["features", "actions", "states"])
def test_future_inputs_cannot_change_past_outputs(model: ACPredictor, perturbed: str) -> None:
    config = model.config
    frames = config.tokens_per_frame
    inputs = dict(zip(["features", "actions", "states"], _inputs(config), strict=True))
    with torch.no_grad():
        reference = model(**inputs)  # (B, T*N, D)
        changed = dict(inputs)
        future = 2
        tensor = inputs[perturbed].clone()
        if perturbed == "features":
            tensor[:, future * frames : (future + 1) * frames] += 1.0
        else:
            tensor[:, future] += 1.0
        changed[perturbed] = tensor
        output = model(**changed)
    past, later = slice(0, future * frames), slice(future * frames, None)
    assert torch.equal(output[:, past], reference[:, past])
    assert (output[:, later] - reference[:, later]).abs().amax() > 1e-4


def _official_attention(attn, x: Tensor, steps: int, config: ACPredictorConfig) -> Tensor:  # type: ignore[no-untyped-def]
    """Transcription of the official `ACRoPEAttention.forward` (action_tokens=cond tokens)."""
    batch, _, width = x.shape
    heads, head_dim = attn.num_heads, attn.head_dim
    rot = axis_dim(head_dim)
    height, wide, cond = config.grid_height, config.grid_width, config.cond_tokens
    ids = torch.arange(steps * height * wide)
    d_pos = ids // (height * wide)
    h_pos = (ids % (height * wide)) // wide * (config.rope_grid_size / height)
    w_pos = (ids % wide) * (config.rope_grid_size / wide)
    x = x.view(batch, steps, cond + height * wide, width)
    action_q, action_k, action_v = [], [], []
    for i in range(cond):
        qkv = attn.qkv(x[:, :, i]).unflatten(-1, (3, heads, -1)).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # (B, h, T, hd)
        t = torch.arange(steps).float()
        q = torch.cat([rotate_axis(q[..., :rot], t), q[..., rot:]], dim=-1)
        k = torch.cat([rotate_axis(k[..., :rot], t), k[..., rot:]], dim=-1)
        action_q.append(q[:, :, :, None])
        action_k.append(k[:, :, :, None])
        action_v.append(v[:, :, :, None])
    patches = x[:, :, cond:].flatten(1, 2)
    qkv = attn.qkv(patches).unflatten(-1, (3, heads, -1)).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]

    def rotate(y: Tensor) -> Tensor:
        parts = [
            rotate_axis(y[..., i * rot : (i + 1) * rot], pos)
            for i, pos in enumerate((d_pos.float(), h_pos, w_pos))
        ]
        return torch.cat([*parts, y[..., 3 * rot :]], dim=-1)

    def merge(frame: Tensor, conds: list[Tensor]) -> Tensor:
        frame = frame.view(batch, heads, steps, height * wide, -1)
        return torch.cat([torch.cat(conds, dim=3), frame], dim=3).flatten(2, 3)

    q, k, v = merge(rotate(q), action_q), merge(rotate(k), action_k), merge(v, action_v)
    per_step = cond + height * wide
    step_of = torch.arange(steps).repeat_interleave(per_step)
    mask = step_of[:, None] >= step_of[None, :]
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    return attn.proj(out.transpose(1, 2).reshape(batch, -1, width))


def test_matches_a_transcription_of_the_official_forward() -> None:
    torch.manual_seed(3)
    config = ac_tiny(action_dim=3, state_dim=5, grid_height=2, grid_width=3, rope_grid_size=16)
    model = ACPredictor(config).eval()
    features, actions, states = _inputs(config, steps=3)
    with torch.no_grad():
        x = model.predictor_embed(features).view(2, 3, config.tokens_per_frame, -1)
        a = model.action_encoder(actions)[:, :, None]
        s = model.state_encoder(states)[:, :, None]
        x = torch.cat([a, s, x], dim=2).flatten(1, 2)
        for block in model.blocks:
            x = x + _official_attention(block.attn, block.norm1(x), 3, config)
            x = x + block.mlp(block.norm2(x))
        x = x.view(2, 3, config.cond_tokens + config.tokens_per_frame, -1)[:, :, 2:].flatten(1, 2)
        expected = model.predictor_proj(model.predictor_norm(x))
        ours = model(features, actions, states)
    assert (ours - expected).abs().max() < 1e-5


def _naive_rollout(
    model: ACPredictor,
    context: Tensor,
    states: Tensor,
    actions: Tensor,
    state_update: Callable[[Tensor, Tensor], Tensor] = additive_state_update,
) -> Tensor:
    """The official planner's loop: rerun the whole sequence for every new frame.

    `context (B, T0*N, D)`, `states (B, T0, S)`, `actions (B, T0-1+H, A)` -> `(B, H, N, D)`.
    """
    frames, dim = model.config.tokens_per_frame, model.config.embed_dim
    horizon = actions.shape[1] - states.shape[1] + 1
    features, state_seq, predictions = context, states, []
    for _ in range(horizon):
        steps = state_seq.shape[1]
        nxt = F.layer_norm(model(features, actions[:, :steps], state_seq)[:, -frames:], (dim,))
        predictions.append(nxt)
        features = torch.cat([features, nxt], dim=1)
        new_state = state_update(state_seq[:, -1], actions[:, steps - 1])
        state_seq = torch.cat([state_seq, new_state[:, None]], dim=1)
    return torch.stack(predictions, dim=1)  # (B, H, N, D)


def test_cached_rollout_equals_rerunning_the_sequence(model: ACPredictor) -> None:
    config = model.config
    features, actions, states = _inputs(config, batch=2, steps=3)
    frames = config.tokens_per_frame
    with torch.no_grad():
        fast = model.rollout(features[:, :frames], states[:, :1], actions)
        slow = _naive_rollout(model, features[:, :frames], states[:, :1], actions)
    assert fast.shape == (2, 3, frames, config.embed_dim)
    assert (fast - slow).abs().max() < 1e-5


def test_rollout_shares_a_robot_context_across_its_samples(model: ACPredictor) -> None:
    config = model.config
    frames, samples = config.tokens_per_frame, 4
    features, past, states = _inputs(config, batch=2, steps=2, seed=5)
    candidates = torch.randn(2 * samples, 3, ACTION_DIM, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        shared = model.rollout(features, states, candidates, past_actions=past[:, :1])
        full_actions = torch.cat([past[:, :1].repeat_interleave(samples, 0), candidates], dim=1)
        expanded = _naive_rollout(
            model,
            features.repeat_interleave(samples, 0),
            states.repeat_interleave(samples, 0),
            full_actions,
        )
    assert shared.shape == (2 * samples, 3, frames, config.embed_dim)
    assert (shared - expanded).abs().max() < 1e-5
    with pytest.raises(ValueError, match="past_actions"):
        model.rollout(features, states, candidates)
    with pytest.raises(ValueError, match="split"):
        model.rollout(features[:, :frames], states, candidates[:3])


def test_losses_match_hand_computation_and_train(model: ACPredictor) -> None:
    config = model.config
    frames = config.tokens_per_frame
    features, actions, states = _inputs(config, steps=3)
    losses = ac_losses(model, features, actions[:, :2], states, rollout_steps=2)
    target = F.layer_norm(features, (config.embed_dim,))
    with torch.no_grad():
        predicted = F.layer_norm(model(target[:, :-frames], actions[:, :2], states[:, :2]), (192,))
        teacher = (predicted - target[:, frames:]).abs().mean()
        first = predicted[:, :frames]
        second = model(torch.cat([target[:, :frames], first], 1), actions[:, :2], states[:, :2])
        second = F.layer_norm(second[:, -frames:], (192,))
        rollout = (torch.cat([first, second], 1) - target[:, frames:]).abs().mean()
    assert losses.teacher_forcing.item() == pytest.approx(teacher.item(), abs=1e-5)
    assert losses.rollout.item() == pytest.approx(rollout.item(), abs=1e-5)
    (losses.teacher_forcing + losses.rollout).backward()
    assert model.action_encoder.weight.grad is not None
    assert model.predictor_blocks[0].attn.qkv.weight.grad is not None  # type: ignore[union-attr]
    model.zero_grad()
    with pytest.raises(ValueError, match="rollout_steps"):
        ac_losses(model, features, actions[:, :2], states, rollout_steps=3)


OFFICIAL_BLOCK_KEYS = [
    f"{module}.{param}"
    for module in ("norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2")
    for param in ("weight", "bias")
]
OFFICIAL_TOP_KEYS = [
    f"{module}.{param}"
    for module in (
        "predictor_embed",
        "action_encoder",
        "state_encoder",
        "extrinsics_encoder",
        "predictor_norm",
        "predictor_proj",
    )
    for param in ("weight", "bias")
]


def _official_names(depth: int) -> list[str]:
    """State-dict keys of the official `VisionTransformerPredictorAC` (src/models/ac_predictor.py)."""
    blocks = [f"predictor_blocks.{i}.{key}" for i in range(depth) for key in OFFICIAL_BLOCK_KEYS]
    return OFFICIAL_TOP_KEYS + blocks


def _official_checkpoint(model: ACPredictor, path: Path) -> None:
    """An official-layout AC file: DDP `module.` keys, the always-built extrinsics encoder."""
    width, action_dim = model.config.width, model.config.action_dim
    ours = model.state_dict()
    extrinsics = {
        "extrinsics_encoder.weight": torch.randn(width, action_dim - 1),
        "extrinsics_encoder.bias": torch.zeros(width),
    }
    names = _official_names(model.config.depth)
    assert set(names) == set(ours) | set(extrinsics)  # our names are the official ones
    predictor = {f"module.{name}": {**ours, **extrinsics}[name].clone() for name in names}
    encoder = {"module.backbone.patch_embed.proj.weight": torch.randn(4, 3, 2, 16, 16)}
    torch.save({"encoder": encoder, "predictor": predictor, "epoch": 3, "lr": 1e-4}, path)


def test_official_checkpoint_loads_to_identical_outputs(model: ACPredictor, tmp_path: Path) -> None:
    path = tmp_path / "vjepa2-ac.pt"
    _official_checkpoint(model, path)
    loaded = load_ac_predictor(path, config=model.config)
    features, actions, states = _inputs(model.config)
    with torch.no_grad():
        assert torch.equal(loaded(features, actions, states), model(features, actions, states))
    inferred = infer_ac_config(torch.load(path, weights_only=True)["predictor"])
    assert inferred.depth == model.config.depth and inferred.embed_dim == 192
    assert (inferred.action_dim, inferred.mlp_hidden) == (ACTION_DIM, model.config.mlp_hidden)


def test_bad_checkpoints_fail_naming_the_keys(model: ACPredictor, tmp_path: Path) -> None:
    state = {f"module.{key}": value for key, value in model.state_dict().items()}
    extra = tmp_path / "extra.pt"
    torch.save({"predictor": {**state, "module.gripper_head.weight": torch.zeros(2)}}, extra)
    with pytest.raises(CheckpointError, match=r"unexpected keys: gripper_head\.weight"):
        load_ac_predictor(extra, config=model.config)
    missing = tmp_path / "missing.pt"
    torch.save(
        {"predictor": {k: v for k, v in state.items() if "predictor_norm" not in k}}, missing
    )
    with pytest.raises(CheckpointError, match=r"missing keys: predictor_norm\.bias"):
        load_ac_predictor(missing, config=model.config)
    with pytest.raises(CheckpointError, match="predictor"):
        torch.save({"encoder": {}}, tmp_path / "encoder_only.pt")
        load_ac_predictor(tmp_path / "encoder_only.pt", config=model.config)
    with pytest.raises(FileNotFoundError):
        load_ac_predictor(tmp_path / "nothing.pt")


def test_own_format_round_trip(model: ACPredictor, tmp_path: Path) -> None:
    path = save_ac_predictor(model, tmp_path / "ac.safetensors")
    loaded = load_ac_predictor(path)
    assert loaded.config == model.config
    features, actions, states = _inputs(model.config)
    with torch.no_grad():
        assert torch.equal(loaded(features, actions, states), model(features, actions, states))


def test_extrinsics_token_variant_loads_and_stays_causal(tmp_path: Path) -> None:
    torch.manual_seed(2)
    config = ac_tiny(action_dim=7, state_dim=7, use_extrinsics=True)
    model = ACPredictor(config).eval()
    features, actions, states = _inputs(config, steps=3)
    extrinsics = torch.randn(2, 3, config.extrinsics_dim)
    assert config.cond_tokens == 3
    with pytest.raises(ValueError, match="extrinsics"):
        model(features, actions, states)
    with torch.no_grad():
        reference = model(features, actions, states, extrinsics)
        changed = extrinsics.clone()
        changed[:, 2] += 1.0
        output = model(features, actions, states, changed)
    frames = config.tokens_per_frame
    assert torch.equal(output[:, : 2 * frames], reference[:, : 2 * frames])
    assert not torch.equal(output[:, 2 * frames :], reference[:, 2 * frames :])
    path = tmp_path / "ac_extrinsics.pt"
    torch.save({"predictor": {f"module.{k}": v for k, v in model.state_dict().items()}}, path)
    loaded = load_ac_predictor(path, config=config)  # extrinsics keys are kept, not dropped
    with torch.no_grad():
        assert torch.equal(loaded(features, actions, states, extrinsics), reference)


def test_scaled_state_update_scales_each_action_dim() -> None:
    state = torch.tensor([[1.0, 2.0, 3.0]])  # (1, S) with one state dim no action drives
    action = torch.tensor([[1.0, -1.0]])  # (1, A)
    moved = scaled_state_update((0.1, 0.5))(state, action)
    torch.testing.assert_close(moved, torch.tensor([[1.1, 1.5, 3.0]]))
    ones = scaled_state_update((1.0, 1.0))(state, action)
    torch.testing.assert_close(ones, additive_state_update(state, action))


def test_rollout_feeds_states_from_the_given_update(model: ACPredictor) -> None:
    config = model.config
    features, actions, states = _inputs(config, batch=2, steps=3, seed=3)
    frames, update = config.tokens_per_frame, scaled_state_update((0.1, 0.1))
    with torch.no_grad():
        scaled = model.rollout(features[:, :frames], states[:, :1], actions, state_update=update)
        naive = _naive_rollout(model, features[:, :frames], states[:, :1], actions, update)
        additive = model.rollout(features[:, :frames], states[:, :1], actions)
    assert (scaled - naive).abs().max() < 1e-5
    assert torch.equal(scaled[:, 0], additive[:, 0])  # the first step uses the given state
    assert (scaled[:, 1:] - additive[:, 1:]).abs().max() > 1e-4


def test_residual_predictor_starts_as_identity_and_stays_consistent(tmp_path: Path) -> None:
    torch.manual_seed(4)
    config = ac_tiny(action_dim=2, state_dim=2, residual=True)
    model = ACPredictor(config).eval()
    features, actions, states = _inputs(config, steps=3, seed=6)
    normed = F.layer_norm(features, (config.embed_dim,))
    frames = config.tokens_per_frame
    with torch.no_grad():
        torch.testing.assert_close(model(normed, actions, states), normed)  # copies its input
        rolled = model.rollout(normed[:, :frames], states[:, :1], actions)
        torch.testing.assert_close(rolled, normed[:, None, :frames].expand_as(rolled))
        model.predictor_proj.weight.normal_(std=0.02)  # a trained delta: forward == rollout
        fast = model.rollout(normed[:, :frames], states[:, :1], actions)
        slow = _naive_rollout(model, normed[:, :frames], states[:, :1], actions)
        delta = model(normed, actions, states) - normed
    assert (fast - slow).abs().max() < 1e-5
    assert delta.abs().mean() > 1e-3
    loaded = load_ac_predictor(save_ac_predictor(model, tmp_path / "residual.safetensors"))
    assert loaded.config.residual
    with torch.no_grad():
        assert torch.equal(loaded(normed, actions, states), model(normed, actions, states))


def test_presets_are_functions_with_overrides() -> None:
    from modeling.ac_predictor import AC_PRESETS, ac_preset

    assert set(AC_PRESETS) == {"tiny", "small", "paper"}
    small = ac_preset("small", embed_dim=384, action_dim=2)
    assert (small.width, small.depth, small.embed_dim, small.action_dim) == (192, 4, 384, 2)
    assert ac_preset("paper").depth == 24 and ac_preset("tiny").width == 64
    with pytest.raises(ValueError, match="unknown AC predictor preset"):
        ac_preset("huge")
