"""The horizon axis: h-day labels without look-ahead, each model's multi-step variance against hand-computed values,
the HAC lag rule and the per-horizon scores."""

from __future__ import annotations

import math
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd
import pytest

from bitpredict.evaluation import horizon_metrics, scores
from bitpredict.forecast import baselines, combination
from bitpredict.forecast.horizons import check_horizons, horizon_returns, labels_before

LEVELS = (0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95)
HORIZONS = (1, 7, 30)
WINDOW = 30


@pytest.fixture(scope="module")
def frame(daily_features: pd.DataFrame) -> pd.DataFrame:
    return daily_features


def _tensor(values: np.ndarray) -> Any:
    import tensorflow as tf

    return tf.constant(values, tf.float64)


# ------------------------------------------------------------------------------------------------ labels


def test_h_day_returns_are_log_close_ratios_and_skip_filled_ends() -> None:
    close = np.array([100.0, 110.0, 121.0, 121.0, 133.1, 146.41])
    imputed = np.array([0, 0, 0, 1, 0, 0], dtype=float)  # day 3 copies day 2's close
    frame = pd.DataFrame({"close": close, "is_imputed": imputed})
    out = horizon_returns(frame, (1, 2))
    expected_2 = [math.log(121 / 100), np.nan, math.log(133.1 / 121), np.nan, np.nan, np.nan]
    # row 1 → 3 ends on the filled bar, row 3 → 5 starts on it: both left empty; the last two have no close t+2
    np.testing.assert_allclose(out[:, 1], expected_2, rtol=1e-12)
    assert np.isnan(out[1, 1]) and np.isnan(out[3, 1])


def test_labels_before_hide_every_close_after_the_refit() -> None:
    returns = np.ones((10, 3))
    known = labels_before(returns, (1, 2, 5), end=6)
    # row t keeps horizon h only when t + h ≤ 6
    assert np.isfinite(known[5, 0]) and np.isnan(known[6, 0])
    assert np.isfinite(known[4, 1]) and np.isnan(known[5, 1])
    assert np.isfinite(known[1, 2]) and np.isnan(known[2, 2])


@pytest.mark.parametrize("bad", [(7,), (1, 1), (1, 30, 7), ()])
def test_horizons_must_start_at_one_and_increase(bad: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="start with 1"):
        check_horizons(bad)


# ------------------------------------------------------------------------------------------------ multi-step


def test_garch_multistep_matches_the_recursion_by_hand() -> None:
    omega, alpha, beta, sigma2 = 2e-6, 0.08, 0.9, 4e-4
    p = alpha + beta
    for h in (1, 2, 7, 30):
        expected, step = 0.0, sigma2  # E[σ²_{t+1}] = σ²_{t+1}; E[σ²_{t+k}] = ω + p E[σ²_{t+k-1}]
        for _ in range(h):
            expected += step
            step = omega + p * step
        a, b = baselines.garch_multistep(omega, p, h)
        assert a + b * sigma2 == pytest.approx(expected, rel=1e-12)
    a, b = baselines.garch_multistep(omega, 1.0, 3)  # integrated: 3σ² + ω(0 + 1 + 2)
    assert (a, b) == pytest.approx((3 * omega, 3.0))


def test_each_kind_s_h_day_scale_by_hand() -> None:
    rng = np.random.default_rng(0)
    returns = rng.normal(0, 0.03, (2, WINDOW))
    vol = np.full((2, WINDOW), 0.025)
    # ewma: σ √h
    ewma = baselines.BaselineFit("ewma", LEVELS, WINDOW, {}, horizons=HORIZONS)
    x = _tensor(vol[:, :, None])
    assert baselines.horizon_scale(ewma, x, 7).numpy() == pytest.approx(0.025 * math.sqrt(7))
    # empirical: the window's standard deviation √h
    empirical = baselines.BaselineFit("empirical", LEVELS, WINDOW, {}, horizons=HORIZONS)
    got = baselines.horizon_scale(empirical, _tensor(returns[:, :, None]), 30).numpy()
    np.testing.assert_allclose(got, returns.std(axis=1) * math.sqrt(30), rtol=1e-12)
    # garch: the filter over the window, then a_h + b_h σ²
    params = {"omega": 1e-6, "alpha": 0.1, "beta": 0.85, "persistence": 0.95}
    garch = baselines.BaselineFit("garch", LEVELS, WINDOW, params, horizons=HORIZONS)
    variance = vol[:, 0] ** 2
    for i in range(1, WINDOW):
        variance = 1e-6 + 0.1 * returns[:, i] ** 2 + 0.85 * variance
    total = np.zeros(2)
    step = variance
    for _ in range(7):
        total, step = total + step, 1e-6 + 0.95 * step
    got = baselines.horizon_scale(garch, _tensor(np.stack([returns, vol], axis=2)), 7).numpy()
    np.testing.assert_allclose(got, np.sqrt(total), rtol=1e-10)
    # har: √(h · exp(c0 + c1 x1 + c2 x7 + c30 x30)) with the horizon's own coefficients
    coef = [-7.0, 0.2, 0.3, 0.4]
    har = baselines.BaselineFit("har", LEVELS, WINDOW, {"horizon_coef": {"30": coef}}, horizons=HORIZONS)
    logs = np.full((1, WINDOW, 3), -8.0)
    got = baselines.horizon_scale(har, _tensor(logs), 30).numpy()
    assert got[0] == pytest.approx(math.sqrt(30 * math.exp(-7.0 + 0.9 * -8.0)))


def test_har_direct_regression_recovers_a_constant_variance(frame: pd.DataFrame) -> None:
    """Every day the same Garman–Klass variance c: the h-day variance is h·c whatever the regressors say."""
    flat = frame.copy()
    for column in baselines.COLUMNS["har"]:
        flat[column] = math.log(4e-4)
    coef = baselines._fit_har_horizons(flat, len(flat), HORIZONS)
    har = baselines.BaselineFit("har", LEVELS, WINDOW, {"horizon_coef": coef}, horizons=HORIZONS)
    got = baselines.horizon_scale(har, _tensor(np.full((1, WINDOW, 3), math.log(4e-4))), 7).numpy()
    assert got[0] == pytest.approx(math.sqrt(7 * 4e-4), rel=1e-6)


def test_ewma_h_day_quantiles_are_normal_times_sigma_root_h(frame: pd.DataFrame) -> None:
    start = len(frame) - 60
    fit = baselines.fit_baseline("ewma", frame, start, LEVELS, WINDOW, HORIZONS)
    quantiles, _ = baselines.predict_horizons(fit, frame, np.array([start]))
    sigma = frame["ewma_vol"].iloc[start]
    z = np.array([NormalDist().inv_cdf(q) for q in LEVELS])
    for j, h in enumerate(HORIZONS):
        np.testing.assert_allclose(quantiles[0, j], sigma * math.sqrt(h) * z, rtol=1e-5)


@pytest.mark.parametrize("kind", baselines.KINDS)
def test_every_kind_forecasts_every_horizon_without_look_ahead(frame: pd.DataFrame, kind: str) -> None:
    """Sorted quantiles centred on persistence, a spread growing with h, the 1-day row unchanged by the horizon
    axis, and nothing after the refit (closes included: the h-day labels) reaches the fit."""
    start = len(frame) - 100
    fit = baselines.fit_baseline(kind, frame, start, LEVELS, WINDOW, HORIZONS)
    quantiles, _ = baselines.predict_horizons(fit, frame, np.arange(start, start + 20))
    assert quantiles.shape == (20, 3, len(LEVELS)) and np.isfinite(quantiles).all()
    assert (np.diff(quantiles, axis=2) > 0).all()
    np.testing.assert_allclose(quantiles[:, :, 3], 0.0, atol=1e-12)
    width = quantiles[:, :, 5] - quantiles[:, :, 1]
    assert (width[:, 1] > width[:, 0]).all() and (width[:, 2] > width[:, 1]).all()
    one_day, _ = baselines.predict(baselines.fit_baseline(kind, frame, start, LEVELS, WINDOW), frame, [start])
    np.testing.assert_allclose(quantiles[0, 0], one_day[0], rtol=1e-6)

    changed = frame.copy()
    changed.loc[start + 1 :, ["close", "open", "high", "low"]] *= 2.0  # closes after the refit's last known one
    refit = baselines.fit_baseline(kind, changed, start, LEVELS, WINDOW, HORIZONS)
    assert refit.params == fit.params


def test_the_combination_averages_every_horizon(frame: pd.DataFrame) -> None:
    start = len(frame) - 40
    combo = combination.combine(("ewma", "garch"), frame, start, LEVELS, WINDOW, None, HORIZONS)
    got, _ = baselines.predict_horizons(combo, frame, np.array([start]))
    members = [np.sort(baselines.predict_horizons(m, frame, np.array([start]))[0], axis=2) for m in combo.members]
    np.testing.assert_allclose(got, np.mean(members, axis=0), rtol=1e-6)


def test_the_exported_model_serves_both_outputs(frame: pd.DataFrame, tmp_path: Path) -> None:
    import tensorflow as tf

    from bitpredict.forecast.artifact import HORIZON_QUANTILES_OUTPUT, QUANTILES_OUTPUT, SAVED_MODEL_DIR

    start = len(frame) - 30
    fit = baselines.fit_baseline("garch", frame, start, LEVELS, WINDOW, HORIZONS)
    serve = tf.saved_model.load(str(baselines.export(fit, tmp_path / "g") / SAVED_MODEL_DIR)).signatures[
        "serving_default"
    ]
    x = tf.constant(
        np.stack([frame[list(fit.columns)].to_numpy("float32")[start - WINDOW + 1 : start + 1]]), tf.float32
    )
    out = serve(features=x)
    assert out[HORIZON_QUANTILES_OUTPUT].shape == (1, 3, len(LEVELS))
    np.testing.assert_array_equal(out[QUANTILES_OUTPUT].numpy(), out[HORIZON_QUANTILES_OUTPUT].numpy()[:, 0])
    evaluated, _ = baselines.predict_horizons(fit, frame, np.array([start]))
    np.testing.assert_allclose(out[HORIZON_QUANTILES_OUTPUT].numpy()[0], evaluated[0], rtol=1e-5, atol=1e-9)


# ------------------------------------------------------------------------------------------------ scores


def test_the_dm_test_uses_at_least_h_minus_one_lags() -> None:
    """Overlapping 30-day errors: the HAC variance takes 29 lags, not Newey–West's 4 for 200 days."""
    rng = np.random.default_rng(3)
    shocks = rng.normal(0, 1, 230)
    d = np.convolve(shocks, np.ones(30), "valid")[:200] * 0.01 + 0.02  # an MA(29) loss differential
    base, model = np.full(200, 1.0), 1.0 - d
    stat, _ = scores.diebold_mariano(model, base, horizon=30)
    assert scores.newey_west_lags(200) < 29
    variance = scores.hac_variance(d, 29)
    by_hand = d.mean() / math.sqrt(variance / 200) * math.sqrt((200 + 1 - 60 + 30 * 29 / 200) / 200)
    assert stat == pytest.approx(by_hand, rel=1e-12)
    naive_stat, _ = scores.diebold_mariano(model, base, horizon=1)
    assert abs(naive_stat) > abs(stat)  # too few lags overstate the evidence of overlapping errors


def test_horizon_metrics_score_each_horizon_and_test_non_overlapping_misses() -> None:
    rng = np.random.default_rng(1)
    n, levels = 400, LEVELS
    z = np.array([NormalDist().inv_cdf(q) for q in levels])
    columns: dict[str, np.ndarray] = {"timestamp": pd.date_range("2023-01-01", periods=n, tz="UTC")}
    for h in (1, 7):
        suffix = "" if h == 1 else f"_h{h}"
        sigma = 0.03 * math.sqrt(h)
        columns[f"actual_return{suffix}"] = rng.normal(0, sigma, n)
        for name, scale in (("ewma", 2.0), ("combo", 1.0)):  # the naive is twice too wide
            for i, q in enumerate(levels):
                columns[f"{name}{suffix}_q{round(q * 100):02d}"] = np.full(n, scale * sigma * z[i])
    columns["actual_return_h7"][-6:] = np.nan  # not closed yet
    out = horizon_metrics.horizon_metrics(pd.DataFrame(columns), ["ewma", "combo"], levels, (1, 7))
    week = out["7"]
    assert week["days"] == n - 6
    combo = week["methods"]["combo"]
    assert combo["independent_days"] == len(range(0, n - 6, 7))
    assert 0.75 < combo["interval_80_coverage"] < 0.85
    assert combo["dm_lags"] >= 6 and combo["dm_vs_naive_p"] < 0.01 and combo["skill_vs_naive"] > 0
    assert week["methods"]["ewma"]["interval_80_coverage"] > 0.95
