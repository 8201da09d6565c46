"""Risk figures a person can plan with, from a quantile forecast of log returns at several horizons.

One job: turn the served quantiles [H, Q] of ``r = log(close[t + h] / close[t])`` into the figures a holder of
bitcoin asks about — how much could I lose (value at risk, expected shortfall), how likely is a big move, what is
the expected range — and the day-by-day fan the UI draws between the served horizons. Pure NumPy/SciPy, no
serving or model code: the transformer, the UI and the tests call the same functions.

Which distribution: the one ``bitpredict.forecast.quantiles.quantile_at`` defines from the served quantiles —
linear in the normal score ``z = Φ⁻¹(level)`` between the levels, the outermost segment's line beyond them (a normal
tail). Every figure is computed from that one function, so the figures never contradict the served quantiles (the
ACI-calibrated ones when the server applies a calibration). Because the function is piecewise linear in ``z``, the
tail integral and the CDF have closed forms per segment: no sampling, no grid, exact for a normal forecast. The
only difference from ``quantile_at`` is that the normal tails continue past its ``(0.001, 0.999)`` guard (the guard
stops an adjusted level from asking for an infinite quantile; an integral over the tail needs the tail itself).

Sign conventions (for a long position in BTC): losses are positive fractions of the position's value, so a value
at risk of 0.05 means "a 5 % loss is not exceeded with 95 % probability"; a negative figure means even the 5 %
worst case is a gain.
"""

from __future__ import annotations

import bisect
import functools
import math
from collections.abc import Sequence

import numpy as np
from scipy.special import ndtr, ndtri

TAIL = 0.05  # value at risk and expected shortfall at 95 %
MOVES = (0.05, 0.10)  # the ±5 % and ±10 % moves whose probability is served
ONE_SIGMA = (float(ndtr(-1.0)), float(ndtr(1.0)))  # the central 68.3 % interval: "± one standard deviation"
Z_TAIL = float(ndtri(TAIL))
# log(1 − m) for each move, then log(1 + m): the thresholds of the move probabilities, computed once
MOVE_LOG_RETURNS = np.array([math.log1p(-m) for m in MOVES] + [math.log1p(m) for m in MOVES])


@functools.lru_cache(maxsize=32)
def _scores(levels: tuple[float, ...]) -> np.ndarray:
    """The normal scores of valid levels (checked once per set of levels: the served set repeats every request)."""
    taus = np.asarray(levels, dtype="float64")
    if taus.ndim != 1 or len(taus) < 2 or np.any(np.diff(taus) <= 0) or taus[0] <= 0 or taus[-1] >= 1:
        raise ValueError(f"levels must be at least two increasing values in (0, 1), not {levels}")
    scores = ndtri(taus)
    scores.flags.writeable = False
    return scores


def _check(levels: Sequence[float], quantiles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(z-scores of the levels [Q], quantiles sorted per row [H, Q]) or a ValueError saying what is wrong.

    Crossing quantiles are sorted (the rearrangement ``quantile_at`` applies too), so the function is monotone."""
    try:
        z = _scores(tuple(float(level) for level in np.ravel(levels)))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"levels must be at least two increasing values in (0, 1), not {levels!r}") from exc
    q = np.asarray(quantiles, dtype="float64")
    if q.ndim != 2 or q.shape[1] != len(z) or q.shape[0] < 1:
        raise ValueError(f"quantiles of shape {list(q.shape)}: expected [H, {len(z)}] (one row per horizon)")
    if not np.isfinite(q).all():
        raise ValueError("quantiles hold NaN or infinite values")
    return z, np.sort(q, axis=1)


def _lines(z: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The quantile function as pieces ``q = a + b·z`` on ``[lo, hi]`` in the normal score: (a, b) [H, Q−1] and the
    breakpoints [Q] (``−∞``, the inner knots, ``+∞``). The first and last pieces are the outermost segments' lines
    continued to infinity (the normal tails)."""
    b = np.diff(q, axis=1) / np.diff(z)[None, :]
    a = q[:, :-1] - b * z[None, :-1]
    edges = np.concatenate([[-np.inf], z[1:-1], [np.inf]])
    return a, b, edges


def cdf_at(levels: Sequence[float], quantiles: np.ndarray, values: float | np.ndarray) -> np.ndarray:
    """P(r ≤ value) for each row of ``quantiles`` [H, Q] (log returns) at ``values`` (a scalar → [H], [k] → [H, k]).

    The inverse of the quantile function: on each piece ``z = (value − a) / b``, then ``Φ(z)``. A flat piece (equal
    quantiles: a point mass) gives the level at its upper end; a flat outermost piece means no mass beyond it.
    """
    z, q = _check(levels, quantiles)
    x = np.asarray(values, dtype="float64")
    if x.ndim > 1 or not np.isfinite(x).all():
        raise ValueError(f"values must be a finite scalar or [k], not shape {list(x.shape)}")
    out = _cdf(z, q, *_lines(z, q)[:2], np.atleast_1d(x))
    return out[:, 0] if x.ndim == 0 else out


def _cdf(z: np.ndarray, q: np.ndarray, a: np.ndarray, b: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``cdf_at`` on checked input, every row at once: [H, k]."""
    # the piece each value falls in: the segment whose knots bracket it, the outermost ones beyond
    piece = np.minimum(np.maximum((q[:, :, None] <= x[None, None, :]).sum(axis=1) - 1, 0), len(z) - 2)
    rows = np.arange(q.shape[0])[:, None]
    slope, intercept = b[rows, piece], a[rows, piece]
    flat = slope <= 0
    with np.errstate(divide="ignore", invalid="ignore"):
        score = (x[None, :] - intercept) / np.where(flat, 1.0, slope)
    # a flat piece (slope 0): every value at or above it lies at its upper knot or beyond
    score = np.where(flat, np.where(x[None, :] >= q[rows, piece], z[piece + 1], -np.inf), score)
    score = np.where((x[None, :] < q[:, :1]) & (b[:, :1] <= 0), -np.inf, score)
    score = np.where((x[None, :] >= q[:, -1:]) & (b[:, -1:] <= 0), np.inf, score)
    return ndtr(score)


def value_at_risk(levels: Sequence[float], quantiles: np.ndarray, tail: float = TAIL) -> np.ndarray:
    """The loss of a long position not exceeded with probability ``1 − tail``, per row: ``−(exp(q_tail) − 1)``."""
    z, q = _check(levels, quantiles)
    return -np.expm1(_quantile(z, q, float(ndtri(tail))))


def expected_shortfall(levels: Sequence[float], quantiles: np.ndarray, tail: float = TAIL) -> np.ndarray:
    """The mean loss in the worst ``tail`` of outcomes, per row: ``−E[exp(r) − 1 | r ≤ q_tail]``.

    Why a closed form: ``E[exp(r); r ≤ q_tail] = ∫ exp(q(z)) φ(z) dz`` over ``z ≤ Φ⁻¹(tail)``, and on a piece
    ``q = a + b·z`` that integral is ``exp(a + b²/2) · [Φ(hi − b) − Φ(lo − b)]`` (the lognormal's partial
    expectation). Summed over the pieces below ``Φ⁻¹(tail)`` it is exact for the quantile function the forecast
    defines, including its normal tail below the lowest level — which is where a shortfall lives.
    """
    if not 0.0 < tail < 0.5:
        raise ValueError(f"tail must lie in (0, 0.5), not {tail}")
    z, q = _check(levels, quantiles)
    a, b, edges = _lines(z, q)
    return _shortfall(a, b, edges, tail, float(ndtri(tail)))


def _shortfall(a: np.ndarray, b: np.ndarray, edges: np.ndarray, tail: float, cut: float) -> np.ndarray:
    """``expected_shortfall`` from the pieces: the partial expectations of the pieces below ``cut = Φ⁻¹(tail)``."""
    used = edges[:-1] < cut  # the pieces that reach below the cut
    lo, hi = edges[:-1][used], np.minimum(edges[1:][used], cut)
    bu = b[:, used]
    mass = ndtr(hi[None, :] - bu) - ndtr(lo[None, :] - bu)
    partial = np.sum(np.exp(a[:, used] + bu * bu / 2.0) * mass, axis=1)
    return 1.0 - partial / tail


def move_probabilities(levels: Sequence[float], quantiles: np.ndarray, move: float) -> tuple[np.ndarray, np.ndarray]:
    """(P(close[t+h] / close[t] − 1 > +move), P(close[t+h] / close[t] − 1 < −move)) per row, from ``cdf_at``."""
    if not 0.0 < move < 1.0:
        raise ValueError(f"a move must lie in (0, 1), not {move}")
    cdf = cdf_at(levels, quantiles, np.array([math.log1p(-move), math.log1p(move)]))
    return 1.0 - cdf[:, 1], cdf[:, 0]


def expected_range(levels: Sequence[float], quantiles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The central 68.3 % interval of the log return per row (levels Φ(−1), Φ(1)): "± one standard deviation", what
    options traders call the expected move, for any shape of forecast."""
    z, q = _check(levels, quantiles)
    return _quantile(z, q, -1.0), _quantile(z, q, 1.0)


def _quantile(z: np.ndarray, q: np.ndarray, target: float) -> np.ndarray:
    """The quantile function at one normal score ``target`` for every row (the normal tail continued, unclipped)."""
    piece = min(max(bisect.bisect_right(z.tolist(), target) - 1, 0), len(z) - 2)
    slope = (q[:, piece + 1] - q[:, piece]) / (z[piece + 1] - z[piece])
    return q[:, piece] + slope * (target - z[piece])


def risk_figures(levels: Sequence[float], quantiles: np.ndarray, last_close: float) -> dict[str, np.ndarray]:
    """Every served risk figure, one value per horizon (row of ``quantiles`` [H, Q] log returns): value at risk and
    expected shortfall at 95 % (fractions), the probabilities of moves beyond ±5 % and ±10 %, and the expected range
    in USD (``last_close · exp(q)`` at Φ(−1), Φ(1))."""
    if not (math.isfinite(last_close) and last_close > 0):
        raise ValueError(f"last_close must be a positive price, not {last_close}")
    z, q = _check(levels, quantiles)  # once: every figure below reads the same checked, sorted quantiles
    a, b, edges = _lines(z, q)
    out = {
        "value_at_risk_95": -np.expm1(_quantile(z, q, Z_TAIL)),
        "expected_shortfall_95": _shortfall(a, b, edges, TAIL, Z_TAIL),
    }
    cdf = _cdf(z, q, a, b, MOVE_LOG_RETURNS)  # [H, 2·moves]: the falls (ascending), then the rises
    for i, move in enumerate(MOVES):
        percent = round(move * 100)
        out[f"prob_rise_{percent}pct"] = 1.0 - cdf[:, len(MOVES) + i]
        out[f"prob_fall_{percent}pct"] = cdf[:, i]
    out["expected_range_low"] = last_close * np.exp(_quantile(z, q, -1.0))
    out["expected_range_high"] = last_close * np.exp(_quantile(z, q, 1.0))
    return out


def fan(horizons: Sequence[int], quantiles: np.ndarray, days: Sequence[int] | None = None) -> np.ndarray:
    """The quantiles [D, Q] for each day of ``days`` (default 1 … max(horizons)), for a fan chart between the served
    horizons.

    Why √h units: a random walk's quantiles grow like √h, so ``q(h) / √h`` is nearly constant across horizons and
    interpolating it linearly in ``h`` bends the fan the way uncertainty grows, where interpolating ``q`` itself
    would draw straight, too-wide lines between day 1 and day 7. Day 0 is 0 (today's close is known); before the
    first served horizon the first horizon's scaled quantiles hold. Exact at the served horizons, monotone in the
    level (rows are sorted first, and a positive blend of sorted rows is sorted). Days past the last served horizon
    are refused: that would be extrapolation, not interpolation.
    """
    h = np.asarray(horizons, dtype="float64")
    q = np.asarray(quantiles, dtype="float64")
    if h.ndim != 1 or len(h) < 1 or np.any(h <= 0) or np.any(np.diff(h) <= 0):
        raise ValueError(f"horizons must be increasing positive days, not {list(np.asarray(horizons).tolist())}")
    if q.ndim != 2 or q.shape[0] != len(h) or q.shape[1] < 1:
        raise ValueError(f"quantiles of shape {list(q.shape)}: expected [{len(h)}, Q] (one row per horizon)")
    if not np.isfinite(q).all():
        raise ValueError("quantiles hold NaN or infinite values")
    d = np.arange(1, int(h[-1]) + 1, dtype="float64") if days is None else np.asarray(days, dtype="float64")
    if d.ndim != 1 or np.any(d < 0) or np.any(d > h[-1]) or not np.isfinite(d).all():
        raise ValueError(f"days must lie in [0, {int(h[-1])}] (the last served horizon)")
    scaled = np.sort(q, axis=1) / np.sqrt(h)[:, None]
    per_day = np.stack([np.interp(d, h, scaled[:, j]) for j in range(q.shape[1])], axis=1)
    return per_day * np.sqrt(d)[:, None]
