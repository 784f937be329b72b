"""Kustomizations: their inputs exist, overlays build (with kubectl) and every object they
build is valid: KubeRay kinds against the CRD schemas, core kinds structurally."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import (
    DNS1123_SUBDOMAIN,
    INFRA,
    KUBERAY_KINDS,
    KUSTOMIZATIONS,
    OVERLAYS,
    containers,
    kubectl_kustomize,
    pod_templates,
    schema_errors,
)

# Secrets the manifests read and that docs/deploy.md tells operators to create (or KubeRay makes).
KNOWN_SECRETS = {"vjepa-s3", "vjepa-serve-token", "prefect-api-key"}
CORE_KINDS = {
    "Namespace", "ServiceAccount", "ConfigMap", "Deployment",
    "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding",
}  # fmt: skip


def kustomization(folder: Path) -> dict[str, Any]:
    return dict(yaml.safe_load((folder / "kustomization.yaml").read_text()))


@pytest.mark.parametrize("folder", KUSTOMIZATIONS, ids=lambda p: str(p.relative_to(INFRA)))
def test_kustomization_inputs_exist(folder: Path) -> None:
    spec = kustomization(folder)
    assert spec["apiVersion"] == "kustomize.config.k8s.io/v1beta1" and spec["resources"]
    for resource in spec["resources"]:
        target = (folder / resource).resolve()
        if target.is_dir():
            assert (target / "kustomization.yaml").is_file(), f"{resource}: not a kustomization"
        else:
            assert target.is_file() and target.parent == folder, f"{resource}: missing or outside"
    for generator in spec.get("configMapGenerator", []):
        for entry in generator.get("files", []):
            assert (folder / entry.split("=")[-1]).is_file(), entry


def check_core_object(obj: dict[str, Any]) -> None:
    """Structural checks of a core object (kubernetes-validate is not a dependency)."""
    kind, name = obj["kind"], obj["metadata"]["name"]
    assert kind in CORE_KINDS, f"unexpected kind {kind}"
    assert DNS1123_SUBDOMAIN.match(name), name
    if kind == "ConfigMap":
        assert all(isinstance(value, str) for value in obj["data"].values())
    if kind == "Deployment":
        labels = obj["spec"]["template"]["metadata"]["labels"]
        assert obj["spec"]["selector"]["matchLabels"].items() <= labels.items()
    if kind in ("Role", "ClusterRole"):
        for rule in obj["rules"]:
            assert rule["apiGroups"] is not None and rule["resources"] and rule["verbs"]
    if kind.endswith("Binding"):
        assert obj["roleRef"]["kind"] in ("Role", "ClusterRole") and obj["subjects"]


def check_references(objects: list[dict[str, Any]]) -> None:
    """Config maps and service accounts the pods use exist; secrets are the documented ones."""
    config_maps = {o["metadata"]["name"] for o in objects if o["kind"] == "ConfigMap"}
    accounts = {o["metadata"]["name"] for o in objects if o["kind"] == "ServiceAccount"}
    for obj in objects:
        if obj["kind"] not in (*KUBERAY_KINDS, "Deployment"):
            continue
        for container in containers(obj):
            for source in container.get("envFrom", []):
                assert source["configMapRef"]["name"] in config_maps
            for env in container.get("env", []):
                assert ("value" in env) != ("valueFrom" in env), env["name"]
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                assert ref is None or ref["name"] in KNOWN_SECRETS, env
        for pod in pod_templates(obj):
            assert pod.get("serviceAccountName", "default") in accounts


@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda p: p.name)
def test_overlay_builds_valid_objects(overlay: Path) -> None:
    objects = kubectl_kustomize(overlay)
    kinds = {obj["kind"] for obj in objects}
    assert {"RayCluster", "RayService", "Deployment"} <= kinds
    for obj in objects:
        assert obj["metadata"].get("namespace", "vjepa") == "vjepa"
        if obj["kind"] in KUBERAY_KINDS:
            assert schema_errors(obj) == [], obj["metadata"]["name"]
            assert "filled from" not in obj["spec"].get("serveConfigV2", "")
        else:
            check_core_object(obj)
    check_references(objects)


def test_cpu_overlay_drops_the_gpu_group_and_points_at_minio() -> None:
    objects = kubectl_kustomize(INFRA / "k8s/overlays/cpu")
    (cluster,) = [o for o in objects if o["kind"] == "RayCluster"]
    assert [g["groupName"] for g in cluster["spec"]["workerGroupSpecs"]] == ["cpu"]
    (env,) = [
        o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "vjepa-env"
    ]
    assert env["data"]["AWS_ENDPOINT_URL"].startswith("http://")


def test_jobs_kustomization_builds_valid_rayjobs() -> None:
    objects = kubectl_kustomize(INFRA / "k8s/jobs")
    assert {o["kind"] for o in objects} == {"RayJob"} and len(objects) == 4
    assert all(schema_errors(o) == [] for o in objects)


def test_reference_check_catches_an_unknown_secret() -> None:
    deployment = yaml.safe_load(
        """
        kind: Deployment
        metadata: {name: x}
        spec:
          template:
            spec:
              containers:
                - name: c
                  image: i
                  env:
                    - {name: A, valueFrom: {secretKeyRef: {name: nope, key: k}}}
        """
    )
    with pytest.raises(AssertionError):
        check_references([deployment])
