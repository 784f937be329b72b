"""`vjepa curate` end to end in-process: Prefect flow + Ray, JSON summary, artifact, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from flows.cli import main
from tasks.sample_videos import write_sample_videos

ARGS = ["--size", "32", "--frames", "4", "--fps", "4", "--json"]


@pytest.fixture(scope="module")
def sample_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("samples")
    write_sample_videos(str(folder), count=3, seconds=2.0, with_defects=True)
    return folder


def _artifact_markdowns(key: str) -> list[str]:
    """Every version of the artifact `key` (other tests' flows publish it too)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key]))
        )
    return [str(artifact.data) for artifact in artifacts]


@pytest.mark.ray
def test_cli_curates_and_reports(
    ray_cluster: None,
    prefect_harness: None,
    sample_folder: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(["curate", "--input", str(sample_folder), "--output", str(tmp_path / "out"), *ARGS])
    captured = capsys.readouterr()
    assert code == 0, captured.err[-2000:]
    summary = json.loads(captured.out.strip().splitlines()[-1])
    assert set(summary) == {"num_sources", "num_clips", "num_rejected", "manifest", "version"}
    assert summary["num_sources"] == 3 + 4 and summary["num_rejected"] == 4
    assert summary["num_clips"] == 3 * 2  # 2 s videos, 1 s clips
    assert summary["manifest"] == str(tmp_path / "out" / "manifest.json")
    assert "[curate] done: 7 sources" in captured.err  # progress: a few lines, not one per source
    assert captured.err.count("[curate] ") <= 5 and captured.err.count("warning: rejected") == 4
    manifest = json.loads(Path(summary["manifest"]).read_text())
    assert manifest["version"] == summary["version"] and manifest["clip"]["shape"] == [4, 32, 32, 3]
    stages = {
        Path(r["source"]).name: r["stage"]
        for r in pq.read_table(tmp_path / "out" / "rejected.parquet").to_pylist()
    }
    assert stages == {
        "defect_empty.mp4": "probe",
        "defect_text.mp4": "probe",
        "defect_truncated.mp4": "probe",
        "defect_image.mkv": "probe",
    }
    assert any(summary["version"] in markdown for markdown in _artifact_markdowns("curate-summary"))


@pytest.mark.ray
def test_cli_exit_codes(
    ray_cluster: None,
    prefect_harness: None,
    sample_folder: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert (
        main(["curate", "--input", str(sample_folder), "--output", str(tmp_path), "--size", "60"])
        == 2
    )
    assert "size must be a positive multiple of 16" in capsys.readouterr().err
    config = tmp_path / "bad.toml"
    config.write_text("frames = 3\n")
    assert (
        main(
            [
                "curate",
                "--input",
                str(sample_folder),
                "--output",
                str(tmp_path),
                "--config",
                str(config),
            ]
        )
        == 2
    )
    assert "frames must be a positive multiple of 2" in capsys.readouterr().err
    defects = [str(p) for p in sorted(sample_folder.glob("defect_*"))]
    code = main(
        [
            "curate",
            *[a for d in defects for a in ("--input", d)],
            "--output",
            str(tmp_path / "none"),
            *ARGS,
        ]
    )
    captured = capsys.readouterr()
    assert code == 1 and "no input produced a clip" in captured.err
    assert json.loads(captured.out.strip().splitlines()[-1])["num_rejected"] == 4
    assert pq.read_table(tmp_path / "none" / "rejected.parquet").num_rows == 4


@pytest.mark.ray
def test_second_run_on_a_locked_output_is_refused(
    ray_cluster: None,
    prefect_harness: None,
    sample_folder: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Two runs on one output used to both report success with different versions."""
    from tasks.curation.lock import OutputLock

    output = tmp_path / "out"
    with OutputLock(str(output)):  # the first run, still writing
        code = main(["curate", "--input", str(sample_folder), "--output", str(output), *ARGS])
    captured = capsys.readouterr()
    assert code == 1
    assert "another curation run is writing" in captured.err
    assert not (output / "manifest.json").exists() and "[curate]" not in captured.err


@pytest.mark.slow
def test_cli_process_starts_its_own_ray_and_prefect(sample_folder: Path, tmp_path: Path) -> None:
    """No Ray running and no Prefect server configured: the CLI starts both and still succeeds."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "PREFECT_API_URL")}
    command = [
        sys.executable,
        "-m",
        "flows.cli",
        "curate",
        "--input",
        str(sample_folder),
        "--output",
        str(tmp_path),
        *ARGS,
    ]
    result = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.strip().splitlines()[-1])["num_clips"] == 6
