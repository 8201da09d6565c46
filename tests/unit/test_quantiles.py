"""The quantile function between and beyond the forecast's levels: exact at the levels, exact for a normal, close for
a Student-t, monotone, and the shapes the callers rely on."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from bitpredict.forecast.quantiles import LEVELS, interval_levels, level_index, quantile_at


def normal_quantiles(mu: np.ndarray, sigma: np.ndarray, levels=LEVELS) -> np.ndarray:
    return mu[:, None] + sigma[:, None] * stats.norm.ppf(np.asarray(levels))[None, :]


def test_interval_levels_are_the_forecast_levels() -> None:
    assert interval_levels(0.8) == (0.1, 0.9)
    assert interval_levels(0.9) == (0.05, 0.95)
    assert interval_levels(0.5) == (0.25, 0.75)
    assert level_index(LEVELS, interval_levels(0.9)[0]) == 0
    with pytest.raises(ValueError, match="coverage"):
        interval_levels(1.0)
    with pytest.raises(ValueError, match="not among"):
        level_index(LEVELS, 0.2)


def test_exact_at_the_known_levels() -> None:
    rng = np.random.default_rng(1)
    q = np.sort(rng.normal(0, 0.03, (20, len(LEVELS))), axis=1)
    np.testing.assert_allclose(quantile_at(LEVELS, q, np.asarray(LEVELS)), q, rtol=0, atol=1e-15)
    np.testing.assert_allclose(quantile_at(LEVELS, q, 0.25), q[:, 2], rtol=0, atol=1e-15)


def test_a_normal_forecast_is_reproduced_between_and_beyond_the_levels() -> None:
    mu, sigma = np.array([0.0, 0.001, -0.002]), np.array([0.01, 0.03, 0.05])
    q = normal_quantiles(mu, sigma)
    new = np.array([0.001, 0.01, 0.02, 0.07, 0.15, 0.4, 0.6, 0.83, 0.97, 0.99, 0.999])
    expected = normal_quantiles(mu, sigma, new)
    np.testing.assert_allclose(quantile_at(LEVELS, q, new), expected, rtol=1e-2)
    # linear in the normal score is exact for a normal, in the tails as well
    np.testing.assert_allclose(quantile_at(LEVELS, q, new), expected, rtol=1e-9, atol=1e-15)


def test_a_student_t_forecast_is_close_between_the_levels() -> None:
    """A heavier tail is not a line in the normal score: between the levels the error stays small (< 3 % of the
    value here for ν = 4), which is why interpolating in the normal score, not in the level, is the choice."""
    t = stats.t(df=4)
    q = t.ppf(np.asarray(LEVELS))[None, :]
    new = np.array([0.07, 0.15, 0.2, 0.3, 0.4, 0.6, 0.8, 0.85, 0.93])
    got = quantile_at(LEVELS, q, new)[0]
    np.testing.assert_allclose(got, t.ppf(new), rtol=3e-2)
    # interpolating linearly in the level would be worse at every one of these points
    in_level = np.interp(new, LEVELS, q[0])
    assert np.all(np.abs(got - t.ppf(new)) <= np.abs(in_level - t.ppf(new)) + 1e-12)


def test_monotone_in_the_level_even_from_crossing_quantiles() -> None:
    rng = np.random.default_rng(2)
    q = rng.normal(0, 0.02, (50, len(LEVELS)))  # unsorted: crossing quantiles are rearranged first
    grid = np.linspace(0.0, 1.0, 401)  # 0 and 1 are clipped to 0.001 and 0.999
    out = quantile_at(LEVELS, q, grid)
    assert np.all(np.diff(out, axis=1) >= -1e-15)
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out[:, 0], quantile_at(LEVELS, q, 0.001))


def test_shapes() -> None:
    q = normal_quantiles(np.zeros(4), np.full(4, 0.02))
    assert quantile_at(LEVELS, q, 0.3).shape == (4,)
    assert quantile_at(LEVELS, q, [0.3, 0.7]).shape == (4, 2)
    per_row = np.array([[0.1, 0.9], [0.08, 0.92], [0.05, 0.95], [0.2, 0.8]])
    out = quantile_at(LEVELS, q, per_row)
    assert out.shape == (4, 2)
    np.testing.assert_allclose(out[2], q[2, [0, -1]])
    assert quantile_at(LEVELS, q[0], 0.3).shape == ()
    assert quantile_at(LEVELS, q[0], [0.3, 0.7]).shape == (2,)
    assert quantile_at(LEVELS, q[0], per_row).shape == (4, 2)
    with pytest.raises(ValueError, match="levels"):
        quantile_at(LEVELS, q[:, :3], 0.3)
    with pytest.raises(ValueError, match="forecasts"):
        quantile_at(LEVELS, q, per_row[:3])
    with pytest.raises(ValueError, match="increasing"):
        quantile_at((0.5, 0.1), q[:, :2], 0.3)
