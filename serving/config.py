"""Typed configuration of the serving application.

One `ServingConfig` describes everything `serving.app.build_app` needs: the world models by name
(the first is the default), the encoder used by `/v1/embed`, the bearer token (a secret value for
a local run, or the name of an environment variable a replica reads at start), request limits,
cross-request batching and the replica/autoscaling settings of each deployment. The same model
is the `args` of the Serve config file (`serve deploy`, KubeRay `serveConfigV2`); the secret value
itself is never written out.
"""

from __future__ import annotations

import os
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from modeling.vlm_prompts import MAX_QUESTION_CHARS

MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MiB = 1024 * 1024


class ConfigError(ValueError):
    """The serving configuration is unusable (bad model name, missing token variable...)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Limits(_Strict):
    """Request limits enforced by the ingress before any model work."""

    max_body_bytes: int = Field(default=8 * MiB, ge=1024)
    max_embed_frames: int = Field(default=64, ge=1, description="frames per /v1/embed request")
    max_image_size: int = Field(
        default=512, ge=16, description="largest image side accepted by /v1/embed and /v1/plan"
    )
    max_header_bytes: int = Field(
        default=64 * 1024, ge=4096, description="request line + headers (431 above it)"
    )
    header_timeout_s: float = Field(
        default=10.0, gt=0, description="time a client has to send its headers (then 408)"
    )


class Batching(_Strict):
    """Cross-request batching of the planner (and embedder) replicas."""

    enabled: bool = True
    max_batch_size: int = Field(default=64, ge=1)
    wait_timeout_s: float = Field(default=0.005, ge=0.0, le=1.0)

    @property
    def effective_batch_size(self) -> int:
        return self.max_batch_size if self.enabled else 1


class Replicas(_Strict):
    """Replica count (fixed) or an autoscaling range, and the resources of one replica."""

    num_replicas: int | None = Field(default=1, ge=1)
    min_replicas: int = Field(default=1, ge=0)
    max_replicas: int | None = Field(default=None, ge=1)
    target_ongoing_requests: float = Field(default=16.0, gt=0)
    num_cpus: float = Field(default=1.0, gt=0)
    num_gpus: float = Field(default=0.0, ge=0)
    max_ongoing_requests: int = Field(default=128, ge=1)

    @model_validator(mode="after")
    def _check_range(self) -> Replicas:
        if self.max_replicas is not None and self.max_replicas < max(self.min_replicas, 1):
            raise ValueError("max_replicas must be >= min_replicas and >= 1")
        return self

    @property
    def autoscaling(self) -> bool:
        return self.max_replicas is not None

    def deployment_options(self) -> dict[str, Any]:
        """Keyword arguments for `Deployment.options` (and the Serve config's `deployments`)."""
        options: dict[str, Any] = {
            "ray_actor_options": {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus},
            "max_ongoing_requests": self.max_ongoing_requests,
        }
        if self.autoscaling:
            options["autoscaling_config"] = {
                "min_replicas": self.min_replicas,
                "max_replicas": self.max_replicas,
                "target_ongoing_requests": self.target_ongoing_requests,
            }
        else:
            options["num_replicas"] = self.num_replicas
        return options


class VQASettings(_Strict):
    """The `/v1/vqa` deployment: its model, request limits, batching and replicas."""

    model: str | None = Field(default=None, description="VQA model folder (local or s3://)")
    encoder: str | None = Field(default=None, description="override the encoder vlm.json names")
    lm: str | None = Field(default=None, description="override the LM folder vlm.json names")
    image_size: int | None = Field(
        default=None, ge=16, description="side a video body is decoded to (default: the model's)"
    )
    max_question_chars: int = Field(default=MAX_QUESTION_CHARS, ge=1, le=MAX_QUESTION_CHARS)
    max_frames: int = Field(default=64, ge=2, description="frames per /v1/vqa clip")
    max_new_tokens: int = Field(default=64, ge=1, description="largest max_new_tokens accepted")
    default_new_tokens: int = Field(default=32, ge=1)
    max_video_bytes: int = Field(default=32 * MiB, ge=1024, description="encoded video body")
    video_timeout_s: float = Field(default=30.0, gt=0, description="ffmpeg decode time limit")
    fps: float = Field(default=4.0, gt=0, description="frame rate a video body is decoded at")
    batching: Batching = Batching(max_batch_size=16, wait_timeout_s=0.01)
    replicas: Replicas = Replicas(max_ongoing_requests=64)

    @model_validator(mode="after")
    def _check_tokens(self) -> VQASettings:
        if self.default_new_tokens > self.max_new_tokens:
            raise ValueError("default_new_tokens must be <= max_new_tokens")
        return self


class ServingConfig(_Strict):
    """The whole application: models by name (first = default), encoder, auth, limits, replicas."""

    models: dict[str, str] = Field(description="model name -> world model bundle URI")
    encoder: str | None = Field(default=None, description="encoder checkpoint for /v1/embed")
    token: SecretStr | None = Field(default=None, exclude=True)
    token_env: str | None = None
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    cache_dir: str = "~/.cache/vjepa/serving"
    torch_threads: int | None = Field(default=None, ge=1)
    access_log: bool = Field(default=False, description="one log line per request (Serve's)")
    limits: Limits = Limits()
    batching: Batching = Batching()
    planner: Replicas = Replicas()
    embedder: Replicas = Replicas(num_cpus=0.5)
    ingress: Replicas = Replicas(num_cpus=0.1, max_ongoing_requests=512)
    vqa: VQASettings = VQASettings()

    @field_validator("models")
    @classmethod
    def _check_models(cls, models: dict[str, str]) -> dict[str, str]:
        if not models:
            raise ValueError("at least one model is needed")
        for name, uri in models.items():
            if not MODEL_NAME.match(name):
                raise ValueError(f"model name {name!r} must match {MODEL_NAME.pattern}")
            if not uri.strip():
                raise ValueError(f"model {name!r} has an empty URI")
        return models

    @property
    def default_model(self) -> str:
        return next(iter(self.models))

    @property
    def encoder_uri(self) -> str:
        """The encoder for `/v1/embed`: `encoder`, else the default bundle's encoder file."""
        if self.encoder:
            return self.encoder
        return self.models[self.default_model].rstrip("/") + "/encoder.safetensors"

    def resolve_token(self) -> str | None:
        """The bearer token, or None when auth is off; a named but unset variable is an error."""
        if self.token is not None:
            value = self.token.get_secret_value().strip()
        elif self.token_env:
            # a Kubernetes secret made with --from-file ends with a newline
            value = os.environ.get(self.token_env, "").strip()
            if not value:
                raise ConfigError(f"token_env {self.token_env} is set but the variable is empty")
        else:
            return None
        if len(value) < 8:
            raise ConfigError("the bearer token must be at least 8 characters")
        return value

    def public_dict(self) -> dict[str, Any]:
        """JSON-ready dict without the secret (the Serve config file's `args`)."""
        return self.model_dump(mode="json", exclude={"token"})


def parse_checkpoints(values: list[str]) -> dict[str, str]:
    """`["NAME=URI", ...]` -> ordered `{NAME: URI}`; a bare URI gets the name `default`."""
    models: dict[str, str] = {}
    for value in values:
        name, sep, uri = value.partition("=")
        if not sep:
            name, uri = "default", value
        name, uri = name.strip(), uri.strip()
        if not uri:
            raise ConfigError(f"--checkpoint {value!r}: expected NAME=URI")
        if not MODEL_NAME.match(name):
            raise ConfigError(f"--checkpoint {value!r}: model name must match {MODEL_NAME.pattern}")
        if name in models:
            raise ConfigError(f"--checkpoint: model name {name!r} is given twice")
        models[name] = uri
    if not models:
        raise ConfigError("give at least one --checkpoint NAME=URI")
    return models
