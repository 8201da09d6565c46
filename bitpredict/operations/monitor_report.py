"""Drift's outputs for people and for Prometheus: the Evidently HTML reports and the gauges.

``bitpredict.operations.monitor`` measures and decides; this module only writes what it found, so a change to the
dashboards or to the report files never touches the decision (and the decision is testable without them).
"""

from __future__ import annotations

import tempfile
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from bitpredict import storage
from bitpredict.config import Settings

if TYPE_CHECKING:  # types only: drift_check imports both, monitor never imports this module
    from bitpredict.operations.monitor import Decision, DriftResult, DriftState


def drift_dir(settings: Settings) -> str:
    """Where every drift check writes: reports, state, gauges."""
    return settings.path("reports", "drift")


def save_html(snapshot: Any, uri: str) -> str:
    """An Evidently snapshot as one HTML file (local or gs://): Evidently writes only to a local path."""
    with tempfile.TemporaryDirectory() as tmp:
        html = Path(tmp) / "report.html"
        snapshot.save_html(str(html))
        storage.write_bytes(uri, html.read_bytes())
    return uri


def export_metrics(
    result: DriftResult | None,
    decision: Decision,
    state: DriftState,
    settings: Settings,
    monitored: dict[str, Any] | None = None,
    calibration: dict[str, Any] | None = None,
    last_day: pd.Timestamp | None = None,
) -> str:
    """Prometheus gauges as a text file beside the reports, and pushed to a Pushgateway when configured.

    The alert rules (``monitoring/prometheus/rules.yaml``) read ``bitpredict_monitor_calibration_broken``,
    ``bitpredict_monitor_pinball_worse_than_naive``, ``bitpredict_monitor_input_drift``,
    ``bitpredict_monitor_last_check_timestamp_seconds`` and ``bitpredict_data_last_day_timestamp_seconds``.
    """
    from prometheus_client import CollectorRegistry, Gauge, push_to_gateway, write_to_textfile

    registry = CollectorRegistry()
    share = Gauge("bitpredict_drift_share", "Share of input columns drifted", registry=registry)
    column = Gauge("bitpredict_drift_column_score", "Drift score per column", ["column", "method"], registry=registry)
    drifted = Gauge("bitpredict_drift_detected", "1 when the last check found a reason to retrain", registry=registry)
    checked = Gauge("bitpredict_drift_last_check_timestamp_seconds", "Last drift check", registry=registry)
    triggered = Gauge("bitpredict_drift_last_trigger_timestamp_seconds", "Last retraining trigger", registry=registry)
    fresh = Gauge("bitpredict_data_last_day_timestamp_seconds", "Newest day in the features table", registry=registry)
    broken = Gauge("bitpredict_monitor_calibration_broken", "1: a tail's exceedance test rejects", registry=registry)
    worse = Gauge("bitpredict_monitor_pinball_worse_than_naive", "1: the pinball CUSUM alarmed", registry=registry)
    input_drift = Gauge("bitpredict_monitor_input_drift", "1: input drift at or over its share", registry=registry)
    monitor_checked = Gauge("bitpredict_monitor_last_check_timestamp_seconds", "Last monitor check", registry=registry)
    coverage = Gauge("bitpredict_monitor_coverage_80", "80 % interval coverage, monitored window", ["aci"],
                     registry=registry)  # fmt: skip
    aci_level = Gauge(
        "bitpredict_monitor_aci_level", "Served level per nominal tail (ACI)", ["tail"], registry=registry
    )
    horizon_coverage = Gauge(
        "bitpredict_monitor_horizon_coverage_80",
        "80 % interval coverage of the closed h-day forecasts (ledger_horizons), by horizon in days",
        ["horizon"],
        registry=registry,
    )
    monitored = monitored or {}
    for h, figures in (monitored.get("horizons") or {}).items():
        if "coverage_80" in figures:
            horizon_coverage.labels(horizon=h).set(figures["coverage_80"])
    broken.set(float(bool(monitored.get("calibration_broken"))))
    worse.set(float(bool(monitored.get("pinball_worse_than_naive"))))
    input_drift.set(float(result is not None and result.drifted_as_a_whole(settings.drift.share_threshold)))
    for key, label in (("coverage_80", "off"), ("coverage_80_aci", "on")):
        if calibration and key in calibration:
            coverage.labels(aci=label).set(calibration[key])
    for tail, level in ((calibration or {}).get("levels") or {}).items():
        aci_level.labels(tail=tail).set(level)
    if last_day is not None:
        fresh.set(last_day.timestamp())
    if result is not None:
        share.set(result.share)
        for name, values in result.columns.items():
            column.labels(column=name, method=str(values.get("method"))).set(values["score"])
    drifted.set(float(decision.drifting))
    checked_at = datetime.fromisoformat(state.last_check_at).timestamp() if state.last_check_at else 0
    checked.set(checked_at)
    monitor_checked.set(checked_at)
    triggered.set(datetime.fromisoformat(state.last_trigger_at).timestamp() if state.last_trigger_at else 0)
    path = storage.join(drift_dir(settings), "metrics.prom")
    if not storage.is_gcs(path):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        write_to_textfile(path, registry)
    if settings.drift.pushgateway_url:
        push_to_gateway(settings.drift.pushgateway_url, job="bitpredict-drift", registry=registry)
    return path
