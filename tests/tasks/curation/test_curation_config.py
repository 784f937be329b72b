"""CurationConfig validation, fingerprints and config files."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.curation.config import CurationConfig, config_from_mapping, load_config


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"frames": 15}, "frames must be a positive multiple of 2"),
        ({"frames": 0}, "frames must be a positive multiple of 2"),
        ({"size": 100}, "size must be a positive multiple of 16"),
        ({"fps": 0}, "fps must be positive"),
        ({"rows_per_shard": 0}, "rows_per_shard"),
        ({"allowed_codecs": ()}, "allowed_codecs"),
    ],
)
def test_invalid_values_are_rejected(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CurationConfig(**changes)  # type: ignore[arg-type]


def test_clip_geometry_and_defaults() -> None:
    config = CurationConfig(fps=2, frames=8, size=32)
    assert config.clip_shape == (8, 32, 32, 3)
    assert config.clip_bytes == 8 * 32 * 32 * 3
    assert config.min_duration == 4.0  # one clip
    assert config.stride == 8


def test_fingerprint_ignores_runtime_fields() -> None:
    base = CurationConfig()
    assert base.fingerprint() == base.replace(workers=3, clips_per_batch=2).fingerprint()
    assert base.fingerprint() != base.replace(size=128).fingerprint()
    assert "workers" not in base.to_dict(output_only=True)


def test_load_json_and_toml(tmp_path: Path) -> None:
    (tmp_path / "c.json").write_text('{"frames": 8, "allowed_codecs": ["h264"]}')
    (tmp_path / "c.toml").write_text("[curation]\nsize = 64\n")
    assert load_config(tmp_path / "c.json").allowed_codecs == ("h264",)
    assert load_config(tmp_path / "c.toml").size == 64


def test_unknown_keys_and_bad_types_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown curation config keys: colour"):
        config_from_mapping({"colour": "red"})
    with pytest.raises(ValueError, match="invalid curation config"):
        config_from_mapping({"frames": "16"})
    with pytest.raises(ValueError, match="not found"):
        load_config(tmp_path / "missing.json")
