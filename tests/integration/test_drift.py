"""Drift on the real data: no drift inside the training regime, drift outside it, one trigger per episode."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bitpredict import storage
from bitpredict.config import DriftSettings, load_settings
from bitpredict.features.indicators import WARMUP, compute_indicators
from bitpredict.features.merge import build_features
from bitpredict.forecast.artifact import METADATA_FILE, REFERENCE_FILE
from bitpredict.operations.drift_check import run_drift
from bitpredict.operations.monitor import DriftState, calibrated_thresholds, decide, drift_columns, measure
from bitpredict.pipeline.stage_table import FEATURES, data_path


@pytest.fixture(scope="module")
def features(clean_daily: pd.DataFrame) -> pd.DataFrame:
    return build_features(compute_indicators(clean_daily), None, WARMUP)


@pytest.fixture
def model_dir(features: pd.DataFrame, tmp_path: Path) -> Path:
    """A model folder whose reference is the training rows up to 2022-12-31 (as train writes it)."""
    directory = tmp_path / "models" / "7"
    directory.mkdir(parents=True)
    reference = features[features["timestamp"] <= "2022-12-31"]
    storage.write_parquet(reference, directory / REFERENCE_FILE)
    meta = {"format_version": 1, "train_span": ["2015-02-14", "2022-12-31"], "feature_columns": [], "window": 30}
    (directory / METADATA_FILE).write_text(json.dumps(meta))
    return directory


def test_a_window_from_the_training_regime_shows_no_drift(features: pd.DataFrame) -> None:
    reference = features[features["timestamp"] <= "2022-12-31"]
    sample = reference.sample(120, random_state=1)  # days the model trained on
    result = measure(reference, sample, share_threshold=0.5)
    assert result.share < 0.2, result.drifted
    assert "close" not in result.columns and "sma_50" not in result.columns  # never price levels


def test_a_different_regime_or_a_distorted_window_shows_drift(features: pd.DataFrame) -> None:
    reference = features[features["timestamp"] <= "2022-12-31"]
    calm = features[(features["timestamp"] >= "2023-06-01") & (features["timestamp"] < "2023-09-01")]
    assert measure(reference, calm, 0.5).share >= 0.3  # the quiet summer of 2023 against a decade of swings
    distorted = reference.sample(120, random_state=2).copy()
    numeric = [c for c in drift_columns(distorted.columns) if reference[c].nunique() > 2]
    # Every input moved by three of its own standard deviations: a window unlike any the training history holds.
    distorted[numeric] = distorted[numeric] + 3 * reference[numeric].std()
    result = measure(reference, distorted, 0.5)
    assert result.share >= 0.5 and set(numeric) & set(result.drifted)


def test_the_test_is_calibrated_on_the_history_s_own_windows() -> None:
    """Independent days keep the plain 5 % test; serially dependent ones (rolling statistics) get the cut that
    95 % of the history's own windows pass — so an ordinary stretch of a trending series is not 'drift'."""
    rng = np.random.default_rng(0)
    n, rows = 1500, 60
    noise = rng.standard_normal(n)
    trending = np.zeros(n)
    for t in range(1, n):  # AR(1) with phi 0.98: the memory of a 50-day rolling statistic
        trending[t] = 0.98 * trending[t - 1] + noise[t]
    reference = pd.DataFrame({"timestamp": np.arange(n), "log_return_1": noise, "realized_vol_30": trending})
    cuts = calibrated_thresholds(reference, ["log_return_1", "realized_vol_30"], rows, 0.05)
    assert 0.01 < cuts["log_return_1"] <= 0.05
    assert cuts["realized_vol_30"] < 1e-4
    ordinary = reference.iloc[700 : 700 + rows]  # a window of the same process
    plain = measure(reference, ordinary, 0.5, calibrate=False)
    calibrated = measure(reference, ordinary, 0.5)
    assert "realized_vol_30" in plain.drifted and "realized_vol_30" not in calibrated.drifted
    # Without the report (the replay's daily check): the same K-S p-values and verdicts as Evidently's.
    for fast, full in ((measure(reference, ordinary, 0.5, calibrate=False, report=False), plain),
                       (measure(reference, ordinary, 0.5, report=False), calibrated)):  # fmt: skip
        assert fast.drifted == full.drifted and fast.snapshot is None
        for column, values in full.columns.items():
            assert fast.columns[column]["score"] == pytest.approx(values["score"], rel=1e-9, abs=1e-300)


def _drift(share: float) -> object:
    from bitpredict.operations.monitor import DriftResult

    return DriftResult(share, [], {}, 100, 60)


def test_one_trigger_per_episode_and_the_cooldown_holds() -> None:
    config = DriftSettings(cooldown_hours=24)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    state = DriftState()
    first, state = decide(_drift(0.8), None, state, config, t0)
    assert first.trigger
    again, state = decide(_drift(0.9), None, state, config, t0 + timedelta(hours=1))
    assert again.drifting and not again.trigger and "already triggered" in again.reasons[-1]
    calm, state = decide(_drift(0.1), None, state, config, t0 + timedelta(hours=2))
    assert not calm.drifting and not state.in_episode
    early, state = decide(_drift(0.8), None, state, config, t0 + timedelta(hours=3))  # a new episode, too soon
    assert early.drifting and not early.trigger and "cooldown" in early.reasons[-1]
    calm, state = decide(_drift(0.0), None, state, config, t0 + timedelta(hours=30))
    late, state = decide(_drift(0.7), None, state, config, t0 + timedelta(hours=31))
    assert late.trigger
    skill, _ = decide(_drift(0.0), -0.05, DriftState(), config, t0)
    assert skill.trigger and "live skill" in skill.reasons[0]


def _shifted(current: pd.DataFrame, reference: pd.DataFrame) -> pd.DataFrame:
    """Days after the reference with every input moved by three of the reference's standard deviations: drift
    beyond anything in the training history (a real later window need not be — the test is calibrated)."""
    columns = [c for c in drift_columns(current.columns) if reference[c].nunique() > 2]
    return current.assign(**{c: current[c] + 3 * reference[c].std() for c in columns})


def test_the_job_reports_decides_and_triggers_once(
    features: pd.DataFrame, model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = load_settings(data_dir=str(tmp_path / "data"))
    storage.write_parquet(features, data_path(settings, FEATURES))
    calls: list[list[str]] = []
    now = datetime(2026, 1, 1, tzinfo=UTC)
    current = _shifted(features[features["timestamp"] >= "2024-09-01"], features[features["timestamp"] <= "2022-12-31"])
    first = run_drift(settings, str(model_dir), lambda reasons: calls.append(reasons) or "run-1", now, current)
    assert first["triggered"] and first["triggered_run"] == "run-1" and len(calls) == 1
    assert Path(first["report_html"]).read_text().lower().count("<html") >= 1
    second = run_drift(
        settings, str(model_dir), lambda r: calls.append(r) or "run-2", now + timedelta(hours=6), current
    )
    assert second["drifting"] and not second["triggered"] and len(calls) == 1
    metrics = Path(first["metrics_file"]).read_text()
    assert "bitpredict_drift_share" in metrics and "bitpredict_drift_column_score{" in metrics
    latest = json.loads((Path(settings.path("reports", "drift")) / "latest.json").read_text())
    assert latest["checked_at"] == second["checked_at"] and latest["reasons"]
    few = run_drift(settings, str(model_dir), None, now + timedelta(days=3), current.head(5))
    assert few["share"] is None and "only 5 current rows" in few["reasons"][-1]
    assert np.isfinite(first["share"])


def test_a_drift_trigger_submits_to_kfp(features: pd.DataFrame, model_dir: Path, tmp_path: Path, monkeypatch) -> None:
    """`bitpredict drift --trigger-command 'python -m pipelines.rerun'` with KFP_HOST: the rerun is a pipeline run
    created on the KFP API (a local server) with the last published run's parameters, and its outcome is in the drift
    report."""
    import subprocess
    import sys

    from bitpredict.operations.publish import publish
    from tests.fakes.kfp_api import FakeKfp

    repo = Path(__file__).resolve().parents[2]
    data = tmp_path / "data"
    settings = load_settings(data_dir=str(data))
    before, after = features[features["timestamp"] <= "2022-12-31"], features[features["timestamp"] > "2022-12-31"]
    drifted = pd.concat([before, _shifted(after, before)], ignore_index=True)
    storage.write_parquet(drifted, tmp_path / "features" / "bitcoin_features.parquet")
    recorded = {"data_root": "gs://b/data", "files_dir": "", "sources": "binance", "since": "2020-01-01",
                "interval": "1d", "window": 30, "epochs": 9, "test_days": 365, "selection_days": 365,
                "switch_pvalue": 0.1, "mlflow_tracking_uri": "http://mlflow:5000", "model_store": "gs://b/serving",
                "cache_dir": "", "extra_settings": "{}"}  # fmt: skip
    publish(settings, {"features": str(tmp_path / "features")}, run_id="last-good", parameters=recorded)
    server = FakeKfp().start()
    try:
        env = {"PATH": str(Path(sys.executable).parent), "KFP_HOST": server.url, "BITPREDICT_DATA_DIR": str(data),
               "PYTHONPATH": str(repo), "HOME": str(tmp_path)}  # fmt: skip
        done = subprocess.run(
            [sys.executable, "-m", "bitpredict.cli", "drift", "--model-dir", str(model_dir),
             "--trigger-command", f"{sys.executable} -m pipelines.rerun"],  # what `make drift` passes
            cwd=repo, env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        assert "TRIGGERED kfp rerun" in done.stdout and "run_id=" in done.stdout
        assert len(server.state.runs) == 1 and len(server.state.pipelines) == 1
        assert server.state.runs[0]["runtime_config"]["parameters"] == recorded  # the last run, replayed
        latest = json.loads((data / "reports" / "drift" / "latest.json").read_text())
        assert latest["rerun"]["ok"] and latest["rerun"]["run_id"] == server.state.runs[0]["run_id"]
        assert latest["rerun"]["replayed"] == "last-good"
    finally:
        server.stop()


def test_live_quality_and_the_regression_report_use_closed_forecasts(
    features: pd.DataFrame, model_dir: Path, tmp_path: Path
) -> None:
    """Forecasts served in the past whose day has closed: live MAE next to persistence, and Evidently's report."""
    from bitpredict.operations.request_log import RequestLog

    settings = load_settings(data_dir=str(tmp_path / "data"))
    storage.write_parquet(features, data_path(settings, FEATURES))
    days = features[features["timestamp"] >= "2024-10-01"].reset_index(drop=True)
    log = RequestLog(settings.path("requests"), batch_size=100, flush_s=0.1)
    for i in range(len(days) - 1):  # a forecast made on day i for day i+1: always 1% too high
        realised = float(days["close"].iloc[i + 1])
        log.append({"as_of": str(days["timestamp"].iloc[i + 1].date()), "predicted_close": realised * 1.01,
                    "last_close": float(days["close"].iloc[i]), "bars": {}})  # fmt: skip
    log.close()
    now = datetime(2026, 1, 1, tzinfo=UTC)
    summary = run_drift(settings, str(model_dir), None, now, features[features["timestamp"] >= "2024-09-01"])
    quality = summary["live_quality"]
    assert quality["days"] == len(days) - 1
    assert quality["mae"] == pytest.approx(float(np.mean(days["close"].iloc[1:] * 0.01)), rel=1e-9)
    assert quality["skill"] == pytest.approx(1 - quality["mae"] / quality["persistence_mae"])
    assert Path(summary["regression_html"]).exists()


def _request_record(bars: pd.DataFrame, predicted_close: float, news_mean: float) -> dict:
    """What the transformer logs for one request: its outcome and the rows it was made from (sentiment included)."""
    from bitpredict.features.columns import sentiment_columns

    sent = {c: [0.0] * len(bars) for c in sentiment_columns("news")}
    sent["news_vader_mean"] = [news_mean] * len(bars)
    sent["news_count"] = [3.0] * len(bars)
    logged = bars[["timestamp", "open", "high", "low", "close", "volume"]].assign(
        timestamp=bars["timestamp"].astype("int64") // 10**9, **sent
    )
    last = bars["timestamp"].iloc[-1]
    return {
        "last_day": str(last.date()),
        "as_of": str((last + pd.Timedelta(days=1)).date()),
        "predicted_close": predicted_close,
        "last_close": float(bars["close"].iloc[-1]),
        "bars": logged.to_dict("list"),
    }


def test_each_day_counts_once_with_its_latest_request_and_its_sentiment(
    clean_daily: pd.DataFrame, features: pd.DataFrame, tmp_path: Path
) -> None:
    """A day asked for five times is one current row (the latest request, sentiment kept) and one live-quality day."""
    from bitpredict.operations.monitor import current_inputs, realised_forecasts, served_features
    from bitpredict.operations.request_log import RequestLog

    settings = load_settings(data_dir=str(tmp_path / "data"))
    storage.write_parquet(features, data_path(settings, FEATURES))
    log = RequestLog(settings.path("requests"), batch_size=100, flush_s=0.1)
    busy, quiet = clean_daily.iloc[-202:-2], clean_daily.iloc[-201:-1]  # requests ending on two consecutive days
    for i in range(5):
        log.append(_request_record(busy, float(quiet["close"].iloc[-1]) * (1.10 - 0.02 * i), news_mean=0.1 * i))
    log.append(_request_record(quiet, float(clean_daily["close"].iloc[-1]), news_mean=-0.3))
    log.close()

    served = served_features(settings, pd.Timestamp("2000-01-01", tz="UTC"))
    assert len(served) == 2 and served["timestamp"].is_unique
    by_day = served.set_index("timestamp")
    assert by_day.loc[busy["timestamp"].iloc[-1], "news_vader_mean"] == pytest.approx(0.4)  # the latest request's
    assert by_day.loc[quiet["timestamp"].iloc[-1], "news_vader_mean"] == pytest.approx(-0.3)
    assert (by_day["news_missing"] == 0).all()

    current = current_inputs(settings, reference_end=str(busy["timestamp"].iloc[-2].date()))
    assert current["timestamp"].is_unique  # the table's new days and the served ones: each day once
    assert current.set_index("timestamp").loc[busy["timestamp"].iloc[-1], "news_vader_mean"] == pytest.approx(0.4)

    joined = realised_forecasts(settings)
    assert len(joined) == 2  # not six: live quality weighs each day once
    busy_forecast = joined.set_index("as_of").loc[str(quiet["timestamp"].iloc[-1].date()), "predicted_close"]
    assert busy_forecast == pytest.approx(float(quiet["close"].iloc[-1]) * 1.02)  # the latest of the five
