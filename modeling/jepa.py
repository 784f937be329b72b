"""JEPA training maths shared by pretraining and AC post-training.

Token gathering by index, the L1 loss on layer-normed targets, the masked-prediction loss of
one batch as one module (`MaskedPrediction`), the EMA update of the target encoder, AdamW
parameter groups (no decay on biases and norm weights) and the warmup-constant-decay
learning-rate schedule as a pure function of the step.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

EMA_MOMENTUM = 0.99925
WEIGHT_DECAY = 0.04


def gather_tokens(x: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """Pick tokens per sample: `x (B, N, D)`, `indices (B, K)` -> `(B, K, D)`."""
    if x.dim() != 3 or indices.dim() != 2 or indices.shape[0] != x.shape[0]:
        raise ValueError(
            f"gather_tokens needs x (B, N, D) and indices (B, K), got {tuple(x.shape)} "
            f"and {tuple(indices.shape)}"
        )
    index = indices.to(device=x.device, dtype=torch.long)
    return torch.gather(x, 1, index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))  # (B, K, D)


def layer_norm_features(x: torch.Tensor) -> torch.Tensor:
    """Parameter-free layer norm over the feature dim (the V-JEPA target normalisation)."""
    return F.layer_norm(x, (x.shape[-1],))  # (..., D)


def jepa_loss(
    predicted: torch.Tensor,
    target_features: torch.Tensor,
    target_indices: torch.Tensor | None = None,
    normalize_prediction: bool = False,
) -> torch.Tensor:
    """Mean absolute error between predictions and layer-normed target features.

    `target_features (B, N, D)` are the target encoder's outputs on the full clip; with
    `target_indices (B, M)` the M target tokens are gathered first, so `predicted` is `(B, M, D)`.
    Pretraining leaves predictions raw; AC post-training normalises them too.
    """
    target = layer_norm_features(target_features.detach())  # (B, N, D)
    if target_indices is not None:
        target = gather_tokens(target, target_indices)  # (B, M, D)
    if predicted.shape != target.shape:
        raise ValueError(
            f"prediction shape {tuple(predicted.shape)} != target shape {tuple(target.shape)}"
        )
    if normalize_prediction:
        predicted = layer_norm_features(predicted)
    return (predicted - target).abs().mean()


class MaskedPrediction(nn.Module):
    """Online encoder + predictor: the masked-prediction loss of a batch, every mask family.

    One module with one `forward` per training step, so a data-parallel wrapper (DDP) sees every
    parameter of both models used once per backward: wrapping the encoder and the predictor
    apart and calling them once per mask family breaks DDP's gradient reduction (each family's
    mask token is unused in the other family's pass).
    """

    def __init__(self, encoder: nn.Module, predictor: nn.Module) -> None:
        super().__init__()
        self.encoder, self.predictor = encoder, predictor

    def forward(
        self,
        video: torch.Tensor,  # (B, C, T, H, W)
        target_features: torch.Tensor,  # (B, N, D), the EMA target's
        masks: Any,  # list[modeling.masks.MaskPair]: context (B, K) and target (B, M) indices
        grid: tuple[int, int, int],
    ) -> torch.Tensor:
        losses = []
        for family, pair in enumerate(masks):  # each mask family has its own mask token
            context_indices = pair.context.to(video.device)  # (B, K)
            target_indices = pair.target.to(video.device)  # (B, M)
            context = self.encoder(video, context_indices)  # (B, K, D)
            predicted = self.predictor(
                context, context_indices, target_indices, grid, mask_index=family
            )  # (B, M, D)
            losses.append(jepa_loss(predicted, target_features, target_indices))
        return torch.stack(losses).mean()


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, momentum: float = EMA_MOMENTUM) -> None:
    """`target <- momentum * target + (1 - momentum) * online`, parameter by parameter."""
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"momentum must be in [0, 1], got {momentum}")
    target_params = dict(target.named_parameters())
    online_params = dict(online.named_parameters())
    if target_params.keys() != online_params.keys():
        missing = sorted(set(online_params) ^ set(target_params))
        raise ValueError(f"EMA needs matching parameters; these differ: {missing[:10]}")
    names = list(online_params)
    targets = [target_params[name].data for name in names]
    sources = [online_params[name].data.to(targets[i].dtype) for i, name in enumerate(names)]
    torch._foreach_mul_(targets, momentum)
    torch._foreach_add_(targets, sources, alpha=1.0 - momentum)


def _is_no_decay(name: str, parameter: torch.Tensor) -> bool:
    # biases, norm weights and any other 1-D parameter (official rule: 'bias' in name or 1-D)
    return name.endswith("bias") or parameter.ndim <= 1


def parameter_groups(
    modules: nn.Module | Iterable[nn.Module], weight_decay: float = WEIGHT_DECAY
) -> list[dict[str, Any]]:
    """AdamW groups: weights with `weight_decay`, biases and norm weights with none."""
    module_list = [modules] if isinstance(modules, nn.Module) else list(modules)
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    seen: set[int] = set()
    for module in module_list:
        for name, parameter in module.named_parameters():
            if not parameter.requires_grad or id(parameter) in seen:
                continue
            seen.add(id(parameter))
            (no_decay if _is_no_decay(name, parameter) else decay).append(parameter)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


@dataclass(frozen=True)
class LRSchedule:
    """Linear warmup `start_lr -> peak_lr`, constant, then linear decay to `final_lr`."""

    warmup_steps: int
    constant_steps: int
    decay_steps: int
    peak_lr: float = 5.25e-4
    start_lr: float = 1e-4
    final_lr: float = 1e-6

    def __post_init__(self) -> None:
        if min(self.warmup_steps, self.constant_steps, self.decay_steps) < 0:
            raise ValueError("schedule phase lengths must be >= 0")
        if min(self.peak_lr, self.start_lr, self.final_lr) < 0:
            raise ValueError("learning rates must be >= 0")

    @property
    def total_steps(self) -> int:
        return self.warmup_steps + self.constant_steps + self.decay_steps


def learning_rate(schedule: LRSchedule, step: int) -> float:
    """LR at `step` (0-based); past the end it stays at `final_lr`."""
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if step < schedule.warmup_steps:
        fraction = step / schedule.warmup_steps
        return schedule.start_lr + fraction * (schedule.peak_lr - schedule.start_lr)
    step -= schedule.warmup_steps
    if step < schedule.constant_steps:
        return schedule.peak_lr
    step -= schedule.constant_steps
    if step < schedule.decay_steps:
        fraction = step / schedule.decay_steps
        return schedule.peak_lr + fraction * (schedule.final_lr - schedule.peak_lr)
    return schedule.final_lr if schedule.decay_steps > 0 else schedule.peak_lr
