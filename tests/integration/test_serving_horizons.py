"""Issue 31 through the real servers: the 1-, 7- and 30-day distributions and their risk figures in the v2 response.

The EWMA baseline exported as the pipeline exports it (RiskMetrics: ``σ·√h·z``) and the same forecast as a model
from before the horizon axis (``tests/fakes/horizon_model.py``), each behind the real predictor and transformer on
127.0.0.1: the per-horizon outputs have their declared shapes, horizon 1 is the 1-day forecast, the risk figures are
``bitpredict.forecast.risk`` of the served quantiles, they grow with the horizon, an old model is served as H = 1,
and the ACI calibration touches horizon 1 only.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from benchmarks.chaos.fuzz import serving_stack
from bitpredict.evaluation.calibration import AciState, apply_levels
from bitpredict.features.indicators import WARMUP, compute_indicators
from bitpredict.features.merge import build_features
from bitpredict.forecast import risk
from bitpredict.forecast.quantiles import LEVELS
from inference.client import predict_grpc, predict_rest
from tests.fakes.horizon_model import ewma_fit, export_version

HORIZONS = (1, 7, 30)
PER_HORIZON = (
    "value_at_risk_95", "expected_shortfall_95", "prob_rise_5pct", "prob_fall_5pct", "prob_rise_10pct",
    "prob_fall_10pct", "expected_range_low", "expected_range_high",
)  # fmt: skip
ONE_DAY = ("predicted_log_return", "predicted_close", "direction", "lower", "upper", "as_of", "model_version",
           "predicted_volatility", "lower_90", "upper_90")  # fmt: skip


@pytest.fixture(scope="module")
def stores(clean_daily: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    fit = ewma_fit(clean_daily)
    root = tmp_path_factory.mktemp("horizons")
    return {
        "new": export_version(fit, root / "new" / "bitpredict-lstm" / "5"),
        "old": export_version(fit, root / "old" / "bitpredict-lstm" / "4", old=True),
    }


@pytest.fixture(scope="module")
def bars(clean_daily: pd.DataFrame) -> pd.DataFrame:
    return clean_daily.tail(200).reset_index(drop=True)


@pytest.fixture(scope="module")
def sigma(clean_daily: pd.DataFrame) -> float:
    """The model's next-day σ for ``bars``: the last day's ``ewma_vol`` feature."""
    frame = build_features(compute_indicators(clean_daily), None, WARMUP)
    return float(frame["ewma_vol"].iloc[-1])


@pytest.fixture(scope="module")
def new_model(stores: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with serving_stack(stores["new"], tmp_path_factory.mktemp("new_logs")) as stack:
        yield stack


def test_every_horizon_is_served_with_its_risk_figures(new_model: Any, bars: pd.DataFrame, sigma: float) -> None:
    reply = httpx.post(f"{new_model.rest}/v2/models/bitpredict/infer", json=_body(bars), timeout=30)
    assert reply.status_code == 200, reply.text
    document = reply.json()
    shapes = {o["name"]: (o["shape"], o["datatype"]) for o in document["outputs"]}
    assert all(shapes[name] == ([1], shapes[name][1]) for name in ONE_DAY)  # the 1-day outputs as before
    h, q = len(HORIZONS), len(LEVELS)
    assert shapes["horizons"] == ([h], "INT64") and shapes["horizon_as_of"] == ([h], "BYTES")
    assert shapes["quantile_levels"] == ([q], "FP64")
    assert shapes["horizon_quantiles"] == ([h, q], "FP64") and shapes["horizon_close_quantiles"] == ([h, q], "FP64")
    assert all(shapes[name] == ([h], "FP64") for name in PER_HORIZON)
    out = predict_rest(new_model.rest, bars)
    assert out["horizons"] == list(HORIZONS) and out["horizon_as_of"] == ["2024-11-13", "2024-11-19", "2024-12-12"]
    assert out["quantile_levels"] == list(LEVELS)
    assert out["parameters"]["horizons"] == "1,7,30" and out["parameters"]["horizons_calibrated"] == "none"

    served = np.asarray(out["horizon_quantiles"])
    close = float(bars["close"].iloc[-1])
    # the model's forecast: σ·√h·z (FP32 through the predictor)
    z = np.asarray([math.sqrt(2) * _erfinv(2 * p - 1) for p in LEVELS])
    np.testing.assert_allclose(served, sigma * np.sqrt(HORIZONS)[:, None] * z[None, :], rtol=1e-5)
    # horizon 1 is the 1-day forecast, exactly
    assert out["predicted_log_return"] == served[0, LEVELS.index(0.5)]
    assert out["lower"] == pytest.approx(close * math.exp(served[0, LEVELS.index(0.1)]), rel=1e-14)
    assert out["upper_90"] == pytest.approx(close * math.exp(served[0, LEVELS.index(0.95)]), rel=1e-14)
    np.testing.assert_allclose(out["horizon_close_quantiles"], close * np.exp(served), rtol=1e-14)
    # the risk figures are bitpredict.forecast.risk of the served quantiles
    expected = risk.risk_figures(LEVELS, served, close)
    for name in PER_HORIZON:
        np.testing.assert_allclose(out[name], expected[name], rtol=1e-12, err_msg=name)
    # a random walk's risk grows with the horizon
    for name in ("value_at_risk_95", "expected_shortfall_95", "prob_fall_10pct", "prob_rise_10pct"):
        assert np.all(np.diff(out[name]) > 0), (name, out[name])
    assert np.all(np.asarray(out["expected_shortfall_95"]) > np.asarray(out["value_at_risk_95"]))
    assert np.all(np.diff(out["expected_range_low"]) < 0) and np.all(np.diff(out["expected_range_high"]) > 0)


def test_grpc_and_the_metadata_carry_the_horizon_axis(new_model: Any, bars: pd.DataFrame) -> None:
    rest, grpc = predict_rest(new_model.rest, bars), predict_grpc(new_model.grpc, bars)
    assert grpc["horizon_as_of"] == rest["horizon_as_of"] and grpc["horizons"] == rest["horizons"]
    np.testing.assert_allclose(grpc["horizon_quantiles"], rest["horizon_quantiles"], rtol=1e-15)
    np.testing.assert_allclose(grpc["expected_shortfall_95"], rest["expected_shortfall_95"], rtol=1e-15)
    meta = httpx.get(f"{new_model.rest}/v2/models/bitpredict", timeout=5).json()
    shapes = {o["name"]: o["shape"] for o in meta["outputs"]}
    assert shapes["horizon_quantiles"] == [3, len(LEVELS)] and shapes["value_at_risk_95"] == [3]
    assert shapes["predicted_close"] == [1]
    predictor = httpx.get(f"{new_model.predictor_rest}/v2/models/bitpredict", timeout=5).json()
    assert {o["name"]: o["shape"] for o in predictor["outputs"]}["horizon_quantiles"] == [-1, 3, len(LEVELS)]


def test_a_model_without_the_horizon_axis_is_served_as_one_horizon(
    stores: dict[str, Path], bars: pd.DataFrame, new_model: Any, tmp_path: Path
) -> None:
    with serving_stack(stores["old"], tmp_path) as stack:
        old = predict_rest(stack.rest, bars)
    new = predict_rest(new_model.rest, bars)
    assert old["horizons"] == [1] and old["horizon_as_of"] == ["2024-11-13"]
    assert np.shape(old["horizon_quantiles"]) == (1, len(LEVELS)) and np.shape(old["value_at_risk_95"]) == (1,)
    for name in ONE_DAY:  # the same model: the 1-day outputs do not depend on the horizon axis
        assert old[name] == (new[name] if name != "model_version" else "ewma-v4"), name
    np.testing.assert_allclose(old["horizon_quantiles"][0], new["horizon_quantiles"][0], rtol=1e-15)
    assert old["value_at_risk_95"][0] == pytest.approx(new["value_at_risk_95"][0], rel=1e-14)


def test_the_calibration_moves_horizon_one_only(stores: dict[str, Path], bars: pd.DataFrame, new_model: Any,
                                                 tmp_path: Path) -> None:  # fmt: skip
    state = AciState.start(LEVELS, 0.01)
    state = AciState(
        state.targets, tuple(t * 0.6 if t < 0.5 else 1 - (1 - t) * 0.6 for t in state.targets), state.gamma, 40
    )  # fmt: skip  (wider tails, as after too many misses)
    calibration = tmp_path / "aci.json"
    calibration.write_text(json.dumps({"model_version": "5", "aci": json.loads(state.to_json())}))
    nominal = predict_rest(new_model.rest, bars)
    with serving_stack(stores["new"], tmp_path / "logs", ["--calibration", str(calibration)]) as stack:
        adjusted = predict_rest(stack.rest, bars)
    assert adjusted["parameters"]["horizons_calibrated"] == "1"
    assert adjusted["parameters"]["levels_applied"].startswith("ACI:")
    served, plain = np.asarray(adjusted["horizon_quantiles"]), np.asarray(nominal["horizon_quantiles"])
    np.testing.assert_allclose(served[0], apply_levels(plain[:1], LEVELS, state)[0], rtol=1e-12)
    np.testing.assert_array_equal(served[1:], plain[1:])  # 7 and 30 days at their nominal levels
    close = float(bars["close"].iloc[-1])
    assert adjusted["lower"] == pytest.approx(close * math.exp(served[0, LEVELS.index(0.1)]), rel=1e-14)
    assert adjusted["value_at_risk_95"][0] > nominal["value_at_risk_95"][0]
    assert adjusted["value_at_risk_95"][1:] == nominal["value_at_risk_95"][1:]


def _body(bars: pd.DataFrame) -> dict:
    from inference.client import v2_request

    return v2_request(bars)


def _erfinv(x: float) -> float:
    from scipy.special import erfinv

    return float(erfinv(x))
