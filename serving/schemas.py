"""Request and response models of the HTTP API, and their validation against a model's spec.

Metadata (`/v1/models`, `/healthz`, errors) is JSON; plan and embed bodies are msgpack maps
(`serving.codec`) parsed here into pydantic models holding numpy arrays, checked field by field
against the chosen model (image size, state size, horizon, action size).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from serving.codec import (
    RequestError,
    check_array,
    decode_array,
    optional_int,
    optional_str,
    required,
)
from serving.vqa_schemas import VQAInfo

PLAN_FIELDS = ("frames", "state", "goal", "previous_plan", "model", "seed")
EMBED_FIELDS = ("frames", "pool")
FLOATS = ("float32", "float64")
MAX_SEED = 2**63 - 1
MIN_IMAGE_SIDE = 16


class ModelInfo(BaseModel):
    """What a robot needs to know to talk to one served world model."""

    name: str
    image_size: int
    action_dim: int
    state_dim: int
    action_low: list[float]
    action_high: list[float]
    horizon: int
    control_fps: float
    num_samples: int
    num_iterations: int


class EncoderInfo(BaseModel):
    """The `/v1/embed` encoder: input grid and output width."""

    patch_size: int
    tubelet_size: int
    embed_dim: int


class ModelsResponse(BaseModel):
    default_model: str
    models: list[ModelInfo]
    encoder: EncoderInfo
    batching: bool
    max_batch_size: int
    vqa: VQAInfo | None = None  # the /v1/vqa model, when one is served


class HealthResponse(BaseModel):
    status: str = "ok"


class ErrorResponse(BaseModel):
    detail: str
    field: str | None = None


class _Arrays(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)


class PlanRequest(_Arrays):
    """One robot's planning request, validated: frames `(1, H, W, 3)`, state `(1, S)`."""

    model: str
    frames: np.ndarray  # (1, H, W, 3) uint8
    state: np.ndarray  # (1, S) float32
    goal: np.ndarray  # (H, W, 3) uint8
    previous_plan: np.ndarray | None = None  # (H_plan, A) float32
    seed: int | None = None


class PlanResult(_Arrays):
    """The planner's answer for one robot (also what `PlannerClient.plan` returns)."""

    actions: np.ndarray  # (H_plan, A) float32
    energy: float
    model: str
    # std / mean of the first CEM iteration's candidate energies: how much the model's energy
    # depends on the action here (None: not reported, e.g. an older server)
    energy_spread: float | None = None
    # True: the spread was below the model's noise floor (`min_relative_spread`), so the planner
    # declined to act: `actions` is the centre of the bounds (the no-op) and the client should
    # not warm-start the next request from it
    noop: bool = False
    batch_size: int = 1
    queue_ms: float = 0.0
    plan_ms: float = 0.0
    server_ms: float = 0.0

    def to_message(self) -> dict[str, Any]:
        return {
            "actions": self.actions.astype(np.float32),
            "energy": float(self.energy),
            "model": self.model,
            "energy_spread": None if self.energy_spread is None else float(self.energy_spread),
            "noop": bool(self.noop),
            "timing": {
                "batch_size": self.batch_size,
                "queue_ms": self.queue_ms,
                "plan_ms": self.plan_ms,
                "server_ms": self.server_ms,
            },
        }


class EmbedRequest(_Arrays):
    frames: np.ndarray  # (B, T, H, W, 3) uint8
    batched: bool  # the client sent (B, T, H, W, 3) rather than (T, H, W, 3)
    pool: bool = False


def parse_plan(
    message: dict[str, Any],
    models: dict[str, ModelInfo],
    default_model: str,
    max_size: int = 1024,
) -> PlanRequest:
    """Validate a decoded `/v1/plan` map against the requested model's spec.

    Cameras render at their own size: frames and goal may be any `H x W` with sides in
    `[16, max_size]`; they are resized (short side, antialiased, centre crop) to the model's
    `image_size` here, so the planner only ever sees the size it was trained at.
    """
    name = optional_str(message, "model") or default_model
    if name not in models:
        raise RequestError(404, f"unknown model '{name}'; served: {sorted(models)}", "model")
    info = models[name]
    frames = check_array(
        "frames",
        decode_array("frames", required(message, "frames")),
        [(None, None, 3), (1, None, None, 3)],
        ["uint8"],
    )
    state = check_array(
        "state",
        decode_array("state", required(message, "state")),
        [(info.state_dim,), (1, info.state_dim)],
        FLOATS,
    )
    goal = check_array(
        "goal", decode_array("goal", required(message, "goal")), [(None, None, 3)], ["uint8"]
    )
    previous = None
    if message.get("previous_plan") is not None:
        previous = check_array(
            "previous_plan",
            decode_array("previous_plan", message["previous_plan"]),
            [(info.horizon, info.action_dim)],
            FLOATS,
        ).astype(np.float32)
    return PlanRequest(
        model=name,
        frames=to_model_size("frames", frames.reshape(frames.shape[-3:]), info, max_size)[None],
        state=state.astype(np.float32).reshape(1, info.state_dim),
        goal=to_model_size("goal", goal, info, max_size),
        previous_plan=previous,
        seed=optional_int(message, "seed", 0, MAX_SEED),
    )


def to_model_size(field: str, image: np.ndarray, info: ModelInfo, max_size: int) -> np.ndarray:
    """A uint8 image `(H, W, 3)` resized to the model's `(S, S, 3)`; 422 for unusable sizes."""
    height, width = image.shape[:2]
    if min(height, width) < MIN_IMAGE_SIDE or max(height, width) > max_size:
        raise RequestError(
            422,
            f"field '{field}' is {height}x{width}; image sides must be within "
            f"[{MIN_IMAGE_SIDE}, {max_size}] (the model plans at {info.image_size}x{info.image_size})",
            field,
        )
    if height == width == info.image_size:
        return image
    import torch

    from modeling.preprocess import resize_frames

    return resize_frames(torch.from_numpy(image), info.image_size).numpy()  # (S, S, 3)


def parse_embed(
    message: dict[str, Any], encoder: EncoderInfo, max_frames: int, max_size: int
) -> EmbedRequest:
    """Validate a decoded `/v1/embed` map: frames `(T, H, W, 3)` or `(B, T, H, W, 3)` uint8."""
    frames = check_array(
        "frames",
        decode_array("frames", required(message, "frames")),
        [(None, None, None, 3), (None, None, None, None, 3)],
        ["uint8"],
    )
    batched = frames.ndim == 5
    clip = frames if batched else frames[None]  # (B, T, H, W, 3)
    count, steps, height, width = clip.shape[:4]
    patch, tubelet = encoder.patch_size, encoder.tubelet_size
    problems = []
    if min(clip.shape) == 0:
        problems.append("no axis may be empty")
    if steps % tubelet:
        problems.append(f"T={steps} must be a multiple of the tubelet size {tubelet}")
    if height % patch or width % patch:
        problems.append(f"H={height} and W={width} must be multiples of the patch size {patch}")
    if max(height, width) > max_size:
        problems.append(f"H and W must be <= {max_size}")
    if count * steps > max_frames:
        problems.append(f"B*T={count * steps} frames exceed the limit of {max_frames}")
    if problems:
        raise RequestError(
            422, f"field 'frames' {tuple(frames.shape)}: " + "; ".join(problems), "frames"
        )
    pool = message.get("pool", False)
    if not isinstance(pool, bool):
        raise RequestError(422, "field 'pool' must be a boolean", "pool")
    return EmbedRequest(frames=clip, batched=batched, pool=pool)
