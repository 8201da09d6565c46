"""A hand-made v2 response of the transformer, to the multi-horizon contract (issue 31), with internally consistent
numbers: every figure is computed from one normal distribution of the log return, N(drift·h, volatility²·h).

Used by the UI's unit tests (``parse_forecast``) and by its browser test's stub server on 127.0.0.1.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Any

import pandas as pd

LEVELS = (0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95)
Z = NormalDist()


def normal_figures(h: int, drift: float, volatility: float, close: float) -> dict[str, Any]:
    """What the contract serves for horizon ``h`` when log(close[t+h] / close[t]) ~ N(drift·h, volatility²·h)."""
    m, s = drift * h, volatility * math.sqrt(h)
    r = NormalDist(m, s)
    q05 = r.inv_cdf(0.05)
    # E[exp(r) | r <= q05] = exp(m + s²/2) Φ((q05 - m)/s - s) / 0.05: the long position's mean loss beyond its VaR
    tail_growth = math.exp(m + s * s / 2) * Z.cdf((q05 - m) / s - s) / 0.05
    return {
        "quantiles": [r.inv_cdf(p) for p in LEVELS],
        "close_quantiles": [close * math.exp(r.inv_cdf(p)) for p in LEVELS],
        "value_at_risk_95": 1 - math.exp(q05),
        "expected_shortfall_95": 1 - tail_growth,
        "prob_rise_5pct": 1 - r.cdf(math.log(1.05)),
        "prob_fall_5pct": r.cdf(math.log(0.95)),
        "prob_rise_10pct": 1 - r.cdf(math.log(1.10)),
        "prob_fall_10pct": r.cdf(math.log(0.90)),
        "expected_range_low": close * math.exp(r.inv_cdf(0.16)),
        "expected_range_high": close * math.exp(r.inv_cdf(0.84)),
    }


def v2_response(
    last_day: str,
    close: float,
    drift: float = 0.0005,
    volatility: float = 0.03,
    horizons: tuple[int, ...] = (1, 7, 30),
    with_horizons: bool = True,
    model_version: str = "combination-v3",  # what the transformer says: ModelSpec.label, kind-v<registry version>
) -> dict[str, Any]:
    """The transformer's v2 JSON answer for a request whose last bar is ``last_day`` closing at ``close``."""
    day = pd.Timestamp(last_day)
    each = [normal_figures(h, drift, volatility, close) for h in horizons]
    one = each[0]
    q = dict(zip(LEVELS, one["quantiles"], strict=True))

    def output(name: str, datatype: str, shape: list[int], data: list[Any]) -> dict[str, Any]:
        return {"name": name, "datatype": datatype, "shape": shape, "data": data}

    outputs = [
        output("predicted_log_return", "FP64", [1], [q[0.5]]),
        output("predicted_close", "FP64", [1], [close * math.exp(q[0.5])]),
        output("direction", "INT64", [1], [1 if q[0.5] > 0 else -1 if q[0.5] < 0 else 0]),
        output("lower", "FP64", [1], [close * math.exp(q[0.1])]),
        output("upper", "FP64", [1], [close * math.exp(q[0.9])]),
        output("as_of", "BYTES", [1], [str((day + pd.Timedelta(days=1)).date())]),
        output("model_version", "BYTES", [1], [model_version]),
        output("predicted_volatility", "FP64", [1], [volatility]),
        output("lower_90", "FP64", [1], [close * math.exp(q[0.05])]),
        output("upper_90", "FP64", [1], [close * math.exp(q[0.95])]),
    ]
    if with_horizons:
        n, k = len(horizons), len(LEVELS)
        outputs += [
            output("horizons", "INT64", [n], list(horizons)),
            output("horizon_as_of", "BYTES", [n], [str((day + pd.Timedelta(days=h)).date()) for h in horizons]),
            output("quantile_levels", "FP64", [k], list(LEVELS)),
            # [H, Q] flattened row-major: all levels of the first horizon, then the next horizon's
            output("horizon_quantiles", "FP64", [n, k], [v for f in each for v in f["quantiles"]]),
            output("horizon_close_quantiles", "FP64", [n, k], [v for f in each for v in f["close_quantiles"]]),
        ]
        for name in (
            "value_at_risk_95", "expected_shortfall_95", "prob_rise_5pct", "prob_fall_5pct", "prob_rise_10pct",
            "prob_fall_10pct", "expected_range_low", "expected_range_high",
        ):  # fmt: skip
            outputs.append(output(name, "FP64", [n], [f[name] for f in each]))
    return {
        "model_name": "bitpredict",
        "model_version": model_version,
        "id": "stub",
        "parameters": {"rows": 200, "sentiment": "none"},
        "outputs": outputs,
    }
