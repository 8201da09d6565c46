"""Scores per horizon: is each h-day forecast right, and better than the naive one scaled by √h?

For every horizon h of ``model.horizons`` and every probabilistic method of a backtest, on the days whose h-day
outcome is known:

* the mean pinball loss (the primary score) and the pinball per level, on h-day log returns;
* the coverage of the central 80 % interval, with **Kupiec** and **Christoffersen** tests on *non-overlapping*
  forecasts (every h-th day): consecutive h-day forecasts share h − 1 days of their outcomes, so their misses
  come in runs by construction and a test that assumes independent days would reject a calibrated forecast;
  the coverage itself is the mean over all days;
* a one-sided **Diebold–Mariano** test against the naive forecast (``ewma``: persistence with the EWMA
  volatility × √h) with a HAC variance of at least h − 1 lags (``bitpredict.evaluation.scores.diebold_mariano``:
  the loss differential of overlapping h-day forecasts is MA(h − 1) under the null, Diebold & Mariano 1995).

Pure functions over a ``Backtest``'s predictions (the columns ``<method>_h<h>_q<level>`` and
``actual_return_h<h>``; the 1-day columns keep their old names).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from bitpredict.evaluation import scores
from bitpredict.evaluation.coverage import christoffersen, kupiec
from bitpredict.forecast.horizons import horizon_suffix
from bitpredict.forecast.quantiles import interval_levels, level_index

NAIVE = "ewma"


def actual_column(h: int) -> str:
    return f"actual_return{horizon_suffix(h)}"


def quantile_columns(method: str, levels: Sequence[float], h: int) -> list[str]:
    """The columns of ``method``'s h-day quantiles (the 1-day ones are ``<method>_q10`` …, as before)."""
    return [f"{method}{horizon_suffix(h)}_q{round(q * 100):02d}" for q in levels]


def closed(predictions: pd.DataFrame, h: int) -> pd.DataFrame:
    """The rows whose h-day outcome is known."""
    column = actual_column(h)
    if column not in predictions:
        return predictions.iloc[:0]
    return predictions[np.isfinite(predictions[column].to_numpy(dtype="float64"))].reset_index(drop=True)


def non_overlapping(hits: np.ndarray, h: int) -> np.ndarray:
    """Every h-th hit from the first: forecasts whose h-day outcomes share no day."""
    return np.asarray(hits)[::h]


def method_scores(rows: pd.DataFrame, method: str, levels: tuple[float, ...], h: int) -> dict[str, Any]:
    """Pinball (mean and per level), 80 % coverage and its tests for ``method``'s h-day forecasts on ``rows``."""
    actual = rows[actual_column(h)].to_numpy(dtype="float64")
    quantiles = rows[quantile_columns(method, levels, h)].to_numpy(dtype="float64")
    loss = scores.pinball(actual, quantiles, levels)
    lo, hi = (level_index(levels, q) for q in interval_levels(0.8))
    outside = (actual < quantiles[:, lo]) | (actual > quantiles[:, hi])
    sample = non_overlapping(outside, h)
    out: dict[str, Any] = {
        "pinball": float(loss.mean()),
        "pinball_per_level": {f"q{round(q * 100):02d}": float(loss[:, i].mean()) for i, q in enumerate(levels)},
        "interval_80_coverage": float(1.0 - outside.mean()),
        "days": len(actual),
        "independent_days": len(sample),
    }
    if len(sample) >= 2:
        out["interval_80_kupiec_p"] = kupiec(sample, 0.2).p_value
        out["interval_80_christoffersen_p"] = christoffersen(sample).p_value
    return out


def daily_pinball(rows: pd.DataFrame, method: str, levels: tuple[float, ...], h: int) -> np.ndarray:
    actual = rows[actual_column(h)].to_numpy(dtype="float64")
    return scores.pinball(actual, rows[quantile_columns(method, levels, h)].to_numpy(dtype="float64"), levels).mean(
        axis=1
    )


def horizon_metrics(
    predictions: pd.DataFrame, methods: Sequence[str], levels: tuple[float, ...], horizons: Sequence[int]
) -> dict[str, dict[str, Any]]:
    """``{str(h): {"days": …, "methods": {method: scores + DM vs naive}}}`` for every horizon with ≥ 3 closed days."""
    out: dict[str, dict[str, Any]] = {}
    for h in horizons:
        rows = closed(predictions, h)
        if len(rows) < 3:
            continue
        present = [m for m in methods if all(c in rows for c in quantile_columns(m, levels, h))]
        table = {m: method_scores(rows, m, levels, h) for m in present}
        if NAIVE in table:
            naive = daily_pinball(rows, NAIVE, levels, h)
            for method in present:
                if method == NAIVE:
                    continue
                statistic, p = scores.diebold_mariano(daily_pinball(rows, method, levels, h), naive, horizon=h)
                table[method].update(
                    dm_vs_naive_stat=statistic,
                    dm_vs_naive_p=p,
                    dm_lags=max(scores.newey_west_lags(len(rows)), h - 1),
                    skill_vs_naive=1.0 - table[method]["pinball"] / table[NAIVE]["pinball"],
                )
        out[str(h)] = {
            "days": len(rows),
            "first_day": str(pd.Timestamp(rows["timestamp"].iloc[0]).date()),
            "last_day": str(pd.Timestamp(rows["timestamp"].iloc[-1]).date()),
            "methods": table,
        }
    return out
