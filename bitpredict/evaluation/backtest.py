"""Walk-forward backtest of the network and every baseline on the same days, and the verdict.

The last ``model.test_days`` labelled days are cut into blocks of ``model.refit_every_days``. At the start
of each block the network recipe and every baseline are refitted on all rows before the block (expanding
window), then forecast each day of the block one step ahead. No day is forecast by a model that saw its
target.

Two kinds of method are scored on the same days:

* **probabilistic** — the network and the baselines that are models too (``bitpredict.forecast.baselines``: EWMA,
  empirical, GARCH-t, HAR), each giving the quantiles of the next-day log return. Primary score: the mean
  pinball loss over the quantile levels (``primary``), on log returns; beside it the pinball per level,
  the interval (Winkler) score, CRPS from the quantiles, and coverage per level.
* **point** — persistence (tomorrow = today), drift, SMA-7, ARIMA(1,0,1), ridge and gradient boosting:
  context for the median, scored on the close (MAE, RMSE, MAPE), the direction (zero-return days left
  out) and skill = 1 − MAE / MAE(persistence).

Tests are Diebold–Mariano with a HAC variance on scale-free losses (``bitpredict.evaluation.scores``). The champion
is the best probabilistic method on the primary score; the network qualifies only when it beats the best
baseline significantly and its median is no worse than persistence (``decide``).

This module measures and decides; tables and plots are ``bitpredict.evaluation.report``'s, and the stage that
runs both and writes the files is ``bitpredict.evaluation.evaluate`` (measurement ← report ← stage).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from bitpredict.config import ModelSettings, PromotionSettings
from bitpredict.errors import InputError
from bitpredict.evaluation import scores
from bitpredict.evaluation.scores import PRIMARY
from bitpredict.features.columns import TARGET
from bitpredict.forecast import baselines
from bitpredict.forecast.dataset import Scaler, model_input_columns
from bitpredict.forecast.train import MODEL_KIND, fit_recipe

log = logging.getLogger(__name__)

MODEL = MODEL_KIND
POINT_BASELINES = ("persistence", "drift", "sma_7", "arima", "ridge", "gbm")
BASELINES = POINT_BASELINES  # kept name: the point baselines
NAIVE = "ewma"  # the naive probabilistic model: persistence with RiskMetrics volatility
ARIMA_HISTORY = 1000  # ARIMA is fitted on the last 1000 returns before each block (older regimes add little)


@dataclass
class Backtest:
    predictions: pd.DataFrame  # one row per test day t: actual and predicted next-day returns and closes
    attention: np.ndarray  # [days, W] network attention weights
    blocks: list[dict[str, Any]]
    probabilistic: tuple[str, ...]  # methods with quantiles, network first
    levels: tuple[float, ...]

    def daily_pinball(self, method: str) -> np.ndarray:
        """``method``'s per-day mean pinball loss (the primary score's daily values)."""
        return pinball_series(self.predictions, method, self.levels)


def quantile_column(method: str, level: float) -> str:
    return f"{method}_q{round(level * 100):02d}"


# --------------------------------------------------------------------------------------------
# point baselines: each returns predicted next-day log returns for rows [start, end), fitted on rows < start
# --------------------------------------------------------------------------------------------


def drift_forecast(frame: pd.DataFrame, start: int, end: int) -> np.ndarray:
    returns = frame["log_return_1"].to_numpy(dtype="float64")
    expanding = np.cumsum(returns) / np.arange(1, len(returns) + 1)
    return expanding[start:end]


def sma_forecast(frame: pd.DataFrame, start: int, end: int) -> np.ndarray:
    return np.log(frame["sma_7"].to_numpy()[start:end] / frame["close"].to_numpy()[start:end])


def arima_forecast(frame: pd.DataFrame, start: int, end: int) -> np.ndarray:
    """ARIMA(1,0,1) with a constant on next-day returns; parameters fixed per block, state updated daily."""
    from statsmodels.tsa.arima.model import ARIMA

    target = frame[TARGET].to_numpy(dtype="float64")
    lo = max(0, start - ARIMA_HISTORY)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence chatter; the fit is checked by the metrics
        fitted = ARIMA(target[lo:start], order=(1, 0, 1), trend="c").fit()
        # One-step predictions over [lo, end): position t is E[y_t | y_<t], the forecast made on day t.
        # An empty target (a day next to a filled bar) is a missing observation to the state-space model.
        applied = fitted.apply(target[lo:end])
    return np.asarray(applied.predict())[start - lo :]


def regression_forecast(
    kind: str, values: np.ndarray, target: np.ndarray, start: int, end: int, seed: int
) -> np.ndarray:
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.linear_model import Ridge

    model = (
        Ridge(alpha=10.0)
        if kind == "ridge"
        else HistGradientBoostingRegressor(max_iter=200, learning_rate=0.05, max_leaf_nodes=15, random_state=seed)
    )
    known = np.isfinite(target[:start])  # days whose target would span a filled bar are not labels
    model.fit(values[:start][known], target[:start][known])
    return model.predict(values[start:end])


def point_forecasts(
    frame: pd.DataFrame, columns: list[str], config: ModelSettings, start: int, end: int
) -> dict[str, np.ndarray]:
    target = frame[TARGET].to_numpy(dtype="float64")
    scaled = Scaler.fit(frame.iloc[:start], columns).transform(frame)
    return {
        "persistence": np.zeros(end - start),
        "drift": drift_forecast(frame, start, end),
        "sma_7": sma_forecast(frame, start, end),
        "arima": arima_forecast(frame, start, end),
        "ridge": regression_forecast("ridge", scaled, target, start, end, config.seed),
        "gbm": regression_forecast("gbm", scaled, target, start, end, config.seed),
    }


# --------------------------------------------------------------------------------------------
# walk-forward
# --------------------------------------------------------------------------------------------


def blocks_of(n: int, config: ModelSettings) -> list[tuple[int, int]]:
    start = n - config.test_days
    if start <= 0:
        raise InputError(f"{n} labelled rows cannot hold a {config.test_days}-day test span")
    return [(b, min(b + config.refit_every_days, n)) for b in range(start, n, config.refit_every_days)]


def median_index(levels: tuple[float, ...]) -> int:
    return levels.index(0.5) if 0.5 in levels else len(levels) // 2


def walk_forward(
    frame: pd.DataFrame,
    columns: list[str],
    config: ModelSettings,
    progress: Callable[[str], None] | None = None,
    extra_networks: dict[str, ModelSettings] | None = None,
) -> Backtest:
    """Backtest the network, the probabilistic and the point baselines over the last ``test_days`` rows.

    ``extra_networks``: more network recipes to score on the same blocks (e.g. the current champion's
    recipe when it differs from this run's), by method name.
    """
    target = frame[TARGET].to_numpy(dtype="float64")
    close = frame["close"].to_numpy(dtype="float64")
    levels = tuple(config.quantiles)
    networks = {MODEL: config, **(extra_networks or {})}
    probabilistic = (*networks, *config.baselines)
    parts: list[pd.DataFrame] = []
    attention: list[np.ndarray] = []
    blocks: list[dict[str, Any]] = []
    plan = blocks_of(len(frame), config)
    for number, (start, end) in enumerate(plan, 1):
        if progress:
            progress(f"block {number}/{len(plan)}: fit on {start} rows, forecast {end - start} days")
        ends = np.arange(start, end)
        columns_out: dict[str, Any] = {
            "timestamp": frame["timestamp"].iloc[start:end].to_numpy(),
            "close": close[start:end],
            "actual_return": target[start:end],
            "block": number,
        }
        block: dict[str, Any] = {"block": number, "train_rows": start}
        for name, recipe in networks.items():
            inputs = model_input_columns(frame.columns, recipe.use_sentiment, recipe.exclude_features)
            trained = fit_recipe(frame, inputs, recipe, end=start)
            quantiles, weights = trained.predict(frame, ends)
            columns_out.update({quantile_column(name, q): quantiles[:, i] for i, q in enumerate(levels)})
            if name == MODEL:
                attention.append(weights)
                block.update(epochs_run=trained.epochs_run, best_epoch=trained.best_epoch)
        for kind in config.baselines:
            fit = baselines.fit_baseline(kind, frame, start, levels, config.window)
            quantiles, _ = baselines.predict(fit, frame, ends)
            columns_out.update({quantile_column(kind, q): quantiles[:, i] for i, q in enumerate(levels)})
        for name, values in point_forecasts(frame, columns, config, start, end).items():
            columns_out[f"{name}_return"] = values
        part = pd.DataFrame(columns_out)
        parts.append(part)
        block.update(first_day=str(part["timestamp"].iloc[0].date()), last_day=str(part["timestamp"].iloc[-1].date()))
        blocks.append(block)
    predictions = pd.concat(parts, ignore_index=True)
    scored = np.isfinite(predictions["actual_return"].to_numpy())  # no actual for a day next to a filled bar
    for block in blocks:
        block["unlabelled_days"] = int((~scored[predictions["block"].to_numpy() == block["block"]]).sum())
    predictions = predictions[scored].reset_index(drop=True)
    attention_rows = np.concatenate(attention)[scored] if attention else np.zeros((0, config.window))
    predictions["actual_close"] = predictions["close"] * np.exp(predictions["actual_return"])
    mid = median_index(levels)
    for method in probabilistic:
        predictions[f"{method}_return"] = predictions[quantile_column(method, levels[mid])]
        predictions[f"{method}_lower_return"] = predictions[quantile_column(method, levels[0])]
        predictions[f"{method}_upper_return"] = predictions[quantile_column(method, levels[-1])]
        for suffix in ("lower_", "upper_"):
            predictions[f"{method}_{suffix}close"] = predictions["close"] * np.exp(
                predictions[f"{method}_{suffix}return"]
            )
    for method in (*probabilistic, *POINT_BASELINES):
        predictions[f"{method}_close"] = predictions["close"] * np.exp(predictions[f"{method}_return"])
    return Backtest(predictions, attention_rows, blocks, probabilistic, levels)


# --------------------------------------------------------------------------------------------
# metrics
# --------------------------------------------------------------------------------------------


def point_metrics(predictions: pd.DataFrame, method: str) -> dict[str, float]:
    actual = predictions["actual_close"].to_numpy()
    error = predictions[f"{method}_close"].to_numpy() - actual
    direction, _ = scores.direction_accuracy(predictions["actual_return"], predictions[f"{method}_return"])
    return {
        "mae": float(np.mean(np.abs(error))),
        "rmse": float(np.sqrt(np.mean(error**2))),
        "mape": float(np.mean(np.abs(error) / actual) * 100),
        "directional_accuracy": direction,
    }


def absolute_log_error(predictions: pd.DataFrame, method: str) -> np.ndarray:
    """Scale-free point loss: |predicted − actual| next-day log return."""
    return np.abs(predictions[f"{method}_return"].to_numpy() - predictions["actual_return"].to_numpy())


def quantiles_of(predictions: pd.DataFrame, method: str, levels: tuple[float, ...]) -> np.ndarray:
    return predictions[[quantile_column(method, q) for q in levels]].to_numpy(dtype="float64")


def probabilistic_metrics(predictions: pd.DataFrame, method: str, levels: tuple[float, ...]) -> dict[str, float]:
    actual = predictions["actual_return"].to_numpy(dtype="float64")
    quantiles = quantiles_of(predictions, method, levels)
    loss = scores.pinball(actual, quantiles, levels)
    alpha = 1.0 - (levels[-1] - levels[0])
    out = {PRIMARY: float(loss.mean())}
    for i, q in enumerate(levels):
        out[f"pinball_q{round(q * 100):02d}"] = float(loss[:, i].mean())
        out[f"coverage_q{round(q * 100):02d}"] = float(np.mean(actual <= quantiles[:, i]))
    out["winkler"] = float(scores.interval_score(actual, quantiles[:, 0], quantiles[:, -1], alpha).mean())
    out["crps"] = float(scores.crps(actual, quantiles, levels).mean())
    out["interval_coverage"] = float(np.mean((actual >= quantiles[:, 0]) & (actual <= quantiles[:, -1])))
    out["interval_nominal"] = round(levels[-1] - levels[0], 6)
    return out


def pinball_series(predictions: pd.DataFrame, method: str, levels: tuple[float, ...]) -> np.ndarray:
    """Per-day mean pinball loss (the primary score's daily values, for the DM test)."""
    actual = predictions["actual_return"].to_numpy(dtype="float64")
    return scores.pinball(actual, quantiles_of(predictions, method, levels), levels).mean(axis=1)


def compute_metrics(backtest: Backtest) -> dict[str, Any]:
    predictions, levels = backtest.predictions, backtest.levels
    probabilistic = backtest.probabilistic
    results: dict[str, dict[str, Any]] = {}
    for method in (*probabilistic, *POINT_BASELINES):
        results[method] = {**point_metrics(predictions, method), "probabilistic": method in probabilistic}
        if method in probabilistic:
            results[method].update(probabilistic_metrics(predictions, method, levels))
    persistence_loss = absolute_log_error(predictions, "persistence")
    for method, values in results.items():
        values["skill"] = 1.0 - values["mae"] / results["persistence"]["mae"]
        if method != "persistence":
            values["dm_stat"], values["dm_pvalue"] = scores.diebold_mariano(
                absolute_log_error(predictions, method), persistence_loss
            )
    baseline_kinds = [m for m in probabilistic if m not in (MODEL,) and not m.startswith("champion")]
    best_baseline = min(baseline_kinds, key=lambda m: results[m][PRIMARY]) if baseline_kinds else None
    for method in probabilistic:
        reference = best_baseline if method not in baseline_kinds else (NAIVE if NAIVE in results else None)
        if reference is None or reference == method:
            continue
        stat, p = scores.diebold_mariano(
            pinball_series(predictions, method, levels), pinball_series(predictions, reference, levels)
        )
        results[method].update(pinball_dm_vs=reference, pinball_dm_stat=stat, pinball_dm_pvalue=p)
        results[method]["pinball_skill"] = 1.0 - results[method][PRIMARY] / results[reference][PRIMARY]
    actual = predictions["actual_return"]
    moved = actual[actual != 0]
    share_up = float((moved > 0).mean()) if len(moved) else float("nan")
    return {
        "methods": results,
        "primary": PRIMARY,
        "levels": list(levels),
        "probabilistic": list(probabilistic),
        "best_baseline": best_baseline,
        "days": len(predictions),
        "first_day": str(predictions["timestamp"].iloc[0].date()),
        "last_day": str(predictions["timestamp"].iloc[-1].date()),
        "zero_return_days": int((actual == 0).sum()),
        "share_up_days": share_up,
        "majority_class_accuracy": max(share_up, 1 - share_up),
        "crps_method": "scoringrules.crps_quantile (from the forecast quantiles: 2 × mean pinball)",
    }


def decide(metrics: dict[str, Any], policy: PromotionSettings) -> dict[str, Any]:
    """Which method is the champion of this evaluation, and does the network earn it? Every check with its figures.

    The network wins only when its primary score beats the best baseline's with a HAC-DM p-value at most
    ``policy.max_dm_pvalue`` and its median is no worse than persistence (point skill above
    ``policy.min_skill_vs_persistence``); otherwise the best baseline — which is never worse than the
    naive EWMA on the primary score, since EWMA is one of them — is the champion.
    """
    methods = metrics["methods"]
    network = methods[MODEL]
    best_baseline = metrics["best_baseline"]
    checks = {
        "primary_vs_best_baseline": {
            "value": network[PRIMARY],
            "required": f"< {best_baseline} ({methods[best_baseline][PRIMARY]:.6f})",
            "passed": network[PRIMARY] < methods[best_baseline][PRIMARY] or not policy.require_best_baseline,
        },
        "dm_pvalue_vs_best_baseline": {
            "value": network.get("pinball_dm_pvalue", 1.0),
            "required": f"<= {policy.max_dm_pvalue}",
            "passed": network.get("pinball_dm_pvalue", 1.0) <= policy.max_dm_pvalue,
        },
        "point_skill_vs_persistence": {
            "value": network["skill"],
            "required": f">= {policy.min_skill_vs_persistence}",
            "passed": network["skill"] >= policy.min_skill_vs_persistence,
        },
    }
    failed = [name for name, check in checks.items() if not check["passed"]]
    best = MODEL if not failed else best_baseline
    score = methods[best][PRIMARY]
    why = (
        f"{MODEL} beats the best baseline {best_baseline} on {PRIMARY} ({score:.6f} vs "
        f"{methods[best_baseline][PRIMARY]:.6f}, HAC-DM p {network['pinball_dm_pvalue']:.3f})"
        if best == MODEL
        else f"{best} has the lowest {PRIMARY} of the baselines ({score:.6f}); {MODEL} does not earn it "
        f"({', '.join(failed)})"
    )
    return {
        "beats_baselines": not failed,
        "checks": checks,
        "reason": "beats every baseline" if not failed else "fails: " + ", ".join(failed),
        "best": best,
        "why": why,
    }


# --------------------------------------------------------------------------------------------
# the stage
# --------------------------------------------------------------------------------------------
