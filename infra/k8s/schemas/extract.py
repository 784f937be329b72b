"""Vendor the KubeRay CRD schemas that `tests/infra` validates the manifests against.

Reads the CustomResourceDefinitions of KubeRay (RayCluster, RayJob, RayService), takes the
`openAPIV3Schema` of their `v1` version, drops the `description` keywords (prose, most of the
size) and writes one compact JSON file per kind next to this script (`raycluster.json`, ...).
Run it again when the KubeRay version changes and update NOTICE.md with the new commit:

    python infra/k8s/schemas/extract.py /path/to/kuberay/ray-operator/config/crd/bases
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
DEFAULT_SOURCE = HERE.parents[3] / "shared" / "k8s-schemas" / "kuberay"
CRD_FILES = {
    "raycluster": "ray.io_rayclusters.yaml",
    "rayjob": "ray.io_rayjobs.yaml",
    "rayservice": "ray.io_rayservices.yaml",
}
# Keywords whose value maps names to schemas: a property called "description" is a name there.
NAMED_SCHEMAS = ("properties", "patternProperties", "definitions", "$defs")


def strip_descriptions(schema: Any) -> Any:
    """A copy of `schema` without its `description` keywords (property names are kept)."""
    if isinstance(schema, list):
        return [strip_descriptions(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    stripped: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "description":
            continue
        if key in NAMED_SCHEMAS and isinstance(value, dict):
            stripped[key] = {name: strip_descriptions(sub) for name, sub in value.items()}
        else:
            stripped[key] = strip_descriptions(value)
    return stripped


def v1_schema(crd: dict[str, Any]) -> dict[str, Any]:
    """The `openAPIV3Schema` of the CRD's `v1` version."""
    for version in crd["spec"]["versions"]:
        if version["name"] == "v1":
            return dict(version["schema"]["openAPIV3Schema"])
    kind = crd["spec"]["names"]["kind"]
    raise ValueError(f"the {kind} CRD has no v1 version")


def extract(source: Path, target: Path) -> list[Path]:
    """Write `<kind>.json` for each CRD found in `source`; returns the files written."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    written = []
    for name, filename in CRD_FILES.items():
        crd = yaml.load((source / filename).read_text(), Loader=loader)
        schema = strip_descriptions(v1_schema(crd))
        path = target / f"{name}.json"
        path.write_text(json.dumps(schema, sort_keys=True, separators=(",", ":")) + "\n")
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "source",
        nargs="?",
        type=Path,
        default=DEFAULT_SOURCE,
        help="folder holding the ray.io_*.yaml CRDs",
    )
    parser.add_argument("--output", type=Path, default=HERE, help="where the JSON files go")
    args = parser.parse_args(argv)
    missing = [f for f in CRD_FILES.values() if not (args.source / f).is_file()]
    if missing:
        print(f"extract.py: {args.source} lacks {', '.join(missing)}", file=sys.stderr)
        return 2
    for path in extract(args.source, args.output):
        print(f"wrote {path} ({path.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
