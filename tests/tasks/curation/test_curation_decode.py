"""Decode stage: ffmpeg filter graph into clip tensors, deterministic ids, end rows, failures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tasks.curation.config import CurationConfig
from tasks.curation.decode import DecodeStage, clip_id


def _decode(config: CurationConfig, path: Path) -> dict[str, np.ndarray]:
    batch = {
        "source": np.array([str(path)]),
        "key": np.array(["k"]),
        "size": np.array([path.stat().st_size]),
    }
    outputs = list(DecodeStage(config)(batch))
    return {column: np.concatenate([out[column] for out in outputs]) for column in outputs[0]}


def test_clips_shape_spans_and_ids(small_config: CurationConfig, videos: dict[str, Path]) -> None:
    config = small_config.replace(
        clips_per_batch=2
    )  # 3 clips -> batches of 2 and 1, then the end row
    out = _decode(config, videos["moving_mp4"])
    clips = ~out["is_end"]
    assert out["frames"].shape == (4, 4, 32, 32, 3) and out["frames"].dtype == np.uint8
    assert out["clip_index"][clips].tolist() == [0, 1, 2]
    assert out["start_s"][clips].tolist() == [0.0, 1.0, 2.0]
    assert out["end_s"][clips].tolist() == [1.0, 2.0, 3.0]
    assert out["clip_id"][0] == clip_id(str(videos["moving_mp4"]), 0.0, 1.0)
    assert out["num_clips"][-1] == 3 and out["is_end"][-1] and out["error_stage"][-1] == ""
    assert out["frames"][0].std() > 10  # real pixels, not zeros
    again = _decode(config, videos["moving_mp4"])
    assert (
        np.array_equal(again["frames"], out["frames"])
        and again["clip_id"].tolist() == out["clip_id"].tolist()
    )


def test_overlapping_stride_and_clip_limit(
    small_config: CurationConfig, videos: dict[str, Path]
) -> None:
    whole = _decode(small_config, videos["moving_mp4"])
    overlap = _decode(
        small_config.replace(clip_stride=2, max_clips_per_source=3), videos["moving_mp4"]
    )
    assert overlap["num_clips"][-1] == 3
    assert overlap["start_s"][:3].tolist() == [0.0, 0.5, 1.0]
    # clip 1 = frames 2..5 = second half of clip 0 + first half of clip 1 of the non-overlapping run
    assert np.array_equal(overlap["frames"][1][:2], whole["frames"][0][2:])
    assert np.array_equal(overlap["frames"][1][2:], whole["frames"][1][:2])


def test_rejections_and_mid_decode_failure(
    small_config: CurationConfig, videos: dict[str, Path]
) -> None:
    empty = _decode(small_config, videos["empty"])
    assert empty["is_end"].tolist() == [True] and empty["error_stage"][0] == "probe"
    assert empty["error_reason"][0] == "empty file (0 bytes)"
    short = _decode(small_config, videos["too_short"])
    assert short["is_end"].tolist() == [True] and short["error_stage"][0] == "filter"
    broken = _decode(small_config, videos["cut_midway"])
    assert broken["error_stage"][-1] == "decode"
    assert "ffmpeg failed" in str(broken["error_reason"][-1])
    assert "corrupt" in str(broken["error_reason"][-1])


def test_unexpected_errors_become_rejections(
    small_config: CurationConfig, videos: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(source: str) -> str:
        raise RuntimeError("signing service down")

    monkeypatch.setattr("tasks.curation.decode.media_url", broken)
    out = _decode(small_config, videos["moving_mp4"])
    assert out["is_end"].tolist() == [True] and out["error_stage"][0] == "decode"
    assert (
        out["error_reason"][0]
        == "unexpected error while decoding: RuntimeError: signing service down"
    )


def test_next_source_starts_early_and_never_outlives_the_batch(
    small_config: CurationConfig, videos: dict[str, Path]
) -> None:
    paths = [videos["moving_mp4"], videos["faststart"]]
    batch = {
        "source": np.array([str(p) for p in paths]),
        "key": np.array(["a", "b"]),
        "size": np.array([p.stat().st_size for p in paths]),
    }
    stage = DecodeStage(small_config)
    whole = list(stage(batch))
    assert [int(out["num_clips"][-1]) for out in whole if out["is_end"][-1]] == [3, 4]
    outputs = stage(batch)
    clips, end = next(outputs), next(outputs)  # the first source's clips, then its end row
    assert not clips["is_end"].any() and end["is_end"].tolist() == [True]
    early = stage._started[str(paths[1])]  # the second ffmpeg runs before its turn
    outputs.close()  # the consumer stops: the early ffmpeg is killed and reaped
    assert stage._started == {} and early.process.poll() is not None
