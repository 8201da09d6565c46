"""Scoring rules and the HAC Diebold–Mariano test against hand-computed values and a reference library."""

from __future__ import annotations

import numpy as np
import pytest

from bitpredict.evaluation import scores

LEVELS = (0.1, 0.5, 0.9)


def test_pinball_matches_the_hand_computed_losses() -> None:
    # y = 0.1: errors 1.1, 0.1, -0.9 → 0.1·1.1, 0.5·0.1, (0.9 − 1)·(−0.9)
    loss = scores.pinball(np.array([0.1]), np.array([[-1.0, 0.0, 1.0]]), LEVELS)
    np.testing.assert_allclose(loss, [[0.11, 0.05, 0.09]])
    with pytest.raises(ValueError, match="shape"):
        scores.pinball(np.array([0.1, 0.2]), np.array([[-1.0, 0.0, 1.0]]), LEVELS)


def test_crps_is_the_implied_distributions_not_twice_the_pinball_of_the_levels() -> None:
    import scoringrules
    from scipy import stats

    rng = np.random.default_rng(0)
    actual = rng.normal(0, 1, 400)
    levels = (0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95)
    sigma = rng.uniform(0.5, 2.0, 400)
    quantiles = stats.norm.ppf(levels)[None, :] * sigma[:, None]
    exact = scoringrules.crps_normal(actual, 0.0, sigma)
    np.testing.assert_allclose(scores.crps(actual, quantiles, levels).mean(), exact.mean(), rtol=0.01)
    coarse = 2 * scores.pinball(actual, quantiles, levels).mean(axis=1)
    assert abs(coarse.mean() / exact.mean() - 1) > 0.05  # what the dense grid fixes: the levels alone are biased


def test_volatility_scores_by_hand() -> None:
    proxy, forecast = np.array([1.0, 4.0]), np.array([2.0, 2.0])
    # QLIKE: r − ln r − 1 with r = 0.5 and 2
    np.testing.assert_allclose(scores.qlike(proxy, forecast), [0.5 - np.log(0.5) - 1, 2 - np.log(2) - 1])
    assert scores.log_variance_mse(proxy, forecast) == pytest.approx(np.log(2) ** 2)
    rng = np.random.default_rng(1)
    truth = np.exp(rng.normal(0, 1, 500))
    assert scores.mincer_zarnowitz_r2(truth * 3.0, truth) == pytest.approx(1.0)  # a constant scale is free
    assert scores.mincer_zarnowitz_r2(truth, np.exp(rng.normal(0, 1, 500))) < 0.05


def test_hac_variance_by_hand_and_against_statsmodels() -> None:
    # centred [-1.5, -0.5, 0.5, 1.5]: γ0 = 1.25, γ1 = 0.3125; Bartlett L=1: 1.25 + 2·(1/2)·0.3125
    assert scores.hac_variance(np.array([1.0, 2.0, 3.0, 4.0]), lags=1) == pytest.approx(1.5625)
    assert scores.hac_variance(np.array([1.0, 2.0, 3.0, 4.0]), lags=0) == pytest.approx(1.25)

    import statsmodels.api as sm

    rng = np.random.default_rng(7)
    noise = rng.normal(0, 1, 365)
    series = np.empty(365)
    series[0] = noise[0]
    for t in range(1, 365):  # AR(1), φ = 0.6: strongly autocorrelated like a loss differential
        series[t] = 0.6 * series[t - 1] + noise[t]
    lags = scores.newey_west_lags(len(series))
    fit = sm.OLS(series, np.ones(len(series))).fit(cov_type="HAC", cov_kwds={"maxlags": lags, "use_correction": False})
    assert scores.hac_variance(series, lags) / len(series) == pytest.approx(fit.bse[0] ** 2, rel=1e-9)


def test_dm_on_an_autocorrelated_differential_is_smaller_with_hac() -> None:
    rng = np.random.default_rng(11)
    shock = rng.normal(0, 1, 400)
    d = np.empty(400)
    d[0] = shock[0]
    for t in range(1, 400):
        d[t] = 0.6 * d[t - 1] + shock[t]
    d += 0.15  # a small true edge
    base = np.abs(rng.normal(0, 1, 400)) + 5
    hac_stat, _ = scores.diebold_mariano(base - d, base)
    plain_stat, _ = scores.diebold_mariano(base - d, base, lags=0)
    assert 0 < hac_stat < plain_stat / 1.4  # the plain variance overstates |DM| on autocorrelated losses


def test_dm_sign_and_significance() -> None:
    rng = np.random.default_rng(0)
    base = np.abs(rng.normal(0, 1, 500))
    assert scores.diebold_mariano(base, base) == (0.0, 0.5)
    stat, p = scores.diebold_mariano(base * 0.5, base)  # half the loss every day: clearly better
    assert stat > 5 and p < 1e-6
    stat, p = scores.diebold_mariano(base * 2, base)
    assert stat < -5 and p > 1 - 1e-6
    _, p = scores.diebold_mariano(np.abs(rng.normal(0, 1, 500)), base)  # same distribution: no evidence
    assert 0.01 < p < 0.99
    with pytest.raises(ValueError, match="too few"):
        scores.diebold_mariano(base[:2], base[:2])


def test_direction_leaves_zero_return_days_out() -> None:
    actual = np.array([0.01, -0.02, 0.0, 0.0, 0.03])
    predicted = np.array([0.001, 0.002, 0.0, 0.0, 0.004])
    accuracy, zero_days = scores.direction_accuracy(actual, predicted)
    assert zero_days == 2 and accuracy == pytest.approx(2 / 3)
    # a forecast of zero makes no call: persistence has no direction accuracy, and earns nothing for flat days
    accuracy, zero_days = scores.direction_accuracy(actual, np.zeros(5))
    assert np.isnan(accuracy) and zero_days == 2


def test_coverage_counts_outcomes_at_or_below_each_quantile() -> None:
    actual = np.array([-1.0, 0.0, 1.0, 2.0])
    quantiles = np.tile([[-0.5, 0.0, 1.5]], (4, 1))
    np.testing.assert_allclose(scores.coverage(actual, quantiles), [0.25, 0.5, 0.75])
