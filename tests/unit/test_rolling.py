"""The rolling-origin report: per-year figures from the walk-forward's predictions, the tests, the seed spread."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import ndtri

from bitpredict.evaluation.backtest import quantile_column
from bitpredict.evaluation.rolling import markdown, span_figures

LEVELS = (0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95)


def _predictions(n: int = 730, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    sigma = np.exp(rng.normal(-3.5, 0.3, n))
    frame = pd.DataFrame({"timestamp": pd.date_range("2022-01-01", periods=n, tz="UTC"),
                          "actual_return": rng.normal(0, sigma)})  # fmt: skip
    for method, scale in (("right", 1.0), ("narrow", 0.6)):
        for level in LEVELS:
            frame[quantile_column(method, level)] = ndtri(level) * sigma * scale
    return frame


def test_span_figures_measure_coverage_and_kupiec_per_span() -> None:
    frame = _predictions()
    figures = span_figures(frame, ["right", "narrow"], LEVELS, None)
    assert figures["days"] == 730
    assert (
        0.76 < figures["right"]["interval_80"]["coverage"] < 0.84 and figures["right"]["interval_80"]["kupiec_p"] > 0.01
    )
    assert figures["narrow"]["interval_80"]["coverage"] < 0.65 and figures["narrow"]["interval_80"]["kupiec_p"] < 1e-6
    assert figures["right"]["pinball"] < figures["narrow"]["pinball"]
    # by hand: the share of days inside q10..q90
    inside = (frame["actual_return"] >= frame["right_q10"]) & (frame["actual_return"] <= frame["right_q90"])
    assert figures["right"]["interval_80"]["coverage"] == float(inside.mean())


def test_the_markdown_has_a_row_per_year_and_the_seed_spread() -> None:
    frame = _predictions()
    years = frame["timestamp"].dt.year.to_numpy()
    result = {
        "since": "2022-01-01", "until": "2023-12-31", "refit_every_days": 92, "aci_gamma": 0.01,
        "methods": ["right", "narrow"], "best_single": "right",
        "per_year": {int(y): span_figures(frame[years == y], ["right", "narrow"], LEVELS, None) for y in (2022, 2023)},
        "overall": span_figures(frame, ["right", "narrow"], LEVELS, None),
        "tests": {"narrow": {"best": {"p_value": 0.99}}}, "network_seeds": {"lstm": 0.007, "lstm_seed43": 0.0072},
        "network_spread": 0.0002,
    }  # fmt: skip
    text = markdown(result)
    assert "| 2022 | 365 |" in text and "| 2023 | 365 |" in text and "| narrow |" in text
    assert "spread 0.020 pp" in text and "0.990" in text
