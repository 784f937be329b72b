"""World model bundle: encode, plan within bounds, save/load round trip."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from modeling.ac_predictor import ACPredictor, ac_tiny
from modeling.encoder import VisionEncoder, tiny
from modeling.preprocess import frames_to_video
from modeling.world_model import (
    SPEC_FILE,
    WorldModel,
    WorldModelSpec,
    load_world_model,
    save_world_model,
)


def _model() -> WorldModel:
    torch.manual_seed(0)
    spec = WorldModelSpec(
        image_size=64,
        action_dim=2,
        state_dim=2,
        action_low=(-1.0, -0.5),
        action_high=(1.0, 0.5),
        cem={"num_samples": 16, "num_elites": 4, "num_iterations": 2, "horizon": 2},
    )
    return WorldModel(
        VisionEncoder(tiny()), ACPredictor(ac_tiny(action_dim=2, state_dim=2)), spec
    ).eval()


def _frames(batch: int, steps: int) -> torch.Tensor:
    return torch.randint(0, 256, (batch, steps, 64, 64, 3), dtype=torch.uint8)


def test_encode_frames_is_per_frame_and_normed() -> None:
    model = _model()
    frames = _frames(2, 3)
    features = model.encode_frames(frames)
    assert features.shape == (2, 3 * 16, 192)
    alone = model.encode_frames(frames[:, 1:2])
    torch.testing.assert_close(features[:, 16:32], alone, atol=1e-5, rtol=1e-5)
    assert torch.allclose(features.mean(-1), torch.zeros(()), atol=1e-4)


def test_plan_respects_bounds_and_seed() -> None:
    model = _model()
    frames, goals = _frames(3, 1), _frames(3, 1)[:, 0]
    states = torch.zeros(3, 1, 2)
    first = model.plan(frames, states, goals, generator=torch.Generator().manual_seed(1))
    again = model.plan(frames, states, goals, generator=torch.Generator().manual_seed(1))
    assert first.plan.shape == (3, 2, 2)
    torch.testing.assert_close(first.plan, again.plan)
    assert float(first.plan[..., 1].abs().max()) <= 0.5


def test_bundle_round_trip(tmp_path: Path) -> None:
    model = _model()
    save_world_model(tmp_path / "bundle", model)
    loaded = load_world_model(tmp_path / "bundle")
    assert loaded.spec == model.spec
    frames = _frames(1, 2)
    torch.testing.assert_close(loaded.encode_frames(frames), model.encode_frames(frames))
    with pytest.raises(FileNotFoundError, match=r"world_model\.json"):
        load_world_model(tmp_path)


def test_frames_to_video_checks_input() -> None:
    assert frames_to_video(_frames(1, 2)).shape == (1, 3, 2, 64, 64)
    with pytest.raises(ValueError, match="uint8"):
        frames_to_video(torch.zeros(1, 2, 64, 64, 3))


def test_encode_frames_resizes_any_frame_size_to_the_spec() -> None:
    model = _model()
    frames = _frames(2, 1)
    larger = frames.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)  # (2, 1, 128, 128, 3)
    wide = torch.cat([frames[:, :, :, :8], frames, frames[:, :, :, -8:]], dim=3)  # 64 x 80
    expected = model.encode_frames(frames)
    halved = F.interpolate(
        larger[:, 0].permute(0, 3, 1, 2).float(), size=(64, 64), mode="bilinear", antialias=True
    )  # (2, 3, 64, 64): what a robot's camera image should become
    halved_frames = halved.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)[:, None]
    torch.testing.assert_close(model.encode_frames(larger), model.encode_frames(halved_frames))
    torch.testing.assert_close(model.encode_frames(wide), expected)  # centre crop of the long side
    with pytest.raises(ValueError, match="uint8"):
        model.encode_frames(torch.zeros(1, 1, 48, 48, 3))


def test_spec_action_scale_drives_planned_states(tmp_path: Path) -> None:
    base = _model()
    scaled = WorldModel(
        base.encoder, base.predictor, dataclasses.replace(base.spec, action_scale=(0.1, 0.1))
    ).eval()
    state, action = torch.zeros(1, 2), torch.ones(1, 2)
    torch.testing.assert_close(base.spec.state_update()(state, action), action)  # old bundles
    torch.testing.assert_close(scaled.spec.state_update()(state, action), action * 0.1)
    frames, goals = _frames(1, 1), _frames(1, 1)[:, 0]
    states = torch.zeros(1, 1, 2)
    plans = [
        m.plan(frames, states, goals, generator=torch.Generator().manual_seed(1)).energy
        for m in (base, scaled)
    ]
    assert not torch.equal(plans[0], plans[1])  # horizon 2: the second step sees another state
    save_world_model(tmp_path / "scaled", scaled)
    assert load_world_model(tmp_path / "scaled").spec.action_scale == (0.1, 0.1)
    legacy = json.loads((tmp_path / "scaled" / SPEC_FILE).read_text())
    del legacy["action_scale"]
    assert WorldModelSpec.from_dict(legacy).action_scale is None
    with pytest.raises(ValueError, match="action_scale"):
        dataclasses.replace(base.spec, action_scale=(0.1,))
