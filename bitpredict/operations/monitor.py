"""Drift: are today's model inputs still like the ones the model was trained on — and is it still useful?

* **Reference**: the training rows' inputs saved with the model (``reference.parquet`` beside the
  SavedModel), or the features table over the model's training span when the file is missing.
* **Current**: the inputs of the recently served requests (rebuilt from the request log's bars, flags and
  sentiment with the serving code) and the newly ingested days of the features table after the reference
  ends, the last ``drift.window_days`` of them — one row per day: a day's latest request, so a day someone
  looked at often does not outweigh the others.
* **Columns**: returns, scale-free indicators and sentiment — never price levels, which always drift,
  and not the calendar.
* **Test, calibrated on the training history** (``calibrated_thresholds``): Evidently's K-S test per column,
  but a column counts as drifted only when its p-value is below what the training history itself shows for
  windows of the same length — the ``drift.threshold`` quantile (5 %) of the p-values of every ``n``-day window
  of the reference against the rest of it. Why: the inputs are rolling-window statistics (20–50-day SMAs,
  volatilities, RSI), so consecutive days share most of their information and 60 days are a handful of
  independent observations, not 60. K-S assumes independent samples, so at a plain 0.05 almost any 60-day
  stretch of a market that moves through regimes "drifts" from a decade of history (measured on ../shared/data
  with the reference ending 2023-12-31: 42–88 % of the columns at every 10th day of 2024, at or above half of
  them on all but two). Calibrating on the history's own windows keeps K-S (and Evidently's report)
  but asks the question that matters: *is this window more unusual than 95 % of the windows the model was
  trained on?* No threshold is fitted to any particular data: the 5 % level is the usual test size, and the
  window length is the check's own (its latest whole 10-day blocks, so a daily check recalibrates only when
  the window grows by a block).
* **Report**: Evidently's ``DataDriftPreset`` (per-column test with the calibrated thresholds, FAIL =
  drifted), saved as HTML by ``bitpredict.operations.monitor_report``. When realised prices are known for past
  forecasts, the live MAE next to persistence's on the same days (each forecast day once: its latest
  forecast; the last ``drift.window_days`` of them).
* **Decision**: drift when the share of drifted columns reaches ``drift.share_threshold`` or live skill
  falls below ``drift.min_live_skill`` over at least ``drift.min_rows`` closed days (fewer days of errors
  are noise, not degradation). One episode (consecutive drifting checks) triggers one rerun, and no two
  triggers come closer than ``drift.cooldown_hours``. The state lives in ``reports/drift/state.json``.
This module measures and decides (``measure``, ``decide``, ``DriftState``); it writes nothing. The check that
runs it — the decision made under a lock with the episode's marker written before any rerun, the trigger passed in
by the caller, the JSON summaries — is ``bitpredict.operations.drift_check``; the HTML reports and the Prometheus
gauges are ``bitpredict.operations.monitor_report``. Neither of them is imported here.

The features table is read from the published state (``bitpredict.operations.publish.published_path``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from bitpredict import storage
from bitpredict.config import DriftSettings, Settings
from bitpredict.features.columns import SENTIMENT_PREFIXES
from bitpredict.features.indicators import MODEL_FEATURES
from bitpredict.forecast.artifact import REFERENCE_FILE, locate
from bitpredict.operations.publish import published_path
from bitpredict.pipeline.stage_table import FEATURES

log = logging.getLogger(__name__)

CALENDAR = ("day_of_week", "dow_sin", "dow_cos")
DRIFT_COLUMNS = (
    *(c for c in MODEL_FEATURES if c not in CALENDAR),
    *(f"{p}_{s}" for p in SENTIMENT_PREFIXES for s in ("vader_mean", "count")),
)
# Calibration windows start every window/4 days: enough windows for a stable 5 % quantile (about 200 over a
# decade of 60-day windows) at a few seconds per check; overlapping windows are fine for an empirical quantile.
WINDOWS_PER_LENGTH = 4
MAX_WINDOWS = 200  # …and at most this many: a 20-day window over a decade would otherwise mean 650 windows per column
# The current sample is compared in whole blocks of this many days (its latest 10·⌊n/10⌋ rows), so a check that
# runs every day needs a calibration only when the window grows by a block, not every day.
CALIBRATION_STEP_DAYS = 10


@dataclass
class DriftResult:
    share: float
    drifted: list[str]
    columns: dict[str, dict[str, Any]]
    reference_rows: int
    current_rows: int
    snapshot: Any = field(default=None, repr=False)
    share_cut: float | None = None  # the share above which the window drifted (calibrated), else share_threshold

    def drifted_as_a_whole(self, share_threshold: float) -> bool:
        """More columns drifted than the reference's own windows show (calibrated), or the configured share."""
        if self.share_cut is None:
            return self.share >= share_threshold
        return self.share > self.share_cut


@dataclass
class DriftState:
    in_episode: bool = False
    last_trigger_at: str | None = None
    episode_started_at: str | None = None
    last_check_at: str | None = None

    @classmethod
    def load(cls, uri: str) -> DriftState:
        return cls(**json.loads(storage.read_text(uri))) if storage.exists(uri) else cls()

    def save(self, uri: str) -> None:
        storage.write_text(uri, json.dumps(asdict(self), indent=2))


@dataclass(frozen=True)
class Decision:
    drifting: bool
    trigger: bool
    reasons: list[str]


def features_uri(settings: Settings) -> str:
    """The published features table."""
    return published_path(settings, FEATURES)


def drift_columns(available: list[str] | pd.Index) -> list[str]:
    return [c for c in DRIFT_COLUMNS if c in set(available)]


_CALIBRATION_CACHE: dict[tuple[Any, ...], dict[str, float]] = {}


def calibrated_thresholds(reference: pd.DataFrame, columns: Sequence[str], rows: int, alpha: float) -> dict[str, float]:
    """Per column, the K-S p-value below which a window of ``rows`` days counts as drifted (``calibrated_cuts``)."""
    return calibrated_cuts(reference, columns, rows, alpha)[0]


def calibrated_cuts(
    reference: pd.DataFrame, columns: Sequence[str], rows: int, alpha: float
) -> tuple[dict[str, float], float | None]:
    """Per column, the K-S p-value below which a window of ``rows`` days counts as drifted; and the share of
    drifted columns above which the window as a whole has drifted.

    Column cuts: the ``alpha`` quantile of the p-values of every ``rows``-day window of the reference tested against
    the rest of the reference — a window is drifted when it is more unusual than ``1 - alpha`` of the reference's own
    windows of that length. Never looser than ``alpha`` itself (the plain test). Share cut: the ``1 - alpha``
    quantile of the same windows' drifted shares under those cuts — the columns move together (9 of them measure
    volatility), so a share means something only against the shares the reference's own windows show. None when the
    reference is too short to hold two windows (the plain test, and the configured share, apply). Cached per
    reference, columns, length and level (a replay checks daily).
    """
    from scipy.stats import ks_2samp

    stamps = reference["timestamp"] if "timestamp" in reference.columns else pd.Series([len(reference)])
    key = (len(reference), str(stamps.iloc[0]), str(stamps.iloc[-1]), tuple(columns), rows, alpha)
    if key in _CALIBRATION_CACHE:
        return _CALIBRATION_CACHE[key]
    n = len(reference)
    cuts = {c: alpha for c in columns}
    share_cut = None
    if rows >= 2 and n >= 2 * rows and columns:
        stride = max(1, rows // WINDOWS_PER_LENGTH, -(-(n - rows + 1) // MAX_WINDOWS))
        starts = list(range(0, n - rows + 1, stride))
        pvalues = np.ones((len(columns), len(starts)))
        for i, column in enumerate(columns):
            values = reference[column].to_numpy(dtype="float64")
            for j, start in enumerate(starts):
                window = values[start : start + rows]
                rest = np.concatenate([values[:start], values[start + rows :]])
                window, rest = window[np.isfinite(window)], rest[np.isfinite(rest)]
                if len(window) >= 2 and len(rest) >= 2:
                    pvalues[i, j] = float(ks_2samp(rest, window).pvalue)
            cuts[column] = min(alpha, float(np.quantile(pvalues[i], alpha)))
        limits = np.array([cuts[c] for c in columns])[:, None]
        share_cut = float(np.quantile((pvalues <= limits).mean(axis=0), 1.0 - alpha))
    if len(_CALIBRATION_CACHE) > 64:
        _CALIBRATION_CACHE.clear()
    _CALIBRATION_CACHE[key] = (cuts, share_cut)
    return cuts, share_cut


def measure(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    share_threshold: float,
    method: str = "ks",
    threshold: float = 0.05,
    calibrate: bool = True,
    report: bool = True,
) -> DriftResult:
    """Evidently data drift per column; drifted = its test failed at the column's threshold.

    ``calibrate`` (K-S only): each column's threshold from ``calibrated_thresholds``; otherwise ``threshold``.
    ``report=False`` (K-S only): the same test without building Evidently's report — Evidently's K-S is scipy's
    ``ks_2samp`` p-value, drifted when ``p <= threshold`` — for a caller that keeps only the figures (the replay
    checks every day; the report costs seconds, the tests milliseconds).
    """
    from evidently import Report
    from evidently.presets import DataDriftPreset

    columns = [c for c in drift_columns(reference.columns) if c in current.columns]
    # A column constant in both samples carries no information and makes some tests undefined.
    columns = [c for c in columns if reference[c].nunique() > 1 or current[c].nunique() > 1]
    per_threshold = None
    share_cut = share_threshold
    if calibrate and method == "ks":
        if len(current) >= CALIBRATION_STEP_DAYS:
            current = current.tail(len(current) // CALIBRATION_STEP_DAYS * CALIBRATION_STEP_DAYS)
        per_threshold, calibrated_share = calibrated_cuts(reference, columns, len(current), threshold)
        share_cut = share_threshold if calibrated_share is None else calibrated_share
    if not report and method == "ks":
        result = _ks_only(reference, current, columns, per_threshold or {c: threshold for c in columns})
        result.share_cut = share_cut
        return result
    preset = DataDriftPreset(
        columns=columns, drift_share=share_threshold, num_method=method, num_threshold=threshold,
        per_column_threshold=per_threshold,
    )  # fmt: skip
    report = Report([preset], include_tests=True)
    # As floats: rows rebuilt one by one (served requests) arrive as objects, which Evidently cannot type.
    snapshot = report.run(
        current_data=current[columns].astype("float64"), reference_data=reference[columns].astype("float64")
    )
    document = snapshot.dict()
    per_column: dict[str, dict[str, Any]] = {}
    for metric in document["metrics"]:
        config = metric.get("config", {})
        if config.get("type", "").endswith("ValueDrift"):
            per_column[config["column"]] = {
                "score": float(metric["value"]),
                "method": config.get("method"),
                "threshold": config.get("threshold"),
            }
    for test in document["tests"]:
        params = test.get("metric_config", {}).get("params", {})
        if params.get("type", "").endswith("ValueDrift") and params.get("column") in per_column:
            per_column[params["column"]]["drifted"] = test["status"] == "FAIL"
    drifted = sorted(c for c, v in per_column.items() if v.get("drifted"))
    share = len(drifted) / len(per_column) if per_column else 0.0
    return DriftResult(share, drifted, per_column, len(reference), len(current), snapshot, share_cut)


def _ks_only(
    reference: pd.DataFrame, current: pd.DataFrame, columns: list[str], thresholds: dict[str, float]
) -> DriftResult:
    """Evidently's K-S verdicts (scipy's ``ks_2samp``, drifted when p <= threshold) without its report."""
    from scipy.stats import ks_2samp

    per_column: dict[str, dict[str, Any]] = {}
    for column in columns:
        ref, cur = reference[column].astype("float64").dropna(), current[column].astype("float64").dropna()
        pvalue = float(ks_2samp(ref, cur)[1])
        per_column[column] = {"score": pvalue, "method": "K-S p_value", "threshold": thresholds[column],
                              "drifted": pvalue <= thresholds[column]}  # fmt: skip
    drifted = sorted(c for c, v in per_column.items() if v["drifted"])
    share = len(drifted) / len(per_column) if per_column else 0.0
    return DriftResult(share, drifted, per_column, len(reference), len(current), None)


def decide(
    result: DriftResult | None,
    forecast_reasons: list[str] | None,
    state: DriftState,
    config: DriftSettings,
    now: datetime,
) -> tuple[Decision, DriftState]:
    """The trigger decision and the new state; pure, so the episode and cooldown rules are testable.

    ``forecast_reasons``: the forecast monitor's alarms (``bitpredict.operations.forecast_monitor.verdict``) —
    the primary signal; input drift is the second.
    """
    reasons = list(forecast_reasons or [])
    if result is not None and result.drifted_as_a_whole(config.share_threshold):
        cut = config.share_threshold if result.share_cut is None else result.share_cut
        moved = ", ".join(result.drifted[:6]) + (", …" if len(result.drifted) > 6 else "")
        reasons.append(
            f"input drift: {result.share:.0%} of columns over the last {result.current_rows} days ({moved}); "
            f"the reference's own windows: at most {cut:.0%} in 95 %"
        )
    drifting = bool(reasons)
    new = DriftState(**asdict(state))
    new.last_check_at = now.isoformat()
    if not drifting:
        new.in_episode, new.episode_started_at = False, None
        return Decision(False, False, ["no drift"]), new
    if state.in_episode:
        return Decision(True, False, [*reasons, f"episode since {state.episode_started_at} already triggered"]), new
    new.in_episode, new.episode_started_at = True, now.isoformat()
    if state.last_trigger_at:
        ready = datetime.fromisoformat(state.last_trigger_at) + timedelta(hours=config.cooldown_hours)
        if now < ready:
            return Decision(True, False, [*reasons, f"cooldown until {ready.isoformat()}"]), new
    new.last_trigger_at = now.isoformat()
    return Decision(True, True, reasons), new


# --------------------------------------------------------------------------------------------
# data: reference, current, live quality
# --------------------------------------------------------------------------------------------


def load_reference(settings: Settings, model_dir: str) -> pd.DataFrame:
    located = locate(model_dir)
    uri = storage.join(located.directory, REFERENCE_FILE)
    if storage.exists(uri):
        return storage.read_parquet(uri)
    start, end = located.metadata["train_span"]
    features = storage.read_parquet(features_uri(settings))
    days = features["timestamp"].dt.date.astype(str)
    return features[(days >= start) & (days <= end)].reset_index(drop=True)


def current_inputs(settings: Settings, features: pd.DataFrame | None) -> pd.DataFrame:
    """The last ``drift.input_window_days`` of the ingested features table: the inputs the check compares. Never a
    client's bars — a request is not evidence about the market (anyone could send invented bars)."""
    if features is None or features.empty:
        return pd.DataFrame()
    return features.tail(settings.drift.input_window_days).reset_index(drop=True)


def input_reference(
    settings: Settings, model_dir: str, features: pd.DataFrame | None, current: pd.DataFrame
) -> pd.DataFrame:
    """What the window is compared with: the ``drift.reference_days`` of the features table just before it (the
    question is "has the market changed lately", and a decade-long reference makes every window look ordinary
    to a calibrated test); the model's training reference when the table holds less than that."""
    if features is not None and not current.empty and "timestamp" in current:
        first = pd.Timestamp(current["timestamp"].min())
        before = features[features["timestamp"] < first].tail(settings.drift.reference_days)
        if len(before) >= settings.drift.reference_days // 2:
            return before.reset_index(drop=True)
    return load_reference(settings, model_dir)
