"""Fixtures for the serving tests: random-weight world model bundles and a running Serve app.

`run_app` starts Serve on a free loopback port and ALWAYS shuts it down afterwards, so the
shared 2-CPU Ray cluster gets its CPUs back for the other areas' tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch

from flows.local_serve import free_port
from modeling.ac_predictor import ACPredictor, ac_tiny
from modeling.encoder import VisionEncoder, tiny
from modeling.world_model import WorldModel, WorldModelSpec, save_world_model
from serving.client import wait_healthy
from serving.config import Replicas, ServingConfig

SMALL_CEM = {"num_samples": 16, "num_elites": 4, "num_iterations": 2, "horizon": 2}


def tiny_world_model(action_dim: int = 2, state_dim: int = 2, seed: int = 0) -> WorldModel:
    """A random-weights world model on 64 px images (tiny encoder, 2-block AC predictor)."""
    torch.manual_seed(seed)
    spec = WorldModelSpec(
        image_size=64,
        action_dim=action_dim,
        state_dim=state_dim,
        action_low=(-1.0,) * action_dim,
        action_high=(1.0,) * action_dim,
        cem=SMALL_CEM,
    )
    predictor = ACPredictor(ac_tiny(action_dim=action_dim, state_dim=state_dim))
    return WorldModel(VisionEncoder(tiny()), predictor, spec).eval()


@pytest.fixture(scope="session")
def bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved bundle: 2-D actions and states."""
    return save_world_model(tmp_path_factory.mktemp("arm"), tiny_world_model())


@pytest.fixture(scope="session")
def cart_bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second bundle with another embodiment: 3-D actions and states."""
    model = tiny_world_model(action_dim=3, state_dim=3, seed=1)
    return save_world_model(tmp_path_factory.mktemp("cart"), model)


@contextmanager
def run_app(config: ServingConfig) -> Iterator[str]:
    """Serve `config` on 127.0.0.1:<free port>; yields the base URL; always shuts Serve down."""
    from ray import serve

    from serving.app import APP_NAME, build_app
    from serving.proxy_guard import logging_config, start_options

    port = free_port()
    config = config.model_copy(update={"host": "127.0.0.1"})
    try:
        serve.start(**start_options(config, port))
        serve.run(
            build_app(config),
            name=APP_NAME,
            route_prefix="/",
            logging_config=logging_config(config),
        )
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url)
        yield url
    finally:
        serve.shutdown()


def small_replicas(**overrides: Any) -> Replicas:
    """Replica settings that fit the shared 2-CPU test cluster."""
    return Replicas(
        **{"num_replicas": 1, "num_cpus": 0.25, "max_ongoing_requests": 64, **overrides}
    )
