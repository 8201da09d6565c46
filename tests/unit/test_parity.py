"""Served = trained: for every day of the real history, the window the transformer builds from a request equals
the training table's rows — for a 200-row request and a 1,000-row one, with the day's sentiment and flags — on the
embedded sample and, when present, on ../shared/data.

The training side is the pipeline's own stages on the raw files (clean → sentiment → indicators → merge); the
serving side is what the transformer runs (``parse_bars`` + ``feature_window``: NumPy arrays, no DataFrame) on the
inputs a client sends: the clean rows with ``is_imputed`` and the published sentiment of those days
(``request_sentiment``, what ``inference.client`` sends; its JSON is checked in test_serving_domain, here the decoded
tensors are built directly to keep 10,000 requests within the default suite's time). The DataFrame path
(``parse_request``) is checked to give the same window on a sample of the days.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bitpredict import storage
from bitpredict.config import ModelSettings, load_settings
from bitpredict.data.clean import OUTLIER_WINDOW, clean_path, flag_outliers, run_clean
from bitpredict.features.columns import request_sentiment
from bitpredict.features.indicators import MODEL_FEATURES, WARMUP, compute_indicators
from bitpredict.features.merge import labelled, run_merge
from bitpredict.features.online import HISTORY, RESTARTED, model_frame
from bitpredict.forecast.dataset import Scaler, model_input_columns
from bitpredict.forecast.serving import ModelSpec, feature_window, parse_bars, parse_request
from bitpredict.pipeline.stage_table import FEATURES, data_path
from tests.conftest import copy_data_dir

# Both sides compute in float64 from the same rows; the scaled window is float32 (values up to ~20 std, where one
# float32 step is ~2e-6). Anything above a couple of steps would be a real difference.
ATOL = 5e-6
REQUEST_SIZES = (200, 1000)


def _pipeline_tables(raw_dir: Path, tmp: Path) -> dict:
    """The pipeline's tables: clean bars, daily sentiment (VADER), the features table."""
    from bitpredict.features.indicators import run_indicators
    from bitpredict.features.sentiment import run_sentiment

    data_dir = copy_data_dir(raw_dir, tmp / "data")
    settings = load_settings(data_dir=str(data_dir), sentiment={"finbert": "off"})
    run_clean(settings, "1d")
    run_sentiment(settings)
    run_indicators(settings)
    run_merge(settings)
    return {
        "bars": storage.read_parquet(clean_path(settings, "1d")),
        "sentiment": storage.read_parquet(settings.path("interim", "sentiment_daily.parquet")),
        "features": storage.read_parquet(data_path(settings, FEATURES)),
        "settings": settings,
    }


@pytest.fixture(scope="module")
def trained(shared_raw_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The pipeline's tables on the shared data (skips without ../shared/data)."""
    return _pipeline_tables(shared_raw_dir, tmp_path_factory.mktemp("parity"))


@pytest.fixture(scope="module")
def trained_sample(sample_raw_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The pipeline's tables on the embedded sample (hourly bars and the hand-made news): always available."""
    return _pipeline_tables(sample_raw_dir, tmp_path_factory.mktemp("parity_sample"))


def _spec(features: pd.DataFrame) -> ModelSpec:
    columns = model_input_columns(features.columns)  # the network's full input list: features, flags, sentiment
    scaler = Scaler.fit(labelled(features), columns)
    meta = {
        "feature_columns": columns,
        "window": ModelSettings().window,
        "warmup": WARMUP,
        "scaler": scaler.to_dict(),
        "quantiles": [0.1, 0.5, 0.9],
    }
    return ModelSpec.from_metadata(meta, "1", max_rows=max(REQUEST_SIZES))


def _tensors(market: pd.DataFrame, sentiment: pd.DataFrame) -> dict[str, np.ndarray]:
    """Every input a client sends, as whole-history arrays; a request is a slice of each."""
    out = {"timestamp": market["timestamp"].astype("int64").to_numpy() // 10**9}
    out.update({c: market[c].to_numpy(dtype="float64") for c in ("open", "high", "low", "close", "volume")})
    out["is_imputed"] = market["is_imputed"].to_numpy(dtype="float64")
    out.update({f"sentiment_{c}": sentiment[c].to_numpy(dtype="float64") for c in sentiment.columns})
    return out


@pytest.mark.parametrize(("tables", "news_days"), [("trained_sample", 0), ("trained", 200)])
def test_every_day_a_request_gets_the_training_rows(
    request: pytest.FixtureRequest, tables: str, news_days: int
) -> None:
    trained = request.getfixturevalue(tables)
    bars, features, daily = trained["bars"], trained["features"], trained["sentiment"]
    spec = _spec(features)
    assert {"is_outlier", "is_imputed", "news_vader_mean", "news_missing"} <= set(spec.feature_columns)
    expected = spec.scaler.transform(features)
    row_of_day = pd.Series(np.arange(len(features)), index=features["timestamp"])
    sentiment = request_sentiment(daily, bars["timestamp"])  # what a client sends for each day
    if news_days:
        assert sentiment["news_count"].gt(0).sum() > news_days  # the news span is really in the requests
    tensors = _tensors(bars, sentiment)
    worst = (0.0, None)
    days = 0
    for t in range(spec.min_rows - 1, len(bars)):
        row = row_of_day[bars["timestamp"].iat[t]]
        want = expected[row - spec.window + 1 : row + 1]
        for size in REQUEST_SIZES:
            first = max(0, t + 1 - size)
            inputs = {k: ("INT64" if k == "timestamp" else "FP64", v[first : t + 1]) for k, v in tensors.items()}
            window = feature_window(parse_bars(inputs, spec), spec)[0]
            gap = float(np.max(np.abs(window - want)))
            if gap > worst[0]:
                worst = (gap, (str(bars["timestamp"].iat[t].date()), size))
            if t % 97 == 0:  # the DataFrame path gives the very same window
                assert np.array_equal(feature_window(parse_request(inputs, spec), spec)[0], window)
        days += 1
    assert days == len(bars) - spec.min_rows + 1 > 1_500
    assert worst[0] <= ATOL, f"largest difference {worst[0]:.3g} std on (day, request rows) {worst[1]}"


def test_restarted_indicators_are_talib_on_the_last_history_rows(trained: dict) -> None:
    """Row t of a restarted column is the indicators stage's value on the series cut to rows t − WARMUP … t."""
    bars = trained["bars"][["timestamp", "open", "high", "low", "close", "volume"]]
    full = model_frame(bars)
    for t in (HISTORY - 1, 700, 2_000, len(bars) - 1):
        cut = compute_indicators(bars.iloc[t + 1 - HISTORY : t + 1].reset_index(drop=True)).iloc[-1]
        for column in RESTARTED:
            assert full[column].iat[t] == pytest.approx(cut[column], rel=1e-9, abs=1e-12), (t, column)
    # Every model input is defined on HISTORY rows: cutting the series there changes no value on the last row.
    t = 2_500
    cut = model_frame(bars.iloc[t + 1 - HISTORY : t + 1].reset_index(drop=True)).iloc[-1]
    for column in (*MODEL_FEATURES, "is_outlier"):
        assert full[column].iat[t] == pytest.approx(cut[column], rel=1e-9, abs=1e-12), column


def test_the_outlier_rule_reads_only_what_a_request_carries() -> None:
    rng = np.random.default_rng(5)
    close = 100 * np.exp(np.cumsum(rng.standard_t(3, 600) * 0.02))
    close[400] *= 1.8
    flags = flag_outliers(close, 10.0).to_numpy()
    assert flags[400]
    need = OUTLIER_WINDOW + 2  # the judged return's two closes and the OUTLIER_WINDOW returns before it
    assert need <= WARMUP + 1
    for t in (need - 1, 400, 599):
        assert flags[t] == flag_outliers(close[t + 1 - need : t + 1], 10.0).iat[-1]
