"""Action/state normalisation: statistics, the state rule in normalised units, planning with it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from modeling.ac_predictor import ACPredictor, ac_tiny, scaled_state_update
from modeling.encoder import VisionEncoder, tiny
from modeling.normalization import NormalizedRollout, Normalizer
from modeling.world_model import WorldModel, WorldModelSpec, load_world_model, save_world_model


def _normalizer() -> Normalizer:
    rng = np.random.default_rng(0)
    actions = rng.uniform(-0.2, 0.2, size=(500, 2)) + np.array([0.0, 0.05])
    states = rng.uniform(0.0, 512.0, size=(500, 2))
    return Normalizer.fit(actions, states)


def test_fit_gives_unit_scale_and_constant_dims_keep_std_one() -> None:
    normalizer = _normalizer()
    assert abs(normalizer.action_mean[1] - 0.05) < 0.01
    assert abs(normalizer.state_std[0] - 512 / np.sqrt(12)) < 10
    padded = Normalizer.fit(np.c_[np.ones(10), np.arange(10)], np.zeros((10, 1)))
    assert padded.action_std[0] == 1.0 and padded.state_std == (1.0,)
    values = torch.tensor([[0.1, 0.3]])
    torch.testing.assert_close(padded.raw_actions(padded.normalize_actions(values)), values)


def test_normalized_update_is_the_raw_rule_in_normalised_units() -> None:
    normalizer = _normalizer()
    rule = scaled_state_update((100.0, 50.0))
    state, action = torch.tensor([[200.0, 10.0]]), torch.tensor([[0.1, -0.2]])
    step = normalizer.normalized_update(rule)
    moved = step(normalizer.normalize_states(state), normalizer.normalize_actions(action))
    torch.testing.assert_close(
        normalizer.raw_states(moved), rule(state, action), atol=1e-4, rtol=1e-5
    )


def _model(spec_stats: Normalizer | None) -> WorldModel:
    torch.manual_seed(0)
    fields = {} if spec_stats is None else dataclasses.asdict(spec_stats)
    spec = WorldModelSpec(
        image_size=64,
        action_dim=2,
        state_dim=2,
        action_low=(-0.2, -0.2),
        action_high=(0.2, 0.2),
        cem={"num_samples": 16, "num_elites": 4, "num_iterations": 2, "horizon": 2},
        action_scale=(100.0, 50.0),
        **fields,  # type: ignore[arg-type]
    )
    predictor = ACPredictor(ac_tiny(action_dim=2, state_dim=2))
    return WorldModel(VisionEncoder(tiny()), predictor, spec).eval()


def test_planning_feeds_the_predictor_normalised_inputs(tmp_path: Path) -> None:
    normalizer = _normalizer()
    model = _model(normalizer)
    assert model.spec.normalizer() == normalizer and _model(None).spec.normalizer() is None
    context = torch.randn(3, 16, 192)
    states = torch.tensor([[[300.0, 20.0]]]).expand(3, 1, 2)
    actions = torch.rand(3, 2, 2) * 0.4 - 0.2
    rule = model.spec.state_update()
    wrapped = NormalizedRollout(model.predictor, normalizer).rollout(
        context, states, actions, None, rule
    )
    direct = model.predictor.rollout(
        context,
        normalizer.normalize_states(states),
        normalizer.normalize_actions(actions),
        state_update=normalizer.normalized_update(rule),
    )
    torch.testing.assert_close(wrapped, direct)
    frames = torch.randint(0, 256, (1, 1, 64, 64, 3), dtype=torch.uint8)
    goal = torch.randint(0, 256, (1, 64, 64, 3), dtype=torch.uint8)
    plans = [
        m.plan(frames, states[:1], goal, generator=torch.Generator().manual_seed(1)).energy
        for m in (model, _model(None))
    ]
    assert not torch.equal(plans[0], plans[1])  # raw 300 px states would swamp the tokens
    save_world_model(tmp_path / "bundle", model)
    assert load_world_model(tmp_path / "bundle").spec.normalizer() == normalizer
