"""The drift check: one run of the monitor — measure, decide, mark the episode, trigger a rerun, export.

It sits above the measurement (``bitpredict.operations.monitor``: the tests, the thresholds, the state) and the
report (``bitpredict.operations.monitor_report``: HTML snapshots, the Prometheus gauges): it imports both, and
neither imports it. ``command_trigger`` is the rerun a caller may pass in (``make drift`` passes
``python -m pipelines.rerun``).
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from bitpredict import storage
from bitpredict.config import Settings
from bitpredict.forecast.artifact import locate
from bitpredict.operations.monitor import (
    Decision,
    DriftState,
    current_inputs,
    decide,
    features_uri,
    input_reference,
    measure,
)
from bitpredict.operations.monitor_report import drift_dir, export_metrics, save_html

log = logging.getLogger(__name__)

STATE_LOCK_TIMEOUT_S = 120.0  # the lock guards a read-decide-write of a small JSON file, never a rerun
TRIGGER_TIMEOUT_S = 4 * 3600

Trigger = Callable[[list[str]], "dict[str, Any] | str"]  # called with the reasons; returns the rerun's outcome


# --------------------------------------------------------------------------------------------
# triggers the caller may pass in
# --------------------------------------------------------------------------------------------


def command_trigger(command: str | Sequence[str], settings: Settings) -> Callable[[list[str]], dict[str, Any]]:
    """A trigger that runs ``command`` (configured by the caller, e.g. ``python -m pipelines.rerun``) with
    ``BITPREDICT_DATA_DIR`` set to this data dir, and reads its outcome: the last JSON object it prints
    (``run_id``, ``ok``, ``new_champion``, …), else ``ok`` = exit code 0. A command that cannot start or runs
    past ``TRIGGER_TIMEOUT_S`` is an outcome with ``ok: False`` too, never an exception."""
    argv = shlex.split(command) if isinstance(command, str) else list(command)
    if not argv:
        raise ValueError("the trigger command is empty")
    env = {**os.environ, "BITPREDICT_DATA_DIR": settings.data_dir}

    def run(reasons: list[str]) -> dict[str, Any]:
        log.warning("drift: starting the rerun command", extra={"reasons": "; ".join(reasons), "command": argv})
        try:
            done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=TRIGGER_TIMEOUT_S, env=env)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return {"mode": "command", "run_id": None, "ok": False, "new_champion": None, "error": str(exc)}
        for line in reversed(done.stdout.strip().splitlines()):
            try:
                outcome = json.loads(line)
            except ValueError:
                continue
            if isinstance(outcome, dict):
                return outcome
        if done.returncode == 0:
            return {"mode": "command", "run_id": None, "ok": True, "new_champion": None, "error": None}
        error = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        return {"mode": "command", "run_id": None, "ok": False, "new_champion": None, "error": error[:500]}

    return run


# --------------------------------------------------------------------------------------------
# the job
# --------------------------------------------------------------------------------------------


def _decide_and_mark(
    state_uri: str, out_dir: str, decide_with: Callable[[DriftState], tuple[Decision, DriftState]]
) -> tuple[Decision, DriftState, DriftState]:
    """Read the state, decide, write the new state — under the drift folder's lock, so two racing checks
    decide one after the other and the second sees the first one's marker (on gs:// ``run_lock`` cannot lock
    and passes through: there one scheduled job runs the check)."""
    from bitpredict.pipeline.runlock import run_lock

    with run_lock(out_dir, "drift check", timeout_s=STATE_LOCK_TIMEOUT_S):
        previous = DriftState.load(state_uri)
        decision, state = decide_with(previous)
        state.save(state_uri)
    return decision, state, previous


def _give_back(state_uri: str, out_dir: str, marked: DriftState, previous: DriftState) -> DriftState:
    """A rerun that failed did not use up the episode: undo the marker unless a later check changed it."""
    from bitpredict.pipeline.runlock import run_lock

    with run_lock(out_dir, "drift check", timeout_s=STATE_LOCK_TIMEOUT_S):
        now = DriftState.load(state_uri)
        if now.last_trigger_at != marked.last_trigger_at:
            return now
        undone = DriftState(**{**asdict(now), "in_episode": False, "episode_started_at": None,
                               "last_trigger_at": previous.last_trigger_at})  # fmt: skip
        undone.save(state_uri)
        return undone


ACI_FILE = "aci.json"  # the live calibration the transformer serves with (beside the drift reports)
LEDGER_FILE = "ledger.parquet"  # the champion's closed forecasts on the ingested table
HORIZON_LEDGER_FILE = "ledger_horizons.parquet"  # every horizon's forecast, each closed on its own day


def _served_log(settings: Settings) -> pd.DataFrame:
    from bitpredict.operations.request_log import read_log

    return read_log(settings.path("requests"))


def _span(frame: pd.DataFrame) -> str | None:
    if frame.empty or "timestamp" not in frame:
        return None
    stamps = pd.to_datetime(frame["timestamp"], utc=True)
    return f"{stamps.min().date()}/{stamps.max().date()}"


def run_drift(
    settings: Settings,
    model_dir: str,
    trigger: Trigger | None = None,
    now: datetime | None = None,
    current: pd.DataFrame | None = None,
    forecasts: pd.DataFrame | None = None,
    html: bool = True,
) -> dict[str, Any]:
    """One check: report, decision, trigger (once per episode), state, metrics. Returns what it decided.

    ``current``: the inputs to compare (default: the new table days and served requests); ``forecasts``: the
    served forecasts (``as_of``, ``predicted_close``, ``last_close``; default: the request log) for live
    quality; ``html=False`` skips the HTML reports (the replay checks every day and keeps only the figures).
    """
    from bitpredict.operations.forecast_monitor import (
        horizon_coverage,
        ledgers,
        live_calibration,
        served_closed,
        verdict,
    )

    now = now or datetime.now(UTC)
    features = storage.read_parquet(features_uri(settings)) if storage.exists(features_uri(settings)) else None
    current = current_inputs(settings, features) if current is None else current
    reference = input_reference(settings, model_dir, features, current)
    out_dir = drift_dir(settings)
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    result = None
    report_html = None
    enough = min(settings.drift.min_rows, settings.drift.input_window_days)  # a full input window is enough
    if len(current) >= enough and len(reference) >= settings.drift.min_rows:
        result = measure(
            reference, current, settings.drift.share_threshold, settings.drift.method, settings.drift.threshold,
            report=html,
        )  # fmt: skip
        if html:
            report_html = save_html(result.snapshot, storage.join(out_dir, f"drift-{stamp}.html"))
    # the forecast monitor, on the ingested table only (trusted evidence)
    located = locate(model_dir)
    levels = tuple(float(q) for q in located.metadata.get("quantiles", ()))
    monitored: dict[str, Any] = {"reasons": ["no features table"], "calibration_broken": False,
                                 "pinball_worse_than_naive": False}  # fmt: skip
    calibration: dict[str, Any] = {}
    if located.saved_model_dir and not storage.exists(storage.join(located.saved_model_dir, "saved_model.pb")):
        monitored["reasons"] = ["no SavedModel to forecast with: the forecast monitor is off"]
    elif features is not None and 0.1 in levels and 0.9 in levels:
        book, by_horizon = ledgers(
            features, model_dir, settings.drift.window_days + settings.drift.calibration_days + 1
        )
        monitored = verdict(book, levels, settings.drift)
        monitored["horizons"] = horizon_coverage(by_horizon, levels)
        aci, calibration = live_calibration(book, levels, settings.drift.aci_gamma, settings.drift.window_days)
        record = {
            "model_version": locate(model_dir).version,
            "aci": json.loads(aci.to_json()),
            "checked_at": now.isoformat(),
        }
        storage.write_text(storage.join(out_dir, ACI_FILE), json.dumps(record, indent=2))
        storage.write_parquet(book, storage.join(out_dir, LEDGER_FILE))
        storage.write_parquet(by_horizon, storage.join(out_dir, HORIZON_LEDGER_FILE))
    quality = None
    if features is not None:
        closes = features[["timestamp", "close"]].assign(day=features["timestamp"].dt.date.astype(str))
        served = forecasts if forecasts is not None else _served_log(settings)
        quality = served_closed(served, closes[["day", "close"]])
    regression_html = None
    forecast_reasons = list(monitored.get("alarms", []))
    state_uri = storage.join(out_dir, "state.json")
    decision, state, previous = _decide_and_mark(
        state_uri, out_dir, lambda before: decide(result, forecast_reasons, before, settings.drift, now)
    )
    rerun: dict[str, Any] | None = None
    if decision.trigger and trigger is not None:
        outcome = trigger(decision.reasons)
        rerun = outcome if isinstance(outcome, dict) else {"run_id": outcome, "ok": True}
        if not rerun.get("ok"):
            state = _give_back(state_uri, out_dir, state, previous)
    summary = {
        "checked_at": now.isoformat(),
        "model_version": locate(model_dir).version,
        "reference_rows": len(reference),
        "current_rows": len(current),
        "share": result.share if result else None,
        "share_cut": result.share_cut if result else None,
        "drifted_columns": result.drifted if result else [],
        "columns": result.columns if result else {},
        "served_closed": quality,
        "forecast_monitor": monitored,
        "live_calibration": calibration,
        "input_reference": _span(reference),
        "drifting": decision.drifting,
        "triggered": decision.trigger,
        "triggered_run": rerun.get("run_id") if rerun else None,
        "rerun": rerun,
        "reasons": decision.reasons if result else [*decision.reasons, f"only {len(current)} current rows"],
        "report_html": report_html,
        "regression_html": regression_html,
    }
    storage.write_text(storage.join(out_dir, f"drift-{stamp}.json"), json.dumps(summary, indent=2, default=str))
    storage.write_text(storage.join(out_dir, "latest.json"), json.dumps(summary, indent=2, default=str))
    last_day = pd.Timestamp(features["timestamp"].max()) if features is not None else None
    summary["metrics_file"] = export_metrics(result, decision, state, settings, monitored, calibration, last_day)
    log.info(
        "drift check",
        extra={"share": summary["share"], "drifting": decision.drifting, "triggered": decision.trigger,
               "reasons": "; ".join(summary["reasons"])},
    )  # fmt: skip
    return summary
