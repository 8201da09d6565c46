"""The forecast's quantile levels and its quantile function between and beyond them.

A forecast is a handful of quantiles of the next-day log return at fixed levels (``LEVELS``). Three things need
the quantile *function* at other levels: the adaptive-conformal calibration (it serves the value at an adjusted
level such as 0.083 instead of 0.10), a report that wants an interval whose ends are not among the levels, and a
comparison of models fitted at different levels.

How it interpolates, and why: linearly in the normal score ``z = Φ⁻¹(level)``, not in the level. Daily returns are
close to a location–scale family, and for a normal forecast ``q(z) = μ + σ z`` is a straight line in ``z``, so the
interpolation is exact there and close for the heavier-tailed shapes the baselines serve (Student-t, empirical).
Interpolating in the level instead would bend the tails inwards (the quantile function is steep near 0 and 1).
Beyond the outermost levels it continues the outermost segment's line — a normal tail with the scale the two
outermost levels imply — which is the least that can be said without a tail model. Levels are clipped to
``(0.001, 0.999)`` so an adjusted level can never ask for an infinite quantile.

Forecast quantiles that cross are sorted first (the rearrangement of Chernozhukov, Fernández-Val & Galichon 2010,
which never makes the pinball loss worse); with sorted knots every segment has a slope ≥ 0, so the output is
monotone in the level.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.special import ndtri

# The served levels (issue 27): the 80 % interval is q10–q90, the 90 % interval q05–q95, and seven levels make a
# CRPS from the quantiles a fair approximation instead of twice the mean pinball of three.
LEVELS: tuple[float, ...] = (0.05, 0.10, 0.25, 0.50, 0.75, 0.90, 0.95)
LEVEL_BOUNDS: tuple[float, float] = (0.001, 0.999)


def interval_levels(coverage: float) -> tuple[float, float]:
    """The levels of the central interval with this coverage: 0.8 → (0.1, 0.9), 0.9 → (0.05, 0.95).

    Rounded to 12 decimals so that ``(1 − 0.9) / 2`` is 0.05, the level the forecast carries, not 0.04999….
    """
    if not 0.0 < coverage < 1.0:
        raise ValueError(f"an interval's coverage must lie in (0, 1), not {coverage}")
    return round((1.0 - coverage) / 2.0, 12), round((1.0 + coverage) / 2.0, 12)


def level_index(levels: Sequence[float], level: float) -> int:
    """The position of ``level`` among ``levels`` (to 1e-9), or a ValueError that names what is there."""
    found = np.flatnonzero(np.isclose(np.asarray(levels, dtype="float64"), level, rtol=0.0, atol=1e-9))
    if not len(found):
        raise ValueError(f"level {level} is not among the forecast's levels {tuple(levels)}")
    return int(found[0])


def quantile_at(levels: Sequence[float], quantiles: np.ndarray, new_levels: float | np.ndarray) -> np.ndarray:
    """The forecast's quantile function at ``new_levels``, row by row.

    ``levels``: the forecast's levels [L] (strictly increasing, at least two). ``quantiles``: [n, L] (or [L] for one
    forecast). ``new_levels``: a scalar (→ [n]), [k] the same for every row (→ [n, k]) or [n, k] one set per row
    (→ [n, k]); a 1-D ``quantiles`` drops the row axis from the result. Exact at the known levels, linear in the
    normal score between them, the outermost segment's line beyond them; levels clipped to ``LEVEL_BOUNDS``.
    """
    taus = np.asarray(levels, dtype="float64")
    if taus.ndim != 1 or len(taus) < 2 or np.any(np.diff(taus) <= 0) or taus[0] <= 0 or taus[-1] >= 1:
        raise ValueError(f"levels must be at least two increasing values in (0, 1), not {tuple(levels)}")
    q = np.asarray(quantiles, dtype="float64")
    single = q.ndim == 1
    q = np.sort(np.atleast_2d(q), axis=1)
    if q.shape[1] != len(taus):
        raise ValueError(f"quantiles of shape {np.shape(quantiles)} for {len(taus)} levels")
    new = np.asarray(new_levels, dtype="float64")
    if new.ndim > 2:
        raise ValueError(f"new_levels of shape {new.shape}: a scalar, [k] or [n, k]")
    if new.ndim == 2:
        if single:
            q = np.broadcast_to(q, (new.shape[0], q.shape[1]))
        elif new.shape[0] != q.shape[0]:
            raise ValueError(f"new_levels of shape {new.shape} for {q.shape[0]} forecasts")
        new_2d = new
    else:
        new_2d = np.broadcast_to(new.reshape(1, -1), (q.shape[0], max(new.size, 1)))
    z_known = ndtri(taus)
    z_new = ndtri(np.clip(new_2d, *LEVEL_BOUNDS))
    # The segment each new level falls in; below the first knot and above the last, the outermost segment.
    segment = np.clip(np.searchsorted(z_known, z_new, side="right") - 1, 0, len(taus) - 2)
    rows = np.arange(q.shape[0])[:, None]
    left, right = q[rows, segment], q[rows, segment + 1]
    slope = (right - left) / (z_known[segment + 1] - z_known[segment])
    out = left + slope * (z_new - z_known[segment])
    if new.ndim == 0:
        out = out[:, 0]
    if single and new.ndim < 2:
        out = out[0]
    return out


Z_80 = 2.0 * float(ndtri(0.9))  # width of the central 80 % interval of a standard normal (2.563)


def implied_volatility(levels: Sequence[float], quantiles: np.ndarray) -> np.ndarray:
    """Every model's ``predicted_volatility``: the next-day standard deviation of the log return implied by its
    80 % interval, ``(q90 − q10) / 2.563`` (the normal-equivalent σ).

    One definition for every kind: for EWMA it is exactly its σ; for HAR, GARCH (FHS), the empirical model, the
    network and the combination it is the σ a normal with the same 80 % band would have. It is what the
    volatility scores (QLIKE, log-variance MSE against the Garman–Klass proxy) measure and what is served.
    """
    q = np.atleast_2d(np.asarray(quantiles, dtype="float64"))
    lo, hi = level_index(levels, 0.1), level_index(levels, 0.9)
    return (q[:, hi] - q[:, lo]) / Z_80
