"""`tasks.runtime`: local URIs and the worker hook that quiets dashboard-less Ray's noise."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
import ray.train.v2._internal.execution.context as train_context

from tasks.runtime import NOISY_LOGGERS, last_ray_start_is_alive, local_uri, quiet_ray_workers


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


def test_a_stale_ray_start_address_is_not_joined(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A SIGKILLed `ray start` head leaves Ray's ray_current_cluster file behind; ray.init()
    # would retry that dead GCS forever, so ensure_ray joins only a cluster that answers.
    import socket

    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    assert not last_ray_start_is_alive()  # no file
    (tmp_path / "ray").mkdir()
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        (tmp_path / "ray" / "ray_current_cluster").write_text(f"127.0.0.1:{port}\n")
        assert last_ray_start_is_alive()
    assert not last_ray_start_is_alive(timeout_s=0.5)  # the head is gone, its file is not
