"""A world model for planning: frozen encoder + V-JEPA 2-AC predictor + what the robot needs.

The bundle is a folder with `encoder.safetensors`, `ac_predictor.safetensors`
(the project's own format) and `world_model.json` (`WorldModelSpec`: image
size, action and state sizes, action bounds, control rate, CEM defaults). It is
what post-training writes and what closed-loop evaluation and the planner
deployment load.

Frames are encoded one at a time (each image repeated to fill one tubelet, as
V-JEPA 2-AC does) and their features layer-normed, the space the predictor was
trained in.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from modeling.ac_predictor import (
    ACPredictor,
    StateUpdate,
    additive_state_update,
    scaled_state_update,
)
from modeling.cem import (
    CEMConfig,
    CEMResult,
    EnergyFn,
    EnergyMetric,
    cem_plan,
    latent_goal_energy,
)
from modeling.checkpoints import save_state
from modeling.encoder import VisionEncoder
from modeling.jepa import layer_norm_features
from modeling.normalization import NormalizedRollout, Normalizer
from modeling.preprocess import frames_to_video, resize_frames

SPEC_FILE = "world_model.json"
NORMALIZATION_KEYS = ("action_mean", "action_std", "state_mean", "state_std")
ENCODER_FILE = "encoder.safetensors"
PREDICTOR_FILE = "ac_predictor.safetensors"


@dataclass(frozen=True)
class WorldModelSpec:
    """How a robot talks to the model: image size, state/action sizes, bounds, CEM defaults."""

    image_size: int
    action_dim: int
    state_dim: int
    action_low: tuple[float, ...]
    action_high: tuple[float, ...]
    control_fps: float = 10.0
    name: str = "world-model"
    cem: dict[str, Any] = field(default_factory=dict)
    # State change per unit of action and control step, per action dim: planning rolls future
    # states forward as `state + action_scale * action`. None (bundles written before this
    # field): `state + action`.
    action_scale: tuple[float, ...] | None = None
    # The LeRobot features the model was trained on (camera = the video feature); None: not
    # recorded (bundles written before these fields, or imported weights).
    camera: str | None = None
    state_key: str | None = None
    action_key: str | None = None
    # Dataset statistics the predictor's actions and states were normalised with (None: raw
    # inputs, bundles written before normalisation). See `modeling.normalization`.
    action_mean: tuple[float, ...] | None = None
    action_std: tuple[float, ...] | None = None
    state_mean: tuple[float, ...] | None = None
    state_std: tuple[float, ...] | None = None
    # Measured on held-out episodes at post-training (None: not measured): the rise of the
    # rollout error when each window gets another window's actions, relative to copying the
    # last frame (~0: the predictor ignores its actions), and rollout error / copy error.
    shuffled_action_gain: float | None = None
    heldout_ratio: float | None = None

    def __post_init__(self) -> None:
        if self.image_size % 16:
            raise ValueError(f"image_size {self.image_size} must be a multiple of 16")
        if not len(self.action_low) == len(self.action_high) == self.action_dim:
            raise ValueError("action_low and action_high need action_dim entries")
        if self.action_scale is not None and len(self.action_scale) != self.action_dim:
            raise ValueError(
                f"action_scale needs action_dim ({self.action_dim}) entries, "
                f"got {len(self.action_scale)}"
            )

    def state_update(self) -> StateUpdate:
        """How planning rolls the robot state forward between predicted frames."""
        if self.action_scale is None:
            return additive_state_update
        return scaled_state_update(self.action_scale)

    def normalizer(self) -> Normalizer | None:
        """The input normalisation the predictor was trained with, if any."""
        stats = (self.action_mean, self.action_std, self.state_mean, self.state_std)
        if any(value is None for value in stats):
            return None
        return Normalizer(*stats)  # type: ignore[arg-type]

    def cem_config(self, **overrides: Any) -> CEMConfig:
        return CEMConfig(**{**self.cem, **overrides})

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> WorldModelSpec:
        unknown = set(values) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown world model spec keys: {sorted(unknown)}")
        values = {**values}
        for key in ("action_low", "action_high", "action_scale", *NORMALIZATION_KEYS):
            if values.get(key) is not None:
                values[key] = tuple(float(v) for v in values[key])
        return cls(**values)


class WorldModel(nn.Module):
    """Encoder + AC predictor with the encode/plan operations a planner needs."""

    def __init__(
        self, encoder: VisionEncoder, predictor: ACPredictor, spec: WorldModelSpec
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.predictor = predictor
        self.spec = spec

    @torch.no_grad()
    def encode_frames(self, frames: Tensor) -> Tensor:
        """uint8 frames `(B, T, H, W, 3)` -> layer-normed features `(B, T*N, D)`, frame by frame.

        Frames of any size are first brought to the spec's `image_size` (short side resized with
        antialiased bilinear filtering, long side centre-cropped): a camera renders at its own size.
        """
        if frames.dim() != 5:
            raise ValueError(f"frames must be (B, T, H, W, 3), got {tuple(frames.shape)}")
        batch = frames.shape[0]
        frames = resize_frames(frames, self.spec.image_size)  # (B, T, S, S, 3)
        video = frames_to_video(frames.flatten(0, 1).unsqueeze(1))  # (B*T, 3, 1, S, S)
        features = self.encoder(video)  # (B*T, N, D)
        return layer_norm_features(features).reshape(batch, -1, features.shape[-1])  # (B, T*N, D)

    @torch.no_grad()
    def energy_fn(
        self, context: Tensor, states: Tensor, goals: Tensor, metric: EnergyMetric | None = None
    ) -> EnergyFn:
        """The planner's energy for R robots: raw `(R*S, H, A)` actions -> `(R*S,)` energies.

        `context (R, N, D)` are the current frames' features, `states (R, 1, S)` raw states and
        `goals (R, H, W, 3)` uint8 goal images; inputs are normalised as in training. `metric`
        defaults to the spec's CEM setting.
        """
        goal_features = self.encode_frames(goals.unsqueeze(1))  # (R, N, D)
        normalizer = self.spec.normalizer()
        predictor = (
            self.predictor if normalizer is None else NormalizedRollout(self.predictor, normalizer)
        )
        return latent_goal_energy(
            predictor,
            context,
            states.float(),
            goal_features,
            state_update=self.spec.state_update(),
            metric=metric or self.spec.cem_config().energy,
        )

    @torch.no_grad()
    def plan(
        self,
        frames: Tensor,
        states: Tensor,
        goals: Tensor,
        config: CEMConfig | None = None,
        warm_start: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> CEMResult:
        """CEM plans for R robots at once.

        `frames (R, 1, H, W, 3)` uint8 current images, `states (R, 1, S)`, `goals (R, H, W, 3)`
        uint8 goal images; returns plans `(R, H_plan, A)` within the spec's action bounds.
        """
        config = config or self.spec.cem_config()
        context = self.encode_frames(frames)  # (R, N, D)
        energy = self.energy_fn(context, states, goals, config.energy)
        return cem_plan(
            energy,
            num_robots=frames.shape[0],
            action_dim=self.spec.action_dim,
            low=torch.tensor(self.spec.action_low),
            high=torch.tensor(self.spec.action_high),
            config=config,
            warm_start=warm_start,
            generator=generator,
            device=context.device,  # candidates live with the model (a GPU replica plans on it)
        )


def save_world_model(folder: str | Path, model: WorldModel) -> Path:
    """Write the bundle (two safetensors files and the spec) into `folder`."""
    target = Path(folder)
    target.mkdir(parents=True, exist_ok=True)
    save_state(
        target / ENCODER_FILE, "encoder", model.encoder.config.to_dict(), model.encoder.state_dict()
    )
    save_state(
        target / PREDICTOR_FILE,
        "ac_predictor",
        model.predictor.config.to_dict(),
        model.predictor.state_dict(),
    )
    (target / SPEC_FILE).write_text(json.dumps(asdict(model.spec), indent=2, sort_keys=True))
    return target


def load_world_model(folder: str | Path) -> WorldModel:
    """Load a bundle written by `save_world_model`; errors name the missing file."""
    from modeling.ac_checkpoints import load_ac_predictor
    from modeling.checkpoints import load_encoder

    source = Path(folder)
    for name in (SPEC_FILE, ENCODER_FILE, PREDICTOR_FILE):
        if not (source / name).is_file():
            raise FileNotFoundError(f"{source} is not a world model bundle: {name} is missing")
    spec = WorldModelSpec.from_dict(json.loads((source / SPEC_FILE).read_text()))
    encoder = load_encoder(source / ENCODER_FILE)
    predictor = load_ac_predictor(source / PREDICTOR_FILE)
    return WorldModel(encoder, predictor, spec).eval()
