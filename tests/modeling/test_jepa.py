"""JEPA maths: token gathering, the layer-normed L1 loss, EMA, AdamW groups, LR schedule."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from modeling.jepa import (
    EMA_MOMENTUM,
    LRSchedule,
    ema_update,
    gather_tokens,
    jepa_loss,
    learning_rate,
    parameter_groups,
)


def _tiny_net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 2))


def test_gather_tokens_picks_rows_per_sample() -> None:
    x = torch.arange(2 * 5 * 3, dtype=torch.float32).view(2, 5, 3)  # (B, N, D)
    indices = torch.tensor([[4, 0], [1, 1]])  # (B, K)
    out = gather_tokens(x, indices)  # (B, K, D)
    assert torch.equal(out[0], x[0, [4, 0]]) and torch.equal(out[1], x[1, [1, 1]])
    with pytest.raises(ValueError, match="indices"):
        gather_tokens(x, indices[0])


def test_loss_equals_hand_computed_value() -> None:
    target = torch.tensor([[[1.0, 3.0], [2.0, 2.0], [0.0, 4.0]]])  # (1, 3, 2)
    # layer norm of [1, 3] and [0, 4] is [-1, 1] (eps aside); of [2, 2] it is [0, 0]
    predicted = torch.tensor([[[0.0, 0.0], [-1.0, 3.0]]])  # (1, 2, 2) for tokens 2 and 0
    loss = jepa_loss(predicted, target, torch.tensor([[2, 0]]))
    expected = (1 + 1 + 0 + 2) / 4  # |0-(-1)|, |0-1|, |-1-(-1)|, |3-1|
    assert loss.item() == pytest.approx(expected, abs=1e-4)
    same = jepa_loss(torch.tensor([[[5.0, 7.0]]]), target[:, :1], normalize_prediction=True)
    assert same.item() == pytest.approx(0.0, abs=1e-4)
    with pytest.raises(ValueError, match="shape"):
        jepa_loss(predicted, target)


def test_loss_sends_no_gradient_into_the_target() -> None:
    target = torch.randn(2, 4, 8, requires_grad=True)
    predicted = torch.randn(2, 4, 8, requires_grad=True)
    jepa_loss(predicted, target).backward()
    assert target.grad is None and predicted.grad is not None


def test_ema_momentum_zero_copies_one_keeps_and_between_mixes() -> None:
    online, target = _tiny_net(0), _tiny_net(1)
    before = [p.clone() for p in target.parameters()]
    ema_update(target, online, momentum=1.0)
    assert all(torch.equal(a, b) for a, b in zip(target.parameters(), before, strict=True))
    ema_update(target, online, momentum=0.25)
    for mixed, old, new in zip(target.parameters(), before, online.parameters(), strict=True):
        assert torch.allclose(mixed, 0.25 * old + 0.75 * new)
    ema_update(target, online, momentum=0.0)
    assert all(
        torch.equal(a, b) for a, b in zip(target.parameters(), online.parameters(), strict=True)
    )
    assert EMA_MOMENTUM == 0.99925
    with pytest.raises(ValueError, match="momentum"):
        ema_update(target, online, momentum=1.5)
    with pytest.raises(ValueError, match="matching"):
        ema_update(nn.Linear(4, 8), online)


def test_no_weight_decay_on_biases_and_norms() -> None:
    net = _tiny_net(0)
    decay, no_decay = parameter_groups(net, weight_decay=0.04)
    assert decay["weight_decay"] == 0.04 and no_decay["weight_decay"] == 0.0
    names = {id(p): n for n, p in net.named_parameters()}
    assert sorted(names[id(p)] for p in decay["params"]) == ["0.weight", "2.weight"]
    assert sorted(names[id(p)] for p in no_decay["params"]) == [
        "0.bias",
        "1.bias",
        "1.weight",
        "2.bias",
    ]
    optimizer = torch.optim.AdamW(parameter_groups([net, net]))  # shared modules counted once
    assert sum(len(group["params"]) for group in optimizer.param_groups) == 6


def test_lr_schedule_shape() -> None:
    schedule = LRSchedule(
        warmup_steps=10, constant_steps=20, decay_steps=10, start_lr=0.1, peak_lr=1.0, final_lr=0.0
    )
    assert learning_rate(schedule, 0) == pytest.approx(0.1)
    assert learning_rate(schedule, 5) == pytest.approx(0.55)
    assert learning_rate(schedule, 10) == pytest.approx(1.0)
    assert learning_rate(schedule, 29) == pytest.approx(1.0)
    assert learning_rate(schedule, 35) == pytest.approx(0.5)
    assert learning_rate(schedule, 40) == pytest.approx(0.0)
    assert learning_rate(schedule, 1000) == pytest.approx(0.0)
    rates = [learning_rate(schedule, step) for step in range(schedule.total_steps)]
    assert rates[:11] == sorted(rates[:11]) and rates[30:] == sorted(rates[30:], reverse=True)
    with pytest.raises(ValueError, match="step"):
        learning_rate(schedule, -1)
