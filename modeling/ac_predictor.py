"""V-JEPA 2-AC: the action-conditioned predictor that rolls frozen-encoder features forward.

Per time step `t` the sequence holds `[action_t, state_t, (extrinsics_t), patches_t]`; attention
is block-causal (a token of step t sees every token of steps <= t). Action/state tokens are
rotated along time only, patches with 3D RoPE whose spatial positions are snapped to
`rope_grid_size` (the official `ACRoPEAttention`). The patch outputs of step t predict the
encoder features of frame t+1.

- `forward(features (B, T*N, D), actions (B, T, A), states (B, T, S))` -> `(B, T*N, D)`: one
  teacher-forced pass (the official `VisionTransformerPredictorAC.forward`).
- `rollout(context (B0, T0*N, D), states, actions (B, H, A))` -> `(B, H, N, D)`: autoregressive
  prediction for planning with a key/value cache, so each step only computes its own tokens;
  the context may be given once per robot (`B = B0 * S`) and is shared by all its samples.
- `ac_losses`: the teacher-forcing and k-step rollout L1 losses on layer-normed features.

Parameter names equal the official ones (`predictor_embed`, `action_encoder`, `state_encoder`,
`extrinsics_encoder`, `predictor_blocks.{i}.*`, `predictor_norm`, `predictor_proj`);
`modeling.ac_checkpoints.load_ac_predictor` reads an official `.pt` or the project's own
safetensors format.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, NamedTuple, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from modeling.config import DictConfig
from modeling.jepa import layer_norm_features
from modeling.layers import Attention, Block, run_blocks
from modeling.rope import RopeTables, apply_rope, check_rope_heads, rope_tables

KVCache = list[tuple[Tensor, Tensor]]
StateUpdate = Callable[[Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class ACPredictorConfig(DictConfig):
    """Shape of the AC predictor (paper: 24 x 1024, 16 heads, on ViT-g features of 256 px)."""

    embed_dim: int = 1408
    width: int = 1024
    depth: int = 24
    num_heads: int = 16
    mlp_hidden: int = 4096
    action_dim: int = 7
    state_dim: int = 7
    use_extrinsics: bool = False
    extrinsics_dim: int = 6
    grid_height: int = 16
    grid_width: int = 16
    rope_grid_size: int = 16
    qkv_bias: bool = True
    norm_eps: float = 1e-6
    activation_checkpointing: bool = False
    # Not in the official model: predict the change of the features (output = input frame +
    # projected delta, the projection starting at zero, so an untrained predictor copies its
    # input). Small, slowly moving scenes make "no change" a strong baseline to start from.
    residual: bool = False

    def __post_init__(self) -> None:
        check_rope_heads(self.width, self.num_heads)
        if min(self.action_dim, self.state_dim, self.grid_height, self.grid_width) < 1:
            raise ValueError("action_dim, state_dim and the grid must be >= 1")

    @property
    def tokens_per_frame(self) -> int:
        return self.grid_height * self.grid_width

    @property
    def cond_tokens(self) -> int:
        return 3 if self.use_extrinsics else 2


def ac_vitg() -> ACPredictorConfig:
    """The released V-JEPA 2-AC predictor on ViT-g/16 features at 256 px."""
    return ACPredictorConfig()


def ac_tiny(**overrides: Any) -> ACPredictorConfig:
    """Tests and the CPU demo: 2 blocks of width 64 on the tiny encoder's 192-wide features."""
    base = ACPredictorConfig(
        embed_dim=192, width=64, depth=2, num_heads=4, mlp_hidden=256, grid_height=4, grid_width=4
    )
    return replace(base, **{"rope_grid_size": overrides.get("grid_height", 4), **overrides})


def ac_small(**overrides: Any) -> ACPredictorConfig:
    """4 blocks of width 192: a GPU-sized step up from `ac_tiny`."""
    return ac_tiny(**{"width": 192, "depth": 4, "num_heads": 4, "mlp_hidden": 768, **overrides})


def ac_paper(**overrides: Any) -> ACPredictorConfig:
    """The paper's predictor trunk (24 blocks of width 1024), on any encoder width and grid."""
    sizes = {"width": 1024, "depth": 24, "num_heads": 16, "mlp_hidden": 4096}
    return ac_tiny(**{**sizes, **overrides})


AC_PRESETS = {"tiny": ac_tiny, "small": ac_small, "paper": ac_paper}


def ac_preset(name: str, **overrides: Any) -> ACPredictorConfig:
    """The AC predictor preset called `name` (tiny, small, paper) with `overrides` applied."""
    try:
        return AC_PRESETS[name](**overrides)
    except KeyError:
        raise ValueError(
            f"unknown AC predictor preset {name!r}; choose from {sorted(AC_PRESETS)}"
        ) from None


def additive_state_update(state: Tensor, action: Tensor) -> Tensor:
    """Next state for delta actions: `state + action` on the shared leading dims."""
    width = min(state.shape[-1], action.shape[-1])
    return torch.cat([state[..., :width] + action[..., :width], state[..., width:]], dim=-1)


def scaled_state_update(scale: Sequence[float]) -> StateUpdate:
    """Next state `state + scale * action` on the shared leading dims (one scale per action dim).

    For robots whose state moves by a fixed gain per unit of action and control step (PointReach:
    step size x env steps per control step); `scale` of ones is `additive_state_update`.
    """
    gains = tuple(float(v) for v in scale)

    def update(state: Tensor, action: Tensor) -> Tensor:
        gain = torch.tensor(gains, dtype=action.dtype, device=action.device)  # (A,)
        return additive_state_update(state, action * gain)

    return update


class ACPredictor(nn.Module):
    """Block-causal action-conditioned ViT predictor over frozen encoder features."""

    def __init__(self, config: ACPredictorConfig) -> None:
        super().__init__()
        self.config = config
        width = config.width
        self.predictor_embed = nn.Linear(config.embed_dim, width)
        self.action_encoder = nn.Linear(config.action_dim, width)
        self.state_encoder = nn.Linear(config.state_dim, width)
        if config.use_extrinsics:
            self.extrinsics_encoder = nn.Linear(config.extrinsics_dim, width)
        self.predictor_blocks = nn.ModuleList(
            Block(width, config.num_heads, config.mlp_hidden, config.qkv_bias, config.norm_eps)
            for _ in range(config.depth)
        )
        self.predictor_norm = nn.LayerNorm(width, eps=config.norm_eps)
        self.predictor_proj = nn.Linear(width, config.embed_dim)
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02, a=-0.04, b=0.04)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        with torch.no_grad():  # residual branches shrink with depth, as in the official code
            for layer, block in enumerate(self.blocks, start=1):
                block.attn.proj.weight.div_(math.sqrt(2.0 * layer))
                block.mlp.fc2.weight.div_(math.sqrt(2.0 * layer))
            if self.config.residual:  # start as the identity on features
                self.predictor_proj.weight.zero_()

    @property
    def blocks(self) -> list[Block]:
        return cast(list[Block], list(self.predictor_blocks))

    # -- token layout ---------------------------------------------------------------------------

    def _tokens(
        self, frames: Tensor, actions: Tensor, states: Tensor, extrinsics: Tensor | None
    ) -> Tensor:
        """Interleave `[action, state, (extrinsics), patches]` per step -> `(B, T*(C+N), W)`."""
        batch, steps = actions.shape[:2]
        cond = [self.action_encoder(actions), self.state_encoder(states)]  # each (B, T, W)
        if self.config.use_extrinsics:
            if extrinsics is None:
                raise ValueError("this predictor was built with use_extrinsics; pass extrinsics")
            cond.append(self.extrinsics_encoder(extrinsics))
        patches = self.predictor_embed(frames).view(batch, steps, self.config.tokens_per_frame, -1)
        return torch.cat([c.unsqueeze(2) for c in cond] + [patches], dim=2).flatten(1, 2)

    def _frame_outputs(self, x: Tensor, steps: int, inputs: Tensor) -> Tensor:
        """Drop the conditioning tokens, normalise and project: `(B, T*(C+N), W) -> (B, T*N, D)`.

        `inputs (B, T*N, D)` are the frames the step started from, added back when `residual`.
        """
        x = x.view(x.shape[0], steps, self.config.cond_tokens + self.config.tokens_per_frame, -1)
        x = x[:, :, self.config.cond_tokens :].flatten(1, 2)  # (B, T*N, W)
        out = self.predictor_proj(self.predictor_norm(x))  # (B, T*N, D)
        return out + inputs if self.config.residual else out

    def rope(self, first_step: int, num_steps: int, device: torch.device) -> RopeTables:
        """RoPE tables for steps `[first_step, first_step + num_steps)`: `(1, 1, L, head_dim)`.

        Conditioning tokens are rotated along time only; patch rows/columns are snapped to
        `rope_grid_size` as the official `ACRoPEAttention` does (`h * grid_size / H`).
        """
        config = self.config
        per_step = config.cond_tokens + config.tokens_per_frame
        index = torch.arange(per_step * num_steps, device=device)  # (L,)
        within = index % per_step - config.cond_tokens  # patch number, < 0 for cond tokens
        patch = within.clamp(min=0)
        step = (index // per_step + first_step).float()
        row = (patch // config.grid_width).float() * (config.rope_grid_size / config.grid_height)
        col = (patch % config.grid_width).float() * (config.rope_grid_size / config.grid_width)
        is_patch = within >= 0
        positions = torch.stack([step, row, col], dim=-1)  # (L, 3)
        rotate = torch.stack([torch.ones_like(is_patch), is_patch, is_patch], dim=-1)  # (L, 3)
        return rope_tables(positions[None], config.width // config.num_heads, rotate[None])

    def causal_mask(self, first_step: int, num_steps: int, device: torch.device) -> Tensor:
        """Bool `(L_q, L_k)`: queries of the given steps may attend to keys of steps <= theirs."""
        per_step = self.config.cond_tokens + self.config.tokens_per_frame
        query_steps = torch.arange(first_step, first_step + num_steps, device=device)
        key_steps = torch.arange(first_step + num_steps, device=device)
        query_steps = query_steps.repeat_interleave(per_step)  # (L_q,)
        key_steps = key_steps.repeat_interleave(per_step)  # (L_k,)
        return query_steps[:, None] >= key_steps[None, :]  # (L_q, L_k)

    def _num_frames(self, features: Tensor) -> int:
        if features.dim() != 3 or features.shape[-1] != self.config.embed_dim:
            raise ValueError(
                f"features must be (B, T*N, {self.config.embed_dim}), got {tuple(features.shape)}"
            )
        steps, remainder = divmod(features.shape[1], self.config.tokens_per_frame)
        if remainder or steps == 0:
            raise ValueError(
                f"{features.shape[1]} tokens are not whole frames of {self.config.tokens_per_frame}"
            )
        return steps

    def _check_inputs(self, batch: int, steps: int, name: str, tensor: Tensor, dim: int) -> None:
        if (
            tensor.dim() != 3
            or tensor.shape[0] != batch
            or tensor.shape[1] < steps
            or tensor.shape[2] != dim
        ):
            raise ValueError(
                f"{name} must be ({batch}, >= {steps}, {dim}), got {tuple(tensor.shape)}"
            )

    # -- forward passes -------------------------------------------------------------------------

    def forward(
        self, features: Tensor, actions: Tensor, states: Tensor, extrinsics: Tensor | None = None
    ) -> Tensor:
        """Teacher-forced prediction: frame t's outputs predict frame t+1. `-> (B, T*N, D)`."""
        steps, batch = self._num_frames(features), features.shape[0]
        self._check_inputs(batch, steps, "actions", actions, self.config.action_dim)
        self._check_inputs(batch, steps, "states", states, self.config.state_dim)
        if extrinsics is not None:
            self._check_inputs(batch, steps, "extrinsics", extrinsics, self.config.extrinsics_dim)
            extrinsics = extrinsics[:, :steps]
        x = self._tokens(features, actions[:, :steps], states[:, :steps], extrinsics)
        rope = self.rope(0, steps, x.device)
        mask = self.causal_mask(0, steps, x.device)
        x = run_blocks(self.predictor_blocks, x, rope, mask, self.config.activation_checkpointing)
        return self._frame_outputs(x, steps, features)  # (B, T*N, D)

    def _cached_step(self, x: Tensor, first_step: int, cache: KVCache) -> Tensor:
        """Run new steps' tokens `x (B, L, W)` through all blocks, extending `cache` in place."""
        steps = x.shape[1] // (self.config.cond_tokens + self.config.tokens_per_frame)
        rope = self.rope(first_step, steps, x.device)
        mask = self.causal_mask(first_step, steps, x.device)
        for layer, block in enumerate(self.blocks):
            past = cache[layer] if layer < len(cache) else None
            attended, present = _attend_cached(block.attn, block.norm1(x), rope, mask, past)
            if layer < len(cache):
                cache[layer] = present
            else:
                cache.append(present)
            x = x + attended
            x = x + block.mlp(block.norm2(x))  # (B, L, W)
        return x

    def _check_rollout(
        self, context: Tensor, states: Tensor, actions: Tensor, past_actions: Tensor | None
    ) -> tuple[int, int]:
        """Validate rollout inputs; return (context frames T0, samples per context row)."""
        config = self.config
        if config.use_extrinsics:
            raise ValueError("rollout does not take extrinsics; use a predictor without them")
        context_steps, contexts = self._num_frames(context), context.shape[0]
        self._check_inputs(contexts, context_steps, "states", states, config.state_dim)
        if context_steps > 1:
            if past_actions is None:
                raise ValueError(f"{context_steps} context frames need past_actions (B0, T0-1, A)")
            self._check_inputs(
                contexts, context_steps - 1, "past_actions", past_actions, config.action_dim
            )
        repeats, remainder = divmod(actions.shape[0], contexts)
        if remainder or repeats == 0:
            raise ValueError(
                f"{actions.shape[0]} action rows do not split over {contexts} contexts"
            )
        self._check_inputs(actions.shape[0], 1, "actions", actions, config.action_dim)
        return context_steps, repeats

    def rollout(
        self,
        context_features: Tensor,
        states: Tensor,
        actions: Tensor,
        past_actions: Tensor | None = None,
        state_update: StateUpdate = additive_state_update,
        normalize: bool = True,
    ) -> Tensor:
        """Predict `H = actions.shape[1]` future frames autoregressively: `-> (B, H, N, D)`.

        `context_features (B0, T0*N, D)` are the encoder features of the last T0 frames and
        `states (B0, >= T0, S)` their states; `past_actions (B0, T0-1, A)` the actions between
        them (needed when T0 > 1). `actions (B, H, A)` start at the last context frame; B may be
        a multiple of B0 (robot-major: rows `r*S .. r*S+S-1` share context row r). States of
        future steps not given are produced by `state_update(state, action)`. Predictions are
        layer-normed (`normalize`) before being fed back, as in training and the official planner.
        """
        frames = self.config.tokens_per_frame
        context_steps, repeats = self._check_rollout(
            context_features, states, actions, past_actions
        )
        prefix = context_steps - 1  # steps before the last context frame, shared per robot
        cache: KVCache = []
        if prefix and past_actions is not None:
            x = context_features[:, : prefix * frames]
            x = self._tokens(x, past_actions[:, :prefix], states[:, :prefix], None)
            self._cached_step(x, 0, cache)
            cache = [
                (k.repeat_interleave(repeats, 0), v.repeat_interleave(repeats, 0)) for k, v in cache
            ]
        frame = context_features[:, prefix * frames :].repeat_interleave(repeats, 0)  # (B, N, D)
        state = states[:, prefix].repeat_interleave(repeats, 0)  # (B, S)
        given = states[:, context_steps:].repeat_interleave(repeats, 0)  # (B, T_s - T0, S)
        predictions = []
        for step in range(actions.shape[1]):
            x = self._tokens(frame, actions[:, step : step + 1], state[:, None], None)
            x = self._cached_step(x, prefix + step, cache)
            frame = self._frame_outputs(x, 1, frame)  # (B, N, D)
            if normalize:
                frame = layer_norm_features(frame)
            predictions.append(frame)
            state = (
                given[:, step] if step < given.shape[1] else state_update(state, actions[:, step])
            )
        return torch.stack(predictions, dim=1)  # (B, H, N, D)


def _attend_cached(
    attn: Attention, x: Tensor, rope: RopeTables, mask: Tensor, past: tuple[Tensor, Tensor] | None
) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    """`Attention` over new tokens `x (B, L, W)` plus cached keys/values of earlier steps.

    `modeling.layers.Attention` has no cache, so this reuses its weights (`qkv`, `proj`) and the
    shared RoPE; results equal running the whole sequence through `Attention` with the mask.
    """
    batch, length, width = x.shape
    qkv = attn.qkv(x).unflatten(-1, (3, attn.num_heads, attn.head_dim))  # (B, L, 3, h, hd)
    query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, h, L, hd)
    query, key = apply_rope(query, rope), apply_rope(key, rope)
    if past is not None:
        key = torch.cat([past[0], key], dim=2)  # (B, h, L_k, hd)
        value = torch.cat([past[1], value], dim=2)
    out = F.scaled_dot_product_attention(query, key, value, attn_mask=mask)  # (B, h, L, hd)
    return attn.proj(out.transpose(1, 2).reshape(batch, length, width)), (key, value)


# -- losses --------------------------------------------------------------------------------------


class ACLosses(NamedTuple):
    teacher_forcing: Tensor
    rollout: Tensor


def ac_losses(
    model: ACPredictor,
    features: Tensor,
    actions: Tensor,
    states: Tensor,
    rollout_steps: int = 2,
) -> ACLosses:
    """Teacher-forcing and `rollout_steps`-step rollout losses of the official AC recipe.

    `features (B, T*N, D)` are the frozen encoder's outputs for T frames, `actions (B, T-1, A)`
    and `states (B, T, S)`. Features are layer-normed and serve as both input and target; both
    losses are the L1 between layer-normed predictions and targets. The rollout feeds its own
    predictions back from the first frame and uses the recorded states, as the official trainer.
    """
    frames = model.config.tokens_per_frame
    steps = model._num_frames(features)
    if steps < 2 or not 1 <= rollout_steps <= steps - 1:
        raise ValueError(f"need T >= 2 frames and 1 <= rollout_steps <= T-1, got T={steps}")
    target = layer_norm_features(features.detach())  # (B, T*N, D)
    predicted = model(target[:, :-frames], actions, states[:, :-1])  # (B, (T-1)*N, D)
    teacher = (layer_norm_features(predicted) - target[:, frames:]).abs().mean()
    rolled = model.rollout(
        target[:, :frames], states[:, :rollout_steps], actions[:, :rollout_steps]
    )
    rolled_target = target[:, frames : (rollout_steps + 1) * frames]  # (B, k*N, D)
    rollout = (rolled.flatten(1, 2) - rolled_target).abs().mean()
    return ACLosses(teacher_forcing=teacher, rollout=rollout)
