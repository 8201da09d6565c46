"""The model's inputs from daily bars: the one feature function that training, serving and drift all call.

Training runs it over the whole clean series (``bitpredict.merge``), the serving transformer over a request's
rows (``bitpredict.serving``), the drift job over logged requests. For the three to agree on every day, each
model input on row *t* is *defined* on rows *t − WARMUP … t* only (``HISTORY`` rows) — exactly what the
smallest request the transformer accepts holds before its window's first row — plus row *t*'s own optional
inputs (``is_imputed``, the day's sentiment). Nothing reaches further back, so a request of 180 rows, one of
1,000 and the full history give the same value:

* Rolling-window indicators (returns, SMAs, Bollinger, volume z-score, ``ewma_vol``, Garman–Klass) already
  read fewer rows than ``HISTORY``.
* The recursive TA-Lib indicators (EMA 12/26, MACD, RSI and ATR with Wilder's smoothing) would remember the
  bar the series happens to start on. Here they restart on every row: row *t* holds TA-Lib's value for the
  series cut to rows *t − WARMUP … t* (seed included). That is a fixed linear filter over those rows, so it is
  computed for all rows at once as a correlation with the filter's weights — which come from running
  ``bitpredict.indicators``' own ``ema``/``macd``/``wilder`` on unit impulses, so the conventions cannot drift
  apart. It differs from the full-history value by the seed's leftover weight (at most about 4e-4 of a
  column's standard deviation on the real data); the indicators stage keeps the TA-Lib values for charts.
* ``is_outlier`` is the clean stage's rule (``bitpredict.clean.flag_outliers``) run on these bars; its window
  fits in ``HISTORY``.
* ``is_imputed`` comes with the bars (the clean table's flag, or a request's optional input; 0 when absent).
* Sentiment is the day's own aggregate (``bitpredict.merge.sentiment_arrays``, the merge stage's join: the
  neutral default and ``<source>_missing = 1`` for a day without texts).
"""

from __future__ import annotations

from functools import cache

import numpy as np
import pandas as pd

from bitpredict import indicators as ind
from bitpredict.clean import OUTLIER_WINDOW, flag_outliers
from bitpredict.config import CleanSettings
from bitpredict.merge import sentiment_arrays

HISTORY = ind.WARMUP + 1  # rows a model input on row t may read: t − WARMUP … t
DEFAULT_OUTLIER_THRESHOLD = CleanSettings().outlier_mad_threshold
# The columns whose TA-Lib definition is recursive; the rest of FEATURE_COLUMNS are computed as in the indicators
# stage. ema_50 / close_to_ema_50 are not model inputs and stay as TA-Lib has them.
RESTARTED = (
    "ema_12",
    "ema_26",
    "macd",
    "macd_signal",
    "macd_hist",
    "atr_14",
    "close_to_ema_12",
    "close_to_ema_26",
    "rsi_14",
    "macd_pct",
    "macd_signal_pct",
    "macd_hist_pct",
    "natr_14",
)

assert OUTLIER_WINDOW + 1 < HISTORY, "the outlier rule must read no further back than a request's warm-up"


@cache
def _weights() -> dict[str, np.ndarray]:
    """Weight of each of the ``HISTORY`` rows (oldest first) in the recursive indicators' value on the last row."""
    basis = np.eye(HISTORY)

    def last(fn: object) -> np.ndarray:
        return np.array([fn(basis[k])[-1] for k in range(HISTORY)])  # type: ignore[operator]

    weights = {
        "ema_12": last(lambda x: ind.ema(x, 12)),
        "ema_26": last(lambda x: ind.ema(x, 26)),
        "macd": last(lambda x: ind.macd(x)[0]),
        "macd_signal": last(lambda x: ind.macd(x)[1]),
        "rsi": last(lambda x: ind.wilder(x, ind.RSI_PERIOD, first=ind.RSI_PERIOD)),
        "atr": last(lambda x: ind.wilder(x, ind.ATR_PERIOD, first=ind.ATR_PERIOD)),
    }
    for name, w in weights.items():
        if not np.isfinite(w).all():
            raise RuntimeError(f"{name}: the restarted filter is undefined over {HISTORY} rows")
    return weights


def _restarted(x: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Row t: the weighted sum of rows t − HISTORY + 1 … t (NaN before a full history)."""
    out = np.full(len(x), np.nan)
    if len(x) >= len(weights):
        out[len(weights) - 1 :] = np.correlate(x, weights, mode="valid")
    return out


def restarted_indicators(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """The ``RESTARTED`` columns for every row, each as if the series began ``WARMUP`` rows before that row."""
    w = _weights()
    high, low, close = (frame[c].to_numpy(dtype="float64") for c in ("high", "low", "close"))
    out: dict[str, np.ndarray] = {}
    for n in (12, 26):
        out[f"ema_{n}"] = _restarted(close, w[f"ema_{n}"])
    out["macd"] = _restarted(close, w["macd"])
    out["macd_signal"] = _restarted(close, w["macd_signal"])
    out["macd_hist"] = out["macd"] - out["macd_signal"]
    # A row's first change and true range need the row before the history: TA-Lib's seeds skip them (weight 0).
    change = np.nan_to_num(np.diff(close, prepend=np.nan))
    gain = _restarted(np.maximum(change, 0.0), w["rsi"])
    loss = _restarted(np.maximum(-change, 0.0), w["rsi"])
    total = gain + loss
    out["atr_14"] = _restarted(np.nan_to_num(ind.true_range(high, low, close)), w["atr"])
    with np.errstate(invalid="ignore", divide="ignore"):
        out["rsi_14"] = np.where(np.abs(total) > 1e-14, 100.0 * gain / total, np.where(np.isnan(total), np.nan, 0.0))
        for n in (12, 26):
            out[f"close_to_ema_{n}"] = close / out[f"ema_{n}"] - 1.0
        for name in ("macd", "macd_signal", "macd_hist"):
            out[f"{name}_pct"] = out[name] / close
        out["natr_14"] = 100.0 * out["atr_14"] / close
    return out


def model_frame(
    bars: pd.DataFrame,
    sentiment: pd.DataFrame | None = None,
    outlier_threshold: float = DEFAULT_OUTLIER_THRESHOLD,
) -> pd.DataFrame:
    """Every feature column for every row of ``bars`` (timestamp, OHLCV, optionally ``is_imputed``), with the
    flags as 0/1 floats and the day's sentiment joined (``sentiment``: a daily table, or None for neutral).

    Rows before ``WARMUP`` are incomplete; callers drop them (training) or never look at them (serving).
    """
    frame = ind.compute_indicators(bars)
    imputed = (
        frame["is_imputed"].astype("float64").to_numpy() if "is_imputed" in frame.columns else np.zeros(len(frame))
    )
    columns = {
        **restarted_indicators(frame),
        "is_imputed": imputed,
        "is_outlier": flag_outliers(frame["close"].to_numpy(dtype="float64"), outlier_threshold)
        .astype("float64")
        .to_numpy(),
    }
    columns.update(sentiment_arrays(frame["timestamp"], sentiment))
    # One frame built from columns (replaced ones keep their place): inserting ~30 columns one by one costs
    # more than the indicators on a request's 180 rows.
    order = list(dict.fromkeys([*frame.columns, *columns]))
    return pd.DataFrame({c: columns[c] if c in columns else frame[c] for c in order}, index=frame.index)
