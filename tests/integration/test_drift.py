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
    alarm, _ = decide(_drift(0.0), ["calibration broken: upper tail"], DriftState(), config, t0)
    assert alarm.trigger and alarm.reasons == ["calibration broken: upper tail"]  # the forecast monitor comes first


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
    before, window = features.iloc[:-10], features.iloc[-10:]  # the input window moved off the year before it
    drifted = pd.concat([before, _shifted(window, before)], ignore_index=True)
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


@pytest.fixture(scope="module")
def served_model(features: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real exported champion (the EWMA baseline, 7 levels) trained on the days up to 2020-12-31, with its
    reference: what the forecast monitor loads and runs on the ingested table."""
    from bitpredict.config import ModelSettings
    from bitpredict.features.merge import labelled
    from bitpredict.forecast import baselines
    from bitpredict.forecast.artifact import write_metadata
    from bitpredict.forecast.train import baseline_metadata

    config = ModelSettings()
    table = labelled(features[features["timestamp"] <= "2020-12-31"].reset_index(drop=True))
    fit = baselines.fit_baseline(
        "ewma", table, len(table), tuple(config.quantiles), config.window, tuple(config.horizons)
    )
    directory = tmp_path_factory.mktemp("store") / "bitpredict-lstm" / "3"
    exported = baselines.export(fit, directory)
    (exported / "saved_model").rename(directory / "_sm")
    for item in (directory / "_sm").iterdir():  # the version layout TF Serving loads: graph beside the metadata
        item.rename(directory / item.name)
    (directory / "_sm").rmdir()
    write_metadata(directory, baseline_metadata(fit, config))
    storage.write_parquet(table, directory / REFERENCE_FILE)
    return directory


def _monitor_settings(tmp_path: Path, table: pd.DataFrame) -> object:
    """A data dir whose published table ends with ``table``'s last day — still open, as ingested (no target yet)."""
    table = table.copy()
    table.loc[table.index[-1], "target_log_return"] = np.nan
    settings = load_settings(data_dir=str(tmp_path / "data"))
    storage.write_parquet(table, data_path(settings, FEATURES))
    return settings


def test_the_forecast_monitor_closes_the_champion_on_the_ingested_table(
    features: pd.DataFrame, served_model: Path, tmp_path: Path
) -> None:
    """The champion's own forecasts on the ingested days, closed with the table's next-day return: the ledger,
    the per-tail tests, the CUSUM, ACI's state for this version and the gauges the alert rules read."""
    table = features[features["timestamp"] <= "2021-06-30"].reset_index(drop=True)
    settings = _monitor_settings(tmp_path, table)
    summary = run_drift(settings, str(served_model), None, datetime(2021, 7, 1, tzinfo=UTC), html=False)
    monitor = summary["forecast_monitor"]
    assert monitor["days"] == settings.drift.window_days and monitor["last_day"] == "2021-06-29"
    assert set(monitor["tails"]) == {"lower_0.1", "upper_0.9"} and "threshold" in monitor["cusum"]
    for figures in monitor["tails"].values():
        assert 0 <= figures["observed"] <= 1 and 0 < figures["cut"] < settings.drift.monitor_size
    ledger = storage.read_parquet(storage.join(settings.path("reports", "drift"), "ledger.parquet"))
    closed = ledger.dropna(subset=["actual"])
    by_day = table.set_index("timestamp")
    # every forecast is closed with the ingested table's own next-day return, never another number
    np.testing.assert_allclose(closed["actual"], by_day.loc[closed["timestamp"], "target_log_return"].to_numpy())
    np.testing.assert_allclose(closed["q90"], closed["ref_q90"], rtol=1e-5)  # the EWMA champion is the naive forecast
    record = json.loads((Path(settings.path("reports", "drift")) / "aci.json").read_text())
    assert record["model_version"] == "3" and len(record["aci"]["levels"]) == 6
    gauges = Path(summary["metrics_file"]).read_text()
    for name in ("bitpredict_monitor_calibration_broken", "bitpredict_monitor_pinball_worse_than_naive",
                 "bitpredict_monitor_input_drift", "bitpredict_monitor_last_check_timestamp_seconds"):  # fmt: skip
        assert f"\n{name} " in gauges, name
    assert summary["input_reference"] == "2020-06-21/2021-06-20"  # the 365 days before the 10-day input window

    # every horizon closes on its own day, from the ingested closes only
    book = storage.read_parquet(storage.join(settings.path("reports", "drift"), "ledger_horizons.parquet"))
    assert sorted(book["horizon"].unique()) == [1, 7, 30]
    close = table.set_index("timestamp")["close"]
    last_day = table["timestamp"].iloc[-1]
    for h, rows in book.groupby("horizon"):
        done = rows.dropna(subset=["actual"])
        assert (done["closes_on"] <= last_day).all() and (
            rows.loc[rows["actual"].isna(), "closes_on"] > last_day - pd.Timedelta(days=1)
        ).all()
        ratio = close.loc[done["closes_on"]].to_numpy() / close.loc[done["timestamp"]].to_numpy()
        np.testing.assert_allclose(done["actual"], np.log(ratio), rtol=1e-9, err_msg=f"{h}-day")
    one_day = book[book["horizon"] == 1].set_index("timestamp")
    np.testing.assert_allclose(one_day.loc[ledger["timestamp"], "q10"], ledger["q10"].to_numpy())
    horizons = monitor["horizons"]
    assert set(horizons) == {"1", "7", "30"} and horizons["30"]["closed"] == len(book[book["horizon"] == 30]) - 30
    assert horizons["30"]["independent"] == -(-horizons["30"]["closed"] // 30)
    assert 'bitpredict_monitor_horizon_coverage_80{horizon="30"}' in gauges


def test_invented_client_bars_change_no_verdict(features: pd.DataFrame, served_model: Path, tmp_path: Path) -> None:
    """Sixty requests with invented bars and forecasts are logged; the check's evidence — inputs, the forecast
    monitor, its decision — is exactly what it was without them (served bars never enter it)."""
    from bitpredict.operations.request_log import RequestLog

    table = features[features["timestamp"] <= "2021-06-30"].reset_index(drop=True)
    now = datetime(2021, 7, 1, tzinfo=UTC)
    clean = run_drift(_monitor_settings(tmp_path / "a", table), str(served_model), None, now, html=False)
    settings = _monitor_settings(tmp_path / "b", table)
    log = RequestLog(settings.path("requests"), batch_size=100, flush_s=0.1)
    rng = np.random.default_rng(0)
    for i in range(60):
        day = pd.Timestamp("2021-05-01", tz="UTC") + pd.Timedelta(days=i)
        stamps = pd.date_range(end=day, periods=200, freq="D")
        close = 1e6 * np.exp(np.cumsum(rng.normal(0, 0.5, 200)))  # a market that never was
        bars = pd.DataFrame({"timestamp": stamps.astype("int64") // 10**9, "open": close, "high": close * 2,
                             "low": close / 2, "close": close, "volume": close})  # fmt: skip
        log.append({"last_day": str(day.date()), "as_of": str((day + pd.Timedelta(days=1)).date()),
                    "predicted_close": 1.0, "lower": 0.5, "upper": 2.0, "last_close": float(close[-1]),
                    "bars": bars.to_dict("list")})  # fmt: skip
    log.close()
    forged = run_drift(settings, str(served_model), None, now, html=False)
    for key in ("share", "drifted_columns", "forecast_monitor", "live_calibration", "drifting", "triggered",
                "current_rows", "input_reference"):  # fmt: skip
        assert forged[key] == clean[key], key
    # what the clients were answered is closed against the ingested close, reported and never a verdict
    assert forged["served_closed"]["days"] > 0 and forged["served_closed"]["interval_held"] == 0.0


@pytest.mark.parametrize(
    ("end", "moved"),
    [("2021-05-25", True),  # the May 2021 crash (-30 % in a week)
     ("2022-06-20", True),  # LUNA / Celsius
     ("2023-08-01", False),  # the quiet summer of 2023
     ("2024-06-30", False)],  # an ordinary month
)  # fmt: skip
def test_input_drift_fires_on_a_crash_and_not_on_an_ordinary_window(
    features: pd.DataFrame, end: str, moved: bool
) -> None:
    """The last 10 days against the 365 before them; the share of drifted columns against the shares the
    reference's own 10-day windows show (their 95 % quantile): a crash is more unusual than that, a calm month not."""
    from bitpredict.config import DriftSettings
    from bitpredict.operations.monitor import measure

    config = DriftSettings()
    current = features[features["timestamp"] <= end].tail(config.input_window_days)
    reference = features[features["timestamp"] < current["timestamp"].min()].tail(config.reference_days)
    result = measure(reference, current, config.share_threshold, report=False)
    assert result.share_cut is not None and 0 < result.share_cut < 1
    assert result.drifted_as_a_whole(config.share_threshold) is moved, (result.share, result.share_cut, result.drifted)
