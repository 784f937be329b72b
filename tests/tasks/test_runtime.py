"""`tasks.runtime`: local URIs and the worker hook that quiets dashboard-less Ray's noise."""

from __future__ import annotations

import logging
import os

import ray.train.v2._internal.execution.context as train_context

from tasks.runtime import NOISY_LOGGERS, local_uri, quiet_ray_workers


def test_local_uri_makes_paths_absolute_and_keeps_uris() -> None:
    assert local_uri("s3://bucket/x") == "s3://bucket/x"
    assert local_uri("runs/a") == os.path.join(os.getcwd(), "runs", "a")


def test_quiet_ray_workers_raises_the_noisy_loggers_levels() -> None:
    names = [*NOISY_LOGGERS, train_context.__file__]
    before = {name: logging.getLogger(name).level for name in names}
    try:
        quiet_ray_workers()
        assert all(logging.getLogger(n).level >= logging.WARNING for n in names)
        # the per-report INFO line of Ray Train is gone, its warnings are not
        assert not train_context.logger.isEnabledFor(logging.INFO)
        assert train_context.logger.isEnabledFor(logging.WARNING)
    finally:
        for name, level in before.items():
            logging.getLogger(name).setLevel(level)
