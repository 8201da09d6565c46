"""Interval tests on exceedance ("hit") series: is a tail missed as often as it should be, and independently?

A coverage figure alone cannot say whether 74 % for an 80 % interval is bad luck; these tests do (issue 27):

* ``kupiec``: the proportion-of-failures likelihood-ratio test (Kupiec 1995) — are the hits Bernoulli(p)?
  ``LR = −2 ln[(1−p)^(n−x) p^x / ((1−π̂)^(n−x) π̂^x)]``, π̂ = x/n, χ²(1). Two-sided: too few hits (an interval too
  wide) fails as well as too many.
* ``christoffersen``: the Markov independence test (Christoffersen 1998) — is a hit tomorrow as likely after a hit
  as after none? From the transition counts n₀₀, n₀₁, n₁₀, n₁₁ of consecutive days,
  ``LR = −2 ln[L(π̂) / L(π̂₀₁, π̂₁₁)]``, χ²(1). Misses that cluster (a volatility model slow to react) fail it.
* ``conditional_coverage``: their sum, χ²(2) (Christoffersen 1998).

Zero counts follow the literature: 0·ln 0 = 0, so a term whose count is zero drops out. With no hit, or no day
after a hit (π̂₁₁ undefined), or only hits, the two likelihoods coincide: the independence statistic is 0 and its
p-value 1 — the data carry no evidence about independence, which is not evidence *of* independence; the result's
``note`` says so.

``tail_tests`` applies them to a forecast: per level below the median the lower-tail hits ``actual < q(τ)``
(expected rate τ), per level above it the upper-tail hits ``actual > q(τ)`` (expected 1 − τ), and the two-sided
misses of the 80 % and 90 % intervals, as plain dicts a report can print.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats
from scipy.special import xlogy

from bitpredict.forecast.quantiles import interval_levels, level_index

INTERVALS: tuple[float, ...] = (0.8, 0.9)


@dataclass(frozen=True)
class TestResult:
    """One likelihood-ratio test on a hit series: the statistic, its χ² p-value, and the counts behind it.

    ``expected_rate`` is the hit rate under the null (NaN for the independence test, whose null fixes no rate).
    """

    __test__ = False  # not a pytest class

    statistic: float
    p_value: float
    n: int
    hits: int
    expected_rate: float
    observed_rate: float
    note: str = ""


def as_hits(hits: Sequence[float] | np.ndarray) -> np.ndarray:
    """A hit series as booleans; NaN (a day without an outcome) or a value other than 0/1 is a ValueError."""
    x = np.asarray(hits)
    if x.ndim != 1:
        raise ValueError(f"a hit series is one-dimensional, not of shape {x.shape}")
    if x.dtype == bool:
        return x
    x = x.astype("float64")
    bad = np.flatnonzero(~np.isfinite(x))
    if len(bad):
        raise ValueError(f"{len(bad)} hit values are NaN or infinite (first at position {bad[0]}): drop those days")
    if not np.all((x == 0) | (x == 1)):
        raise ValueError("hits must be 0/1 or booleans")
    return x.astype(bool)


def _bernoulli_loglik(successes: float, failures: float, rate: float) -> float:
    """ln[rate^successes (1 − rate)^failures] with 0·ln 0 = 0."""
    return float(xlogy(successes, rate) + xlogy(failures, 1.0 - rate))


def kupiec(hits: Sequence[float] | np.ndarray, p: float) -> TestResult:
    """Kupiec's proportion-of-failures LR test that the hits are Bernoulli(p), χ²(1)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"the expected hit rate must lie in (0, 1), not {p}")
    h = as_hits(hits)
    n, x = len(h), int(h.sum())
    if n == 0:
        raise ValueError("no days to test")
    observed = x / n
    statistic = -2.0 * (_bernoulli_loglik(x, n - x, p) - _bernoulli_loglik(x, n - x, observed))
    statistic = max(statistic, 0.0)
    return TestResult(statistic, float(stats.chi2.sf(statistic, 1)), n, x, p, observed)


def transitions(hits: Sequence[float] | np.ndarray) -> tuple[int, int, int, int]:
    """The counts (n₀₀, n₀₁, n₁₀, n₁₁) of consecutive-day pairs: nᵢⱼ days with state j after a day with state i."""
    h = as_hits(hits).astype(int)
    before, after = h[:-1], h[1:]
    return (
        int(((before == 0) & (after == 0)).sum()),
        int(((before == 0) & (after == 1)).sum()),
        int(((before == 1) & (after == 0)).sum()),
        int(((before == 1) & (after == 1)).sum()),
    )


def christoffersen(hits: Sequence[float] | np.ndarray) -> TestResult:
    """Christoffersen's Markov independence LR test, χ²(1); 0 and p = 1 when the data cannot speak (see module)."""
    h = as_hits(hits)
    if len(h) < 2:
        raise ValueError("the independence test needs at least two days")
    n00, n01, n10, n11 = transitions(h)
    pi = (n01 + n11) / (n00 + n01 + n10 + n11)
    pi01 = n01 / (n00 + n01) if n00 + n01 else 0.0
    pi11 = n11 / (n10 + n11) if n10 + n11 else 0.0
    restricted = _bernoulli_loglik(n01 + n11, n00 + n10, pi)
    unrestricted = _bernoulli_loglik(n01, n00, pi01) + _bernoulli_loglik(n11, n10, pi11)
    statistic = max(-2.0 * (restricted - unrestricted), 0.0)
    note = ""
    if n01 + n11 == 0:
        note = "no hit after the first day: no evidence about independence (statistic 0, p = 1)"
    elif n00 + n10 == 0:
        note = "a hit on every day after the first: no evidence about independence (statistic 0, p = 1)"
    elif n10 + n11 == 0 or n00 + n01 == 0:
        note = "one state never precedes another day: no evidence about independence (statistic 0, p = 1)"
    x = int(h.sum())
    return TestResult(statistic, float(stats.chi2.sf(statistic, 1)), len(h), x, math.nan, x / len(h), note)


def conditional_coverage(hits: Sequence[float] | np.ndarray, p: float) -> TestResult:
    """Christoffersen's conditional-coverage test: Kupiec's statistic + the independence statistic, χ²(2)."""
    uc, ind = kupiec(hits, p), christoffersen(hits)
    statistic = uc.statistic + ind.statistic
    return TestResult(statistic, float(stats.chi2.sf(statistic, 2)), uc.n, uc.hits, p, uc.observed_rate, ind.note)


def _summary(kind: str, level: float | tuple[float, float], hits: np.ndarray, p: float) -> dict[str, Any]:
    uc, ind, cc = kupiec(hits, p), christoffersen(hits), conditional_coverage(hits, p)
    return {
        "kind": kind,
        "level": level,
        "n": uc.n,
        "hits": uc.hits,
        "expected_rate": p,
        "observed_rate": uc.observed_rate,
        "kupiec_statistic": uc.statistic,
        "kupiec_p": uc.p_value,
        "christoffersen_statistic": ind.statistic,
        "christoffersen_p": ind.p_value,
        "conditional_coverage_p": cc.p_value,
        "note": ind.note,
    }


def tail_tests(
    actual: np.ndarray, quantiles: np.ndarray, levels: Sequence[float], intervals: Sequence[float] | None = None
) -> dict[str, dict[str, Any]]:
    """Kupiec and Christoffersen per tail and per central interval, as plain dicts keyed by a printable name.

    Keys: ``lower_0.05`` … for every level below 0.5 (hits ``actual < q``, expected τ), ``upper_0.95`` … for every
    level above (hits ``actual > q``, expected 1 − τ), ``interval_0.8`` / ``interval_0.9`` (hits: outside the
    interval, expected 1 − coverage). ``intervals`` defaults to those of 80 % and 90 % whose ends the forecast
    carries; one named explicitly must be there. NaN in ``actual`` or ``quantiles`` is a ValueError: drop the days
    without an outcome first, so that n is the number of days tested.
    """
    y = np.asarray(actual, dtype="float64")
    q = np.asarray(quantiles, dtype="float64")
    taus = [float(t) for t in levels]
    if y.ndim != 1 or q.shape != (len(y), len(taus)):
        raise ValueError(f"actual of shape {y.shape} and quantiles of shape {q.shape} for {len(taus)} levels")
    bad = np.flatnonzero(~np.isfinite(y) | ~np.isfinite(q).all(axis=1))
    if len(bad):
        raise ValueError(f"{len(bad)} rows have NaN or infinite values (first at row {bad[0]}): drop them first")
    results: dict[str, dict[str, Any]] = {}
    for j, tau in enumerate(taus):
        if tau < 0.5:
            results[f"lower_{tau:g}"] = _summary("lower", tau, y < q[:, j], tau)
        elif tau > 0.5:
            results[f"upper_{tau:g}"] = _summary("upper", tau, y > q[:, j], round(1.0 - tau, 12))
    if intervals is None:
        wanted = []
        for coverage in INTERVALS:
            try:
                [level_index(taus, end) for end in interval_levels(coverage)]
            except ValueError:
                continue
            wanted.append(coverage)
    else:
        wanted = list(intervals)
    for coverage in wanted:
        lo, hi = interval_levels(coverage)
        i, k = level_index(taus, lo), level_index(taus, hi)
        outside = (y < q[:, i]) | (y > q[:, k])
        results[f"interval_{coverage:g}"] = _summary("interval", (lo, hi), outside, round(1.0 - coverage, 12))
    return results


def result_dict(result: TestResult) -> dict[str, Any]:
    """A ``TestResult`` as a plain dict (for JSON)."""
    return asdict(result)
