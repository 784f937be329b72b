"""RayJob entrypoints parse with the real `vjepa` parser; runtimeEnvYAML is a valid runtime env."""

from __future__ import annotations

import argparse
import shlex
from typing import Any

import pytest
import yaml
from ray.runtime_env import RuntimeEnv

from flows.cli import build_parser
from flows.commands.common import UsageError, scale_config

from .conftest import REPO, load_documents, objects_of_kind

JOBS = [pytest.param(doc, id=doc["metadata"]["name"]) for _, doc in objects_of_kind("RayJob")]
# The URI flags of each training command: in a cluster they must point at shared storage.
URI_FLAGS = ("data", "output", "encoder", "labels", "trajectories", "input")


def parse_entrypoint(entrypoint: str) -> argparse.Namespace:
    words = shlex.split(entrypoint)
    assert words[0] == "vjepa", f"entrypoint must start with vjepa: {entrypoint!r}"
    try:
        return build_parser().parse_args(words[1:])
    except SystemExit as error:  # argparse reports on stderr and exits 2
        raise AssertionError(f"vjepa rejects {entrypoint!r}") from error


@pytest.mark.parametrize("job", JOBS)
def test_entrypoint_parses_with_the_vjepa_cli(job: dict[str, Any]) -> None:
    args = parse_entrypoint(job["spec"]["entrypoint"])
    assert job["metadata"]["name"] == f"vjepa-{args.command}"
    for flag in URI_FLAGS:
        values = getattr(args, flag, None)
        for value in values if isinstance(values, list) else [values]:
            if value is not None:
                assert value.startswith("s3://"), f"--{flag} {value}: pods share no local disk"
    if args.command != "curate":
        assert args.resume and args.json  # a retried job continues; the summary is parseable
        scale_config(args)  # what the command checks before Ray starts (workers, strategy)


def test_a_strategy_the_job_lacks_is_caught() -> None:
    args = parse_entrypoint(
        "vjepa probe --encoder s3://e --data s3://d --labels s3://l --output s3://o --strategy fsdp"
    )
    with pytest.raises(UsageError, match="fsdp"):
        scale_config(args)


def test_a_bad_entrypoint_is_caught() -> None:
    with pytest.raises(AssertionError, match="rejects"):
        parse_entrypoint("vjepa pretrain --data s3://a --output s3://b --workerz 8")


def _gpu_pod_limits() -> tuple[int, int, float]:
    """(max GPU pods, GPUs per pod, CPUs per pod) of the shared cluster's GPU group."""
    (cluster,) = load_documents(REPO / "infra/k8s/base/raycluster.yaml")
    group = next(g for g in cluster["spec"]["workerGroupSpecs"] if g["groupName"] == "gpu")
    limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
    return int(group["maxReplicas"]), int(limits["nvidia.com/gpu"]), float(limits["cpu"])


@pytest.mark.parametrize("job", JOBS)
def test_gpu_jobs_fit_the_gpu_group(job: dict[str, Any]) -> None:
    args = parse_entrypoint(job["spec"]["entrypoint"])
    if getattr(args, "gpu", False):
        pods, gpus_per_pod, cpus_per_pod = _gpu_pod_limits()
        assert args.workers <= pods * gpus_per_pod, "more GPU workers than the group can hold"
        assert args.cpus_per_worker * gpus_per_pod < cpus_per_pod, "leave CPUs for Ray Data"


@pytest.mark.parametrize("job", JOBS)
def test_runtime_env_yaml_is_a_valid_runtime_env(job: dict[str, Any]) -> None:
    runtime_env = yaml.safe_load(job["spec"]["runtimeEnvYAML"])
    assert isinstance(runtime_env, dict)
    assert set(runtime_env) <= RuntimeEnv.known_fields, "unknown runtime_env field"
    RuntimeEnv(**runtime_env)  # raises on wrong types, e.g. a non-string env var value
    assert runtime_env["env_vars"]["PYTHONUNBUFFERED"] == "1"


def test_runtime_env_check_catches_a_number_value() -> None:
    with pytest.raises(TypeError):
        RuntimeEnv(**yaml.safe_load("env_vars:\n  PYTHONUNBUFFERED: 1\n"))
