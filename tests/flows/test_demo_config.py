"""The demo's defaults agree with the parts they name (the config module avoids importing them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.cli import main
from flows.demo_config import DemoConfig
from tasks.robot import POINT_REACH_ID
from tasks.sample_videos import labels_table, make_specs


def test_demo_env_is_the_built_in_environment() -> None:
    assert DemoConfig().env == POINT_REACH_ID


def test_demo_probe_labels_are_columns_of_the_sample_labels_table() -> None:
    columns = labels_table(make_specs(4), "/tmp/videos").column_names
    assert DemoConfig().probe_labels and set(DemoConfig().probe_labels) <= set(columns)


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--job-cpus", "0"], "--job-cpus must be >= 1"),
        (["--videos", "4"], "--videos must be >= 8"),
        (["--posttrain-steps", "0"], "every step/episode count >= 1"),
    ],
)
def test_bad_demo_counts_exit_2_before_any_work(
    flags: list[str], words: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    workdir = tmp_path / "demo"
    assert main(["demo", "--workdir", str(workdir), *flags]) == 2
    assert words in capsys.readouterr().err
    # refused before the flow made anything; the run's log says why
    assert sorted(p.relative_to(workdir).as_posix() for p in workdir.rglob("*")) == [
        "logs",
        "logs/vjepa.log",
    ]
    assert words in (workdir / "logs" / "vjepa.log").read_text()
