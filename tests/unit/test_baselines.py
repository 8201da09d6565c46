"""The probabilistic baselines: fitted on the past only, exported with the network's contract, served unchanged."""

from __future__ import annotations

import json
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pandas as pd
import pytest

from bitpredict.config import ModelSettings
from bitpredict.features.columns import TARGET
from bitpredict.forecast import baselines
from bitpredict.forecast.artifact import METADATA_FILE, SAVED_MODEL_DIR
from bitpredict.forecast.serving import ModelSpec, feature_window
from bitpredict.forecast.train import baseline_metadata

LEVELS = (0.1, 0.5, 0.9)
WINDOW = 30


@pytest.fixture(scope="module")
def frame(daily_features: pd.DataFrame) -> pd.DataFrame:
    return daily_features


@pytest.mark.parametrize("kind", baselines.KINDS)
def test_each_baseline_gives_sorted_quantiles_centred_on_persistence(frame: pd.DataFrame, kind: str) -> None:
    start = len(frame) - 100
    fit = baselines.fit_baseline(kind, frame, start, LEVELS, WINDOW)
    quantiles, attention = baselines.predict(fit, frame, np.arange(start, start + 50))
    assert quantiles.shape == (50, 3) and attention.shape == (50, WINDOW)
    assert np.isfinite(quantiles).all() and (np.diff(quantiles, axis=1) > 0).all()
    np.testing.assert_allclose(quantiles[:, 1], 0.0, atol=1e-12)  # the median is "tomorrow = today"
    assert 0.005 < np.median(quantiles[:, 2]) < 0.1  # a daily BTC spread, not a unit error
    np.testing.assert_allclose(attention.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("kind", baselines.KINDS)
def test_a_forecast_never_uses_later_days(frame: pd.DataFrame, kind: str) -> None:
    start = len(frame) - 100
    t = start + 20
    fit = baselines.fit_baseline(kind, frame, start, LEVELS, WINDOW)
    changed = frame.copy()
    numeric = changed.select_dtypes("number").columns
    changed.loc[t + 1 :, numeric] *= 3.0
    changed.loc[: start - 1, TARGET] = frame.loc[: start - 1, TARGET]
    refit = baselines.fit_baseline(kind, changed, start, LEVELS, WINDOW)
    assert refit.params == fit.params  # the fit saw rows before the block only
    a, _ = baselines.predict(fit, frame, np.array([t]))
    b, _ = baselines.predict(refit, changed, np.array([t]))
    np.testing.assert_allclose(a, b, rtol=1e-12)


def test_ewma_and_garch_follow_their_formulas(frame: pd.DataFrame) -> None:
    start = len(frame) - 10
    ewma = baselines.fit_baseline("ewma", frame, start, LEVELS, WINDOW)
    quantiles, _ = baselines.predict(ewma, frame, np.array([start]))
    z = np.array([NormalDist().inv_cdf(q) for q in LEVELS])
    np.testing.assert_allclose(quantiles[0], z * frame["ewma_vol"].iloc[start], rtol=1e-6)

    garch = baselines.fit_baseline("garch", frame, start, LEVELS, WINDOW)
    p = garch.params
    assert 0 < p["alpha"] < 1 and 0 < p["beta"] < 1 and p["nu"] > 2
    returns = frame["log_return_1"].to_numpy()[start - WINDOW + 1 : start + 1]
    variance = frame["ewma_vol"].iloc[start - WINDOW + 1] ** 2
    for r in returns[1:]:
        variance = p["omega"] + p["alpha"] * r**2 + p["beta"] * variance
    # filtered historical simulation: the fit's standardised residuals r_t / σ_t (σ_t by the GARCH recursion
    # from the fitted parameters, in arch's percent units), their empirical quantiles centred on the median
    from arch import arch_model

    history = frame["log_return_1"].to_numpy()[max(0, start - baselines.GARCH_HISTORY) : start]
    history = history[np.isfinite(history)] * 100
    fitted = arch_model(history, mean="Zero", vol="GARCH", p=1, q=1, dist="t").fit(disp="off")
    sigma2 = np.empty(len(history))
    sigma2[0] = fitted.conditional_volatility[0] ** 2  # arch's backcast start
    omega, alpha, beta = fitted.params["omega"], fitted.params["alpha[1]"], fitted.params["beta[1]"]
    for i in range(1, len(history)):
        sigma2[i] = omega + alpha * history[i - 1] ** 2 + beta * sigma2[i - 1]
    z = history / np.sqrt(sigma2)
    spread = np.quantile(z, LEVELS) - np.quantile(z, 0.5)
    np.testing.assert_allclose(p["z_quantiles"], spread, rtol=1e-4, atol=1e-6)
    assert p["persistence"] == pytest.approx(p["alpha"] + p["beta"])
    quantiles, _ = baselines.predict(garch, frame, np.array([start]))
    np.testing.assert_allclose(quantiles[0], np.sqrt(variance) * spread, rtol=1e-4, atol=1e-9)


def test_garch_fhs_covers_fat_tails_where_the_fit_sits_on_its_bounds() -> None:
    """Returns with t(3) shocks and GARCH dynamics: the FHS 80 % band covers close to 80 % out of sample."""
    rng = np.random.default_rng(4)
    n = 2600
    shocks = rng.standard_t(3, n) / np.sqrt(3.0)
    returns, variance = np.empty(n), 0.03**2
    for i in range(n):
        returns[i] = np.sqrt(variance) * shocks[i]
        variance = 2e-5 + 0.1 * returns[i] ** 2 + 0.88 * variance
    ewma = np.sqrt(pd.Series(returns**2).ewm(alpha=0.06).mean().to_numpy())
    frame = pd.DataFrame(
        {"timestamp": pd.date_range("2015-01-01", periods=n, tz="UTC"), "log_return_1": returns, "ewma_vol": ewma}
    )
    levels = (0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95)
    fit = baselines.fit_baseline("garch", frame, 2000, levels, WINDOW)
    quantiles, _ = baselines.predict(fit, frame, np.arange(2000, n - 1))
    actual = returns[2001:n]
    inside = (actual >= quantiles[:, 1]) & (actual <= quantiles[:, 5])
    assert 0.76 <= inside.mean() <= 0.84


def test_unknown_baseline_is_refused(frame: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="unknown baseline"):
        baselines.fit_baseline("prophet", frame, 500, LEVELS, WINDOW)


@pytest.mark.parametrize("kind", baselines.KINDS)
def test_the_export_is_served_through_the_transformer_code_as_evaluated(
    frame: pd.DataFrame, clean_daily: pd.DataFrame, tmp_path: Path, kind: str
) -> None:
    """SavedModel + metadata → the transformer's ModelSpec and feature code on a 200-bar request → the
    same quantiles the walk-forward evaluation scored for that day."""
    import tensorflow as tf

    start = len(frame) - 30
    fit = baselines.fit_baseline(kind, frame, start, LEVELS, WINDOW)
    directory = baselines.export(fit, tmp_path / kind)
    meta = baseline_metadata(fit, ModelSettings(window=WINDOW))
    (directory / METADATA_FILE).write_text(json.dumps(meta))
    spec = ModelSpec.from_metadata(json.loads((directory / METADATA_FILE).read_text()), "4")
    assert spec.kind == kind and spec.label == f"{kind}-v4"

    loaded = tf.saved_model.load(str(directory / SAVED_MODEL_DIR))
    serve = loaded.signatures["serving_default"]
    for t in (start, start + 7, len(frame) - 1):
        day = frame["timestamp"].iloc[t]
        bars = clean_daily[clean_daily["timestamp"] <= day].tail(200)
        window = feature_window(bars[["timestamp", "open", "high", "low", "close", "volume"]], spec)
        served = serve(features=tf.constant(window))["quantiles"].numpy()[0]
        evaluated, _ = baselines.predict(fit, frame, np.array([t]))
        np.testing.assert_allclose(served, evaluated[0], rtol=1e-5, atol=1e-9, err_msg=f"{kind} on {day.date()}")
