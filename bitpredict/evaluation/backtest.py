"""Walk-forward backtest of the network and every baseline on the same days, and the verdict.

The last ``promotion.selection_days + model.test_days`` labelled days are cut into blocks of
``model.refit_every_days`` (the test span starts on a block boundary). At the start of each block the network
recipe, every baseline and the combination are refitted on all rows before the block (expanding window), then
forecast each day of the block one step ahead. No day is forecast by a model that saw its target. The first
span (*selection*) chooses the challenger; the last ``test_days`` (*confirmation*, the evaluation window) are
what every reported figure is measured on and where the switching rule tests the challenger
(``bitpredict.evaluation.switching``).

Two kinds of method are scored on the same days:

* **probabilistic** — the network and the baselines that are models too (``bitpredict.forecast.baselines``: EWMA,
  empirical, GARCH-FHS, HAR) and their equal-weight combination ``combo``, each giving the quantiles of the
  next-day log return. Primary score: the mean pinball loss over the quantile levels (``primary``), on log
  returns; beside it the pinball and coverage per level, the CRPS of the implied distribution, the 80 % and
  90 % intervals' coverage with their Kupiec and Christoffersen tests per tail, and the volatility forecast
  (QLIKE, log-variance MSE and R² against the Garman–Klass proxy).
* **point** — persistence (tomorrow = today), drift, SMA-7, ARIMA(1,0,1), ridge and gradient boosting:
  context for the median, scored on the close (MAE, RMSE, MAPE in dollars), the direction (zero-return days
  left out) and **point skill = 1 − MAE / MAE(persistence) of the next-day log return** (the one definition
  used everywhere: scale-free, so an expensive month does not dominate it).

Tests are one-sided Diebold–Mariano with a HAC variance on scale-free losses (``bitpredict.evaluation.scores``).
The champion follows the switching rule (``decide``).

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
from bitpredict.evaluation.horizon_metrics import horizon_metrics
from bitpredict.evaluation.scores import PRIMARY
from bitpredict.features.columns import TARGET
from bitpredict.forecast import baselines
from bitpredict.forecast.dataset import Scaler, model_input_columns
from bitpredict.forecast.horizons import horizon_returns, horizon_suffix
from bitpredict.forecast.train import MODEL_KIND, fit_recipe

log = logging.getLogger(__name__)

MODEL = MODEL_KIND
POINT_BASELINES = ("persistence", "drift", "sma_7", "arima", "ridge", "gbm")
BASELINES = POINT_BASELINES  # kept name: the point baselines
COMBO = "combo"  # bitpredict.forecast.combination.KIND (not imported at module level: it pulls TensorFlow lazily)
NAIVE = "ewma"  # the naive probabilistic model: persistence with RiskMetrics volatility
ARIMA_HISTORY = 1000  # ARIMA is fitted on the last 1000 returns before each block (older regimes add little)


@dataclass
class Backtest:
    predictions: pd.DataFrame  # one row per forecast day t: actual and predicted next-day returns and closes
    attention: np.ndarray  # [days, W] network attention weights
    blocks: list[dict[str, Any]]
    probabilistic: tuple[str, ...]  # methods with quantiles, network first
    levels: tuple[float, ...]
    combination: tuple[str, ...] = ()  # the combination's members (empty: no combination)
    horizons: tuple[int, ...] = (1,)  # days ahead; h > 1 in the columns <method>_h<h>_q<level>, actual_return_h<h>

    def daily_pinball(self, method: str) -> np.ndarray:
        """``method``'s per-day mean pinball loss on the confirmation (test) days."""
        return pinball_series(self.test, method, self.levels)

    @property
    def test(self) -> pd.DataFrame:
        """The confirmation span: the evaluation window every reported figure is measured on."""
        return self.predictions[self.predictions["period"] == TEST].reset_index(drop=True)

    @property
    def selection(self) -> pd.DataFrame:
        """The span before it, on which the challenger is chosen."""
        return self.predictions[self.predictions["period"] == SELECTION].reset_index(drop=True)


SELECTION, TEST = "selection", "test"


def quantile_column(method: str, level: float) -> str:
    return f"{method}_q{round(level * 100):02d}"


def horizon_columns(
    method: str, quantiles: np.ndarray, levels: tuple[float, ...], horizons: tuple[int, ...]
) -> dict[str, np.ndarray]:
    """``method``'s forecast [N, H, Q] as columns: ``<method>_q10`` … for the next day (the names every reader
    knows), ``<method>_h7_q10`` … for the longer horizons."""
    return {
        quantile_column(f"{method}{horizon_suffix(h)}", q): quantiles[:, j, i]
        for j, h in enumerate(horizons)
        for i, q in enumerate(levels)
    }


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


def blocks_of(n: int, config: ModelSettings, selection_days: int = 0) -> list[tuple[int, int, str]]:
    """(start, end, period) blocks: ``selection_days`` then ``test_days`` up to row ``n``, each cut every
    ``refit_every_days``, so the test span starts on a block boundary."""
    test_start = n - config.test_days
    first = test_start - selection_days
    if first <= 0:
        raise InputError(
            f"{n} labelled rows cannot hold a {selection_days}-day selection span and a {config.test_days}-day "
            "test span"
        )
    step = config.refit_every_days
    selection = [(b, min(b + step, test_start), SELECTION) for b in range(first, test_start, step)]
    return selection + [(b, min(b + step, n), TEST) for b in range(test_start, n, step)]


def median_index(levels: tuple[float, ...]) -> int:
    return levels.index(0.5) if 0.5 in levels else len(levels) // 2


def walk_forward(
    frame: pd.DataFrame,
    columns: list[str],
    config: ModelSettings,
    progress: Callable[[str], None] | None = None,
    extra_networks: dict[str, ModelSettings] | None = None,
    selection_days: int = 0,
    with_network: bool = True,
) -> Backtest:
    """Backtest the network, the probabilistic baselines, their combination and the point baselines over the
    last ``selection_days + test_days`` rows (see the module docstring).

    ``extra_networks``: more network recipes to score on the same blocks (e.g. the current champion's
    recipe when it differs from this run's), by method name. ``with_network=False``: the baselines and the
    combination only (the rolling-origin backtest's fast mode).
    """
    from bitpredict.forecast import combination

    target = frame[TARGET].to_numpy(dtype="float64")
    close = frame["close"].to_numpy(dtype="float64")
    next_gk = np.exp(frame["log_gk_var_1"].to_numpy(dtype="float64"))[1:] if "log_gk_var_1" in frame else None
    levels, horizons = tuple(config.quantiles), tuple(config.horizons)
    outcomes = horizon_returns(frame, horizons)
    networks = {MODEL: config, **(extra_networks or {})} if with_network else {}
    combined = (combination.KIND,) if config.combination else ()
    probabilistic = (*networks, *config.baselines, *combined)
    parts: list[pd.DataFrame] = []
    attention: list[np.ndarray] = []
    blocks: list[dict[str, Any]] = []
    plan = blocks_of(len(frame), config, selection_days)
    for number, (start, end, period) in enumerate(plan, 1):
        if progress:
            progress(f"block {number}/{len(plan)} ({period}): fit on {start} rows, forecast {end - start} days")
        ends = np.arange(start, end)
        columns_out: dict[str, Any] = {
            "timestamp": frame["timestamp"].iloc[start:end].to_numpy(),
            "close": close[start:end],
            "actual_return": target[start:end],
            "next_gk_variance": np.append(next_gk, np.nan)[start:end] if next_gk is not None else np.nan,
            "block": number,
            "period": period,
            **{f"actual_return{horizon_suffix(h)}": outcomes[start:end, j] for j, h in enumerate(horizons) if h > 1},
        }
        block: dict[str, Any] = {"block": number, "period": period, "train_rows": start}
        for name, recipe in networks.items():
            inputs = model_input_columns(frame.columns, recipe.use_sentiment, recipe.exclude_features)
            trained = fit_recipe(frame, inputs, recipe, end=start)
            quantiles, weights = trained.predict_horizons(frame, ends)
            columns_out.update(horizon_columns(name, quantiles, levels, horizons))
            if name == MODEL:
                attention.append(weights)
                block.update(epochs_run=trained.epochs_run, best_epoch=trained.best_epoch)
        fits: dict[str, Any] = {}
        for kind in config.baselines:
            fits[kind] = baselines.fit_baseline(kind, frame, start, levels, config.window, horizons)
        if combined:
            fits[combination.KIND] = combination.combine(
                config.combination, frame, start, levels, config.window, fits, horizons
            )
        for kind, fit in fits.items():
            quantiles, _ = baselines.predict_horizons(fit, frame, ends)
            columns_out.update(horizon_columns(kind, quantiles, levels, horizons))
        if "garch" in fits:  # reported per refit: the fit sits on its bounds on daily BTC (α + β ≈ 1, ν ≈ 3)
            block["garch"] = {k: round(float(fits["garch"].params[k]), 4) for k in ("alpha", "beta", "nu")}
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
    network_rows = np.concatenate(attention)[scored] if attention else np.zeros((0, config.window))
    attention_rows = network_rows[(predictions["period"] == TEST).to_numpy()] if len(network_rows) else network_rows
    predictions["actual_close"] = predictions["close"] * np.exp(predictions["actual_return"])
    mid = median_index(levels)
    low, high = levels.index(0.1), levels.index(0.9)  # the served 80 % interval
    for method in probabilistic:
        predictions[f"{method}_return"] = predictions[quantile_column(method, levels[mid])]
        predictions[f"{method}_lower_return"] = predictions[quantile_column(method, levels[low])]
        predictions[f"{method}_upper_return"] = predictions[quantile_column(method, levels[high])]
        for suffix in ("lower_", "upper_"):
            predictions[f"{method}_{suffix}close"] = predictions["close"] * np.exp(
                predictions[f"{method}_{suffix}return"]
            )
    for method in (*probabilistic, *POINT_BASELINES):
        predictions[f"{method}_close"] = predictions["close"] * np.exp(predictions[f"{method}_return"])
    return Backtest(predictions, attention_rows, blocks, probabilistic, levels, tuple(config.combination), horizons)


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


def probabilistic_metrics(predictions: pd.DataFrame, method: str, levels: tuple[float, ...]) -> dict[str, Any]:
    """Pinball (mean and per level), coverage per level, CRPS, the 80 %/90 % intervals with their tests, and the
    volatility forecast's scores, on ``predictions``' days."""
    from bitpredict.evaluation.coverage import tail_tests
    from bitpredict.forecast.quantiles import implied_volatility

    actual = predictions["actual_return"].to_numpy(dtype="float64")
    quantiles = quantiles_of(predictions, method, levels)
    loss = scores.pinball(actual, quantiles, levels)
    out: dict[str, Any] = {PRIMARY: float(loss.mean())}
    for i, q in enumerate(levels):
        out[f"pinball_q{round(q * 100):02d}"] = float(loss[:, i].mean())
        out[f"coverage_q{round(q * 100):02d}"] = float(np.mean(actual <= quantiles[:, i]))
    out["crps"] = float(scores.crps(actual, quantiles, levels).mean())
    tests = tail_tests(actual, quantiles, levels)
    for coverage in (0.8, 0.9):
        test = tests.get(f"interval_{coverage:g}")
        if test is not None:
            tag = f"{round(coverage * 100)}"
            out[f"interval_{tag}_coverage"] = 1.0 - test["observed_rate"]
            out[f"interval_{tag}_kupiec_p"] = test["kupiec_p"]
            out[f"interval_{tag}_christoffersen_p"] = test["christoffersen_p"]
    out["interval_coverage"] = out.get("interval_80_coverage", float("nan"))  # the served interval's, for old readers
    out["tail_tests"] = tests
    variance = implied_volatility(levels, quantiles) ** 2
    proxy = predictions["next_gk_variance"].to_numpy(dtype="float64") if "next_gk_variance" in predictions else None
    if proxy is not None:
        ok = np.isfinite(proxy) & (proxy > 0) & (variance > 0)
        if ok.sum() >= 3:
            out["volatility_qlike"] = float(scores.qlike(proxy[ok], variance[ok]).mean())
            out["volatility_log_mse"] = scores.log_variance_mse(proxy[ok], variance[ok])
            out["volatility_r2"] = scores.mincer_zarnowitz_r2(proxy[ok], variance[ok])
    return out


def pinball_series(predictions: pd.DataFrame, method: str, levels: tuple[float, ...]) -> np.ndarray:
    """Per-day mean pinball loss (the primary score's daily values, for the DM test)."""
    actual = predictions["actual_return"].to_numpy(dtype="float64")
    return scores.pinball(actual, quantiles_of(predictions, method, levels), levels).mean(axis=1)


def single_baselines(probabilistic: tuple[str, ...] | list[str]) -> list[str]:
    """The probabilistic baselines alone: not the network, a champion's recipe or the combination."""
    return [m for m in probabilistic if m != MODEL and not m.startswith("champion") and m != COMBO]


def compute_metrics(backtest: Backtest) -> dict[str, Any]:
    """Every figure of the confirmation (test) span: what the reports and the registry show."""
    predictions, levels = backtest.test, backtest.levels
    probabilistic = backtest.probabilistic
    results: dict[str, dict[str, Any]] = {}
    for method in (*probabilistic, *POINT_BASELINES):
        results[method] = {**point_metrics(predictions, method), "probabilistic": method in probabilistic}
        if method in probabilistic:
            results[method].update(probabilistic_metrics(predictions, method, levels))
    persistence_loss = absolute_log_error(predictions, "persistence")
    for method, values in results.items():
        values["skill"] = 1.0 - float(np.mean(absolute_log_error(predictions, method))) / float(
            np.mean(persistence_loss)
        )
        if method != "persistence":
            values["dm_stat"], values["dm_pvalue"] = scores.diebold_mariano(
                absolute_log_error(predictions, method), persistence_loss
            )
    singles = single_baselines(probabilistic)
    best_baseline = min(singles, key=lambda m: results[m][PRIMARY]) if singles else None
    for method in probabilistic:
        for label, reference in (("naive", NAIVE), ("best", best_baseline)):
            if reference is None or reference == method or reference not in results:
                continue
            stat, p = scores.diebold_mariano(
                pinball_series(predictions, method, levels), pinball_series(predictions, reference, levels)
            )
            results[method].update(
                {
                    f"pinball_dm_vs_{label}": reference,
                    f"pinball_dm_stat_vs_{label}": stat,
                    f"pinball_dm_pvalue_vs_{label}": p,
                    f"pinball_skill_vs_{label}": 1.0 - results[method][PRIMARY] / results[reference][PRIMARY],
                }
            )
    actual = predictions["actual_return"]
    moved = actual[actual != 0]
    share_up = float((moved > 0).mean()) if len(moved) else float("nan")
    selection = backtest.selection
    return {
        "methods": results,
        "primary": PRIMARY,
        "levels": list(levels),
        "probabilistic": list(probabilistic),
        "best_baseline": best_baseline,
        "days": len(predictions),
        "first_day": str(predictions["timestamp"].iloc[0].date()),
        "last_day": str(predictions["timestamp"].iloc[-1].date()),
        "selection": {
            "days": len(selection),
            "first_day": str(selection["timestamp"].iloc[0].date()) if len(selection) else None,
            "last_day": str(selection["timestamp"].iloc[-1].date()) if len(selection) else None,
            "scores": {m: float(pinball_series(selection, m, levels).mean()) for m in probabilistic}
            if len(selection)
            else {},
        },
        "zero_return_days": int((actual == 0).sum()),
        "share_up_days": share_up,
        "majority_class_accuracy": max(share_up, 1 - share_up),
        "point_skill": "1 − MAE / MAE(persistence) of the next-day log return",
        "crps_method": "scoringrules.crps_quantile on 99 levels of the implied quantile function",
        "volatility_proxy": "next day's Garman–Klass range variance; forecast: (q90 − q10) / 2.563 squared",
        "horizons": horizon_metrics(predictions, probabilistic, levels, backtest.horizons),
    }


def incumbent_method(champion: dict[str, Any] | None, backtest: Backtest) -> str | None:
    """The method name the registry's champion was scored under in this backtest (None: an empty registry).

    A baseline or the combination is its kind; a network is ``lstm`` when its recipe is this run's, else the
    ``champion_v<N>`` method evaluate added for it.
    """
    if champion is None:
        return None
    kind = champion.get("kind", MODEL)
    if kind != MODEL:
        return kind
    extra = [m for m in backtest.probabilistic if m.startswith("champion_v")]
    return extra[0] if extra else MODEL


def decide(
    backtest: Backtest, metrics: dict[str, Any], incumbent: str | None, policy: PromotionSettings
) -> dict[str, Any]:
    """The champion after this evaluation, by the switching rule (``bitpredict.evaluation.switching``), with its
    test; and whether the network beats every single baseline (its own one-sided test, for the report)."""
    from bitpredict.evaluation.switching import switching_rule

    levels = backtest.levels
    candidates = [m for m in backtest.probabilistic if not m.startswith("champion_v")]
    selection, test = backtest.selection, backtest.test
    rule = (
        switching_rule(
            {m: pinball_series(selection, m, levels) for m in candidates} if len(selection) else {},
            {m: pinball_series(test, m, levels) for m in backtest.probabilistic},
            incumbent,
            policy.default_champion,
            policy.switch_pvalue,
            policy.min_confirmation_days,
        )
        if len(selection)
        else _no_selection(backtest, metrics, incumbent, policy)
    )
    network = metrics["methods"][MODEL]
    best = metrics["best_baseline"]
    membership = network_membership(backtest, policy.switch_pvalue)
    p_network = network.get("pinball_dm_pvalue_vs_best", 1.0)
    beats = (
        best is not None and network[PRIMARY] < metrics["methods"][best][PRIMARY] and p_network < policy.switch_pvalue
    )
    return {
        **rule,
        "best": rule["champion"],
        "beats_baselines": bool(beats),
        "network_vs_best_baseline": {"against": best, "p_value": p_network},
        "network_membership": membership,
        "reason": rule["why"],
        "confirmation_window": f"{metrics['first_day']}/{metrics['last_day']}",
        "selection_window": f"{metrics['selection']['first_day']}/{metrics['selection']['last_day']}",
    }


def network_membership(backtest: Backtest, pvalue: float) -> dict[str, Any] | None:
    """Would the network improve the combination? The combination with the network as one more equal member
    against the combination, one-sided HAC-DM on the confirmation days. The served combination holds the baselines
    only; this says whether adding the network is worth building (it joins only on this evidence)."""
    k = len(backtest.combination)
    if not k or MODEL not in backtest.probabilistic or COMBO not in backtest.probabilistic:
        return None
    test, levels = backtest.test, backtest.levels
    actual = test["actual_return"].to_numpy(dtype="float64")
    joined = (k * quantiles_of(test, COMBO, levels) + quantiles_of(test, MODEL, levels)) / (k + 1)
    with_network = scores.pinball(actual, joined, levels).mean(axis=1)
    statistic, p = scores.diebold_mariano(with_network, pinball_series(test, COMBO, levels))
    return {
        "members": [*backtest.combination, MODEL],
        "score_with_network": float(with_network.mean()),
        "score_without": float(pinball_series(test, COMBO, levels).mean()),
        "statistic": statistic,
        "p_value": p,
        "improves": bool(p < pvalue),
    }


def _no_selection(
    backtest: Backtest, metrics: dict[str, Any], incumbent: str | None, policy: PromotionSettings
) -> dict[str, Any]:
    """No selection span (``selection_days`` 0): nothing can be confirmed, the incumbent (or default) stays."""
    holder = incumbent or (policy.default_champion if policy.default_champion in metrics["methods"] else NAIVE)
    return {
        "champion": holder,
        "challenger": None,
        "incumbent": holder,
        "first_champion": incumbent is None,
        "selection_scores": {},
        "switched": False,
        "test": None,
        "why": f"{holder} kept: no selection span to choose a challenger on",
    }


# --------------------------------------------------------------------------------------------
# the stage
# --------------------------------------------------------------------------------------------
