"""Adaptive conformal inference (Gibbs & Candès 2021) on each tail's level: calibration kept live.

Why: a volatility model's intervals are right on average over years and wrong for months at a time (issue 28). ACI
moves the level each tail is served at after every closed day: for a lower tail with target τ and the miss
``err_t = 1[y_t < Q_t(α_t)]``, ``α_{t+1} = α_t + γ (τ − err_t)`` — a miss lowers the level (a wider tail), a day
inside raises it a little; for an upper tail with target τ the same on the upper miss rate 1 − τ
(``err_t = 1[y_t > Q_t(α_t)]``, ``α_{t+1} = α_t − γ ((1 − τ) − err_t)``). Gibbs & Candès show the long-run miss
rate then equals the target whatever the data do, to within (max(τ, 1 − τ) + γ) / (γ T). ``Q_t`` is the model's
served quantile function (``forecast.quantiles.quantile_at``: linear in the normal score, normal tails beyond).

The state is the adjusted level per tail, unclipped (the guarantee needs it); what is served is clipped to
(0.001, 0.5) below the median and (0.5, 0.999) above, so the median stays and the quantiles stay ordered; the served
quantiles keep their nominal level labels, with values taken at the adjusted levels. ``run_aci`` is the walk-forward
(day t is served with the levels learnt up to day t − 1; no look-ahead) and ``choose_gamma`` picks γ by the mean
pinball of the adjusted quantiles — on a calibration period before the window the result is reported on, or the
choice leaks the evaluation into the method.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy.special import ndtri

from bitpredict.evaluation.scores import pinball
from bitpredict.forecast.quantiles import LEVEL_BOUNDS, quantile_at

GAMMAS: tuple[float, ...] = (0.001, 0.005, 0.01, 0.02, 0.05)
DEFAULT_GAMMA = 0.01  # issue 28's measurement on 2020-01 → 2024-11 for EWMA and the four-baseline average


@dataclass(frozen=True)
class AciState:
    """The tails' target levels (every forecast level but the median), their adjusted levels, γ and the days seen."""

    targets: tuple[float, ...]
    levels: tuple[float, ...]
    gamma: float
    n_updates: int = 0

    @classmethod
    def start(cls, forecast_levels: Sequence[float], gamma: float = DEFAULT_GAMMA) -> AciState:
        """The state before any closed day: every tail at its nominal level."""
        if not 0.0 < gamma < 1.0:
            raise ValueError(f"γ must lie in (0, 1), not {gamma}")
        targets = tuple(float(t) for t in forecast_levels if not np.isclose(t, 0.5))
        return cls(targets, targets, float(gamma), 0)

    def served_levels(self) -> np.ndarray:
        """The levels the quantiles are served at: the state clipped to its side of the median."""
        lo, hi = LEVEL_BOUNDS
        return np.array(
            [
                np.clip(a, lo, 0.5) if t < 0.5 else np.clip(a, 0.5, hi)
                for t, a in zip(self.targets, self.levels, strict=True)
            ]
        )

    def to_json(self) -> str:
        return json.dumps(
            {
                "targets": list(self.targets),
                "levels": list(self.levels),
                "gamma": self.gamma,
                "n_updates": self.n_updates,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> AciState:
        data = json.loads(text)
        targets, levels = tuple(float(x) for x in data["targets"]), tuple(float(x) for x in data["levels"])
        if len(targets) != len(levels):
            raise ValueError("an ACI state needs one adjusted level per target")
        return cls(targets, levels, float(data["gamma"]), int(data["n_updates"]))


def _check(state: AciState, levels: Sequence[float]) -> list[int]:
    """The positions of the state's tails among the forecast's levels."""
    taus = np.asarray(levels, dtype="float64")
    positions = []
    for target in state.targets:
        found = np.flatnonzero(np.isclose(taus, target, rtol=0.0, atol=1e-9))
        if not len(found):
            raise ValueError(f"the ACI state's tail {target} is not among the forecast's levels {tuple(levels)}")
        positions.append(int(found[0]))
    return positions


def apply_levels(quantiles: np.ndarray, levels: Sequence[float], state: AciState) -> np.ndarray:
    """The served quantiles [n, L] (or [L]) with each tail's value taken at its adjusted level; labels unchanged,
    the median's value unchanged, sorted so they never cross."""
    positions = _check(state, levels)
    q = np.asarray(quantiles, dtype="float64")
    out = np.sort(np.atleast_2d(q).copy(), axis=1)
    out[:, positions] = quantile_at(levels, out, state.served_levels())
    out = np.sort(out, axis=1)
    return out[0] if q.ndim == 1 else out


def update(state: AciState, actual: float, quantiles: np.ndarray, levels: Sequence[float]) -> AciState:
    """One closed day: the outcome ``actual`` against that day's *model* quantiles [L] (before adjustment)."""
    if not np.isfinite(actual):
        raise ValueError("an ACI update needs the day's outcome (got NaN)")
    _check(state, levels)
    served = quantile_at(levels, np.asarray(quantiles, dtype="float64"), state.served_levels())
    new = []
    for target, level, value in zip(state.targets, state.levels, served, strict=True):
        if target < 0.5:
            new.append(level + state.gamma * (target - float(actual < value)))
        else:
            new.append(level - state.gamma * ((1.0 - target) - float(actual > value)))
    return replace(state, levels=tuple(new), n_updates=state.n_updates + 1)


def run_aci(
    actuals: np.ndarray,
    quantiles: np.ndarray,
    levels: Sequence[float],
    gamma: float = DEFAULT_GAMMA,
    state: AciState | None = None,
) -> tuple[np.ndarray, np.ndarray, AciState]:
    """The walk-forward: the served levels [n, tails] and adjusted quantiles [n, L] of every day, each from the state
    before that day's outcome, and the state after the last day (to persist). ``state`` continues an earlier run."""
    y = np.asarray(actuals, dtype="float64")
    q = np.asarray(quantiles, dtype="float64")
    if y.ndim != 1 or q.shape != (len(y), len(levels)):
        raise ValueError(f"actuals of shape {y.shape} and quantiles of shape {q.shape} for {len(levels)} levels")
    state = AciState.start(levels, gamma) if state is None else state
    positions = _check(state, levels)
    lo, hi = LEVEL_BOUNDS
    lower = np.array([t < 0.5 for t in state.targets])
    targets = np.asarray(state.targets)
    alpha = np.asarray(state.levels, dtype="float64")
    served = np.empty((len(y), len(targets)))
    sorted_q = np.sort(q, axis=1)
    # Sequential by nature: the same arithmetic as ``update`` and ``quantile_at``, inlined and vectorised over the
    # tails because a walk-forward calls it thousands of times.
    z_known = ndtri(np.asarray(levels, dtype="float64"))
    last = len(z_known) - 2
    for t in range(len(y)):
        served[t] = np.where(lower, np.clip(alpha, lo, 0.5), np.clip(alpha, 0.5, hi))
        z = ndtri(served[t])
        seg = np.clip(np.searchsorted(z_known, z, side="right") - 1, 0, last)
        left = sorted_q[t, seg]
        value = left + (sorted_q[t, seg + 1] - left) / (z_known[seg + 1] - z_known[seg]) * (z - z_known[seg])
        miss = np.where(lower, y[t] < value, y[t] > value)
        alpha = alpha + state.gamma * np.where(lower, targets - miss, miss - (1.0 - targets))
    adjusted = sorted_q.copy()
    adjusted[:, positions] = quantile_at(levels, sorted_q, served)
    final = replace(state, levels=tuple(float(a) for a in alpha), n_updates=state.n_updates + len(y))
    return served, np.sort(adjusted, axis=1), final


def choose_gamma(
    actuals: np.ndarray, quantiles: np.ndarray, levels: Sequence[float], grid: Sequence[float] = GAMMAS
) -> tuple[float, dict[float, float]]:
    """γ with the lowest mean pinball of the ACI-adjusted quantiles, and every candidate's score. Call it on a
    calibration period that ends before the evaluation window: chosen on the window itself, γ would be fitted to
    the days it is then judged on."""
    levels = [float(t) for t in levels]
    scored = {float(g): float(pinball(actuals, run_aci(actuals, quantiles, levels, g)[1], levels).mean()) for g in grid}
    return min(scored, key=scored.__getitem__), scored
