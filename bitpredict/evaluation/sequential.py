"""Sequential tests for the monitor: has the model's loss become worse than a naive forecast's, has a tail broken?

Both are built so that their false-alarm rate *per check* is a size stated in advance (issue 28): a check is one
monitoring window of ``horizon`` days, and under the null the probability that it raises an alarm on any of its
days is at most ``size``. Looking every day at a fixed-level test would instead raise an alarm almost surely over a
long enough window.

``cusum_alarm`` — a one-sided standardised CUSUM (Page 1954) on the daily pinball-loss differential
``d_t = loss_model − loss_reference`` (the reference: persistence + EWMA volatility). Null: ``E d_t ≤ 0`` (the
model is not worse); the threshold is set at the boundary ``E d_t = 0``, the least favourable case, so a model that
is better than the reference alarms less often still.

* Each ``d_t`` is first divided by an ex-ante scale ``scale_t`` known the day before: ``loss_differential`` gives the
  mean absolute gap between the two forecasts' quantiles, ``mean_τ |q_model − q_ref|``. Why that one: the pinball
  loss is 1-Lipschitz in the quantile with constant max(τ, 1 − τ), so ``|d_t| ≤ 0.95 · scale_t`` — the increments
  are bounded, whatever the tails of the returns — and dividing by a positive number known the day before keeps the
  sign of ``E[d_t | past]``, so a model that is not worse on any day stays not worse. Measured on 2,000 simulated
  checks of GARCH-t forecasts (the simulation of tests/unit/test_sequential.py): without it, or divided by the
  reference's volatility instead, the false-alarm rate of a calibrated model was 3.3–3.9 % at a 1 % size, because
  the spread of ``d_t`` moves with the gap between the true and the EWMA volatility (large after a shock, tiny in
  calm months) and a calibration window of calm months understates it. The price is power: the bounded increments
  carry less signal.
* The standard deviation is estimated on a calibration window that precedes the monitoring window and is not part
  of it, as the larger of the plain and the Newey–West long-run standard deviation (``scores.hac_variance``): the
  long-run one because the CUSUM accumulates sums of autocorrelated days, the plain one as a floor, because a
  negative autocorrelation would shrink the long-run one while single days stay as large.
* ``S_0 = 0``, ``S_t = max(0, S_{t−1} + z_t − k)`` with ``z_t = d_t / (scale_t σ̂)``; an alarm on the first day
  ``S_t > h``. The drift allowance ``k`` (in standard deviations) sets what the test is tuned to: a mean shift of
  about ``2k``.
* ``h`` for a size: ``cusum_threshold`` by Monte Carlo under the null with a fixed seed (cached): unit-variance
  Student-t(4) increments of mean 0, and the scale estimated on a simulated calibration window of the same length
  exactly as ``cusum_alarm`` does, so the threshold pays for the estimation error of σ̂ as well. Why t(4) and
  not the normal: with normal increments the false-alarm rate on the boundary case below (two exchangeable
  forecasts, E d = 0) came out at 1.1–1.7 % for a 1 % size; with t(4) it is under the size.
* Default ``k = 0.1``: tuned for a mean shift of about 0.2 σ per day, the order of what a badly scaled forecast
  does to the bounded differential. What that buys, measured (α = 1 % over 90 days, GARCH-t, 500 checks):
  quantiles half as wide for 60 days are detected in 57 % of checks (back of the envelope: the shift is about
  0.35 sd a day, so even a one-shot z-test told the 60 changed days would reach only Φ(0.35·√60 − 2.33) ≈ 65 %),
  a quarter as wide in 97 %; at α = 5 %, half as wide for the whole 90 days in 93 %.
  The pinball loss is a noisy witness of a scale error; ``rolling_exceedance_alarm`` on the tails is the sharper
  one and the monitor should use both.

``rolling_exceedance_alarm`` — a tail's hits counted in a rolling window, Kupiec's test on each window, an alarm
on the first window whose p-value is below a cut. The windows overlap and are looked at every day, so the cut is
not the size: it is the size's quantile of the *smallest* p-value over the check's windows under the null
(iid Bernoulli(p) hits), by Monte Carlo with a fixed seed — exact for the discrete counts, and much less
conservative than Bonferroni's ``size / n_windows``, which ignores that neighbouring windows share all but one day.
Measured (60-day windows, 90 per check, 1 %): false alarms 0.1–0.8 %; a doubled miss rate over the last 89 days is
found in 82 % of checks for an 80 % interval (0.2 → 0.4) but 34 % for one tail (0.1 → 0.2): two months of daily
hits hold little evidence about a 10 % rate.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats
from scipy.special import xlogy

from bitpredict.evaluation.coverage import as_hits
from bitpredict.evaluation.scores import newey_west_lags, pinball

SEED = 20260427
N_SIMULATIONS = 20_000
NULL_DF = 4.0  # Student-t degrees of freedom of the simulated null increments


def loss_differential(
    actual: np.ndarray, q_model: np.ndarray, q_reference: np.ndarray, levels: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    """The daily mean-pinball differential ``d = loss_model − loss_reference`` [n] and its ex-ante scale [n], the mean
    absolute gap between the two forecasts' quantiles (floored at 1e-12: equal forecasts give d = 0 exactly)."""
    d = pinball(actual, q_model, levels).mean(axis=1) - pinball(actual, q_reference, levels).mean(axis=1)
    gap = np.abs(np.asarray(q_model, dtype="float64") - np.asarray(q_reference, dtype="float64")).mean(axis=1)
    return d, np.maximum(gap, 1e-12)


def long_run_sd(x: np.ndarray) -> np.ndarray:
    """Per row of ``x`` [m, n]: √max(plain variance, Newey–West long-run variance), the same Bartlett weights and
    automatic bandwidth as ``scores.hac_variance`` (vectorised here because the Monte Carlo needs thousands)."""
    x = np.atleast_2d(np.asarray(x, dtype="float64"))
    n = x.shape[1]
    if n < 2:
        raise ValueError("the scale needs at least two calibration days")
    lags = newey_west_lags(n)
    centred = x - x.mean(axis=1, keepdims=True)
    plain = (centred * centred).sum(axis=1) / n
    long_run = plain.copy()
    for k in range(1, min(lags, n - 1) + 1):
        long_run += 2.0 * (1.0 - k / (lags + 1.0)) * (centred[:, k:] * centred[:, :-k]).sum(axis=1) / n
    return np.sqrt(np.maximum(plain, long_run))


def cusum_path(z: np.ndarray, k: float) -> np.ndarray:
    """Page's one-sided CUSUM of ``z`` along the last axis: S_t = max(0, S_{t−1} + z_t − k), S_0 = 0."""
    z = np.asarray(z, dtype="float64")
    out = np.empty_like(z)
    s = np.zeros(z.shape[:-1])
    for t in range(z.shape[-1]):
        s = np.maximum(0.0, s + z[..., t] - k)
        out[..., t] = s
    return out


def _null_increments(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.standard_t(NULL_DF, shape) * math.sqrt((NULL_DF - 2.0) / NULL_DF)


@functools.lru_cache(maxsize=64)
def cusum_threshold(size: float, horizon: int, k: float, calib_days: int, n_sim: int = N_SIMULATIONS) -> float:
    """The threshold h with P(max_{t ≤ horizon} S_t > h) = size under the null, σ̂ estimated on ``calib_days``.

    Monte Carlo (seed ``SEED``, ``n_sim`` checks) with unit-variance Student-t(4) increments of mean 0: the boundary
    of the null, with tails as heavy as the loss differentials'. Cached per arguments.
    """
    if not 0.0 < size < 1.0 or horizon < 1 or calib_days < 2:
        raise ValueError(f"size {size} in (0, 1), horizon {horizon} ≥ 1 and calib_days {calib_days} ≥ 2 expected")
    rng = np.random.default_rng([SEED, horizon, calib_days])
    peaks = np.empty(n_sim)
    for start in range(0, n_sim, 5000):  # in blocks, to bound the memory
        m = min(5000, n_sim - start)
        sigma = long_run_sd(_null_increments(rng, (m, calib_days)))
        z = _null_increments(rng, (m, horizon)) / sigma[:, None]
        peaks[start : start + m] = cusum_path(z, k).max(axis=1)
    return float(np.quantile(peaks, 1.0 - size, method="higher"))


@dataclass(frozen=True)
class CusumResult:
    """One check: the first alarm day (index into the monitored series) or None, the CUSUM path and its settings."""

    alarm_index: int | None
    statistic: np.ndarray
    threshold: float
    drift: float
    sigma: float
    size: float | None
    horizon: int | None

    @property
    def alarm(self) -> bool:
        return self.alarm_index is not None


def _scaled(d: np.ndarray, scale: np.ndarray | None, name: str) -> np.ndarray:
    x = np.asarray(d, dtype="float64")
    if x.ndim != 1 or not np.all(np.isfinite(x)):
        raise ValueError(f"{name} must be a one-dimensional series without NaN")
    if scale is None:
        return x
    s = np.asarray(scale, dtype="float64")
    if s.shape != x.shape or not np.all(np.isfinite(s) & (s > 0)):
        raise ValueError(f"the scale of {name} must be positive, finite and of its length {len(x)}")
    return x / s


def cusum_alarm(
    d: np.ndarray,
    calib: np.ndarray,
    k: float = 0.1,
    h: float | None = None,
    size: float = 0.01,
    horizon: int | None = None,
    scale: np.ndarray | None = None,
    calib_scale: np.ndarray | None = None,
) -> CusumResult:
    """One-sided CUSUM check that the model's loss has become worse than the reference's.

    ``d``: the monitored days' loss differentials (model − reference), oldest first; ``calib``: those of the
    calibration window before them (not overlapping). ``scale`` / ``calib_scale``: optional ex-ante per-day divisors
    (e.g. the reference's predicted volatility), both or neither. ``h``: the threshold, or None to take it from
    ``size`` over ``horizon`` days (default: the length of ``d``) by ``cusum_threshold``. The size holds for a check
    of ``horizon`` days; a longer ``d`` is a longer check with a larger false-alarm probability.
    """
    if (scale is None) != (calib_scale is None):
        raise ValueError("give the scale of both the monitored and the calibration days, or of neither")
    x = _scaled(d, scale, "d")
    c = _scaled(calib, calib_scale, "calib")
    sigma = float(long_run_sd(c)[0])
    if sigma <= 0:
        raise ValueError("the calibration differentials have no spread")
    horizon = len(x) if horizon is None else horizon
    used_size = None
    if h is None:
        h = cusum_threshold(size, horizon, k, len(c))
        used_size = size
    path = cusum_path(x / sigma, k)
    above = np.flatnonzero(path > h)
    return CusumResult(
        int(above[0]) if len(above) else None, path, float(h), k, sigma, used_size, horizon if used_size else None
    )


def kupiec_p_values(counts: np.ndarray, n: int, p: float) -> np.ndarray:
    """Kupiec's p-value for each hit count of an n-day window (vectorised ``coverage.kupiec``)."""
    x = np.asarray(counts, dtype="float64")
    observed = x / n
    loglik_null = xlogy(x, p) + xlogy(n - x, 1.0 - p)
    loglik_fit = xlogy(x, observed) + xlogy(n - x, 1.0 - observed)
    return stats.chi2.sf(np.maximum(-2.0 * (loglik_null - loglik_fit), 0.0), 1)


@functools.lru_cache(maxsize=64)
def exceedance_cut(p: float, window: int, n_windows: int, size: float, n_sim: int = N_SIMULATIONS) -> float:
    """The per-window p-value cut c with P(min over ``n_windows`` consecutive windows of Kupiec p < c) ≤ size under
    iid Bernoulli(p) hits. Monte Carlo (seed ``SEED``), cached; the counts are discrete, so the rate is at most size
    (up to Monte Carlo error), not equal to it."""
    if not 0.0 < p < 1.0 or not 0.0 < size < 1.0 or window < 1 or n_windows < 1:
        raise ValueError(f"p {p} and size {size} in (0, 1), window {window} and n_windows {n_windows} ≥ 1 expected")
    table = kupiec_p_values(np.arange(window + 1), window, p)
    rng = np.random.default_rng([SEED, window, n_windows, round(p * 1e6)])
    smallest = np.empty(n_sim)
    for start in range(0, n_sim, 5000):
        m = min(5000, n_sim - start)
        hits = rng.random((m, window + n_windows - 1)) < p
        cumulative = np.concatenate([np.zeros((m, 1), dtype=int), np.cumsum(hits, axis=1)], axis=1)
        counts = cumulative[:, window:] - cumulative[:, :-window]
        smallest[start : start + m] = table[counts].min(axis=1)
    # P(min < c) = (# strictly below c) / n_sim ≤ size for the value at position floor(size · n_sim)
    return float(np.sort(smallest)[math.floor(size * n_sim)])


@dataclass(frozen=True)
class ExceedanceAlarm:
    """A rolling-window exceedance check: the first alarming window's last day (index into ``hits``) or None, the
    windows' hit counts and Kupiec p-values (one per window, indexed by its last day − window + 1) and the cut."""

    alarm_index: int | None
    counts: np.ndarray
    p_values: np.ndarray
    cut: float
    size: float
    window: int
    n_windows: int

    @property
    def alarm(self) -> bool:
        return self.alarm_index is not None


def rolling_exceedance_alarm(
    hits: np.ndarray, p: float, window: int = 60, size: float = 0.01, n_windows: int | None = None
) -> ExceedanceAlarm:
    """Kupiec's test on every ``window``-day window of ``hits``, an alarm when a p-value falls below the cut that
    holds the false-alarm rate of the whole check (``n_windows`` overlapping windows, default: all those in
    ``hits``) at ``size``."""
    h = as_hits(hits)
    if len(h) < window:
        raise ValueError(f"{len(h)} days are fewer than one {window}-day window")
    available = len(h) - window + 1
    n_windows = available if n_windows is None else n_windows
    cut = exceedance_cut(p, window, n_windows, size)
    cumulative = np.concatenate([[0], np.cumsum(h)])
    counts = cumulative[window:] - cumulative[:-window]
    p_values = kupiec_p_values(counts, window, p)
    below = np.flatnonzero(p_values < cut)
    alarm = int(below[0]) + window - 1 if len(below) else None
    return ExceedanceAlarm(alarm, counts, p_values, cut, size, window, n_windows)
