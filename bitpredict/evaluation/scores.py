"""Scoring rules and forecast-comparison tests, on log returns so every figure is scale-free.

Why log returns: a loss in dollars lets the expensive stretch of a window (BTC at 70k vs 25k) dominate
both the average and the test; on log returns a 2 % miss costs the same in 2023 as in 2024.

* ``pinball``: the quantile (pinball) loss per quantile level — proper for quantiles, the primary score
  (its mean over the levels) for choosing the champion.
* ``crps``: the CRPS of the forecast distribution — its quantile function (``bitpredict.forecast.quantiles.
  quantile_at``: the served levels joined in the normal-score scale, normal tails) on a grid of 99 levels,
  scored by ``scoringrules.crps_quantile``. From the served levels alone it would be exactly twice the mean
  pinball, which restates the primary score; on the dense grid it scores the tails between and beyond them.
* ``qlike``, ``log_variance_mse``, ``mincer_zarnowitz_r2``: the volatility forecast (each model's
  ``predicted_volatility``) against the next day's Garman–Klass range variance — QLIKE is robust to the
  proxy's noise (Patton 2011); R² is of log variance on log forecast (Mincer–Zarnowitz), so a constant
  scale between a return σ and a range variance does not count against a model.
* ``hac_variance`` + ``diebold_mariano``: the DM test of equal predictive accuracy with a Newey–West
  (Bartlett) long-run variance — loss differentials are autocorrelated (volatility clusters), and the plain
  variance overstates |DM| then — plus the Harvey–Leybourne–Newbold small-sample correction and a t(n−1)
  reference distribution. One-sided: p is the probability of a statistic this large if the model were
  not better.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

# The score methods are ranked by and the champion is chosen on (metrics.json names it under "primary").
# Defined here, the lowest module that reads metrics, so the backtest, the report and the registry share it.
PRIMARY = "pinball_mean"


def pinball(actual: np.ndarray, quantiles: np.ndarray, levels: Sequence[float]) -> np.ndarray:
    """Per-day, per-level pinball loss [N, Q]: ``max(τ e, (τ − 1) e)`` with ``e = y − q_τ``."""
    y = np.asarray(actual, dtype="float64").reshape(-1, 1)
    q = np.asarray(quantiles, dtype="float64")
    taus = np.asarray(levels, dtype="float64").reshape(1, -1)
    if q.shape != (len(y), taus.shape[1]):
        raise ValueError(f"quantiles of shape {q.shape}, expected {(len(y), taus.shape[1])}")
    error = y - q
    return np.maximum(taus * error, (taus - 1.0) * error)


CRPS_GRID = np.linspace(0.01, 0.99, 99)


def crps(actual: np.ndarray, quantiles: np.ndarray, levels: Sequence[float]) -> np.ndarray:
    """Per-day CRPS of the distribution the quantiles describe: its quantile function on ``CRPS_GRID``,
    scored by ``scoringrules.crps_quantile`` (see the module docstring)."""
    import scoringrules

    from bitpredict.forecast.quantiles import quantile_at

    dense = quantile_at(levels, np.asarray(quantiles, dtype="float64"), CRPS_GRID)
    return np.asarray(
        scoringrules.crps_quantile(np.asarray(actual, dtype="float64"), dense, CRPS_GRID), dtype="float64"
    )


def qlike(variance_proxy: np.ndarray, variance_forecast: np.ndarray) -> np.ndarray:
    """Per-day QLIKE loss ``proxy/forecast − log(proxy/forecast) − 1`` (0 for a perfect forecast)."""
    ratio = np.asarray(variance_proxy, dtype="float64") / np.asarray(variance_forecast, dtype="float64")
    return ratio - np.log(ratio) - 1.0


def log_variance_mse(variance_proxy: np.ndarray, variance_forecast: np.ndarray) -> float:
    """Mean squared error of log variance."""
    diff = np.log(np.asarray(variance_proxy, dtype="float64")) - np.log(np.asarray(variance_forecast, "float64"))
    return float(np.mean(diff**2))


def mincer_zarnowitz_r2(variance_proxy: np.ndarray, variance_forecast: np.ndarray) -> float:
    """R² of the regression of log proxy on log forecast (the share of the proxy's variation the forecast
    explains, out of sample; invariant to a constant scale)."""
    x = np.log(np.asarray(variance_forecast, dtype="float64"))
    y = np.log(np.asarray(variance_proxy, dtype="float64"))
    if len(x) < 3 or np.std(x) == 0 or np.std(y) == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1] ** 2)


def newey_west_lags(n: int) -> int:
    """The usual automatic bandwidth ``floor(4 (n/100)^(2/9))`` (Newey & West 1994)."""
    return math.floor(4 * (n / 100.0) ** (2.0 / 9.0))


def hac_variance(series: np.ndarray, lags: int | None = None) -> float:
    """Newey–West long-run variance of ``series``: γ₀ + 2 Σₖ (1 − k/(L+1)) γₖ (Bartlett weights, never negative)."""
    x = np.asarray(series, dtype="float64")
    n = len(x)
    if n < 2:
        raise ValueError("the long-run variance needs at least two values")
    lags = newey_west_lags(n) if lags is None else lags
    centred = x - x.mean()
    variance = float(centred @ centred) / n
    for k in range(1, min(lags, n - 1) + 1):
        variance += 2.0 * (1.0 - k / (lags + 1.0)) * float(centred[k:] @ centred[:-k]) / n
    return variance


def diebold_mariano(
    loss_model: np.ndarray, loss_base: np.ndarray, horizon: int = 1, lags: int | None = None
) -> tuple[float, float]:
    """DM statistic (HAC variance, HLN-corrected) and one-sided p-value for "the model's loss is lower".

    A positive statistic means the model is better. Equal losses on every day give (0, 0.5).
    """
    from scipy import stats

    d = np.asarray(loss_base, dtype="float64") - np.asarray(loss_model, dtype="float64")
    n = len(d)
    if n < 3:
        raise ValueError(f"{n} days are too few for a Diebold–Mariano test")
    variance = hac_variance(d, max(lags if lags is not None else newey_west_lags(n), horizon - 1))
    if variance <= 1e-300:
        return 0.0, 0.5
    statistic = d.mean() / math.sqrt(variance / n)
    statistic *= math.sqrt((n + 1 - 2 * horizon + horizon * (horizon - 1) / n) / n)
    return float(statistic), float(stats.t.sf(statistic, df=n - 1))


def coverage(actual: np.ndarray, quantiles: np.ndarray) -> np.ndarray:
    """Share of days with the outcome at or below each forecast quantile [Q] (nominal: the levels)."""
    y = np.asarray(actual, dtype="float64").reshape(-1, 1)
    return (y <= np.asarray(quantiles, dtype="float64")).mean(axis=0)


def direction_accuracy(actual: np.ndarray, predicted: np.ndarray) -> tuple[float, int]:
    """Hit rate of the sign on days whose actual return is not zero, and how many zero days were left out.

    A zero return is neither up nor down (a flat bar, a filled gap): counting it as "down" would reward a
    forecast of zero, i.e. persistence. A forecast of exactly zero makes no call (a miss); a method that
    never makes one (persistence) has no direction accuracy at all: NaN.
    """
    actual = np.asarray(actual, dtype="float64")
    predicted = np.asarray(predicted, dtype="float64")
    moved = actual != 0
    if not moved.any() or not predicted[moved].any():
        return float("nan"), int((~moved).sum())
    hits = np.sign(predicted[moved]) == np.sign(actual[moved])
    return float(hits.mean()), int((~moved).sum())
