"""The train stage: fit the LSTM-with-attention recipe, export a SavedModel + metadata, track it in MLflow.

The recipe (``fit_recipe``) is what evaluation backtests block by block and what this stage applies to all
labelled rows: scale on the training rows only, windows of W days, the target (next-day log return)
divided by its training spread so the loss is O(1), early stopping on the validation block that follows
the training rows in time, best weights restored. The exported model multiplies the spread back in, so
it outputs log-return quantiles directly.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bitpredict import storage
from bitpredict.config import ModelSettings, Settings
from bitpredict.errors import InputError
from bitpredict.features.columns import TARGET
from bitpredict.features.indicators import WARMUP
from bitpredict.features.merge import code_version, labelled
from bitpredict.forecast.artifact import (
    ATTENTION_OUTPUT,
    FORMAT_VERSION,
    HORIZON_QUANTILES_OUTPUT,
    INPUT_NAME,
    QUANTILES_OUTPUT,
    REFERENCE_FILE,
    SAVED_MODEL_DIR,
    SIGNATURE,
    write_metadata,
)
from bitpredict.forecast.dataset import Scaler, Split, label_rows, model_input_columns, windows
from bitpredict.forecast.horizons import horizon_returns, labels_before
from bitpredict.pipeline import tracking
from bitpredict.pipeline.stage_table import CANDIDATE, FEATURES, data_path

log = logging.getLogger(__name__)

MODEL_KIND = "lstm"
BASELINES_DIR = "baselines"  # <candidate>/baselines/<kind>/: each baseline exported with the same contract

EpochHook = Callable[[int, dict[str, float]], None]


@dataclass
class TrainedModel:
    """A fitted model with everything needed to turn feature rows into forecasts."""

    model: Any  # keras.Model whose outputs are already in log-return units
    scaler: Scaler
    window: int
    quantiles: tuple[float, ...]
    target_scale: float
    train_span: tuple[str, str]
    validation_span: tuple[str, str]
    epochs_run: int
    best_epoch: int
    history: dict[str, list[float]] = field(default_factory=dict)
    horizons: tuple[int, ...] = (1,)

    def predict_horizons(self, frame: pd.DataFrame, ends: np.ndarray | list[int]) -> tuple[np.ndarray, np.ndarray]:
        """Quantiles [N, H, Q] of the h-day log returns and attention [N, W] for windows ending at ``ends``."""
        x = windows(self.scaler.transform(frame), self.window, ends)
        out = self.model.predict(x, batch_size=512, verbose=0)
        return (
            np.asarray(out[HORIZON_QUANTILES_OUTPUT], dtype="float64"),
            np.asarray(out[ATTENTION_OUTPUT], dtype="float64"),
        )

    def predict(self, frame: pd.DataFrame, ends: np.ndarray | list[int]) -> tuple[np.ndarray, np.ndarray]:
        """Quantiles [N, Q] of the next-day log return and attention [N, W] for windows ending at ``ends``."""
        quantiles, attention = self.predict_horizons(frame, ends)
        return quantiles[:, 0, :], attention


class _EpochCallback:
    """Keras callback (built lazily: keras is imported only when training) that reports every epoch."""

    @staticmethod
    def create(total: int, hook: EpochHook | None) -> Any:
        import keras

        class EpochReport(keras.callbacks.Callback):
            def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
                values = {k: float(v) for k, v in (logs or {}).items() if k in ("loss", "val_loss")}
                log.info(
                    "epoch", extra={"epoch": f"{epoch + 1}/{total}", **{k: round(v, 5) for k, v in values.items()}}
                )
                if hook is not None:
                    hook(epoch, values)

        return EpochReport()


def _span(frame: pd.DataFrame, start: int, end: int) -> tuple[str, str]:
    return frame["timestamp"].iloc[start].date().isoformat(), frame["timestamp"].iloc[end - 1].date().isoformat()


VOLATILITY_COLUMN = "ewma_vol"


def target_scales(frame: pd.DataFrame, config: ModelSettings, train_end: int) -> np.ndarray:
    """The divisor of each row's target: the day's EWMA volatility, or one constant (the training spread)."""
    target = frame[TARGET].to_numpy(dtype="float64")
    if config.target_scaling == "volatility":
        if VOLATILITY_COLUMN not in frame.columns:
            raise InputError(f"target_scaling=volatility needs the {VOLATILITY_COLUMN!r} column: rerun the features")
        return np.maximum(frame[VOLATILITY_COLUMN].to_numpy(dtype="float64"), 1e-6)
    return np.full(len(frame), float(np.nanstd(target[:train_end])) or 1.0)


def fit_recipe(
    frame: pd.DataFrame,
    columns: list[str],
    config: ModelSettings,
    end: int,
    on_epoch: EpochHook | None = None,
) -> TrainedModel:
    """Fit on the labelled rows ``[0, end)`` of ``frame``: the last ``validation_days`` of them validate.

    With ``config.ensemble`` > 1 the recipe is fitted once per seed and the exported model averages the
    members' quantiles (and attention), which smooths the seed-to-seed noise of small-data LSTMs.
    """
    split = Split.before(end, config.validation_days, config.window)
    scaler = Scaler.fit(frame.iloc[: split.val_start], columns)
    values = scaler.transform(frame.iloc[:end])
    horizons = tuple(config.horizons)
    # [rows, H]: the h-day labels known before ``end`` (a validation row near it has its next-day label only),
    # divided by σ·√h so every head's target is O(1).
    scales = target_scales(frame, config, split.val_start)[:, None] * np.sqrt(np.asarray(horizons, "float64"))[None]
    target = labels_before(horizon_returns(frame, horizons), horizons, end) / scales
    train_ends = label_rows(frame, config.window - 1, split.val_start)  # a day without a label is history only
    val_ends = label_rows(frame, split.val_start, end)
    if len(train_ends) == 0 or len(val_ends) == 0:
        raise InputError("no labelled rows to train or validate on: pass the labelled features table")
    data = (
        windows(values, config.window, train_ends),
        target[train_ends].astype("float32"),
        windows(values, config.window, val_ends),
        target[val_ends].astype("float32"),
    )
    members, histories = [], []
    for member in range(config.ensemble):
        model, losses = _fit_member(data, len(columns), config, config.seed + member, on_epoch)
        members.append(model)
        histories.append(losses)
    if config.target_scaling == "volatility":
        index = columns.index(VOLATILITY_COLUMN)
        scale: float | tuple[int, float, float] = (index, scaler.mean[index], scaler.std[index])
    else:
        scale = float(scales[0, 0])
    history = histories[0] if len(histories) == 1 else _mean_history(histories)
    return TrainedModel(
        model=combined(members, scale, horizons),
        scaler=scaler,
        window=config.window,
        quantiles=tuple(config.quantiles),
        horizons=horizons,
        target_scale=float(scales[0, 0]) if config.target_scaling == "constant" else 1.0,
        train_span=_span(frame, 0, split.val_start),
        validation_span=_span(frame, split.val_start, end),
        epochs_run=max(len(h["loss"]) for h in histories),
        best_epoch=int(np.argmin(history["val_loss"])) + 1,
        history=history,
    )


def _mean_history(histories: list[dict[str, list[float]]]) -> dict[str, list[float]]:
    """Per-epoch mean over the members that ran that epoch (members stop early at different epochs)."""
    out: dict[str, list[float]] = {}
    for key in ("loss", "val_loss"):
        longest = max(len(h[key]) for h in histories)
        out[key] = [float(np.mean([h[key][i] for h in histories if i < len(h[key])])) for i in range(longest)]
    return out


def _fit_member(
    data: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    n_features: int,
    config: ModelSettings,
    seed: int,
    on_epoch: EpochHook | None,
) -> tuple[Any, dict[str, list[float]]]:
    import keras

    from bitpredict.forecast.network import build_model

    x_train, y_train, x_val, y_val = data
    keras.utils.set_random_seed(seed)
    model = build_model(
        config.window,
        n_features,
        lstm_units=config.lstm_units,
        attention=config.attention,
        dense_units=config.dense_units,
        dropout=config.dropout,
        quantiles=config.quantiles,
        horizons=config.horizons,
        learning_rate=config.learning_rate,
        name=f"member_{seed}",
    )
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=config.patience, restore_best_weights=True)
    history = model.fit(
        x_train,
        {HORIZON_QUANTILES_OUTPUT: y_train},
        validation_data=(x_val, {HORIZON_QUANTILES_OUTPUT: y_val}),
        epochs=config.epochs,
        batch_size=config.batch_size,
        shuffle=True,
        verbose=0,
        callbacks=[stop, _EpochCallback.create(config.epochs, on_epoch)],
    )
    return model, {k: [float(v) for v in vals] for k, vals in history.history.items() if k in ("loss", "val_loss")}


def combined(members: list[Any], scale: float | tuple[int, float, float], horizons: tuple[int, ...] = (1,)) -> Any:
    """One model over the members: quantiles averaged, then scaled back to log-return units.

    ``scale``: a constant (the target was divided by it and √h), or (column index, mean, std) of the volatility
    feature in the scaled input window (the target was divided by each day's volatility and √h).
    """
    import keras

    from bitpredict.forecast.network import FirstHorizon, VolatilityScale

    inputs = members[0].inputs
    if len(members) == 1:
        quantiles = members[0].get_layer(HORIZON_QUANTILES_OUTPUT).output
        attention = members[0].get_layer(ATTENTION_OUTPUT).output
    else:
        inputs = [keras.Input(shape=members[0].inputs[0].shape[1:], name=members[0].inputs[0].name)]
        called = [m(inputs[0]) for m in members]
        quantiles = keras.layers.Average(name=f"{HORIZON_QUANTILES_OUTPUT}_mean")(
            [c[HORIZON_QUANTILES_OUTPUT] for c in called]
        )
        attention = keras.layers.Average(name=f"{ATTENTION_OUTPUT}_mean")([c[ATTENTION_OUTPUT] for c in called])
    if isinstance(scale, tuple):
        index, mean, std = scale
        scaled = VolatilityScale(index, mean, std, horizons, name=f"{HORIZON_QUANTILES_OUTPUT}_log_return")(
            quantiles, inputs[0]
        )
    else:
        root_h = np.sqrt(np.asarray(horizons, "float64"))[:, None]
        scaled = keras.layers.Rescaling(scale * root_h, name=f"{HORIZON_QUANTILES_OUTPUT}_log_return")(quantiles)
    attention = keras.layers.Identity(name=f"{ATTENTION_OUTPUT}_weights")(attention)
    first = FirstHorizon(name=f"{QUANTILES_OUTPUT}_next_day")(scaled)
    outputs = {QUANTILES_OUTPUT: first, HORIZON_QUANTILES_OUTPUT: scaled, ATTENTION_OUTPUT: attention}
    return keras.Model(inputs, outputs, name="bitpredict_lstm")


# --------------------------------------------------------------------------------------------
# export
# --------------------------------------------------------------------------------------------


def _outputs(horizons: int, levels: int, window: int) -> dict[str, list[int | None]]:
    """The signature's output shapes, as the metadata lists them (the predictor and Triton declare these)."""
    return {
        QUANTILES_OUTPUT: [None, levels],
        HORIZON_QUANTILES_OUTPUT: [None, horizons, levels],
        ATTENTION_OUTPUT: [None, window],
    }


def metadata(trained: TrainedModel, config: ModelSettings, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """``bitpredict_model.json``: everything a server needs to build the exact inputs this model expects."""

    return {
        "format_version": FORMAT_VERSION,
        "kind": MODEL_KIND,
        "target_scaling": config.target_scaling,
        "feature_columns": list(trained.scaler.columns),
        "window": trained.window,
        "warmup": WARMUP,
        "scaler": trained.scaler.to_dict(),
        "quantiles": list(trained.quantiles),
        "target": TARGET,
        "target_scale": trained.target_scale,
        "signature": SIGNATURE,
        "input": {"name": INPUT_NAME, "dtype": "float32", "shape": [None, trained.window, len(trained.scaler.columns)]},
        "horizons": list(trained.horizons),
        "outputs": _outputs(len(trained.horizons), len(trained.quantiles), trained.window),
        "train_span": list(trained.train_span),
        "validation_span": list(trained.validation_span),
        "epochs_run": trained.epochs_run,
        "best_epoch": trained.best_epoch,
        "best_val_loss": min(trained.history["val_loss"]),
        "hyperparameters": config.model_dump(mode="json"),
        "code_version": code_version(),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        **(extra or {}),
    }


def baseline_metadata(fit: Any, config: ModelSettings, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """``bitpredict_model.json`` of a fitted baseline (``bitpredict.forecast.baselines.BaselineFit``): the same keys
    as the network's, so the transformer, TF Serving and Triton treat it exactly like the network."""

    return {
        "format_version": FORMAT_VERSION,
        "kind": fit.kind,
        "feature_columns": list(fit.columns),
        "window": fit.window,
        "warmup": WARMUP,
        "scaler": fit.scaler().to_dict(),
        "quantiles": list(fit.levels),
        "target": TARGET,
        "target_scale": 1.0,
        "signature": SIGNATURE,
        "input": {"name": INPUT_NAME, "dtype": "float32", "shape": [None, fit.window, len(fit.columns)]},
        "horizons": list(fit.horizons),
        "outputs": _outputs(len(fit.horizons), len(fit.levels), fit.window),
        "train_span": list(fit.train_span),
        "params": fit.params,
        "hyperparameters": {"window": fit.window, "quantiles": list(fit.levels), "horizons": list(fit.horizons)},
        "code_version": code_version(),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        **(extra or {}),
    }


def export_baselines(
    frame: pd.DataFrame, config: ModelSettings, directory: Path, reference: pd.DataFrame, extra: dict[str, Any]
) -> list[str]:
    """Fit every configured baseline on all labelled rows and export it to ``<directory>/baselines/<kind>/``; then
    the combination of ``config.combination`` (from the same fits) to ``<directory>/baselines/combo/``."""
    from bitpredict.forecast import baselines, combination

    levels, horizons = tuple(config.quantiles), tuple(config.horizons)
    fits: dict[str, Any] = {
        kind: baselines.fit_baseline(kind, frame, len(frame), levels, config.window, horizons)
        for kind in config.baselines
    }
    if config.combination:
        fits[combination.KIND] = combination.combine(
            config.combination, frame, len(frame), levels, config.window, fits, horizons
        )
    for kind, fit in fits.items():
        target = baselines.export(fit, directory / BASELINES_DIR / kind)
        write_metadata(target, baseline_metadata(fit, config, extra))
        storage.write_parquet(reference, target / REFERENCE_FILE)
    return list(fits)


def export(trained: TrainedModel, directory: Path, meta: dict[str, Any]) -> Path:
    """``<directory>/saved_model/`` (named signature ``serving_default``) and ``<directory>/bitpredict_model.json``."""
    directory.mkdir(parents=True, exist_ok=True)
    trained.model.export(str(directory / SAVED_MODEL_DIR), format="tf_saved_model", verbose=False)
    write_metadata(directory, meta)
    return directory


# --------------------------------------------------------------------------------------------
# the stage
# --------------------------------------------------------------------------------------------


def candidate_dir(settings: Settings) -> str:
    return data_path(settings, CANDIDATE)


def load_features(settings: Settings) -> pd.DataFrame:
    try:
        return storage.read_parquet(data_path(settings, FEATURES))
    except FileNotFoundError:
        raise FileNotFoundError(f"{data_path(settings, FEATURES)} not found: run `bitpredict merge` first") from None


def plot_history(history: dict[str, list[float]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, values in history.items():
        ax.plot(range(1, len(values) + 1), values, label=name)
    ax.set(xlabel="epoch", ylabel="pinball loss (scaled target)", title="Training curve")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run_train(settings: Settings) -> dict[str, Any]:
    """Fit on all labelled rows, export to the candidate folder (``stage_table.CANDIDATE``) and log everything
    to an MLflow run."""
    config = settings.model
    frame = labelled(load_features(settings))
    columns = model_input_columns(frame.columns, config.use_sentiment, config.exclude_features)
    mlflow = tracking.client(settings)
    data_span = _span(frame, 0, len(frame))
    run = mlflow.create_run(
        tracking.experiment_id(settings),
        run_name=f"lstm-{datetime.now(UTC):%Y%m%d-%H%M%S}",
        tags={"data_start": data_span[0], "data_end": data_span[1], "code_version": code_version(), "stage": "train"},
    )
    run_id = run.info.run_id
    try:
        flat = {k: json.dumps(v) if isinstance(v, list) else v for k, v in config.model_dump(mode="json").items()}
        from mlflow.entities import Metric, Param

        mlflow.log_batch(run_id, params=[Param(k, str(v)) for k, v in {**flat, "n_features": len(columns)}.items()])

        def on_epoch(epoch: int, values: dict[str, float]) -> None:
            now = int(datetime.now(UTC).timestamp() * 1000)
            mlflow.log_batch(run_id, metrics=[Metric(k, v, now, epoch) for k, v in values.items()])

        trained = fit_recipe(frame, columns, config, end=len(frame), on_epoch=on_epoch)
        meta = metadata(trained, config, {"mlflow_run_id": run_id, "data_span": list(data_span)})
        with tempfile.TemporaryDirectory() as tmp:
            local = export(trained, Path(tmp) / "model", meta)
            reference = frame.iloc[: len(frame) - config.validation_days][["timestamp", *columns]]
            storage.write_parquet(reference, local / REFERENCE_FILE)
            fitted_baselines = export_baselines(
                frame, config, local, reference, {"mlflow_run_id": run_id, "data_span": list(data_span)}
            )
            mlflow.log_artifacts(run_id, str(local), artifact_path="model")
            mlflow.log_artifact(run_id, str(plot_history(trained.history, Path(tmp) / "training_curve.png")), "plots")
            storage.copy_tree(local, candidate_dir(settings))
        mlflow.log_metric(run_id, "best_val_loss", meta["best_val_loss"])
        mlflow.log_metric(run_id, "epochs_run", trained.epochs_run)
    except BaseException:
        mlflow.set_terminated(run_id, status="FAILED")
        raise
    mlflow.set_terminated(run_id, status="FINISHED")
    storage.write_text(
        storage.join(candidate_dir(settings), "run.json"),
        json.dumps({"run_id": run_id, "tracking_uri": settings.tracking_uri}, indent=2),
    )
    log.info("model trained", extra={"run_id": run_id, "epochs": trained.epochs_run, "best_epoch": trained.best_epoch})
    return {
        "run_id": run_id,
        "rows": len(frame),
        "features": len(columns),
        "window": config.window,
        "epochs_run": trained.epochs_run,
        "best_epoch": trained.best_epoch,
        "best_val_loss": meta["best_val_loss"],
        "baselines": fitted_baselines,
        "train_span": trained.train_span,
        "validation_span": trained.validation_span,
        "model_dir": candidate_dir(settings),
    }
