"""indicators: TA-Lib is the engine — the wrapper's NaN warm-up, dtypes and refusals, no look-ahead, and the same
model features from a short history."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import talib
from hypothesis import given, settings
from hypothesis import strategies as st

from bitpredict import storage
from bitpredict.config import load_settings
from bitpredict.errors import InputError
from bitpredict.features.indicators import (
    FEATURE_COLUMNS,
    MODEL_FEATURES,
    WARMUP,
    compute_indicators,
    indicators_path,
    run_indicators,
)
from bitpredict.features.online import HISTORY, RESTARTED, DailyBars, model_inputs, restarted
from tests.conftest import SAMPLE_DAYS, copy_data_dir

RTOL = 1e-9


def _talib_reference(bars: pd.DataFrame) -> dict[str, np.ndarray]:
    high, low, close, volume = (bars[c].to_numpy(dtype="float64") for c in ("high", "low", "close", "volume"))
    macd, signal, hist = talib.MACD(close, fastperiod=12, slowperiod=26, signalperiod=9)
    upper, middle, lower = talib.BBANDS(close, timeperiod=20, nbdevup=2, nbdevdn=2, matype=0)
    return {
        "sma_7": talib.SMA(close, 7),
        "sma_20": talib.SMA(close, 20),
        "sma_50": talib.SMA(close, 50),
        "ema_12": talib.EMA(close, 12),
        "ema_26": talib.EMA(close, 26),
        "ema_50": talib.EMA(close, 50),
        "rsi_14": talib.RSI(close, 14),
        "macd": macd,
        "macd_signal": signal,
        "macd_hist": hist,
        "bb_upper": upper,
        "bb_middle": middle,
        "bb_lower": lower,
        "atr_14": talib.ATR(high, low, close, 14),
        "natr_14": talib.NATR(high, low, close, 14),
        "obv": talib.OBV(close, volume),
        "log_return_1": np.log(talib.ROCR(close, 1)),
        "log_return_30": np.log(talib.ROCR(close, 30)),
    }


def test_every_talib_indicator_matches_on_the_real_daily_data(clean_daily: pd.DataFrame) -> None:
    ours = compute_indicators(clean_daily)
    assert len(ours) == len(clean_daily) == SAMPLE_DAYS
    for name, expected in _talib_reference(clean_daily).items():
        actual = ours[name].to_numpy()
        np.testing.assert_allclose(actual[WARMUP:], expected[WARMUP:], rtol=RTOL, atol=0, err_msg=name)
        # the same bars are undefined (NaN) in both, so neither starts early
        assert np.array_equal(np.isnan(actual), np.isnan(expected)), name


def test_the_features_after_the_warm_up_are_complete_and_finite(clean_daily: pd.DataFrame) -> None:
    frame = compute_indicators(clean_daily)
    values = frame.loc[WARMUP:, list(FEATURE_COLUMNS)].to_numpy(dtype="float64")
    assert np.isfinite(values).all()
    assert frame["rsi_14"].dropna().between(0, 100).all()
    assert frame.loc[WARMUP:, "obv_flow_30"].between(-1, 1).all()
    # the input columns pass through unchanged
    pd.testing.assert_frame_equal(frame[list(clean_daily.columns)], clean_daily.reset_index(drop=True))


def test_the_wrapper_feeds_talib_any_numeric_dtype(clean_daily: pd.DataFrame) -> None:
    """TA-Lib takes only float64 ("input array type is not double"); bars stored as float32 prices and integer
    volume give what their float64 values give."""
    bars = clean_daily.iloc[:300].reset_index(drop=True)
    narrow = bars.astype({c: "float32" for c in ("open", "high", "low", "close")}).assign(
        volume=bars["volume"].round().astype("int64")
    )
    with pytest.raises(Exception, match="not double"):
        talib.SMA(narrow["close"].to_numpy(), 7)
    widened = narrow.astype({c: "float64" for c in ("open", "high", "low", "close", "volume")})
    columns = list(FEATURE_COLUMNS)
    pd.testing.assert_frame_equal(compute_indicators(narrow)[columns], compute_indicators(widened)[columns])


def test_a_short_series_is_nan_where_talib_is_and_never_raises_inside_talib(clean_daily: pd.DataFrame) -> None:
    bars = clean_daily.iloc[:25].reset_index(drop=True)  # shorter than SMA-50, EMA-26 + MACD signal, the warm-up
    ours = compute_indicators(bars)
    for name, expected in _talib_reference(bars).items():
        assert np.array_equal(np.isnan(ours[name].to_numpy()), np.isnan(expected)), name
    assert ours["sma_50"].isna().all() and ours["macd"].isna().all() and ours["sma_7"].notna().sum() == 19


@settings(max_examples=20, deadline=None)
@given(t=st.integers(min_value=0, max_value=3709), scale=st.floats(min_value=0.3, max_value=3.0))
def test_row_t_never_depends_on_later_bars(clean_daily: pd.DataFrame, t: int, scale: float) -> None:
    bars = clean_daily.iloc[: min(len(clean_daily), t + 40)].reset_index(drop=True)
    changed = bars.copy()
    changed.loc[t + 1 :, ["open", "high", "low", "close", "volume"]] *= scale
    columns = list(FEATURE_COLUMNS)
    expected = compute_indicators(bars.iloc[: t + 1]).loc[:, columns]
    pd.testing.assert_frame_equal(compute_indicators(bars).loc[:t, columns], expected)
    pd.testing.assert_frame_equal(compute_indicators(changed).loc[:t, columns], expected)


def test_model_features_from_a_short_history_equal_the_full_history(clean_daily: pd.DataFrame) -> None:
    """What the serving transformer computes from WARMUP + 1 bars is what training saw on that day.

    Measured in each feature's standard deviation over the history, the unit the model sees after scaling;
    the residue is the recursive seeds (EMA, Wilder) that have not fully faded.
    """
    columns = list(MODEL_FEATURES)
    full = compute_indicators(clean_daily).set_index("timestamp")[columns]
    spread = full.std()
    worst = pd.Series(0.0, index=columns)
    for end in range(WARMUP + 1, len(clean_daily), 41):
        short = compute_indicators(clean_daily.iloc[end - WARMUP - 1 : end]).set_index("timestamp")[columns]
        day = short.index[-1]
        worst = np.maximum(worst, (short.loc[day] - full.loc[day]).abs() / spread)
    assert worst.max() < 1e-3, worst.sort_values().tail(3)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda b: b.drop(columns="volume"), "missing column"),
        (lambda b: b.assign(close=b["close"].where(b.index != 5)), "non-finite"),
        (lambda b: b.iloc[::-1], "strictly increasing"),
        (lambda b: pd.concat([b, b.iloc[[3]]]).sort_values("timestamp"), "strictly increasing"),
        (lambda b: b.drop(index=100), "uneven time steps .* gap before row 100"),
        (lambda b: b.assign(volume=b["volume"].astype(str)), "non-numeric"),
        (lambda b: b.assign(low=b["low"].where(b.index != 7, 0.0)), "prices must be > 0"),
    ],
)
def test_bad_bars_are_refused_with_a_clear_message(clean_daily: pd.DataFrame, mutate, message: str) -> None:
    with pytest.raises(Exception, match=message):
        compute_indicators(mutate(clean_daily.iloc[:200].reset_index(drop=True)))


def test_the_stage_writes_the_table_and_says_what_is_missing(sample_raw_dir: Path, tmp_path: Path) -> None:
    settings = load_settings(data_dir=str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match="run `bitpredict clean` first"):
        run_indicators(settings)

    from bitpredict.data.clean import run_clean

    settings = load_settings(data_dir=str(copy_data_dir(sample_raw_dir, tmp_path / "data")))
    run_clean(settings, "1d")
    report = run_indicators(settings)
    assert report == {"rows": SAMPLE_DAYS, "columns": list(FEATURE_COLUMNS), "warmup": WARMUP}
    assert list(storage.read_parquet(indicators_path(settings)).columns[-len(FEATURE_COLUMNS) :]) == list(
        FEATURE_COLUMNS
    )


def test_talib_would_poison_every_later_row_so_a_nan_inside_is_refused(clean_daily: pd.DataFrame) -> None:
    """Why the wrapper refuses NaNs instead of passing them on: TA-Lib's recursions carry one NaN forever."""
    close = clean_daily["close"].to_numpy(dtype="float64")[:200].copy()
    close[60] = np.nan
    assert np.isnan(talib.EMA(close, 12)[60:]).all()
    with pytest.raises(ValueError, match=r"non-finite values in \['close'\]"):
        compute_indicators(clean_daily.iloc[:200].assign(close=close))


def test_restarted_indicators_are_talib_on_each_rows_cut(clean_daily: pd.DataFrame) -> None:
    """Row t of a restarted column is TA-Lib's own value (talib.EMA, MACD, RSI, ATR, NATR) on rows t − WARMUP … t."""
    high, low, close = (clean_daily[c].to_numpy(dtype="float64") for c in ("high", "low", "close"))
    ours = restarted(high, low, close)
    assert set(ours) == set(RESTARTED)
    assert all(np.isnan(v[: HISTORY - 1]).all() for v in ours.values())
    for t in (HISTORY - 1, 400, 1_000, len(close) - 1):
        cut = slice(t + 1 - HISTORY, t + 1)
        h, lo, c = high[cut], low[cut], close[cut]
        line, signal, hist = talib.MACD(c, 12, 26, 9)
        expected = {
            "ema_12": talib.EMA(c, 12)[-1],
            "ema_26": talib.EMA(c, 26)[-1],
            "macd": line[-1],
            "macd_signal": signal[-1],
            "macd_hist": hist[-1],
            "rsi_14": talib.RSI(c, 14)[-1],
            "atr_14": talib.ATR(h, lo, c, 14)[-1],
            "natr_14": talib.NATR(h, lo, c, 14)[-1],
        }
        for name, value in expected.items():
            assert ours[name][t] == pytest.approx(value, rel=1e-9, abs=1e-12), (t, name)


def test_model_inputs_for_the_last_rows_equal_those_of_the_whole_series(clean_daily: pd.DataFrame) -> None:
    """Each block reads only the rows its outputs need: the last rows computed alone equal the full run."""
    bars = DailyBars.from_frame(clean_daily)
    full = model_inputs(bars)
    for rows in (1, 30, 400):
        last = model_inputs(bars.tail(rows + WARMUP), last=rows)
        for column, values in last.items():
            np.testing.assert_allclose(values, full[column][-rows:], rtol=1e-9, atol=1e-12, err_msg=column)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"last": 0}, "last=0"),
        ({"last": 10_000}, "last=10000"),
        ({"columns": ["close_to_sma_200"]}, "close_to_sma_200"),
    ],
)
def test_model_inputs_refuse_what_they_cannot_compute(clean_daily: pd.DataFrame, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        model_inputs(DailyBars.from_frame(clean_daily.iloc[:200]), **kwargs)


def test_the_stage_refuses_a_series_shorter_than_the_warm_up(clean_daily: pd.DataFrame, tmp_path: Path) -> None:
    from bitpredict.data.clean import clean_path

    settings = load_settings(data_dir=str(tmp_path / "data"))
    storage.write_parquet(clean_daily.iloc[:WARMUP].reset_index(drop=True), clean_path(settings, "1d"))
    with pytest.raises(InputError, match=f"{WARMUP} bars; indicators need more than the {WARMUP}-bar warm-up"):
        run_indicators(settings)
