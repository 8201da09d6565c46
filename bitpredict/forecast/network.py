"""The forecasting model: stacked LSTM over a window of W days × F features, temporal attention, quantile head.

Why this shape: the LSTM summarises the recent path of returns, indicators and sentiment; attention lets
the model weight the days that matter (and lets a person see which ones it used); the head predicts
*quantiles of the next-day log return* rather than a price level — a level forecast mostly learns
"tomorrow = today" and looks good only because prices are autocorrelated. The median is the point
forecast, the outer quantiles the interval, all trained with the pinball loss (a proper scoring rule
for quantiles). Quantiles are sorted at the output so they never cross.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from statistics import NormalDist

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # after the log level: TensorFlow reads it at import
from keras import layers, ops

# Re-exported: the tensor names are the artifact contract's (bitpredict.forecast.artifact), named here for the
# model code.
from bitpredict.forecast.artifact import ATTENTION_OUTPUT as ATTENTION_OUTPUT
from bitpredict.forecast.artifact import HORIZON_QUANTILES_OUTPUT as HORIZON_QUANTILES_OUTPUT
from bitpredict.forecast.artifact import INPUT_NAME as INPUT_NAME
from bitpredict.forecast.artifact import QUANTILES_OUTPUT as QUANTILES_OUTPUT


@keras.saving.register_keras_serializable(package="bitpredict")
class TemporalAttention(layers.Layer):
    """Attention over time steps: returns the weighted context vector and the weights themselves.

    ``additive`` (Bahdanau): score_t = vᵀ tanh(W h_t + b). ``dot``: score_t = h_t · q with a learned query.
    The weights (softmax over the W steps) are a model output so they can be inspected per forecast.
    """

    def __init__(self, units: int = 32, kind: str = "additive", **kwargs: object) -> None:
        super().__init__(**kwargs)
        if kind not in ("additive", "dot"):
            raise ValueError(f"attention kind must be 'additive' or 'dot', got {kind!r}")
        self.units = units
        self.kind = kind

    def build(self, input_shape: Sequence[int | None]) -> None:
        features = int(input_shape[-1])
        if self.kind == "additive":
            self.w = self.add_weight(name="w", shape=(features, self.units), initializer="glorot_uniform")
            self.b = self.add_weight(name="b", shape=(self.units,), initializer="zeros")
            self.v = self.add_weight(name="v", shape=(self.units, 1), initializer="glorot_uniform")
        else:
            self.q = self.add_weight(name="q", shape=(features, 1), initializer="glorot_uniform")

    def call(self, hidden: keras.KerasTensor) -> tuple[keras.KerasTensor, keras.KerasTensor]:
        if self.kind == "additive":
            scores = ops.matmul(ops.tanh(ops.matmul(hidden, self.w) + self.b), self.v)  # [B, W, 1]
        else:
            scores = ops.matmul(hidden, self.q) / ops.sqrt(ops.cast(ops.shape(hidden)[-1], hidden.dtype))
        weights = ops.softmax(ops.squeeze(scores, axis=-1), axis=-1)  # [B, W]
        context = ops.sum(hidden * ops.expand_dims(weights, -1), axis=1)  # [B, H]
        return context, weights

    def get_config(self) -> dict[str, object]:
        return {**super().get_config(), "units": self.units, "kind": self.kind}


@keras.saving.register_keras_serializable(package="bitpredict")
class SortQuantiles(layers.Layer):
    """Sorts the quantile outputs so q10 ≤ q50 ≤ q90 always (no crossing intervals)."""

    def call(self, values: keras.KerasTensor) -> keras.KerasTensor:
        return ops.sort(values, axis=-1)


@keras.saving.register_keras_serializable(package="bitpredict")
class VolatilityScale(layers.Layer):
    """Multiplies the quantiles [B, H, Q] (trained on the h-day return / (volatility · √h)) by the day's
    volatility · √h, read from the input.

    The volatility is the last window row's ``ewma_vol`` feature, un-standardised with the training
    scaler's constants — so the exported model still takes the scaled window alone and outputs
    log-return quantiles, like every other BitPredict model.
    """

    def __init__(
        self, index: int = 0, mean: float = 0.0, std: float = 1.0, horizons: Sequence[int] = (1,), **kwargs: object
    ) -> None:
        super().__init__(**kwargs)
        self.index, self.mean, self.std = int(index), float(mean), float(std)
        self.horizons = [int(h) for h in horizons]

    def call(self, quantiles: keras.KerasTensor, features: keras.KerasTensor) -> keras.KerasTensor:
        sigma = ops.maximum(features[:, -1, self.index : self.index + 1] * self.std + self.mean, 1e-6)  # [B, 1]
        root_h = ops.convert_to_tensor([[float(h) ** 0.5 for h in self.horizons]], dtype=quantiles.dtype)  # [1, H]
        return quantiles * ops.expand_dims(sigma * root_h, -1)

    def get_config(self) -> dict[str, object]:
        return {
            **super().get_config(),
            "index": self.index,
            "mean": self.mean,
            "std": self.std,
            "horizons": self.horizons,
        }


@keras.saving.register_keras_serializable(package="bitpredict")
class FirstHorizon(layers.Layer):
    """The next-day quantiles [B, Q]: the first row of [B, H, Q] (the output old clients read)."""

    def call(self, values: keras.KerasTensor) -> keras.KerasTensor:
        return values[:, 0, :]


def pinball_loss(quantiles: Sequence[float]) -> keras.losses.Loss:
    """Mean quantile (pinball) loss over the quantiles and horizons that have a label; y_true is [B, H] (NaN: no
    label yet for that horizon — the h days reach past what the fit may know) and y_pred [B, H, Q]."""
    taus = ops.convert_to_tensor([[list(quantiles)]], dtype="float32")

    def loss(y_true: keras.KerasTensor, y_pred: keras.KerasTensor) -> keras.KerasTensor:
        y = ops.cast(y_true, "float32")
        y = ops.reshape(y, (ops.shape(y)[0], -1))  # [B] (one horizon) or [B, H]
        known = ops.cast(ops.isfinite(y), "float32")
        error = ops.expand_dims(ops.where(ops.isfinite(y), y, 0.0), -1) - y_pred
        per_label = ops.mean(ops.maximum(taus * error, (taus - 1.0) * error), axis=-1) * known  # [B, H]
        return ops.sum(per_label, axis=-1) / ops.maximum(ops.sum(known, axis=-1), 1.0)

    loss.__name__ = "pinball"
    return loss


def build_model(
    window: int,
    n_features: int,
    *,
    lstm_units: Sequence[int] = (64, 32),
    attention: str = "additive",
    dense_units: int = 32,
    dropout: float = 0.2,
    quantiles: Sequence[float] = (0.1, 0.5, 0.9),
    horizons: Sequence[int] = (1,),
    learning_rate: float = 1e-3,
    name: str = "bitpredict_lstm",
) -> keras.Model:
    """The compiled model: input ``features`` [B, W, F] → ``horizon_quantiles`` [B, H, Q] (one head per horizon
    on the shared LSTM and attention), ``quantiles`` [B, Q] (its first horizon) and ``attention`` [B, W]."""
    inputs = keras.Input(shape=(window, n_features), name=INPUT_NAME, dtype="float32")
    hidden = inputs
    for i, units in enumerate(lstm_units):
        hidden = layers.LSTM(units, return_sequences=True, dropout=dropout, name=f"lstm_{i}")(hidden)
    context, weights = TemporalAttention(units=max(8, lstm_units[-1]), kind=attention, name="attention_layer")(hidden)
    x = layers.Dense(dense_units, activation="relu", name="head_dense")(context)
    x = layers.Dropout(dropout, name="head_dropout")(x)
    # Start each quantile where it would sit for a standard normal target (training scales the target to
    # unit spread): the interval is roughly right from the first epoch instead of collapsed at zero.
    start = [NormalDist().inv_cdf(q) for q in quantiles]
    # A zero kernel makes the first forecast exactly those normal quantiles: with a volatility-scaled
    # target that is the RiskMetrics baseline, and training moves away from it only where it helps.
    # One head per horizon (each target is scaled by σ·√h, so every head starts at the same normal quantiles).
    raw = layers.Dense(
        len(horizons) * len(quantiles),
        kernel_initializer="zeros",
        bias_initializer=keras.initializers.Constant(list(start) * len(horizons)),
        name="head_quantiles",
    )(x)
    shaped = layers.Reshape((len(horizons), len(quantiles)), name="head_horizons")(raw)
    out_horizons = SortQuantiles(name=HORIZON_QUANTILES_OUTPUT)(shaped)
    out_quantiles = FirstHorizon(name=QUANTILES_OUTPUT)(out_horizons)
    out_attention = layers.Identity(name=ATTENTION_OUTPUT)(weights)
    outputs = {QUANTILES_OUTPUT: out_quantiles, HORIZON_QUANTILES_OUTPUT: out_horizons, ATTENTION_OUTPUT: out_attention}
    model = keras.Model(inputs, outputs, name=name)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate, clipnorm=1.0),
        loss={HORIZON_QUANTILES_OUTPUT: pinball_loss(quantiles), QUANTILES_OUTPUT: None, ATTENTION_OUTPUT: None},
    )
    return model
