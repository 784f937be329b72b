"""The collect flow under Prefect's test harness, and the `vjepa collect` CLI contract."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flows.cli import main
from flows.collect import ARTIFACT_KEY, collect_flow
from tasks.robot.collect import CollectConfig
from tasks.robot.lerobot import LeRobotReader


def test_flow_records_dataset_and_summary_artifact(prefect_harness: None, tmp_path: Path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    output = str(tmp_path / "flow")
    config = CollectConfig(
        env="vjepa/PointReach-v0",
        episodes=2,
        output=output,
        steps_per_episode=6,
        env_kwargs={"width": 32, "height": 32},
        task="reach the goal",
    )
    summary = collect_flow(config)
    assert (summary.episodes, summary.frames, summary.image_width) == (2, 12, 32)
    reader = LeRobotReader(output)
    assert reader.read_episode(1).frames.shape == (6, 32, 32, 3)
    assert reader.read_episode(1).task == "reach the goal"
    with get_client(sync_client=True) as client:
        key_filter = ArtifactFilter(key=ArtifactFilterKey(any_=[ARTIFACT_KEY]))
        artifacts = client.read_artifacts(artifact_filter=key_filter)
    assert any(output in str(artifact.data) for artifact in artifacts)


def test_cli_json_contract(
    prefect_harness: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = str(tmp_path / "cli")
    argv = ["collect", "--env", "vjepa/PointReach-v0", "--episodes", "2", "--output", output]
    code = main([*argv, "--steps-per-episode", "5", "--fps", "5", "--seed", "3", "--json"])
    captured = capsys.readouterr()
    assert code == 0
    payload = json.loads(captured.out.strip().splitlines()[-1])
    assert payload["episodes"] == 2 and payload["frames"] == 10 and payload["fps"] == 5
    assert payload["output"] == output
    assert payload["video_key"] == "observation.images.top"
    assert "[collect] done: 2 episodes" in captured.err
    assert LeRobotReader(output).info["total_frames"] == 10


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--env", "CartPole-v1"], "Box"),
        (["--env", "no.such.module:Env"], "cannot import module"),
        (["--episodes", "0"], "at least 1"),
        (["--env-kwargs", "[1]"], "JSON object"),
        (["--env-kwargs", '{"width": 50}'], "multiple of 16"),
        (["--policy", "greedy"], "unknown policy"),
    ],
)
def test_cli_bad_input_exits_2_with_a_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    argv = ["collect", "--env", "vjepa/PointReach-v0", "--episodes", "1"]
    code = main([*argv, "--output", str(tmp_path / "x"), *extra])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_cli_refuses_an_existing_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "keep.txt").write_text("precious")
    argv = ["collect", "--env", "vjepa/PointReach-v0", "--episodes", "1"]
    assert main([*argv, "--output", str(tmp_path)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (tmp_path / "keep.txt").read_text() == "precious"
