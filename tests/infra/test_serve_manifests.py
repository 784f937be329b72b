"""infra/serve: the Serve config is what `vjepa serve --config-out` writes and a valid
`ServingConfig`, and the RayService that kustomize builds carries it with auth on."""

from __future__ import annotations

import shlex
from pathlib import Path

import yaml

from flows.cli import main
from serving.config import ServingConfig

from .conftest import REPO, SERVE, kubectl_kustomize, rendered_serve_kustomization

SERVE_CONFIG = SERVE / "serve-config.yaml"


def header_command() -> list[str]:
    """The `vjepa serve ... --config-out` command quoted in serve-config.yaml's header."""
    lines = [line[1:].strip() for line in SERVE_CONFIG.read_text().splitlines() if line[:1] == "#"]
    start = next(i for i, line in enumerate(lines) if line.startswith("vjepa serve"))
    words: list[str] = []
    for line in lines[start:]:
        words += shlex.split(line.rstrip("\\"))
        if not line.endswith("\\"):
            break
    return words


def test_args_are_a_serving_config_with_auth() -> None:
    config = yaml.safe_load(SERVE_CONFIG.read_text())
    (application,) = config["applications"]
    assert application["import_path"] == "serving.app:app_builder"
    serving = ServingConfig.model_validate(application["args"])
    assert serving.token_env == "VJEPA_SERVE_TOKEN"
    assert serving.host == "0.0.0.0" == config["http_options"]["host"]
    assert all(uri.startswith("s3://") for uri in serving.models.values())


def test_file_is_what_vjepa_serve_config_out_writes(tmp_path: Path) -> None:
    words = header_command()
    assert words[:2] == ["vjepa", "serve"] and "--config-out" in words
    out = tmp_path / "serve-config.yaml"
    words[words.index("--config-out") + 1] = str(out)
    assert main(words[1:]) == 0
    regenerate = " ".join(header_command())
    assert yaml.safe_load(out.read_text()) == yaml.safe_load(SERVE_CONFIG.read_text()), (
        f"infra/serve/serve-config.yaml is stale: run `{regenerate}` and keep the header"
    )


def test_rayservice_serves_that_config() -> None:
    (service,) = rendered_serve_kustomization()
    assert yaml.safe_load(service["spec"]["serveConfigV2"]) == yaml.safe_load(
        SERVE_CONFIG.read_text()
    )
    port = yaml.safe_load(SERVE_CONFIG.read_text())["http_options"]["port"]
    head = service["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]
    assert {"containerPort": port, "name": "serve"} in head["containers"][0]["ports"]


def test_kustomize_builds_the_same_rayservice() -> None:
    assert kubectl_kustomize(SERVE) == rendered_serve_kustomization()


def test_serve_docs_point_at_existing_files() -> None:
    page = (REPO / "docs/commands/serve.md").read_text()
    assert "infra/serve/" in page and (SERVE / "rayservice.yaml").is_file()
    assert "infra/serve/" in (REPO / "docs/deploy.md").read_text()
