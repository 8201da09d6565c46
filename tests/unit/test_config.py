"""Settings: defaults < params.yaml < environment; bad values fail with the setting's name."""

from __future__ import annotations

from pathlib import Path

import pytest

from bitpredict.config import ConfigError, Settings, get_settings, load_settings
from bitpredict.pipeline.stage_table import FEATURES, RAW, data_path


def test_defaults_when_nothing_is_set() -> None:
    settings = load_settings()
    assert settings.data_dir == "data"
    assert settings.binance_url == "https://api.binance.com"
    assert settings.model.window == 30
    assert data_path(settings, FEATURES) == str(Path("data/processed/bitcoin_features.parquet"))
    assert settings.tracking_uri.startswith("sqlite:///") and settings.tracking_uri.endswith("data/mlflow.db")


def test_params_yaml_overrides_defaults_and_env_overrides_params(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "params.yaml").write_text(
        "data_dir: /srv/bp\nmodel:\n  window: 14\n  epochs: 3\nbinance_url: http://127.0.0.1:9/\n"
    )
    from_file = load_settings()
    assert from_file.data_dir == "/srv/bp"
    assert from_file.model.window == 14 and from_file.model.epochs == 3
    assert from_file.binance_url == "http://127.0.0.1:9"  # trailing slash normalised
    assert from_file.model.batch_size == 64  # untouched default survives a partial group in the file

    monkeypatch.setenv("BITPREDICT_MODEL__WINDOW", "21")
    monkeypatch.setenv("BITPREDICT_DATA_DIR", "gs://bucket/bp")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    from_env = load_settings()
    assert from_env.model.window == 21
    assert from_env.model.epochs == 3  # still from params.yaml
    assert from_env.data_dir == "gs://bucket/bp"
    assert data_path(from_env, RAW) == "gs://bucket/bp/raw"
    assert from_env.tracking_uri == "http://127.0.0.1:5000"


def test_explicit_params_file_must_exist(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BITPREDICT_PARAMS", str(tmp_path / "nope.yaml"))
    with pytest.raises(ConfigError, match=r"BITPREDICT_PARAMS=.*file not found"):
        load_settings()


def test_rss_feeds_from_a_comma_separated_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BITPREDICT_RSS_FEEDS", "http://127.0.0.1:1/a.xml, http://127.0.0.1:1/b.xml")
    assert load_settings().rss_feeds == ["http://127.0.0.1:1/a.xml", "http://127.0.0.1:1/b.xml"]


@pytest.mark.parametrize(
    ("env", "value", "named"),
    [
        ("BITPREDICT_MODEL__WINDOW", "abc", r"model\.window \(BITPREDICT_MODEL__WINDOW\)"),
        ("BITPREDICT_MODEL__WINDOW", "1", r"model\.window"),
        ("BITPREDICT_MODEL__DROPOUT", "1.5", r"model\.dropout"),
        ("BITPREDICT_COINGECKO_URL", "api.coingecko.com", r"coingecko_url \(BITPREDICT_COINGECKO_URL\)"),
        ("BITPREDICT_LOG_LEVEL", "LOUD", r"log_level \(BITPREDICT_LOG_LEVEL\)"),
        ("BITPREDICT_RSS_FEEDS", "ftp://x/feed", r"rss_feeds"),
        ("BITPREDICT_MODEL__QUANTILES", "[0.9, 0.1]", r"model\.quantiles"),
    ],
)
def test_bad_value_names_the_setting(monkeypatch: pytest.MonkeyPatch, env: str, value: str, named: str) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(ConfigError, match=named):
        load_settings()


def test_typo_in_params_yaml_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "params.yaml").write_text("model:\n  windw: 10\n")
    with pytest.raises(ConfigError, match=r"model\.windw"):
        load_settings()


def test_params_yaml_must_be_a_mapping(tmp_path: Path) -> None:
    (tmp_path / "params.yaml").write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_settings()


def test_secrets_are_masked_and_never_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BITPREDICT_TWITTER_BEARER_TOKEN", "s3cr3t-token")
    settings = load_settings()
    assert settings.twitter_bearer_token is not None
    assert settings.twitter_bearer_token.get_secret_value() == "s3cr3t-token"
    assert "s3cr3t-token" not in str(settings.public_dict())


def test_sqlite_tracking_needs_a_local_data_dir() -> None:
    settings = load_settings(data_dir="gs://bucket/x")
    with pytest.raises(ConfigError, match="MLFLOW_TRACKING_URI"):
        _ = settings.tracking_uri


def test_settings_are_frozen_and_cached() -> None:
    settings = get_settings()
    assert get_settings() is settings
    with pytest.raises(Exception, match="frozen"):
        settings.data_dir = "elsewhere"  # type: ignore[misc]
    assert isinstance(settings, Settings)


def test_rss_feeds_from_a_json_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BITPREDICT_RSS_FEEDS", '["http://127.0.0.1:1/a.xml"]')
    assert load_settings().rss_feeds == ["http://127.0.0.1:1/a.xml"]


def test_undecodable_json_env_var_names_the_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BITPREDICT_MODEL__LSTM_UNITS", "[64,")
    with pytest.raises(ConfigError, match=r"BITPREDICT_MODEL__LSTM_UNITS.*not valid JSON"):
        load_settings()
