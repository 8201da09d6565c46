"""The model's inputs from daily bars: the one feature function that training, serving and drift all call.

``model_inputs`` takes a daily series as NumPy arrays (``DailyBars``) and returns the model's input columns
for its last rows. Training calls it for every row of the clean series (``model_frame``, which the merge stage
builds the features table with), the serving transformer for the last ``window`` rows of a request
(``bitpredict.forecast.serving.feature_window``: arrays end to end, no DataFrame), the drift job for logged requests.

Served = trained. Each model input on row *t* is *defined* on rows *t − WARMUP … t* only (``HISTORY`` rows) —
exactly what the smallest request the transformer accepts holds before its window's first row — plus row *t*'s
own optional inputs (``is_imputed``, the day's sentiment). Nothing reaches further back, so a request of 180
rows, one of 1,000 and the full history give the same value. Each input belongs to a ``_Block`` that declares
how many rows before *t* it reads; ``model_inputs`` hands each block only the rows its outputs need
(the last ``rows + lookback``), which is both the speed of the serving path and the proof that nothing reads
further back:

* Rolling-window indicators (returns, SMAs, Bollinger, volume z-score, OBV flow, ``ewma_vol``, Garman–Klass)
  are ``bitpredict.features.indicators``' TA-Lib calls and NumPy blocks, run over those rows.
* The recursive TA-Lib indicators (EMA 12/26, MACD, RSI and ATR with Wilder's smoothing) remember the bar the
  series happens to start on: TA-Lib's infinite-memory recursion over a 200-row request cannot give the value
  it gives over ten years. So they are *redefined*: row *t* holds TA-Lib's value for the series cut to rows
  *t − WARMUP … t* (seed included). Running TA-Lib on every row's cut would cost one C call per row and
  indicator (150 per request, thousands per training table). Each of these TA-Lib filters is linear in its
  input, so its value on a cut is a fixed weighted sum of the ``HISTORY`` rows; the weights are TA-Lib's own
  impulse responses (``talib.EMA``/``MACD``/``ATR`` run once on unit impulses, ``_weights``), applied to all
  rows at once as one matrix product. It equals ``talib.EMA`` etc. on the cut to rounding (a test checks
  every restarted column against TA-Lib on cuts), and differs from the full-history value by the seed's
  leftover weight (at most about 4e-4 of a column's standard deviation on the real data); the indicators
  table keeps TA-Lib's full-history values for charts.
* ``is_outlier`` is the clean stage's rule (``bitpredict.data.clean.flag_outliers``) run on these bars; its window
  fits in ``HISTORY``.
* ``is_imputed`` comes with the bars (the clean table's flag, or a request's optional input; 0 when absent).
* Sentiment is the day's own aggregate (``bitpredict.features.columns.resolve_sentiment``, the merge stage's rule: the
  neutral default and ``<source>_missing = 1`` for a day without texts).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache, lru_cache

import numpy as np
import pandas as pd
import talib

from bitpredict.config import CleanSettings
from bitpredict.data.clean import OUTLIER_WINDOW, flag_outliers
from bitpredict.features import indicators as ind
from bitpredict.features.columns import (
    FLAG_COLUMNS,
    SENTIMENT_PREFIXES,
    aligned_sentiment,
    resolve_sentiment,
    sentiment_columns,
)

HISTORY = ind.WARMUP + 1  # rows a model input on row t may read: t − WARMUP … t
DEFAULT_OUTLIER_THRESHOLD = CleanSettings().outlier_mad_threshold
MARKET = ("open", "high", "low", "close", "volume")
SENTIMENT_AGGREGATES = tuple(c for p in SENTIMENT_PREFIXES for c in sentiment_columns(p))
# Every column model_inputs computes by default: what a model may take as input.
INPUT_COLUMNS = (
    *ind.MODEL_FEATURES,
    *FLAG_COLUMNS,
    *(c for p in SENTIMENT_PREFIXES for c in (*sentiment_columns(p), f"{p}_missing")),
)
# The columns whose TA-Lib definition is recursive, restarted WARMUP rows back; the price-unit ones (not model
# inputs) replace the indicators table's values in the training table. ema_50 stays as TA-Lib has it.
RESTARTED_LEVELS = ("ema_12", "ema_26", "macd", "macd_signal", "macd_hist", "atr_14")
RESTARTED = (
    *RESTARTED_LEVELS,
    "close_to_ema_12",
    "close_to_ema_26",
    "rsi_14",
    "macd_pct",
    "macd_signal_pct",
    "macd_hist_pct",
    "natr_14",
)

assert OUTLIER_WINDOW + 1 < HISTORY, "the outlier rule must read no further back than a request's warm-up"


# --------------------------------------------------------------------------------------------
# the bars as arrays
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DailyBars:
    """A daily series as NumPy arrays, oldest first: what a request carries, or the clean table.

    ``timestamp`` is int64 unix seconds (00:00 UTC of each day); prices and volume float64; ``is_imputed``
    0/1 floats or None (none filled); ``sentiment`` the daily aggregates (``news_vader_mean`` …) aligned with
    the bars, any subset, NaN or a count of 0 for a day without texts.
    """

    timestamp: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    is_imputed: np.ndarray | None = None
    sentiment: Mapping[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.close)

    def tail(self, rows: int) -> DailyBars:
        """The last ``rows`` rows (views, no copy)."""
        cut = slice(max(0, len(self) - rows), None)
        return DailyBars(
            self.timestamp[cut],
            self.open[cut],
            self.high[cut],
            self.low[cut],
            self.close[cut],
            self.volume[cut],
            None if self.is_imputed is None else self.is_imputed[cut],
            {k: v[cut] for k, v in self.sentiment.items()},
        )

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, daily: pd.DataFrame | None = None) -> DailyBars:
        """From a frame of ``timestamp`` + OHLCV (+ ``is_imputed``); sentiment from ``daily`` (a daily table,
        joined on the day) or, when None, from the frame's own aggregate columns (a parsed request)."""
        stamps = pd.DatetimeIndex(frame["timestamp"])
        stamps = stamps.tz_localize("UTC") if stamps.tz is None else stamps
        if daily is not None:
            sentiment = aligned_sentiment(frame["timestamp"], daily)
        else:
            sentiment = {c: frame[c].to_numpy(dtype="float64") for c in SENTIMENT_AGGREGATES if c in frame.columns}
        imputed = frame["is_imputed"].to_numpy(dtype="float64") if "is_imputed" in frame.columns else None
        market = (ind.as_float64(frame[c].to_numpy(dtype="float64")) for c in MARKET)
        return cls(stamps.as_unit("s").asi8, *market, imputed, sentiment)

    def to_frame(self) -> pd.DataFrame:
        """timestamp (UTC), OHLCV, the sentiment aggregates, ``is_imputed`` when given: a parsed request's frame."""
        columns: dict[str, object] = {"timestamp": pd.to_datetime(self.timestamp, unit="s", utc=True)}
        columns.update({c: getattr(self, c) for c in MARKET})
        columns.update(self.sentiment)
        if self.is_imputed is not None:
            columns["is_imputed"] = self.is_imputed
        return pd.DataFrame(columns)

    def as_lists(self) -> dict[str, list]:
        """``to_frame`` as lists with unix-second timestamps (the request log's ``bars`` record), without pandas."""
        columns = {"timestamp": self.timestamp, **{c: getattr(self, c) for c in MARKET}, **self.sentiment}
        if self.is_imputed is not None:
            columns["is_imputed"] = self.is_imputed
        return {k: v.tolist() for k, v in columns.items()}


# --------------------------------------------------------------------------------------------
# the restarted recursive indicators: TA-Lib's impulse responses over HISTORY rows
# --------------------------------------------------------------------------------------------


@cache
def _weights() -> np.ndarray:
    """[HISTORY, 5]: the weight of each of the ``HISTORY`` rows (oldest first) in TA-Lib's value on the last row
    of EMA-12, EMA-26, the MACD line, the MACD signal and Wilder's smoothing with TA-Lib's RSI/ATR seed.

    Wilder's smoothing comes from ``talib.ATR(x, 0, 0)``, whose true range is then ``x`` itself: the mean of
    rows 1 … 14 as the seed (row 0 has no previous close, weight 0), then ``alpha = 1/14`` — the recursion
    TA-Lib's RSI runs on gains and losses too.
    """
    zeros = np.zeros(HISTORY)
    rows = []
    for impulse in np.eye(HISTORY):
        line, signal, _ = talib.MACD(impulse, ind.MACD_FAST, ind.MACD_SLOW, ind.MACD_SIGNAL)
        rows.append(
            [
                talib.EMA(impulse, 12)[-1],
                talib.EMA(impulse, 26)[-1],
                line[-1],
                signal[-1],
                talib.ATR(impulse, zeros, zeros, ind.ATR_PERIOD)[-1],
            ]
        )
    weights = np.array(rows)
    if not np.isfinite(weights).all():
        raise RuntimeError(f"a restarted TA-Lib filter is undefined over {HISTORY} rows")
    return weights


def _histories(x: np.ndarray) -> np.ndarray:
    """[k, n − WARMUP, HISTORY]: for each of the ``k`` series in ``x`` [k, n] and each row t from ``WARMUP``
    on, its rows t − WARMUP … t — a strided view, no copy (``sliding_window_view`` costs more than the
    arithmetic on a request's rows)."""
    x = np.ascontiguousarray(x)
    k, n = x.shape
    step = x.itemsize
    return np.ndarray((k, n - HISTORY + 1, HISTORY), x.dtype, x, 0, (n * step, step, step))


def _padded(values: np.ndarray, n: int) -> np.ndarray:
    """``values`` for rows ``WARMUP …`` n − 1 (along the last axis), NaN on the rows before."""
    out = np.full((*values.shape[:-1], n), np.nan)
    out[..., n - values.shape[-1] :] = values
    return out


def restarted(high: np.ndarray, low: np.ndarray, close: np.ndarray) -> dict[str, np.ndarray]:
    """The ``RESTARTED`` columns for every row, each as TA-Lib gives it for the series cut to that row's
    ``HISTORY`` rows (NaN on the first ``WARMUP`` rows)."""
    n = len(close)
    if n < HISTORY:
        return {c: np.full(n, np.nan) for c in RESTARTED}
    w = _weights()
    # A cut's first change and true range need the row before it: TA-Lib's seeds skip them (weight 0).
    change = np.diff(close, prepend=close[:1])
    true_range = talib.TRANGE(high, low, close)
    true_range[0] = 0.0
    windows = _histories(np.stack([close, np.maximum(change, 0.0), np.maximum(-change, 0.0), true_range]))
    ema_12, ema_26, line, signal = _padded((windows[0] @ w[:, :4]).T, n)
    gain, loss, atr = _padded(windows[1:] @ w[:, 4], n)
    out = {"ema_12": ema_12, "ema_26": ema_26, "macd": line, "macd_signal": signal, "macd_hist": line - signal}
    out["atr_14"] = atr
    total = gain + loss
    with np.errstate(invalid="ignore", divide="ignore"):
        # TA-Lib's RSI is 0 when nothing moved (its TA_IS_ZERO test on gain + loss)
        out["rsi_14"] = np.where(np.abs(total) > 1e-14, 100.0 * gain / total, np.where(np.isnan(total), np.nan, 0.0))
    for span in (12, 26):
        out[f"close_to_ema_{span}"] = ind.close_to(close, out[f"ema_{span}"])
    for name in ("macd", "macd_signal", "macd_hist"):
        out[f"{name}_pct"] = out[name] / close
    out["natr_14"] = 100.0 * out["atr_14"] / close
    return out


# --------------------------------------------------------------------------------------------
# the model inputs, block by block
# --------------------------------------------------------------------------------------------

Compute = Callable[[DailyBars, int, float], Mapping[str, np.ndarray]]


@dataclass(frozen=True, eq=False)  # hashed by identity: model_inputs groups columns by block per request
class _Block:
    """Columns computed together, and how many rows before *t* their value on row *t* reads."""

    columns: tuple[str, ...]
    lookback: int
    compute: Compute  # (bars, first row to read, outlier threshold) → arrays over rows first … end


def _returns(bars: DailyBars, first: int, _: float) -> dict[str, np.ndarray]:
    """Log returns, realised and EWMA volatility (one daily return series shared)."""
    close = bars.close[first:]
    daily = ind.log_return(close, 1)
    out = {f"log_return_{h}": daily if h == 1 else ind.log_return(close, h) for h in ind.RETURN_HORIZONS}
    out.update({f"realized_vol_{w}": ind.realized_vol(daily, w) for w in ind.VOL_WINDOWS})
    out["ewma_vol"] = ind.ewma_vol(daily)
    return out


def _averages(bars: DailyBars, first: int, _: float) -> dict[str, np.ndarray]:
    """The close against its SMAs, and its place in the Bollinger bands."""
    close = bars.close[first:]
    out = {f"close_to_sma_{n}": ind.close_to(close, ind.sma(close, n)) for n in ind.SMA_WINDOWS}
    out["bb_pct_b"], out["bb_width"] = ind.bollinger_position(close)
    return out


def _volume(bars: DailyBars, first: int, _: float) -> dict[str, np.ndarray]:
    close, volume = bars.close[first:], bars.volume[first:]
    return {"obv_flow_30": ind.obv_flow(close, volume), "volume_zscore_30": ind.volume_zscore(volume)}


def _ranges(bars: DailyBars, first: int, _: float) -> dict[str, np.ndarray]:
    """The day's range and the HAR components of the Garman–Klass variance."""
    open_, high, low, close = bars.open[first:], bars.high[first:], bars.low[first:], bars.close[first:]
    variance = ind.gk_variance(open_, high, low, close)
    out = {f"log_gk_var_{n}": ind.log_gk_var(variance, n) for n in ind.HAR_LAGS}
    out["range_pct"] = ind.range_pct(high, low, close)
    return out


def _restarted(bars: DailyBars, first: int, _: float) -> dict[str, np.ndarray]:
    return restarted(bars.high[first:], bars.low[first:], bars.close[first:])


def _calendar(bars: DailyBars, first: int, _: float) -> dict[str, np.ndarray]:
    dow = ind.day_of_week(bars.timestamp[first:])
    return {"day_of_week": dow, "dow_sin": np.sin(2 * np.pi * dow / 7), "dow_cos": np.cos(2 * np.pi * dow / 7)}


def _imputed(bars: DailyBars, first: int, _: float) -> dict[str, np.ndarray]:
    given = bars.is_imputed
    return {"is_imputed": np.zeros(len(bars) - first) if given is None else given[first:].astype("float64")}


def _outlier(bars: DailyBars, first: int, threshold: float) -> dict[str, np.ndarray]:
    return {"is_outlier": flag_outliers(bars.close[first:], threshold).to_numpy(dtype="float64")}


def _sentiment(bars: DailyBars, first: int, _: float) -> Mapping[str, np.ndarray]:
    return resolve_sentiment(len(bars) - first, {k: v[first:] for k, v in bars.sentiment.items()})


BLOCKS = (
    _Block(
        (
            *(f"log_return_{h}" for h in ind.RETURN_HORIZONS),
            *(f"realized_vol_{w}" for w in ind.VOL_WINDOWS),
            "ewma_vol",
        ),
        max(*ind.RETURN_HORIZONS, *ind.VOL_WINDOWS, ind.EWMA_SPAN),
        _returns,
    ),
    _Block(
        (*(f"close_to_sma_{n}" for n in ind.SMA_WINDOWS), "bb_pct_b", "bb_width"),
        max(*ind.SMA_WINDOWS, ind.BB_PERIOD) - 1,
        _averages,
    ),
    _Block(("obv_flow_30", "volume_zscore_30"), max(ind.OBV_WINDOW, ind.VOLUME_Z_WINDOW - 1), _volume),
    _Block((*(f"log_gk_var_{n}" for n in ind.HAR_LAGS), "range_pct"), max(ind.HAR_LAGS) - 1, _ranges),
    _Block(RESTARTED, ind.WARMUP, _restarted),
    _Block(("day_of_week", "dow_sin", "dow_cos"), 0, _calendar),
    _Block(("is_imputed",), 0, _imputed),
    _Block(("is_outlier",), OUTLIER_WINDOW + 1, _outlier),
    _Block(tuple(c for c in INPUT_COLUMNS if c.startswith(SENTIMENT_PREFIXES)), 0, _sentiment),
)
_BLOCK_OF = {c: block for block in BLOCKS for c in block.columns}
assert set(INPUT_COLUMNS) <= set(_BLOCK_OF), "every model input has a block"
assert max(b.lookback for b in BLOCKS) <= ind.WARMUP, "no model input may read further back than WARMUP rows"


def model_inputs(
    bars: DailyBars,
    columns: Sequence[str] | None = None,
    last: int | None = None,
    outlier_threshold: float = DEFAULT_OUTLIER_THRESHOLD,
) -> dict[str, np.ndarray]:
    """``columns`` (default ``INPUT_COLUMNS``; also any of ``RESTARTED``) for the last ``last`` rows of ``bars``
    (default all), as float64 arrays in the order asked. Rows without a full ``HISTORY`` are NaN.

    Only the blocks the columns need run, each over the rows its outputs read: for a request, the model's
    window and the ``WARMUP`` rows before it at most.
    """
    n = len(bars)
    rows = n if last is None else last
    if not 0 < rows <= n:
        raise ValueError(f"last={last}: the bars have {n} rows")
    wanted = INPUT_COLUMNS if columns is None else tuple(columns)
    out: dict[str, np.ndarray] = {}
    for block in _plan(wanted):
        values = block.compute(bars, max(0, n - rows - block.lookback), outlier_threshold)
        for column in block.columns:
            out[column] = values[column][-rows:]
    return {c: out[c] for c in wanted}


@lru_cache(maxsize=32)
def _plan(columns: tuple[str, ...]) -> tuple[_Block, ...]:
    """The blocks that compute ``columns``, each once (cached: a server asks for one model's columns)."""
    unknown = [c for c in columns if c not in _BLOCK_OF]
    if unknown:
        raise ValueError(f"no feature definition for column(s) {unknown}")
    return tuple(dict.fromkeys(_BLOCK_OF[c] for c in columns))


def model_frame(
    bars: pd.DataFrame,
    sentiment: pd.DataFrame | None = None,
    outlier_threshold: float = DEFAULT_OUTLIER_THRESHOLD,
) -> pd.DataFrame:
    """The training table's builder: the indicators table's columns (``compute_indicators``) with the model
    inputs of ``model_inputs`` for every row of ``bars`` (timestamp, OHLCV, optionally ``is_imputed``): flags as
    0/1 floats, the day's sentiment joined (``sentiment``: a daily table, or None for neutral), the recursive
    indicators restarted. When ``sentiment`` is None, aggregate columns the bars carry are used (a request).

    Rows before ``WARMUP`` are incomplete; callers drop them (training) or never look at them (serving).
    """
    frame = ind.compute_indicators(bars)
    columns = model_inputs(
        DailyBars.from_frame(frame, sentiment), [*RESTARTED_LEVELS, *INPUT_COLUMNS], None, outlier_threshold
    )
    # One frame built from columns (replaced ones keep their place): inserting ~30 columns one by one is slow.
    order = list(dict.fromkeys([*frame.columns, *columns]))
    return pd.DataFrame({c: columns[c] if c in columns else frame[c] for c in order}, index=frame.index)
