"""Probabilistic baselines that are models: fitted like the network, scored like it, exported like it.

Each baseline forecasts the same quantiles of the next-day log return as the network, centred on
persistence (median 0: "tomorrow = today") with a spread from a classic volatility model:

* ``ewma``: RiskMetrics — normal quantiles × the EWMA volatility (λ = 0.94; the ``ewma_vol`` feature).
* ``empirical``: the empirical quantiles of the window's daily returns, re-centred on zero.
* ``garch``: GARCH(1,1) with Student-t errors (``arch``), fitted on the returns before each block; the
  variance is filtered over the window from the EWMA variance at its first day. Its quantiles are
  *filtered historical simulation*: the empirical quantiles of the fit's standardised residuals × the
  filtered volatility. (The t quantiles were too narrow: on daily BTC the fit sits on its bounds —
  α + β ≈ 1, ν ≈ 3 — and the standardised t's q90 is 0.73× the normal one; 74 % coverage of an 80 % band.)
* ``har``: a HAR regression of the log Garman–Klass range variance on its 1/7/30-day means
  (``log_gk_var_*``), scaled to returns by the empirical quantiles of training returns over the HAR
  volatility (a range-based HAR: daily bars are what a client sends, and the history before 2019 has no
  hourly bars to sum).

Fitting is NumPy/arch; forecasting is one TensorFlow function per baseline (``BaselineModule``) that the
walk-forward evaluation calls on its windows *and* that is exported as the SavedModel — so the served
forecast is, by construction, the evaluated one. Inputs are the raw (unscaled) feature columns the
baseline names; its metadata carries an identity scaler so the serving transformer builds the window
with the same code as for the network.

**Horizons** (``model.horizons``, ``bitpredict.forecast.horizons``): each baseline also forecasts the h-day log
return as ``σ_h(t) × z_h``, a scale from its own multi-step variance and a shape:

* ``ewma``: ``σ_h = σ √h`` — RiskMetrics' multi-step variance (an integrated process: h σ²), normal quantiles.
  This is the naive h-day forecast every model is measured against.
* ``garch``: ``σ_h² = Σ_{k=1..h} E[σ²_{t+k}] = a_h + b_h σ²_{t+1}`` with ``b_h = Σ p^{k−1}``,
  ``a_h = ω Σ_{k=1..h} Σ_{j<k−1} p^j`` and ``p = α + β`` (``garch_multistep``): the variance reverts to
  ``ω / (1 − p)`` at the fitted speed.
* ``har``: direct regressions, one per horizon, of the log of the *mean* Garman–Klass variance over the next h
  days on the same 1/7/30-day regressors (the weekly and monthly terms are what HAR has them for); ``σ_h² =
  h · exp(fitted)``.
* ``empirical``: the window's standard deviation × √h.

For h > 1 the shape ``z_h`` of every kind but EWMA is the empirical quantiles (re-centred on the median) of the
training rows' h-day returns divided by that same ``σ_h`` — computed with the served graph itself, so the
calibration and the forecast cannot disagree, and only from labels the fit could know
(``horizons.labels_before``). Summed daily returns are less fat-tailed than daily ones; calibrating on h-day
returns lets each horizon have its own tails instead of the 1-day ones stretched by √h.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd

from bitpredict.features.columns import TARGET
from bitpredict.features.indicators import EWMA_LAMBDA
from bitpredict.forecast.dataset import Scaler, windows
from bitpredict.forecast.horizons import check_horizons, horizon_returns, labels_before

KINDS = ("ewma", "empirical", "garch", "har")
COLUMNS: dict[str, tuple[str, ...]] = {
    "ewma": ("ewma_vol",),
    "empirical": ("log_return_1",),
    "garch": ("log_return_1", "ewma_vol"),
    "har": ("log_gk_var_1", "log_gk_var_7", "log_gk_var_30"),
}
GARCH_HISTORY = 2000  # days of returns the GARCH is fitted on before each block
HAR_HISTORY = 2000


@dataclass(frozen=True)
class BaselineFit:
    """A fitted baseline: its kind, the quantile levels, the window and the fitted constants."""

    kind: str
    levels: tuple[float, ...]
    window: int
    params: dict[str, Any] = field(default_factory=dict)
    train_span: tuple[str, str] = ("", "")
    horizons: tuple[int, ...] = (1,)

    @property
    def columns(self) -> tuple[str, ...]:
        return COLUMNS[self.kind]

    def scaler(self) -> Scaler:
        """Identity scaling: the baseline reads its columns in their own units."""
        n = len(self.columns)
        return Scaler(self.columns, (0.0,) * n, (1.0,) * n)

    def forecast_graph(self, x: Any) -> tuple[Any, Any]:
        """Quantiles [B, H, Q] and attention [B, W] from the raw window ``x`` [B, W, C] (float64 tensors)."""
        return graph(self, x)


# --------------------------------------------------------------------------------------------
# fitting (rows [0, end) of the labelled features table)
# --------------------------------------------------------------------------------------------


def _fit_garch(frame: pd.DataFrame, end: int, levels: tuple[float, ...]) -> dict[str, Any]:
    from arch import arch_model

    returns = frame["log_return_1"].to_numpy(dtype="float64")[max(0, end - GARCH_HISTORY) : end]
    returns = returns[np.isfinite(returns)] * 100.0  # arch's optimiser wants percent units
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence chatter; a bad fit shows in the scores
        result = arch_model(returns, mean="Zero", vol="GARCH", p=1, q=1, dist="t").fit(disp="off")
    params = result.params
    residuals = np.asarray(result.std_resid, dtype="float64")
    residuals = residuals[np.isfinite(residuals)]
    spread = np.quantile(residuals, levels) - np.quantile(residuals, 0.5)  # centred: the median stays persistence
    return {
        "omega": float(params["omega"]) / 1e4,  # back to squared log-return units
        "alpha": float(params["alpha[1]"]),
        "beta": float(params["beta[1]"]),
        "nu": float(params["nu"]),  # reported (the fit's tail index); the quantiles come from the residuals
        "persistence": float(params["alpha[1]"] + params["beta[1]"]),
        "z_quantiles": spread.tolist(),
    }


def _fit_har(frame: pd.DataFrame, end: int, levels: tuple[float, ...]) -> dict[str, Any]:
    """OLS of log GK variance at t+1 on its 1/7/30-day means at t (rows whose t+1 is before ``end``)."""
    lo = max(0, end - HAR_HISTORY)
    x = frame[list(COLUMNS["har"])].to_numpy(dtype="float64")[lo:end]
    y = x[1:, 0]
    design = np.column_stack([np.ones(len(x) - 1), x[:-1]])
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    sigma = np.sqrt(np.exp(design @ coef))
    z = frame[TARGET].to_numpy(dtype="float64")[lo : end - 1] / sigma
    z = z[np.isfinite(z)]  # a day next to a filled bar has no target
    spread = np.quantile(z, levels) - np.quantile(z, 0.5)
    return {"coef": coef.tolist(), "z_quantiles": spread.tolist()}


def _fit_har_horizons(frame: pd.DataFrame, end: int, horizons: tuple[int, ...]) -> dict[str, list[float]]:
    """Per horizon h > 1, OLS of log(mean GK variance of days t+1 … t+h) on the HAR regressors at t, on the rows
    whose h days all lie before ``end`` (the 1-day regression's rule, ``_fit_har``)."""
    lo = max(0, end - HAR_HISTORY)
    x = frame[list(COLUMNS["har"])].to_numpy(dtype="float64")[lo:end]
    variance = np.exp(x[:, 0])
    cumulative = np.concatenate([[0.0], np.cumsum(variance)])
    out: dict[str, list[float]] = {}
    for h in horizons:
        if h == 1:
            continue
        origins = np.arange(0, len(x) - h)
        mean_ahead = (cumulative[origins + h + 1] - cumulative[origins + 1]) / h
        design = np.column_stack([np.ones(len(origins)), x[origins]])
        ok = np.isfinite(design).all(axis=1) & np.isfinite(mean_ahead) & (mean_ahead > 0)
        coef, *_ = np.linalg.lstsq(design[ok], np.log(mean_ahead[ok]), rcond=None)
        out[str(h)] = coef.tolist()
    return out


def _calibrate_horizons(fit: BaselineFit, frame: pd.DataFrame, end: int) -> dict[str, list[float]]:
    """The shape ``z_h`` of each horizon h > 1: quantiles of (h-day return / σ_h) over the training rows, with
    σ_h from the served graph (``horizon_scale``) and only labels known before ``end``."""
    lo = max(fit.window - 1, end - HAR_HISTORY)
    ends = np.arange(lo, end)
    if len(ends) == 0:
        raise ValueError(f"{end} rows are too few for {fit.window}-day windows")
    labels = labels_before(horizon_returns(frame, fit.horizons), fit.horizons, end)[ends]
    import tensorflow as tf

    x = tf.constant(windows(fit.scaler().transform(frame.iloc[:end]), fit.window, ends), tf.float64)
    out: dict[str, list[float]] = {}
    for j, h in enumerate(fit.horizons):
        if h == 1:
            continue
        z = labels[:, j] / horizon_scale(fit, x, h).numpy()
        z = z[np.isfinite(z)]
        if len(z) < 30:
            raise ValueError(f"{len(z)} {h}-day labels before row {end}: too few to calibrate the {h}-day forecast")
        out[str(h)] = (np.quantile(z, fit.levels) - np.quantile(z, 0.5)).tolist()
    return out


def fit_baseline(
    kind: str,
    frame: pd.DataFrame,
    end: int,
    levels: tuple[float, ...],
    window: int,
    horizons: tuple[int, ...] = (1,),
) -> BaselineFit:
    """Fit baseline ``kind`` on the labelled rows ``[0, end)``; the forecast needs ``window`` days and covers
    ``horizons`` (days ahead, the first is 1)."""
    if kind not in KINDS:
        raise ValueError(f"unknown baseline {kind!r}; known: {KINDS}")
    horizons = check_horizons(horizons)
    if kind == "garch":
        params = _fit_garch(frame, end, levels)
    elif kind == "har":
        params = _fit_har(frame, end, levels)
        params["horizon_coef"] = _fit_har_horizons(frame, end, horizons)
    else:
        params = {}
    span = (frame["timestamp"].iloc[0].date().isoformat(), frame["timestamp"].iloc[end - 1].date().isoformat())
    fit = BaselineFit(kind, tuple(levels), window, params, span, horizons)
    if kind == "ewma" or horizons == (1,):
        return fit
    return BaselineFit(kind, fit.levels, window, {**params, "horizon_z": _calibrate_horizons(fit, frame, end)},
                       span, horizons)  # fmt: skip


# --------------------------------------------------------------------------------------------
# forecasting: one TensorFlow function per fit, evaluated and exported alike
# --------------------------------------------------------------------------------------------


def _ewma_weights(window: int) -> np.ndarray:
    weights = EWMA_LAMBDA ** np.arange(window)[::-1]
    return weights / weights.sum()


def garch_multistep(omega: float, persistence: float, h: int) -> tuple[float, float]:
    """(a_h, b_h) with Σ_{k=1..h} E[σ²_{t+k}] = a_h + b_h σ²_{t+1} for a GARCH(1,1) of persistence p = α + β:
    E[σ²_{t+k}] = ω Σ_{j=0}^{k−2} p^j + p^{k−1} σ²_{t+1}. Summed term by term, so p ≥ 1 (integrated) is fine."""
    powers = persistence ** np.arange(h)  # p^0 … p^{h-1}
    b = float(powers.sum())
    partial = np.concatenate([[0.0], np.cumsum(powers)[:-1]])  # Σ_{j=0}^{k-2} p^j for k = 1 … h
    return float(omega * partial.sum()), b


def _garch_variance(p: dict[str, Any], x: Any) -> Any:
    """σ²_{t+1} [B]: the GARCH filter run over the window from the EWMA variance at its first day."""
    import tensorflow as tf

    variance = tf.square(x[:, 0, 1])
    for i in range(1, x.shape[1]):
        variance = p["omega"] + p["alpha"] * tf.square(x[:, i, 0]) + p["beta"] * variance
    return variance


def horizon_scale(fit: BaselineFit, x: Any, h: int) -> Any:
    """σ_h [B]: the h-day standard deviation of ``fit``'s kind (module docstring) from the raw window ``x``."""
    import tensorflow as tf

    if fit.kind == "ewma":
        return x[:, -1, 0] * math.sqrt(h)
    if fit.kind == "empirical":
        return tf.math.reduce_std(x[:, :, 0], axis=1) * math.sqrt(h)
    if fit.kind == "garch":
        a, b = garch_multistep(fit.params["omega"], fit.params["persistence"], h)
        return tf.sqrt(a + b * _garch_variance(fit.params, x))
    coef = fit.params["horizon_coef"][str(h)]
    log_variance = coef[0] + coef[1] * x[:, -1, 0] + coef[2] * x[:, -1, 1] + coef[3] * x[:, -1, 2]
    return tf.sqrt(h * tf.exp(log_variance))


def graph(fit: BaselineFit, x: Any) -> tuple[Any, Any]:
    """Quantiles [B, H, Q] (one row per horizon, the first is the next day) and attention [B, W] from the raw
    window ``x`` [B, W, C] (float64 tensors)."""
    import tensorflow as tf

    one_day, attention = _one_day(fit, x)
    rows = [one_day]
    for h in fit.horizons[1:]:
        shape = [NormalDist().inv_cdf(q) for q in fit.levels] if fit.kind == "ewma" else fit.params["horizon_z"][str(h)]
        rows.append(horizon_scale(fit, x, h)[:, None] * tf.constant(np.asarray(shape)[None, :], tf.float64))
    return tf.stack(rows, axis=1), attention


def _one_day(fit: BaselineFit, x: Any) -> tuple[Any, Any]:
    """The next-day quantiles [B, Q] and attention [B, W] (module docstring)."""
    import tensorflow as tf

    w = fit.window
    z = tf.constant([[NormalDist().inv_cdf(q) for q in fit.levels]], tf.float64)
    batch = tf.shape(x)[0]
    last_only = tf.one_hot(tf.fill([batch], w - 1), w, dtype=tf.float64)
    if fit.kind == "ewma":
        sigma = x[:, -1, 0:1]
        attention = tf.tile(tf.constant(_ewma_weights(w)[None, :], tf.float64), [batch, 1])
        return sigma * z, attention
    if fit.kind == "empirical":
        ordered = tf.sort(x[:, :, 0], axis=1)

        def quantile(level: float) -> Any:
            position = level * (w - 1)
            lo, hi = math.floor(position), math.ceil(position)
            return ordered[:, lo] + (position - lo) * (ordered[:, hi] - ordered[:, lo])

        median = quantile(0.5)
        values = tf.stack([quantile(q) - median for q in fit.levels], axis=1)
        return values, tf.fill([batch, w], tf.constant(1.0 / w, tf.float64))
    if fit.kind == "garch":
        p = fit.params
        variance = _garch_variance(p, x)
        t = tf.constant(np.asarray(p["z_quantiles"])[None, :], tf.float64)
        weights = np.array([p["beta"] ** (w - 1)] + [p["alpha"] * p["beta"] ** (w - 1 - i) for i in range(1, w)])
        attention = tf.tile(tf.constant((weights / weights.sum())[None, :], tf.float64), [batch, 1])
        return tf.sqrt(variance)[:, None] * t, attention
    coef = fit.params["coef"]
    log_variance = coef[0] + coef[1] * x[:, -1, 0] + coef[2] * x[:, -1, 1] + coef[3] * x[:, -1, 2]
    sigma = tf.sqrt(tf.exp(log_variance))[:, None]
    return sigma * tf.constant(np.asarray(fit.params["z_quantiles"])[None, :], tf.float64), last_only


def module(fit: Any) -> Any:
    """A ``tf.Module`` whose ``serve`` is the ``serving_default`` signature: ``features`` [B, W, C] float32 →
    ``quantiles`` [B, Q] (the next day), ``horizon_quantiles`` [B, H, Q] and ``attention`` [B, W] float32 — the
    network's contract. ``fit``: a ``BaselineFit`` or any fit with the same fields and a ``forecast_graph`` (the
    combination, ``bitpredict.forecast.combination``)."""
    import tensorflow as tf

    from bitpredict.forecast.artifact import ATTENTION_OUTPUT, HORIZON_QUANTILES_OUTPUT, INPUT_NAME, QUANTILES_OUTPUT

    class BaselineModule(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, fit.window, len(fit.columns)], tf.float32, INPUT_NAME)])
        def serve(self, features: Any) -> dict[str, Any]:
            quantiles, attention = fit.forecast_graph(tf.cast(features, tf.float64))
            ordered = tf.cast(tf.sort(quantiles, axis=-1), tf.float32)
            return {
                QUANTILES_OUTPUT: ordered[:, 0, :],
                HORIZON_QUANTILES_OUTPUT: ordered,
                ATTENTION_OUTPUT: tf.cast(attention, tf.float32),
            }

    return BaselineModule(name=f"bitpredict_{fit.kind}")


def predict_horizons(fit: Any, frame: pd.DataFrame, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Quantiles [N, H, Q] and attention [N, W] for windows ending at rows ``ends`` — through the exported graph."""
    import tensorflow as tf

    from bitpredict.forecast.artifact import ATTENTION_OUTPUT, HORIZON_QUANTILES_OUTPUT

    x = windows(fit.scaler().transform(frame), fit.window, ends)
    out = module(fit).serve(tf.constant(x))
    return out[HORIZON_QUANTILES_OUTPUT].numpy().astype("float64"), out[ATTENTION_OUTPUT].numpy().astype("float64")


def predict(fit: Any, frame: pd.DataFrame, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Next-day quantiles [N, Q] and attention [N, W] for windows ending at rows ``ends`` (``predict_horizons``'
    first horizon)."""
    quantiles, attention = predict_horizons(fit, frame, ends)
    return quantiles[:, 0, :], attention


def export(fit: Any, directory: Path) -> Path:
    """``<directory>/saved_model/`` with the ``serving_default`` signature (metadata is written by the caller)."""
    import tensorflow as tf

    from bitpredict.forecast.artifact import SAVED_MODEL_DIR, SIGNATURE

    directory.mkdir(parents=True, exist_ok=True)
    instance = module(fit)
    tf.saved_model.save(instance, str(directory / SAVED_MODEL_DIR), signatures={SIGNATURE: instance.serve})
    return directory
