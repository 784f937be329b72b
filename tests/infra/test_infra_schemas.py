"""The vendored KubeRay schemas: reproducible from the CRDs, descriptions gone, names kept."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

from .conftest import KUBERAY_KINDS, SCHEMAS


def extract_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("kuberay_extract", SCHEMAS / "extract.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_descriptions_are_stripped_but_properties_named_description_stay() -> None:
    schema = {
        "description": "prose",
        "type": "object",
        "properties": {"description": {"type": "string", "description": "more prose"}},
        "items": [{"description": "x", "type": "integer"}],
    }
    assert extract_module().strip_descriptions(schema) == {
        "type": "object",
        "properties": {"description": {"type": "string"}},
        "items": [{"type": "integer"}],
    }


def test_vendored_schemas_are_complete_and_stripped() -> None:
    strip = extract_module().strip_descriptions
    for kind, name in KUBERAY_KINDS.items():
        schema = json.loads((SCHEMAS / f"{name}.json").read_text())
        assert set(schema["properties"]) >= {"apiVersion", "kind", "metadata", "spec"}, kind
        assert strip(schema) == schema, f"{name}.json still holds descriptions"
    notice = " ".join((SCHEMAS / "NOTICE.md").read_text().split())
    assert "Apache License, Version 2.0" in notice and "feeaf72" in notice


def test_extract_reproduces_the_vendored_files(tmp_path: Path) -> None:
    module = extract_module()
    if not all((module.DEFAULT_SOURCE / f).is_file() for f in module.CRD_FILES.values()):
        pytest.skip("the KubeRay CRDs (../shared/k8s-schemas/kuberay) are not here")
    for path in module.extract(module.DEFAULT_SOURCE, tmp_path):
        assert path.read_text() == (SCHEMAS / path.name).read_text(), path.name
