"""Drift: are today's model inputs still like the ones the model was trained on — and is it still useful?

* **Reference**: the training rows' inputs saved with the model (``reference.parquet`` beside the
  SavedModel), or the features table over the model's training span when the file is missing.
* **Current**: the inputs of the recently served requests (rebuilt from the request log's bars, flags and
  sentiment with the serving code) and the newly ingested days of the features table after the reference
  ends, the last ``drift.window_days`` of them — one row per day: a day's latest request, so a day someone
  looked at often does not outweigh the others.
* **Columns**: returns, scale-free indicators and sentiment — never price levels, which always drift,
  and not the calendar.
* **Report**: Evidently's ``DataDriftPreset`` (per-column test, FAIL = drifted), saved as HTML and JSON.
  When realised prices are known for past forecasts, the live MAE next to persistence's on the same days
  (each forecast day once: its latest forecast).
* **Decision**: drift when the share of drifted columns reaches ``drift.share_threshold`` or live skill
  falls below ``drift.min_live_skill``. One episode (consecutive drifting checks) triggers one rerun, and
  no two triggers come closer than ``drift.cooldown_hours``. The state lives in ``reports/drift/state.json``.
* **Rerun**: the trigger is passed in by the caller (this package never imports the pipeline code);
  ``pipeline_trigger`` starts ``python -m pipelines.rerun``, which replays the last published run's
  parameters, and its outcome (run id, success, new champion or not) is recorded in the report.

The features table is read from the published state (``bitpredict.publish.resolve``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from bitpredict import storage
from bitpredict.config import DriftSettings, Settings
from bitpredict.indicators import MODEL_FEATURES
from bitpredict.merge import SENTIMENT_PREFIXES
from bitpredict.publish import resolve

Trigger = Callable[[list[str]], "dict[str, Any] | str"]

log = logging.getLogger(__name__)

CALENDAR = ("day_of_week", "dow_sin", "dow_cos")
DRIFT_COLUMNS = (
    *(c for c in MODEL_FEATURES if c not in CALENDAR),
    *(f"{p}_{s}" for p in SENTIMENT_PREFIXES for s in ("vader_mean", "count")),
)


@dataclass
class DriftResult:
    share: float
    drifted: list[str]
    columns: dict[str, dict[str, Any]]
    reference_rows: int
    current_rows: int
    snapshot: Any = field(default=None, repr=False)


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
    return resolve(settings, "processed", "bitcoin_features.parquet")


def drift_columns(available: list[str] | pd.Index) -> list[str]:
    return [c for c in DRIFT_COLUMNS if c in set(available)]


def measure(
    reference: pd.DataFrame, current: pd.DataFrame, share_threshold: float, method: str = "ks", threshold: float = 0.05
) -> DriftResult:
    """Evidently data drift per column; drifted = its test failed."""
    from evidently import Report
    from evidently.presets import DataDriftPreset

    columns = [c for c in drift_columns(reference.columns) if c in current.columns]
    # A column constant in both samples carries no information and makes some tests undefined.
    columns = [c for c in columns if reference[c].nunique() > 1 or current[c].nunique() > 1]
    preset = DataDriftPreset(columns=columns, drift_share=share_threshold, num_method=method, num_threshold=threshold)
    report = Report([preset], include_tests=True)
    snapshot = report.run(current_data=current[columns], reference_data=reference[columns])
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
    return DriftResult(share, drifted, per_column, len(reference), len(current), snapshot)


def decide(
    result: DriftResult | None,
    live_skill: float | None,
    state: DriftState,
    config: DriftSettings,
    now: datetime,
) -> tuple[Decision, DriftState]:
    """The trigger decision and the new state; pure, so the episode and cooldown rules are testable."""
    reasons = []
    if result is not None and result.share >= config.share_threshold:
        reasons.append(f"{result.share:.0%} of columns drifted (threshold {config.share_threshold:.0%})")
    if live_skill is not None and live_skill < config.min_live_skill:
        reasons.append(f"live skill {live_skill:+.4f} below {config.min_live_skill:+.4f}")
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
    from bitpredict.serving import locate_model
    from bitpredict.train import REFERENCE_FILE

    located = locate_model(model_dir)
    uri = storage.join(located.directory, REFERENCE_FILE)
    if storage.exists(uri):
        return storage.read_parquet(uri)
    start, end = located.metadata["train_span"]
    features = storage.read_parquet(features_uri(settings))
    days = features["timestamp"].dt.date.astype(str)
    return features[(days >= start) & (days <= end)].reset_index(drop=True)


def latest_per_day(logged: pd.DataFrame, day_column: str) -> pd.DataFrame:
    """One logged request per day — the latest: a day looked at ten times is still one day of live inputs."""
    if logged.empty:
        return logged
    order = pd.to_datetime(logged["logged_at"], utc=True, format="ISO8601")
    ranked = logged.assign(_at=order).sort_values("_at", kind="mergesort")
    return ranked.drop_duplicates(day_column, keep="last").drop(columns="_at").reset_index(drop=True)


def served_features(settings: Settings, since: pd.Timestamp) -> pd.DataFrame:
    """One feature row per day a request forecast from (its latest request), rebuilt from the request's bars —
    with the ``is_imputed`` flags and sentiment it carried — by the transformer's own feature code."""
    from bitpredict.request_log import read_log
    from bitpredict.serving import request_features

    logged = read_log(settings.path("requests"))
    if logged.empty:
        return pd.DataFrame()
    logged = logged[pd.to_datetime(logged["logged_at"], utc=True, format="ISO8601") >= since]
    rows = []
    for record in latest_per_day(logged, "last_day").itertuples(index=False):
        bars = pd.DataFrame(json.loads(record.bars))
        bars["timestamp"] = pd.to_datetime(bars["timestamp"], unit="s", utc=True)
        rows.append(request_features(bars, clean=settings.clean).iloc[-1])
    return pd.DataFrame(rows).reset_index(drop=True)


def realised_forecasts(settings: Settings, predictions: pd.DataFrame | None = None) -> pd.DataFrame:
    """Served forecasts whose day has closed, with the realised close of that day: the latest forecast per day."""
    from bitpredict.request_log import read_log

    logged = read_log(settings.path("requests")) if predictions is None else predictions
    if logged.empty or not storage.exists(features_uri(settings)):
        return pd.DataFrame()
    closes = storage.read_parquet(features_uri(settings))[["timestamp", "close"]]
    closes["day"] = closes["timestamp"].dt.date.astype(str)
    if "logged_at" in logged.columns:
        logged = latest_per_day(logged, "as_of")
    return logged.merge(closes[["day", "close"]], left_on="as_of", right_on="day", how="inner")


def live_quality(joined: pd.DataFrame) -> dict[str, float] | None:
    """Live MAE of served forecasts whose day has closed, next to persistence's on the same days."""
    if joined.empty:
        return None
    model = float(np.mean(np.abs(joined["predicted_close"] - joined["close"])))
    persistence = float(np.mean(np.abs(joined["last_close"] - joined["close"])))
    return {"days": len(joined), "mae": model, "persistence_mae": persistence, "skill": 1 - model / persistence}


def regression_report(joined: pd.DataFrame) -> Any:
    """Evidently's regression quality of the served forecasts (current) next to persistence (reference),
    on the same closed days: the live version of the evaluation's comparison."""
    from evidently import DataDefinition, Dataset, Regression, Report
    from evidently.presets import RegressionPreset

    definition = DataDefinition(
        regression=[Regression(target="realised_close", prediction="forecast_close")],
        numerical_columns=["realised_close", "forecast_close"],
    )
    model = pd.DataFrame({"realised_close": joined["close"], "forecast_close": joined["predicted_close"]})
    naive = pd.DataFrame({"realised_close": joined["close"], "forecast_close": joined["last_close"]})
    return Report([RegressionPreset()]).run(
        Dataset.from_pandas(model, data_definition=definition), Dataset.from_pandas(naive, data_definition=definition)
    )


def current_inputs(settings: Settings, reference_end: str) -> pd.DataFrame:
    """New feature-table days after the reference, plus served requests, within the window: one row per day
    (a day both in the table and served counts once, as it was served)."""
    since = pd.Timestamp.now(tz="UTC") - pd.Timedelta(days=settings.drift.window_days)
    parts = []
    if storage.exists(features_uri(settings)):
        features = storage.read_parquet(features_uri(settings))
        new = features[features["timestamp"].dt.date.astype(str) > reference_end]
        parts.append(new.tail(settings.drift.window_days))
    served = served_features(settings, since)
    if not served.empty:
        parts.append(served)
    if not parts:
        return pd.DataFrame()
    current = pd.concat(parts, ignore_index=True)
    return current.drop_duplicates("timestamp", keep="last").reset_index(drop=True)


# --------------------------------------------------------------------------------------------
# the job
# --------------------------------------------------------------------------------------------


def drift_dir(settings: Settings) -> str:
    return settings.path("reports", "drift")


def export_metrics(
    result: DriftResult | None,
    decision: Decision,
    state: DriftState,
    settings: Settings,
    quality: dict[str, float] | None = None,
    last_day: pd.Timestamp | None = None,
) -> str:
    """Prometheus gauges as a text file beside the reports, and pushed to a Pushgateway when configured."""
    from prometheus_client import CollectorRegistry, Gauge, push_to_gateway, write_to_textfile

    registry = CollectorRegistry()
    share = Gauge("bitpredict_drift_share", "Share of input columns drifted", registry=registry)
    column = Gauge("bitpredict_drift_column_score", "Drift score per column", ["column", "method"], registry=registry)
    drifted = Gauge("bitpredict_drift_detected", "1 when the last check found drift", registry=registry)
    checked = Gauge("bitpredict_drift_last_check_timestamp_seconds", "Last drift check", registry=registry)
    triggered = Gauge("bitpredict_drift_last_trigger_timestamp_seconds", "Last retraining trigger", registry=registry)
    skill = Gauge("bitpredict_live_skill", "Live skill of served forecasts vs persistence", registry=registry)
    fresh = Gauge("bitpredict_data_last_day_timestamp_seconds", "Newest day in the features table", registry=registry)
    if quality is not None:
        skill.set(quality["skill"])
    if last_day is not None:
        fresh.set(last_day.timestamp())
    if result is not None:
        share.set(result.share)
        for name, values in result.columns.items():
            column.labels(column=name, method=str(values.get("method"))).set(values["score"])
    drifted.set(float(decision.drifting))
    checked.set(datetime.fromisoformat(state.last_check_at).timestamp() if state.last_check_at else 0)
    triggered.set(datetime.fromisoformat(state.last_trigger_at).timestamp() if state.last_trigger_at else 0)
    path = storage.join(drift_dir(settings), "metrics.prom")
    if not storage.is_gcs(path):
        from pathlib import Path

        Path(path).parent.mkdir(parents=True, exist_ok=True)
        write_to_textfile(path, registry)
    if settings.drift.pushgateway_url:
        push_to_gateway(settings.drift.pushgateway_url, job="bitpredict-drift", registry=registry)
    return path


def run_drift(
    settings: Settings,
    model_dir: str,
    trigger: Trigger | None = None,
    now: datetime | None = None,
    current: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """One check: report, decision, trigger (once per episode), state, metrics. Returns what it decided."""
    from bitpredict.serving import locate_model

    now = now or datetime.now(UTC)
    reference = load_reference(settings, model_dir)
    reference_end = str(pd.Timestamp(reference["timestamp"].max()).date())
    current = current_inputs(settings, reference_end) if current is None else current
    out_dir = drift_dir(settings)
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    result = None
    if len(current) >= settings.drift.min_rows:
        result = measure(
            reference, current, settings.drift.share_threshold, settings.drift.method, settings.drift.threshold
        )
        import tempfile
        from pathlib import Path

        with tempfile.TemporaryDirectory() as tmp:
            html = Path(tmp) / "report.html"
            result.snapshot.save_html(str(html))
            storage.write_bytes(storage.join(out_dir, f"drift-{stamp}.html"), html.read_bytes())
    joined = realised_forecasts(settings)
    quality = live_quality(joined)
    regression_html = None
    if len(joined) >= 2:
        import tempfile
        from pathlib import Path

        with tempfile.TemporaryDirectory() as tmp:
            html = Path(tmp) / "regression.html"
            regression_report(joined).save_html(str(html))
            regression_html = storage.join(out_dir, f"regression-{stamp}.html")
            storage.write_bytes(regression_html, html.read_bytes())
    state_uri = storage.join(out_dir, "state.json")
    previous = DriftState.load(state_uri)
    decision, state = decide(result, quality["skill"] if quality else None, previous, settings.drift, now)
    rerun: dict[str, Any] | None = None
    if decision.trigger and trigger is not None:
        outcome = trigger(decision.reasons)
        rerun = outcome if isinstance(outcome, dict) else {"run_id": outcome, "ok": True}
        if not rerun.get("ok"):  # a rerun that failed did not use up the episode: the next check tries again
            state = DriftState(**{**asdict(state), "in_episode": False, "episode_started_at": None,
                                  "last_trigger_at": previous.last_trigger_at})  # fmt: skip
    state.save(state_uri)
    summary = {
        "checked_at": now.isoformat(),
        "model_version": locate_model(model_dir).version,
        "reference_rows": len(reference),
        "current_rows": len(current),
        "share": result.share if result else None,
        "drifted_columns": result.drifted if result else [],
        "columns": result.columns if result else {},
        "live_quality": quality,
        "drifting": decision.drifting,
        "triggered": decision.trigger,
        "triggered_run": rerun.get("run_id") if rerun else None,
        "rerun": rerun,
        "reasons": decision.reasons if result else [*decision.reasons, f"only {len(current)} current rows"],
        "report_html": storage.join(out_dir, f"drift-{stamp}.html") if result else None,
        "regression_html": regression_html,
    }
    storage.write_text(storage.join(out_dir, f"drift-{stamp}.json"), json.dumps(summary, indent=2, default=str))
    storage.write_text(storage.join(out_dir, "latest.json"), json.dumps(summary, indent=2, default=str))
    last_day = None
    if storage.exists(features_uri(settings)):
        last_day = pd.Timestamp(storage.read_parquet(features_uri(settings))["timestamp"].max())
    summary["metrics_file"] = export_metrics(result, decision, state, settings, quality, last_day)
    log.info(
        "drift check",
        extra={"share": summary["share"], "drifting": decision.drifting, "triggered": decision.trigger,
               "reasons": "; ".join(summary["reasons"])},
    )  # fmt: skip
    return summary


def pipeline_trigger(settings: Settings) -> Callable[[list[str]], dict[str, Any]]:
    """The rerun: ``python -m pipelines.rerun`` replays the last published run — through KFP
    (``pipelines.submit``) when ``KFP_HOST`` is set, else the local runner of ``make run``.

    Started as a subprocess by module name, so this package never imports the pipeline code; the image and
    the checkout both have ``pipelines/`` on the path. Returns its outcome (one JSON line); a launcher that
    could not even start is an outcome with ``ok: False`` too, never an exception.
    """
    import os
    import subprocess
    import sys
    from pathlib import Path

    checkout = Path(__file__).resolve().parents[1]  # the checkout or image root that holds pipelines/
    env = dict(os.environ)
    if (checkout / "pipelines").is_dir():
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(checkout), env.get("PYTHONPATH", "")) if p)

    def run(reasons: list[str]) -> dict[str, Any]:
        command = [sys.executable, "-m", "pipelines.rerun", "--data-dir", settings.data_dir]
        mode = "kfp" if os.environ.get("KFP_HOST") else "local"
        log.warning("drift: replaying the last run", extra={"reasons": "; ".join(reasons), "mode": mode})
        try:
            done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=4 * 3600, env=env)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return {"mode": mode, "run_id": None, "ok": False, "new_champion": None, "error": str(exc)}
        for line in reversed(done.stdout.strip().splitlines()):
            try:
                outcome = json.loads(line)
            except ValueError:
                continue
            if isinstance(outcome, dict):
                return outcome
        error = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        return {"mode": mode, "run_id": None, "ok": False, "new_champion": None, "error": error[:500]}

    return run
