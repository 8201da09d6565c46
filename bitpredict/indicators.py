"""The indicators stage: technical indicators on the clean daily bars, vectorised, with no look-ahead.

Every value on row *t* uses bars ``0..t`` only (rolling windows and recursive averages that run
forward). Indicators that TA-Lib also computes follow TA-Lib's definitions exactly, seeds included,
so they match it to a relative 1e-9 after the warm-up (a test checks this on the real data):

* ``ema_n``: seeded with the SMA of the first *n* closes, then ``k = 2 / (n + 1)``.
* ``rsi_14`` and ``atr_14``: Wilder's smoothing (``alpha = 1 / n``), seeded with the mean of the first
  *n* changes / true ranges.
* ``macd``: both EMAs start on the same bar (the slow EMA's first), the fast one seeded with the SMA of
  the *fast* closes that end there — TA-Lib's convention, not two independent EMAs.
* Bollinger bands: SMA ± 2 population standard deviations.
* ``obv``: starts at the first bar's volume.

Recursive indicators depend on where the series starts, and the serving transformer sees only the
last few hundred bars. ``WARMUP`` is long enough that a seed's influence has decayed; ``MODEL_FEATURES``
lists the scale-free columns a model may use, and a test checks that each is the same whether computed
from the full history or from the last ``WARMUP`` + 1 bars (training/serving skew).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
from scipy.signal import lfilter

from bitpredict import storage
from bitpredict.config import Settings
from bitpredict.schemas import require_columns

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

# Rows dropped at the start of the features table, and the history a forecast needs beyond the model's
# window. The longest definition needs 50 bars (SMA/EMA 50); the rest is for recursive seeds to fade:
# after 150 bars an EMA-26 seed weighs (25/27)**124 < 1e-4 and a Wilder-14 seed (13/14)**136 < 1e-4.
WARMUP = 150

# The TA-Lib-comparable columns, in price or volume units (inputs for charts, not for the model).
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

# close_to_ema_50 is computed but not a model feature: an EMA-50 seed fades too slowly ((49/51)**100 ≈ 2%)
# for a forecast built from 200 bars to see the value training saw.
FEATURE_COLUMNS = (*LEVEL_COLUMNS, "close_to_ema_50", *MODEL_FEATURES)


# --------------------------------------------------------------------------------------------
# building blocks: NumPy arrays in, arrays out (NaN where undefined), TA-Lib conventions
# --------------------------------------------------------------------------------------------


def _window_sums(x: np.ndarray, n: int) -> np.ndarray:
    """Sum of each trailing window of ``n`` values (NaN before the first full one)."""
    return pd.Series(x).rolling(n, min_periods=n).sum().to_numpy()


def rolling_mean(x: np.ndarray, n: int) -> np.ndarray:
    """Trailing mean (pandas' compensated rolling sum: accurate over a million rows, unlike a cumsum)."""
    return pd.Series(x).rolling(n, min_periods=n).mean().to_numpy()


def rolling_std(x: np.ndarray, n: int, ddof: int = 0) -> np.ndarray:
    """Trailing standard deviation (pandas' online algorithm; E[x²] − E[x]² would cancel badly at BTC prices)."""
    return pd.Series(x).rolling(n, min_periods=n).std(ddof=ddof).to_numpy()


def sma(x: np.ndarray, n: int) -> np.ndarray:
    return rolling_mean(x, n)


def seeded_ema(x: np.ndarray, alpha: float, n: int, first: int | None = None) -> np.ndarray:
    """Recursive average ``prev + alpha * (x - prev)`` whose first value, on row ``first``, is the mean of
    the ``n`` values ending there (default ``first = n - 1``: the earliest possible). The recursion is a
    first-order IIR filter, run by ``scipy.signal.lfilter`` in C.
    """
    first = n - 1 if first is None else first
    out = np.full(len(x), np.nan)
    if len(x) <= first:
        return out
    seed = float(np.mean(x[first - n + 1 : first + 1]))
    out[first] = seed
    if len(x) > first + 1:
        out[first + 1 :], _ = lfilter([alpha], [1.0, alpha - 1.0], x[first + 1 :], zi=[(1.0 - alpha) * seed])
    return out


def ema(x: np.ndarray, n: int, first: int | None = None) -> np.ndarray:
    return seeded_ema(x, 2.0 / (n + 1), n, first)


def wilder(x: np.ndarray, n: int, first: int) -> np.ndarray:
    return seeded_ema(x, 1.0 / n, n, first)


def rsi(close: np.ndarray, n: int = RSI_PERIOD) -> np.ndarray:
    change = np.diff(close, prepend=np.nan)
    gain = wilder(np.maximum(change, 0.0), n, first=n)
    loss = wilder(np.maximum(-change, 0.0), n, first=n)
    total = gain + loss
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(np.abs(total) > 1e-14, 100.0 * gain / total, np.where(np.isnan(total), np.nan, 0.0))


def macd(close: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    start = MACD_SLOW - 1  # both EMAs begin where the slow one can
    line = ema(close, MACD_FAST, first=start) - ema(close, MACD_SLOW, first=start)
    signal = ema(line, MACD_SIGNAL, first=start + MACD_SIGNAL - 1) if len(close) > start else line.copy()
    line = np.where(np.isnan(signal), np.nan, line)  # TA-Lib reports all three from the signal's first bar
    return line, signal, line - signal


def true_range(high: np.ndarray, low: np.ndarray, close: np.ndarray) -> np.ndarray:
    previous = np.concatenate(([np.nan], close[:-1]))
    return np.maximum.reduce([high - low, np.abs(high - previous), np.abs(low - previous)])


def atr(high: np.ndarray, low: np.ndarray, close: np.ndarray, n: int = ATR_PERIOD) -> np.ndarray:
    return wilder(true_range(high, low, close), n, first=n)


def obv(close: np.ndarray, volume: np.ndarray) -> np.ndarray:
    flow = np.sign(np.diff(close, prepend=close[:1])) * volume
    flow[:1] = volume[:1]
    return np.cumsum(flow)


def garman_klass(open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray) -> np.ndarray:
    """Garman–Klass daily variance from one bar: ``0.5 ln(H/L)² − (2 ln 2 − 1) ln(C/O)²``.

    A range-based estimator about seven times as efficient as the squared close-to-close return, and
    computable from the daily bars a client sends (no intraday data needed). Never negative, since
    ``|ln(C/O)| ≤ ln(H/L)``.
    """
    hl, co = np.log(high / low), np.log(close / open_)
    return 0.5 * hl**2 - (2 * np.log(2) - 1) * co**2


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


def lagged_difference(x: np.ndarray, lag: int) -> np.ndarray:
    out = np.full(len(x), np.nan)
    out[lag:] = x[lag:] - x[:-lag]
    return out


# --------------------------------------------------------------------------------------------
# the stage
# --------------------------------------------------------------------------------------------


def check_bars(bars: pd.DataFrame) -> None:
    """Refuse input that would give silently wrong indicators: missing columns, NaNs, unsorted rows."""
    require_columns(bars, ["timestamp", *OHLCV], "indicators input")
    bad = [c for c in OHLCV if not np.isfinite(bars[c].to_numpy(dtype="float64")).all()]
    if bad:
        raise ValueError(f"indicators input: non-finite values in {bad}; clean the bars first")
    prices = bars[["open", "high", "low", "close"]].to_numpy(dtype="float64")
    if (prices <= 0).any() or (bars["volume"].to_numpy(dtype="float64") < 0).any():
        raise ValueError("indicators input: prices must be > 0 and volume >= 0")
    if not bars["timestamp"].is_monotonic_increasing or bars["timestamp"].duplicated().any():
        raise ValueError("indicators input: timestamps must be strictly increasing (oldest first, no duplicates)")


def compute_indicators(bars: pd.DataFrame) -> pd.DataFrame:
    """The bars with every column of ``FEATURE_COLUMNS`` added (other input columns pass through)."""
    check_bars(bars)
    out = bars.reset_index(drop=True)
    high, low, close, volume = (out[c].to_numpy(dtype="float64") for c in ("high", "low", "close", "volume"))
    new: dict[str, np.ndarray] = {}

    for n in SMA_WINDOWS:
        new[f"sma_{n}"] = sma(close, n)
    for n in EMA_WINDOWS:
        new[f"ema_{n}"] = ema(close, n)
    new["macd"], new["macd_signal"], new["macd_hist"] = macd(close)
    middle = sma(close, BB_PERIOD)
    spread = BB_K * rolling_std(close, BB_PERIOD, ddof=0)
    new["bb_upper"], new["bb_middle"], new["bb_lower"] = middle + spread, middle, middle - spread
    new["atr_14"] = atr(high, low, close)
    new["obv"] = obv(close, volume)

    log_close = np.log(close)
    for h in RETURN_HORIZONS:
        new[f"log_return_{h}"] = lagged_difference(log_close, h)
    for w in VOL_WINDOWS:
        new[f"realized_vol_{w}"] = rolling_std(new["log_return_1"], w, ddof=1) * np.sqrt(DAYS_PER_YEAR)
    for n in SMA_WINDOWS:
        new[f"close_to_sma_{n}"] = close / new[f"sma_{n}"] - 1.0
    for n in EMA_WINDOWS:
        new[f"close_to_ema_{n}"] = close / new[f"ema_{n}"] - 1.0
    new["rsi_14"] = rsi(close)
    for name in ("macd", "macd_signal", "macd_hist"):
        new[f"{name}_pct"] = new[name] / close
    band = new["bb_upper"] - new["bb_lower"]
    with np.errstate(invalid="ignore", divide="ignore"):
        new["bb_pct_b"] = np.where(band > 0, (close - new["bb_lower"]) / band, np.where(np.isnan(band), np.nan, 0.5))
        new["bb_width"] = band / middle
        new["natr_14"] = 100.0 * new["atr_14"] / close  # TA-Lib's NATR
        # Net signed volume over the window as a share of all volume in it, in [-1, 1]: OBV's message
        # without its level, which depends on where the series starts.
        window_volume = _window_sums(volume, OBV_WINDOW)
        flow = lagged_difference(new["obv"], OBV_WINDOW)
        new["obv_flow_30"] = np.where(window_volume > 0, flow / window_volume, np.where(np.isnan(flow), np.nan, 0.0))
        # Log volume: volume is heavy-tailed, a z-score of the raw value is dominated by a few days
        # (log1p keeps a zero-volume bar finite).
        log_volume = np.log1p(volume)
        std = rolling_std(log_volume, VOLUME_Z_WINDOW, ddof=1)
        z = (log_volume - rolling_mean(log_volume, VOLUME_Z_WINDOW)) / std
        new["volume_zscore_30"] = np.where(std > 1e-12, z, np.where(np.isnan(std), np.nan, 0.0))
    new["range_pct"] = (high - low) / close
    returns = np.nan_to_num(new["log_return_1"], nan=0.0)
    ewma_var = windowed_ewma(returns**2, EWMA_LAMBDA, EWMA_SPAN)
    ewma_var[:EWMA_SPAN] = np.nan  # the first window would include the undefined first return
    new["ewma_vol"] = np.sqrt(ewma_var)
    gk = np.maximum(garman_klass(out["open"].to_numpy(dtype="float64"), high, low, close), VARIANCE_FLOOR)
    for n in HAR_LAGS:
        new[f"log_gk_var_{n}"] = np.log(rolling_mean(gk, n))
    dow = out["timestamp"].dt.dayofweek.to_numpy(dtype="float64")
    new["day_of_week"] = dow
    new["dow_sin"] = np.sin(2 * np.pi * dow / 7)
    new["dow_cos"] = np.cos(2 * np.pi * dow / 7)

    passthrough = out.drop(columns=[c for c in FEATURE_COLUMNS if c in out.columns])
    return pd.concat([passthrough, pd.DataFrame({c: new[c] for c in FEATURE_COLUMNS}, index=out.index)], axis=1)


def indicators_path(settings: Settings) -> str:
    return storage.join(settings.interim_dir, "indicators_1d.parquet")


def run_indicators(settings: Settings) -> dict[str, Any]:
    """Read ``interim/clean_1d.parquet``, write ``interim/indicators_1d.parquet``."""
    from bitpredict.clean import clean_path

    source = clean_path(settings, "1d")
    try:
        bars = storage.read_parquet(source)
    except FileNotFoundError:
        raise FileNotFoundError(f"{source} not found: run `bitpredict clean` first") from None
    if len(bars) <= WARMUP:
        raise ValueError(f"{source}: {len(bars)} bars; indicators need more than the {WARMUP}-bar warm-up")
    frame = compute_indicators(bars)
    storage.write_parquet(frame, indicators_path(settings))
    log.info("indicators written", extra={"rows": len(frame), "columns": len(FEATURE_COLUMNS)})
    return {"rows": len(frame), "columns": list(FEATURE_COLUMNS), "warmup": WARMUP}
