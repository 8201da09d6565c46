"""The forecast monitor: does the champion's forecast still hold, on trusted data? The primary signal.

**Evidence is trusted data only.** The ledger holds the champion's forecast for every day of the *ingested*
features table (the published state), closed against the table's own next-day return — the model run on the
bars the pipeline ingested, never on bars a client sent. Served forecasts are closed against the ingested close
too, but only reported: a client can ask anything, so what it was answered is not evidence about the market.

Checks, each a test of a stated size (``drift.monitor_size``, default 1 %: its false-alarm probability per check
on a calibrated model, measured in ``tests/unit/test_sequential.py`` on simulated calibrated forecasts):

* **calibration broken**: per tail of the served 80 % interval (below q10, above q90; expected 10 % each), the
  rolling Kupiec test over the monitored window with the multiple-window cut of
  ``bitpredict.evaluation.sequential.rolling_exceedance_alarm``; Christoffersen's independence p-value is reported.
* **pinball worse than naive**: a one-sided CUSUM of the daily pinball differential against persistence + EWMA
  volatility (the ``ewma`` baseline's forecast), calibrated on the ``drift.calibration_days`` closed days before
  the window (``bitpredict.evaluation.sequential.cusum_alarm``).

**Calibration kept live**: adaptive conformal inference per tail (``bitpredict.evaluation.calibration``) over the
ledger; its state is saved beside the drift reports (``aci.json``) and the transformer serves the champion's
quantiles at those levels. Coverage with and without it is reported.

**Every horizon closes on its day**: ``horizon_book`` keeps each h-day forecast (``model.horizons``) until the
table holds the close h days later, then scores it; its coverage per horizon is reported (``horizon_coverage``)
beside the next-day verdicts, and the UI shows it as the forecast's calibration so far.

Pure functions over frames (``ledgers``, ``verdict``); ``bitpredict.operations.drift_check`` runs them and writes.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from bitpredict.config import DriftSettings
from bitpredict.evaluation.calibration import AciState, run_aci
from bitpredict.evaluation.coverage import christoffersen
from bitpredict.evaluation.sequential import cusum_alarm, loss_differential, rolling_exceedance_alarm
from bitpredict.features.columns import TARGET
from bitpredict.forecast.artifact import SIGNATURE, locate
from bitpredict.forecast.dataset import Scaler, windows
from bitpredict.forecast.horizons import horizon_returns

log = logging.getLogger(__name__)

TAILS = (("lower", 0.1), ("upper", 0.9))  # the served 80 % interval's two tails
EXCEEDANCE_WINDOW = 60  # days per Kupiec window (at 10 % expected, 6 misses: fewer days say nothing)


def quantile_columns(levels: tuple[float, ...], prefix: str = "q") -> list[str]:
    return [f"{prefix}{round(q * 100):02d}" for q in levels]


_LOADED: dict[str, Any] = {}  # saved-model folder → its serving signature (a replay checks every day)


def _signature(saved_model_dir: str) -> Any:
    """The serving signature of a SavedModel, loaded once per folder (a version folder never changes)."""
    import tensorflow as tf

    if saved_model_dir not in _LOADED:
        if len(_LOADED) > 4:
            _LOADED.clear()
        _LOADED[saved_model_dir] = tf.saved_model.load(saved_model_dir).signatures[SIGNATURE]
    return _LOADED[saved_model_dir]


def _forecasts(features: pd.DataFrame, model_dir: str, days: int) -> dict[str, Any]:
    """The champion's quantiles [N, H, Q] for the last ``days`` rows of the table (one call of its SavedModel)."""
    import tensorflow as tf

    from bitpredict.forecast.artifact import HORIZON_QUANTILES_OUTPUT, QUANTILES_OUTPUT

    located = locate(model_dir, require_saved_model=True)
    meta = located.metadata
    window = int(meta["window"])
    frame = features.reset_index(drop=True)
    ends = np.arange(max(window - 1, len(frame) - days), len(frame))
    horizons = tuple(int(h) for h in meta.get("horizons", (1,)))
    out: dict[str, Any] = {"located": located, "frame": frame, "ends": ends, "horizons": horizons,
                           "levels": tuple(float(q) for q in meta["quantiles"])}  # fmt: skip
    if len(ends) == 0:
        out["quantiles"] = np.zeros((0, len(horizons), len(out["levels"])))
        return out
    x = windows(Scaler.from_dict(meta["scaler"]).transform(frame), window, ends).astype("float32")
    served = _signature(located.saved_model_dir)(**{meta["input"]["name"]: tf.constant(x)})
    if HORIZON_QUANTILES_OUTPUT in served:
        out["quantiles"] = served[HORIZON_QUANTILES_OUTPUT].numpy().astype("float64")
    else:  # a model exported before the horizon axis: the next day only
        out["quantiles"] = served[QUANTILES_OUTPUT].numpy().astype("float64")[:, None, :]
    return out


def ledgers(features: pd.DataFrame, model_dir: str, days: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The next-day book and the book of every horizon (``horizon_book``), from one call of the champion.

    The next-day book: the champion's forecasts for the last ``days`` rows of the ingested features table, each
    closed with the table's next-day log return (NaN while the day is open), beside the naive forecast (persistence
    + EWMA σ). Columns: ``timestamp`` (the day the forecast was made; it forecasts the next day), ``actual``,
    ``q05`` … (the model), ``ref_q05`` … (the naive), ``model_version``, ``source`` = "published".
    """
    from scipy.special import ndtri

    forecast = _forecasts(features, model_dir, days)
    frame, ends, levels = forecast["frame"], forecast["ends"], forecast["levels"]
    if len(ends) == 0:
        return pd.DataFrame(), pd.DataFrame()
    quantiles = forecast["quantiles"][:, 0, :]
    out = pd.DataFrame({"timestamp": frame["timestamp"].iloc[ends].to_numpy()})
    out["actual"] = frame[TARGET].iloc[ends].to_numpy(dtype="float64") if TARGET in frame else np.nan
    for name, column in zip(quantile_columns(levels), quantiles.T, strict=True):
        out[name] = column
    naive = frame["ewma_vol"].iloc[ends].to_numpy(dtype="float64")[:, None] * ndtri(np.asarray(levels))[None, :]
    for name, column in zip(quantile_columns(levels, "ref_q"), naive.T, strict=True):
        out[name] = column
    out["model_version"] = forecast["located"].version
    out["source"] = "published"
    return out, horizon_book(forecast)


def horizon_book(forecast: dict[str, Any]) -> pd.DataFrame:
    """Every horizon's forecast, long: ``timestamp`` (the origin day), ``horizon``, ``closes_on`` (origin + h
    days), ``actual`` (the table's h-day log return, NaN until that day is ingested), ``q05`` …, ``model_version``.
    An h-day forecast closes h days after it was made — each on its own day, from the ingested closes."""
    frame, ends, levels, horizons = forecast["frame"], forecast["ends"], forecast["levels"], forecast["horizons"]
    outcomes = horizon_returns(frame, horizons) if "close" in frame else np.full((len(frame), len(horizons)), np.nan)
    origins = pd.to_datetime(frame["timestamp"].iloc[ends].to_numpy(), utc=True)
    parts = []
    for j, h in enumerate(horizons):
        part = pd.DataFrame({"timestamp": origins, "horizon": h, "closes_on": origins + pd.Timedelta(days=h),
                             "actual": outcomes[ends, j]})  # fmt: skip
        for name, column in zip(quantile_columns(levels), forecast["quantiles"][:, j, :].T, strict=True):
            part[name] = column
        parts.append(part)
    book = pd.concat(parts, ignore_index=True)
    book["model_version"] = forecast["located"].version
    return book


def horizon_coverage(book: pd.DataFrame, levels: tuple[float, ...]) -> dict[str, dict[str, Any]]:
    """Per horizon, on the closed forecasts of ``horizon_book``: the 80 % interval's coverage over all of them and
    Kupiec's test on the non-overlapping ones (every h-th origin: their outcomes share no day).

    Reported, not an alarm: over the monitor's window a 30-day forecast has a handful of independent outcomes,
    too few for a test of useful power at the monitor's size; the alarms stay on the next-day forecast, whose
    calibration the longer horizons share through the same model.
    """
    from bitpredict.evaluation.coverage import kupiec
    from bitpredict.evaluation.horizon_metrics import non_overlapping

    if book.empty or not {"horizon", "actual"} <= set(book.columns) or not {0.1, 0.9} <= set(levels):
        return {}
    out: dict[str, dict[str, Any]] = {}
    for h, rows in book.groupby("horizon", sort=True):
        rows = rows[np.isfinite(rows["actual"].to_numpy(dtype="float64"))]
        if rows.empty:
            out[str(h)] = {"closed": 0}
            continue
        actual = rows["actual"].to_numpy(dtype="float64")
        inside = (actual >= rows["q10"].to_numpy()) & (actual <= rows["q90"].to_numpy())
        sample = ~non_overlapping(inside, int(h))
        out[str(h)] = {
            "closed": len(rows),
            "coverage_80": float(inside.mean()),
            "independent": len(sample),
            "kupiec_p": float(kupiec(sample, 0.2).p_value),
            "last_closed_origin": str(pd.Timestamp(rows["timestamp"].iloc[-1]).date()),
        }
    return out


def verdict(book: pd.DataFrame, levels: tuple[float, ...], config: DriftSettings) -> dict[str, Any]:
    """The monitor's checks on the closed days of the ledger: the last ``window_days`` are monitored, the
    ``calibration_days`` before them calibrate the CUSUM. Returns the figures and the two alarms."""
    closed = book[np.isfinite(book["actual"].to_numpy(dtype="float64"))].reset_index(drop=True)
    monitored = closed.tail(config.window_days)
    calibration = closed.iloc[
        max(0, len(closed) - len(monitored) - config.calibration_days) : len(closed) - len(monitored)
    ]
    out: dict[str, Any] = {
        "days": len(monitored),
        "calibration_days": len(calibration),
        "size": config.monitor_size,
        "first_day": str(pd.Timestamp(monitored["timestamp"].iloc[0]).date()) if len(monitored) else None,
        "last_day": str(pd.Timestamp(monitored["timestamp"].iloc[-1]).date()) if len(monitored) else None,
        "tails": {},
        "calibration_broken": False,
        "pinball_worse_than_naive": False,
        "alarms": [],  # what calls for a rerun
        "reasons": [],  # the alarms and every note (why a check did not run)
    }
    if len(monitored) < max(config.min_rows, EXCEEDANCE_WINDOW // 2):
        out["reasons"].append(f"only {len(monitored)} closed forecasts: no verdict")
        return out
    q = monitored[quantile_columns(levels)].to_numpy(dtype="float64")
    actual = monitored["actual"].to_numpy(dtype="float64")
    window = min(EXCEEDANCE_WINDOW, len(monitored))
    for side, level in TAILS:
        column = levels.index(level)
        hits = actual < q[:, column] if side == "lower" else actual > q[:, column]
        expected = level if side == "lower" else 1.0 - level
        alarm = rolling_exceedance_alarm(hits, expected, window=window, size=config.monitor_size)
        independence = christoffersen(hits)
        out["tails"][f"{side}_{level:g}"] = {
            "observed": float(np.mean(hits)),
            "expected": expected,
            "min_kupiec_p": float(np.min(alarm.p_values)),
            "cut": float(alarm.cut),
            "christoffersen_p": float(independence.p_value),
            "alarm": bool(alarm.alarm),
        }
        if alarm.alarm:
            out["calibration_broken"] = True
            out["alarms"].append(
                f"calibration broken: {side} tail {np.mean(hits):.0%} misses vs {expected:.0%} expected "
                f"(Kupiec p {np.min(alarm.p_values):.2g} < cut {alarm.cut:.2g}, size {config.monitor_size})"
            )
    if len(calibration) >= 30:
        reference = monitored[quantile_columns(levels, "ref_q")].to_numpy(dtype="float64")
        d, scale = loss_differential(actual, q, reference, levels)
        cal_q = calibration[quantile_columns(levels)].to_numpy(dtype="float64")
        cal_ref = calibration[quantile_columns(levels, "ref_q")].to_numpy(dtype="float64")
        d_cal, scale_cal = loss_differential(calibration["actual"].to_numpy(dtype="float64"), cal_q, cal_ref, levels)
        try:
            cusum = cusum_alarm(d, d_cal, size=config.monitor_size, scale=scale, calib_scale=scale_cal)
        except ValueError as exc:  # a champion identical to the naive forecast: nothing to compare
            out["cusum"] = {"skipped": str(exc)}
        else:
            out["cusum"] = {
                "statistic": float(cusum.statistic[-1]),
                "max": float(np.max(cusum.statistic)),
                "threshold": float(cusum.threshold),
                "alarm": bool(cusum.alarm),
                "mean_differential": float(np.mean(d)),
            }
            if cusum.alarm:
                out["pinball_worse_than_naive"] = True
                out["alarms"].append(
                    f"pinball worse than persistence + EWMA: CUSUM {np.max(cusum.statistic):.2f} > "
                    f"{cusum.threshold:.2f} (size {config.monitor_size})"
                )
    else:
        out["cusum"] = {"skipped": f"{len(calibration)} calibration days (needs 30)"}
    out["reasons"] = [*out["alarms"], *out["reasons"]]
    return out


def live_calibration(
    book: pd.DataFrame, levels: tuple[float, ...], gamma: float, window: int
) -> tuple[AciState, dict[str, Any]]:
    """ACI over the ledger's closed days: the state to serve with, and the monitored window's coverage of the
    80 % interval with and without it."""
    closed = book[np.isfinite(book["actual"].to_numpy(dtype="float64"))].reset_index(drop=True)
    start = AciState.start(levels, gamma)
    if closed.empty:
        return start, {"days": 0}
    q = closed[quantile_columns(levels)].to_numpy(dtype="float64")
    actual = closed["actual"].to_numpy(dtype="float64")
    _, adjusted, state = run_aci(actual, q, levels, gamma)
    lo, hi = levels.index(0.1), levels.index(0.9)
    recent = slice(max(0, len(closed) - window), len(closed))

    def covered(values: np.ndarray) -> float:
        inside = (actual[recent] >= values[recent, lo]) & (actual[recent] <= values[recent, hi])
        return float(np.mean(inside))

    return state, {
        "days": len(closed) - recent.start,
        "coverage_80": covered(q),
        "coverage_80_aci": covered(adjusted),
        "levels": dict(zip([f"{t:g}" for t in state.targets], [float(v) for v in state.levels], strict=True)),
        "gamma": gamma,
    }


def served_closed(logged: pd.DataFrame, closes: pd.DataFrame) -> dict[str, Any] | None:
    """Served forecasts closed against the *ingested* close of their day (reported, never a verdict's evidence):
    the share whose interval held the ingested close. ``closes``: ``day`` (ISO date) and ``close``."""
    if logged.empty or not {"as_of", "lower", "upper"} <= set(logged.columns):
        return None
    latest = logged.drop_duplicates("as_of", keep="last")
    joined = latest.merge(closes, left_on="as_of", right_on="day", how="inner")
    if joined.empty:
        return None
    inside = (joined["close"] >= joined["lower"]) & (joined["close"] <= joined["upper"])
    return {"days": len(joined), "interval_held": float(inside.mean())}
