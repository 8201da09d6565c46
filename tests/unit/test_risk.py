"""Risk figures from a quantile forecast (issue 31): closed forms for a normal forecast (lognormal prices), hand
values, the CDF as the quantile function's inverse, the fan between horizons, and refused input."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, stats

from bitpredict.forecast import risk
from bitpredict.forecast.quantiles import LEVELS, quantile_at

Z = stats.norm.ppf(np.asarray(LEVELS))


def normal(mu: float, sigma: float) -> np.ndarray:
    return mu + sigma * Z


def test_value_at_risk_and_expected_shortfall_of_a_normal_forecast_are_the_lognormal_closed_forms() -> None:
    """r ~ N(μ, σ²): VaR = 1 − exp(μ + σ z₀.₀₅); ES = 1 − exp(μ + σ²/2) Φ(z₀.₀₅ − σ) / 0.05."""
    mus, sigmas = (0.0, 0.002, -0.01), (0.03, 0.03 * math.sqrt(7), 0.03 * math.sqrt(30))
    q = np.stack([normal(m, s) for m, s in zip(mus, sigmas, strict=True)])
    z05 = stats.norm.ppf(0.05)
    var = [1 - math.exp(m + s * z05) for m, s in zip(mus, sigmas, strict=True)]
    es = [1 - math.exp(m + s * s / 2) * stats.norm.cdf(z05 - s) / 0.05 for m, s in zip(mus, sigmas, strict=True)]
    np.testing.assert_allclose(risk.value_at_risk(LEVELS, q), var, rtol=1e-12)
    np.testing.assert_allclose(risk.expected_shortfall(LEVELS, q), es, rtol=1e-10)
    # by hand, σ = 0.03, μ = 0: VaR = 1 − e^(−0.0493456) = 0.048148; ES = 1 − e^(0.00045)·0.046981/0.05 = 0.059948
    assert risk.value_at_risk(LEVELS, q[:1])[0] == pytest.approx(0.048148, abs=1e-6)
    assert risk.expected_shortfall(LEVELS, q[:1])[0] == pytest.approx(0.059948, abs=1e-6)
    assert np.all(np.diff(risk.value_at_risk(LEVELS, q)) > 0)
    assert np.all(np.diff(risk.expected_shortfall(LEVELS, q)) > 0)


def test_move_probabilities_and_expected_range_of_a_normal_forecast() -> None:
    mu, sigma = 0.001, 0.05
    q = normal(mu, sigma)[None, :]
    for move in (0.05, 0.10):
        rise, fall = risk.move_probabilities(LEVELS, q, move)
        assert rise[0] == pytest.approx(stats.norm.sf((math.log(1 + move) - mu) / sigma), rel=1e-12)
        assert fall[0] == pytest.approx(stats.norm.cdf((math.log(1 - move) - mu) / sigma), rel=1e-12)
    # by hand: P(r > ln 1.05 = 0.04879) = 1 − Φ(0.95580) = 0.16958; P(r < ln 0.95 = −0.05129) = Φ(−1.04587) = 0.14781
    rise, fall = risk.move_probabilities(LEVELS, q, 0.05)
    assert rise[0] == pytest.approx(0.16958, abs=1e-5) and fall[0] == pytest.approx(0.14781, abs=1e-5)
    low, high = risk.expected_range(LEVELS, q)
    np.testing.assert_allclose([low[0], high[0]], [mu - sigma, mu + sigma], rtol=1e-12)
    figures = risk.risk_figures(LEVELS, q, 50_000.0)
    assert figures["expected_range_low"][0] == pytest.approx(50_000 * math.exp(mu - sigma), rel=1e-12)
    assert figures["expected_range_high"][0] == pytest.approx(50_000 * math.exp(mu + sigma), rel=1e-12)
    assert set(figures) == {
        "value_at_risk_95", "expected_shortfall_95", "prob_rise_5pct", "prob_fall_5pct", "prob_rise_10pct",
        "prob_fall_10pct", "expected_range_low", "expected_range_high",
    }  # fmt: skip


def test_cdf_inverts_the_quantile_function_of_a_skewed_forecast() -> None:
    q = np.array([[-0.09, -0.05, -0.02, 0.0, 0.01, 0.03, 0.05]])  # left-skewed, not a normal
    levels = np.array([0.002, 0.01, 0.03, 0.2, 0.35, 0.5, 0.65, 0.8, 0.97, 0.99, 0.998])
    values = quantile_at(LEVELS, q, levels)
    np.testing.assert_allclose(risk.cdf_at(LEVELS, q, values[0]), levels[None, :], rtol=1e-12)
    assert risk.cdf_at(LEVELS, q, -0.02)[0] == pytest.approx(0.25, abs=1e-15)  # a knot: its level
    # flat pieces: a point mass at 0 (q25 = q50 = q75 = 0)
    flat = np.array([[-0.02, -0.01, 0.0, 0.0, 0.0, 0.01, 0.02]])
    assert risk.cdf_at(LEVELS, flat, 0.0)[0] == pytest.approx(0.75)
    assert risk.cdf_at(LEVELS, flat, -1e-12)[0] < 0.25


def test_expected_shortfall_of_a_skewed_forecast_is_the_integral_of_its_quantile_function() -> None:
    """Checked against numerical quadrature of 1 − E[exp(q(u))] over u ∈ (0, 0.05), q from the segment lines."""
    q = np.array([[-0.12, -0.06, -0.02, 0.001, 0.02, 0.04, 0.06]])
    z = Z
    slope0 = (q[0, 1] - q[0, 0]) / (z[1] - z[0])

    def quantile(u: float) -> float:  # below 0.05: the outermost segment's line (the normal tail), unclipped
        return q[0, 0] + slope0 * (stats.norm.ppf(u) - z[0])

    value, _ = integrate.quad(lambda u: math.exp(quantile(u)), 0, 0.05, limit=200, epsabs=1e-13)
    assert risk.expected_shortfall(LEVELS, q)[0] == pytest.approx(1 - value / 0.05, rel=1e-9)
    # a tail at another level crosses a knot: check against quadrature of quantile_at inside the levels
    inner, _ = integrate.quad(lambda u: math.exp(quantile_at(LEVELS, q, u)[0]), 0.05, 0.2, limit=200)
    outer = value
    assert risk.expected_shortfall(LEVELS, q, tail=0.2)[0] == pytest.approx(1 - (inner + outer) / 0.2, rel=1e-8)


def test_the_fan_is_exact_at_the_served_horizons_and_a_random_walk_between_them() -> None:
    sigma = 0.03
    horizons = [1, 7, 30]
    q = np.stack([normal(0.0, sigma * math.sqrt(h)) for h in horizons])
    days = np.arange(0, 31)
    fan = risk.fan(horizons, q, days)
    assert fan.shape == (31, len(LEVELS))
    np.testing.assert_allclose(fan[horizons], q, rtol=1e-12)
    np.testing.assert_allclose(fan, np.sqrt(days)[:, None] * sigma * Z[None, :], rtol=1e-12, atol=1e-15)
    assert np.all(np.diff(fan, axis=1) >= 0)
    # by hand: horizons 1 and 3 with q/√h of 0.1 and 0.2; day 2 is √2 · 0.15
    two = risk.fan([1, 3], np.array([[0.1], [0.2 * math.sqrt(3)]]), [2])
    assert two[0, 0] == pytest.approx(math.sqrt(2) * 0.15, rel=1e-12)
    assert risk.fan(horizons, q).shape == (30, len(LEVELS))  # default: days 1 … 30


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: risk.value_at_risk(LEVELS, np.full((1, 7), np.nan)), "NaN"),
        (lambda: risk.expected_shortfall(LEVELS, np.zeros((2, 5))), r"shape \[2, 5\]: expected \[H, 7\]"),
        (lambda: risk.cdf_at(LEVELS, np.zeros(7), 0.0), r"shape \[7\]"),
        (lambda: risk.risk_figures((0.5, 0.1), np.zeros((1, 2)), 1.0), "increasing"),
        (lambda: risk.risk_figures(LEVELS, np.zeros((1, 7)), float("nan")), "positive price"),
        (lambda: risk.move_probabilities(LEVELS, np.zeros((1, 7)), 1.5), "move"),
        (lambda: risk.fan([1, 7], np.zeros((3, 7))), r"expected \[2, Q\]"),
        (lambda: risk.fan([7, 1], np.zeros((2, 7))), "increasing"),
        (lambda: risk.fan([1, 7], np.zeros((2, 7)), [8]), "last served horizon"),
        (lambda: risk.fan([1, 7], np.array([[0.0] * 7, [np.inf] * 7])), "infinite"),
    ],
)
def test_bad_input_is_a_value_error_that_says_what(call, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=message):
        call()
