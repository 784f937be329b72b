"""KubeRay manifests: CRD schema (v1, strict fields) and the operator rules that matter here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from .conftest import (
    DNS1035,
    KUBERAY_KINDS,
    REPO,
    all_objects,
    constraint_pin,
    containers,
    deep_copy,
    load_documents,
    objects_of_kind,
    pod_templates,
    rendered_serve_kustomization,
    schema_errors,
)

KUBERAY_LIST = [(path, doc) for path, doc in all_objects() if doc.get("kind") in KUBERAY_KINDS]
KUBERAY_OBJECTS = [
    pytest.param(doc, id=f"{path.relative_to(REPO)}:{doc['metadata']['name']}")
    for path, doc in KUBERAY_LIST
]
SHARED_CLUSTER = REPO / "infra/k8s/base/raycluster.yaml"


def cluster_spec(obj: dict[str, Any]) -> dict[str, Any] | None:
    spec = obj["spec"]
    return {"RayCluster": spec, "RayService": spec.get("rayClusterConfig")}.get(
        obj["kind"], spec.get("rayClusterSpec")
    )


def test_every_kind_is_shipped() -> None:
    kinds = {doc["kind"] for _, doc in KUBERAY_LIST}
    assert kinds == set(KUBERAY_KINDS)
    jobs = {doc["metadata"]["name"] for _, doc in objects_of_kind("RayJob")}
    assert {"vjepa-curate", "vjepa-pretrain", "vjepa-probe", "vjepa-posttrain"} <= jobs


@pytest.mark.parametrize("obj", KUBERAY_OBJECTS)
def test_validates_against_the_crd_schema(obj: dict[str, Any]) -> None:
    if obj["kind"] == "RayService":  # as kustomize builds it, serveConfigV2 filled in
        obj = rendered_serve_kustomization()[0]
    assert schema_errors(obj) == []


@pytest.mark.parametrize(
    ("path", "value", "words"),
    [
        (("spec", "headGroupSpec", "rayStartParam"), {}, "rayStartParam"),
        (("spec", "workerGroupSpecs", 0, "minReplicas"), "1", "is not of type 'integer'"),
        (("spec", "autoscalerOptions", "version"), "v3", "is not one of"),
    ],
)
def test_the_schema_check_catches_mistakes(path: tuple[Any, ...], value: Any, words: str) -> None:
    broken = deep_copy(load_documents(SHARED_CLUSTER)[0])
    target = broken
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    assert any(words in error for error in schema_errors(broken))


@pytest.mark.parametrize("obj", KUBERAY_OBJECTS)
def test_names_are_dns1035_labels(obj: dict[str, Any]) -> None:
    name = obj["metadata"]["name"]
    # KubeRay's limits: "<cluster>-serve-svc" must fit 63 characters, and RayJob / RayService
    # names get a 6-character suffix for the cluster they create.
    limit = 53 if obj["kind"] == "RayCluster" else 47
    assert DNS1035.match(name) and len(name) <= limit, name


@pytest.mark.parametrize("obj", KUBERAY_OBJECTS)
def test_clusters_follow_kuberay_rules(obj: dict[str, Any]) -> None:
    spec = cluster_spec(obj)
    if spec is None:
        return
    assert spec["rayVersion"] == constraint_pin("ray"), "rayVersion must match the image's ray"
    images = {c["image"] for c in containers(obj)}
    assert len(images) == 1, f"head and workers must run one image, got {images}"
    groups = [spec["headGroupSpec"], *spec.get("workerGroupSpecs", [])]
    for group in groups:
        assert group["template"]["spec"]["containers"], "each group needs a Ray container"
        start = group.get("rayStartParams", {})
        if {"num-cpus", "num-gpus", "memory", "resources"} & set(start):
            assert not group.get("resources"), "resources in both rayStartParams and resources"
        assert "labels" not in start, "use the group's labels field"
    for group in spec.get("workerGroupSpecs", []):
        assert group["minReplicas"] <= group.get("replicas", 0) <= group["maxReplicas"]
    if spec.get("enableInTreeAutoscaling"):
        for pod in pod_templates(obj):
            assert pod.get("restartPolicy", "Never") == "Never"


@pytest.mark.parametrize("obj", KUBERAY_OBJECTS)
def test_ray_token_auth_is_on(obj: dict[str, Any]) -> None:
    spec = cluster_spec(obj)
    if spec is not None:
        assert spec.get("authOptions", {}).get("mode") == "token"


def test_shared_cluster_has_cpu_and_gpu_groups_that_autoscale() -> None:
    (cluster,) = load_documents(SHARED_CLUSTER)
    spec = cluster["spec"]
    assert spec["enableInTreeAutoscaling"] is True
    assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    groups = {group["groupName"]: group for group in spec["workerGroupSpecs"]}
    assert set(groups) == {"cpu", "gpu"}
    gpu = groups["gpu"]["template"]["spec"]["containers"][0]["resources"]
    assert gpu["limits"]["nvidia.com/gpu"] == "1"
    assert "nvidia.com/gpu" not in groups["cpu"]["template"]["spec"]["containers"][0]["resources"]
    assert groups["gpu"]["minReplicas"] == 0  # GPUs only while a job needs them


def _secret_refs(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        env["name"]: env["valueFrom"]["secretKeyRef"]
        for env in container.get("env", [])
        if "secretKeyRef" in env.get("valueFrom", {})
    }


@pytest.mark.parametrize(
    "obj", [doc for _, doc in KUBERAY_LIST if doc["kind"] in ("RayCluster", "RayService")]
)
def test_s3_credentials_come_from_the_secret(obj: dict[str, Any]) -> None:
    for container in containers(obj):
        refs = _secret_refs(container)
        assert refs["AWS_ACCESS_KEY_ID"]["name"] == "vjepa-s3"
        assert refs["AWS_SECRET_ACCESS_KEY"]["name"] == "vjepa-s3"
        assert {"configMapRef": {"name": "vjepa-env"}} in container["envFrom"]


def test_every_serving_container_gets_the_bearer_token_from_a_required_secret() -> None:
    ((_, service),) = objects_of_kind("RayService")
    for container in containers(service):
        ref = _secret_refs(container)["VJEPA_SERVE_TOKEN"]
        assert ref == {"name": "vjepa-serve-token", "key": "token"}  # not optional


def test_no_secret_values_are_committed() -> None:
    for path, doc in all_objects():
        assert doc["kind"] != "Secret", f"{path} holds a Secret; create secrets out of band"
        for container in containers(doc) if doc["kind"] in (*KUBERAY_KINDS, "Deployment") else []:
            for env in container.get("env", []):
                if any(word in env["name"] for word in ("SECRET", "TOKEN", "PASSWORD", "KEY")):
                    assert "value" not in env, f"{path}: {env['name']} is a literal"


@pytest.mark.parametrize("path", sorted((REPO / "infra/k8s/jobs").glob("*.yaml")))
def test_jobs_run_on_the_shared_cluster(path: Path) -> None:
    if path.name == "kustomization.yaml":
        return
    ((cluster,),) = [load_documents(SHARED_CLUSTER)]
    for job in load_documents(path):
        spec = job["spec"]
        assert spec["clusterSelector"] == {"ray.io/cluster": cluster["metadata"]["name"]}
        assert "rayClusterSpec" not in spec
        assert spec.get("submissionMode", "K8sJobMode") != "SidecarMode"
        # KubeRay: no TTL without shutdownAfterJobFinishes, no suspend with a clusterSelector
        assert not spec.get("shutdownAfterJobFinishes") and "ttlSecondsAfterFinished" not in spec
        assert not spec.get("suspend")
        assert spec.get("activeDeadlineSeconds", 1) > 0 and spec.get("backoffLimit", 0) >= 0
