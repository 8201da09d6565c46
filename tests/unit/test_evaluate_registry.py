"""evaluate + registry: baselines use only the past, the DM test, metrics, the promotion policy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bitpredict.config import PromotionSettings
from bitpredict.dataset import TARGET
from bitpredict.evaluate import (
    METHODS,
    arima_forecast,
    compute_metrics,
    decide,
    diebold_mariano,
    drift_forecast,
    regression_forecast,
    sma_forecast,
    update_readme,
)
from bitpredict.registry import promotion_decision


def _frame(n: int = 400, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    returns = rng.normal(0.001, 0.03, n)
    close = 100 * np.exp(np.cumsum(returns))
    frame = pd.DataFrame({"close": close, "log_return_1": returns})
    frame["sma_7"] = frame["close"].rolling(7, min_periods=1).mean()
    frame[TARGET] = np.log(frame["close"].shift(-1) / frame["close"])
    return frame.iloc[:-1].reset_index(drop=True)


@settings(max_examples=10, deadline=None)
@given(scale=st.floats(min_value=0.2, max_value=5.0), offset=st.integers(min_value=0, max_value=39))
def test_baseline_forecasts_for_a_day_never_use_later_days(scale: float, offset: int) -> None:
    frame = _frame()
    start, end = 300, 340
    t = start + offset
    changed = frame.copy()
    changed.loc[t + 1 :, ["close", "sma_7"]] *= scale
    changed.loc[t + 1 :, ["log_return_1"]] *= scale
    changed.loc[t:, TARGET] *= scale  # the target of day t is day t+1's return: unknown on day t
    values = frame[["log_return_1"]].to_numpy()
    changed_values = changed[["log_return_1"]].to_numpy()
    for forecast in (drift_forecast, sma_forecast, arima_forecast):
        a, b = forecast(frame, start, end), forecast(changed, start, end)
        np.testing.assert_allclose(a[: offset + 1], b[: offset + 1], rtol=1e-9, err_msg=forecast.__name__)
    for kind in ("ridge", "gbm"):
        a = regression_forecast(kind, values, frame[TARGET].to_numpy(), start, end, seed=0)
        b = regression_forecast(kind, changed_values, changed[TARGET].to_numpy(), start, end, seed=0)
        np.testing.assert_allclose(a[: offset + 1], b[: offset + 1], rtol=1e-9, err_msg=kind)


def test_diebold_mariano_sign_and_significance() -> None:
    rng = np.random.default_rng(0)
    base = rng.normal(0, 1, 500)
    assert diebold_mariano(base, base) == (0.0, 0.5)
    stat, p = diebold_mariano(base * 0.5, base)  # half the error every day: clearly better
    assert stat > 5 and p < 1e-6
    stat, p = diebold_mariano(base * 2, base)
    assert stat < -5 and p > 1 - 1e-6
    noise = rng.normal(0, 1, 500)
    _, p = diebold_mariano(noise, base)  # the same distribution: no evidence either way
    assert 0.01 < p < 0.99


def _predictions(lstm_error: float) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    n = 200
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, n)))
    actual = rng.normal(0, 0.02, n)
    frame = pd.DataFrame({"timestamp": pd.date_range("2024-01-01", periods=n, tz="UTC"), "close": close})
    frame["actual_return"] = actual
    frame["actual_close"] = close * np.exp(actual)
    for method in METHODS:
        guess = 0.0 if method == "persistence" else actual * (1 - lstm_error if method == "lstm" else 0.1)
        frame[f"{method}_return"] = guess
        frame[f"{method}_close"] = close * np.exp(guess)
    frame["lstm_lower_close"] = frame["close"] * np.exp(frame["lstm_return"] - 0.03)
    frame["lstm_upper_close"] = frame["close"] * np.exp(frame["lstm_return"] + 0.03)
    return frame


def test_metrics_and_the_verdict_follow_the_errors() -> None:
    good = compute_metrics(_predictions(lstm_error=0.2), [0.1, 0.5, 0.9])
    m = good["methods"]
    assert m["persistence"]["skill"] == 0.0 and m["lstm"]["skill"] > 0.5 and m["lstm"]["dm_pvalue"] < 1e-6
    assert m["lstm"]["directional_accuracy"] == 1.0 and m["lstm"]["interval_coverage"] > 0.9
    assert good["majority_class_accuracy"] >= 0.5 and good["days"] == 200
    assert decide(good, PromotionSettings())["beats_baselines"]

    bad = compute_metrics(_predictions(lstm_error=1.5), [0.1, 0.5, 0.9])  # overshoots: worse than persistence
    verdict = decide(bad, PromotionSettings())
    assert bad["methods"]["lstm"]["skill"] < 0 and not verdict["beats_baselines"]
    assert "skill_vs_persistence" in verdict["reason"]


def _summary(beats: bool, mae: float, skill: float, window: str = "2024-01-01/2024-12-31") -> dict:
    return {"beats_baselines": beats, "verdict": "x", "mae": mae, "skill": skill, "eval_window": window}


def test_a_model_worse_than_persistence_is_never_champion() -> None:
    assert not promotion_decision(_summary(False, 900.0, -0.01), None).promote
    assert not promotion_decision(_summary(False, 1.0, -0.01), _summary(True, 1000.0, 0.01)).promote


def test_promotion_against_the_champion() -> None:
    champion = _summary(True, 1000.0, 0.01)
    assert promotion_decision(_summary(True, 1100.0, 0.02), None).promote
    assert promotion_decision(_summary(True, 990.0, 0.011), champion).promote
    decision = promotion_decision(_summary(True, 1010.0, 0.009), champion)
    assert not decision.promote and "same window" in decision.reason
    later = _summary(True, 5000.0, 0.02, window="2025-01-01/2025-12-31")  # other window: skill decides
    assert promotion_decision(later, champion).promote
    assert not promotion_decision({**later, "skill": 0.005}, champion).promote


def test_the_readme_table_goes_between_the_markers(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- results:start -->\nold\n<!-- results:end -->\nrest\n")
    update_readme(readme, "| new |\n")
    assert readme.read_text() == "intro\n<!-- results:start -->\n| new |\n<!-- results:end -->\nrest\n"
    readme.write_text("no markers")
    with pytest.raises(ValueError, match="markers"):
        update_readme(readme, "x")
