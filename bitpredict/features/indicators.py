"""The indicators stage: technical indicators on the clean daily bars, computed by TA-Lib, with no look-ahead.

TA-Lib (the ``ta-lib`` wheel, which bundles the C library) computes every indicator it has: SMA, EMA, RSI,
MACD, Bollinger bands, ATR, NATR, OBV, rate of change, rolling sums and variances. This module only wraps it
(float64 contiguous inputs, NaN until the warm-up, clear errors for input TA-Lib would silently turn into NaN)
and adds what TA-Lib lacks: scale-free ratios of its outputs, realised and EWMA volatility, Garman–Klass range
variance and z-scores. Every value on row *t* uses bars ``0..t`` only (TA-Lib's windows and recursive
averages run forward; a test changes future bars and checks that past rows do not move).

The building blocks below take whole NumPy arrays and return arrays of the same length (NaN where
undefined). ``compute_indicators`` runs them over the whole series for the indicators table; the model's
inputs (``bitpredict.features.online.model_inputs``) run the same blocks over the few rows each value needs, for the
training table and for a forecast request alike.

Recursive indicators (EMA, MACD, Wilder's RSI and ATR) depend on where the series starts, and the serving
transformer sees only the last few hundred bars. The indicators table keeps TA-Lib's full-history values
(for charts); the model inputs restart them ``WARMUP`` rows back (``bitpredict.features.online``), so a request and
the full history give the same value. ``close_to_ema_50`` stays here only: an EMA-50 seed fades too slowly
((49/51)**100 ≈ 2 %) for a 200-bar request.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
import talib

from bitpredict import storage
from bitpredict.config import Settings
from bitpredict.data.schemas import require_columns
from bitpredict.errors import InputError
from bitpredict.pipeline.stage_table import CLEAN, INDICATORS, data_path

log = logging.getLogger(__name__)

OHLCV = ("open", "high", "low", "close", "volume")
SMA_WINDOWS = (7, 20, 50)
EMA_WINDOWS = (12, 26, 50)
RSI_PERIOD = 14
MACD_FAST, MACD_SLOW, MACD_SIGNAL = 12, 26, 9
BB_PERIOD, BB_K = 20, 2.0
ATR_PERIOD = 14
RETURN_HORIZONS = (1, 7, 30)
VOL_WINDOWS = (7, 30)
VOLUME_Z_WINDOW = 30
OBV_WINDOW = 30
DAYS_PER_YEAR = 365.0  # Bitcoin trades every day
# RiskMetrics' daily decay, over a finite window so that a forecast from a request's few hundred bars sees
# exactly the value training saw (0.94**100 ≈ 0.2 %: the weights beyond it are negligible anyway).
EWMA_LAMBDA, EWMA_SPAN = 0.94, 100
HAR_LAGS = (1, 7, 30)  # the heterogeneous autoregression's daily, weekly and monthly components
VARIANCE_FLOOR = 1e-6  # (0.1 % daily)²: a flat bar (filled gap, H = L) has no range, its log must stay finite
# TA-Lib's rolling variance is a running E[x²] − E[x]²: over a window of equal values it leaves rounding noise
# of about sqrt(ε)·|x| ≈ 1e-8·|x| in the standard deviation. A spread below this share of the level counts as
# none (a z-score of 0, a band position of 0.5).
FLAT_TOLERANCE = 1e-7

# Rows dropped at the start of the features table, and the history a forecast needs beyond the model's
# window. The longest rolling definition needs 100 bars (ewma_vol) and 121 (the outlier rule); the recursive
# indicators restart 150 bars back: an EMA-26 seed then weighs (25/27)**124 < 1e-4, a Wilder-14 one
# (13/14)**136 < 1e-4.
WARMUP = 150

# The TA-Lib columns in price or volume units (inputs for charts, not for the model).
LEVEL_COLUMNS = (
    *(f"sma_{n}" for n in SMA_WINDOWS),
    *(f"ema_{n}" for n in EMA_WINDOWS),
    "macd",
    "macd_signal",
    "macd_hist",
    "bb_upper",
    "bb_middle",
    "bb_lower",
    "atr_14",
    "obv",
)

# Scale-free columns: comparable across a decade of prices and the same from a short history.
MODEL_FEATURES = (
    *(f"log_return_{h}" for h in RETURN_HORIZONS),
    *(f"realized_vol_{w}" for w in VOL_WINDOWS),
    *(f"close_to_sma_{n}" for n in SMA_WINDOWS),
    "close_to_ema_12",
    "close_to_ema_26",
    "rsi_14",
    "macd_pct",
    "macd_signal_pct",
    "macd_hist_pct",
    "bb_pct_b",
    "bb_width",
    "natr_14",
    "obv_flow_30",
    "volume_zscore_30",
    "range_pct",
    "ewma_vol",
    *(f"log_gk_var_{n}" for n in HAR_LAGS),
    "day_of_week",
    "dow_sin",
    "dow_cos",
)

FEATURE_COLUMNS = (*LEVEL_COLUMNS, "close_to_ema_50", *MODEL_FEATURES)


# --------------------------------------------------------------------------------------------
# TA-Lib, wrapped: float64 contiguous arrays in (TA-Lib refuses anything else), NaN warm-up out
# --------------------------------------------------------------------------------------------


def as_float64(x: np.ndarray | pd.Series) -> np.ndarray:
    """A float64, C-contiguous view or copy: TA-Lib accepts nothing else ("input array type is not double")."""
    return np.ascontiguousarray(x, dtype="float64")


def sma(x: np.ndarray, n: int) -> np.ndarray:
    return talib.SMA(as_float64(x), timeperiod=n)


def rolling_sum(x: np.ndarray, n: int) -> np.ndarray:
    return talib.SUM(as_float64(x), timeperiod=n)


def rolling_std(x: np.ndarray, n: int, ddof: int = 0) -> np.ndarray:
    """Trailing standard deviation from TA-Lib's rolling variance (population; ``ddof=1`` rescales it)."""
    var = talib.VAR(as_float64(x), timeperiod=n, nbdev=1.0) * (n / (n - ddof))
    return np.sqrt(np.maximum(var, 0.0))  # a running-sum variance can dip a few ulps below zero


def ema(x: np.ndarray, n: int) -> np.ndarray:
    """TA-Lib's EMA: seeded with the SMA of the first ``n`` values, then ``k = 2 / (n + 1)``."""
    return talib.EMA(as_float64(x), timeperiod=n)


def rsi(close: np.ndarray, n: int = RSI_PERIOD) -> np.ndarray:
    return talib.RSI(as_float64(close), timeperiod=n)


def macd(close: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """TA-Lib's MACD(12, 26, 9): line, signal, histogram, all three from the signal's first bar."""
    return talib.MACD(as_float64(close), fastperiod=MACD_FAST, slowperiod=MACD_SLOW, signalperiod=MACD_SIGNAL)


def bbands(close: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bollinger bands: SMA-20 ± 2 population standard deviations (upper, middle, lower)."""
    return talib.BBANDS(as_float64(close), timeperiod=BB_PERIOD, nbdevup=BB_K, nbdevdn=BB_K, matype=0)


def atr(high: np.ndarray, low: np.ndarray, close: np.ndarray, n: int = ATR_PERIOD) -> np.ndarray:
    return talib.ATR(as_float64(high), as_float64(low), as_float64(close), timeperiod=n)


def natr(high: np.ndarray, low: np.ndarray, close: np.ndarray, n: int = ATR_PERIOD) -> np.ndarray:
    return talib.NATR(as_float64(high), as_float64(low), as_float64(close), timeperiod=n)


def obv(close: np.ndarray, volume: np.ndarray) -> np.ndarray:
    """TA-Lib's on-balance volume: starts at the first bar's volume."""
    return talib.OBV(as_float64(close), as_float64(volume))


def log_return(close: np.ndarray, lag: int) -> np.ndarray:
    """``ln(close_t / close_{t−lag})`` from TA-Lib's rate-of-change ratio (ROCR)."""
    return np.log(talib.ROCR(as_float64(close), timeperiod=lag))


def lagged_difference(x: np.ndarray, lag: int) -> np.ndarray:
    out = np.full(len(x), np.nan)
    out[lag:] = x[lag:] - x[:-lag]
    return out


# --------------------------------------------------------------------------------------------
# what TA-Lib lacks: scale-free ratios, volatility estimators, z-scores
# --------------------------------------------------------------------------------------------


def _ratio(numerator: np.ndarray, denominator: np.ndarray, flat: float, scale: np.ndarray | float = 1.0) -> np.ndarray:
    """``numerator / denominator`` where the denominator has size (above ``FLAT_TOLERANCE · scale``), ``flat``
    where it has none, NaN where it is undefined."""
    with np.errstate(invalid="ignore", divide="ignore"):
        value = numerator / denominator
        has_size = denominator > FLAT_TOLERANCE * np.abs(scale)
    return np.where(np.isnan(denominator), np.nan, np.where(has_size, value, flat))


def close_to(close: np.ndarray, level: np.ndarray) -> np.ndarray:
    """``close / level − 1``: how far the close sits from a moving average, in its own units."""
    return close / level - 1.0


def bollinger_position(close: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """%B (where the close sits in the bands; 0.5 when they have no width) and the bands' width / middle."""
    upper, middle, lower = bbands(close)
    band = upper - lower
    return _ratio(close - lower, band, 0.5, scale=middle), band / middle


def realized_vol(returns: np.ndarray, window: int) -> np.ndarray:
    """Annualised standard deviation (ddof 1) of the last ``window`` daily log returns (``log_return(close, 1)``)."""
    return rolling_std(returns, window, ddof=1) * np.sqrt(DAYS_PER_YEAR)


def obv_flow(close: np.ndarray, volume: np.ndarray, window: int = OBV_WINDOW) -> np.ndarray:
    """Net signed volume over the window as a share of all volume in it, in [-1, 1]: OBV's message without its
    level, which depends on where the series starts. Clipped to [-1, 1] against the running sums' rounding."""
    flow = lagged_difference(obv(close, volume), window)
    return np.clip(_ratio(flow, rolling_sum(volume, window), 0.0), -1.0, 1.0)


def volume_zscore(volume: np.ndarray, window: int = VOLUME_Z_WINDOW) -> np.ndarray:
    """z-score of the log volume against its last ``window`` days (ddof 1). Log: volume is heavy-tailed, a
    z-score of the raw value is dominated by a few days (log1p keeps a zero-volume bar finite)."""
    log_volume = np.log1p(as_float64(volume))
    mean = sma(log_volume, window)
    std = rolling_std(log_volume, window, ddof=1)
    return _ratio(log_volume - mean, std, 0.0, scale=np.maximum(np.abs(mean), 1.0))


def range_pct(high: np.ndarray, low: np.ndarray, close: np.ndarray) -> np.ndarray:
    return (high - low) / close


def garman_klass(open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray) -> np.ndarray:
    """Garman–Klass daily variance from one bar: ``0.5 ln(H/L)² − (2 ln 2 − 1) ln(C/O)²``.

    A range-based estimator about seven times as efficient as the squared close-to-close return, and
    computable from the daily bars a client sends (no intraday data needed). Never negative, since
    ``|ln(C/O)| ≤ ln(H/L)``.
    """
    hl, co = np.log(high / low), np.log(close / open_)
    return 0.5 * hl**2 - (2 * np.log(2) - 1) * co**2


def gk_variance(open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray) -> np.ndarray:
    """Garman–Klass variance per bar, floored at ``VARIANCE_FLOOR`` (a flat bar has no range; its log must stay
    finite)."""
    return np.maximum(garman_klass(open_, high, low, close), VARIANCE_FLOOR)


def log_gk_var(variance: np.ndarray, n: int) -> np.ndarray:
    """Log of the mean Garman–Klass variance (``gk_variance``) of the last ``n`` bars."""
    return np.log(sma(variance, n))


def windowed_ewma(x: np.ndarray, decay: float, span: int) -> np.ndarray:
    """Exponentially weighted mean of the last ``span`` values (weights ``decay**k``, renormalised).

    Finite on purpose: row *t* depends on rows *t − span + 1 … t* only, so a short history gives the
    same value as the full one. NaN until ``span`` values exist.
    """
    weights = decay ** np.arange(span)[::-1]
    weights /= weights.sum()
    out = np.full(len(x), np.nan)
    if len(x) >= span:
        out[span - 1 :] = np.convolve(x, weights[::-1], mode="valid")
    return out


def ewma_vol(returns: np.ndarray) -> np.ndarray:
    """RiskMetrics volatility of the daily log returns (``log_return(close, 1)``) over the last ``EWMA_SPAN`` days.

    NaN on rows before ``EWMA_SPAN``: their window would include the first row, which has no return.
    """
    squared = np.square(returns)
    squared[:1] = 0.0  # undefined; only ever inside the NaN rows below
    out = np.sqrt(windowed_ewma(squared, EWMA_LAMBDA, EWMA_SPAN))
    out[:EWMA_SPAN] = np.nan
    return out


def day_of_week(seconds: np.ndarray) -> np.ndarray:
    """Monday = 0 … Sunday = 6 of UTC unix seconds (1970-01-01 was a Thursday)."""
    return ((np.asarray(seconds, dtype="int64") // 86_400 + 3) % 7).astype("float64")


# --------------------------------------------------------------------------------------------
# the stage
# --------------------------------------------------------------------------------------------


def check_bars(bars: pd.DataFrame) -> None:
    """Refuse input that would give silently wrong indicators: missing or non-numeric columns, NaNs (TA-Lib
    turns a NaN inside a series into NaN for every later row), unsorted rows, uneven steps (a gap)."""
    require_columns(bars, ["timestamp", *OHLCV], "indicators input")
    not_numeric = [c for c in OHLCV if not pd.api.types.is_numeric_dtype(bars[c])]
    if not_numeric:
        raise InputError(f"indicators input: non-numeric column(s) {not_numeric}")
    bad = [c for c in OHLCV if not np.isfinite(bars[c].to_numpy(dtype="float64")).all()]
    if bad:
        raise InputError(f"indicators input: non-finite values in {bad}; clean the bars first")
    prices = bars[["open", "high", "low", "close"]].to_numpy(dtype="float64")
    if (prices <= 0).any() or (bars["volume"].to_numpy(dtype="float64") < 0).any():
        raise InputError("indicators input: prices must be > 0 and volume >= 0")
    steps = np.diff(pd.DatetimeIndex(bars["timestamp"]).asi8)
    if (steps <= 0).any():
        raise InputError("indicators input: timestamps must be strictly increasing (oldest first, no duplicates)")
    if len(steps) and (steps != steps[0]).any():
        row = int(np.argmax(steps != steps[0])) + 1
        raise InputError(
            f"indicators input: uneven time steps (a gap before row {row}); a window of n bars would span more "
            "than n periods — run the clean stage, which fills short gaps and restarts after long ones"
        )


def compute_indicators(bars: pd.DataFrame) -> pd.DataFrame:
    """The bars with every column of ``FEATURE_COLUMNS`` added (other input columns pass through)."""
    check_bars(bars)
    out = bars.reset_index(drop=True)
    open_, high, low, close, volume = (as_float64(out[c].to_numpy(dtype="float64")) for c in OHLCV)
    new: dict[str, np.ndarray] = {}

    for n in SMA_WINDOWS:
        new[f"sma_{n}"] = sma(close, n)
    for n in EMA_WINDOWS:
        new[f"ema_{n}"] = ema(close, n)
    new["macd"], new["macd_signal"], new["macd_hist"] = macd(close)
    new["bb_upper"], new["bb_middle"], new["bb_lower"] = bbands(close)
    new["atr_14"] = atr(high, low, close)
    new["obv"] = obv(close, volume)

    for h in RETURN_HORIZONS:
        new[f"log_return_{h}"] = log_return(close, h)
    for w in VOL_WINDOWS:
        new[f"realized_vol_{w}"] = realized_vol(new["log_return_1"], w)
    for n in SMA_WINDOWS:
        new[f"close_to_sma_{n}"] = close_to(close, new[f"sma_{n}"])
    for n in EMA_WINDOWS:
        new[f"close_to_ema_{n}"] = close_to(close, new[f"ema_{n}"])
    new["rsi_14"] = rsi(close)
    for name in ("macd", "macd_signal", "macd_hist"):
        new[f"{name}_pct"] = new[name] / close
    new["bb_pct_b"], new["bb_width"] = bollinger_position(close)
    new["natr_14"] = natr(high, low, close)
    new["obv_flow_30"] = obv_flow(close, volume)
    new["volume_zscore_30"] = volume_zscore(volume)
    new["range_pct"] = range_pct(high, low, close)
    new["ewma_vol"] = ewma_vol(new["log_return_1"])
    variance = gk_variance(open_, high, low, close)
    for n in HAR_LAGS:
        new[f"log_gk_var_{n}"] = log_gk_var(variance, n)
    new["day_of_week"] = day_of_week(pd.DatetimeIndex(out["timestamp"]).as_unit("s").asi8)
    new["dow_sin"] = np.sin(2 * np.pi * new["day_of_week"] / 7)
    new["dow_cos"] = np.cos(2 * np.pi * new["day_of_week"] / 7)

    passthrough = out.drop(columns=[c for c in FEATURE_COLUMNS if c in out.columns])
    return pd.concat([passthrough, pd.DataFrame({c: new[c] for c in FEATURE_COLUMNS}, index=out.index)], axis=1)


def indicators_path(settings: Settings) -> str:
    return data_path(settings, INDICATORS)


def run_indicators(settings: Settings) -> dict[str, Any]:
    """Read the clean daily bars (``stage_table.CLEAN``), write their indicators (``stage_table.INDICATORS``)."""
    source = data_path(settings, CLEAN)
    try:
        bars = storage.read_parquet(source)
    except FileNotFoundError:
        raise FileNotFoundError(f"{source} not found: run `bitpredict clean` first") from None
    if len(bars) <= WARMUP:
        raise InputError(f"{source}: {len(bars)} bars; indicators need more than the {WARMUP}-bar warm-up")
    frame = compute_indicators(bars)
    storage.write_parquet(frame, indicators_path(settings))
    log.info("indicators written", extra={"rows": len(frame), "columns": len(FEATURE_COLUMNS)})
    return {"rows": len(frame), "columns": list(FEATURE_COLUMNS), "warmup": WARMUP}
