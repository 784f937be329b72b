"""Typed serving config: model names, token resolution, replica options, the Serve config file."""

from __future__ import annotations

import pytest
import yaml
from pydantic import SecretStr

from serving.app import IMPORT_PATH, serve_config, with_builder_token
from serving.config import ConfigError, Replicas, ServingConfig, parse_checkpoints


def test_parse_checkpoints_keeps_order_and_names() -> None:
    models = parse_checkpoints(["arm=/m/arm", "cart=s3://b/cart"])
    assert list(models) == ["arm", "cart"]
    assert parse_checkpoints(["/only/one"]) == {"default": "/only/one"}
    for bad in (["arm=/a", "arm=/b"], ["bad name=/a"], ["arm="], []):
        with pytest.raises(ConfigError):
            parse_checkpoints(bad)


def test_default_model_and_encoder_fall_back_to_the_first_bundle() -> None:
    config = ServingConfig(models={"b": "s3://x/b/", "a": "/a"})
    assert config.default_model == "b"
    assert config.encoder_uri == "s3://x/b/encoder.safetensors"
    assert ServingConfig(models={"a": "/a"}, encoder="/enc.pt").encoder_uri == "/enc.pt"


def test_token_comes_from_the_value_or_the_named_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    assert ServingConfig(models={"a": "/a"}).resolve_token() is None
    assert (
        ServingConfig(models={"a": "/a"}, token=SecretStr("0123456789")).resolve_token()
        == "0123456789"
    )
    monkeypatch.setenv("VJEPA_TEST_TOKEN", "from-the-env-123")
    config = ServingConfig(models={"a": "/a"}, token_env="VJEPA_TEST_TOKEN")
    assert config.resolve_token() == "from-the-env-123"
    monkeypatch.delenv("VJEPA_TEST_TOKEN")
    with pytest.raises(ConfigError, match="empty"):
        config.resolve_token()  # fail closed: never serve unauthenticated by accident
    with pytest.raises(ConfigError, match="at least 8"):
        ServingConfig(models={"a": "/a"}, token=SecretStr("short")).resolve_token()


def test_replicas_fixed_or_autoscaling() -> None:
    fixed = Replicas(num_replicas=3, num_cpus=0.5).deployment_options()
    assert fixed["num_replicas"] == 3 and "autoscaling_config" not in fixed
    scaled = Replicas(min_replicas=1, max_replicas=4).deployment_options()
    assert scaled["autoscaling_config"]["max_replicas"] == 4 and "num_replicas" not in scaled
    with pytest.raises(ValueError, match="max_replicas"):
        Replicas(min_replicas=3, max_replicas=2)


def test_unknown_keys_and_bad_models_are_errors() -> None:
    with pytest.raises(ValueError, match="extra"):
        ServingConfig.model_validate({"models": {"a": "/a"}, "tokn": "x"})
    with pytest.raises(ValueError, match="at least one model"):
        ServingConfig(models={})


def test_serve_config_round_trips_without_the_secret() -> None:
    config = ServingConfig(
        models={"arm": "s3://m/arm"},
        token=SecretStr("super-secret-token"),
        token_env="VJEPA_SERVE_TOKEN",
        planner=Replicas(min_replicas=1, max_replicas=4),
    )
    text = yaml.safe_dump(serve_config(config))
    assert "super-secret-token" not in text
    loaded = yaml.safe_load(text)
    application = loaded["applications"][0]
    assert application["import_path"] == IMPORT_PATH
    rebuilt = ServingConfig.model_validate(application["args"])
    assert rebuilt.token is None and rebuilt.token_env == "VJEPA_SERVE_TOKEN"
    assert rebuilt.models == config.models and rebuilt.planner == config.planner
    planner = next(d for d in application["deployments"] if d["name"] == "Planner")
    assert planner["autoscaling_config"]["max_replicas"] == 4
    assert planner["max_ongoing_requests"] >= 2 * config.batching.max_batch_size


def test_builder_reads_the_token_variable_for_replicas_that_cannot(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = ServingConfig(models={"a": "/a"}, token_env="VJEPA_TEST_TOKEN")
    monkeypatch.delenv("VJEPA_TEST_TOKEN", raising=False)
    assert with_builder_token(config).token is None  # left to the ingress, which fails closed
    monkeypatch.setenv("VJEPA_TEST_TOKEN", "set-after-ray-init")
    built = with_builder_token(config)
    assert built.token is not None and built.resolve_token() == "set-after-ray-init"
    assert "set-after-ray-init" not in str(built.public_dict())


@pytest.mark.parametrize(
    "raw", ["from-file-token-123\n", " from-file-token-123\r\n", "from-file-token-123 "]
)
def test_a_token_with_a_trailing_newline_still_matches(
    raw: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from serving.auth import check_bearer

    monkeypatch.setenv("VJEPA_TEST_FILE_TOKEN", raw)  # a secret made with --from-file
    from_variable = ServingConfig(models={"a": "/a"}, token_env="VJEPA_TEST_FILE_TOKEN")
    from_value = ServingConfig(models={"a": "/a"}, token=SecretStr(raw))
    for config in (from_variable, from_value):
        assert config.resolve_token() == "from-file-token-123"
        check_bearer("Bearer from-file-token-123", config.resolve_token())


def test_a_blank_token_variable_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VJEPA_TEST_FILE_TOKEN", "\n")
    with pytest.raises(ConfigError):
        ServingConfig(models={"a": "/a"}, token_env="VJEPA_TEST_FILE_TOKEN").resolve_token()
