"""prefect.yaml: entrypoints import real flows, parameters validate against their signatures,
job variables fit the work pool's base job template, which renders a usable Job."""

from __future__ import annotations

import json
import re
import shlex
from typing import Any

import jsonschema
import pytest
import yaml
from prefect.client.schemas.schedules import CronSchedule
from prefect.exceptions import ParameterTypeError
from prefect.flows import Flow, load_flow_from_entrypoint
from prefect.utilities.templating import apply_values

from .conftest import INFRA, K8S, REPO, constraint_pin, load_documents

PREFECT_YAML = yaml.safe_load((REPO / "prefect.yaml").read_text())
DEPLOYMENTS = [
    pytest.param(d, id=f"{d['entrypoint'].split(':')[1]}/{d['name']}")
    for d in PREFECT_YAML["deployments"]
]
LOCAL_POOL = "vjepa-local"  # the process pool of one machine; every other deployment is on k8s
K8S_DEPLOYMENTS = [d for d in DEPLOYMENTS if d.values[0]["work_pool"]["name"] != LOCAL_POOL]
TEMPLATE = json.loads((K8S / "prefect/base-job-template.json").read_text())
WANTED_FLOWS = {"curate", "pretrain", "probe", "posttrain", "eval-planning", "demo"}


def load_flow(entrypoint: str) -> Flow[Any, Any]:
    path, _, name = entrypoint.partition(":")
    assert re.fullmatch(r"flows/\w+\.py", path) and (REPO / path).is_file(), entrypoint
    flow: Any = load_flow_from_entrypoint(str(REPO / path) + ":" + name)
    assert isinstance(flow, Flow), f"{entrypoint} is not a Prefect flow"
    return flow


def test_every_stage_has_a_deployment() -> None:
    names = {load_flow(d["entrypoint"]).name for d in PREFECT_YAML["deployments"]}
    assert names == WANTED_FLOWS
    assert PREFECT_YAML["prefect-version"] == constraint_pin("prefect")


@pytest.mark.parametrize("deployment", DEPLOYMENTS)
def test_parameters_validate_against_the_flow(deployment: dict[str, Any]) -> None:
    flow = load_flow(deployment["entrypoint"])
    validated = flow.validate_parameters(deployment.get("parameters", {}))
    assert set(validated) >= set(deployment.get("parameters", {}))


def test_bad_parameters_are_caught() -> None:
    flow = load_flow("flows/pretrain.py:pretrain_flow")
    bad = {"config": {"data": "s3://a", "output": "s3://b", "preset": "vitx"}, "scale": {}}
    with pytest.raises(ParameterTypeError, match="vitx"):
        flow.validate_parameters(bad)


def test_curation_settings_are_known() -> None:
    from tasks.curation.config import config_from_mapping

    (curate,) = [
        d
        for d in PREFECT_YAML["deployments"]
        if "curate_flow" in d["entrypoint"] and d["work_pool"]["name"] != LOCAL_POOL
    ]
    config = config_from_mapping(curate["parameters"]["config"])
    assert (config.fps, config.frames, config.size) == (4, 16, 256)


@pytest.mark.parametrize("deployment", DEPLOYMENTS)
def test_schedules_are_valid_and_paused(deployment: dict[str, Any]) -> None:
    for schedule in deployment.get("schedules", []):
        CronSchedule(cron=schedule["cron"], timezone=schedule["timezone"])
        assert schedule["active"] is False, "ship schedules paused (example URIs)"


def render_job(job_variables: dict[str, Any]) -> dict[str, Any]:
    """The work pool's job configuration for these variables, as the worker would build it."""
    properties = TEMPLATE["variables"]["properties"]
    jsonschema.validate(job_variables, {**TEMPLATE["variables"], "additionalProperties": False})
    values = {k: v["default"] for k, v in properties.items() if "default" in v}
    return dict(apply_values(TEMPLATE["job_configuration"], {**values, **job_variables}))


def test_template_placeholders_are_declared() -> None:
    text = json.dumps(TEMPLATE["job_configuration"])
    used = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", text))
    assert used <= set(TEMPLATE["variables"]["properties"])


@pytest.mark.parametrize("deployment", K8S_DEPLOYMENTS)
def test_work_pool_renders_a_job_that_reaches_the_cluster(deployment: dict[str, Any]) -> None:
    pool = deployment["work_pool"]
    assert pool["name"] == "vjepa-k8s"
    job = render_job(pool.get("job_variables", {}))["job_manifest"]
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["image"].split("/")[-1].startswith("vjepa-platform:")
    env = {e["name"]: e for e in container["env"]}
    (cluster,) = load_documents(K8S / "base/raycluster.yaml")
    name = cluster["metadata"]["name"]
    assert env["RAY_JOBS_ADDRESS"]["value"] == f"http://{name}-head-svc:8265"
    token = env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert (token["name"], token["key"]) == (name, "auth_token")
    command = shlex.split(container["args"])
    assert command in (["vjepa-submit-flow-run"], ["prefect", "flow-run", "execute"])
    assert job["metadata"]["namespace"] == cluster_namespace()


def test_bad_job_variables_are_caught() -> None:
    with pytest.raises(jsonschema.ValidationError):
        render_job({"imagee": "x"})


def cluster_namespace() -> str:
    kustomization = yaml.safe_load((K8S / "base/kustomization.yaml").read_text())
    return str(kustomization["namespace"])


def test_code_location_matches_the_image() -> None:
    (step,) = PREFECT_YAML["pull"]
    directory = step["prefect.deployments.steps.set_working_directory"]["directory"]
    dockerfile = (INFRA / "docker/Dockerfile").read_text()
    assert f"WORKDIR {directory}\n" in dockerfile
    assert "COPY flows flows" in dockerfile


def test_flow_runs_use_the_production_image() -> None:
    overlay = yaml.safe_load((K8S / "overlays/gpu/kustomization.yaml").read_text())
    (image,) = overlay["images"]
    wanted = f"{image['newName']}:{image['newTag']}"
    for param in K8S_DEPLOYMENTS:
        assert param.values[0]["work_pool"]["job_variables"]["image"] == wanted


def test_worker_runs_the_pinned_prefect_with_the_kubernetes_integration() -> None:
    documents = load_documents(K8S / "prefect/worker.yaml")
    (deployment,) = [d for d in documents if d["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert (
        container["image"] == f"prefecthq/prefect:{constraint_pin('prefect')}-python3.11-kubernetes"
    )
    command = container["command"]
    pool = command[command.index("--pool") + 1]
    assert {d["work_pool"]["name"] for d in PREFECT_YAML["deployments"]} == {pool, LOCAL_POOL}


def test_local_deployments_run_from_the_checkout() -> None:
    """`prefect worker start --pool vjepa-local` on one machine: curate, pretrain and the demo,
    each pulling from the checkout that VJEPA_HOME names (not the image's /opt/vjepa)."""
    local = [d for d in PREFECT_YAML["deployments"] if d["work_pool"]["name"] == LOCAL_POOL]
    flows = {load_flow(d["entrypoint"]).name for d in local}
    assert {"curate", "pretrain", "demo"} <= flows
    for deployment in local:
        (step,) = deployment["pull"]
        directory = step["prefect.deployments.steps.set_working_directory"]["directory"]
        assert directory == "{{ $VJEPA_HOME }}"
        assert "job_variables" not in deployment["work_pool"]  # no image, no k8s variables
