"""The demo's defaults agree with the parts they name (the config module avoids importing them)."""

from __future__ import annotations

from flows.demo_config import DemoConfig
from tasks.robot import POINT_REACH_ID
from tasks.sample_videos import labels_table, make_specs


def test_demo_env_is_the_built_in_environment() -> None:
    assert DemoConfig().env == POINT_REACH_ID


def test_demo_probe_labels_are_columns_of_the_sample_labels_table() -> None:
    columns = labels_table(make_specs(4), "/tmp/videos").column_names
    assert DemoConfig().probe_labels and set(DemoConfig().probe_labels) <= set(columns)
