"""The probe sweep: several seeded heads per learning rate, scored by their mean."""

from __future__ import annotations

import itertools

import pytest
import torch

from tasks.training.job import WorkerContext
from tasks.training.probe import ProbeConfig, ProbeSweep, feature_batches, score


def _config(**overrides: object) -> ProbeConfig:
    values: dict = {
        "encoder": "random:tiny",
        "data": "unused",
        "labels": "unused",
        "output": "unused",
        "learning_rates": (1e-3, 3e-3),
        "heads_per_lr": 2,
    }
    return ProbeConfig(**{**values, **overrides})


def _sweep(**overrides: object) -> ProbeSweep:
    return ProbeSweep(_config(**overrides), width=24, num_classes=3, context=WorkerContext())


def test_heads_share_their_start_across_rates_and_differ_from_each_other() -> None:
    sweep = _sweep()
    assert len(sweep.probes) == 4 and len(sweep.optimizers) == 4
    weights = [probe.linear.weight for probe in sweep.probes]  # rate-major: lr0 h0, lr0 h1, ...
    assert torch.equal(weights[0], weights[2]) and torch.equal(weights[1], weights[3])
    assert not torch.equal(weights[0], weights[1])
    assert [o.param_groups[0]["lr"] for o in sweep.optimizers] == [1e-3, 1e-3, 3e-3, 3e-3]


def test_train_step_logs_one_loss_per_rate_and_learns() -> None:
    sweep = _sweep()
    tokens = torch.randn(12, 5, 24)  # (B, N, D)
    labels = torch.arange(12) % 3
    tokens[labels == 1] += 2.0
    tokens[labels == 2] -= 2.0
    first = sweep.train_step((tokens, labels), 0)
    assert set(first) == {"loss_0", "loss_1", "loss"}
    for step in range(1, 40):
        last = sweep.train_step((tokens, labels), step)
    assert last["loss"] < first["loss"]
    accuracies = sweep.accuracies(tokens, labels)
    assert len(accuracies) == 2 and all(len(heads) == 2 for heads in accuracies)
    assert min(min(heads) for heads in accuracies) > 0.9


def test_score_picks_the_rate_with_the_best_mean_not_the_luckiest_head() -> None:
    scores = score((1e-3, 3e-3), [[0.9, 0.1], [0.6, 0.7]])
    assert scores["best_lr"] == 3e-3 and scores["_best_index"] == 1
    assert scores["accuracy"] == pytest.approx(0.65)
    assert scores["accuracy_std"] == pytest.approx(0.05)
    assert scores["exported_head"] == 1
    assert scores["accuracies"] == {"0.001": pytest.approx(0.5), "0.003": pytest.approx(0.65)}
    assert scores["head_accuracies"]["0.001"] == [0.9, 0.1]


def test_resume_refuses_a_checkpoint_with_another_number_of_heads() -> None:
    state = _sweep(heads_per_lr=1).state_dict()
    with pytest.raises(ValueError, match="heads_per_lr"):
        _sweep().load_state_dict(state)
    restored = _sweep()
    restored.load_state_dict(_sweep().state_dict())  # the same shape loads


def test_config_rejects_zero_heads() -> None:
    with pytest.raises(ValueError, match="heads_per_lr"):
        _config(heads_per_lr=0)


def test_feature_batches_cover_each_epoch_once_in_a_seeded_order() -> None:
    tokens, labels = torch.arange(10.0).view(10, 1, 1), torch.arange(10)
    epoch = feature_batches(tokens, labels, batch_size=4, seed=3)
    seen = torch.cat([batch_labels for _, batch_labels in epoch(0)])
    assert sorted(seen.tolist()) == list(range(10))
    again = torch.cat([batch_labels for _, batch_labels in epoch(0)])
    assert torch.equal(seen, again)


def test_learning_rate_warms_up_then_decays_to_zero() -> None:
    from tasks.training.probe import lr_factor

    factors = [lr_factor(step, 100) for step in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    after = factors[9:]
    assert all(a >= b for a, b in itertools.pairwise(after)) and after[-1] < 0.01
    sweep = _sweep(steps=100)
    tokens, labels = torch.randn(6, 5, 24), torch.arange(6) % 3
    sweep.train_step((tokens, labels), 0)
    assert sweep.optimizers[0].param_groups[0]["lr"] == pytest.approx(1e-3 * 0.1)
    assert sweep.optimizers[-1].param_groups[0]["lr"] == pytest.approx(3e-3 * 0.1)
