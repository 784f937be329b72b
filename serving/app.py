"""Compose the serving application and write its Serve config file.

`build_app(config)` binds PlannerDeployment, Embedder and (with `vqa.model`) VQA into the Ingress with
their replica settings.
`app_builder(args)` is the `import_path` target of the Serve config (`serve deploy`, KubeRay
RayService `serveConfigV2`): it validates `args` as a `ServingConfig`. `serve_config(config)` is
that file as a dict; the bearer token is referenced by `token_env`, never written.
"""

from __future__ import annotations

import os
from typing import Any, cast

from pydantic import SecretStr
from ray.serve import Application, Deployment

from serving.config import ServingConfig
from serving.embedder import Embedder
from serving.ingress import Ingress
from serving.planner import PlannerDeployment
from serving.proxy_guard import controller_options, logging_config
from serving.vqa import VQA

APP_NAME = "vjepa"
IMPORT_PATH = "serving.app:app_builder"


def _deployment(target: Any) -> Deployment:
    """The decorated classes are `Deployment`s at run time; mypy sees the plain classes."""
    return cast(Deployment, target)


def planner_options(config: ServingConfig) -> dict[str, Any]:
    options = config.planner.deployment_options()
    # a replica must accept at least a full batch at once, or batches can never fill
    batch = config.batching.effective_batch_size
    options["max_ongoing_requests"] = max(options["max_ongoing_requests"], 2 * batch)
    return options


def with_builder_token(config: ServingConfig) -> ServingConfig:
    """Take the token from `token_env` in the process that builds the app, if it is set there.

    Replica processes of a running local Ray do not see variables the driver set after
    `ray.init`; reading the variable here makes both cases work (in a cluster the builder and
    the replicas get it from the same secret). An unset variable is left to the ingress, which
    refuses to start without it.
    """
    value = os.environ.get(config.token_env or "") if config.token is None else None
    if not value:
        return config
    return config.model_copy(update={"token": SecretStr(value)})


def vqa_options(config: ServingConfig) -> dict[str, Any]:
    options = config.vqa.replicas.deployment_options()
    batch = config.vqa.batching.effective_batch_size
    options["max_ongoing_requests"] = max(options["max_ongoing_requests"], 2 * batch)
    return options


def build_app(config: ServingConfig) -> Application:
    """The application graph: Ingress(planner=PlannerDeployment, embedder=Embedder[, vqa=VQA])."""
    config = with_builder_token(config)
    planner = _deployment(PlannerDeployment).options(**planner_options(config)).bind(config)
    embedder = _deployment(Embedder).options(**config.embedder.deployment_options()).bind(config)
    ingress = _deployment(Ingress).options(**config.ingress.deployment_options())
    if config.vqa.model is None:
        return ingress.bind(planner, embedder, config)
    vqa = _deployment(VQA).options(**vqa_options(config)).bind(config)
    return ingress.bind(planner, embedder, config, vqa)


def app_builder(args: dict[str, Any]) -> Application:
    """Entry point for `serve deploy` / `serve run serving.app:app_builder key=value`."""
    return build_app(ServingConfig.model_validate(args))


def serve_config(config: ServingConfig) -> dict[str, Any]:
    """A Serve config (the `serve deploy` file, or a RayService's `serveConfigV2`)."""
    deployments = [
        {"name": "Ingress", **config.ingress.deployment_options()},
        {"name": "Planner", **planner_options(config)},
        {"name": "Embedder", **config.embedder.deployment_options()},
    ]
    if config.vqa.model is not None:
        deployments.append({"name": "VQA", **vqa_options(config)})
    application: dict[str, Any] = {
        "name": APP_NAME,
        "route_prefix": "/",
        "import_path": IMPORT_PATH,
        "args": config.public_dict(),
        "deployments": deployments,
        "logging_config": logging_config(config),
    }
    return {
        "proxy_location": "EveryNode",
        "http_options": {"host": config.host, "port": config.port},
        # the proxies inherit the controller's variables: they run serving.proxy_guard
        "controller_options": controller_options(config),
        "logging_config": logging_config(config),
        "applications": [application],
    }
