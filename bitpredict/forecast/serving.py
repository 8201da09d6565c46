"""From a client's raw market rows to the model's input window, and from its output to a forecast.

Pure functions over arrays (no kserve, no TensorFlow): the serving transformer calls them, tests call
them directly, and they call the *training* code — ``bitpredict.features.online.model_inputs``, the function the
merge stage builds the features table with, and the stored ``Scaler`` — so the features a served forecast
sees are the training table's rows for those days (a test checks every day of the real history).

The hot path is NumPy end to end: ``parse_bars`` validates the v2 tensors into ``DailyBars`` (arrays) and
``feature_window`` computes only the model's columns for its last ``window`` rows from the ``window + warm-up``
rows they read — no DataFrame per request. ``parse_request`` (a DataFrame) stays for callers that want one;
``feature_window`` accepts either.

The served-input contract: daily bars, one per UTC day without gaps, oldest first, at least window +
warm-up rows; optionally ``is_imputed`` (1 for a bar the clean stage filled: send it with rows taken from
the clean table, or send raw bars, whose gaps are refused) and ``sentiment_<column>`` for each daily
aggregate (the published ``sentiment_daily`` values of those days; ``bitpredict.features.columns.request_sentiment``).
Only the last window + warm-up rows are read: each model input depends on at most that much history.

Every problem a client can cause raises ``RequestError`` naming the input; the server answers 400.
A model whose metadata this code cannot serve raises ``ModelMismatch`` at start-up, never at a request.
"""

from __future__ import annotations

import datetime
import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from bitpredict.config import CleanSettings
from bitpredict.errors import BitPredictError
from bitpredict.features.columns import FLAG_COLUMNS, SENTIMENT_PREFIXES, sentiment_columns
from bitpredict.features.indicators import MODEL_FEATURES, WARMUP
from bitpredict.features.online import DailyBars, model_frame, model_inputs
from bitpredict.forecast.dataset import Scaler
from bitpredict.forecast.dataset import sentiment_inputs as dataset_sentiment_inputs
from bitpredict.forecast.quantiles import implied_volatility
from bitpredict.forecast.risk import risk_figures

MARKET_INPUTS = ("timestamp", "open", "high", "low", "close", "volume")
IMPUTED_INPUT = "is_imputed"  # optional: 1 where the bar is a filled gap (rows from the clean table), else 0
PRICE_INPUTS = ("open", "high", "low", "close")
FLOAT_TYPES = ("FP64", "FP32")
FLAG_TYPES = ("FP64", "FP32", "INT64", "INT32", "BOOL")
TIMESTAMP_TYPES = ("INT64", "BYTES")
# Per-column bounds of a served request, wide enough for any real market and strict enough that a value without
# meaning (a sentiment of 1e30, a volume of 1e300) is the client's 400, never the model's input.
MAX_PRICE = 1e9  # USD per BTC: three orders of magnitude above any price seen
MAX_VOLUME = 1e15  # a day's traded volume, in base or quote units
SENTIMENT_BOUNDS = {  # per daily statistic: VADER compound and FinBERT (positive - negative) scores are in [-1, 1]
    "vader_mean": (-1.0, 1.0),
    "vader_std": (0.0, 1.0),
    "finbert_mean": (-1.0, 1.0),
    "finbert_std": (0.0, 1.0),
    "count": (0.0, 1e7),  # texts scored in one day
    "share_positive": (0.0, 1.0),
    "share_negative": (0.0, 1.0),
}
MIN_CAP = 365  # the row cap may never be set below a year of history
ALWAYS_ENOUGH = 200  # a model whose window + warm-up exceeds this is refused at start-up
DAY = pd.Timedelta(days=1)
EPOCH = datetime.date(1970, 1, 1)


class RequestError(BitPredictError, ValueError):
    """A client's request cannot be served; the message names the input and says what is wrong."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason  # a short label for the rejected-requests metric


class ModelMismatch(BitPredictError, RuntimeError):
    """The loaded model's metadata does not fit this code (refused at start-up)."""


def sentiment_inputs() -> list[str]:
    """Optional request inputs: ``sentiment_<column>`` for each daily sentiment aggregate."""
    return [f"sentiment_{c}" for p in SENTIMENT_PREFIXES for c in sentiment_columns(p)]


def optional_inputs() -> list[str]:
    """Every optional request input: ``is_imputed`` and the sentiment aggregates."""
    return [IMPUTED_INPUT, *sentiment_inputs()]


@dataclass(frozen=True)
class ModelSpec:
    """What a loaded model needs, from its ``bitpredict_model.json``, checked against this code."""

    feature_columns: tuple[str, ...]
    window: int
    warmup: int
    scaler: Scaler
    quantiles: tuple[float, ...]
    version: str
    max_rows: int
    kind: str = (
        "lstm"  # the network or a baseline (``bitpredict.forecast.baselines``): same contract, named in responses
    )
    # days ahead of the ``horizon_quantiles`` rows; (1,) for a model exported before the horizon axis
    horizons: tuple[int, ...] = (1,)

    @property
    def label(self) -> str:
        """What the response's ``model_version`` says: the kind of model and its registry version."""
        return f"{self.kind}-v{self.version}" if self.version.isdigit() else f"{self.kind}-{self.version}"

    @property
    def min_rows(self) -> int:
        return self.window + self.warmup

    @classmethod
    def from_metadata(cls, meta: Mapping[str, Any], version: str, max_rows: int = 1000) -> ModelSpec:
        try:
            columns = tuple(meta["feature_columns"])
            window, warmup = int(meta["window"]), int(meta["warmup"])
            scaler = Scaler.from_dict(meta["scaler"])
            quantiles = tuple(float(q) for q in meta["quantiles"])
            horizons = tuple(int(h) for h in meta.get("horizons", [1]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelMismatch(f"model metadata is incomplete: {exc!r}") from exc
        if warmup != WARMUP:
            raise ModelMismatch(f"model trained with a {warmup}-bar warm-up, this code uses {WARMUP}")
        servable = set(MODEL_FEATURES) | set(FLAG_COLUMNS) | set(dataset_sentiment_inputs())
        unknown = [c for c in columns if c not in servable]
        if unknown:
            raise ModelMismatch(f"model expects feature(s) {unknown} that this code does not compute")
        if scaler.columns != columns:
            raise ModelMismatch("the scaler's columns differ from the model's feature columns")
        if window + warmup > ALWAYS_ENOUGH:
            raise ModelMismatch(f"window {window} + warm-up {warmup} exceed {ALWAYS_ENOUGH} rows")
        if max_rows < MIN_CAP:
            raise ModelMismatch(f"max_rows {max_rows} is below {MIN_CAP}")
        if sorted(quantiles) != list(quantiles) or len(quantiles) < 2:
            raise ModelMismatch(f"quantiles {quantiles} must be increasing, at least two")
        if not horizons or horizons[0] != 1 or any(b <= a for a, b in itertools.pairwise(horizons)):
            raise ModelMismatch(f"horizons {list(horizons)} must start with 1 and increase")
        kind = str(meta.get("kind", "lstm"))
        return cls(columns, window, warmup, scaler, quantiles, version, max_rows, kind, horizons)


# --------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------


NS_PER_S = 10**9
# unix seconds that datetime64[ns] (pandas, the request log) can hold: years 1677 … 2262
SECONDS_RANGE = (-(2**63) // NS_PER_S + 1, (2**63 - 1) // NS_PER_S)


def _seconds(values: np.ndarray, datatype: str) -> np.ndarray:
    """int64 unix seconds of the ``timestamp`` input (INT64 seconds as they are; BYTES parsed as ISO-8601)."""
    try:
        if datatype == "INT64":
            seconds = np.asarray(values).astype("int64")
            if len(seconds) and (seconds.min() < SECONDS_RANGE[0] or seconds.max() > SECONDS_RANGE[1]):
                raise OverflowError("outside the years 1677-2262")
            return seconds
        text = [v.decode() if isinstance(v, bytes) else str(v) for v in values.ravel()]
        return pd.DatetimeIndex(pd.to_datetime(text, utc=True, format="ISO8601")).as_unit("s").asi8
    except (ValueError, OverflowError, TypeError) as exc:
        raise RequestError(f"input 'timestamp': not unix seconds or ISO-8601 dates ({exc})", "bad_timestamp") from None


def parse_bars(inputs: Mapping[str, tuple[str, np.ndarray]], spec: ModelSpec) -> DailyBars:
    """``inputs``: name → (v2 datatype, values). Returns the bars as arrays (the hot path's form) or raises
    ``RequestError`` naming the input."""
    allowed = {*MARKET_INPUTS, *optional_inputs()}
    missing = [n for n in MARKET_INPUTS if n not in inputs]
    if missing:
        raise RequestError(f"missing input(s) {missing}; required: {list(MARKET_INPUTS)}", "missing_input")
    extra = sorted(set(inputs) - allowed)
    if extra:
        raise RequestError(
            f"unknown input(s) {extra}; optional inputs are {IMPUTED_INPUT} and sentiment_<column>", "unknown_input"
        )
    lengths = {}
    for name, (datatype, values) in inputs.items():
        expected = TIMESTAMP_TYPES if name == "timestamp" else FLAG_TYPES if name == IMPUTED_INPUT else FLOAT_TYPES
        if datatype not in expected:
            raise RequestError(f"input '{name}': datatype {datatype}, expected one of {list(expected)}", "bad_datatype")
        if values.ndim != 1:
            raise RequestError(f"input '{name}': shape {list(values.shape)}, expected [N]", "bad_shape")
        lengths[name] = len(values)
    if len(set(lengths.values())) > 1:
        raise RequestError(f"inputs differ in length: {lengths}", "unequal_lengths")
    n = lengths["close"]
    if n < spec.min_rows:
        raise RequestError(
            f"{n} rows: the model needs at least {spec.min_rows} (window {spec.window} + warm-up {spec.warmup})",
            "too_few_rows",
        )
    if n > spec.max_rows:
        raise RequestError(f"{n} rows: at most {spec.max_rows} per request", "too_many_rows")
    datatype, values = inputs["timestamp"]
    seconds = _seconds(values, datatype)
    columns = {name: np.ascontiguousarray(inputs[name][1], dtype="float64") for name in MARKET_INPUTS[1:]}
    sentiment = {
        name.removeprefix("sentiment_"): np.ascontiguousarray(inputs[name][1], dtype="float64")
        for name in inputs
        if name.startswith("sentiment_")
    }
    imputed = np.asarray(inputs[IMPUTED_INPUT][1]).astype("float64") if IMPUTED_INPUT in inputs else None
    everything = {**columns, **sentiment, **({} if imputed is None else {IMPUTED_INPUT: imputed})}
    bad = [c for c, v in everything.items() if not np.isfinite(v).all()]
    if bad:
        raise RequestError(f"input(s) {bad}: NaN or infinite values", "not_finite")
    if imputed is not None and not np.isin(imputed, (0.0, 1.0)).all():
        raise RequestError(f"input '{IMPUTED_INPUT}': values must be 0 or 1", "bad_flag")
    for name in PRICE_INPUTS:
        outside = (columns[name] <= 0) | (columns[name] > MAX_PRICE)
        if outside.any():
            raise RequestError(
                f"input '{name}': prices must be in (0, {MAX_PRICE:g}] (row {int(np.argmax(outside))})", "price"
            )
    if ((columns["volume"] < 0) | (columns["volume"] > MAX_VOLUME)).any():
        raise RequestError(f"input 'volume': must be in [0, {MAX_VOLUME:g}]", "volume")
    _check_sentiment_bounds(sentiment)
    high, low = columns["high"], columns["low"]
    if (high < low).any():
        raise RequestError(f"inputs 'high'/'low': high < low at row {int(np.argmax(high < low))}", "high_below_low")
    body_high = np.maximum(columns["open"], columns["close"])
    body_low = np.minimum(columns["open"], columns["close"])
    outside = (body_high > high) | (body_low < low)
    if outside.any():
        raise RequestError(f"inputs 'open'/'close': outside [low, high] at row {int(np.argmax(outside))}", "ohlc")
    steps = np.diff(seconds)
    if (steps <= 0).any():
        raise RequestError(f"input 'timestamp': not increasing at row {int(np.argmax(steps <= 0)) + 1}", "order")
    if (steps != 86_400).any():
        row = int(np.argmax(steps != 86_400)) + 1
        raise RequestError(
            f"input 'timestamp': a gap or a non-daily step before row {row} (one row per UTC day)", "gap"
        )
    if (seconds % 86_400 != 0).any():
        raise RequestError("input 'timestamp': daily bars must start at 00:00 UTC", "not_daily")
    _check_sentiment(set(sentiment))
    return DailyBars(seconds, *(columns[c] for c in MARKET_INPUTS[1:]), imputed, sentiment)


def parse_request(inputs: Mapping[str, tuple[str, np.ndarray]], spec: ModelSpec) -> pd.DataFrame:
    """``parse_bars`` as a frame: timestamp (UTC), OHLCV, the sentiment columns, ``is_imputed`` when sent."""
    return parse_bars(inputs, spec).to_frame()


def _check_sentiment_bounds(sentiment: Mapping[str, np.ndarray]) -> None:
    """Each sentiment statistic within its scale (``SENTIMENT_BOUNDS``), the input and row named."""
    for column, values in sentiment.items():
        low, high = SENTIMENT_BOUNDS.get(column.split("_", 1)[-1], (-math.inf, math.inf))
        outside = (values < low) | (values > high)
        if outside.any():
            raise RequestError(
                f"input 'sentiment_{column}': values must be in [{low:g}, {high:g}] (row {int(np.argmax(outside))})",
                "sentiment_range",
            )


def _check_sentiment(given: set[str]) -> None:
    for prefix in SENTIMENT_PREFIXES:
        sent = [c for c in sentiment_columns(prefix) if c in given]
        if sent and len(sent) != len(sentiment_columns(prefix)):
            missing = [f"sentiment_{c}" for c in sentiment_columns(prefix) if c not in given]
            raise RequestError(f"{prefix} sentiment is partial: also send {missing}", "partial_sentiment")


# --------------------------------------------------------------------------------------------
# features and forecast
# --------------------------------------------------------------------------------------------

DEFAULT_CLEAN = CleanSettings()
Bars = pd.DataFrame | DailyBars  # what the feature and forecast functions accept: a parsed request either way


def _arrays(bars: Bars) -> DailyBars:
    return bars if isinstance(bars, DailyBars) else DailyBars.from_frame(bars)


def request_features(bars: pd.DataFrame, rows: int | None = None, clean: CleanSettings | None = None) -> pd.DataFrame:
    """Every column of the training table's builder (``model_frame``) for the last ``rows`` rows of a request's
    bars (all rows when None), from the bars and the sentiment the request carries (the drift job's view)."""
    clean = clean or DEFAULT_CLEAN
    if rows is not None:
        bars = bars.iloc[-rows:]
    return model_frame(bars, None, clean.outlier_mad_threshold)


def feature_window(bars: Bars, spec: ModelSpec, clean: CleanSettings | None = None) -> np.ndarray:
    """The model input [1, W, F] for the day after the last row: the training table's rows for the last W days.

    ``bars``: ``parse_bars``' arrays (the hot path) or ``parse_request``'s frame. Only the model's columns are
    computed, for its last W rows, from the last window + warm-up rows (every input depends on at most that
    much history), so a request of 200 rows and one of 1,000 ending on the same day give the same window.
    """
    arrays = _arrays(bars).tail(spec.min_rows)
    if len(arrays) < spec.min_rows:
        raise RequestError(f"{len(arrays)} rows: the model needs at least {spec.min_rows}", "too_few_rows")
    threshold = (clean or DEFAULT_CLEAN).outlier_mad_threshold
    columns = model_inputs(arrays, spec.feature_columns, spec.window, threshold)
    values = spec.scaler.transform_arrays(columns)
    if not np.isfinite(values).all():
        raise RequestError("the rows give non-finite features (e.g. a constant price series)", "features")
    return values[None, :, :]


def sentiment_source(bars: Bars) -> str:
    given = bars.sentiment if isinstance(bars, DailyBars) else set(bars.columns)
    sources = [p for p in SENTIMENT_PREFIXES if f"{p}_count" in given]
    return "client: " + ",".join(sources) if sources else "neutral default (no sentiment inputs)"


def forecast(quantiles: np.ndarray, bars: Bars, spec: ModelSpec) -> dict[str, Any]:
    """Quantiles of the next-day log return → the response's outputs."""
    q = np.asarray(quantiles, dtype="float64").reshape(-1)
    if len(q) != len(spec.quantiles) or not np.isfinite(q).all():
        raise RuntimeError(f"predictor returned {q.tolist()} for {len(spec.quantiles)} quantiles")
    levels = spec.quantiles
    median_index = levels.index(0.5) if 0.5 in levels else len(q) // 2
    low, high = _served_interval(levels)
    if isinstance(bars, DailyBars):
        close, last_day = float(bars.close[-1]), pd.Timestamp(int(bars.timestamp[-1]), unit="s", tz="UTC")
    else:
        close, last_day = float(bars["close"].iloc[-1]), bars["timestamp"].iloc[-1]
    median = float(q[median_index])
    out = {
        "predicted_log_return": median,
        "predicted_close": close * math.exp(median),
        "direction": int(np.sign(median)),  # 1 up, -1 down, 0 no call (a median of exactly 0: persistence)
        "lower": close * math.exp(float(q[low])),  # the 80 % interval (q10–q90) when the model has those levels
        "upper": close * math.exp(float(q[high])),
        "as_of": (last_day + DAY).date().isoformat(),
        "model_version": spec.label,
    }
    if 0.1 in levels and 0.9 in levels:
        out["predicted_volatility"] = float(implied_volatility(levels, q[None, :])[0])
    if 0.05 in levels and 0.95 in levels:
        out["lower_90"] = close * math.exp(float(q[levels.index(0.05)]))
        out["upper_90"] = close * math.exp(float(q[levels.index(0.95)]))
    return out


# Issue 31: the response's per-horizon outputs, declared once (the transformer's metadata route and response, the v2
# client): one value per horizon (H, the model's ``horizons``) or per level (Q); shapes by axis letters.
HORIZON_OUTPUTS = (
    ("horizons", "INT64", "H"),  # days ahead
    ("horizon_as_of", "BYTES", "H"),  # the day each horizon's forecast is for (ISO date)
    ("quantile_levels", "FP64", "Q"),
    ("horizon_quantiles", "FP64", "HQ"),  # log-return quantiles of close[t+h] / close[t]
    ("horizon_close_quantiles", "FP64", "HQ"),  # the same in USD
    ("value_at_risk_95", "FP64", "H"),
    ("expected_shortfall_95", "FP64", "H"),
    ("prob_rise_5pct", "FP64", "H"),
    ("prob_fall_5pct", "FP64", "H"),
    ("prob_rise_10pct", "FP64", "H"),
    ("prob_fall_10pct", "FP64", "H"),
    ("expected_range_low", "FP64", "H"),  # USD, the central 68.3 % interval
    ("expected_range_high", "FP64", "H"),
)


def horizon_rows(horizon_quantiles: np.ndarray | None, one_day: np.ndarray) -> np.ndarray:
    """The [H, Q] log-return quantiles served per horizon: the model's ``horizon_quantiles`` ([1, H, Q] or [H, Q];
    ``None`` for a model exported before the horizon axis: the 1-day quantiles alone, H = 1) with the first row
    replaced by the served 1-day quantiles ``one_day`` [Q].

    Why replace row 1: the contract says it equals ``quantiles``; replacing it makes horizon 1 the 1-day outputs
    exactly (FP32 noise included) and carries the ACI calibration, which is learned on 1-day outcomes and so applied
    to horizon 1 only — the longer horizons stay at their nominal levels. A reply of another shape raises
    ``RuntimeError`` (the server's 502).
    """
    rows = one_day[None, :] if horizon_quantiles is None else np.asarray(horizon_quantiles)
    if rows.ndim == 3:
        if rows.shape[0] != 1:
            raise RuntimeError(f"predictor returned horizon quantiles for {rows.shape[0]} windows, sent 1")
        rows = rows[0]
    rows = np.array(rows, dtype="float64")
    if rows.ndim != 2 or rows.shape[1] != len(one_day):
        raise RuntimeError(f"predictor returned horizon quantiles of shape {list(rows.shape)}")
    rows[0] = one_day
    return rows


def horizon_forecast(horizon_quantiles: np.ndarray, bars: Bars, spec: ModelSpec) -> dict[str, np.ndarray]:
    """Log-return quantiles [H, Q] for the model's horizons → the response's per-horizon outputs (issue 31).

    The quantiles in log returns and in USD (``last close · exp(q)``), the day each horizon is for, and the risk
    figures of ``bitpredict.forecast.risk`` — all from these quantiles, so from the served (possibly calibrated)
    distribution. A reply of the wrong shape or with NaN raises ``RuntimeError`` (the server's 502).
    """
    q = np.asarray(horizon_quantiles, dtype="float64")
    shape = (len(spec.horizons), len(spec.quantiles))
    if q.shape != shape or not np.isfinite(q).all():
        raise RuntimeError(f"predictor returned horizon quantiles of shape {list(q.shape)} (finite {list(shape)} due)")
    if isinstance(bars, DailyBars):  # plain datetime arithmetic: a pandas Timestamp per horizon costs 7 µs each
        close, last_day = float(bars.close[-1]), EPOCH + datetime.timedelta(days=int(bars.timestamp[-1]) // 86_400)
    else:
        close, last_day = float(bars["close"].iloc[-1]), bars["timestamp"].iloc[-1].date()
    return {
        "horizons": np.asarray(spec.horizons, dtype="int64"),
        "horizon_as_of": np.array(
            [(last_day + datetime.timedelta(days=h)).isoformat() for h in spec.horizons], dtype=object
        ),
        "quantile_levels": np.asarray(spec.quantiles, dtype="float64"),
        "horizon_quantiles": q,
        "horizon_close_quantiles": close * np.exp(q),
        **risk_figures(spec.quantiles, q, close),
    }


def _served_interval(levels: tuple[float, ...]) -> tuple[int, int]:
    """Positions of the served interval's ends: q10 and q90 (80 %), else the outermost levels (old models)."""
    if 0.1 in levels and 0.9 in levels:
        return levels.index(0.1), levels.index(0.9)
    return 0, len(levels) - 1
