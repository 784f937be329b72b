"""infra/docker: what can be checked without building the image."""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess

import pytest

from .conftest import INFRA, REPO, constraint_pin

DOCKERFILE = (INFRA / "docker/Dockerfile").read_text()
SUBMIT_SCRIPT = INFRA / "docker/submit-flow-run.sh"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE)
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            pairs.append((keyword.upper(), rest.strip()))
    return pairs


def ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last matching .dockerignore pattern wins; `!` re-includes."""
    result = False
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        negated = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        if any(fnmatch.fnmatchcase(prefix, pattern) for prefix in prefixes):
            result = not negated
    return result


def dockerignore() -> list[str]:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_every_copy_source_is_in_the_build_context() -> None:
    patterns = dockerignore()
    copies = [args.split() for keyword, args in instructions() if keyword == "COPY"]
    assert copies
    for *sources, _target in copies:
        for source in sources:
            assert (REPO / source).exists(), f"COPY {source}: no such file in the repository"
            assert not ignored(source, patterns), f"COPY {source}: excluded by .dockerignore"


def test_dockerignore_check_can_fail() -> None:
    assert ignored("tests/conftest.py", dockerignore())
    assert ignored("flows/__pycache__/x.pyc", dockerignore())
    assert not ignored("flows/cli.py", dockerignore())


def test_installs_the_pinned_constraints_and_picks_torch_by_build_arg() -> None:
    pairs = [rest.partition("=") for keyword, rest in instructions() if keyword == "ARG"]
    args = {name: value for name, _, value in pairs}
    assert args["TORCH_VERSION"] == constraint_pin("torch")  # the CPU default = the pinned torch
    assert args["TORCH_INDEX"].endswith("/whl/cpu")
    runs = " ".join(rest for keyword, rest in instructions() if keyword == "RUN")
    assert "grep -v '^torch==' infra/constraints.txt > /tmp/constraints.txt" in runs
    assert runs.count("-c /tmp/constraints.txt") >= 3  # torch's deps, the deps, the project
    assert '--index-url "$TORCH_INDEX"' in runs


def test_base_user_and_tools() -> None:
    froms = [rest for keyword, rest in instructions() if keyword == "FROM"]
    assert froms == ["python:${PYTHON_VERSION}-slim-bookworm"]
    assert "ARG PYTHON_VERSION=3.11" in DOCKERFILE
    users = [rest for keyword, rest in instructions() if keyword == "USER"]
    assert users and users[-1] == "1000:1000", "the image must not run as root"
    for tool in ("ffmpeg", "wget"):  # curation; KubeRay's health probes
        assert re.search(rf"apt-get install[^&]*\b{tool}\b", DOCKERFILE.replace("\\\n", " "))


def test_submit_script_is_installed_under_the_work_pool_command() -> None:
    template = (INFRA / "k8s/prefect/base-job-template.json").read_text()
    assert '"default": "vjepa-submit-flow-run"' in template
    assert "COPY infra/docker/submit-flow-run.sh /usr/local/bin/vjepa-submit-flow-run" in DOCKERFILE


def test_submit_script_is_valid_bash() -> None:
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("bash is not installed")
    done = subprocess.run([bash, "-n", str(SUBMIT_SCRIPT)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_submit_script_refuses_to_run_without_its_settings() -> None:
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("bash is not installed")
    env = {"PATH": "/usr/bin:/bin", "RAY_JOBS_ADDRESS": "http://head:8265"}
    done = subprocess.run([bash, str(SUBMIT_SCRIPT)], env=env, capture_output=True, text=True)
    assert done.returncode != 0 and "PREFECT__FLOW_RUN_ID" in done.stderr
