"""Helpers for the infra tests: load the manifests, validate KubeRay objects offline.

KubeRay objects are checked against the vendored CRD schemas (`infra/k8s/schemas/*.json`) made
strict the way `kubectl apply` (strict field validation) is: an unknown field is an error,
not silently pruned. Rendering with kustomize needs `kubectl` or `kustomize`; without them
those tests skip.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
K8S = INFRA / "k8s"
SERVE = INFRA / "serve"
SCHEMAS = K8S / "schemas"
KUBERAY_KINDS = {"RayCluster": "raycluster", "RayJob": "rayjob", "RayService": "rayservice"}
# Files under infra/ that hold Kubernetes objects; serve-config.yaml is a Serve config instead.
NOT_MANIFESTS = {"kustomization.yaml", "serve-config.yaml"}
KUSTOMIZATIONS = sorted(path.parent for path in INFRA.rglob("kustomization.yaml"))
OVERLAYS = sorted((K8S / "overlays").iterdir())
DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def load_documents(path: Path) -> list[dict[str, Any]]:
    """Every non-empty YAML document of a file."""
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def manifest_files() -> list[Path]:
    """The YAML files of infra/ that hold Kubernetes objects."""
    files = [*K8S.rglob("*.yaml"), *SERVE.glob("*.yaml")]
    return sorted(path for path in files if path.name not in NOT_MANIFESTS)


def all_objects() -> list[tuple[Path, dict[str, Any]]]:
    return [(path, doc) for path in manifest_files() for doc in load_documents(path)]


def objects_of_kind(kind: str) -> list[tuple[Path, dict[str, Any]]]:
    return [(path, doc) for path, doc in all_objects() if doc.get("kind") == kind]


def constraint_pin(package: str) -> str:
    """The version `infra/constraints.txt` pins for `package`."""
    text = (INFRA / "constraints.txt").read_text()
    match = re.search(rf"^{re.escape(package)}==(\S+)$", text, re.MULTILINE | re.IGNORECASE)
    assert match, f"infra/constraints.txt pins no {package}"
    return match.group(1)


def strict(schema: Any) -> Any:
    """A copy of an OpenAPI v3 schema where objects with listed properties allow no others."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    result: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "properties":  # names mapped to schemas, not a schema itself
            result[key] = {name: strict(sub) for name, sub in value.items()}
        else:
            result[key] = strict(value)
    if "properties" in schema:
        open_ended = schema.get("x-kubernetes-preserve-unknown-fields", False)
        if "additionalProperties" not in schema and not open_ended:
            result["additionalProperties"] = False
    return result


@cache
def kuberay_validator(kind: str) -> jsonschema.Draft7Validator:
    schema = json.loads((SCHEMAS / f"{KUBERAY_KINDS[kind]}.json").read_text())
    return jsonschema.Draft7Validator(strict(schema))


def schema_errors(obj: dict[str, Any]) -> list[str]:
    """Schema violations of a RayCluster/RayJob/RayService, one line each."""
    assert obj.get("apiVersion") == "ray.io/v1", f"{obj.get('kind')} must be ray.io/v1"
    errors = kuberay_validator(obj["kind"]).iter_errors(obj)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors]


def pod_templates(obj: dict[str, Any]) -> list[dict[str, Any]]:
    """The pod specs of a RayCluster/RayService/RayJob cluster (head first), or of a Deployment."""
    spec = obj["spec"]
    if obj["kind"] == "Deployment":
        return [spec["template"]["spec"]]
    cluster = {"RayCluster": spec, "RayService": spec.get("rayClusterConfig")}.get(
        obj["kind"], spec.get("rayClusterSpec")
    )
    if not cluster:
        return []
    groups = [cluster["headGroupSpec"], *cluster.get("workerGroupSpecs", [])]
    return [group["template"]["spec"] for group in groups]


def containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for pod in pod_templates(obj) for c in pod["containers"]]


def rendered_serve_kustomization() -> list[dict[str, Any]]:
    """What `kubectl kustomize infra/serve` builds: serve-config.yaml as the serveConfigV2."""
    objects = load_documents(SERVE / "rayservice.yaml")
    for obj in objects:
        if obj["kind"] == "RayService":
            obj["spec"]["serveConfigV2"] = (SERVE / "serve-config.yaml").read_text()
    return objects


def kubectl_kustomize(folder: Path) -> list[dict[str, Any]]:
    """Render a kustomization with `kubectl kustomize` (or `kustomize build`); skips without."""
    if kubectl := shutil.which("kubectl"):
        command = [kubectl, "kustomize", str(folder)]
    elif kustomize := shutil.which("kustomize"):
        command = [kustomize, "build", str(folder)]
    else:
        pytest.skip("neither kubectl nor kustomize is installed")
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stderr}"
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def deep_copy(obj: dict[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(obj)
