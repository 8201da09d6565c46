"""merge: the features table joins indicators, sentiment and targets with no look-ahead."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bitpredict import storage
from bitpredict.config import SentimentSettings, load_settings
from bitpredict.data.clean import run_clean
from bitpredict.data.schemas import FEATURE_TARGETS
from bitpredict.features.columns import join_sentiment, neutral_sentiment
from bitpredict.features.indicators import WARMUP, compute_indicators, run_indicators
from bitpredict.features.merge import build_features, run_merge
from bitpredict.features.sentiment import run_sentiment
from bitpredict.pipeline.stage_table import FEATURES, PROCESSED, data_path
from tests.conftest import copy_data_dir


def _bars(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, n)))
    return pd.DataFrame(
        {
            "timestamp": pd.date_range("2022-01-01", periods=n, freq="D", tz="UTC"),
            "open": close * 0.995,
            "high": close * 1.02,
            "low": close * 0.98,
            "close": close,
            "volume": rng.uniform(100, 200, n),
            "quote_volume": rng.uniform(1e4, 2e4, n),
            "source": "yahoo",
            "is_imputed": False,
            "is_outlier": False,
        }
    )


def test_targets_are_the_next_day_and_the_last_row_has_none() -> None:
    bars = _bars(WARMUP + 20)
    features = build_features(compute_indicators(bars), None, WARMUP)
    assert len(features) == 20 and features["timestamp"].iloc[0] == bars["timestamp"].iloc[WARMUP]
    close = features["close"].to_numpy()
    assert np.allclose(features["target_log_return"].iloc[:-1], np.log(close[1:] / close[:-1]))
    assert np.allclose(features["target_close"].iloc[:-1], close[1:])
    assert (features["target_direction"].iloc[:-1] == (np.diff(close) > 0).astype(int)).all()
    assert features[list(FEATURE_TARGETS)].iloc[-1].isna().all()
    assert list(features.columns[-3:]) == list(FEATURE_TARGETS) and "source" not in features.columns
    assert features["is_imputed"].dtype == np.float64


def test_missing_sentiment_days_are_neutral_and_flagged() -> None:
    days = pd.date_range("2024-01-01", periods=4, freq="D", tz="UTC")
    frame = pd.DataFrame({"timestamp": days, "close": 1.0})
    daily = pd.DataFrame({"timestamp": days[[1, 3]], "news_vader_mean": [0.5, -0.2], "news_count": [3.0, 1.0]})
    out = join_sentiment(frame, daily).set_index("timestamp")
    assert out.loc[days[1], "news_vader_mean"] == 0.5 and out.loc[days[1], "news_missing"] == 0.0
    neutral = neutral_sentiment("news")
    for column, value in neutral.items():
        assert out.loc[days[0], column] == value
    assert (out["tweets_missing"] == 1.0).all() and (out["tweets_count"] == 0.0).all()


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.integers(min_value=0, max_value=59), scale=st.floats(min_value=0.2, max_value=5.0))
def test_features_at_or_before_t_never_change_when_the_future_does(cut: int, scale: float) -> None:
    bars = _bars(WARMUP + 60, seed=1)
    t = WARMUP + cut
    changed = bars.copy()
    changed.loc[t + 1 :, ["open", "high", "low", "close", "volume", "quote_volume"]] *= scale
    full = build_features(compute_indicators(bars), None, WARMUP)
    truncated = build_features(compute_indicators(bars.iloc[: t + 1]), None, WARMUP)
    perturbed = build_features(compute_indicators(changed), None, WARMUP)
    inputs = [c for c in full.columns if c not in FEATURE_TARGETS]
    pd.testing.assert_frame_equal(full.loc[:cut, inputs], truncated.loc[:cut, inputs])
    pd.testing.assert_frame_equal(full.loc[:cut, inputs], perturbed.loc[:cut, inputs])
    # Targets look exactly one day ahead: the target of t-1 is known at t and equal in all three.
    pd.testing.assert_frame_equal(
        full.loc[: cut - 1, list(FEATURE_TARGETS)], truncated.loc[: cut - 1, list(FEATURE_TARGETS)]
    )


def test_the_four_stages_on_the_real_shared_data(shared_raw_dir: Path, tmp_path: Path) -> None:
    data_dir = copy_data_dir(shared_raw_dir, tmp_path / "data")
    settings = load_settings(data_dir=str(data_dir), sentiment=SentimentSettings(finbert="off"))
    run_clean(settings, "1d")
    run_indicators(settings)
    meta = run_sentiment(settings)
    assert meta["finbert"] == "off"
    manifest = run_merge(settings)

    features = storage.read_parquet(data_path(settings, FEATURES))
    assert len(features) == 3710 - WARMUP == manifest["rows"] and manifest["labelled_rows"] == len(features) - 1
    assert manifest["warmup_rows"] == WARMUP and manifest["first"] == features["timestamp"].iloc[0].isoformat()
    assert features["timestamp"].iloc[-1] == pd.Timestamp("2024-11-12", tz="UTC")
    feature_cols = manifest["feature_columns"]
    assert not features[feature_cols].isna().any().any()  # after the warm-up nothing is missing
    news_days = features.loc[features["news_missing"] == 0.0, "timestamp"]
    assert news_days.min() >= pd.Timestamp("2021-10-01", tz="UTC") and news_days.max() < pd.Timestamp(
        "2022-08-01", tz="UTC"
    )
    assert 200 <= len(news_days) <= 300
    csv = pd.read_csv(data_path(settings, FEATURES).removesuffix(".parquet") + ".csv")
    assert len(csv) == len(features)
    on_disk = json.loads(storage.read_text(storage.join(data_path(settings, PROCESSED), "features.json")))
    assert on_disk["columns"] == list(features.columns) and on_disk["code_version"]


def test_merge_without_indicators_says_what_to_run(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="run `bitpredict indicators` first"):
        run_merge(load_settings(data_dir=str(tmp_path)))


def test_no_label_spans_a_filled_bar() -> None:
    """A filled day copies the previous close: the target into it would be a fake 0 and the target out of it the
    gap's whole move. Neither is a label; the days stay history for the windows after them."""
    from bitpredict.config import CleanSettings
    from bitpredict.data.clean import clean_bars
    from bitpredict.features.columns import TARGET
    from bitpredict.features.merge import labelled
    from bitpredict.forecast.dataset import label_rows

    raw = _bars(WARMUP + 60, seed=4)
    gap = WARMUP + 30  # this day is missing at the source; clean fills it flat
    cleaned = clean_bars({"yahoo": raw.drop(index=gap)}, "1d", CleanSettings()).bars
    assert cleaned["is_imputed"].sum() == 1
    features = build_features(compute_indicators(cleaned), None, WARMUP)
    day = features.index[features["is_imputed"] == 1.0][0]
    assert features.loc[day - 1, "close"] == features.loc[day, "close"]  # the flat copy
    assert features.loc[[day - 1, day], TARGET].isna().all()  # neither a fake 0 nor the two-day move
    assert features.loc[day - 2, TARGET] == pytest.approx(np.log(raw["close"][gap - 1] / raw["close"][gap - 2]))
    rows = labelled(features)
    assert rows["timestamp"].diff().dropna().eq(pd.Timedelta(days=1)).all()  # consecutive days, history kept
    assert len(rows) == len(features) - 1  # up to the last row whose next day is known
    labels = label_rows(rows, 0, len(rows))
    assert day - 1 not in labels and day not in labels and len(labels) == len(rows) - 2
