"""Windows of frames + states + actions: shapes, alignment, resampling, Python and Ray paths."""

from __future__ import annotations

import numpy as np
import pytest

from tasks.robot.collect import CollectSummary
from tasks.robot.env import disc_centre
from tasks.robot.lerobot import Episode
from tasks.robot.windows import (
    WindowConfig,
    episode_windows,
    frame_stride,
    iter_windows,
    window_dataset,
)


def _counting_episode(length: int = 12, fps: float = 10.0) -> Episode:
    """Frame t is filled with t, state t is (t, -t), action t is (t, 1)."""
    steps = np.arange(length, dtype=np.float32)
    frames = np.broadcast_to(
        np.arange(length, dtype=np.uint8)[:, None, None, None], (length, 16, 16, 3)
    )
    return Episode(
        index=4,
        frames=np.ascontiguousarray(frames),  # (T, 16, 16, 3)
        states=np.stack([steps, -steps], axis=1),  # (T, 2)
        actions=np.stack([steps, np.ones(length, np.float32)], axis=1),  # (T, 2)
        timestamps=steps / fps,
        fps=fps,
        task=None,
    )


def test_windows_at_the_dataset_rate() -> None:
    windows = list(episode_windows(_counting_episode(), WindowConfig(num_frames=4)))
    assert len(windows) == 9  # starts 0..8
    first = windows[0]
    assert first["frames"].shape == (4, 16, 16, 3) and first["frames"].dtype == np.uint8
    assert first["states"].shape == (4, 2) and first["actions"].shape == (3, 2)
    np.testing.assert_array_equal(first["frames"][:, 0, 0, 0], [0, 1, 2, 3])
    # actions[k] moves frame k to frame k + 1: it is the action recorded at frame k.
    np.testing.assert_array_equal(first["actions"][:, 0], [0, 1, 2])
    assert int(windows[-1]["start_frame"]) == 8 and int(first["episode_index"]) == 4


def test_resampled_windows_reduce_the_actions_in_between() -> None:
    episode = _counting_episode()
    config = WindowConfig(num_frames=3, fps=5, shift=4)  # stride 2, starts every 4 frames
    windows = list(episode_windows(episode, config))
    assert [int(w["start_frame"]) for w in windows] == [0, 4]
    np.testing.assert_array_equal(windows[1]["states"][:, 0], [4, 6, 8])
    np.testing.assert_allclose(windows[1]["timestamps"], [0.4, 0.6, 0.8], atol=1e-6)
    np.testing.assert_array_equal(windows[1]["actions"][:, 0], [4.5, 6.5])  # mean of (4,5), (6,7)
    summed = next(episode_windows(episode, WindowConfig(3, fps=5, action_reduce="sum")))
    np.testing.assert_array_equal(summed["actions"][:, 1], [2, 2])


def test_all_actions_mode_needs_one_more_stride() -> None:
    config = WindowConfig(num_frames=4, fps=5, actions="all")
    windows = list(episode_windows(_counting_episode(), config))
    assert [int(w["start_frame"]) for w in windows] == [0, 1, 2, 3, 4]
    assert windows[-1]["actions"].shape == (4, 2)
    np.testing.assert_array_equal(windows[-1]["actions"][:, 0], [4.5, 6.5, 8.5, 10.5])


def test_episode_shorter_than_a_window_gives_none() -> None:
    assert list(episode_windows(_counting_episode(length=3), WindowConfig(num_frames=4))) == []


def test_rates_and_config_errors() -> None:
    assert frame_stride(30, 10) == 3 and frame_stride(30, None) == 1
    with pytest.raises(ValueError, match=r"not a whole multiple.*pick one of 30, 15, 10"):
        frame_stride(30, 4)
    with pytest.raises(ValueError, match="multiples of 16"):
        WindowConfig(size=(20, 32))
    with pytest.raises(ValueError, match="num_frames"):
        WindowConfig(num_frames=1)


def test_iter_windows_on_a_recorded_dataset(point_reach_dataset: CollectSummary) -> None:
    config = WindowConfig(num_frames=4, fps=5, size=(32, 32), shift=3)
    windows = list(iter_windows(point_reach_dataset.output, config))
    # 20 frames, stride 2: a window spans 7 frames, starts 0, 3, 6, 9, 12 -> 5 per episode.
    assert len(windows) == 15
    window = windows[4]
    assert window["frames"].shape == (4, 32, 32, 3) and window["actions"].shape == (3, 2)
    for frame, state in zip(window["frames"], window["states"], strict=True):
        np.testing.assert_allclose(disc_centre(frame), state, atol=0.05)
    with pytest.raises(ValueError, match="not a whole multiple"):
        next(iter_windows(point_reach_dataset.output, WindowConfig(fps=3)))


@pytest.mark.ray
def test_ray_window_dataset_matches_the_iterator(
    ray_cluster: None, point_reach_dataset: CollectSummary
) -> None:
    config = WindowConfig(num_frames=4, fps=5, shift=3)
    dataset = window_dataset(point_reach_dataset.output, config)
    rows = sorted(
        dataset.take_all(), key=lambda r: (int(r["episode_index"]), int(r["start_frame"]))
    )
    expected = list(iter_windows(point_reach_dataset.output, config))
    assert len(rows) == len(expected) == 15
    for row, want in zip(rows, expected, strict=True):
        assert row["frames"].shape == (4, 64, 64, 3)
        np.testing.assert_array_equal(row["states"], want["states"])
        np.testing.assert_array_equal(row["actions"], want["actions"])
        np.testing.assert_array_equal(row["frames"], want["frames"])
