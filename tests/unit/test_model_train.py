"""network + dataset + train: attention shapes, scaling on training rows only, windows, export equality."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bitpredict.config import ModelSettings
from bitpredict.errors import InputError
from bitpredict.features.columns import TARGET
from bitpredict.features.indicators import MODEL_FEATURES
from bitpredict.forecast.dataset import Scaler, Split, model_input_columns, windows

TINY = {"window": 8, "lstm_units": [8], "dense_units": 4, "epochs": 2, "batch_size": 32, "validation_days": 30}


def _frame(n: int = 260, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    data = {c: rng.normal(size=n) for c in MODEL_FEATURES}
    data.update(is_imputed=0.0, is_outlier=0.0)
    data["ewma_vol"] = 0.01 + 0.02 * np.abs(rng.normal(size=n))  # a volatility: positive
    frame = pd.DataFrame(data)
    frame.insert(0, "timestamp", pd.date_range("2020-01-01", periods=n, freq="D", tz="UTC"))
    frame["close"] = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, n)))
    frame[TARGET] = 0.5 * frame["log_return_1"] * 0.02 + rng.normal(0, 0.02, n)
    return frame


@pytest.mark.parametrize("kind", ["additive", "dot"])
def test_attention_weights_are_a_distribution_over_the_window(kind: str) -> None:
    from bitpredict.forecast.network import TemporalAttention

    hidden = np.random.default_rng(1).normal(size=(5, 12, 16)).astype("float32")
    context, weights = TemporalAttention(units=8, kind=kind)(hidden)
    assert tuple(context.shape) == (5, 16) and tuple(weights.shape) == (5, 12)
    np.testing.assert_allclose(np.asarray(weights).sum(axis=1), 1.0, rtol=1e-5)
    expected = (hidden * np.asarray(weights)[..., None]).sum(axis=1)
    np.testing.assert_allclose(np.asarray(context), expected, rtol=1e-4, atol=1e-5)


def test_windows_take_the_w_rows_ending_at_each_index() -> None:
    values = np.arange(20, dtype="float32").reshape(10, 2)
    out = windows(values, 3, [2, 9])
    assert out.shape == (2, 3, 2)
    np.testing.assert_array_equal(out[0], values[0:3]) and np.testing.assert_array_equal(out[1], values[7:10])
    with pytest.raises(ValueError, match="window ends") as refused:
        windows(values, 3, [1])
    assert not isinstance(refused.value, InputError)  # a caller's bug, not the user's data


def test_model_columns_exclude_price_levels_and_name_what_is_missing() -> None:
    columns = model_input_columns([*MODEL_FEATURES, "is_imputed", "is_outlier", "close", "sma_7"], use_sentiment=False)
    assert "close" not in columns and "sma_7" not in columns and columns[: len(MODEL_FEATURES)] == list(MODEL_FEATURES)
    with pytest.raises(InputError, match="news_vader_mean"):
        model_input_columns(columns, use_sentiment=True)


def test_scaler_round_trips_and_keeps_constant_columns_finite() -> None:
    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [5.0, 5.0, 5.0]})
    scaler = Scaler.fit(frame, ["a", "b"])
    assert scaler.std[1] == 1.0 and np.isfinite(scaler.transform(frame)).all()
    assert Scaler.from_dict(json.loads(json.dumps(scaler.to_dict()))) == scaler
    with pytest.raises(InputError, match="non-finite"):
        Scaler.fit(frame.assign(a=[1.0, np.nan, 3.0]), ["a"])


def test_a_split_too_short_for_its_blocks_is_refused() -> None:
    with pytest.raises(InputError, match="too few"):
        Split.before(150, validation_days=100, window=30)


def test_the_scaler_sees_only_the_training_rows() -> None:
    """Rows in the validation block (and after ``end``) never influence the scaling."""
    from bitpredict.forecast.train import fit_recipe

    frame = _frame()
    config = ModelSettings(**TINY)
    columns = model_input_columns(frame.columns, use_sentiment=False)
    end = 220
    trained = fit_recipe(frame, columns, config, end=end)
    val_start = end - config.validation_days
    np.testing.assert_allclose(trained.scaler.mean, frame[columns].iloc[:val_start].mean().to_numpy())
    shifted = frame.copy()
    shifted.loc[val_start:, columns] += 100.0
    assert fit_recipe(shifted, columns, config, end=end).scaler == trained.scaler
    assert trained.train_span == ("2020-01-01", frame["timestamp"].iloc[val_start - 1].date().isoformat())
    assert 1 <= trained.best_epoch <= trained.epochs_run <= config.epochs


def test_an_untrained_volatility_scaled_network_is_the_riskmetrics_forecast() -> None:
    """Zero head kernel + volatility-scaled target: before training, quantiles = normal z × the day's EWMA vol."""
    from statistics import NormalDist

    from bitpredict.forecast.network import QUANTILES_OUTPUT, build_model
    from bitpredict.forecast.train import combined

    frame = _frame()
    columns = model_input_columns(frame.columns, use_sentiment=False)
    scaler = Scaler.fit(frame, columns)
    index = columns.index("ewma_vol")
    model = combined(
        [build_model(8, len(columns), lstm_units=[4], dense_units=4)], (index, scaler.mean[index], scaler.std[index])
    )
    ends = np.arange(10, 40)
    out = model.predict(windows(scaler.transform(frame), 8, ends), verbose=0)[QUANTILES_OUTPUT]
    z = np.array([NormalDist().inv_cdf(q) for q in (0.1, 0.5, 0.9)])
    expected = frame["ewma_vol"].to_numpy()[ends, None] * z[None, :]
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(("scaling", "ensemble"), [("volatility", 1), ("constant", 1), ("volatility", 2)])
def test_the_exported_saved_model_gives_the_in_memory_outputs(tmp_path: Path, scaling: str, ensemble: int) -> None:
    import tensorflow as tf

    from bitpredict.forecast.artifact import METADATA_FILE, SAVED_MODEL_DIR, read_metadata
    from bitpredict.forecast.network import ATTENTION_OUTPUT, HORIZON_QUANTILES_OUTPUT, INPUT_NAME, QUANTILES_OUTPUT
    from bitpredict.forecast.train import export, fit_recipe, metadata

    frame = _frame()
    config = ModelSettings(**TINY, target_scaling=scaling, ensemble=ensemble)
    columns = model_input_columns(frame.columns, use_sentiment=False)
    trained = fit_recipe(frame, columns, config, end=220)
    ends = np.arange(220, 259)
    quantiles, attention = trained.predict(frame, ends)
    assert (np.diff(quantiles, axis=1) >= 0).all()  # quantiles never cross
    assert np.abs(quantiles).max() < 1.0  # in log-return units, not the scaled target

    directory = export(trained, tmp_path / "model", metadata(trained, config))
    meta = read_metadata(directory)
    assert meta["feature_columns"] == columns and meta["window"] == 8 and meta["signature"] == "serving_default"
    assert meta["kind"] == "lstm" and meta["target_scaling"] == scaling
    assert (directory / METADATA_FILE).exists()

    loaded = tf.saved_model.load(str(directory / SAVED_MODEL_DIR))
    signature = loaded.signatures["serving_default"]
    spec = signature.structured_input_signature[1][INPUT_NAME]
    assert spec.shape.as_list() == [None, 8, len(columns)] and spec.dtype == tf.float32
    x = windows(Scaler.from_dict(meta["scaler"]).transform(frame), meta["window"], ends)
    out = signature(**{INPUT_NAME: tf.constant(x)})
    np.testing.assert_allclose(out[QUANTILES_OUTPUT].numpy(), quantiles, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(out[ATTENTION_OUTPUT].numpy(), attention, rtol=1e-5, atol=1e-7)
    # one head per horizon: [B, H, Q], the first horizon is the next-day output, spreads grow with h
    by_horizon = out[HORIZON_QUANTILES_OUTPUT].numpy()
    assert meta["horizons"] == [1, 7, 30] and meta["outputs"][HORIZON_QUANTILES_OUTPUT] == [None, 3, 7]
    assert by_horizon.shape == (len(ends), 3, 7)
    np.testing.assert_allclose(by_horizon[:, 0], quantiles, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(by_horizon, trained.predict_horizons(frame, ends)[0], rtol=1e-5, atol=1e-7)
    width = by_horizon[:, :, -1] - by_horizon[:, :, 0]
    assert (width[:, 2] > width[:, 0]).all()


def test_the_horizon_loss_counts_only_known_labels() -> None:
    """A row whose 30-day label lies past the refit (NaN) trains its other heads only: the loss is the mean pinball
    over the labels it has, and a NaN never reaches the gradient."""
    from bitpredict.forecast.network import pinball_loss

    levels = (0.1, 0.5, 0.9)
    loss = pinball_loss(levels)
    y_pred = np.array([[[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0]]], dtype="float32")  # [B=1, H=2, Q=3]
    y_true = np.array([[0.5, np.nan]], dtype="float32")
    error = 0.5 - y_pred[0, 0]
    by_hand = np.mean(np.maximum(np.array(levels) * error, (np.array(levels) - 1) * error))
    assert float(np.asarray(loss(y_true, y_pred))[0]) == pytest.approx(by_hand, rel=1e-6)
    both = np.array([[0.5, 3.0]], dtype="float32")
    error2 = 3.0 - y_pred[0, 1]
    second = np.mean(np.maximum(np.array(levels) * error2, (np.array(levels) - 1) * error2))
    assert float(np.asarray(loss(both, y_pred))[0]) == pytest.approx((by_hand + second) / 2, rel=1e-6)


def test_a_refit_never_learns_from_closes_after_it() -> None:
    """The h-day labels of the last rows before ``end`` reach past it: they are masked, so changing every close
    after ``end`` leaves the fitted network's forecasts unchanged."""
    from bitpredict.forecast.train import fit_recipe

    frame = _frame()
    config = ModelSettings(
        **{**TINY, "epochs": 1, "validation_days": 7}, target_scaling="volatility"
    )  # training rows near end
    columns = model_input_columns(frame.columns, use_sentiment=False)
    changed = frame.copy()
    changed.loc[201:, "close"] *= 3.0  # closes after row 200 (the refit at end=200 knows close[200])
    a = fit_recipe(frame, columns, config, end=200).predict_horizons(frame, np.arange(180, 200))[0]
    b = fit_recipe(changed, columns, config, end=200).predict_horizons(frame, np.arange(180, 200))[0]
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-8)


def test_days_without_a_label_are_history_never_labels_or_actuals() -> None:
    """Two targets left empty (next to a filled bar): training skips them as window ends, evaluation as actuals."""
    from bitpredict.evaluation.backtest import walk_forward
    from bitpredict.forecast.train import fit_recipe

    frame = _frame()
    frame.loc[[200, 201, 240], TARGET] = np.nan
    config = ModelSettings(**TINY, test_days=50, refit_every_days=25, baselines=["ewma"], combination=["ewma"],
                           use_sentiment=False)  # fmt: skip
    columns = model_input_columns(frame.columns, use_sentiment=False)
    trained = fit_recipe(frame, columns, config, end=230)  # row 200/201 inside training: skipped, no NaN loss
    assert np.isfinite(trained.history["loss"]).all() and np.isfinite(trained.history["val_loss"]).all()
    champion = config.model_copy(update={"window": 6})  # the registry's champion, another recipe
    backtest = walk_forward(
        frame.assign(sma_7=frame["close"]), columns, config, extra_networks={"champion_v3": champion}
    )
    assert len(backtest.predictions) == 49 and backtest.predictions["actual_return"].notna().all()
    assert sum(b["unlabelled_days"] for b in backtest.blocks) == 1 and len(backtest.attention) == 49
    assert backtest.probabilistic == ("lstm", "champion_v3", "ewma", "combo")  # a one-member combination
    assert backtest.predictions[["champion_v3_q10", "champion_v3_q50", "champion_v3_q90"]].notna().all().all()

    from bitpredict.evaluation.backtest import compute_metrics

    metrics = compute_metrics(backtest)
    assert metrics["best_baseline"] == "ewma"  # the champion's recipe is scored, never taken for a baseline
    assert metrics["methods"]["champion_v3"]["pinball_dm_vs_best"] == "ewma"
